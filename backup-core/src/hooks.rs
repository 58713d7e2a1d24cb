//! Process-level helpers every backend's long operation shares: SIGINT/SIGTERM as values
//! ([`Signals`]), and named pause points for tests ([`pause_at`]).

/// SIGINT/SIGTERM, listened to for a whole operation (registered once, so no signal falls
/// between two steps).
#[derive(Debug)]
pub struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Listens when `enabled` (the command line); a library caller that owns the process's
    /// signals passes `false` and nothing is ever interrupted.
    pub fn new(enabled: bool) -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        if !enabled {
            return Signals {
                int: None,
                term: None,
            };
        }
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Runs `fut`, or returns the name of the signal that interrupted it (dropping `fut`,
    /// whose guards then clean up).
    ///
    /// # Errors
    ///
    /// `SIGINT` or `SIGTERM` when one arrived first.
    pub async fn run<T>(
        &mut self,
        fut: impl std::future::Future<Output = T>,
    ) -> std::result::Result<T, &'static str> {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            out = fut => Ok(out),
            () = recv(&mut self.int) => Err("SIGINT"),
            () = recv(&mut self.term) => Err("SIGTERM"),
        }
    }
}

/// Named points where a test build pauses (see [`pause_at`]).
pub const PAUSE_POINTS: &[&str] = &[
    "bucket-safety",
    "verified",
    "safety-backup",
    "created",
    "restored",
    "before-swap",
    "after-swap",
    "blob-gc-planned",
    "before-manifest",
];

/// Test builds only (`test-hooks` feature): with `PREDEPLOY_TEST_PAUSE_AT=<point>:<file>`, print
/// `test hook: paused at <point>` and wait until `<file>` exists, so a test can kill the process
/// or break the server at an exact step. A no-op in normal builds.
#[cfg(feature = "test-hooks")]
pub async fn pause_at(point: &str) {
    let Ok(spec) = std::env::var("PREDEPLOY_TEST_PAUSE_AT") else {
        return;
    };
    let Some((at, file)) = spec.split_once(':') else {
        return;
    };
    if at != point {
        return;
    }
    eprintln!("test hook: paused at {point}");
    while !std::path::Path::new(file).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Test builds only (`test-hooks` feature): see the feature's documentation. A no-op here.
#[cfg(not(feature = "test-hooks"))]
pub async fn pause_at(_point: &str) {}

/// Test builds only (`test-hooks` feature): with `PREDEPLOY_TEST_SLOW_RENEWAL_MS=<n>`, each write
/// of a lock renewal is held back by a random 0..=n ms first, as a slow or retried PUT would be,
/// so a test can race leases that expire while their renewal is in flight. A no-op otherwise.
#[cfg(feature = "test-hooks")]
pub async fn slow_renewal() {
    let Some(max) = std::env::var("PREDEPLOY_TEST_SLOW_RENEWAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|m| *m > 0)
    else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let delay = u64::from(nanos) % (max + 1);
    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
}

/// Test builds only (`test-hooks` feature): see the feature's documentation. A no-op here.
#[cfg(not(feature = "test-hooks"))]
pub async fn slow_renewal() {}
