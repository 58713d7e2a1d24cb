//! The measured rounds of both sections, and the checks of what each tool run stored.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use benches::Res;
use benches::exec::{Timed, run_timed};
use benches::pg::Pg;
use predeploy_tests::s3::S3Server;
use serde_json::Value;

use crate::data::{self, BucketSet};
use crate::{Opts, display};

/// One counted run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Wall seconds (GNU time).
    pub wall_s: f64,
    /// Peak RSS of the largest process of the tree, KiB.
    pub max_rss_kib: u64,
    /// The tool's own snapshot phase (`snapshot_seconds` of its `--json`), when a tool run.
    pub snapshot_s: Option<f64>,
    /// The tool's verification time (sum of its record's level timings), when a tool run.
    pub verify_s: Option<f64>,
}

/// All counted runs of one command on one dataset.
#[derive(Debug, Clone)]
pub struct Series {
    /// Short name (`tool_garage`, `rclone_copy`, …).
    pub key: &'static str,
    /// The command line of the last run, passwords redacted.
    pub command: String,
    /// Whether the tool ran (not a baseline).
    pub tool: bool,
    /// Whether it talked to S3 (for the RSS target).
    pub s3: bool,
    /// Counted runs.
    pub samples: Vec<Sample>,
}

/// One check of what was stored, reported as pass/fail.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub pass: bool,
    /// What was found.
    pub found: String,
}

/// A dataset with its series and checks.
#[derive(Debug, Clone)]
pub struct DatasetRun {
    /// `D2`, `B1`, …
    pub id: &'static str,
    /// Which section (`store` or `bucket`).
    pub section: &'static str,
    /// What it holds.
    pub description: String,
    /// One series per command, in round order.
    pub series: Vec<Series>,
    /// Correctness checks.
    pub checks: Vec<Check>,
}

