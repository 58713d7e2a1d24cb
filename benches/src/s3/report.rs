//! The targets of issue 3 and the report files (`REPORT.s3.md`, `report.s3.json`).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::median;
use crate::runs::{DatasetRun, Series};

/// One target: what it asks, what was measured, whether it was met (`None`: not measured).
#[derive(Debug, Clone)]
pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: Option<bool>,
}

/// Everything the report shows.
pub struct Report {
    pub mode: &'static str,
    pub invocation: String,
    pub date: String,
    pub total_s: f64,
    pub versions: Vec<(String, String)>,
    pub warmup: usize,
    pub rounds: usize,
    pub datasets: Vec<DatasetRun>,
    pub targets: Vec<Target>,
}

fn ratio(d: &DatasetRun, num: &str, den: &str) -> Option<f64> {
    Some(d.series(num)?.median_wall() / d.series(den)?.median_wall())
}

fn snapshot_median(s: &Series) -> Option<f64> {
    let v: Vec<f64> = s.samples.iter().filter_map(|x| x.snapshot_s).collect();
    (!v.is_empty()).then(|| median(&v))
}

fn verify_median(s: &Series) -> Option<f64> {
    let v: Vec<f64> = s.samples.iter().filter_map(|x| x.verify_s).collect();
    (!v.is_empty()).then(|| median(&v))
}

