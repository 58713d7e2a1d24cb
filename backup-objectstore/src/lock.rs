//! One run at a time per store and environment: a lease lock kept in the store itself.
//!
//! # The protocol
//!
//! It must be correct on stores that honour create-only writes and on stores that silently
//! overwrite (Garage 2.5), so it does not use create-only writes at all. Each contender writes a
//! *candidate* under a key of its own, `locks/<env>/<µs>-<nonce>.json`, then lists
//! `locks/<env>/`:
//!
//! - when no other live candidate is listed, it holds the lock;
//! - otherwise it deletes its candidate and reports the holder (or waits and tries again).
//!
//! Two contenders can never both hold it: each writes before it lists, so whichever lists last
//! sees the other's candidate. (Both may back off; they retry after a random pause.) This needs
//! read-after-write consistent listing, which local directories, AWS S3 (since 2020), MinIO and
//! Garage provide.
//!
//! A lease is live for `ttl` after its object was last written, measured in the *store's* time:
//! the listing's modification times are compared with that of the contender's own fresh
//! candidate, so clock skew between machines does not matter. The holder rewrites its candidate
//! every `ttl / 3`; a run that died stops renewing, and its lease is taken over (deleted and
//! reported) once it expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backup_core::{Error, ObjectInfo, Result, Store, StoreExt, WriteMode};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

/// Folder of the lock candidates of all environments.
pub const LOCKS_DIR: &str = "locks/";

/// Default lease length: how long a run that died keeps others out.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Who holds (or wants) a lock: written into the candidate object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The environment locked.
    pub environment: String,
    /// `user@host`.
    pub owner: String,
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// What the run does (`run`, `backup`, `prune`, `restore`).
    pub command: String,
    /// The commit being deployed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the run took the lock (its own clock).
    pub started_at: Timestamp,
    /// When the lease runs out unless renewed (its own clock; informational: expiry is judged
    /// in store time from the object's modification time and `ttl_seconds`).
    pub expires_at: Timestamp,
    /// Lease length in seconds.
    pub ttl_seconds: u64,
    /// Random id of this attempt.
    pub nonce: String,
}

impl Lease {
    /// A lease for this process.
    pub fn new(environment: &str, command: &str, commit: Option<String>, ttl: Duration) -> Self {
        let host = host_name();
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata("/proc/self")
                    .map_or_else(|_| "unknown".into(), |m| format!("uid {}", m.uid()))
            });
        let now = Timestamp::now();
        Lease {
            environment: environment.to_owned(),
            owner: format!("{user}@{host}"),
            host,
            pid: std::process::id(),
            command: command.to_owned(),
            commit,
            started_at: now,
            expires_at: now + ttl_span(ttl),
            ttl_seconds: ttl.as_secs().max(1),
            nonce: random_hex(6),
        }
    }

    /// One line for messages: `deploy@web1 pid 4242 (run, commit abc1234), started 12s ago`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} pid {} ({}", self.owner, self.pid, self.command);
        if let Some(c) = &self.commit {
            let short: String = c.chars().take(12).collect();
            s.push_str(&format!(", commit {short}"));
        }
        let age = Timestamp::now().duration_since(self.started_at).as_secs();
        s.push_str(&format!("), started {age}s ago"));
        s
    }
}

/// Another run's live lease, as found when trying to lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its lease document.
    pub lease: Lease,
    /// Seconds until it expires unless renewed (store time).
    pub expires_in: i64,
}

/// What taking the lock found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAttempt {
    /// We hold it. `took_over` lists expired leases of dead runs that were removed.
    Acquired {
        /// Expired leases removed on the way.
        took_over: Vec<Lease>,
    },
    /// Another run holds it.
    Held(Holder),
}

/// The lock of one environment in one store.
#[derive(Debug, Clone)]
pub struct StoreLock {
    store: Arc<dyn Store>,
    environment: String,
    ttl: Duration,
}

