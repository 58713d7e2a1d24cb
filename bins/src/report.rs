//! `pre-deploy report --html FILE`: one self-contained HTML page (inline CSS, inline SVG charts,
//! no script and no remote resource) over every configured project and environment, from
//! `deploy_gate::environment_report`. Every value from the store or the config is escaped.

use std::fmt::Write as _;
use std::path::Path;

use deploy_gate::{
    BackupKind, EnvironmentReport, Gate, GateError, ReportBackup, Target, VerificationLevel,
    environment_report, human_bytes,
};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::all::Walk;
use crate::cli::Cli;
use crate::render::Output;

/// What one project/environment came to: its report, or why it could not be read.
struct Section {
    target: Target,
    result: Result<EnvironmentReport, GateError>,
}

/// `pre-deploy report --html FILE`: gathers every target (reads only), writes the page
/// atomically, prints a summary (a JSON document with `--json`). The page is written even when
/// a target cannot be read (its section says why); the exit code is then that target's (the
/// first one's), as with `status`.
pub async fn report(cli: &Cli, html: &Path, out: &Output) -> Result<u8, GateError> {
    let walk = Walk::new(cli, None)?;
    let mut sections = Vec::new();
    for t in &walk.targets {
        let result = async {
            let settings = walk.settings(t)?;
            let gate = Gate::from_settings(&settings, false)?;
            environment_report(&gate, t.project.as_deref(), settings.retention.as_ref()).await
        }
        .await;
        sections.push(Section {
            target: t.clone(),
            result,
        });
    }
    let page = render(&sections, Timestamp::now());
    crate::metrics::write_atomically(html, page.as_bytes()).map_err(|e| GateError::Usage {
        message: format!("cannot write the report {}: {e}", html.display()),
    })?;
    let code = sections
        .iter()
        .find_map(|s| s.result.as_ref().err())
        .map_or(0, |e| e.exit_code().code());
    if out.json {
        let results: Vec<Value> = sections
            .iter()
            .map(|s| match &s.result {
                Ok(r) => {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    v["ok"] = json!(true);
                    v
                }
                Err(e) => json!({
                    "project": s.target.project,
                    "environment": s.target.environment,
                    "ok": false,
                    "exit_code": e.exit_code().code(),
                    "error": e.to_string(),
                    "hint": e.hint(),
                }),
            })
            .collect();
        crate::progress::print_result(&json!({
            "ok": code == 0,
            "command": "report",
            "exit_code": code,
            "file": html,
            "results": results,
        }));
        return Ok(code);
    }
    let backups: usize = sections
        .iter()
        .filter_map(|s| s.result.as_ref().ok())
        .map(|r| r.backups.len())
        .sum();
    if !out.quiet || code != 0 {
        println!(
            "wrote {}: {} project/environment(s), {backups} backup(s)",
            html.display(),
            sections.len()
        );
        for s in &sections {
            if let Err(e) = &s.result {
                println!(
                    "  FAILED  {}  exit {}: {e}",
                    s.target.label(),
                    e.exit_code().code()
                );
            }
        }
    }
    Ok(code)
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A fragment id for a target: letters, digits and dashes only.
fn anchor(label: &str) -> String {
    let slug: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("target-{slug}")
}

/// `2026-12-03 07:35 UTC`.
fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The colour of a kind in the charts and its legend.
fn kind_colour(k: BackupKind) -> &'static str {
    match k {
        BackupKind::PreDeploy => "#2563eb",
        BackupKind::Scheduled => "#059669",
        BackupKind::Manual => "#d97706",
        _ => "#7c3aed",
    }
}

