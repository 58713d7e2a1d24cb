//! The targets of issue 12 and the report files (`REPORT.mysql.md`, `report.mysql.json`).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::median;
use crate::runs::{DatasetRun, Kind, Series};

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
    /// `/proc/loadavg` before and after the run.
    pub load: (String, String),
    pub warmup: usize,
    pub rounds: usize,
    pub datasets: Vec<DatasetRun>,
    pub targets: Vec<Target>,
}

impl Series {
    /// Median wall seconds.
    pub fn median_wall(&self) -> f64 {
        median(&self.samples.iter().map(|s| s.wall_s).collect::<Vec<_>>())
    }

    fn median_of(&self, f: impl Fn(&crate::runs::Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    }

    /// Median output bytes.
    pub fn median_output(&self) -> Option<f64> {
        self.median_of(|s| s.output_bytes.map(|b| b as f64))
    }

    /// Median seconds of each verification level, in the records' order.
    pub fn level_medians(&self) -> Vec<(String, f64)> {
        let mut names: Vec<String> = Vec::new();
        for (l, _) in self.samples.iter().flat_map(|x| &x.levels) {
            if !names.contains(l) {
                names.push(l.clone());
            }
        }
        names
            .into_iter()
            .map(|n| {
                let v: Vec<f64> = self
                    .samples
                    .iter()
                    .flat_map(|x| x.levels.iter().filter(|(l, _)| *l == n).map(|(_, s)| *s))
                    .collect();
                (n, median(&v))
            })
            .collect()
    }

    /// Largest `%M` of the counted runs, MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.samples
            .iter()
            .map(|x| x.max_rss_kib)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }

    /// Largest sampled own `VmHWM` of the tool, MiB.
    pub fn own_hwm_mib(&self) -> Option<f64> {
        self.samples
            .iter()
            .filter_map(|x| x.own_hwm_kib)
            .max()
            .map(|k| k as f64 / 1024.0)
    }
}

/// Median wall of `num` over median wall of `den`.
pub fn ratio(d: &DatasetRun, num: Kind, den: Kind) -> Option<f64> {
    Some(d.series(num)?.median_wall() / d.series(den)?.median_wall())
}

fn x(r: Option<f64>) -> String {
    r.map_or("not measured".into(), |r| format!("{r:.2}×"))
}

/// The targets: ≥ 4× faster than the seed pattern with no larger output, backup ≤ 1.5× the
/// floor, level 4 ≤ 1.2× the shell equivalent (all on M2), peak RSS ≤ 64 MiB and flat.
pub fn targets(datasets: &[DatasetRun]) -> Vec<Target> {
    let m2 = datasets.iter().find(|d| d.id == "M2");
    let mut out = Vec::new();
    let speedup = m2.and_then(|d| ratio(d, Kind::Seed, Kind::ToolChecksum));
    let sizes = m2.and_then(|d| {
        Some(
            d.series(Kind::ToolChecksum)?.median_output()?
                / d.series(Kind::Seed)?.median_output()?,
        )
    });
    out.push(Target {
        what: "M2: `backup --verify-level checksum` ≥ 4× faster than the seed pattern \
               (`mariadb-dump | gzip -9`), with output no larger (medians)"
            .into(),
        measured: format!("{} faster; output {} the seed file's", x(speedup), x(sizes)),
        met: speedup.zip(sizes).map(|(s, z)| s >= 4.0 && z <= 1.0),
    });
    let floor = m2.and_then(|d| ratio(d, Kind::ToolChecksum, Kind::Floor));
    let floor_default = m2.and_then(|d| ratio(d, Kind::ToolDefault, Kind::Floor));
    out.push(Target {
        what: "M2: `backup --verify-level checksum` ≤ 1.5× the floor (`mariadb-dump > /dev/null`; \
               medians)"
            .into(),
        measured: format!(
            "{} (the default backup, with its level-4 test restore: {})",
            x(floor),
            x(floor_default)
        ),
        met: floor.map(|r| r <= 1.5),
    });
    let verify = m2.and_then(|d| ratio(d, Kind::ToolVerifyRestore, Kind::ShellRestore));
    out.push(Target {
        what: "M2: `verify last --level restore` ≤ 1.2× the shell equivalent (scratch db, \
               `zstd -dc | mariadb`, `COUNT(*)`, drop; medians)"
            .into(),
        measured: x(verify),
        met: verify.map(|r| r <= 1.2),
    });
    out.push(rss_target(datasets));
    out
}