impl StoreLock {
    /// The lock of `environment` in `store`, with leases of `ttl`.
    pub fn new(store: Arc<dyn Store>, environment: &str, ttl: Duration) -> Self {
        StoreLock {
            store,
            environment: environment.to_owned(),
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// One key segment per environment: `staging/eu` must not nest under `staging`, and `.`
    /// must not reach outside the locks directory.
    fn prefix(&self) -> String {
        format!(
            "{LOCKS_DIR}{}/",
            backup_core::layout::env_segment(&self.environment)
        )
    }

    /// One attempt: write a candidate, list, hold or back off.
    ///
    /// # Errors
    ///
    /// The store's error when the candidate cannot be written or the folder listed.
    pub async fn try_acquire(&self, lease: &Lease) -> Result<(LockAttempt, Option<String>)> {
        let key = format!(
            "{}{}-{}.json",
            self.prefix(),
            Timestamp::now().as_microsecond(),
            lease.nonce
        );
        write_lease(self.store.as_ref(), &key, lease).await?;
        let listed = self.store.list(&self.prefix()).await?;
        let Some(mine) = listed.iter().find(|o| o.key == key) else {
            return Err(Error::store(
                "list",
                &key,
                "the lock candidate just written is not listed: the store's listing is not \
                 read-after-write consistent, so it cannot hold a lock",
            ));
        };
        let store_now = mine.last_modified;
        let mut took_over = Vec::new();
        let mut holder: Option<Holder> = None;
        for other in listed.iter().filter(|o| o.key != key) {
            let Some(other_lease) = read_lease(self.store.as_ref(), other).await? else {
                continue; // released while we looked
            };
            let expires_in = remaining(other, &other_lease, store_now);
            if expires_in < 0 {
                // A run that stopped renewing: take its lease over.
                self.store.delete(&other.key).await?;
                tracing::warn!(holder = %other_lease.describe(), "took over an expired lock lease");
                took_over.push(other_lease);
            } else if holder
                .as_ref()
                .is_none_or(|h| other_lease.started_at < h.lease.started_at)
            {
                holder = Some(Holder {
                    lease: other_lease,
                    expires_in,
                });
            }
        }
        match holder {
            None => Ok((LockAttempt::Acquired { took_over }, Some(key))),
            Some(h) => {
                self.store.delete(&key).await?;
                Ok((LockAttempt::Held(h), None))
            }
        }
    }

    /// Takes the lock, waiting up to `wait` for a holder to finish (`Duration::ZERO`: one
    /// attempt). On success the lease is renewed in the background until
    /// [`LockGuard::release`].
    ///
    /// # Errors
    ///
    /// [`LockError::Held`] naming the holder when it is still held after `wait`;
    /// [`LockError::Store`] when the store fails.
    pub async fn acquire(
        &self,
        lease: Lease,
        wait: Duration,
    ) -> std::result::Result<LockGuard, LockError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (attempt, key) = self.try_acquire(&lease).await.map_err(LockError::Store)?;
            match (attempt, key) {
                (LockAttempt::Acquired { took_over }, Some(key)) => {
                    return Ok(LockGuard::start(self.clone(), lease, key, took_over));
                }
                (LockAttempt::Held(holder), _) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(LockError::Held {
                            environment: self.environment.clone(),
                            store: self.store.name().to_owned(),
                            holder: Box::new(holder),
                            waited: wait,
                        });
                    }
                    // A random pause, so two contenders that saw each other don't meet again.
                    let jitter = Duration::from_millis(200 + u64::from(random_byte()) * 4);
                    let pause = jitter.min(deadline - now);
                    tracing::info!(holder = %holder.lease.describe(), "the lock is held; waiting");
                    tokio::time::sleep(pause).await;
                }
                (LockAttempt::Acquired { .. }, None) => unreachable!("acquired without a key"),
            }
        }
    }

    /// The live leases of this environment (for `doctor` and messages).
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn holders(&self) -> Result<Vec<Lease>> {
        let mut out = Vec::new();
        for obj in self.store.list(&self.prefix()).await? {
            if let Some(l) = read_lease(self.store.as_ref(), &obj).await? {
                out.push(l);
            }
        }
        Ok(out)
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it.
    #[error(
        "the lock for environment {environment} in {store} is held by {} (expires in {}s unless renewed){}; \
         wait for that run to finish, or pass --wait-lock DURATION to wait",
        holder.lease.describe(),
        holder.expires_in.max(0),
        waited_text(*waited)
    )]
    Held {
        /// The environment.
        environment: String,
        /// The store's display name.
        store: String,
        /// The run holding it.
        holder: Box<Holder>,
        /// How long we waited.
        waited: Duration,
    },
    /// The store failed while locking.
    #[error("cannot take the lock: {0}")]
    Store(#[source] Error),
    /// Our lease was taken over (we stopped renewing for longer than its ttl).
    #[error(
        "the lock for environment {environment} was lost (its lease was not renewed in time and \
         another run may have taken it); nothing more was written"
    )]
    Lost {
        /// The environment.
        environment: String,
    },
}

fn waited_text(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(" after waiting {}s", waited.as_secs())
    }
}