impl DatasetRun {
    fn new(id: &'static str, section: &'static str, description: String) -> DatasetRun {
        DatasetRun {
            id,
            section,
            description,
            series: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Times `argv`, and records it under `key` when `counted`. Returns the tool's `--json`.
    fn measure(
        &mut self,
        (key, tool, s3): (&'static str, bool, bool),
        argv: &[OsString],
        env: &[(OsString, OsString)],
        work: &Path,
        counted: bool,
    ) -> Res<Option<Value>> {
        let tag = format!("{}-{key}", self.id);
        let timed: Timed = run_timed(argv, env, work, &tag, false)?;
        let json = if tool {
            let text = fs::read_to_string(&timed.stdout)?;
            Some(serde_json::from_str::<Value>(text.trim()).map_err(|e| {
                format!("{key}: the tool's --json output is not JSON ({e}): {text:.300}")
            })?)
        } else {
            None
        };
        eprintln!(
            "bench-s3: {:<7} {:<12} {:>7.2} s {:>7.1} MiB{}",
            self.id,
            key,
            timed.wall_s,
            timed.max_rss_kib as f64 / 1024.0,
            if counted { "" } else { "  (warm-up)" }
        );
        if counted {
            let sample = Sample {
                wall_s: timed.wall_s,
                max_rss_kib: timed.max_rss_kib,
                snapshot_s: json.as_ref().and_then(|j| j["snapshot_seconds"].as_f64()),
                verify_s: json.as_ref().map(verify_seconds),
            };
            match self.series.iter_mut().find(|s| s.key == key) {
                Some(s) => {
                    s.samples.push(sample);
                    s.command = display(argv);
                }
                None => self.series.push(Series {
                    key,
                    command: display(argv),
                    tool,
                    s3,
                    samples: vec![sample],
                }),
            }
        }
        Ok(json)
    }

    fn check(&mut self, what: impl Into<String>, pass: bool, found: impl Into<String>) {
        let c = Check {
            what: what.into(),
            pass,
            found: found.into(),
        };
        eprintln!(
            "bench-s3: {} check {}: {} ({})",
            self.id,
            if c.pass { "ok" } else { "FAILED" },
            c.what,
            c.found
        );
        self.checks.push(c);
    }
}

/// Sum of the level timings of the verification record in a `backup --json` output.
fn verify_seconds(json: &Value) -> f64 {
    json["verification"]["timings"].as_array().map_or(0.0, |t| {
        t.iter().filter_map(|x| x["seconds"].as_f64()).sum()
    })
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The tool's `backup --json`: its id.
fn backup_id(json: &Value) -> Res<String> {
    Ok(json["id"]
        .as_str()
        .ok_or("the tool's --json has no \"id\"")?
        .to_owned())
}

/// What the store section needs.
pub struct StoreCtx<'a> {
    pub pg: &'a Pg,
    pub db: &'a str,
    pub counts: &'a [(String, u64)],
    pub garage: &'a dyn S3Server,
    pub bucket: &'a str,
    pub s3_env: &'a [(OsString, OsString)],
}

/// The store section on one dataset: `pre-deploy backup` of the database into a local store
/// and into Garage, alternating, each into a fresh store. The first counted Garage backup of
/// every dataset is downloaded with rclone and restored with `pg_restore` to check its counts.
pub fn store_dataset(
    opts: &Opts,
    id: &'static str,
    description: String,
    ctx: &StoreCtx<'_>,
    work: &Path,
) -> Res<DatasetRun> {
    let mut d = DatasetRun::new(id, "store", description);
    let mut env = ctx.pg.env();
    env.extend(ctx.s3_env.iter().cloned());
    let source = format!("db={}", ctx.pg.url(ctx.db));
    let mut checked = false;
    for round in 0..opts.common.warmup + opts.common.rounds() {
        let counted = round >= opts.common.warmup;
        let local_first = round % 2 == 0;
        for garage in [!local_first, local_first] {
            let prefix = format!("{id}-r{round}");
            let store = if garage {
                ctx.garage.url(ctx.bucket, &prefix)
            } else {
                work.join(format!("{prefix}-local")).display().to_string()
            };
            let key = if garage { "tool_garage" } else { "tool_local" };
            let mut argv: Vec<OsString> = vec![opts.common.tool.clone().into()];
            argv.extend(os(&["backup", "--source", &source, "--store", &store]));
            argv.extend(os(&["--verify-level", "checksum", "--json"]));
            let json = d
                .measure((key, true, garage), &argv, &env, work, counted)?
                .ok_or("no JSON")?;
            if garage && counted && !checked {
                checked = true;
                let backup = backup_id(&json)?;
                check_pg_restore(&mut d, ctx, &prefix, &backup, work)?;
            }
            if garage {
                data::rclone(
                    ctx.s3_env,
                    &["purge", &format!("dst:{}/{prefix}", ctx.bucket)],
                )?;
            } else {
                fs::remove_dir_all(&store)?;
            }
        }
    }
    Ok(d)
}

/// Downloads the dump of `backup` from Garage with rclone, restores it with `pg_restore` into
/// a new database and compares the row counts with the source's.
fn check_pg_restore(
    d: &mut DatasetRun,
    ctx: &StoreCtx<'_>,
    prefix: &str,
    backup: &str,
    work: &Path,
) -> Res<()> {
    let remote = format!(
        "dst:{}/{prefix}/backups/{backup}/data/db/dump.pgc.zst",
        ctx.bucket
    );
    let compressed = work.join("check.pgc.zst");
    let archive = work.join("check.pgc");
    data::rclone(
        ctx.s3_env,
        &["copyto", &remote, &compressed.to_string_lossy()],
    )?;
    let status = Command::new("zstd")
        .args(["-q", "-dc"])
        .arg(&compressed)
        .stdout(fs::File::create(&archive)?)
        .stderr(Stdio::inherit())
        .status()?;
    if !status.success() {
        return Err(format!("zstd -dc of the downloaded dump failed: {status}").into());
    }
    let restored = ctx.pg.create_database("s3_check");
    let mut cmd = ctx.pg.client("pg_restore");
    cmd.args(["-j2", "--exit-on-error"])
        .args(ctx.pg.conn_args())
        .args(["-d", &restored])
        .arg(&archive);
    let restore = benches::exec::run_plain(cmd, "pg_restore of the downloaded dump");
    fs::remove_file(&compressed)?;
    fs::remove_file(&archive)?;
    restore?;
    let mut found = Vec::new();
    let mut pass = true;
    for (table, rows) in ctx.counts {
        let got = ctx.pg.count(&restored, table)?;
        pass &= got == *rows;
        found.push(format!("{table} {got}/{rows}"));
    }
    ctx.pg.drop_database(&restored);
    d.check(
        "the dump downloaded from Garage (rclone copyto, zstd -dc) restores with pg_restore -j2 \
         and its count(*) equal the source's",
        pass,
        found.join(", "),
    );
    Ok(())
}

/// What the bucket section needs.
pub struct BucketCtx<'a> {
    pub garage: &'a dyn S3Server,
    /// The bucket holding the dataset.
    pub source: &'a str,
    /// The bucket the tool's stores live in.
    pub store_bucket: &'a str,
    /// The bucket rclone copies into.
    pub copy_bucket: &'a str,
    pub s3_env: &'a [(OsString, OsString)],
}

/// The bucket section on one dataset. Each round: a first snapshot into a fresh store and
/// `rclone copy` into a fresh prefix (alternating), then the second snapshot of the unchanged
/// bucket into a store that already holds one, and a listing of the bucket (alternating).
pub fn bucket_dataset(
    opts: &Opts,
    set: BucketSet,
    ctx: &BucketCtx<'_>,
    work: &Path,
) -> Res<DatasetRun> {
    let mut d = DatasetRun::new(set.id, "bucket", set.describe());
    let env = ctx.s3_env;
    let source_url = ctx.garage.url(ctx.source, "");
    let source = format!("uploads={source_url}");
    let tool_backup = |store: &str| -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![opts.common.tool.clone().into()];
        argv.extend(os(&["backup", "--source", &source, "--store", store]));
        argv.extend(os(&["--verify-level", "checksum", "--json"]));
        argv
    };
    // The store of the second snapshots gets its first backup untimed.
    let second_prefix = format!("{}-second", set.id);
    let second_store = ctx.garage.url(ctx.store_bucket, &second_prefix);
    let first = d
        .measure(
            ("prepare", true, true),
            &tool_backup(&second_store),
            env,
            work,
            false,
        )?
        .ok_or("no JSON")?;
    check_counts(&mut d, &first, "first snapshot", set.objects as u64, 0);
    let list = os(&[
        "rclone",
        "lsf",
        "-R",
        "--files-only",
        &format!("src:{}", ctx.source),
    ]);
    let mut last_second = None;
    for round in 0..opts.common.warmup + opts.common.rounds() {
        let counted = round >= opts.common.warmup;
        let prefix = format!("{}-r{round}", set.id);
        let tool_first = round % 2 == 0;
        for tool in [tool_first, !tool_first] {
            if tool {
                let store = ctx.garage.url(ctx.store_bucket, &prefix);
                let json = d
                    .measure(
                        ("tool_first", true, true),
                        &tool_backup(&store),
                        env,
                        work,
                        counted,
                    )?
                    .ok_or("no JSON")?;
                if round == 0 {
                    check_counts(&mut d, &json, "fresh-store snapshot", set.objects as u64, 0);
                }
                data::rclone(
                    env,
                    &["purge", &format!("dst:{}/{prefix}", ctx.store_bucket)],
                )?;
            } else {
                let argv = os(&[
                    "rclone",
                    "copy",
                    &format!("src:{}", ctx.source),
                    &format!("dst:{}/{prefix}", ctx.copy_bucket),
                ]);
                d.measure(("rclone_copy", false, true), &argv, env, work, counted)?;
                let copied =
                    data::count_objects(env, &format!("dst:{}/{prefix}", ctx.copy_bucket))?;
                if copied != set.objects {
                    return Err(
                        format!("rclone copy copied {copied} of {} objects", set.objects).into(),
                    );
                }
                data::rclone(
                    env,
                    &["purge", &format!("dst:{}/{prefix}", ctx.copy_bucket)],
                )?;
            }
        }
        for tool in [!tool_first, tool_first] {
            if tool {
                let json = d
                    .measure(
                        ("tool_second", true, true),
                        &tool_backup(&second_store),
                        env,
                        work,
                        counted,
                    )?
                    .ok_or("no JSON")?;
                let reused = stat(&json, "reused");
                if reused != Some(set.objects as u64) || stat(&json, "uploaded") != Some(0) {
                    return Err(format!(
                        "{}: the second snapshot of the unchanged bucket did not reuse every \
                         object: reused {reused:?}, uploaded {:?}",
                        set.id,
                        stat(&json, "uploaded")
                    )
                    .into());
                }
                last_second = Some(json);
            } else {
                d.measure(("rclone_list", false, true), &list, env, work, counted)?;
            }
        }
    }
    let last = last_second.ok_or("no second snapshot ran")?;
    check_counts(
        &mut d,
        &last,
        "unchanged second snapshot",
        0,
        set.objects as u64,
    );
    check_bucket_restore(&mut d, ctx, &second_store, &backup_id(&last)?, opts, work)?;
    Ok(d)
}

/// A bucket source's counter from a `backup --json` (`reused`, `uploaded`, …).
fn stat(json: &Value, key: &str) -> Option<u64> {
    json["manifest"]["sources"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == "bucket")?["stats"][key]
        .as_u64()
}

fn check_counts(d: &mut DatasetRun, json: &Value, what: &str, uploaded: u64, reused: u64) {
    let (u, r) = (stat(json, "uploaded"), stat(json, "reused"));
    d.check(
        format!("{what}: {uploaded} objects uploaded, {reused} reused"),
        u == Some(uploaded) && r == Some(reused),
        format!("uploaded {u:?}, reused {r:?}"),
    );
}

/// Restores `backup` into a new bucket with `pre-deploy restore` and compares it with the
/// source bucket byte for byte (`rclone check --download`).
fn check_bucket_restore(
    d: &mut DatasetRun,
    ctx: &BucketCtx<'_>,
    store: &str,
    backup: &str,
    opts: &Opts,
    work: &Path,
) -> Res<()> {
    let target = ctx.garage.create_bucket(&format!("bench-restore-{}", d.id));
    let mut argv: Vec<OsString> = vec![opts.common.tool.clone().into()];
    argv.extend(os(&[
        "restore",
        backup,
        "--store",
        store,
        "--source",
        "uploads",
        "--to",
        &ctx.garage.url(&target, ""),
        "--yes",
    ]));
    d.measure(("restore", false, true), &argv, ctx.s3_env, work, false)?;
    let check = data::rclone(
        ctx.s3_env,
        &[
            "check",
            "--download",
            &format!("src:{}", ctx.source),
            &format!("dst:{target}"),
        ],
    );
    d.check(
        "pre-deploy restore of the last second snapshot into a new bucket equals the source \
         (rclone check --download)",
        check.is_ok(),
        match check {
            Ok(_) => "identical".to_owned(),
            Err(e) => e.to_string(),
        },
    );
    Ok(())
}
