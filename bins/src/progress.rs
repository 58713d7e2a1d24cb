//! How stages show while a command runs: progress bars on a terminal, plain timestamped lines
//! otherwise, and an NDJSON event stream (`--events ndjson`) for machines.
//!
//! The library reports stages through [`backup_core::progress`]; this module installs the
//! observers that draw them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_core::progress::{Observer, StageEnd, StageInfo};
use deploy_gate::human_bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::cli::ProgressMode;

/// Whether `--events ndjson` is on: results are then one more event line, not a document.
static NDJSON: AtomicBool = AtomicBool::new(false);

/// The bars, when drawn: log lines are printed above them (see [`LogWriter`]).
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Now, as log lines and events show it (UTC, seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Whether results are printed as events.
pub fn ndjson() -> bool {
    NDJSON.load(Ordering::Relaxed)
}

/// Prints a command's result: a pretty JSON document, or with `--events ndjson` one
/// `{"event":"result",…}` line after the stage events.
pub fn print_result(v: &Value) {
    let text = if ndjson() {
        serde_json::to_string(&json!({ "event": "result", "time": now(), "result": v }))
    } else {
        serde_json::to_string_pretty(v)
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.unwrap_or_else(|_| "{}".into()));
    let _ = out.flush();
}

/// Installs the observers the flags ask for; `summary` (GitHub Actions) sees every stage too.
pub fn install(
    mode: ProgressMode,
    events_ndjson: bool,
    quiet: bool,
    summary: Option<Arc<dyn Observer>>,
) {
    let mut observers: Vec<Arc<dyn Observer>> = Vec::new();
    if events_ndjson {
        NDJSON.store(true, Ordering::Relaxed);
        observers.push(Arc::new(Events));
    }
    let stderr_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mode = match mode {
        _ if quiet => ProgressMode::None,
        ProgressMode::Auto if stderr_is_terminal => ProgressMode::Bar,
        ProgressMode::Auto => ProgressMode::Plain,
        m => m,
    };
    match mode {
        ProgressMode::Bar => {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            if let Ok(mut slot) = BARS.lock() {
                *slot = Some(multi.clone());
            }
            observers.push(Arc::new(Bars {
                multi,
                bars: Mutex::default(),
            }));
        }
        ProgressMode::Plain => observers.push(Arc::new(Plain::start(plain_interval()))),
        ProgressMode::Auto | ProgressMode::None => {}
    }
    observers.extend(summary);
    if !observers.is_empty() {
        backup_core::progress::set_observer(Some(Arc::new(Fanout(observers))));
    }
}

/// `PREDEPLOY_PROGRESS_INTERVAL` (e.g. `10s`): how often plain lines report a running stage
/// (default 30 s).
fn plain_interval() -> Duration {
    std::env::var("PREDEPLOY_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| deploy_gate::parse_duration("PREDEPLOY_PROGRESS_INTERVAL", &v).ok())
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30))
}

/// Every observer in turn.
struct Fanout(Vec<Arc<dyn Observer>>);

impl Observer for Fanout {
    fn started(&self, stage: &StageInfo) {
        self.0.iter().for_each(|o| o.started(stage));
    }
    fn advanced(&self, stage: &StageInfo, bytes: u64) {
        self.0.iter().for_each(|o| o.advanced(stage, bytes));
    }
    fn finished(&self, stage: &StageInfo, end: &StageEnd) {
        self.0.iter().for_each(|o| o.finished(stage, end));
    }
}

/// `--events ndjson`: one JSON line per stage start and end on stdout.
struct Events;

impl Observer for Events {
    fn started(&self, s: &StageInfo) {
        emit(&json!({
            "event": "stage_start",
            "time": now(),
            "id": s.id,
            "stage": s.kind.as_str(),
            "subject": s.subject,
            "total_bytes": s.total,
        }));
    }

    fn finished(&self, s: &StageInfo, e: &StageEnd) {
        emit(&json!({
            "event": "stage_end",
            "time": now(),
            "id": s.id,
            "stage": s.kind.as_str(),
            "subject": s.subject,
            "ok": e.error.is_none(),
            "error": e.error,
            "bytes": e.bytes,
            "seconds": e.elapsed.as_secs_f64(),
            "bytes_per_second": e.rate().round(),
        }));
    }
}

fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Label of a byte-counting stage: `dump db/dump.pgc.zst`, `read backups/…/dump.pgc.zst`.
fn label(s: &StageInfo) -> String {
    format!("{} {}", s.kind, s.subject)
}

/// Progress bars (indicatif): bytes, rate and, when the size is known, ETA.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<Vec<(u64, ProgressBar)>>,
}

