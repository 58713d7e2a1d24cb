//! `bench-backup`: times `pre-deploy backup` side by side with the baselines of
//! `shared/docs/BENCHMARKS.md`, and `pre-deploy verify` side by side with its shell equivalents,
//! on a throwaway PostgreSQL 15; checks that the tool's dump restores, and writes
//! `benches/REPORT.md` and `benches/report.json`.
//!
//! Run it through `benches/run.sh` (builds the release binaries first); `--help` lists the flags.

mod commands;
mod report;
mod results;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::Parser;

use benches::exec::{self, run_plain, run_timed};
use benches::pg::{self, Load, Pg};
use benches::{about, hyperfine};
use commands::{
    COUNTED_TABLES, Kind, ROUND_ORDER, SHELL_SCRATCH_DB, Section, Target, VERIFY_ROUND_ORDER,
    VerifyInputs,
};
use report::Report;
use results::{CmdResult, Correctness, DatasetResult, Overhead, Run, VerifyChecks, VerifySection};

pub use benches::{CommonArgs, Res, redact};

/// Times `pre-deploy backup` and `pre-deploy verify` against their baselines on a throwaway
/// PostgreSQL 15 (see benches/README.md).
#[derive(Debug, Parser)]
#[command(name = "bench-backup")]
struct Opts {
    #[command(flatten)]
    common: CommonArgs,
    /// Run one section (default both); the report files get the section in their name
    /// (REPORT.verify.md, REPORT.quick-verify.md, ...)
    #[arg(long, value_name = "SECTION", value_enum)]
    only: Option<Section>,
    /// Debug: do not run the tool at all (no targets, no restore check; the verify baselines
    /// check the shell reference's archive instead)
    #[arg(long)]
    baselines_only: bool,
}

impl Opts {
    /// The sections this run measures, in the order they run.
    fn sections(&self) -> Vec<Section> {
        match self.only {
            Some(s) => vec![s],
            None => vec![Section::Backup, Section::Verify],
        }
    }
}

/// One dataset of the plan.
struct Plan {
    id: &'static str,
    description: String,
    load: Load,
    commands: Vec<Kind>,
    /// Whether the verification section runs on this dataset.
    verify: bool,
}

fn plans(quick: bool) -> Vec<Plan> {
    let (full, half) = if quick {
        (20_000, 10_000)
    } else {
        (1_500_000, 750_000)
    };
    vec![
        Plan {
            id: "D0",
            description: "`pgbench -i -s 1` (fixed overhead)".into(),
            load: Load::Pgbench { scale: 1 },
            commands: ROUND_ORDER.to_vec(),
            verify: false,
        },
        Plan {
            id: "D2",
            description: format!("mixed_dataset.sql, rows={full} (the primary dataset)"),
            load: Load::Mixed { rows: full },
            commands: ROUND_ORDER.to_vec(),
            verify: true,
        },
        Plan {
            id: "D2-half",
            description: format!(
                "mixed_dataset.sql, rows={half} (second size for the RSS check; the slow seed \
                 and pg_dump-default baselines are not repeated here)"
            ),
            load: Load::Mixed { rows: half },
            commands: vec![
                Kind::Floor,
                Kind::ToolChecksum,
                Kind::ToolDefault,
                Kind::ShellRef,
            ],
            verify: true,
        },
    ]
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench-backup: a correctness check FAILED (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench-backup: aborted: {}", redact(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Sum of the sizes of all regular files under `path`.
fn dir_size(path: &Path) -> Res<u64> {
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

/// Check a tool run: `--json` printed an object with "id", and the backup's files exist.
fn check_tool_output(stdout: &Path, store: &Path) -> Res<(serde_json::Value, PathBuf)> {
    let text = fs::read_to_string(stdout)?;
    let json: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "the tool's --json output is not one JSON object ({e}): {:?}",
            text.chars().take(300).collect::<String>()
        )
    })?;
    let id = json
        .get("id")
        .and_then(|v| v.as_str())
        .ok_or("the tool's --json output has no string \"id\"")?;
    let dir = store.join("backups").join(id);
    for rel in [
        "manifest.json",
        "data/db/dump.pgc.zst",
        "data/db/globals.sql.zst",
    ] {
        if !dir.join(rel).is_file() {
            return Err(format!("backup {id}: {rel} is missing under {}", dir.display()).into());
        }
    }
    Ok((json, dir))
}

