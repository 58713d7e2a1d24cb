//! `bench-s3`: times `pre-deploy backup` into an S3 store (a real Garage server) side by side
//! with the same backup into a local store, and bucket snapshots side by side with `rclone copy`
//! and a bucket listing (issue 3); checks what was stored independently of the tool and writes
//! `benches/REPORT.s3.md` and `benches/report.s3.json`.
//!
//! Run it through `benches/run-s3.sh` (builds the release binaries first); `--help` lists the
//! flags.

mod data;
mod report;
mod runs;

use std::fs;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use benches::pg::{Load, Pg};
use benches::{CommonArgs, Res, about, display};
use predeploy_tests::s3::{GarageServer, S3Server};

use data::BucketSet;
use report::Report;
use runs::{DatasetRun, Series};

/// Times pre-deploy with an S3 store and bucket sources against local-store and rclone
/// baselines, on a throwaway PostgreSQL 15 and Garage (see benches/README.md).
#[derive(Debug, Parser)]
#[command(name = "bench-s3")]
pub struct Opts {
    #[command(flatten)]
    common: CommonArgs,
    /// One section: `store` (D2 into Garage vs a local store) or `bucket` (B1/B2 snapshots vs
    /// rclone); default both
    #[arg(long, value_name = "SECTION", value_parser = ["store", "bucket"])]
    only: Option<String>,
}

impl Opts {
    fn runs(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|s| s == section)
    }
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench-s3: a correctness check FAILED (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench-s3: aborted: {}", benches::redact(&e.to_string()));
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
        ("rclone", "rclone"),
        ("zstd", "zstd"),
        (benches::exec::GNU_TIME, "time"),
    ])
}

fn versions(opts: &Opts) -> Vec<(String, String)> {
    let mut v = about::machine();
    v.extend([
        (
            "pre-deploy".into(),
            about::version(&opts.common.tool, &["--version"])
                + &format!(" ({})", opts.common.tool.display()),
        ),
        (
            "garage".into(),
            about::version(GarageServer::binary(), &["--version"])
                + " (single node, sqlite, no fsync)",
        ),
        ("rclone".into(), about::version("rclone", &["--version"])),
        ("workspace".into(), about::workspace()),
    ]);
    v
}