impl Observer for Bars {
    fn started(&self, s: &StageInfo) {
        if !s.kind.counts_bytes() {
            return;
        }
        let (bar, template) = match s.total {
            Some(total) => (
                ProgressBar::new(total),
                "{prefix} [{bar:24}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{prefix} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label(s));
        bar.enable_steady_tick(Duration::from_millis(200));
        let bar = self.multi.add(bar);
        if let Ok(mut bars) = self.bars.lock() {
            bars.push((s.id, bar));
        }
    }

    fn advanced(&self, s: &StageInfo, bytes: u64) {
        if let Ok(bars) = self.bars.lock()
            && let Some((_, bar)) = bars.iter().find(|(id, _)| *id == s.id)
        {
            bar.set_position(bytes);
        }
    }

    fn finished(&self, s: &StageInfo, _end: &StageEnd) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some(i) = bars.iter().position(|(id, _)| *id == s.id)
        {
            let (_, bar) = bars.remove(i);
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

/// Plain lines for logs: a running stage reports every interval (bytes and rate for a transfer,
/// the time so far for the others); a stage that ran at least one interval reports its end.
struct Plain {
    running: Arc<Mutex<Vec<Running>>>,
    interval: Duration,
}

struct Running {
    info: StageInfo,
    bytes: u64,
    started: Instant,
}

impl Plain {
    fn start(interval: Duration) -> Plain {
        let running: Arc<Mutex<Vec<Running>>> = Arc::default();
        let ticker = running.clone();
        // A detached thread: it only reads the table and prints; it dies with the process.
        let _ = std::thread::Builder::new()
            .name("progress-lines".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let lines: Vec<String> = match ticker.lock() {
                        Ok(r) => r
                            .iter()
                            .filter(|r| r.started.elapsed() >= interval)
                            .map(running_line)
                            .collect(),
                        Err(_) => return,
                    };
                    for l in lines {
                        eprintln!("{} {l}", now());
                    }
                }
            });
        Plain { running, interval }
    }
}

fn running_line(r: &Running) -> String {
    let secs = r.started.elapsed().as_secs_f64();
    if !r.info.kind.counts_bytes() {
        return format!("{}: running for {secs:.0}s", label(&r.info));
    }
    let rate = if secs > 0.0 {
        r.bytes as f64 / secs
    } else {
        0.0
    };
    let mut line = format!(
        "{}: {} so far, {}/s",
        label(&r.info),
        human_bytes(r.bytes),
        human_bytes(rate as u64)
    );
    if let Some(total) = r.info.total.filter(|t| *t > 0 && rate > 0.0) {
        let left = total.saturating_sub(r.bytes) as f64 / rate;
        line.push_str(&format!(
            " ({:.0}% of {}, about {:.0}s left)",
            r.bytes as f64 * 100.0 / total as f64,
            human_bytes(total),
            left
        ));
    }
    line
}

impl Observer for Plain {
    fn started(&self, s: &StageInfo) {
        if let Ok(mut r) = self.running.lock() {
            r.push(Running {
                info: s.clone(),
                bytes: 0,
                started: Instant::now(),
            });
        }
    }

    fn advanced(&self, s: &StageInfo, bytes: u64) {
        if let Ok(mut r) = self.running.lock()
            && let Some(r) = r.iter_mut().find(|r| r.info.id == s.id)
        {
            r.bytes = bytes;
        }
    }

    fn finished(&self, s: &StageInfo, end: &StageEnd) {
        let Ok(mut r) = self.running.lock() else {
            return;
        };
        let Some(i) = r.iter().position(|r| r.info.id == s.id) else {
            return;
        };
        r.remove(i);
        drop(r);
        if end.elapsed < self.interval {
            return;
        }
        let moved = if s.kind.counts_bytes() {
            format!(
                "{} in {:.1}s ({}/s)",
                human_bytes(end.bytes),
                end.elapsed.as_secs_f64(),
                human_bytes(end.rate() as u64)
            )
        } else {
            format!("done in {:.1}s", end.elapsed.as_secs_f64())
        };
        let failed = end
            .error
            .as_deref()
            .map(|e| format!(", FAILED: {e}"))
            .unwrap_or_default();
        eprintln!("{} {}: {moved}{failed}", now(), label(s));
    }
}

/// The writer of log lines: above the bars while they are drawn, so neither garbles the other.
///
/// A line that cannot be written (stderr is a closed pipe) is dropped: reporting the error
/// would make tracing-subscriber complain with std's `eprintln!`, which panics on that pipe.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = BARS.lock().ok().and_then(|b| b.clone());
        let _ = match bars {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
