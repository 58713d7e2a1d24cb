//! The measured rounds on one dataset, the commands they run, and the checks after every run.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use benches::exec::{Timed, run_timed};
use benches::{Res, display, sh_quote};
use predeploy_tests::mysql::{MariaDbServer, client_tool};
use serde_json::Value;

use crate::Opts;
use crate::data::{self, TABLES};

/// The database the shell equivalent of level 4 restores into (not the tool's
/// `…__predeploy_verify_…` names).
pub const SHELL_SCRATCH_DB: &str = "bench_verify_scratch";

/// The dump file inside a MySQL source's backup directory.
const DUMP: &str = "data/db/dump.sql.zst";

/// The commands, in the order a round runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `mariadb-dump … > /dev/null`.
    Floor,
    /// `mariadb-dump … | gzip -9 > f`.
    Seed,
    /// `pre-deploy backup --verify-level checksum`.
    ToolChecksum,
    /// `pre-deploy backup` (default verify level: restore).
    ToolDefault,
    /// `pre-deploy verify last --level restore`.
    ToolVerifyRestore,
    /// Create a scratch db, `zstd -dc DUMP | mariadb`, count, drop.
    ShellRestore,
}

impl Kind {
    /// Every command, in round order.
    pub const ALL: [Kind; 6] = [
        Kind::Floor,
        Kind::Seed,
        Kind::ToolChecksum,
        Kind::ToolDefault,
        Kind::ToolVerifyRestore,
        Kind::ShellRestore,
    ];

    /// Short name in the report and the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::Seed => "seed",
            Kind::ToolChecksum => "tool_checksum",
            Kind::ToolDefault => "tool_default",
            Kind::ToolVerifyRestore => "tool_verify_restore",
            Kind::ShellRestore => "shell_restore",
        }
    }

    /// Whether the tool runs (its peak RSS is sampled and its `--json` checked).
    pub fn is_tool(self) -> bool {
        matches!(
            self,
            Kind::ToolChecksum | Kind::ToolDefault | Kind::ToolVerifyRestore
        )
    }
}

/// One counted run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Wall seconds (GNU time `%e`).
    pub wall_s: f64,
    /// `%M`: peak RSS of the largest process of the tree, KiB.
    pub max_rss_kib: u64,
    /// The tool's own `VmHWM`, sampled, KiB (tool runs).
    pub own_hwm_kib: Option<u64>,
    /// Bytes written: the seed file, or the tool's files under `STORE/backups/*/data`.
    pub output_bytes: Option<u64>,
    /// The uncompressed dump (the tool's `raw_size` of its dump artifact).
    pub raw_bytes: Option<u64>,
    /// The tool's verification time (sum of its record's level timings).
    pub verify_s: Option<f64>,
    /// The tool's snapshot phase (`snapshot_seconds` of `backup --json`).
    pub snapshot_s: Option<f64>,
    /// The verification record's per-level seconds (`timings`), in its order.
    pub levels: Vec<(String, f64)>,
}

/// All counted runs of one command on one dataset.
#[derive(Debug, Clone)]
pub struct Series {
    pub kind: Kind,
    /// The command line of the last run, passwords redacted.
    pub command: String,
    pub samples: Vec<Sample>,
}

/// A correctness check over every run it applies to.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    /// Runs checked.
    pub runs: usize,
    /// Runs that failed it.
    pub failed: usize,
    /// What was found (the first failure, or the last success).
    pub found: String,
}

/// A dataset with its series and checks.
#[derive(Debug, Clone)]
pub struct DatasetRun {
    pub id: &'static str,
    pub description: String,
    /// Size of the tables on the server (data + indexes).
    pub db_bytes: u64,
    /// Seconds to generate the data.
    pub load_s: f64,
    pub counts: Vec<(String, u64)>,
    pub series: Vec<Series>,
    pub checks: Vec<Check>,
}

impl DatasetRun {
    /// The series of `kind`.
    pub fn series(&self, kind: Kind) -> Option<&Series> {
        self.series.iter().find(|s| s.kind == kind)
    }

    fn record(&mut self, kind: Kind, argv: &[OsString], sample: Sample) {
        match self.series.iter_mut().find(|s| s.kind == kind) {
            Some(s) => {
                s.samples.push(sample);
                s.command = display(argv);
            }
            None => self.series.push(Series {
                kind,
                command: display(argv),
                samples: vec![sample],
            }),
        }
    }