fn run(opts: &Opts) -> Res<bool> {
    let started = Instant::now();
    preflight(opts)?;
    let date = about::version("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let work = tempfile::Builder::new().prefix("bench-s3.").tempdir()?;
    eprintln!(
        "bench-s3: starting Garage (work dir {})",
        work.path().display()
    );
    let garage = GarageServer::start();
    let s3_env = data::s3_env(&garage);
    let mut datasets = Vec::new();
    let mut targets = Vec::new();

    if opts.runs("store") {
        eprintln!("bench-s3: starting PostgreSQL 15");
        let pg = Pg::start()?;
        let mixed_sql = predeploy_tests::fixtures::mixed_dataset_sql()
            .ok_or("shared/data/mixed_dataset.sql not found")?;
        let (full, half) = if opts.common.quick {
            (20_000, 10_000)
        } else {
            (1_500_000, 750_000)
        };
        let bucket = garage.create_bucket("bench-store");
        for (id, rows) in [("D2", full), ("D2-half", half)] {
            let db = pg.create_database(&id.to_lowercase().replace('-', "_"));
            eprintln!("bench-s3: loading {id} (rows={rows})");
            let (load_s, counts) = pg.load(&db, Load::Mixed { rows }, &mixed_sql)?;
            eprintln!("bench-s3:   {load_s:.1} s, {counts:?}");
            let ctx = runs::StoreCtx {
                pg: &pg,
                db: &db,
                counts: &counts,
                garage: &garage,
                bucket: &bucket,
                s3_env: &s3_env,
            };
            let description = format!("mixed_dataset.sql, rows={rows}");
            datasets.push(runs::store_dataset(
                opts,
                id,
                description,
                &ctx,
                work.path(),
            )?);
        }
        targets.extend(report::store_targets(&datasets));
    }

    if opts.runs("bucket") {
        let sets = if opts.common.quick {
            BucketSet::quick()
        } else {
            BucketSet::full()
        };
        let store_bucket = garage.create_bucket("bench-bucket-store");
        let copy_bucket = garage.create_bucket("bench-rclone-copy");
        for set in sets {
            let source = garage.create_bucket(&format!("bench-{}", set.id));
            let files = work.path().join(format!("{}-files", set.id));
            eprintln!("bench-s3: generating {} ({})", set.id, set.describe());
            set.generate(&files)?;
            data::rclone(
                &s3_env,
                &[
                    "copy",
                    &files.to_string_lossy(),
                    &format!("src:{source}"),
                    "--transfers",
                    "8",
                ],
            )?;
            fs::remove_dir_all(&files)?;
            let listed = data::count_objects(&s3_env, &format!("src:{source}"))?;
            if listed != set.objects {
                return Err(format!(
                    "{}: the source bucket lists {listed} objects, not {}",
                    set.id, set.objects
                )
                .into());
            }
            let ctx = runs::BucketCtx {
                garage: &garage,
                source: &source,
                store_bucket: &store_bucket,
                copy_bucket: &copy_bucket,
                s3_env: &s3_env,
            };
            datasets.push(runs::bucket_dataset(opts, set, &ctx, work.path())?);
        }
        targets.extend(report::bucket_targets(&datasets));
    }
    targets.push(report::rss_target(&datasets));

    let report = Report {
        mode: if opts.common.quick { "quick" } else { "full" },
        invocation: CommonArgs::invocation("bench-s3"),
        date,
        total_s: started.elapsed().as_secs_f64(),
        versions: versions(opts),
        warmup: opts.common.warmup,
        rounds: opts.common.rounds(),
        datasets,
        targets,
    };
    let suffix = match (opts.common.quick, opts.only.as_deref()) {
        (false, None) => ".s3".to_owned(),
        (quick, only) => format!(
            ".s3{}{}",
            if quick { "-quick" } else { "" },
            only.map(|o| format!("-{o}")).unwrap_or_default()
        ),
    };
    fs::create_dir_all(&opts.common.out_dir)?;
    let md = opts.common.out_dir.join(format!("REPORT{suffix}.md"));
    let json = opts.common.out_dir.join(format!("report{suffix}.json"));
    fs::write(&md, report.to_markdown())?;
    fs::write(
        &json,
        serde_json::to_string_pretty(&report.to_json())? + "\n",
    )?;
    eprintln!("bench-s3: wrote {} and {}", md.display(), json.display());
    for t in &report.targets {
        eprintln!("bench-s3: target {}: {} -> {:?}", t.what, t.measured, t.met);
    }
    Ok(report.correct())
}

/// Median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    benches::Stats::of(xs).map_or(f64::NAN, |s| s.median)
}

impl Series {
    /// The median wall time of the counted runs.
    pub fn median_wall(&self) -> f64 {
        median(&self.samples.iter().map(|s| s.wall_s).collect::<Vec<_>>())
    }
}

impl DatasetRun {
    /// The series named `key`.
    pub fn series(&self, key: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.key == key)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use super::*;

    #[test]
    fn displays_commands_without_passwords() {
        let argv: Vec<OsString> = ["pre-deploy", "--source", "db=postgres://u:pw@h/d", "a b"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            display(&argv),
            "pre-deploy --source 'db=postgres://u:***@h/d' 'a b'"
        );
    }

    #[test]
    fn generates_distinct_deterministic_objects() {
        let set = BucketSet {
            id: "T",
            objects: 3,
            size: 1000,
        };
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        set.generate(a.path()).expect("generate");
        set.generate(b.path()).expect("generate");
        let read = |d: &Path, i: usize| {
            fs::read(d.join(format!("{:02}/00/object-{i:05}.bin", i % 16))).expect("object")
        };
        assert_eq!(read(a.path(), 0), read(b.path(), 0));
        assert_ne!(read(a.path(), 0), read(a.path(), 1));
        assert_eq!(read(a.path(), 2).len(), 1000);
    }
}
