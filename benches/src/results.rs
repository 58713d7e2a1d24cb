//! Measured runs, their summaries, the derived ratios and the targets.

use benches::Stats;
use benches::hyperfine::Summary;
use serde_json::{Value, json};

use crate::commands::{Kind, Section};

/// One execution of one command.
#[derive(Debug, Clone)]
pub struct Run {
    /// Round index (0-based, warm-up rounds included).
    pub round: usize,
    /// Whether this was a warm-up run (not counted).
    pub warmup: bool,
    /// Wall seconds (GNU time `%e`).
    pub wall_s: f64,
    /// Wall seconds as the runner measured them around GNU time (informational).
    pub runner_wall_s: f64,
    /// GNU time `%M` (KiB).
    pub max_rss_kib: u64,
    /// Sampled `VmHWM` of the measured process alone (tool runs only).
    pub own_hwm_kib: Option<u64>,
    /// Size of the output in bytes (file, or the tool's artifacts under `backups/*/data`).
    pub size_bytes: Option<u64>,
    /// For `pre-deploy verify`: the seconds per level from the verification record it printed
    /// (`timings`), in its order.
    pub tool_timings: Vec<(String, f64)>,
}

/// All runs of one command on one dataset.
#[derive(Debug, Clone)]
pub struct CmdResult {
    /// Which command.
    pub kind: Kind,
    /// The exact command line (password redacted), as run in the last round.
    pub display: String,
    /// Every run, warm-ups included.
    pub runs: Vec<Run>,
    /// Why the command was not run, if it was not.
    pub skipped: Option<String>,
    /// The tool's `--json` output from its first run.
    pub tool_json: Option<Value>,
}

impl CmdResult {
    /// A command with no runs yet.
    pub fn new(kind: Kind) -> CmdResult {
        CmdResult {
            kind,
            display: String::new(),
            runs: Vec::new(),
            skipped: None,
            tool_json: None,
        }
    }

    fn counted(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| !r.warmup)
    }

    /// Wall-time stats of the counted runs.
    pub fn wall(&self) -> Option<Stats> {
        Stats::of(&self.counted().map(|r| r.wall_s).collect::<Vec<_>>())
    }

    /// Median output size of the counted runs.
    pub fn size(&self) -> Option<u64> {
        let sizes: Vec<f64> = self
            .counted()
            .filter_map(|r| r.size_bytes.map(|s| s as f64))
            .collect();
        Stats::of(&sizes).map(|s| s.median.round() as u64)
    }

    /// Largest `%M` over all runs (warm-ups included: a peak is a peak).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.max_rss_kib).max()
    }

    /// Largest sampled own `VmHWM` over all runs.
    pub fn own_hwm_kib(&self) -> Option<u64> {
        self.runs.iter().filter_map(|r| r.own_hwm_kib).max()
    }

    /// Median per level of the tool's own verification timings over the counted runs, in the
    /// order the tool reports the levels.
    pub fn level_timings(&self) -> Vec<(String, Stats)> {
        let mut levels: Vec<String> = Vec::new();
        for r in self.counted() {
            for (l, _) in &r.tool_timings {
                if !levels.contains(l) {
                    levels.push(l.clone());
                }
            }
        }
        levels
            .into_iter()
            .filter_map(|l| {
                let v: Vec<f64> = self
                    .counted()
                    .filter_map(|r| r.tool_timings.iter().find(|(k, _)| *k == l).map(|t| t.1))
                    .collect();
                Stats::of(&v).map(|s| (l, s))
            })
            .collect()
    }

    /// report.json form.
    pub fn to_json(&self) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "round": r.round,
                    "warmup": r.warmup,
                    "wall_s": r.wall_s,
                    "runner_wall_s": r.runner_wall_s,
                    "max_rss_kib": r.max_rss_kib,
                    "own_hwm_kib": r.own_hwm_kib,
                    "size_bytes": r.size_bytes,
                    "tool_timings": if r.tool_timings.is_empty() {
                        Value::Null
                    } else {
                        Value::Object(
                            r.tool_timings.iter().map(|(l, t)| (l.clone(), json!(t))).collect(),
                        )
                    },
                })
            })
            .collect();
        let wall = self
            .wall()
            .map(|s| json!({"median": s.median, "min": s.min, "max": s.max}));
        json!({
            "key": self.kind.key(),
            "command": self.display,
            "skipped": self.skipped,
            "runs": runs,
            "wall_s": wall,
            "size_bytes_median": self.size(),
            "max_rss_kib_peak": if self.kind.is_pipeline() { None } else { self.peak_rss_kib() },
            "own_hwm_kib_peak": self.own_hwm_kib(),
            "tool_json": self.tool_json,
        })
    }
}

