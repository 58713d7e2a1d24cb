//! The rows of issue 17's targets, picked from the three reports of one run.

use serde_json::Value;

/// The heading of the section this writes into REPORT.md.
pub const SECTION_TITLE: &str = "Issue 17: every target, one run";

/// The reports of one `benches/run-all.sh`.
pub struct Reports {
    /// `report.json` of `bench-backup` (backup and verify sections).
    pub backup: Value,
    /// `report.s3.json` of `bench-s3`.
    pub s3: Value,
    /// `report.unchanged.json` of `benches/run-unchanged.sh`.
    pub unchanged: Value,
}

/// One target: the item, the target, what was measured, whether it was met, and the
/// report it comes from.
struct Row {
    item: &'static str,
    target: String,
    measured: String,
    met: Option<bool>,
    from: &'static str,
}

/// A report's date as `YYYY-MM-DDTHH:MM:SSZ` (the runners write `2026-12-04 17:27:03 UTC`).
fn date_of(report: &Value) -> Option<String> {
    let d = report.get("date")?.as_str()?;
    Some(match d.strip_suffix(" UTC") {
        Some(rest) => format!("{}Z", rest.replacen(' ', "T", 1)),
        None => d.to_owned(),
    })
}

impl Reports {
    /// The first report written before `since` (or without a date), if any.
    pub fn older_than(&self, since: &str) -> Option<&'static str> {
        [
            ("report.json", &self.backup),
            ("report.s3.json", &self.s3),
            ("report.unchanged.json", &self.unchanged),
        ]
        .into_iter()
        .find(|(_, r)| date_of(r).is_none_or(|d| d.as_str() < since))
        .map(|(name, _)| name)
    }

    /// The targets of `report` whose text starts with one of `prefixes`.
    fn targets(report: &Value, prefixes: &[&str]) -> Vec<(String, String, Option<bool>)> {
        report
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let target = t.get("target")?.as_str()?;
                prefixes.iter().any(|p| target.starts_with(p)).then(|| {
                    (
                        target.to_owned(),
                        t.get("measured")
                            .and_then(Value::as_str)
                            .unwrap_or("n/a")
                            .to_owned(),
                        t.get("met").and_then(Value::as_bool),
                    )
                })
            })
            .collect()
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut add = |item, from, found: Vec<(String, String, Option<bool>)>| {
            for (target, measured, met) in found {
                rows.push(Row {
                    item,
                    target,
                    measured,
                    met,
                    from,
                });
            }
        };
        add(
            "1",
            "report.json",
            Self::targets(&self.backup, &["D2: default run"]),
        );
        let u = &self.unchanged;
        let num = |k: &str| u.get(k).and_then(Value::as_f64);
        let run = num("run_s");
        add(
            "2",
            "report.unchanged.json",
            vec![(
                "D2 unchanged: the second `run` < 1 s (wall, medians)".to_owned(),
                match (run, num("pg_dump_s"), num("psql_s")) {
                    (Some(r), Some(d), Some(p)) => format!(
                        "{r:.3} s (a bare `pg_dump -Fc`: {d:.2} s; `psql -c 'SELECT 1'`: {p:.3} s)"
                    ),
                    _ => "n/a".to_owned(),
                },
                run.map(|r| r < 1.0),
            )],
        );
        add(
            "3",
            "report.json",
            Self::targets(
                &self.backup,
                &[
                    "D2: tool ≤ 1.0× the shell reference",
                    "D2: tool ≤ 1.5× floor",
                ],
            ),
        );
        add(
            "4",
            "–",
            vec![(
                "parallel dump (`pg_dump -Fd -j N`) with a parallel level 4".to_owned(),
                "not built".to_owned(),
                Some(false),
            )],
        );
        add(
            "5",
            "report.s3.json",
            Self::targets(
                &self.s3,
                &[
                    "D2: `backup` into Garage",
                    "B2: snapshot into a fresh store",
                    "B1: unchanged second snapshot",
                    "B2: unchanged second snapshot",
                ],
            ),
        );
        rows
    }
}

