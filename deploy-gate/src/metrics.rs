//! Prometheus metrics in the node_exporter textfile-collector format.
//!
//! A textfile is replaced whole on every write, so the values come from the store (the newest
//! verified backup of each project/environment), not from one run: a run for one project never
//! erases another's metrics. Only the outcome of the last run (`predeploy_last_run_success`,
//! `predeploy_last_exit_code`) is not in the store; [`previous_runs`] reads it back from the
//! file being replaced.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::inventory::BackupListing;

/// What the metrics of one project/environment are made of.
#[derive(Debug, Clone, Default)]
pub struct TargetMetrics {
    /// The project (`None`: the top level of the config; labelled `project=""`).
    pub project: Option<String>,
    /// The environment.
    pub environment: String,
    /// Its backups, as [`crate::Inventory::list`] returns them (any order).
    pub backups: Vec<BackupListing>,
    /// The exit code of the last run that covered it, when known.
    pub last_exit_code: Option<u8>,
}

/// One metric family: name (without the prefix), type and help text.
const FAMILIES: [(&str, &str, &str); 8] = [
    (
        "last_success_timestamp_seconds",
        "gauge",
        "When the newest backup with a passing verification finished (Unix time).",
    ),
    (
        "last_verified_timestamp_seconds",
        "gauge",
        "When a backup last passed a verification (Unix time).",
    ),
    (
        "backup_duration_seconds",
        "gauge",
        "How long the newest verified backup took, from its start to its last artifact.",
    ),
    (
        "backup_size_bytes",
        "gauge",
        "Stored (compressed) bytes of the newest verified backup, per source.",
    ),
    (
        "backup_raw_bytes",
        "gauge",
        "Uncompressed bytes of the newest verified backup, per source.",
    ),
    (
        "verification_level",
        "gauge",
        "Level the newest verified backup reached: 0 none, 1 checksum, 2 decompress, 3 archive, 4 restore.",
    ),
    (
        "last_run_success",
        "gauge",
        "Whether the last pre-deploy run for this project/environment succeeded (1) or not (0).",
    ),
    (
        "last_exit_code",
        "gauge",
        "Exit code of the last pre-deploy run for this project/environment.",
    ),
];

/// The metric name prefix.
pub const METRICS_PREFIX: &str = "predeploy_";

/// Renders the metrics of every target in the text exposition format, with `# HELP` and
/// `# TYPE` lines, one family after another; targets in the order given.
pub fn render_metrics(targets: &[TargetMetrics]) -> String {
    let mut samples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in targets {
        let base = format!(
            "project=\"{}\",environment=\"{}\"",
            escape(t.project.as_deref().unwrap_or("")),
            escape(&t.environment)
        );
        let mut push = |family: &'static str, labels: &str, value: String| {
            samples
                .entry(family)
                .or_default()
                .push(format!("{METRICS_PREFIX}{family}{{{labels}}} {value}"));
        };
        let passed = |b: &&BackupListing| b.last_verification.as_ref().is_some_and(|v| v.passed);
        let newest = t
            .backups
            .iter()
            .filter(passed)
            .max_by_key(|b| b.manifest.created_at);
        if let Some(b) = newest {
            let m = &b.manifest;
            push(
                "last_success_timestamp_seconds",
                &base,
                m.finished_at.as_second().to_string(),
            );
            let verified = t
                .backups
                .iter()
                .filter(passed)
                .filter_map(|b| b.last_verification.as_ref().map(|v| v.verified_at))
                .max();
            if let Some(at) = verified {
                push(
                    "last_verified_timestamp_seconds",
                    &base,
                    at.as_second().to_string(),
                );
            }
            let took = m.finished_at.duration_since(m.created_at).as_secs_f64();
            push(
                "backup_duration_seconds",
                &base,
                format!("{:.3}", took.max(0.0)),
            );
            for s in &m.sources {
                let labels = format!("{base},source=\"{}\"", escape(s.name.as_str()));
                push("backup_size_bytes", &labels, s.stored_size().to_string());
                let raw: u64 = s.artifacts.iter().map(|a| a.raw_size).sum();
                push("backup_raw_bytes", &labels, raw.to_string());
            }
            let level = b
                .last_verification
                .as_ref()
                .and_then(|v| v.level_reached)
                .map_or(0, |l| l as u8);
            push("verification_level", &base, level.to_string());
        }
        if let Some(code) = t.last_exit_code {
            push("last_run_success", &base, u8::from(code == 0).to_string());
            push("last_exit_code", &base, code.to_string());
        }
    }
    let mut out = String::new();
    for (name, kind, help) in FAMILIES {
        let Some(lines) = samples.get(name) else {
            continue;
        };
        let _ = writeln!(out, "# HELP {METRICS_PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {METRICS_PREFIX}{name} {kind}");
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The last exit code of each project/environment (`None`: `project=""`) found in a textfile
/// written earlier by [`render_metrics`]; lines it cannot read are skipped.
pub fn previous_runs(text: &str) -> BTreeMap<(Option<String>, String), u8> {
    let mut out = BTreeMap::new();
    let prefix = format!("{METRICS_PREFIX}last_exit_code{{");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(code) = value.trim().parse::<u8>() else {
            continue;
        };
        let labels = parse_labels(labels);
        let (Some(project), Some(environment)) = (labels.get("project"), labels.get("environment"))
        else {
            continue;
        };
        let project = (!project.is_empty()).then(|| project.clone());
        out.insert((project, environment.clone()), code);
    }
    out
}