/// A held lock: renews the lease in the background; [`release`](LockGuard::release) it when
/// the run is over. Dropping it without releasing stops the renewal and removes the lease in
/// the background when a runtime is there (else it expires after its ttl).
#[derive(Debug)]
pub struct LockGuard {
    lock: StoreLock,
    key: String,
    lease: Lease,
    took_over: Vec<Lease>,
    lost: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl LockGuard {
    fn start(lock: StoreLock, lease: Lease, key: String, took_over: Vec<Lease>) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (store, key, lost) = (lock.store.clone(), key.clone(), lost.clone());
            let mut lease = lease.clone();
            let ttl = lock.ttl;
            tokio::spawn(async move {
                let period = ttl / 3;
                // The lease was written just before the guard started.
                let mut renewed = std::time::Instant::now();
                loop {
                    tokio::time::sleep(period).await;
                    if renewed.elapsed() >= ttl {
                        // Not renewed for a whole ttl: another run may have taken the expired
                        // lease over, and writing ours again would give the lock two holders.
                        lost.store(true, Ordering::SeqCst);
                        tracing::error!(
                            key,
                            "the lock lease could not be renewed within its ttl; it counts as lost"
                        );
                        return;
                    }
                    match store.head(&key).await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            lost.store(true, Ordering::SeqCst);
                            tracing::error!(key, "our lock lease was removed by another run");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "checking the lock lease failed; retrying");
                            continue;
                        }
                    }
                    lease.expires_at = Timestamp::now() + ttl_span(ttl);
                    // Counted from before the write: the store's modification time, which
                    // others judge expiry by, is later, so we never think it younger than it is.
                    let attempt = std::time::Instant::now();
                    match write_lease(store.as_ref(), &key, &lease).await {
                        Ok(()) => renewed = attempt,
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing the lock lease failed; retrying");
                        }
                    }
                }
            })
        };
        LockGuard {
            lock,
            key,
            lease,
            took_over,
            lost,
            renewer: Some(renewer),
        }
    }

    /// Expired leases of dead runs that were removed to take the lock.
    pub fn took_over(&self) -> &[Lease] {
        &self.took_over
    }

    /// Our lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Checks that the lease is still ours: call before committing anything.
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`] when it was taken over; [`LockError::Store`] when the check fails.
    pub async fn ensure_held(&self) -> std::result::Result<(), LockError> {
        let present = self
            .lock
            .store
            .head(&self.key)
            .await
            .map_err(LockError::Store)?
            .is_some();
        if self.lost.load(Ordering::SeqCst) || !present {
            return Err(LockError::Lost {
                environment: self.lock.environment.clone(),
            });
        }
        Ok(())
    }

    /// Stops renewing and removes the lease.
    ///
    /// # Errors
    ///
    /// The store's error when the lease cannot be removed (it then expires after its ttl).
    pub async fn release(mut self) -> Result<()> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let key = std::mem::take(&mut self.key);
        self.lock.store.delete(&key).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if self.key.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, key) = (self.lock.store.clone(), std::mem::take(&mut self.key));
            rt.spawn(async move {
                let _ = store.delete(&key).await;
            });
        }
    }
}

async fn write_lease(store: &dyn Store, key: &str, lease: &Lease) -> Result<()> {
    let json = serde_json::to_vec_pretty(lease).map_err(|source| Error::Format {
        key: key.to_owned(),
        what: "lock lease",
        source,
    })?;
    store
        .put_bytes(key, Bytes::from(json), WriteMode::Overwrite)
        .await
}

/// The lease in `obj`, `None` when it is gone. A lease that does not parse counts as a live
/// lease of an unknown run (never silently ignored), described by its key.
async fn read_lease(store: &dyn Store, obj: &ObjectInfo) -> Result<Option<Lease>> {
    let bytes = match store.get_small(&obj.key, 64 * 1024).await {
        Ok(b) => b,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        let t = obj.last_modified;
        Lease {
            environment: String::new(),
            owner: format!("an unreadable lease ({})", obj.key),
            host: String::new(),
            pid: 0,
            command: "unknown".into(),
            commit: None,
            started_at: t,
            expires_at: t + ttl_span(DEFAULT_TTL),
            ttl_seconds: DEFAULT_TTL.as_secs(),
            nonce: String::new(),
        }
    })))
}

/// Seconds until `lease` (stored as `obj`) expires, in store time; negative when expired.
fn remaining(obj: &ObjectInfo, lease: &Lease, store_now: Timestamp) -> i64 {
    let ttl = i64::try_from(lease.ttl_seconds).unwrap_or(i64::MAX / 2);
    let age = store_now.duration_since(obj.last_modified).as_secs();
    ttl - age
}

fn ttl_span(ttl: Duration) -> SignedDuration {
    SignedDuration::try_from(ttl).unwrap_or(SignedDuration::from_secs(60))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn random_byte() -> u8 {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    b[0]
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let _ = getrandom::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::testkit::MemoryStore;

    fn lock(store: &Arc<MemoryStore>, ttl: u64) -> StoreLock {
        StoreLock::new(store.clone(), "production", Duration::from_secs(ttl))
    }

    #[tokio::test]
    async fn second_contender_sees_the_holder_and_leaves_nothing() {
        let store = Arc::new(MemoryStore::new());
        let guard = lock(&store, 60)
            .acquire(
                Lease::new("production", "run", Some("abc1234".into()), DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect("first takes it");
        let err = lock(&store, 60)
            .acquire(
                Lease::new("production", "backup", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect_err("second is refused");
        let msg = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{msg}");
        assert!(msg.contains("(run, commit abc1234)"), "{msg}");
        assert!(msg.contains("--wait-lock"), "{msg}");
        assert_eq!(
            store.list(LOCKS_DIR).await.expect("list").len(),
            1,
            "loser removed its candidate"
        );
        guard.release().await.expect("release");
        assert!(store.list(LOCKS_DIR).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn environments_that_look_like_paths_do_not_nest() {
        let store = Arc::new(MemoryStore::new());
        let _eu = StoreLock::new(store.clone(), "staging/eu", DEFAULT_TTL)
            .acquire(
                Lease::new("staging/eu", "run", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect("staging/eu");
        let _staging = StoreLock::new(store.clone(), "staging", DEFAULT_TTL)
            .acquire(
                Lease::new("staging", "run", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect("staging is not held by staging/eu");
        let _dot = StoreLock::new(store.clone(), ".", DEFAULT_TTL)
            .acquire(Lease::new(".", "run", None, DEFAULT_TTL), Duration::ZERO)
            .await
            .expect("`.` is an environment like any other");
        for info in store.list(LOCKS_DIR).await.expect("list") {
            let key = info.key;
            let rest = key.strip_prefix(LOCKS_DIR).expect("under locks/");
            assert_eq!(
                rest.matches('/').count(),
                1,
                "one segment per environment: {key}"
            );
        }
    }

    #[test]
    fn a_lease_with_a_non_ascii_commit_is_described_without_panicking() {
        let lease = Lease::new(
            "production",
            "run",
            Some("ééééééééééééé".into()),
            DEFAULT_TTL,
        );
        assert!(lease.describe().contains("commit éééééééééééé)"));
    }

    #[tokio::test]
    async fn other_environments_do_not_conflict() {
        let store = Arc::new(MemoryStore::new());
        let _a = lock(&store, 60)
            .acquire(
                Lease::new("production", "run", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect("production");
        StoreLock::new(store.clone(), "staging", DEFAULT_TTL)
            .acquire(
                Lease::new("staging", "run", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect("staging is separate");
    }

    #[tokio::test]
    async fn an_expired_lease_of_a_dead_run_is_taken_over_and_reported() {
        let store = Arc::new(MemoryStore::new());
        let mut dead = Lease::new("production", "run", None, Duration::from_secs(1));
        dead.pid = 999_999;
        write_lease(store.as_ref(), "locks/production/1-dead.json", &dead)
            .await
            .expect("write");
        let err = lock(&store, 60)
            .acquire(
                Lease::new("production", "run", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect_err("still live");
        assert!(err.to_string().contains("pid 999999"), "{err}");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let guard = lock(&store, 60)
            .acquire(
                Lease::new("production", "run", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect("expired: taken over");
        assert_eq!(guard.took_over().len(), 1);
        assert_eq!(guard.took_over()[0].pid, 999_999);
        assert!(
            store
                .head("locks/production/1-dead.json")
                .await
                .expect("head")
                .is_none()
        );
    }

    #[tokio::test]
    async fn waiting_gets_the_lock_when_the_holder_releases() {
        let store = Arc::new(MemoryStore::new());
        let guard = lock(&store, 60)
            .acquire(
                Lease::new("production", "run", None, DEFAULT_TTL),
                Duration::ZERO,
            )
            .await
            .expect("first");
        let waiter = {
            let l = lock(&store, 60);
            tokio::spawn(async move {
                l.acquire(
                    Lease::new("production", "run", None, DEFAULT_TTL),
                    Duration::from_secs(30),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiter.is_finished(),
            "the waiter waits while the lock is held"
        );
        guard.release().await.expect("release");
        let second = waiter
            .await
            .expect("join")
            .expect("the waiter gets the lock");
        assert!(second.took_over().is_empty());
    }
}
