//! Progress of long operations (a dump streaming into the store, a verification pass, a restore),
//! reported to one process-wide [`Observer`].
//!
//! The library never draws anything: a binary installs an observer ([`set_observer`]) that turns
//! stages into progress bars, log lines or an event stream; without one, a [`Stage`] costs an
//! atomic add per chunk. A process-wide hook (like `tracing`'s dispatcher) rather than a
//! parameter, because bytes are counted deep inside pipelines that every backend shares.
//!
//! ```
//! use backup_core::progress::{Stage, StageKind};
//!
//! let stage = Stage::start(StageKind::Dump, "db", None);
//! stage.add(4096);
//! stage.succeed();
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

/// What a stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageKind {
    /// A whole backup of every source (no byte count of its own).
    Backup,
    /// One artifact of a source streaming from its dump tool through compression into the store.
    Dump,
    /// A whole verification of a backup (no byte count of its own).
    Verify,
    /// One stored artifact read back (hashed, decompressed, possibly fed to a restore tool).
    Read,
    /// A whole restore (no byte count of its own).
    Restore,
    /// The deploy command.
    Deploy,
}

impl StageKind {
    /// The name used in events and log lines.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Backup => "backup",
            StageKind::Dump => "dump",
            StageKind::Verify => "verify",
            StageKind::Read => "read",
            StageKind::Restore => "restore",
            StageKind::Deploy => "deploy",
        }
    }

    /// Whether the stage counts bytes itself (the others group byte-counting stages).
    #[must_use]
    pub fn counts_bytes(self) -> bool {
        matches!(self, StageKind::Dump | StageKind::Read)
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    /// Unique within the process, increasing.
    pub id: u64,
    /// What the stage does.
    pub kind: StageKind,
    /// What it works on: a source name, an artifact key, a backup id.
    pub subject: String,
    /// Bytes expected, when known (a stored artifact's size); drives an ETA.
    pub total: Option<u64>,
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StageEnd {
    /// Bytes moved (0 for stages that do not count bytes).
    pub bytes: u64,
    /// Wall time from start to end.
    pub elapsed: Duration,
    /// `None` when it succeeded, else why it did not.
    pub error: Option<String>,
}

impl StageEnd {
    /// Bytes per second over the whole stage (0 for an instant stage).
    #[must_use]
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        }
    }
}

/// Receives the stages of the process. Calls come from any thread and must return quickly.
pub trait Observer: Send + Sync {
    /// A stage began.
    fn started(&self, stage: &StageInfo);
    /// A byte-counting stage moved on: `bytes` is its running total.
    fn advanced(&self, stage: &StageInfo, bytes: u64) {
        let _ = (stage, bytes);
    }
    /// A stage ended.
    fn finished(&self, stage: &StageInfo, end: &StageEnd);
}

static OBSERVER: RwLock<Option<Arc<dyn Observer>>> = RwLock::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Installs the process's observer (`None` removes it). Stages already running keep reporting
/// to the observer they started with.
pub fn set_observer(observer: Option<Arc<dyn Observer>>) {
    if let Ok(mut slot) = OBSERVER.write() {
        *slot = observer;
    }
}

fn current_observer() -> Option<Arc<dyn Observer>> {
    OBSERVER.read().ok().and_then(|o| o.clone())
}

struct Inner {
    info: StageInfo,
    observer: Option<Arc<dyn Observer>>,
    started: Instant,
    bytes: AtomicU64,
    ended: AtomicBool,
}

impl Inner {
    fn add(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(o) = &self.observer {
            o.advanced(&self.info, total);
        }
    }

    fn end(&self, error: Option<String>) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(o) = &self.observer {
            o.finished(
                &self.info,
                &StageEnd {
                    bytes: self.bytes.load(Ordering::Relaxed),
                    elapsed: self.started.elapsed(),
                    error,
                },
            );
        }
    }
}

/// A running stage. Ends with [`Stage::succeed`] or [`Stage::fail`]; dropped without either
/// (an early return, a cancelled future), it reports that it did not finish.
pub struct Stage {
    inner: Arc<Inner>,
}