/// The results for one dataset.
#[derive(Debug, Clone)]
pub struct DatasetResult {
    /// "D0", "D2", "D2-half".
    pub id: String,
    /// What it is.
    pub description: String,
    /// Database name.
    pub db: String,
    /// `pg_database_size` after loading.
    pub db_size_bytes: u64,
    /// Seconds spent loading.
    pub load_s: f64,
    /// Row counts of the main tables.
    pub row_counts: Vec<(String, u64)>,
    /// Per command of the backup section, in round order (empty when it did not run).
    pub commands: Vec<CmdResult>,
    /// The verification section on this dataset, when it ran here.
    pub verify: Option<VerifySection>,
    /// D0 only: the fixed overhead timed by hyperfine.
    pub overhead: Option<Overhead>,
}

/// The fixed overhead on D0, timed by hyperfine: the floor, then the tool (a fresh store per
/// run), many short runs each, at hyperfine's resolution instead of GNU time's 10 ms.
#[derive(Debug, Clone)]
pub struct Overhead {
    /// The hyperfine command line (password redacted).
    pub command_line: String,
    /// Warm-up runs per command.
    pub warmup: usize,
    /// Counted runs per command.
    pub runs: usize,
    /// The floor's figures.
    pub floor: Summary,
    /// The tool's (`--verify-level checksum`).
    pub tool: Summary,
}

impl Overhead {
    /// median(tool) − median(floor), seconds.
    pub fn seconds(&self) -> f64 {
        self.tool.median - self.floor.median
    }

    /// report.json form.
    pub fn to_json(&self) -> Value {
        json!({
            "timed_by": "hyperfine",
            "command_line": self.command_line,
            "warmup": self.warmup,
            "runs": self.runs,
            "floor": self.floor.to_json(),
            "tool_checksum": self.tool.to_json(),
            "overhead_s": self.seconds(),
        })
    }
}

/// The verification section on one dataset.
#[derive(Debug, Clone)]
pub struct VerifySection {
    /// The id of the backup verified (None with `--baselines-only`, where the shell
    /// reference's archive stands in for it).
    pub backup_id: Option<String>,
    /// How the verified backup was made (command line, password redacted).
    pub setup: String,
    /// Seconds the setup backup took (not a measurement: one run, before the rounds).
    pub setup_s: f64,
    /// Size of the verified `dump.pgc.zst`.
    pub dump_bytes: u64,
    /// Per command, in round order.
    pub commands: Vec<CmdResult>,
}

impl VerifySection {
    /// The result of `kind`.
    pub fn get(&self, kind: Kind) -> Option<&CmdResult> {
        self.commands.iter().find(|c| c.kind == kind)
    }

    /// median(a) / median(b).
    pub fn time_ratio(&self, a: Kind, b: Kind) -> Option<f64> {
        ratio(median_of(self.get(a))?, median_of(self.get(b))?)
    }

    /// The derived ratios: each tool command against its shell equivalent.
    pub fn ratios(&self) -> Vec<(String, Option<f64>)> {
        let mut out = Vec::new();
        for tool in [Kind::ToolVerifyRestore, Kind::ToolVerifyArchive] {
            let Some(shell) = tool.verify_counterpart() else {
                continue;
            };
            out.push((
                format!("{} / {} (time)", tool.key(), shell.key()),
                self.time_ratio(tool, shell),
            ));
            out.push((
                format!("{} − {} (seconds)", tool.key(), shell.key()),
                median_of(self.get(tool))
                    .zip(median_of(self.get(shell)))
                    .map(|(a, b)| a - b),
            ));
        }
        out
    }

    /// report.json form.
    pub fn to_json(&self) -> Value {
        let ratios: serde_json::Map<String, Value> = self
            .ratios()
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        json!({
            "backup_id": self.backup_id,
            "setup": self.setup,
            "setup_s": self.setup_s,
            "dump_bytes": self.dump_bytes,
            "commands": self.commands.iter().map(CmdResult::to_json).collect::<Vec<_>>(),
            "ratios": ratios,
        })
    }
}