/// `a="x",b="y"` into a map, undoing [`escape`].
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => return out,
                },
                '"' => break,
                o => value.push(o),
            }
        }
        out.insert(name.trim().to_owned(), value);
        if chars.next() != Some(',') {
            return out;
        }
    }
}

/// A label value as the exposition format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::{Manifest, VerificationLevel, VerificationRecord};

    fn listing(
        id: &str,
        created: i64,
        took: i64,
        level: Option<VerificationLevel>,
    ) -> BackupListing {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1,
            "id": id,
            "kind": "manual",
            "environment": "production",
            "created_at": jiff::Timestamp::from_second(created).expect("ts"),
            "finished_at": jiff::Timestamp::from_second(created + took).expect("ts"),
            "tool": {"name": "pre-deploy", "version": "0"},
            "host": "h",
            "deploy": {},
            "sources": [{
                "name": "db", "kind": "postgres", "location": "postgres://h/d",
                "artifacts": [{
                    "name": "db.dump.zst", "key": "k", "format": "pg_dump-custom",
                    "compression": "zstd", "stored_size": 1200, "raw_size": 5000,
                    "sha256": format!("sha256:{}", "0".repeat(64))
                }],
                "stats": {}
            }]
        }))
        .expect("manifest");
        let last_verification = level.map(|l| {
            serde_json::from_value::<VerificationRecord>(serde_json::json!({
                "format_version": 1,
                "backup_id": id,
                "verified_at": jiff::Timestamp::from_second(created + took + 5).expect("ts"),
                "level_requested": l,
                "level_reached": l,
                "passed": true,
                "findings": [],
                "tool": {"name": "pre-deploy", "version": "0"},
                "host": "h"
            }))
            .expect("record")
        });
        BackupListing {
            manifest,
            last_verification,
        }
    }

    #[test]
    fn the_exact_text_format() {
        let targets = [
            TargetMetrics {
                project: Some("shop".into()),
                environment: "production".into(),
                backups: vec![
                    listing("20260101T000000Z-aaaaaa", 1_767_225_600, 10, None),
                    listing(
                        "20251231T000000Z-bbbbbb",
                        1_767_139_200,
                        42,
                        Some(VerificationLevel::Restore),
                    ),
                ],
                last_exit_code: Some(5),
            },
            TargetMetrics {
                project: None,
                environment: "sta\"ging".into(),
                backups: vec![],
                last_exit_code: Some(0),
            },
        ];
        let text = render_metrics(&targets);
        let want = r#"# HELP predeploy_last_success_timestamp_seconds When the newest backup with a passing verification finished (Unix time).
# TYPE predeploy_last_success_timestamp_seconds gauge
predeploy_last_success_timestamp_seconds{project="shop",environment="production"} 1767139242
# HELP predeploy_last_verified_timestamp_seconds When a backup last passed a verification (Unix time).
# TYPE predeploy_last_verified_timestamp_seconds gauge
predeploy_last_verified_timestamp_seconds{project="shop",environment="production"} 1767139247
# HELP predeploy_backup_duration_seconds How long the newest verified backup took, from its start to its last artifact.
# TYPE predeploy_backup_duration_seconds gauge
predeploy_backup_duration_seconds{project="shop",environment="production"} 42.000
# HELP predeploy_backup_size_bytes Stored (compressed) bytes of the newest verified backup, per source.
# TYPE predeploy_backup_size_bytes gauge
predeploy_backup_size_bytes{project="shop",environment="production",source="db"} 1200
# HELP predeploy_backup_raw_bytes Uncompressed bytes of the newest verified backup, per source.
# TYPE predeploy_backup_raw_bytes gauge
predeploy_backup_raw_bytes{project="shop",environment="production",source="db"} 5000
# HELP predeploy_verification_level Level the newest verified backup reached: 0 none, 1 checksum, 2 decompress, 3 archive, 4 restore.
# TYPE predeploy_verification_level gauge
predeploy_verification_level{project="shop",environment="production"} 4
# HELP predeploy_last_run_success Whether the last pre-deploy run for this project/environment succeeded (1) or not (0).
# TYPE predeploy_last_run_success gauge
predeploy_last_run_success{project="shop",environment="production"} 0
predeploy_last_run_success{project="",environment="sta\"ging"} 1
# HELP predeploy_last_exit_code Exit code of the last pre-deploy run for this project/environment.
# TYPE predeploy_last_exit_code gauge
predeploy_last_exit_code{project="shop",environment="production"} 5
predeploy_last_exit_code{project="",environment="sta\"ging"} 0
"#;
        assert_eq!(text, want);
        let runs = previous_runs(&text);
        assert_eq!(
            runs.get(&(Some("shop".into()), "production".into())),
            Some(&5)
        );
        assert_eq!(runs.get(&(None, "sta\"ging".into())), Some(&0));
        assert_eq!(runs.len(), 2);
    }

    #[test]
    fn nothing_known_renders_nothing() {
        assert_eq!(render_metrics(&[]), "");
        assert!(previous_runs("garbage\npredeploy_last_exit_code{x} y\n").is_empty());
    }
}