/// Peak RSS (`%M`) of every tool run ≤ 64 MiB, and the backups' the same at M2 and M2-half
/// (within 10 % or 4 MiB).
fn rss_target(datasets: &[DatasetRun]) -> Target {
    let peak = datasets
        .iter()
        .flat_map(|d| d.series.iter().filter(|s| s.kind.is_tool()))
        .map(Series::peak_rss_mib)
        .fold(0.0, f64::max);
    let at = |id: &str, kind: Kind| {
        datasets
            .iter()
            .find(|d| d.id == id)
            .and_then(|d| d.series(kind))
            .map(Series::peak_rss_mib)
    };
    let mut flat = Some(true);
    let mut parts = Vec::new();
    for kind in [Kind::ToolChecksum, Kind::ToolDefault] {
        let (f, h) = (at("M2", kind), at("M2-half", kind));
        match f.zip(h) {
            Some((f, h)) => {
                let same = (f - h).abs() <= (f.max(h) * 0.1).max(4.0);
                flat = flat.map(|x| x && same);
                parts.push(format!("`{}` M2 {f:.1} / M2-half {h:.1} MiB", kind.key()));
            }
            None => flat = None,
        }
    }
    Target {
        what: "peak RSS (`%M`: the tool or the largest program it starts) of every tool run ≤ \
               64 MiB, and each backup's the same at M2 and M2-half (within 10 % or 4 MiB)"
            .into(),
        measured: format!("max {peak:.1} MiB; {}", parts.join("; ")),
        met: flat.map(|f| f && peak <= 64.0),
    }
}

fn mb(b: Option<f64>) -> String {
    b.map_or("–".into(), |b| format!("{:.1}", b / 1e6))
}

