//! `bench-summary`: the table "Issue 17: every target, one run" from the reports that
//! `benches/run-all.sh` has just written (`report.json`, `report.s3.json`,
//! `report.unchanged.json`), appended to `benches/REPORT.md` (replacing an earlier one).

mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use table::{Reports, SECTION_TITLE, render};

/// Writes the table of issue 17's targets into benches/REPORT.md from the reports of one run.
#[derive(Debug, Parser)]
#[command(name = "bench-summary")]
struct Opts {
    /// Refuse reports written before this time (UTC, `2026-12-04T19:00:00Z`): every row must
    /// come from the same run
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Where the reports are [default: the benches/ directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let dir = opts
        .dir
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match run(&dir, opts.since.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-summary: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &std::path::Path, since: Option<&str>) -> Result<(), String> {
    let read = |name: &str| -> Result<serde_json::Value, String> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
    };
    let reports = Reports {
        backup: read("report.json")?,
        s3: read("report.s3.json")?,
        unchanged: read("report.unchanged.json")?,
    };
    if let Some(since) = since
        && let Some(stale) = reports.older_than(since)
    {
        return Err(format!(
            "{stale} was written before this run ({since}): run benches/run-all.sh"
        ));
    }
    let report_md = dir.join("REPORT.md");
    let text = std::fs::read_to_string(&report_md)
        .map_err(|e| format!("cannot read {}: {e}", report_md.display()))?;
    // A summary of an earlier run is replaced, not stacked.
    let kept = match text.find(&format!("\n## {SECTION_TITLE}")) {
        Some(at) => &text[..at],
        None => text.trim_end(),
    };
    let table = render(&reports);
    std::fs::write(&report_md, format!("{kept}\n\n{table}"))
        .map_err(|e| format!("cannot write {}: {e}", report_md.display()))?;
    print!("{table}");
    Ok(())
}
