//! Running in GitHub Actions: a job summary (Markdown appended to `GITHUB_STEP_SUMMARY`) with the
//! outcome, the backup and every stage, and an `::error::` annotation when the command fails.

use std::io::Write;
use std::sync::{Arc, Mutex};

use backup_core::progress::{Observer, StageEnd, StageInfo};
use deploy_gate::human_bytes;

use crate::notify::FactValues;

/// Collects the stages of the command for the job summary.
#[derive(Default)]
pub struct StepSummary {
    stages: Mutex<Vec<(StageInfo, StageEnd)>>,
}

impl Observer for StepSummary {
    fn started(&self, _stage: &StageInfo) {}

    fn finished(&self, stage: &StageInfo, end: &StageEnd) {
        if let Ok(mut s) = self.stages.lock() {
            s.push((stage.clone(), end.clone()));
        }
    }
}

/// The summary collector when running in GitHub Actions (`GITHUB_ACTIONS=true` or a
/// `GITHUB_STEP_SUMMARY` file), else `None`.
pub fn detect() -> Option<Arc<StepSummary>> {
    in_actions().then(Arc::default)
}

fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
        || std::env::var_os("GITHUB_STEP_SUMMARY").is_some()
}

/// How the command ended, for the summary and the annotation.
pub struct Ending<'a> {
    /// The command (`run`, `backup`, …).
    pub command: &'a str,
    /// Its exit code.
    pub code: u8,
    /// The error with its causes, and the hint, when it failed with one.
    pub error: Option<(String, Option<String>)>,
    /// What it recorded about its backup.
    pub facts: FactValues,
}

impl StepSummary {
    /// Appends the summary to `GITHUB_STEP_SUMMARY` (when set) and prints the annotation of a
    /// failure. A summary that cannot be written is a warning, never another exit code.
    pub fn finish(&self, end: &Ending<'_>) {
        if end.code != 0 && std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
            // On stderr: stdout may be a JSON document; the runner reads workflow commands
            // from both.
            eprintln!("{}", annotation(end));
        }
        let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
            return;
        };
        let stages = self.stages.lock().map(|s| s.clone()).unwrap_or_default();
        let text = markdown(end, &stages);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(
                "pre-deploy: warning: cannot write the job summary {}: {e} (the exit code is not affected)",
                std::path::Path::new(&path).display()
            );
        }
    }
}

/// `::error title=…::message`, escaped as the runner expects.
fn annotation(end: &Ending<'_>) -> String {
    let mut message = match &end.error {
        Some((chain, hint)) => match hint {
            Some(h) => format!("{chain}\nhint: {h}"),
            None => chain.clone(),
        },
        None => format!("exited with status {}", end.code),
    };
    if let Some(id) = &end.facts.backup_id {
        message.push_str(&format!("\nbackup {id}"));
    }
    format!(
        "::error title={}::{}",
        escape_property(&format!(
            "pre-deploy {} failed (exit {})",
            end.command, end.code
        )),
        escape_data(&message)
    )
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A Markdown table cell: no pipe or line break may end it early.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn markdown(end: &Ending<'_>, stages: &[(StageInfo, StageEnd)]) -> String {
    let verdict = match end.code {
        0 => "passed".to_owned(),
        c => format!("FAILED (exit {c})"),
    };
    let mut md = format!("### pre-deploy {}: {verdict}\n\n", end.command);
    let f = &end.facts;
    if f.backup_id.is_some() || f.level.is_some() {
        md.push_str("| Backup | Verified to | Stored | Snapshot |\n|---|---|---|---|\n");
        md.push_str(&format!(
            "| `{}` | {} | {} | {} |\n\n",
            cell(f.backup_id.as_deref().unwrap_or("-")),
            cell(f.level.as_deref().unwrap_or("-")),
            f.stored_bytes.map_or_else(|| "-".into(), human_bytes),
            f.snapshot_seconds
                .map_or_else(|| "-".into(), |s| format!("{s:.1} s")),
        ));
    }
    if !stages.is_empty() {
        md.push_str(
            "| Stage | Subject | Bytes | Time | Rate | Result |\n|---|---|---|---|---|---|\n",
        );
        for (s, e) in stages {
            let (bytes, rate) = if s.kind.counts_bytes() {
                (
                    human_bytes(e.bytes),
                    format!("{}/s", human_bytes(e.rate() as u64)),
                )
            } else {
                ("".into(), "".into())
            };
            md.push_str(&format!(
                "| {} | {} | {bytes} | {:.1} s | {rate} | {} |\n",
                s.kind,
                cell(&s.subject),
                e.elapsed.as_secs_f64(),
                cell(e.error.as_deref().map_or("ok", |e| e))
            ));
        }
        md.push('\n');
    }
    if let Some((chain, hint)) = &end.error {
        md.push_str(&format!("**Error:** {}\n\n", cell(chain)));
        if let Some(h) = hint {
            md.push_str(&format!("**Hint:** {}\n\n", cell(h)));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape_what_would_end_them_early() {
        let end = Ending {
            command: "run",
            code: 4,
            error: Some((
                "verification failed: 100% bad\nsecond line".into(),
                Some("run `pre-deploy verify`".into()),
            )),
            facts: FactValues::default(),
        };
        assert_eq!(
            annotation(&end),
            "::error title=pre-deploy run failed (exit 4)::verification failed: 100%25 bad%0Asecond line%0Ahint: run `pre-deploy verify`"
        );
        assert_eq!(escape_property("a: b, c"), "a%3A b%2C c");
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