fn versions(pg: &Pg, opts: &Opts) -> Vec<(String, String)> {
    let settings: Vec<String> = [
        "shared_buffers",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "max_wal_size",
    ]
    .iter()
    .map(|n| {
        let value = pg
            .psql("postgres", &format!("show {n}"))
            .unwrap_or_else(|_| "?".into());
        format!("{n}={value}")
    })
    .collect();
    let mut v = vec![
        (
            "pg_dump".into(),
            about::version(pg.bin("pg_dump"), &["--version"]),
        ),
        (
            "server".into(),
            pg.psql("postgres", "show server_version")
                .unwrap_or_else(|_| "unknown".into()),
        ),
        ("server settings (test harness)".into(), settings.join(", ")),
        ("zstd CLI".into(), about::version("zstd", &["-V"])),
        ("gzip".into(), about::version("gzip", &["-V"])),
        (
            "hyperfine".into(),
            about::version("hyperfine", &["--version"]),
        ),
    ];
    if !opts.baselines_only {
        v.push((
            "pre-deploy".into(),
            format!(
                "{} ({})",
                about::version(&opts.common.tool, &["--version"]),
                opts.common.tool.display()
            ),
        ));
    }
    v.push(("workspace".into(), about::workspace()));
    v
}

/// The programs the baselines need, besides PostgreSQL's (which the harness checks).
fn preflight_programs() -> Res<()> {
    about::require(&[
        (exec::GNU_TIME, "time"),
        ("zstd", "zstd"),
        ("gzip", "gzip"),
        ("bash", "bash"),
        ("tee", "coreutils"),
        ("sha256sum", "coreutils"),
    ])
}