fn max_rss_mib(s: &Series) -> f64 {
    s.samples.iter().map(|x| x.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
}

/// Target: the D2 backup into Garage takes at most 1.15× the same backup into a local store.
pub fn store_targets(datasets: &[DatasetRun]) -> Vec<Target> {
    let d2 = datasets.iter().find(|d| d.id == "D2");
    let r = d2.and_then(|d| ratio(d, "tool_garage", "tool_local"));
    vec![Target {
        what: "D2: `backup` into Garage ≤ 1.15× the same backup into a local store (wall, medians)"
            .into(),
        measured: r.map_or("not measured".into(), |r| format!("{r:.2}×")),
        met: r.map(|r| r <= 1.15),
    }]
}

/// Targets: the first snapshot no slower than `rclone copy`; the unchanged second snapshot at
/// most 1.2× the listing.
pub fn bucket_targets(datasets: &[DatasetRun]) -> Vec<Target> {
    let mut out = Vec::new();
    for d in datasets.iter().filter(|d| d.section == "bucket") {
        let first = ratio(d, "tool_first", "rclone_copy");
        out.push(Target {
            what: format!(
                "{}: snapshot into a fresh store (with level-1 verification) no slower than \
                 `rclone copy` (wall, medians)",
                d.id
            ),
            measured: first.map_or("not measured".into(), |r| format!("{r:.2}×")),
            met: first.map(|r| r <= 1.0),
        });
        let second = ratio(d, "tool_second", "rclone_list");
        let snapshot_only = d
            .series("tool_second")
            .and_then(snapshot_median)
            .zip(d.series("rclone_list").map(Series::median_wall))
            .map(|(s, l)| s / l);
        out.push(Target {
            what: format!(
                "{}: unchanged second snapshot ≤ 1.2× listing the bucket (`rclone lsf -R`; wall, \
                 medians)",
                d.id
            ),
            measured: match (second, snapshot_only) {
                (Some(r), Some(s)) => format!(
                    "{r:.2}× for the whole command (which also checks every reused blob's presence and \
                     size with a HEAD); snapshot phase alone {s:.2}×"
                ),
                (Some(r), None) => format!("{r:.2}×"),
                _ => "not measured".into(),
            },
            met: second.map(|r| r <= 1.2),
        });
    }
    out
}

/// Target: peak RSS of every tool run that used S3 at most 128 MiB, and the same at D2 and
/// D2-half (within 10 % or 4 MiB).
pub fn rss_target(datasets: &[DatasetRun]) -> Target {
    let peak = datasets
        .iter()
        .flat_map(|d| d.series.iter().filter(|s| s.tool && s.s3))
        .map(max_rss_mib)
        .fold(0.0, f64::max);
    let at = |id: &str| {
        datasets
            .iter()
            .find(|d| d.id == id)
            .and_then(|d| d.series("tool_garage"))
            .map(max_rss_mib)
    };
    let (full, half) = (at("D2"), at("D2-half"));
    let flat = full
        .zip(half)
        .map(|(f, h)| (f - h).abs() <= (f.max(h) * 0.1).max(4.0));
    Target {
        what: "peak RSS of every tool run with S3 ≤ 128 MiB, and the same at D2 and D2-half \
               (within 10 % or 4 MiB)"
            .into(),
        measured: format!(
            "max {peak:.1} MiB; D2 {} / D2-half {}",
            full.map_or("-".into(), |f| format!("{f:.1} MiB")),
            half.map_or("-".into(), |h| format!("{h:.1} MiB"))
        ),
        met: Some(peak <= 128.0 && flat != Some(false)),
    }
}

impl Report {
    /// Whether every correctness check passed.
    pub fn correct(&self) -> bool {
        self.datasets
            .iter()
            .all(|d| d.checks.iter().all(|c| c.pass))
    }

    fn yes_no(met: Option<bool>) -> &'static str {
        match met {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "not measured",
        }
    }

    /// The Markdown report.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# pre-deploy with S3: store and bucket benchmark ({})\n",
            self.mode
        );
        let _ = writeln!(
            s,
            "Generated by `{}` on {} in {:.0} s. {} warm-up round(s), then {} counted rounds; \
             medians (min–max) of wall seconds from GNU time.\n",
            self.invocation, self.date, self.total_s, self.warmup, self.rounds
        );
        let _ = writeln!(
            s,
            "## Targets (issue 3)\n\n| target | measured | met |\n|---|---|---|"
        );
        for t in &self.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                t.what,
                t.measured,
                Self::yes_no(t.met)
            );
        }
        let _ = writeln!(
            s,
            "\n## Correctness\n\n| dataset | check | found | ok |\n|---|---|---|---|"
        );
        for d in &self.datasets {
            for c in &d.checks {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    d.id,
                    c.what,
                    c.found,
                    if c.pass { "yes" } else { "**NO**" }
                );
            }
        }
        let _ = writeln!(s, "\n## Machine and versions\n");
        for (k, v) in &self.versions {
            let _ = writeln!(s, "- {k}: {v}");
        }
        for d in &self.datasets {
            let _ = writeln!(
                s,
                "\n## {} — {} ({} section)\n",
                d.id, d.description, d.section
            );
            let _ = writeln!(
                s,
                "| command | wall s, median (min–max) | tool: snapshot phase s | tool: \
                 verification s | peak RSS MiB |\n|---|---|---|---|---|"
            );
            for x in &d.series {
                let walls: Vec<f64> = x.samples.iter().map(|v| v.wall_s).collect();
                let (lo, hi) = benches::Stats::of(&walls).map_or((0.0, 0.0), |s| (s.min, s.max));
                let opt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
                let _ = writeln!(
                    s,
                    "| `{}` | {:.2} ({lo:.2}–{hi:.2}) | {} | {} | {:.1} |",
                    x.key,
                    median(&walls),
                    opt(snapshot_median(x)),
                    opt(verify_median(x)),
                    max_rss_mib(x)
                );
            }
            let _ = writeln!(s, "\nCommand lines (last counted run):\n");
            for x in &d.series {
                let _ = writeln!(s, "- `{}`: `{}`", x.key, x.command);
            }
        }
        s.push_str(
            "\n## How it runs\n\nGarage (single node, from `scripts/setup.sh`) and PostgreSQL 15 \
             are started by the test harness on loopback. The store section backs up each \
             database alternately into a fresh local store directory and a fresh Garage prefix \
             (`--verify-level checksum`: the stored artifacts are read back and hashed), \
             removing each store afterwards (untimed). The bucket section fills a Garage bucket \
             with the dataset (seeded, incompressible bytes, nested prefixes), then per round: \
             the tool's first snapshot into a fresh store prefix and `rclone copy` (defaults: 4 \
             transfers; two remotes with the same settings so rclone streams the bytes instead \
             of a server-side copy) into a fresh prefix, alternating; then the tool's second \
             snapshot of the unchanged bucket into a store that already holds one, and `rclone \
             lsf -R --files-only` of the bucket, alternating. Every second snapshot must report \
             all objects reused and none uploaded, or the run aborts. Everything shares the \
             2 cores: the Garage server's work is part of every figure.\n",
        );
        s
    }

    /// Every raw run as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode,
            "invocation": self.invocation,
            "date": self.date,
            "total_s": self.total_s,
            "versions": self.versions,
            "warmup": self.warmup,
            "rounds": self.rounds,
            "targets": self.targets.iter().map(|t| json!({
                "target": t.what, "measured": t.measured, "met": t.met,
            })).collect::<Vec<_>>(),
            "datasets": self.datasets.iter().map(|d| json!({
                "id": d.id,
                "section": d.section,
                "description": d.description,
                "checks": d.checks.iter().map(|c| json!({
                    "check": c.what, "pass": c.pass, "found": c.found,
                })).collect::<Vec<_>>(),
                "series": d.series.iter().map(|x| json!({
                    "key": x.key,
                    "command": x.command,
                    "median_wall_s": x.median_wall(),
                    "samples": x.samples.iter().map(|v| json!({
                        "wall_s": v.wall_s,
                        "max_rss_kib": v.max_rss_kib,
                        "snapshot_s": v.snapshot_s,
                        "verify_s": v.verify_s,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}