fn median_of(c: Option<&CmdResult>) -> Option<f64> {
    c.and_then(CmdResult::wall).map(|s| s.median)
}

impl DatasetResult {
    /// The result of `kind`, if it was part of this dataset's set.
    pub fn get(&self, kind: Kind) -> Option<&CmdResult> {
        self.commands.iter().find(|c| c.kind == kind)
    }

    /// Median wall seconds of `kind`.
    pub fn median(&self, kind: Kind) -> Option<f64> {
        median_of(self.get(kind))
    }

    /// Median output size of `kind`.
    pub fn size(&self, kind: Kind) -> Option<u64> {
        self.get(kind).and_then(CmdResult::size)
    }

    /// median(a) / median(b).
    pub fn time_ratio(&self, a: Kind, b: Kind) -> Option<f64> {
        ratio(self.median(a)?, self.median(b)?)
    }

    /// size(a) / size(b).
    pub fn size_ratio(&self, a: Kind, b: Kind) -> Option<f64> {
        ratio(self.size(a)? as f64, self.size(b)? as f64)
    }

    /// The derived ratios of this dataset, for both tool variants.
    pub fn ratios(&self) -> Vec<(String, Option<f64>)> {
        let mut out = Vec::new();
        for tool in [Kind::ToolChecksum, Kind::ToolDefault] {
            let t = tool.key();
            out.push((
                format!("{t} / floor (time)"),
                self.time_ratio(tool, Kind::Floor),
            ));
            out.push((
                format!("seed / {t} (time, speed-up)"),
                self.time_ratio(Kind::Seed, tool),
            ));
            out.push((
                format!("{t} / shell_ref (time)"),
                self.time_ratio(tool, Kind::ShellRef),
            ));
            out.push((
                format!("{t} / pg_dump_default (time)"),
                self.time_ratio(tool, Kind::PgDumpDefault),
            ));
            out.push((
                format!("{t} / seed (size)"),
                self.size_ratio(tool, Kind::Seed),
            ));
            out.push((
                format!("{t} / pg_dump_default (size)"),
                self.size_ratio(tool, Kind::PgDumpDefault),
            ));
            out.push((
                format!("{t} / shell_ref (size)"),
                self.size_ratio(tool, Kind::ShellRef),
            ));
            out.push((
                format!("{t} − floor (seconds, fixed overhead)"),
                self.median(tool)
                    .zip(self.median(Kind::Floor))
                    .map(|(a, b)| a - b),
            ));
        }
        out
    }