/// The verification badge of a backup: class and text.
fn badge(verified: Option<bool>, level: Option<VerificationLevel>) -> (&'static str, String) {
    match (verified, level) {
        (None, _) => ("unverified", "unverified".into()),
        (Some(false), _) => ("failed", "FAILED".into()),
        (Some(true), Some(l)) => (
            match l {
                VerificationLevel::Restore => "l4",
                VerificationLevel::Archive => "l3",
                _ => "l12",
            },
            format!("level {l}"),
        ),
        (Some(true), None) => ("unverified", "passed, no level".into()),
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0; padding: 24px 32px; color: #1f2937; background: #f8fafc; font-size: 14px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0 0 4px; }
h3 { font-size: 15px; margin: 20px 0 8px; color: #374151; }
.meta { color: #6b7280; margin: 0 0 16px; }
section.target { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px;
  padding: 20px 24px; margin: 20px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px 5px 0; border-bottom: 1px solid #e5e7eb;
  vertical-align: top; }
th { color: #6b7280; font-weight: 600; font-size: 12px; text-transform: uppercase; }
td.num { text-align: right; white-space: nowrap; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
table.timeline code, table.timeline td:nth-child(2), table.retention td { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  white-space: nowrap; }
.l4 { background: #dcfce7; color: #166534; }
.l3 { background: #ecfccb; color: #3f6212; }
.l12 { background: #fef9c3; color: #854d0e; }
.failed { background: #fee2e2; color: #991b1b; font-weight: 600; }
.unverified { background: #f3f4f6; color: #4b5563; }
.pin { background: #ede9fe; color: #5b21b6; }
.deployed { background: #dbeafe; color: #1e40af; }
.remove { background: #fee2e2; color: #991b1b; }
.error { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; padding: 10px 14px;
  border-radius: 6px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
svg.chart { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; }
svg.chart text { font-family: system-ui, "DejaVu Sans", sans-serif; font-size: 11px;
  fill: #4b5563; }
svg.chart .title { font-size: 13px; font-weight: 600; fill: #1f2937; }
.legend span { margin-right: 14px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 5px;
  margin-right: 4px; }
.muted { color: #6b7280; }
"#;

/// The whole page.
fn render(sections: &[Section], now: Timestamp) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>pre-deploy report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>pre-deploy report</h1>\n<p class=\"meta\">Generated {} by pre-deploy {} · \
         {} project/environment(s) · times in UTC</p>\n",
        esc(&when(now)),
        esc(env!("CARGO_PKG_VERSION")),
        sections.len()
    );
    overview(&mut h, sections);
    for s in sections {
        let label = s.target.label();
        let _ = write!(
            h,
            "<section class=\"target\" id=\"{}\">\n<h2>{}</h2>\n",
            anchor(&label),
            esc(&label)
        );
        match &s.result {
            Ok(r) => target(&mut h, r),
            Err(e) => {
                let _ = writeln!(
                    h,
                    "<p class=\"error\">Cannot read this project/environment (exit {}): {}{}</p>",
                    e.exit_code().code(),
                    esc(&e.to_string()),
                    e.hint()
                        .map(|x| format!("<br>Hint: {}", esc(x)))
                        .unwrap_or_default()
                );
            }
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// The table at the top: one row per project/environment.
fn overview(h: &mut String, sections: &[Section]) {
    h.push_str(
        "<table class=\"overview\">\n<tr><th>Project / environment</th><th>Backups</th>\
         <th>Newest backup</th><th>Newest passing verification</th><th>Retention next</th></tr>\n",
    );
    for s in sections {
        let label = s.target.label();
        let link = format!("<a href=\"#{}\">{}</a>", anchor(&label), esc(&label));
        match &s.result {
            Err(e) => {
                let _ = writeln!(
                    h,
                    "<tr class=\"overview-row\"><td>{link}</td><td colspan=\"4\">\
                     <span class=\"badge failed\">exit {}</span> {}</td></tr>",
                    e.exit_code().code(),
                    esc(&e.to_string())
                );
            }
            Ok(r) => {
                let newest = r.backups.first().map_or_else(
                    || "<span class=\"muted\">none</span>".to_owned(),
                    |b| {
                        format!(
                            "<code>{}</code><br>{}",
                            esc(b.id.as_str()),
                            esc(&when(b.created_at))
                        )
                    },
                );
                let verified = r
                    .backups
                    .iter()
                    .filter(|b| b.verified == Some(true))
                    .max_by_key(|b| b.verified_at)
                    .map_or_else(
                        || "<span class=\"badge failed\">none</span>".to_owned(),
                        |b| {
                            let (class, text) = badge(b.verified, b.level_reached);
                            format!(
                                "<span class=\"badge {class}\">{}</span> {}",
                                esc(&text),
                                b.verified_at.map(when).map(|t| esc(&t)).unwrap_or_default()
                            )
                        },
                    );
                let retention = match &r.retention {
                    None => "<span class=\"muted\">no rules</span>".to_owned(),
                    Some(f) if f.removals.is_empty() => "nothing to remove".to_owned(),
                    Some(f) => format!("{} backup(s) to remove", f.removals.len()),
                };
                let _ = writeln!(
                    h,
                    "<tr class=\"overview-row\"><td>{link}</td><td class=\"num\">{}</td>\
                     <td>{newest}</td><td>{verified}</td><td>{retention}</td></tr>",
                    r.backups.len()
                );
            }
        }
    }
    h.push_str("</table>\n");
}

/// One project/environment's section body.
fn target(h: &mut String, r: &EnvironmentReport) {
    let _ = writeln!(
        h,
        "<p class=\"meta\">Store <code>{}</code> · {} backup(s)</p>",
        esc(&r.store),
        r.backups.len()
    );
    if r.backups.is_empty() {
        h.push_str("<p class=\"muted\">No backups yet.</p>\n");
    } else {
        h.push_str("<h3>Size and duration over time</h3>\n<div class=\"charts\">\n");
        h.push_str(&chart(
            "Stored size",
            &r.backups,
            |b| b.stored_bytes as f64,
            Axis::Bytes,
        ));
        h.push_str(&chart(
            "Duration",
            &r.backups,
            |b| b.duration_seconds,
            Axis::Seconds,
        ));
        h.push_str("</div>\n<p class=\"legend\">");
        let mut kinds: Vec<BackupKind> = r.backups.iter().map(|b| b.kind).collect();
        kinds.sort();
        kinds.dedup();
        for k in kinds {
            let _ = write!(
                h,
                "<span><i style=\"background:{}\"></i>{}</span>",
                kind_colour(k),
                esc(k.as_str())
            );
        }
        h.push_str("<span class=\"muted\">a red ring: verification failed</span></p>\n");
        timeline(h, &r.backups);
    }
    sources(h, r);
    retention(h, r);
}

/// The backup timeline, newest first.
fn timeline(h: &mut String, backups: &[ReportBackup]) {
    h.push_str(
        "<h3>Backups</h3>\n<table class=\"timeline\">\n<tr><th>Backup</th><th>Started</th>\
         <th>Kind</th><th>Verified</th><th>Size</th><th>Duration</th><th>Pinned</th>\
         <th>Commit</th><th>Deployed</th></tr>\n",
    );
    for b in backups {
        let (class, text) = badge(b.verified, b.level_reached);
        let pinned = match (&b.pinned, &b.pin_note) {
            (false, _) => String::new(),
            (true, None) => "<span class=\"badge pin\">pinned</span>".into(),
            (true, Some(n)) => format!(
                "<span class=\"badge pin\" title=\"{}\">pinned</span> {}",
                esc(n),
                esc(n)
            ),
        };
        let commit = b.commit.as_deref().map_or_else(String::new, |c| {
            format!(
                "<code title=\"{}\">{}</code>{}",
                esc(c),
                esc(&c.chars().take(12).collect::<String>()),
                b.branch
                    .as_deref()
                    .map(|br| format!(" <span class=\"muted\">{}</span>", esc(br)))
                    .unwrap_or_default()
            )
        });
        let deployed = b.deployed_at.map_or_else(String::new, |t| {
            format!(
                "<span class=\"badge deployed\">deployed</span> {}{}",
                esc(&when(t)),
                b.deployed_commit
                    .as_deref()
                    .filter(|c| Some(*c) != b.commit.as_deref())
                    .map(|c| format!(" <code>{}</code>", esc(c)))
                    .unwrap_or_default()
            )
        });
        let _ = writeln!(
            h,
            "<tr class=\"backup\" id=\"backup-{id}\"><td><code>{id}</code></td><td>{}</td>\
             <td>{}</td><td><span class=\"badge {class}\">{}</span></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{pinned}</td><td>{commit}</td><td>{deployed}</td></tr>",
            esc(&when(b.created_at)),
            esc(b.kind.as_str()),
            esc(&text),
            esc(&human_bytes(b.stored_bytes)),
            esc(&seconds(b.duration_seconds)),
            id = esc(b.id.as_str()),
        );
    }
    h.push_str("</table>\n");
}

/// The last verification of each source.
fn sources(h: &mut String, r: &EnvironmentReport) {
    h.push_str("<h3>Last verification of each source</h3>\n");
    if r.sources.is_empty() {
        h.push_str("<p class=\"muted\">No source has been verified yet.</p>\n");
        return;
    }
    h.push_str(
        "<table class=\"sources\">\n<tr><th>Source</th><th>Kind</th><th>Location</th>\
         <th>Backup</th><th>Verified</th><th>Result</th><th>Notes</th></tr>\n",
    );
    for s in &r.sources {
        let (class, text) = badge(Some(s.passed), s.level_reached);
        let mut notes: Vec<String> = s.failures.iter().map(|f| esc(f)).collect();
        if let Some(l) = &s.limited_by {
            notes.push(format!("limited: {}", esc(l)));
        }
        let _ = writeln!(
            h,
            "<tr class=\"source\"><td>{}</td><td>{}</td><td><code>{}</code></td>\
             <td><code>{}</code></td><td>{}</td><td><span class=\"badge {class}\">{}</span></td>\
             <td>{}</td></tr>",
            esc(&s.source),
            esc(&s.kind),
            esc(&s.location),
            esc(s.backup_id.as_str()),
            esc(&when(s.verified_at)),
            esc(&text),
            notes.join("<br>")
        );
    }
    h.push_str("</table>\n");
}

/// What retention would remove next.
fn retention(h: &mut String, r: &EnvironmentReport) {
    h.push_str("<h3>What retention would remove next</h3>\n");
    let Some(f) = &r.retention else {
        h.push_str(
            "<p class=\"muted\">No retention rules are configured: nothing is ever pruned.</p>\n",
        );
        return;
    };
    h.push_str("<p>");
    for (kind, rules) in &f.rules {
        let _ = write!(h, "<code>{}</code>: {}<br>", esc(kind.as_str()), esc(rules));
    }
    let _ = writeln!(
        h,
        "<span class=\"muted\">Periods in {}. Planned as <code>pre-deploy prune</code> plans \
         it (a dry run: the report never removes anything).</span></p>",
        esc(&f.time_zone)
    );
    if f.removals.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"retention-none\">Nothing: the plan keeps all {} backup(s).</p>",
            f.kept
        );
    } else {
        let _ = writeln!(
            h,
            "<p>{} backup(s) would be removed by the next <code>pre-deploy prune --yes</code> \
             ({} kept):</p>\n<table class=\"retention\">\n<tr><th>Backup</th><th>Kind</th>\
             <th>Started</th><th>Why</th></tr>",
            f.removals.len(),
            f.kept
        );
        for d in &f.removals {
            let _ = writeln!(
                h,
                "<tr class=\"removal\"><td><span class=\"badge remove\">remove</span> \
                 <code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(d.id.as_str()),
                esc(d.kind.as_str()),
                esc(&when(d.created_at)),
                esc(&d.reasons.join("; "))
            );
        }
        h.push_str("</table>\n");
    }
    for v in &f.budget_violations {
        let _ = writeln!(
            h,
            "<p class=\"error\">`prune --yes` alone would refuse: {}</p>",
            esc(&v.message)
        );
    }
    for w in &f.warnings {
        let _ = writeln!(h, "<p class=\"error\">{}</p>", esc(w));
    }
}

/// How a chart's values are labelled.
#[derive(Clone, Copy)]
enum Axis {
    Bytes,
    Seconds,
}

impl Axis {
    /// The unit of the labels for values up to `max`: its size and name.
    fn unit(self, max: f64) -> (f64, &'static str) {
        let units: &[(f64, &str)] = match self {
            Axis::Bytes => &[
                (1.0, "B"),
                (1024.0, "KiB"),
                (1024.0 * 1024.0, "MiB"),
                (1024.0 * 1024.0 * 1024.0, "GiB"),
                (1024.0 * 1024.0 * 1024.0 * 1024.0, "TiB"),
            ],
            Axis::Seconds => &[(1.0, "s"), (60.0, "min"), (3600.0, "h")],
        };
        units
            .iter()
            .rev()
            .find(|(size, _)| max >= *size)
            .copied()
            .unwrap_or(units[0])
    }
}

/// A step of 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

/// A line chart of `value` over the backups' start times (oldest on the left), as inline SVG:
/// one dot per backup in its kind's colour (ringed red when its verification failed), with a
/// title for each dot.
fn chart(
    title: &str,
    backups: &[ReportBackup],
    value: impl Fn(&ReportBackup) -> f64,
    axis: Axis,
) -> String {
    const W: f64 = 560.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 72.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 34.0;
    const BOTTOM: f64 = 40.0;
    const TICKS: f64 = 4.0;
    let mut points: Vec<(&ReportBackup, f64, f64)> = backups
        .iter()
        .map(|b| (b, b.created_at.as_millisecond() as f64, value(b).max(0.0)))
        .collect();
    points.sort_by(|a, b| a.1.total_cmp(&b.1));
    let max = points.iter().map(|p| p.2).fold(0.0, f64::max);
    let (unit, unit_name) = axis.unit(max);
    let step = nice_step(max / unit / TICKS) * unit;
    let top = (max / step).ceil().max(1.0) * step;
    let (t0, t1) = (
        points.first().map_or(0.0, |p| p.1),
        points.last().map_or(0.0, |p| p.1),
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t: f64| {
        if t1 > t0 {
            LEFT + (t - t0) / (t1 - t0) * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\">\n<title>{t}</title>\n\
         <text class=\"title\" x=\"{LEFT}\" y=\"20\">{t}</text>\n",
        t = esc(title)
    );
    let ticks = (top / step).round() as usize;
    for i in 0..=ticks {
        let v = step * i as f64;
        let yy = y(v);
        let label = format!("{} {unit_name}", trim_number(v / unit));
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#e5e7eb\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            esc(&label)
        );
    }
    let axis_y = TOP + plot_h;
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{axis_y}\" x2=\"{:.1}\" y2=\"{axis_y}\" stroke=\"#9ca3af\"/>",
        W - RIGHT
    );
    // The first and the last start time under the axis (one label when they are the same).
    let format = if t1 - t0 < 3_600_000.0 {
        "%Y-%m-%d %H:%M:%S UTC"
    } else {
        "%Y-%m-%d %H:%M UTC"
    };
    let label_at = |t: f64| {
        Timestamp::from_millisecond(t as i64)
            .map(|ts| ts.strftime(format).to_string())
            .unwrap_or_default()
    };
    if t1 > t0 {
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{:.1}\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" \
             text-anchor=\"end\">{}</text>",
            axis_y + 18.0,
            esc(&label_at(t0)),
            W - RIGHT,
            axis_y + 18.0,
            esc(&label_at(t1))
        );
    } else {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(t0),
            axis_y + 18.0,
            esc(&label_at(t0))
        );
    }
    if points.len() > 1 {
        let line: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.1), y(p.2)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"#94a3b8\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
    }
    for (b, t, v) in &points {
        let ring = if b.verified == Some(false) {
            " stroke=\"#dc2626\" stroke-width=\"3\""
        } else {
            " stroke=\"#fff\" stroke-width=\"1.5\""
        };
        let shown = match axis {
            Axis::Bytes => human_bytes(*v as u64),
            Axis::Seconds => seconds(*v),
        };
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{}\"{ring}><title>{} ({}): {}</title></circle>",
            x(*t),
            y(*v),
            kind_colour(b.kind),
            esc(b.id.as_str()),
            esc(b.kind.as_str()),
            esc(&shown)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// `2`, `2.5`, `0.25`: a tick value without trailing zeros.
fn trim_number(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn every_value_from_the_store_is_escaped_and_nothing_is_fetched() {
        let evil = "<script>alert(1)</script>";
        let at = Timestamp::from_second(1_764_700_000).expect("ts");
        let backup = ReportBackup {
            id: "20251202T183320Z-4be1a0".parse().expect("id"),
            kind: BackupKind::PreDeploy,
            created_at: at,
            duration_seconds: 3.5,
            stored_bytes: 1_500_000,
            raw_bytes: 9_000_000,
            sources: vec![evil.into()],
            verified: Some(false),
            level_reached: None,
            verified_at: Some(at),
            pinned: true,
            pin_note: Some(evil.into()),
            commit: Some(evil.into()),
            branch: Some(evil.into()),
            deployed_at: Some(at),
            deployed_commit: Some(format!("{evil}2")),
            expires_at: None,
        };
        let report = EnvironmentReport {
            project: Some(evil.into()),
            environment: evil.into(),
            store: evil.into(),
            generated_at: at,
            backups: vec![backup],
            sources: vec![],
            retention: None,
        };
        let sections = [
            Section {
                target: Target {
                    project: Some(evil.into()),
                    environment: evil.into(),
                },
                result: Ok(report),
            },
            Section {
                target: Target {
                    project: None,
                    environment: "staging".into(),
                },
                result: Err(GateError::Usage {
                    message: evil.into(),
                }),
            },
        ];
        let page = render(&sections, at);
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains(">FAILED<") && page.contains(">pinned<"));
        assert_eq!(page.matches("<svg class=\"chart\"").count(), 2);
        assert!(page.contains("Cannot read this project/environment (exit 2)"));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(12.0), 20.0);
        assert_eq!(trim_number(2.50), "2.5");
        assert_eq!(trim_number(4.0), "4");
        assert_eq!(Axis::Bytes.unit(3.0 * 1024.0 * 1024.0).1, "MiB");
        assert_eq!(Axis::Seconds.unit(0.2).1, "s");
        assert_eq!(anchor("shop/production"), "target-shop-production");
    }
}