    fn check(&mut self, what: &str, pass: bool, found: String) {
        if !pass {
            eprintln!("bench-mysql: {} check FAILED: {what} ({found})", self.id);
        }
        match self.checks.iter_mut().find(|c| c.what == what) {
            Some(c) => {
                c.runs += 1;
                if !pass {
                    if c.failed == 0 {
                        c.found = found;
                    }
                    c.failed += 1;
                } else if c.failed == 0 {
                    c.found = found;
                }
            }
            None => self.checks.push(Check {
                what: what.to_owned(),
                runs: 1,
                failed: usize::from(!pass),
                found,
            }),
        }
    }
}

/// What the rounds need.
pub struct Ctx<'a> {
    pub opts: &'a Opts,
    pub server: &'a MariaDbServer,
    /// The database of the dataset.
    pub db: &'a str,
    /// The environment of every measured command (`HOME` with `.my.cnf`).
    pub env: &'a [(OsString, OsString)],
    pub work: &'a Path,
}

impl Ctx<'_> {
    /// The URL the tool gets: no password (it reads `~/.my.cnf`).
    fn url(&self) -> String {
        format!(
            "mysql://{}@127.0.0.1:{}/{}",
            predeploy_tests::mysql::USER,
            self.server.port(),
            self.db
        )
    }

    /// `--defaults-extra-file=…` of the harness (host, port, TCP, utf8mb4, credentials).
    fn cnf(&self) -> String {
        format!(
            "--defaults-extra-file={}",
            self.server.client_cnf().display()
        )
    }

    /// `mariadb-dump` with the floor's options, as a shell word list.
    fn dump_cmd(&self) -> String {
        format!(
            "{} {} --single-transaction --routines --triggers --events --hex-blob --quick {}",
            sh_quote(&client_tool("mariadb-dump").to_string_lossy()),
            sh_quote(&self.cnf()),
            sh_quote(self.db)
        )
    }

    fn tool_backup(&self, store: &Path, level: Option<&str>) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            self.opts.common.tool.clone().into(),
            "backup".into(),
            "--source".into(),
            format!("db={}", self.url()).into(),
            "--store".into(),
            store.into(),
        ];
        if let Some(l) = level {
            argv.extend(["--verify-level".into(), l.into()]);
        }
        argv.push("--json".into());
        argv
    }

    /// The argv of `kind`; `out` is its output file or store; `verify` the store and dump of
    /// the backup the level-4 pair checks.
    fn argv(&self, kind: Kind, out: &Path, verify: &VerifyInput) -> Vec<OsString> {
        let bash =
            |script: String| -> Vec<OsString> { vec!["bash".into(), "-c".into(), script.into()] };
        match kind {
            Kind::Floor => bash(format!("exec {} > /dev/null", self.dump_cmd())),
            Kind::Seed => bash(format!(
                "set -o pipefail; {} | gzip -9 > {}",
                self.dump_cmd(),
                sh_quote(&out.to_string_lossy())
            )),
            Kind::ToolChecksum => self.tool_backup(out, Some("checksum")),
            Kind::ToolDefault => self.tool_backup(out, None),
            Kind::ToolVerifyRestore => vec![
                self.opts.common.tool.clone().into(),
                "verify".into(),
                "last".into(),
                "--level".into(),
                "restore".into(),
                "--store".into(),
                verify.store.clone().into(),
                "--source".into(),
                format!("db={}", self.url()).into(),
                "--json".into(),
            ],
            Kind::ShellRestore => {
                let mariadb = format!(
                    "{} {}",
                    sh_quote(&client_tool("mariadb").to_string_lossy()),
                    sh_quote(&self.cnf())
                );
                let s = SHELL_SCRATCH_DB;
                let counts: Vec<String> = TABLES
                    .iter()
                    .map(|t| format!("SELECT COUNT(*) FROM `{t}`;"))
                    .collect();
                bash(format!(
                    "set -o pipefail; rc=0; \
                     {mariadb} -e 'CREATE DATABASE `{s}` CHARACTER SET utf8mb4' && \
                     zstd -q -dc {dump} | {mariadb} {s} && \
                     {mariadb} -N -B -e '{counts}' {s} || rc=$?; \
                     if ! {mariadb} -e 'DROP DATABASE IF EXISTS `{s}`'; then [ $rc -ne 0 ] || rc=1; fi; \
                     exit $rc",
                    dump = sh_quote(&verify.dump.to_string_lossy()),
                    counts = counts.join(" "),
                ))
            }
        }
    }
}