fn preflight_tool(opts: &Opts) -> Res<()> {
    if opts.baselines_only {
        return Ok(());
    }
    if !opts.common.tool.is_file() {
        return Err(format!(
            "the pre-deploy binary {} does not exist (build it: cargo build --release -p bins; \
             --baselines-only skips the tool)",
            opts.common.tool.display()
        )
        .into());
    }
    if opts.sections().contains(&Section::Backup) {
        about::require(&[("hyperfine", "hyperfine")])?;
    }
    // Both sections take backups (the verification section verifies one it took).
    let mut checks = vec![(
        "backup",
        vec!["--source", "--store", "--verify-level", "--json"],
    )];
    if opts.sections().contains(&Section::Verify) {
        checks.push(("verify", vec!["--level", "--source", "--store", "--json"]));
    }
    for (command, flags) in checks {
        let mut c = Command::new(&opts.common.tool);
        c.args([command, "--help"]);
        let help = run_plain(c, &format!("pre-deploy {command} --help"))?;
        for flag in flags {
            if !help.contains(flag) {
                return Err(format!(
                    "`{} {command} --help` does not mention {flag}: not the expected CLI",
                    opts.common.tool.display()
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The PostgreSQL client programs the measured commands use, in the server's `bin/`.
fn preflight_pg_clients(pg: &Pg, sections: &[Section]) -> Res<()> {
    let mut programs = vec!["pg_dump", "psql"];
    if sections.contains(&Section::Backup) {
        programs.push("pg_restore");
    }
    if sections.contains(&Section::Verify) {
        programs.extend(["pg_restore", "createdb", "dropdb"]);
    }
    for p in programs {
        if !pg.bin(p).is_file() {
            return Err(format!("{} is missing", pg.bin(p).display()).into());
        }
    }
    Ok(())
}

fn output_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Floor => "floor.none",
        Kind::Seed => "seed.sql.gz",
        Kind::PgDumpDefault => "pg_dump_default.pgc",
        Kind::ShellRef => "shell_ref.pgc.zst",
        Kind::ToolChecksum => "store-checksum",
        Kind::ToolDefault => "store-default",
        // The verification commands leave no output behind.
        Kind::ShellRestore
        | Kind::ToolVerifyRestore
        | Kind::ShellArchive
        | Kind::ToolVerifyArchive => "none",
    }
}

fn remove(path: &Path) {
    let r = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    if let Err(e) = r
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("warning: cannot remove {}: {e}", path.display());
    }
}

fn run(opts: &Opts) -> Res<bool> {
    let started = Instant::now();
    let sections = opts.sections();
    let run_backup = sections.contains(&Section::Backup);
    let run_verify = sections.contains(&Section::Verify);
    preflight_programs()?;
    preflight_tool(opts)?;
    let mixed_sql = predeploy_tests::fixtures::mixed_dataset_sql()
        .ok_or("shared/data/mixed_dataset.sql not found (predeploy_tests::fixtures)")?;
    let date = about::version("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let work = tempfile::Builder::new().prefix("bench-backup.").tempdir()?;
    eprintln!(
        "bench-backup: starting PostgreSQL 15 (work dir {})",
        work.path().display()
    );
    let pg = Pg::start()?;
    preflight_pg_clients(&pg, &sections)?;
    let env = pg.env();
    let env_display = format!("PGPASSWORD=*** PATH={}:$PATH", pg.bin_dir.display());

    // Load every dataset a section needs first, so that loading never overlaps a measurement.
    let plans: Vec<Plan> = plans(opts.common.quick)
        .into_iter()
        .filter(|p| run_backup || (run_verify && p.verify))
        .collect();
    let mut datasets = Vec::new();
    for plan in &plans {
        let db = pg.create_database(&plan.id.to_lowercase().replace('-', "_"));
        eprintln!(
            "bench-backup: loading {} into {db} ({})",
            plan.id, plan.description
        );
        let (load_s, row_counts) = pg.load(&db, plan.load, &mixed_sql)?;
        let db_size_bytes = pg.db_size(&db)?;
        eprintln!(
            "bench-backup:   {:.1} s, {:.1} MiB, {:?}",
            load_s,
            db_size_bytes as f64 / 1048576.0,
            row_counts
        );
        let commands = if run_backup {
            plan.commands.iter().map(|k| CmdResult::new(*k)).collect()
        } else {
            Vec::new()
        };
        datasets.push(DatasetResult {
            id: plan.id.into(),
            description: plan.description.clone(),
            db,
            db_size_bytes,
            load_s,
            row_counts,
            commands,
            verify: None,
            overhead: None,
        });
    }

    let correctness = if run_backup {
        let kept_store = backup_section(opts, &pg, &env, work.path(), &mut datasets)?;
        if !opts.baselines_only
            && let Some(d0) = datasets.iter_mut().find(|d| d.id == "D0")
        {
            d0.overhead = Some(d0_overhead(opts, &pg, &env, work.path(), d0)?);
        }
        let correctness = match &kept_store {
            Some((store, backup_dir)) => {
                let d2 = datasets
                    .iter()
                    .find(|d| d.id == "D2")
                    .ok_or("no D2 dataset")?;
                let c = check_restore(&pg, d2, backup_dir, work.path());
                remove(store);
                c
            }
            None => Correctness {
                note: if opts.baselines_only {
                    "not run (--baselines-only)".into()
                } else {
                    "not run (no tool run on D2)".into()
                },
                ..Correctness::default()
            },
        };
        eprintln!(
            "bench-backup: correctness: {:?} {}",
            correctness.pass, correctness.note
        );
        correctness
    } else {
        Correctness {
            note: "not run (--only verify)".into(),
            ..Correctness::default()
        }
    };

    let verify_checks = if run_verify {
        let verify_ids: Vec<&str> = plans.iter().filter(|p| p.verify).map(|p| p.id).collect();
        let checks = verify_section(opts, &pg, &env, work.path(), &mut datasets, &verify_ids)?;
        eprintln!(
            "bench-backup: verify checks: {:?} ({} runs checked for scratch databases, \
             leftovers: {:?})",
            checks.pass(),
            checks.runs_checked,
            checks.leftovers
        );
        checks
    } else {
        VerifyChecks::default()
    };

    let targets = if opts.baselines_only {
        Vec::new()
    } else {
        results::evaluate(&datasets, &sections)
    };
    let versions = versions(&pg, opts);
    let invocation = CommonArgs::invocation("bench-backup");
    let report = Report {
        mode: if opts.common.quick { "quick" } else { "full" },
        sections,
        baselines_only: opts.baselines_only,
        invocation,
        date,
        total_s: started.elapsed().as_secs_f64(),
        machine: about::machine(),
        versions,
        warmup: opts.common.warmup,
        rounds: opts.common.rounds(),
        env_display,
        datasets,
        correctness,
        verify_checks,
        targets,
    };
    let suffix = report_suffix(opts.common.quick, opts.baselines_only, opts.only);
    fs::create_dir_all(&opts.common.out_dir)?;
    let md_path = opts.common.out_dir.join(format!("REPORT{suffix}.md"));
    let json_path = opts.common.out_dir.join(format!("report{suffix}.json"));
    fs::write(&md_path, report.to_markdown())?;
    fs::write(
        &json_path,
        serde_json::to_string_pretty(&report.to_json())? + "\n",
    )?;
    eprintln!(
        "bench-backup: wrote {} and {}",
        md_path.display(),
        json_path.display()
    );
    for t in &report.targets {
        eprintln!(
            "bench-backup: target {}: {} -> {:?}",
            t.target, t.measured, t.met
        );
    }
    Ok(report.correctness.pass != Some(false) && report.verify_checks.pass() != Some(false))
}

/// `""` for the full report; otherwise `.quick`, `.baselines`, `.verify`, `.quick-verify`, …
fn report_suffix(quick: bool, baselines_only: bool, only: Option<Section>) -> String {
    let mut parts = Vec::new();
    if quick {
        parts.push("quick");
    }
    if baselines_only {
        parts.push("baselines");
    }
    if let Some(s) = only {
        parts.push(s.key());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(".{}", parts.join("-"))
    }
}

/// Records one run of `c` and prints its progress line.
fn record(
    c: &mut CmdResult,
    dataset: &str,
    (round, total_rounds, warmup): (usize, usize, bool),
    timed: &exec::Timed,
    (size_bytes, tool_timings): (Option<u64>, Vec<(String, f64)>),
) {
    eprintln!(
        "bench-backup: {:<7} round {}/{}{} {:<19} {:>8.2} s  {:>7.1} MiB{}{}",
        dataset,
        round + 1,
        total_rounds,
        if warmup { " (warm-up)" } else { "          " },
        c.kind.key(),
        timed.wall_s,
        timed.max_rss_kib as f64 / 1024.0,
        timed.own_hwm_kib.map_or(String::new(), |k| format!(
            " (own {:.1} MiB)",
            k as f64 / 1024.0
        )),
        size_bytes.map_or(String::new(), |b| format!("  {b} bytes")),
    );
    c.runs.push(Run {
        round,
        warmup,
        wall_s: timed.wall_s,
        runner_wall_s: timed.runner_wall_s,
        max_rss_kib: timed.max_rss_kib,
        own_hwm_kib: timed.own_hwm_kib,
        size_bytes,
        tool_timings,
    });
}

/// The backup section: every dataset's commands, round after round. Returns the store of the
/// tool's first D2 backup (kept for the restore check) and that backup's directory.
fn backup_section(
    opts: &Opts,
    pg: &Pg,
    env: &[(OsString, OsString)],
    work: &Path,
    datasets: &mut [DatasetResult],
) -> Res<Option<(PathBuf, PathBuf)>> {
    let total_rounds = opts.common.warmup + opts.common.rounds();
    let mut kept_store: Option<(PathBuf, PathBuf)> = None;
    for d in datasets.iter_mut() {
        let url = pg.url(&d.db);
        let target = Target {
            bin_dir: &pg.bin_dir,
            port: pg.port,
            db: &d.db,
            url: &url,
            tool: &opts.common.tool,
            verify: None,
        };
        for round in 0..total_rounds {
            let warmup = round < opts.common.warmup;
            for c in &mut d.commands {
                let kind = c.kind;
                let out = work.join(format!("{}-r{round}-{}", d.id, output_name(kind)));
                let built = target.build(kind, &out)?;
                c.display = commands::display(&built.argv);
                if out.exists() {
                    return Err(format!("{} exists before its run", out.display()).into());
                }
                if kind.is_tool() && opts.baselines_only {
                    c.skipped = Some("--baselines-only".into());
                    continue;
                }
                let tag = format!("{}-r{round}-{}", d.id, kind.key());
                let timed = run_timed(&built.argv, env, work, &tag, kind.is_tool())
                    .map_err(|e| format!("{} on {} (round {round}): {e}", kind.key(), d.id))?;
                let mut size_bytes = None;
                if let Some(out) = &built.output {
                    if kind.is_tool() {
                        let (json, backup_dir) = check_tool_output(&timed.stdout, out)
                            .map_err(|e| format!("{} on {}: {e}", kind.key(), d.id))?;
                        size_bytes = Some(store_data_size(out)?);
                        if c.tool_json.is_none() {
                            c.tool_json = Some(json);
                        }
                        if d.id == "D2" && kind == Kind::ToolChecksum && kept_store.is_none() {
                            kept_store = Some((out.clone(), backup_dir));
                        }
                    } else {
                        let len = fs::metadata(out)?.len();
                        if len == 0 {
                            return Err(format!("{} on {}: empty output", kind.key(), d.id).into());
                        }
                        size_bytes = Some(len);
                    }
                    let keep = kept_store.as_ref().is_some_and(|(s, _)| s == out);
                    if !keep {
                        remove(out);
                    }
                }
                remove_run_files(work, &tag);
                let round = (round, total_rounds, warmup);
                record(c, &d.id, round, &timed, (size_bytes, Vec::new()));
            }
        }
    }
    Ok(kept_store)
}

/// The D0 fixed overhead with hyperfine: `floor` and `tool_checksum`, 3 warm-up and 20 counted
/// runs each (quick: 10), a fresh store per tool run (`--prepare 'rm -rf STORE'`). hyperfine
/// checks every exit status; the last run's backup is then checked like every other.
fn d0_overhead(
    opts: &Opts,
    pg: &Pg,
    env: &[(OsString, OsString)],
    work: &Path,
    d0: &DatasetResult,
) -> Res<Overhead> {
    let url = pg.url(&d0.db);
    let target = Target {
        bin_dir: &pg.bin_dir,
        port: pg.port,
        db: &d0.db,
        url: &url,
        tool: &opts.common.tool,
        verify: None,
    };
    let store = work.join("D0-hyperfine-store");
    let bench = |kind: Kind, prepare: Option<String>| -> Res<hyperfine::Bench> {
        Ok(hyperfine::Bench {
            name: kind.key().into(),
            argv: target.build(kind, &store)?.argv,
            prepare,
        })
    };
    let (warmup, runs) = (3, if opts.common.quick { 10 } else { 20 });
    eprintln!("bench-backup: D0      hyperfine: floor and tool_checksum, {runs} runs each");
    let rm = format!("rm -rf {}", commands::sh_quote(&store.to_string_lossy()));
    let (command_line, results) = hyperfine::run(
        &[
            bench(Kind::Floor, None)?,
            bench(Kind::ToolChecksum, Some(rm))?,
        ],
        (warmup, runs),
        env,
        work,
        "D0-overhead",
    )?;
    let [floor, tool] = <[hyperfine::Summary; 2]>::try_from(results)
        .map_err(|r| format!("hyperfine reported {} commands, not 2", r.len()))?;
    // The store holds the last run's backup: check it is complete.
    let backups: Vec<_> = fs::read_dir(store.join("backups"))?.collect::<Result<_, _>>()?;
    let [backup] = backups.as_slice() else {
        return Err(format!("hyperfine's last tool run left {} backups", backups.len()).into());
    };
    for rel in ["manifest.json", "data/db/dump.pgc.zst"] {
        if !backup.path().join(rel).is_file() {
            return Err(format!("hyperfine's last tool run: {rel} is missing").into());
        }
    }
    remove(&store);
    eprintln!(
        "bench-backup: D0      hyperfine: floor {:.3} s, tool_checksum {:.3} s (medians)",
        floor.median, tool.median
    );
    Ok(Overhead {
        command_line,
        warmup,
        runs,
        floor,
        tool,
    })
}

fn remove_run_files(work: &Path, tag: &str) {
    for ext in ["out", "err", "time"] {
        remove(&work.join(format!("{tag}.{ext}")));
    }
}

/// Scratch databases on the server: the tool's (`predeploy_scratch_*`) and the shell
/// baseline's.
fn scratch_databases(pg: &Pg) -> Res<Vec<String>> {
    let out = pg.psql(
        "postgres",
        &format!(
            "select datname from pg_database where starts_with(datname, 'predeploy_scratch_') \
             or datname = '{SHELL_SCRATCH_DB}' order by 1"
        ),
    )?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// The verification section: on each dataset of `ids`, take one backup with the tool
/// (`--verify-level checksum`; with `--baselines-only`, the shell reference's archive instead),
/// then run the tool's verify and its shell equivalents round after round. After every run the
/// server is checked for scratch databases; any found is recorded and dropped.
fn verify_section(
    opts: &Opts,
    pg: &Pg,
    env: &[(OsString, OsString)],
    work: &Path,
    datasets: &mut [DatasetResult],
    ids: &[&str],
) -> Res<VerifyChecks> {
    let total_rounds = opts.common.warmup + opts.common.rounds();
    let mut checks = VerifyChecks {
        ran: true,
        ..VerifyChecks::default()
    };
    checks.present_before = scratch_databases(pg)?;
    for name in &checks.present_before {
        pg.drop_database(name);
    }
    for d in datasets.iter_mut().filter(|d| ids.contains(&d.id.as_str())) {
        let url = pg.url(&d.db);
        let store = work.join(format!("{}-verify-store", d.id));
        let setup_target = Target {
            bin_dir: &pg.bin_dir,
            port: pg.port,
            db: &d.db,
            url: &url,
            tool: &opts.common.tool,
            verify: None,
        };
        let (setup_kind, setup_out) = if opts.baselines_only {
            (
                Kind::ShellRef,
                work.join(format!("{}-verify-dump.pgc.zst", d.id)),
            )
        } else {
            (Kind::ToolChecksum, store.clone())
        };
        let built = setup_target.build(setup_kind, &setup_out)?;
        let tag = format!("{}-verify-setup", d.id);
        eprintln!(
            "bench-backup: {:<7} verify: setting up the backup to verify ({})",
            d.id,
            setup_kind.key()
        );
        let timed = run_timed(&built.argv, env, work, &tag, false)
            .map_err(|e| format!("the backup to verify on {}: {e}", d.id))?;
        let (backup_id, dump) = if opts.baselines_only {
            (None, setup_out.clone())
        } else {
            let (json, dir) = check_tool_output(&timed.stdout, &store)
                .map_err(|e| format!("the backup to verify on {}: {e}", d.id))?;
            let id = json
                .get("id")
                .and_then(|v| v.as_str())
                .ok_or("no id")?
                .to_string();
            (Some(id), dir.join("data/db/dump.pgc.zst"))
        };
        remove_run_files(work, &tag);
        let dump_bytes = fs::metadata(&dump)?.len();
        let source_counts: Vec<u64> = COUNTED_TABLES
            .iter()
            .map(|t| pg.count(&d.db, t))
            .collect::<Res<_>>()?;
        let staging = work.join(format!("{}-shell-restore.pgc", d.id));
        let target = Target {
            verify: Some(VerifyInputs {
                store: &store,
                id: backup_id.as_deref().unwrap_or("(none)"),
                dump: &dump,
                staging: &staging,
            }),
            ..setup_target
        };
        let mut section = VerifySection {
            backup_id: backup_id.clone(),
            setup: commands::display(&built.argv),
            setup_s: timed.wall_s,
            dump_bytes,
            commands: VERIFY_ROUND_ORDER.map(CmdResult::new).to_vec(),
        };
        for round in 0..total_rounds {
            let warmup = round < opts.common.warmup;
            for c in &mut section.commands {
                let kind = c.kind;
                let built = target.build(kind, work)?;
                c.display = commands::display(&built.argv);
                if kind.is_tool() && opts.baselines_only {
                    c.skipped = Some("--baselines-only".into());
                    continue;
                }
                // Every run starts from the same server state: nothing left for the
                // checkpointer from the previous run (untimed).
                pg.psql("postgres", "CHECKPOINT")?;
                let tag = format!("{}-r{round}-{}", d.id, kind.key());
                let timed = run_timed(&built.argv, env, work, &tag, kind.is_tool());
                // Whatever happened, no scratch database may outlive its run.
                checks.runs_checked += 1;
                for name in scratch_databases(pg)? {
                    eprintln!("bench-backup: WARNING: {tag} left scratch database {name}");
                    checks.leftovers.push(format!("{tag}: {name}"));
                    pg.drop_database(&name);
                }
                if staging.exists() {
                    checks
                        .leftovers
                        .push(format!("{tag}: staging file {}", staging.display()));
                    remove(&staging);
                }
                let what = format!("{} on {} (round {round})", kind.key(), d.id);
                let timed = timed.map_err(|e| format!("{what}: {e}"))?;
                let mut tool_timings = Vec::new();
                if let Some(level) = kind.verify_level() {
                    let (json, timings) =
                        check_verify_output(&timed.stdout, backup_id.as_deref(), level)
                            .map_err(|e| format!("{what}: {e}"))?;
                    tool_timings = timings;
                    if c.tool_json.is_none() {
                        c.tool_json = Some(json);
                    }
                } else if kind == Kind::ShellRestore {
                    let counted = fs::read_to_string(&timed.stdout)?;
                    let counted: Vec<u64> = counted
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.trim().parse::<u64>())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("{what}: psql printed {counted:?}: {e}"))?;
                    if counted != source_counts {
                        return Err(format!(
                            "{what}: the shell restore counted {counted:?} rows in {:?}, the \
                             source has {source_counts:?}",
                            COUNTED_TABLES
                        )
                        .into());
                    }
                }
                remove_run_files(work, &tag);
                let round = (round, total_rounds, warmup);
                record(c, &d.id, round, &timed, (None, tool_timings));
            }
        }
        d.verify = Some(section);
        remove(&store);
        if opts.baselines_only {
            remove(&dump);
        }
    }
    Ok(checks)
}

/// Check a `pre-deploy verify --json` run: `{"ok":true,"verifications":[R]}` with R for
/// `backup_id`, passed, at `level`. Returns the JSON and R's per-level `timings`.
fn check_verify_output(
    stdout: &Path,
    backup_id: Option<&str>,
    level: &str,
) -> Res<(serde_json::Value, Vec<(String, f64)>)> {
    let text = fs::read_to_string(stdout)?;
    let json: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "the tool's --json output is not one JSON object ({e}): {:?}",
            text.chars().take(300).collect::<String>()
        )
    })?;
    if json.get("ok") != Some(&serde_json::Value::Bool(true)) {
        return Err("the tool's --json output does not say \"ok\": true".into());
    }
    let records = json
        .get("verifications")
        .and_then(|v| v.as_array())
        .ok_or("the tool's --json output has no \"verifications\" array")?;
    let [record] = records.as_slice() else {
        return Err(format!("expected 1 verification record, got {}", records.len()).into());
    };
    let field = |k: &str| record.get(k).and_then(|v| v.as_str()).unwrap_or("");
    if let Some(id) = backup_id
        && field("backup_id") != id
    {
        return Err(format!(
            "the verification is of backup {:?}, not {id:?}",
            field("backup_id")
        )
        .into());
    }
    if record.get("passed") != Some(&serde_json::Value::Bool(true)) {
        return Err("the verification record does not say \"passed\": true".into());
    }
    if field("level_reached") != level {
        return Err(format!(
            "the verification reached level {:?}, not {level:?} (limited by: {})",
            field("level_reached"),
            record
                .get("limited_by")
                .map_or("-".into(), ToString::to_string)
        )
        .into());
    }
    let timings = record
        .get("timings")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t.get("level")?.as_str()?.to_string(),
                        t.get("seconds")?.as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((json, timings))
}

