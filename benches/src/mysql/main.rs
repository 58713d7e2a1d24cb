//! `bench-mysql`: times `pre-deploy backup` of a MariaDB database side by side with
//! `mariadb-dump` (the floor) and `mariadb-dump | gzip -9` (the seed pattern), and `pre-deploy
//! verify --level restore` side by side with the same restore done in the shell (issue 12);
//! checks every run and writes `benches/REPORT.mysql.md` and `benches/report.mysql.json`.
//!
//! Run it through `benches/run-mysql.sh` (builds the release binaries first); `--help` lists
//! the flags.

mod data;
mod report;
mod runs;

use std::fs;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use benches::{CommonArgs, Res, about};
use predeploy_tests::mysql::{MariaDbServer, client_tool};

use report::Report;
use runs::{DatasetRun, Kind};

/// Times pre-deploy on MySQL/MariaDB against `mariadb-dump` baselines and a shell restore, on a
/// throwaway MariaDB (see benches/README.md).
#[derive(Debug, Parser)]
#[command(name = "bench-mysql")]
pub struct Opts {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench-mysql: a correctness check FAILED (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench-mysql: aborted: {}", benches::redact(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn preflight(opts: &Opts) -> Res<()> {
    if !opts.common.tool.is_file() {
        return Err(format!(
            "the pre-deploy binary {} does not exist (cargo build --release -p bins)",
            opts.common.tool.display()
        )
        .into());
    }
    // scripts/setup.sh installs them.
    about::require(&[
        ("/usr/sbin/mariadbd", "mariadb-server"),
        ("mariadb", "mariadb-client"),
        ("mariadb-dump", "mariadb-client"),
        ("zstd", "zstd"),
        ("gzip", "gzip"),
        (benches::exec::GNU_TIME, "time"),
    ])
}

fn versions(opts: &Opts, server: &MariaDbServer) -> Vec<(String, String)> {
    let mut v = about::machine();
    let server_version = data::sql(server, "", "SELECT VERSION()")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let settings = data::sql(
        server,
        "",
        "SELECT CONCAT('innodb_buffer_pool_size=', @@innodb_buffer_pool_size DIV 1048576, 'M, \
         log_bin=', @@log_bin, ', innodb_flush_log_at_trx_commit=', \
         @@innodb_flush_log_at_trx_commit, ', sync_binlog=', @@sync_binlog)",
    )
    .map(|s| s.trim().to_owned())
    .unwrap_or_default();
    v.extend([
        (
            "pre-deploy".into(),
            about::version(&opts.common.tool, &["--version"])
                + &format!(" ({})", opts.common.tool.display()),
        ),
        (
            "MariaDB server".into(),
            format!("{server_version} (test harness, loopback; {settings})"),
        ),
        (
            "mariadb-dump".into(),
            about::version(client_tool("mariadb-dump"), &["--version"]),
        ),
        ("zstd".into(), about::version("zstd", &["--version"])),
        ("gzip".into(), about::version("gzip", &["--version"])),
        ("workspace".into(), about::workspace()),
    ]);
    v
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(opts: &Opts) -> Res<bool> {
    let started = Instant::now();
    let load_before = loadavg();
    preflight(opts)?;
    let date = about::version("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let work = tempfile::Builder::new().prefix("bench-mysql.").tempdir()?;
    eprintln!(
        "bench-mysql: starting MariaDB (work dir {})",
        work.path().display()
    );
    let server = MariaDbServer::start();
    let home = data::home_with_my_cnf(&server, work.path())?;
    let env = data::env(&home);
    let mut datasets = Vec::new();
    for set in data::datasets(opts.common.quick) {
        let db = set.id.to_lowercase().replace('-', "_");
        eprintln!("bench-mysql: loading {} ({})", set.id, set.describe());
        let (load_s, counts) = data::load(&server, &db, &set)?;
        eprintln!("bench-mysql:   {load_s:.1} s, {counts:?}");
        let mut d = DatasetRun {
            id: set.id,
            description: set.describe(),
            db_bytes: data::db_size(&server, &db)?,
            load_s,
            counts,
            series: Vec::new(),
            checks: Vec::new(),
        };
        let ctx = runs::Ctx {
            opts,
            server: &server,
            db: &db,
            env: &env,
            work: work.path(),
        };
        // The half dataset is for the RSS check: the floor and the two backups.
        let kinds: &[Kind] = if set.id == "M2" {
            &Kind::ALL
        } else {
            &[Kind::Floor, Kind::ToolChecksum, Kind::ToolDefault]
        };
        runs::rounds(&ctx, &mut d, kinds)?;
        data::sql(&server, "", &format!("DROP DATABASE `{db}`"))?;
        datasets.push(d);
    }
    let targets = report::targets(&datasets);
    let report = Report {
        mode: if opts.common.quick { "quick" } else { "full" },
        invocation: CommonArgs::invocation("bench-mysql"),
        date,
        total_s: started.elapsed().as_secs_f64(),
        versions: versions(opts, &server),
        load: (load_before, loadavg()),
        warmup: opts.common.warmup,
        rounds: opts.common.rounds(),
        datasets,
        targets,
    };
    let suffix = if opts.common.quick {
        ".mysql-quick"
    } else {
        ".mysql"
    };
    fs::create_dir_all(&opts.common.out_dir)?;
    let md = opts.common.out_dir.join(format!("REPORT{suffix}.md"));
    let json = opts.common.out_dir.join(format!("report{suffix}.json"));
    fs::write(&md, report.to_markdown())?;
    fs::write(
        &json,
        serde_json::to_string_pretty(&report.to_json())? + "\n",
    )?;
    eprintln!("bench-mysql: wrote {} and {}", md.display(), json.display());
    for t in &report.targets {
        eprintln!(
            "bench-mysql: target {}: {} -> {:?}",
            t.what, t.measured, t.met
        );
    }
    Ok(report.correct())
}

/// Median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    benches::Stats::of(xs).map_or(f64::NAN, |s| s.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_at_least_a_million_rows_and_halve() {
        let [full, half] = data::datasets(false);
        assert!(full.total_rows() >= 1_000_000, "{}", full.total_rows());
        assert_eq!(half.events * 2, full.events);
        let [quick, _] = data::datasets(true);
        assert!(quick.total_rows() < 25_000);
        let sql = full.sql();
        for t in data::TABLES {
            assert!(sql.contains(&format!("CREATE TABLE {t} (")), "{t}");
        }
        assert!(sql.contains("seq_1_to_1000000"));
        assert!(!sql.contains("RAND("), "repeatable: no RAND()");
    }

    #[test]
    fn round_order_interleaves_tool_and_baselines() {
        let keys: Vec<&str> = Kind::ALL.iter().map(|k| k.key()).collect();
        assert_eq!(
            keys,
            [
                "floor",
                "seed",
                "tool_checksum",
                "tool_default",
                "tool_verify_restore",
                "shell_restore"
            ]
        );
        assert!(Kind::ToolVerifyRestore.is_tool() && !Kind::ShellRestore.is_tool());
    }
}