    /// report.json form.
    pub fn to_json(&self) -> Value {
        let counts: serde_json::Map<String, Value> = self
            .row_counts
            .iter()
            .map(|(t, n)| (t.clone(), json!(n)))
            .collect();
        let ratios: serde_json::Map<String, Value> = self
            .ratios()
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        json!({
            "id": self.id,
            "description": self.description,
            "db": self.db,
            "db_size_bytes": self.db_size_bytes,
            "load_s": self.load_s,
            "row_counts": counts,
            "commands": self.commands.iter().map(CmdResult::to_json).collect::<Vec<_>>(),
            "ratios": ratios,
            "verify": self.verify.as_ref().map(VerifySection::to_json),
            "overhead_hyperfine": self.overhead.as_ref().map(Overhead::to_json),
        })
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The restore check of the tool's D2 dump.
#[derive(Debug, Clone, Default)]
pub struct Correctness {
    /// Whether it ran at all.
    pub ran: bool,
    /// Pass/fail; None when not run.
    pub pass: Option<bool>,
    /// The steps, as run.
    pub steps: Vec<String>,
    /// Source counts (table, rows).
    pub source: Vec<(String, u64)>,
    /// Restored counts (table, rows).
    pub restored: Vec<(String, u64)>,
    /// Wall seconds of `pg_restore -j2` (informational).
    pub restore_s: Option<f64>,
    /// What went wrong, or why it did not run.
    pub note: String,
}

impl Correctness {
    /// report.json form.
    pub fn to_json(&self) -> Value {
        let map = |v: &[(String, u64)]| -> Value {
            Value::Object(v.iter().map(|(t, n)| (t.clone(), json!(n))).collect())
        };
        json!({
            "ran": self.ran,
            "pass": self.pass,
            "steps": self.steps,
            "source_counts": map(&self.source),
            "restored_counts": map(&self.restored),
            "pg_restore_s": self.restore_s,
            "note": self.note,
        })
    }
}

/// What the verification section checked besides time: every tool verification passed at the
/// level asked for, the shell restore counted the source's rows, and no scratch database was
/// left behind by any run.
#[derive(Debug, Clone, Default)]
pub struct VerifyChecks {
    /// Whether the section ran.
    pub ran: bool,
    /// Runs after which the server was checked for scratch databases.
    pub runs_checked: usize,
    /// Scratch databases found after a run (`tag: name`); the runner dropped them.
    pub leftovers: Vec<String>,
    /// The scratch databases that exist on the server before the first verification.
    pub present_before: Vec<String>,
}

impl VerifyChecks {
    /// Pass/fail; None when the section did not run.
    pub fn pass(&self) -> Option<bool> {
        self.ran
            .then_some(self.leftovers.is_empty() && self.present_before.is_empty())
    }

    /// report.json form.
    pub fn to_json(&self) -> Value {
        json!({
            "ran": self.ran,
            "pass": self.pass(),
            "runs_checked": self.runs_checked,
            "leftover_scratch_databases": self.leftovers,
            "scratch_databases_before": self.present_before,
        })
    }
}

/// One target from the brief, evaluated.
#[derive(Debug, Clone)]
pub struct TargetCheck {
    /// The section it belongs to.
    pub section: Section,
    /// The target, in words.
    pub target: String,
    /// What was measured, in words.
    pub measured: String,
    /// Met or not; None when it could not be evaluated.
    pub met: Option<bool>,
}

/// Peak RSS (KiB) counted as "the same" at both D2 sizes: within 10 % of the larger or 4 MiB.
pub fn rss_same(a_kib: u64, b_kib: u64) -> bool {
    let diff = a_kib.abs_diff(b_kib);
    diff <= 4096 || (diff as f64) <= 0.10 * a_kib.max(b_kib) as f64
}

/// Evaluate the targets of the briefs on the results of the sections that ran.
pub fn evaluate(datasets: &[DatasetResult], sections: &[Section]) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    if sections.contains(&Section::Backup) {
        out.extend(evaluate_backup(datasets));
    }
    if sections.contains(&Section::Verify) {
        out.extend(evaluate_verify(datasets));
    }
    out
}

/// The verification targets (issue 4): on D2, the tool's level 4 and levels 1–3 each at most
/// 1.10× their shell equivalent (medians).
fn evaluate_verify(datasets: &[DatasetResult]) -> Vec<TargetCheck> {
    let d2 = datasets
        .iter()
        .find(|d| d.id == "D2")
        .and_then(|d| d.verify.as_ref());
    [
        (
            Kind::ToolVerifyRestore,
            "D2: level-4 verify (`verify --level restore`) ≤ 1.10× the shell equivalent \
             (zstd -dc > f; createdb; pg_restore -j2; count(*); dropdb)",
        ),
        (
            Kind::ToolVerifyArchive,
            "D2: levels 1–3 (`verify --level archive`) ≤ 1.10× the shell equivalent \
             (sha256sum; zstd -t; pg_restore -l; full read)",
        ),
    ]
    .into_iter()
    .map(|(tool, target)| {
        let r = tool
            .verify_counterpart()
            .and_then(|shell| d2.and_then(|v| v.time_ratio(tool, shell)));
        TargetCheck {
            section: Section::Verify,
            target: target.into(),
            measured: r.map_or("n/a".into(), |r| format!("{r:.2}×")),
            met: r.map(|r| r <= 1.10),
        }
    })
    .collect()
}

fn evaluate_backup(datasets: &[DatasetResult]) -> Vec<TargetCheck> {
    let find = |id: &str| datasets.iter().find(|d| d.id == id);
    let d0 = find("D0");
    let d2 = find("D2");
    let half = find("D2-half");
    let tool = Kind::ToolChecksum;
    let mut out = Vec::new();

    let r = d2.and_then(|d| d.time_ratio(tool, Kind::Floor));
    out.push(TargetCheck {
        section: Section::Backup,
        target: "D2: tool ≤ 1.25× floor (wall time, medians)".into(),
        measured: r.map_or("n/a".into(), |r| format!("{r:.2}×")),
        met: r.map(|r| r <= 1.25),
    });

    // Issue 17: the whole default gate against a bare `pg_dump -Fc` (item 1) and the backup's
    // throughput against the shell doing the same work and the floor (item 3).
    for (a, b, target, limit) in [
        (
            Kind::ToolDefault,
            Kind::PgDumpDefault,
            "D2: default run (backup + level-4 test restore) ≤ 0.6× a bare `pg_dump -Fc` \
             (wall time, medians)",
            0.6,
        ),
        (
            tool,
            Kind::ShellRef,
            "D2: tool ≤ 1.0× the shell reference (`pg_dump -Z0 | zstd -3 | tee | sha256sum`; \
             wall time, medians)",
            1.0,
        ),
        (
            tool,
            Kind::Floor,
            "D2: tool ≤ 1.5× floor (wall time, medians)",
            1.5,
        ),
    ] {
        let r = d2.and_then(|d| d.time_ratio(a, b));
        out.push(TargetCheck {
            section: Section::Backup,
            target: target.into(),
            measured: r.map_or("n/a".into(), |r| format!("{r:.2}×")),
            met: r.map(|r| r <= limit),
        });
    }

    let speed = d2.and_then(|d| d.time_ratio(Kind::Seed, tool));
    let size = d2.and_then(|d| d.size_ratio(tool, Kind::Seed));
    out.push(TargetCheck {
        section: Section::Backup,
        target: "D2: tool ≥ 4× faster than the seed pattern, output no larger".into(),
        measured: match (speed, size) {
            (Some(s), Some(z)) => format!("{s:.2}× faster; size {z:.3}× of seed"),
            _ => "n/a".into(),
        },
        met: speed.zip(size).map(|(s, z)| s >= 4.0 && z <= 1.0),
    });

    let rss_full = d2
        .and_then(|d| d.get(tool))
        .and_then(CmdResult::peak_rss_kib);
    let rss_half = half
        .and_then(|d| d.get(tool))
        .and_then(CmdResult::peak_rss_kib);
    let limit = 64 * 1024;
    out.push(TargetCheck {
        section: Section::Backup,
        target: "tool peak RSS ≤ 64 MiB at D2 and D2-half, and the same at both \
                 (within 10 % or 4 MiB)"
            .into(),
        measured: match (rss_full, rss_half) {
            (Some(a), Some(b)) => format!("D2 {} / D2-half {}", mib(a), mib(b)),
            _ => "n/a".into(),
        },
        met: rss_full
            .zip(rss_half)
            .map(|(a, b)| a <= limit && b <= limit && rss_same(a, b)),
    });

    // hyperfine's many runs when they were taken; else the rounds' medians.
    let (overhead, by) = match d0.and_then(|d| d.overhead.as_ref()) {
        Some(o) => (Some(o.seconds()), " (hyperfine)"),
        None => (
            d0.and_then(|d| {
                d.median(tool)
                    .zip(d.median(Kind::Floor))
                    .map(|(a, b)| a - b)
            }),
            " (rounds)",
        ),
    };
    out.push(TargetCheck {
        section: Section::Backup,
        target: "D0: fixed overhead median(tool) − median(floor) ≤ 0.3 s".into(),
        measured: overhead.map_or("n/a".into(), |o| format!("{o:.3} s{by}")),
        met: overhead.map(|o| o <= 0.3),
    });
    out
}

/// KiB as "12.3 MiB".
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_sameness() {
        assert!(rss_same(20_000, 21_000));
        assert!(rss_same(60_000, 55_000));
        assert!(!rss_same(30_000, 60_000));
    }