impl Stage {
    /// Starts a stage and tells the observer.
    #[must_use]
    pub fn start(kind: StageKind, subject: impl Into<String>, total: Option<u64>) -> Stage {
        let info = StageInfo {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            subject: subject.into(),
            total,
        };
        let observer = current_observer();
        if let Some(o) = &observer {
            o.started(&info);
        }
        Stage {
            inner: Arc::new(Inner {
                info,
                observer,
                started: Instant::now(),
                bytes: AtomicU64::new(0),
                ended: AtomicBool::new(false),
            }),
        }
    }

    /// Counts `n` more bytes.
    pub fn add(&self, n: u64) {
        self.inner.add(n);
    }

    /// A handle that counts bytes into this stage from elsewhere (a stream callback, a reader).
    #[must_use]
    pub fn counter(&self) -> Counter {
        Counter(self.inner.clone())
    }

    /// Ends the stage as a success.
    pub fn succeed(self) {
        self.inner.end(None);
    }

    /// Ends the stage as a failure, with why.
    pub fn fail(self, why: impl fmt::Display) {
        self.inner.end(Some(why.to_string()));
    }

    /// Ends the stage as `result` says.
    pub fn finish<T, E: fmt::Display>(self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.succeed(),
            Err(e) => self.fail(e),
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.inner.end(Some("did not finish".into()));
    }
}

/// Counts bytes into a [`Stage`]; cheap to clone.
#[derive(Clone)]
pub struct Counter(Arc<Inner>);

impl Counter {
    /// Counts `n` more bytes.
    pub fn add(&self, n: u64) {
        self.0.add(n);
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Counter").field(&self.0.info).finish()
    }
}

/// An [`AsyncRead`] that counts the bytes read through it into a stage.
pub struct CountingReader<R> {
    inner: R,
    counter: Counter,
}

impl<R> CountingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, counter: Counter) -> Self {
        CountingReader { inner, counter }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.counter.add(read as u64);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::AsyncReadExt;

    /// Records the stages of this test only (subjects `pt-…`): other tests of the crate may
    /// run stages at the same time.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn push(&self, subject: &str, line: String) {
            if subject.starts_with("pt-") {
                self.0.lock().expect("lock").push(line);
            }
        }
    }

    impl Observer for Recorder {
        fn started(&self, s: &StageInfo) {
            self.push(&s.subject, format!("start {} {}", s.kind, s.subject));
        }
        fn advanced(&self, s: &StageInfo, bytes: u64) {
            self.push(&s.subject, format!("at {} {bytes}", s.subject));
        }
        fn finished(&self, s: &StageInfo, e: &StageEnd) {
            self.push(
                &s.subject,
                format!("end {} {} {:?}", s.subject, e.bytes, e.error),
            );
        }
    }

    // One test owns the process-wide observer, so parallel tests cannot interleave.
    #[tokio::test]
    async fn stages_report_start_bytes_and_end_and_a_dropped_stage_says_it_did_not_finish() {
        let rec = Arc::new(Recorder::default());
        set_observer(Some(rec.clone()));

        let stage = Stage::start(StageKind::Dump, "pt-db", None);
        let mut reader = CountingReader::new(&b"hello world"[..], stage.counter());
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("read");
        stage.succeed();

        let failed = Stage::start(StageKind::Read, "pt-k", Some(10));
        failed.add(3);
        failed.fail("corrupt");

        drop(Stage::start(StageKind::Verify, "pt-cancelled", None));
        set_observer(None);
        // No observer: nothing recorded, nothing breaks.
        Stage::start(StageKind::Dump, "pt-unseen", None).succeed();

        let log = rec.0.lock().expect("lock").clone();
        assert_eq!(
            log,
            vec![
                "start dump pt-db".to_owned(),
                "at pt-db 11".into(),
                "end pt-db 11 None".into(),
                "start read pt-k".into(),
                "at pt-k 3".into(),
                "end pt-k 3 Some(\"corrupt\")".into(),
                "start verify pt-cancelled".into(),
                "end pt-cancelled 0 Some(\"did not finish\")".into(),
            ]
        );
    }
}