/// The backup the level-4 pair verifies, made once before the rounds.
pub struct VerifyInput {
    pub store: PathBuf,
    pub id: String,
    pub dump: PathBuf,
}

/// Sum of the sizes of the regular files under `path`.
pub fn dir_size(path: &Path) -> Res<u64> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut total = 0;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            total += dir_size(&entry?.path())?;
        }
    }
    Ok(total)
}

fn read_json(stdout: &Path) -> Res<Value> {
    let text = fs::read_to_string(stdout)?;
    serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "the tool's --json output is not one JSON object ({e}): {:?}",
            text.chars().take(300).collect::<String>()
        )
        .into()
    })
}

/// Sum of a verification record's level timings.
fn timings_sum(record: &Value) -> Option<f64> {
    record["timings"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x["seconds"].as_f64()).sum())
}

/// A verification record's `timings`: `(level, seconds)`.
fn level_timings(record: &Value) -> Vec<(String, f64)> {
    record["timings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["level"].as_str()?.to_owned(), t["seconds"].as_f64()?)))
        .collect()
}

/// A `backup --json`: its id, whether the verification passed at `level` (as a finding), its
/// verification time, the dump's raw size.
fn backup_result(json: &Value, store: &Path, level: &str) -> (String, bool, String) {
    let id = json["id"].as_str().unwrap_or("").to_owned();
    let v = &json["verification"];
    let passed = v["passed"] == Value::Bool(true);
    let reached = v["level_reached"].as_str().unwrap_or("-");
    let dump = !id.is_empty() && store.join("backups").join(&id).join(DUMP).is_file();
    let pass = passed && reached == level && dump;
    let found = format!(
        "backup {id}: passed {passed}, level_reached {reached}, {DUMP} {}",
        if dump { "present" } else { "MISSING" }
    );
    (id, pass, found)
}

/// `raw_size` of the dump artifact (`name` `dump.sql.zst`) in a `backup --json`'s manifest.
fn raw_size(json: &Value) -> Option<u64> {
    json["manifest"]["sources"]
        .as_array()?
        .iter()
        .flat_map(|s| s["artifacts"].as_array().into_iter().flatten())
        .find(|a| a["name"] == "dump.sql.zst")?["raw_size"]
        .as_u64()
}

/// The first (untimed) backup of a dataset, which the level-4 pair verifies in every round.
pub fn prepare_verify(ctx: &Ctx<'_>, d: &mut DatasetRun) -> Res<VerifyInput> {
    let store = ctx.work.join(format!("{}-verify-store", d.id));
    let argv = ctx.tool_backup(&store, Some("checksum"));
    let timed = run_timed(
        &argv,
        ctx.env,
        ctx.work,
        &format!("{}-prepare", d.id),
        false,
    )?;
    let json = read_json(&timed.stdout)?;
    let (id, pass, found) = backup_result(&json, &store, "checksum");
    d.check(
        "the backup verified by the level-4 pair: `backup --json` says passed at checksum, dump present",
        pass,
        found,
    );
    let dump = store.join("backups").join(&id).join(DUMP);
    Ok(VerifyInput { store, id, dump })
}

/// The rounds on one dataset: `kinds` in order, every round, the first `warmup` not counted.
pub fn rounds(ctx: &Ctx<'_>, d: &mut DatasetRun, kinds: &[Kind]) -> Res<()> {
    let verify = if kinds.contains(&Kind::ToolVerifyRestore) || kinds.contains(&Kind::ShellRestore)
    {
        Some(prepare_verify(ctx, d)?)
    } else {
        None
    };
    let none = VerifyInput {
        store: PathBuf::new(),
        id: String::new(),
        dump: PathBuf::new(),
    };
    let vin = verify.as_ref().unwrap_or(&none);
    let opts = &ctx.opts.common;
    for round in 0..opts.warmup + opts.rounds() {
        let counted = round >= opts.warmup;
        for &kind in kinds {
            let tag = format!("{}-r{round}-{}", d.id, kind.key());
            let out = ctx.work.join(match kind {
                Kind::Seed => format!("{tag}.sql.gz"),
                _ => format!("{tag}-store"),
            });
            let argv = ctx.argv(kind, &out, vin);
            let timed: Timed = run_timed(&argv, ctx.env, ctx.work, &tag, kind.is_tool())?;
            let mut sample = Sample {
                wall_s: timed.wall_s,
                max_rss_kib: timed.max_rss_kib,
                own_hwm_kib: timed.own_hwm_kib,
                output_bytes: None,
                raw_bytes: None,
                verify_s: None,
                snapshot_s: None,
                levels: Vec::new(),
            };
            after_run(ctx, d, kind, &timed, &out, vin, &mut sample)?;
            eprintln!(
                "bench-mysql: {:<7} {:<19} {:>7.2} s {:>7.1} MiB{}{}",
                d.id,
                kind.key(),
                timed.wall_s,
                timed.max_rss_kib as f64 / 1024.0,
                sample
                    .output_bytes
                    .map_or(String::new(), |b| format!(" {:>8.1} MB", b as f64 / 1e6)),
                if counted { "" } else { "  (warm-up)" }
            );
            let _ = fs::remove_file(&timed.stdout);
            if counted {
                d.record(kind, &argv, sample);
            }
        }
    }
    if let Some(v) = verify {
        fs::remove_dir_all(&v.store)?;
    }
    Ok(())
}

/// The checks and sizes after one run (untimed); removes its output.
fn after_run(
    ctx: &Ctx<'_>,
    d: &mut DatasetRun,
    kind: Kind,
    timed: &Timed,
    out: &Path,
    vin: &VerifyInput,
    sample: &mut Sample,
) -> Res<()> {
    match kind {
        Kind::Floor => {}
        Kind::Seed => {
            sample.output_bytes = Some(fs::metadata(out)?.len());
            fs::remove_file(out)?;
        }
        Kind::ToolChecksum | Kind::ToolDefault => {
            let json = read_json(&timed.stdout)?;
            let level = if kind == Kind::ToolChecksum {
                "checksum"
            } else {
                "restore"
            };
            let (_, pass, found) = backup_result(&json, out, level);
            d.check(
                &format!(
                    "every `{}` run: `--json` says verification passed at level {level}, dump present",
                    kind.key()
                ),
                pass,
                found,
            );
            sample.output_bytes = Some(store_data_size(out)?);
            sample.raw_bytes = raw_size(&json);
            sample.verify_s = timings_sum(&json["verification"]);
            sample.snapshot_s = json["snapshot_seconds"].as_f64();
            sample.levels = level_timings(&json["verification"]);
            fs::remove_dir_all(out)?;
        }
        Kind::ToolVerifyRestore => {
            let json = read_json(&timed.stdout)?;
            let records = json["verifications"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let record = records.first().cloned().unwrap_or(Value::Null);
            let pass = json["ok"] == Value::Bool(true)
                && records.len() == 1
                && record["backup_id"].as_str() == Some(vin.id.as_str())
                && record["passed"] == Value::Bool(true)
                && record["level_reached"].as_str() == Some("restore");
            d.check(
                "every `verify last --level restore`: ok, one record, for the prepared backup, \
                 passed, level_reached restore",
                pass,
                format!(
                    "ok {}, {} record(s), backup {}, passed {}, level_reached {}",
                    json["ok"],
                    records.len(),
                    record["backup_id"],
                    record["passed"],
                    record["level_reached"]
                ),
            );
            sample.verify_s = timings_sum(&record);
            sample.levels = level_timings(&record);
        }
        Kind::ShellRestore => {
            let text = fs::read_to_string(&timed.stdout)?;
            let got: Vec<&str> = text.split_whitespace().collect();
            let want: Vec<String> = d.counts.iter().map(|(_, n)| n.to_string()).collect();
            let pass = got == want;
            d.check(
                "every shell restore: its COUNT(*) of each table equal the source's",
                pass,
                format!(
                    "{} (source: {})",
                    got.join(", "),
                    d.counts
                        .iter()
                        .map(|(t, n)| format!("{t} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    if matches!(
        kind,
        Kind::ToolVerifyRestore | Kind::ShellRestore | Kind::ToolDefault
    ) {
        let left = data::scratch_databases(ctx.server, SHELL_SCRATCH_DB)?;
        for db in &left {
            data::sql(ctx.server, "", &format!("DROP DATABASE IF EXISTS `{db}`"))?;
        }
        d.check(
            "no scratch database left on the server after a level-4 run",
            left.is_empty(),
            if left.is_empty() {
                "none".into()
            } else {
                left.join(", ")
            },
        );
    }
    Ok(())
}

/// The tool's artifacts: the sum over `STORE/backups/*/data`.
fn store_data_size(store: &Path) -> Res<u64> {
    let mut total = 0;
    for entry in fs::read_dir(store.join("backups"))? {
        let data = entry?.path().join("data");
        if data.exists() {
            total += dir_size(&data)?;
        }
    }
    Ok(total)
}