    fn run(wall_s: f64, rss: u64, size: Option<u64>) -> Run {
        Run {
            round: 1,
            warmup: false,
            wall_s,
            runner_wall_s: wall_s,
            max_rss_kib: rss,
            own_hwm_kib: None,
            size_bytes: size,
            tool_timings: Vec::new(),
        }
    }

    fn cmd(kind: Kind, runs: Vec<Run>) -> CmdResult {
        CmdResult {
            runs,
            ..CmdResult::new(kind)
        }
    }

    fn dataset(id: &str, commands: Vec<CmdResult>) -> DatasetResult {
        DatasetResult {
            id: id.into(),
            description: String::new(),
            db: String::new(),
            db_size_bytes: 0,
            load_s: 0.0,
            row_counts: vec![],
            commands,
            verify: None,
            overhead: None,
        }
    }

    #[test]
    fn targets() {
        let d2 = dataset(
            "D2",
            vec![
                cmd(Kind::Floor, vec![run(10.0, 9000, None)]),
                cmd(Kind::Seed, vec![run(60.0, 9000, Some(300))]),
                cmd(Kind::ToolChecksum, vec![run(12.0, 30_000, Some(250))]),
                cmd(Kind::ToolDefault, vec![run(5.5, 30_000, Some(250))]),
                cmd(Kind::PgDumpDefault, vec![run(10.0, 9000, Some(260))]),
                cmd(Kind::ShellRef, vec![run(11.0, 9000, Some(250))]),
            ],
        );
        let half = dataset(
            "D2-half",
            vec![cmd(Kind::ToolChecksum, vec![run(6.0, 29_000, Some(125))])],
        );
        let d0 = dataset(
            "D0",
            vec![
                cmd(Kind::Floor, vec![run(0.2, 9000, None)]),
                cmd(Kind::ToolChecksum, vec![run(0.6, 9000, Some(1))]),
            ],
        );
        let both = [Section::Backup, Section::Verify];
        let t = evaluate(&[d0, d2, half], &both);
        let met: Vec<Option<bool>> = t.iter().map(|t| t.met).collect();
        // 1.2× the floor; default run 0.55× pg_dump -Fc; 1.09× the shell reference; ≤ 1.5×
        // the floor; the seed pattern; RSS; D0's overhead 0.4 s; verify (not run).
        assert_eq!(
            met,
            vec![
                Some(true),
                Some(true),
                Some(false),
                Some(true),
                Some(true),
                Some(true),
                Some(false),
                None,
                None
            ]
        );
        assert_eq!(evaluate(&[], &both).len(), 9);
        assert!(evaluate(&[], &both).iter().all(|t| t.met.is_none()));
        assert_eq!(evaluate(&[], &[Section::Verify]).len(), 2);
    }