impl Report {
    /// Whether every correctness check passed.
    pub fn correct(&self) -> bool {
        self.datasets
            .iter()
            .all(|d| d.checks.iter().all(|c| c.failed == 0))
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
            "# pre-deploy with MySQL/MariaDB: backup and level-4 verify benchmark ({})\n",
            self.mode
        );
        let _ = writeln!(
            s,
            "Generated by `{}` on {} in {:.0} s. {} warm-up round(s), then {} counted rounds, \
             the commands interleaved within each round; medians (min–max) of wall seconds \
             from GNU time. Load average (1/5/15 min) before: {}; after: {}. The machine's 2 \
             cores are shared with other workers' builds and tests, so read the ratios, not \
             the absolute seconds.\n",
            self.invocation,
            self.date,
            self.total_s,
            self.warmup,
            self.rounds,
            self.load.0,
            self.load.1
        );
        let _ = writeln!(
            s,
            "## Targets (issue 12)\n\n| target | measured | met |\n|---|---|---|"
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
            "\n## Correctness\n\n| dataset | check | runs (warm-up included) | found | ok |\n|---|---|---|---|---|"
        );
        for d in &self.datasets {
            for c in &d.checks {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    d.id,
                    c.what,
                    c.runs,
                    c.found,
                    if c.failed == 0 {
                        "yes".to_owned()
                    } else {
                        format!("**NO** ({} failed)", c.failed)
                    }
                );
            }
        }
        let _ = writeln!(s, "\n## Machine and versions\n");
        for (k, v) in &self.versions {
            let _ = writeln!(s, "- {k}: {v}");
        }
        for d in &self.datasets {
            self.dataset_markdown(&mut s, d);
        }
        s.push_str(HOW_IT_RUNS);
        s
    }

    fn dataset_markdown(&self, s: &mut String, d: &DatasetRun) {
        let _ = writeln!(s, "\n## {} — {}\n", d.id, d.description);
        let _ = writeln!(
            s,
            "Generated in {:.1} s; {:.1} MB of tables and indexes on the server; counts: {}.\n",
            d.load_s,
            d.db_bytes as f64 / 1e6,
            d.counts
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "| command | wall s, median (min–max) | × floor | output MB | peak RSS MiB (`%M`) | \
             tool's own VmHWM MiB | tool: snapshot s | tool: verification s |\n\
             |---|---|---|---|---|---|---|---|"
        );
        let floor = d.series(Kind::Floor).map(Series::median_wall);
        for x in &d.series {
            let walls: Vec<f64> = x.samples.iter().map(|v| v.wall_s).collect();
            let (lo, hi) = benches::Stats::of(&walls).map_or((0.0, 0.0), |s| (s.min, s.max));
            let m = x.median_wall();
            let _ = writeln!(
                s,
                "| `{}` | {m:.2} ({lo:.2}–{hi:.2}) | {} | {} | {:.1} | {} | {} | {} |",
                x.kind.key(),
                floor.map_or("–".into(), |f| format!("{:.2}", m / f)),
                mb(x.median_output()),
                x.peak_rss_mib(),
                x.own_hwm_mib().map_or("–".into(), |v| format!("{v:.1}")),
                x.median_of(|v| v.snapshot_s)
                    .map_or("–".into(), |v| format!("{v:.2}")),
                x.median_of(|v| v.verify_s)
                    .map_or("–".into(), |v| format!("{v:.2}")),
            );
        }
        let raw = d
            .series(Kind::ToolChecksum)
            .and_then(|x| x.median_of(|v| v.raw_bytes.map(|b| b as f64)));
        let r = |n, m| ratio(d, n, m).map_or("–".into(), |r| format!("{r:.2}"));
        let _ = writeln!(s, "\nRatios (medians):\n");
        let _ = writeln!(
            s,
            "- `tool_checksum` ÷ `floor`: {}; `tool_default` ÷ `floor`: {}",
            r(Kind::ToolChecksum, Kind::Floor),
            r(Kind::ToolDefault, Kind::Floor)
        );
        if d.series(Kind::Seed).is_some() {
            let _ = writeln!(
                s,
                "- `seed` ÷ `tool_checksum` (speed-up over the seed pattern): {}; \
                 `tool_checksum` ÷ `seed`: {}",
                r(Kind::Seed, Kind::ToolChecksum),
                r(Kind::ToolChecksum, Kind::Seed)
            );
        }
        if let (Some(t), Some(g)) = (
            d.series(Kind::ToolChecksum).and_then(Series::median_output),
            d.series(Kind::Seed).and_then(Series::median_output),
        ) {
            let _ = writeln!(
                s,
                "- output: tool {:.1} MB ÷ seed file {:.1} MB = {:.3} (uncompressed dump: {} MB)",
                t / 1e6,
                g / 1e6,
                t / g,
                mb(raw)
            );
        }
        if let (Some(v), Some(sh)) = (
            d.series(Kind::ToolVerifyRestore),
            d.series(Kind::ShellRestore),
        ) {
            let _ = writeln!(
                s,
                "- `tool_verify_restore` ÷ `shell_restore`: {} ({:+.2} s)",
                r(Kind::ToolVerifyRestore, Kind::ShellRestore),
                v.median_wall() - sh.median_wall()
            );
        }
        for x in d.series.iter().filter(|x| x.kind.is_tool()) {
            let levels = x.level_medians();
            if !levels.is_empty() {
                let _ = writeln!(
                    s,
                    "- `{}`: its verification by level (medians, s): {}",
                    x.kind.key(),
                    levels
                        .iter()
                        .map(|(l, v)| format!("{l} {v:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let _ = writeln!(s, "\nCommand lines (last counted run):\n");
        for x in &d.series {
            let _ = writeln!(s, "- `{}`: `{}`", x.kind.key(), x.command);
        }
        let _ = self;
    }

    /// Every raw run as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode,
            "invocation": self.invocation,
            "date": self.date,
            "total_s": self.total_s,
            "versions": self.versions,
            "loadavg_before": self.load.0,
            "loadavg_after": self.load.1,
            "warmup": self.warmup,
            "rounds": self.rounds,
            "targets": self.targets.iter().map(|t| json!({
                "target": t.what, "measured": t.measured, "met": t.met,
            })).collect::<Vec<_>>(),
            "datasets": self.datasets.iter().map(|d| json!({
                "id": d.id,
                "description": d.description,
                "db_bytes": d.db_bytes,
                "load_s": d.load_s,
                "counts": d.counts,
                "ratios": {
                    "tool_checksum/floor": ratio(d, Kind::ToolChecksum, Kind::Floor),
                    "tool_default/floor": ratio(d, Kind::ToolDefault, Kind::Floor),
                    "seed/tool_checksum": ratio(d, Kind::Seed, Kind::ToolChecksum),
                    "tool_checksum/seed": ratio(d, Kind::ToolChecksum, Kind::Seed),
                    "tool_verify_restore/shell_restore":
                        ratio(d, Kind::ToolVerifyRestore, Kind::ShellRestore),
                },
                "checks": d.checks.iter().map(|c| json!({
                    "check": c.what, "runs": c.runs, "failed": c.failed, "found": c.found,
                })).collect::<Vec<_>>(),
                "series": d.series.iter().map(|x| json!({
                    "key": x.kind.key(),
                    "command": x.command,
                    "median_wall_s": x.median_wall(),
                    "median_output_bytes": x.median_output(),
                    "peak_rss_mib": x.peak_rss_mib(),
                    "own_hwm_mib": x.own_hwm_mib(),
                    "samples": x.samples.iter().map(|v| json!({
                        "wall_s": v.wall_s,
                        "max_rss_kib": v.max_rss_kib,
                        "own_hwm_kib": v.own_hwm_kib,
                        "output_bytes": v.output_bytes,
                        "raw_bytes": v.raw_bytes,
                        "verify_s": v.verify_s,
                        "snapshot_s": v.snapshot_s,
                        "verify_levels_s": v.levels,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

const HOW_IT_RUNS: &str = "
## How it runs

A throwaway MariaDB (the Debian `mariadb-server`, started by the test harness on loopback with \
a 64 MB InnoDB buffer pool and the binary log on) holds both datasets, generated inside the \
server from the `seq_1_to_N` sequence engine with every value a hash or function of the row \
number (repeatable). The measured commands get `HOME` pointing at a directory whose `.my.cnf` \
(mode 0600) has the user and password; the tool's URL has no password and the clients also \
read the harness's option file through `--defaults-extra-file`, so no password is on any argv. \
Every round runs the commands once, in the order of the table; tool runs write into a fresh \
store that is sized (files under `STORE/backups/*/data`) and removed afterwards, untimed; the \
seed file is sized and removed. The level-4 pair verifies one backup made before the rounds \
(`--verify-level checksum`, untimed): the tool with `verify last --level restore` (levels 1–3, \
then a restore into a scratch database on the source's server, row counts and schema compared, \
scratch dropped), the shell by creating `bench_verify_scratch`, replaying `zstd -dc` of the \
same dump into it with `mariadb`, counting each table and dropping it. After every level-4 run \
the runner looks for scratch databases left behind (a failure). Correctness checks (the run \
exits 1 when one fails, after writing the report): every tool backup's `--json` says its \
verification passed at the level asked for, every `verify` printed one passing record at level \
restore for that backup, every shell restore counted the source's rows. Targets that are missed \
are reported, never turned into a failure.
";