/// The section, in Markdown.
pub fn render(reports: &Reports) -> String {
    let nproc = reports
        .unchanged
        .get("nproc")
        .map_or("?".to_owned(), Value::to_string);
    let mut out = format!(
        "## {SECTION_TITLE}\n\nFrom one `benches/run-all.sh` (run.sh {}, run-s3.sh {}, run-unchanged.sh {}; nproc {nproc}; \
         5 counted rounds each, medians). Other targets of earlier issues are in the tables above \
         and in REPORT.s3.md.\n\n| item | target | measured | met | report |\n|---|---|---|---|---|\n",
        date_of(&reports.backup).unwrap_or_default(),
        date_of(&reports.s3).unwrap_or_default(),
        date_of(&reports.unchanged).unwrap_or_default(),
    );
    for r in reports.rows() {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "n/a",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {met} | {} |\n",
            r.item,
            r.target.replace('|', "\\|"),
            r.measured.replace('|', "\\|"),
            r.from
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reports() -> Reports {
        Reports {
            backup: json!({"date": "2026-12-04 17:27:03 UTC", "targets": [
                {"target": "D2: tool ≤ 1.25× floor (wall time, medians)", "measured": "1.43×", "met": false},
                {"target": "D2: default run (backup + level-4 test restore) ≤ 0.6× a bare `pg_dump -Fc`", "measured": "0.85×", "met": false},
                {"target": "D2: tool ≤ 1.0× the shell reference (`pg_dump -Z0 | zstd`)", "measured": "0.92×", "met": true},
                {"target": "D2: tool ≤ 1.5× floor (wall time, medians)", "measured": "1.43×", "met": true},
            ]}),
            s3: json!({"date": "2026-12-04 17:50:00 UTC", "targets": [
                {"target": "D2: `backup` into Garage ≤ 1.15×", "measured": "1.19×", "met": false},
                {"target": "B1: snapshot into a fresh store", "measured": "0.97×", "met": true},
                {"target": "B2: unchanged second snapshot ≤ 1.2×", "measured": "2.60×", "met": false},
            ]}),
            unchanged: json!({"date": "2026-12-04T18:00:00Z", "nproc": 2, "run_s": 0.024,
                "pg_dump_s": 18.36, "psql_s": 0.046}),
        }
    }

    #[test]
    fn every_item_gets_its_rows_and_only_those() {
        let text = render(&reports());
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        // Header, then items 1, 2, 3 (two), 4, 5 (two of the three s3 targets).
        assert_eq!(rows.len(), 1 + 7, "{text}");
        assert!(rows[1].starts_with("| 1 | D2: default run") && rows[1].contains("**NO**"));
        assert!(
            rows[2].contains("0.024 s") && rows[2].contains("| yes |"),
            "{}",
            rows[2]
        );
        assert!(
            rows[3].contains("`pg_dump -Z0 \\| zstd`"),
            "pipes escaped: {}",
            rows[3]
        );
        assert!(rows[5].starts_with("| 4 |") && rows[5].contains("not built"));
        assert!(
            !text.contains("1.25×"),
            "targets of earlier issues stay out"
        );
        assert!(!text.contains("B1: snapshot into a fresh"));
        assert!(text.contains("nproc 2"));
    }

    #[test]
    fn reports_of_an_earlier_run_are_refused() {
        let r = reports();
        assert_eq!(r.older_than("2026-12-04T17:00:00Z"), None);
        assert_eq!(r.older_than("2026-12-04T17:30:00Z"), Some("report.json"));
        let undated = Reports {
            unchanged: json!({}),
            ..reports()
        };
        assert_eq!(
            undated.older_than("2026-12-04T17:00:00Z"),
            Some("report.unchanged.json")
        );
    }
}