    #[test]
    fn verify_targets_and_timings() {
        let mut tool = cmd(
            Kind::ToolVerifyRestore,
            vec![run(10.5, 30_000, None), run(11.5, 31_000, None)],
        );
        tool.runs[0].tool_timings = vec![("decompress".into(), 1.0), ("restore".into(), 8.0)];
        tool.runs[1].tool_timings = vec![("decompress".into(), 2.0), ("restore".into(), 9.0)];
        let section = VerifySection {
            backup_id: Some("ID".into()),
            setup: String::new(),
            setup_s: 1.0,
            dump_bytes: 100,
            commands: vec![
                tool,
                cmd(Kind::ShellRestore, vec![run(10.0, 9000, None)]),
                cmd(Kind::ToolVerifyArchive, vec![run(3.0, 9000, None)]),
                cmd(Kind::ShellArchive, vec![run(2.0, 9000, None)]),
            ],
        };
        let timings = section
            .get(Kind::ToolVerifyRestore)
            .expect("present")
            .level_timings();
        let medians: Vec<(String, f64)> = timings.into_iter().map(|(l, s)| (l, s.median)).collect();
        assert_eq!(
            medians,
            vec![("decompress".into(), 1.5), ("restore".into(), 8.5)]
        );
        let mut d2 = dataset("D2", vec![]);
        d2.verify = Some(section);
        let t = evaluate(&[d2], &[Section::Verify]);
        let met: Vec<Option<bool>> = t.iter().map(|t| t.met).collect();
        assert_eq!(met, vec![Some(true), Some(false)]);
        assert_eq!(t[0].measured, "1.10×");
        assert_eq!(t[1].measured, "1.50×");
    }

    #[test]
    fn verify_checks() {
        assert_eq!(VerifyChecks::default().pass(), None);
        let mut c = VerifyChecks {
            ran: true,
            ..VerifyChecks::default()
        };
        assert_eq!(c.pass(), Some(true));
        c.leftovers
            .push("D2-r0-tool_verify_restore: predeploy_scratch_1_abc".into());
        assert_eq!(c.pass(), Some(false));
    }
}