/// Restore the tool's D2 dump into a new database and compare row counts with the source.
fn check_restore(pg: &Pg, d2: &DatasetResult, backup_dir: &Path, work: &Path) -> Correctness {
    let mut c = Correctness {
        ran: true,
        ..Correctness::default()
    };
    let tables = ["events", "docs"];
    let restored_db = pg.create_database("restore");
    let result = restore_and_count(pg, d2, backup_dir, work, &restored_db, &tables, &mut c);
    pg.drop_database(&restored_db);
    match result {
        Ok(()) => {
            let same = c.source == c.restored && c.source.iter().all(|(_, n)| *n > 0);
            c.pass = Some(same);
            if !same {
                c.note = "row counts differ".into();
            }
        }
        Err(e) => {
            c.pass = Some(false);
            c.note = redact(&e.to_string());
        }
    }
    c
}

fn restore_and_count(
    pg: &Pg,
    d2: &DatasetResult,
    backup_dir: &Path,
    work: &Path,
    restored_db: &str,
    tables: &[&str],
    c: &mut Correctness,
) -> Res<()> {
    for t in tables {
        c.source.push((t.to_string(), pg.count(&d2.db, t)?));
    }
    let dump = backup_dir.join("data/db/dump.pgc.zst");
    let archive = work.join("restore.pgc");
    c.steps.push(format!(
        "zstd -dc STORE/backups/<id>/data/db/dump.pgc.zst > {}",
        archive.display()
    ));
    let status = Command::new("zstd")
        .arg("-q")
        .arg("-dc")
        .arg(&dump)
        .stdout(fs::File::create(&archive)?)
        .status()?;
    if !status.success() {
        return Err(format!("zstd -dc {} failed: {status}", dump.display()).into());
    }
    let mut argv: Vec<OsString> = vec![pg.bin("pg_restore").into()];
    argv.extend(["-j2", "--exit-on-error"].map(OsString::from));
    argv.extend(pg.conn_args().into_iter().map(OsString::from));
    argv.extend(["-d".into(), restored_db.into(), archive.clone().into()]);
    c.steps.push(commands::display(&argv));
    let timed = run_timed(&argv, &pg.env(), work, "restore", false);
    remove(&archive);
    let timed = timed?;
    c.restore_s = Some(timed.wall_s);
    for t in tables {
        c.restored.push((t.to_string(), pg.count(restored_db, t)?));
    }
    c.steps.push(format!(
        "select count(*) from {{{}}} -- in {} and {restored_db}",
        tables.join(", "),
        d2.db
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_a_store() {
        let dir = tempfile::tempdir().expect("temp dir for the test");
        let data = dir.path().join("backups/ID/data/db");
        fs::create_dir_all(&data).expect("mkdir");
        fs::write(data.join("dump.pgc.zst"), [0u8; 100]).expect("write");
        fs::write(data.join("globals.sql.zst"), [0u8; 10]).expect("write");
        fs::write(dir.path().join("backups/ID/manifest.json"), "{}").expect("write");
        assert_eq!(store_data_size(dir.path()).expect("size"), 110);
        let out = dir.path().join("out.json");
        fs::write(&out, "{\"id\": \"ID\"}\n").expect("write");
        let (_, backup_dir) = check_tool_output(&out, dir.path()).expect("valid");
        assert_eq!(backup_dir, dir.path().join("backups/ID"));
        fs::write(&out, "{\"id\": \"OTHER\"}\n").expect("write");
        assert!(check_tool_output(&out, dir.path()).is_err());
    }

    #[test]
    fn report_suffixes() {
        assert_eq!(report_suffix(false, false, None), "");
        assert_eq!(report_suffix(true, false, None), ".quick");
        assert_eq!(report_suffix(false, true, None), ".baselines");
        assert_eq!(report_suffix(true, true, None), ".quick-baselines");
        assert_eq!(
            report_suffix(true, false, Some(Section::Verify)),
            ".quick-verify"
        );
        assert_eq!(
            report_suffix(false, false, Some(Section::Backup)),
            ".backup"
        );
    }

    #[test]
    fn checks_verify_output() {
        let dir = tempfile::tempdir().expect("temp dir for the test");
        let out = dir.path().join("verify.json");
        let record = |passed: bool, level: &str| {
            serde_json::json!({
                "ok": true,
                "verifications": [{
                    "backup_id": "ID",
                    "level_requested": "restore",
                    "level_reached": level,
                    "passed": passed,
                    "timings": [
                        {"level": "decompress", "seconds": 0.5},
                        {"level": "restore", "seconds": 2.0}
                    ],
                    "findings": []
                }]
            })
            .to_string()
        };
        fs::write(&out, record(true, "restore")).expect("write");
        let (_, timings) = check_verify_output(&out, Some("ID"), "restore").expect("valid");
        assert_eq!(
            timings,
            vec![("decompress".into(), 0.5), ("restore".into(), 2.0)]
        );
        assert!(check_verify_output(&out, Some("OTHER"), "restore").is_err());
        assert!(check_verify_output(&out, None, "restore").is_ok());
        fs::write(&out, record(true, "archive")).expect("write");
        assert!(check_verify_output(&out, Some("ID"), "restore").is_err());
        fs::write(&out, record(false, "restore")).expect("write");
        assert!(check_verify_output(&out, Some("ID"), "restore").is_err());
        fs::write(&out, "{\"ok\": true, \"verifications\": []}").expect("write");
        assert!(check_verify_output(&out, Some("ID"), "restore").is_err());
        fs::write(&out, "not json").expect("write");
        assert!(check_verify_output(&out, Some("ID"), "restore").is_err());
    }
}
