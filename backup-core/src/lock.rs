//! Leases kept in the store itself: one run at a time per store and environment, the retention
//! lock of an environment, and the store-wide lease that keeps blob garbage collection apart from
//! backups that reuse blobs.
//!
//! # The protocol
//!
//! It must be correct on stores that honour create-only writes and on stores that silently
//! overwrite (Garage 2.5), so it does not use create-only writes at all. Each contender writes a
//! *candidate* under a key of its own in its folder (`locks/<env>/<µs>-<nonce>.json` for the run
//! lock), then lists the folders of the leases it excludes (for the run lock, its own folder):
//!
//! - when no other live candidate is listed, it holds the lease;
//! - otherwise it deletes its candidate and reports the holder (or waits and tries again).
//!
//! Two contenders that exclude each other can never both hold: each writes before it lists, so
//! whichever lists last sees the other's candidate. (Both may back off; they retry after a random
//! pause.) This needs read-after-write consistent listing, which local directories, AWS S3
//! (since 2020), MinIO and Garage provide.
//!
//! A lease is live for `ttl` after its object was last written, measured in the *store's* time:
//! the listing's modification times are compared with that of the contender's own fresh
//! candidate, so clock skew between machines does not matter. A run that died stops renewing,
//! and its lease is taken over (deleted and reported) once it expired.
//!
//! # Renewal never outlives the lease
//!
//! The holder rewrites its candidate every `ttl / 3`. A renewal is a race against expiry: a PUT
//! that lands after the lease expired (a store's retries allow minutes against a 60 s ttl) would
//! bring back a lease another run may already have taken over, and both would then hold it. So:
//!
//! - every store request of a renewal is bounded by the time the lease has left, minus a margin
//!   ([`renewal_margin`]); one that cannot complete by then counts as **lost**, and nothing is
//!   written after it (the request is abandoned);
//! - after each renewal the folder is listed again and the new modification time compared with
//!   the previous one in store time: a gap of a whole ttl means the lease lapsed in between, and
//!   it counts as lost too, even though the write succeeded;
//! - a lost lease is never renewed again. [`LockGuard::ensure_held`] (before a commit),
//!   [`LockGuard::is_held`] (before each delete of a blob collection) and [`LockGuard::lost`]
//!   (while a deploy command runs) let the holder act on it.
//!
//! A request abandoned at the deadline may still be applied by the server afterwards. That can
//! only bring back *our* candidate (keys are never shared): a run holding the lock keeps holding
//! it (a holder is never dislodged by a candidate it did not list), and a new contender sees one
//! more live lease and waits, so it costs liveness for at most one ttl, never exclusion.
//!
//! # Scopes
//!
//! - [`StoreLock::new`]: `locks/<env>/`, one `run`, `backup`, `restore` or `prune --yes` at a
//!   time per environment.
//! - [`StoreLock::retention`]: `locks/.retention/<env>/`, removals of an environment's backups
//!   (`prune --yes` and the retention after a backup) against `pin`, `unpin` and `verify`, which
//!   must not see a backup disappear half-way. Held briefly, never through a deploy command.
//! - [`StoreLock::blob_collector`] and [`StoreLock::blob_user`]: `locks/.blob-gc/collector/` and
//!   `locks/.blob-gc/backups/`, store-wide (blobs are shared by every environment). A blob
//!   collection excludes every backup that stores or reuses blobs, in any environment, and other
//!   collections; such backups do not exclude each other. A segment starting with `.` is never
//!   an environment's ([`crate::layout::env_segment`]), so these never meet a run lock.

use std::sync::Arc;
use std::time::Duration;

use crate::{Error, ObjectInfo, Result, Store, StoreExt, WriteMode};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Folder of the lock candidates of all environments.
pub const LOCKS_DIR: &str = "locks/";

/// Folder of the retention locks, one sub-folder per environment.
pub const RETENTION_LOCKS_DIR: &str = "locks/.retention/";

/// Folder of the store-wide lease of a blob collection (`prune --yes`).
pub const BLOB_COLLECTOR_DIR: &str = "locks/.blob-gc/collector/";

/// Folder of the leases of backups that store or reuse blobs while they run (any environment).
pub const BLOB_USERS_DIR: &str = "locks/.blob-gc/backups/";

/// Default lease length: how long a run that died keeps others out.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How long before its expiry a lease must have been renewed: a sixth of the ttl, at least
/// 100 ms. Store requests of a renewal are cut off at the expiry minus this margin, so one that
/// completes in time reached the store while the lease was still live.
pub fn renewal_margin(ttl: Duration) -> Duration {
    (ttl / 6).max(Duration::from_millis(100))
}

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

/// Our candidate after an attempt that acquired: where it is, when the store wrote it, and when
/// (by our clock) the write started.
#[derive(Debug)]
struct Candidate {
    key: String,
    written: Timestamp,
    started: Instant,
}

/// A lease in the store: the run lock of one environment, or one of the other scopes (see the
/// module documentation).
#[derive(Debug, Clone)]
pub struct StoreLock {
    store: Arc<dyn Store>,
    environment: String,
    /// Our lease, for messages: `the lock for environment production`.
    what: String,
    /// What keeps us out when a conflicting lease is live, for messages (the same as `what`
    /// for the locks that exclude their own kind only).
    blocked_by: String,
    /// Where our candidate goes.
    own: String,
    /// The folders whose live leases keep us out.
    excludes: Vec<String>,
    ttl: Duration,
}

impl StoreLock {
    /// The run lock of `environment` in `store`, with leases of `ttl`: one key segment per
    /// environment (`staging/eu` must not nest under `staging`, and `.` must not reach outside
    /// the locks directory).
    pub fn new(store: Arc<dyn Store>, environment: &str, ttl: Duration) -> Self {
        let own = format!("{LOCKS_DIR}{}/", crate::layout::env_segment(environment));
        StoreLock {
            store,
            environment: environment.to_owned(),
            what: format!("the lock for environment {environment}"),
            blocked_by: format!("the lock for environment {environment}"),
            excludes: vec![own.clone()],
            own,
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// The retention lock of `environment`: removing its backups excludes pinning, unpinning and
    /// verifying them.
    pub fn retention(store: Arc<dyn Store>, environment: &str, ttl: Duration) -> Self {
        let own = format!(
            "{RETENTION_LOCKS_DIR}{}/",
            crate::layout::env_segment(environment)
        );
        StoreLock {
            store,
            environment: environment.to_owned(),
            what: format!("the retention lock of environment {environment}"),
            blocked_by: format!("the retention lock of environment {environment}"),
            excludes: vec![own.clone()],
            own,
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// The store-wide lease of a blob collection: excludes other collections and every backup
    /// holding a [`StoreLock::blob_user`] lease, in any environment.
    pub fn blob_collector(store: Arc<dyn Store>, environment: &str, ttl: Duration) -> Self {
        StoreLock {
            store,
            environment: environment.to_owned(),
            what: "the store-wide blob collection lease".into(),
            blocked_by: "a blob lease of a running backup".into(),
            own: BLOB_COLLECTOR_DIR.into(),
            excludes: vec![BLOB_COLLECTOR_DIR.into(), BLOB_USERS_DIR.into()],
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// The lease a backup holds while it stores or reuses blobs: excludes blob collections only
    /// (backups of any environment hold such leases side by side).
    pub fn blob_user(store: Arc<dyn Store>, environment: &str, ttl: Duration) -> Self {
        StoreLock {
            store,
            environment: environment.to_owned(),
            what: "the blob lease of this backup".into(),
            blocked_by: "the store-wide blob collection lease".into(),
            own: BLOB_USERS_DIR.into(),
            excludes: vec![BLOB_COLLECTOR_DIR.into()],
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// The folder our candidate goes into.
    pub fn folder(&self) -> &str {
        &self.own
    }

    /// One attempt: write a candidate, list, hold or back off.
    ///
    /// # Errors
    ///
    /// The store's error when the candidate cannot be written or the folder listed.
    pub async fn try_acquire(&self, lease: &Lease) -> Result<(LockAttempt, Option<String>)> {
        let (attempt, candidate) = self.attempt(lease).await?;
        Ok((attempt, candidate.map(|c| c.key)))
    }

    async fn attempt(&self, lease: &Lease) -> Result<(LockAttempt, Option<Candidate>)> {
        let key = format!(
            "{}{}-{}.json",
            self.own,
            Timestamp::now().as_microsecond(),
            lease.nonce
        );
        let started = Instant::now();
        write_lease(self.store.as_ref(), &key, lease).await?;
        let listed = self.store.list(&self.own).await?;
        let Some(mine) = listed.iter().find(|o| o.key == key) else {
            return Err(Error::store(
                "list",
                &key,
                "the lock candidate just written is not listed: the store's listing is not \
                 read-after-write consistent, so it cannot hold a lock",
            ));
        };
        let store_now = mine.last_modified;
        let mut others: Vec<ObjectInfo> = Vec::new();
        for folder in &self.excludes {
            if *folder == self.own {
                others.extend(listed.iter().filter(|o| o.key != key).cloned());
            } else {
                others.extend(self.store.list(folder).await?);
            }
        }
        let mut took_over = Vec::new();
        let mut holder: Option<Holder> = None;
        for other in &others {
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
            None => Ok((
                LockAttempt::Acquired { took_over },
                Some(Candidate {
                    key,
                    written: store_now,
                    started,
                }),
            )),
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
        let deadline = Instant::now() + wait;
        loop {
            let (attempt, candidate) = self.attempt(&lease).await.map_err(LockError::Store)?;
            match (attempt, candidate) {
                (LockAttempt::Acquired { took_over }, Some(candidate)) => {
                    return Ok(LockGuard::start(self.clone(), lease, candidate, took_over));
                }
                (LockAttempt::Held(holder), _) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(LockError::Held {
                            what: self.blocked_by.clone(),
                            environment: self.environment.clone(),
                            store: self.store.name().to_owned(),
                            holder: Box::new(holder),
                            waited: wait,
                        });
                    }
                    // A random pause, so two contenders that saw each other don't meet again.
                    let jitter = Duration::from_millis(200 + u64::from(random_byte()) * 4);
                    let pause = jitter.min(deadline - now);
                    tracing::info!(
                        holder = %holder.lease.describe(),
                        lock = %self.blocked_by,
                        "the lock is held; waiting"
                    );
                    tokio::time::sleep(pause).await;
                }
                (LockAttempt::Acquired { .. }, None) => unreachable!("acquired without a key"),
            }
        }
    }

    /// The live leases of this lock's own folder (for `doctor` and messages).
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn holders(&self) -> Result<Vec<Lease>> {
        let mut out = Vec::new();
        for obj in self.store.list(&self.own).await? {
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
        "{what} in {store} is held by {} (expires in {}s unless renewed){}; \
         wait for that run to finish, or pass --wait-lock DURATION to wait",
        holder.lease.describe(),
        holder.expires_in.max(0),
        waited_text(*waited)
    )]
    Held {
        /// What keeps us out, for the message (`the lock for environment production`).
        what: String,
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
    /// Our lease was lost: not renewed in time, or taken over.
    #[error("{what} was lost ({why}); another run may have taken it, so nothing more was written")]
    Lost {
        /// What was lost, for the message.
        what: String,
        /// The environment.
        environment: String,
        /// Why it counts as lost.
        why: String,
    },
}

fn waited_text(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(" after waiting {}s", waited.as_secs())
    }
}

/// What the renewer and the holder share: whether the lease was lost (and why), and the local
/// instant the last confirmed write started (the lease is good until then + ttl − margin).
#[derive(Debug)]
struct LeaseState {
    lost: watch::Sender<Option<String>>,
    confirmed: std::sync::Mutex<Instant>,
    ttl: Duration,
    margin: Duration,
}

impl LeaseState {
    fn new(started: Instant, ttl: Duration) -> Self {
        LeaseState {
            lost: watch::Sender::new(None),
            confirmed: std::sync::Mutex::new(started),
            ttl,
            margin: renewal_margin(ttl),
        }
    }

    /// By our clock, the last moment the lease is certainly still live.
    fn deadline(&self) -> Instant {
        let confirmed = *self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        confirmed + self.ttl.saturating_sub(self.margin)
    }

    fn confirm(&self, started: Instant) {
        *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = started;
    }

    fn lost_reason(&self) -> Option<String> {
        if let Some(why) = self.lost.borrow().clone() {
            return Some(why);
        }
        (Instant::now() >= self.deadline()).then(|| {
            let why = "it was not renewed within its ttl".to_owned();
            self.lose(&why);
            why
        })
    }

    /// Marks the lease lost (the first reason stays).
    fn lose(&self, why: &str) {
        self.lost.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            *state = Some(why.to_owned());
            true
        });
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
    state: Arc<LeaseState>,
    renewer: Option<JoinHandle<()>>,
}

impl LockGuard {
    fn start(lock: StoreLock, lease: Lease, candidate: Candidate, took_over: Vec<Lease>) -> Self {
        let state = Arc::new(LeaseState::new(candidate.started, lock.ttl));
        let renewer = tokio::spawn(renew(
            lock.clone(),
            candidate.key.clone(),
            lease.clone(),
            candidate.written,
            state.clone(),
        ));
        LockGuard {
            lock,
            key: candidate.key,
            lease,
            took_over,
            state,
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

    /// The key of our lease in the store.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the lease is still ours by everything known here, without a request: not lost,
    /// and renewed recently enough that it is live for at least the renewal margin more. Cheap;
    /// call it before each step that needs the lease (e.g. each delete of a blob collection).
    pub fn is_held(&self) -> bool {
        self.state.lost_reason().is_none()
    }

    /// Why the lease counts as lost, if it does.
    pub fn lost_reason(&self) -> Option<String> {
        self.state.lost_reason()
    }

    /// Resolves, with the reason, once the lease is lost (never while it is held): for waiting
    /// on a deploy command and the lease at once.
    pub fn lost(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let state = self.state.clone();
        let mut rx = state.lost.subscribe();
        async move {
            loop {
                if let Some(why) = state.lost_reason() {
                    return why;
                }
                // Woken by the renewer, or at the deadline when it is stuck.
                let deadline = state.deadline();
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    }

    /// Checks that the lease is still ours: call before committing anything.
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`] when it was taken over or not renewed in time; [`LockError::Store`]
    /// when the check fails.
    pub async fn ensure_held(&self) -> std::result::Result<(), LockError> {
        let lost = |why: String| LockError::Lost {
            what: self.lock.what.clone(),
            environment: self.lock.environment.clone(),
            why,
        };
        if let Some(why) = self.state.lost_reason() {
            return Err(lost(why));
        }
        let present =
            tokio::time::timeout_at(self.state.deadline(), self.lock.store.head(&self.key))
                .await
                .map_err(|_| lost("checking it took until its expiry".into()))?
                .map_err(LockError::Store)?
                .is_some();
        if !present {
            let why = "another run removed it (it took the lease over)";
            self.state.lose(why);
            return Err(lost(why.into()));
        }
        if let Some(why) = self.state.lost_reason() {
            return Err(lost(why));
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

/// The renewer of one held lease (see "Renewal never outlives the lease" above). `written` is
/// the store's modification time of the candidate as last confirmed.
async fn renew(
    lock: StoreLock,
    key: String,
    mut lease: Lease,
    mut written: Timestamp,
    state: Arc<LeaseState>,
) {
    let store = lock.store.clone();
    let ttl = lock.ttl;
    let period = ttl / 3;
    let lapse = ttl_span(ttl);
    loop {
        let deadline = state.deadline();
        tokio::time::sleep_until((Instant::now() + period).min(deadline)).await;
        if Instant::now() >= deadline {
            // Renewals failed or took too long for a whole ttl: another run may have taken the
            // expired lease over, and writing ours again would give the lock two holders.
            state.lose("it could not be renewed within its ttl");
            tracing::error!(
                key,
                "the lock lease could not be renewed within its ttl; it counts as lost"
            );
            return;
        }
        // Still there? (A run that took it over deleted it.)
        match tokio::time::timeout_at(deadline, store.head(&key)).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => {
                state.lose("another run removed it (it took the lease over)");
                tracing::error!(key, "our lock lease was removed by another run");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "checking the lock lease failed; retrying");
                continue;
            }
            Err(_) => continue, // the deadline passed: lost, above
        }
        lease.expires_at = Timestamp::now() + ttl_span(ttl);
        // Counted from before the write: the store's modification time, which others judge
        // expiry by, is later, so we never think the lease younger than it is.
        let attempt = Instant::now();
        let write = async {
            crate::hooks::slow_renewal().await;
            write_lease(store.as_ref(), &key, &lease).await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "renewing the lock lease failed; retrying");
                continue;
            }
            Err(_) => {
                state.lose("renewing it did not complete before it expired");
                tracing::error!(
                    key,
                    "renewing the lock lease did not complete before it expired; it counts as lost"
                );
                return;
            }
        }
        // Confirm in store time that the lease never lapsed: a renewal that reached the store a
        // whole ttl after the previous write came after the lease had expired.
        let listed = match tokio::time::timeout_at(deadline, store.list(lock.folder())).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "listing the lock leases failed; retrying");
                continue;
            }
            Err(_) => continue,
        };
        let Some(mine) = listed.iter().find(|o| o.key == key) else {
            state.lose("another run removed it (it took the lease over)");
            tracing::error!(key, "our lock lease was removed by another run");
            return;
        };
        let gap = mine.last_modified.duration_since(written);
        if gap >= lapse {
            state.lose(&format!(
                "a renewal reached the store {}s after the previous one, later than its ttl of \
                 {}s: it had expired in between",
                gap.as_secs(),
                ttl.as_secs()
            ));
            tracing::error!(
                key,
                "a lock lease renewal landed after the lease had expired; it counts as lost"
            );
            return;
        }
        written = mine.last_modified;
        state.confirm(attempt);
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
    use crate::testkit::MemoryStore;

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

    /// A store that can fail, stall or misdate the writes of one key (a lock lease), to play
    /// out renewals that race the lease's expiry.
    #[derive(Debug, Default)]
    struct Script {
        inner: MemoryStore,
        target: std::sync::Mutex<Option<String>>,
        /// Writes of the target still to fail at once.
        fail: std::sync::atomic::AtomicUsize,
        /// Writes of the target wait for `release` (then land, even if the caller gave up,
        /// as a server that already has the request applies it).
        stall: std::sync::atomic::AtomicBool,
        release: tokio::sync::Notify,
        landed: tokio::sync::Notify,
        /// Added to the modification time the store reports for the target.
        skew: std::sync::Mutex<Option<SignedDuration>>,
    }

    #[derive(Debug, Default, Clone)]
    struct Scripted(Arc<Script>);

    impl std::ops::Deref for Scripted {
        type Target = Script;
        fn deref(&self) -> &Script {
            &self.0
        }
    }

    impl Scripted {
        fn new() -> Arc<Scripted> {
            Arc::new(Scripted::default())
        }
        fn is_target(&self, key: &str) -> bool {
            self.target.lock().expect("lock").as_deref() == Some(key)
        }
        fn skewed(&self, mut o: ObjectInfo) -> ObjectInfo {
            if self.is_target(&o.key)
                && let Some(s) = *self.skew.lock().expect("lock")
            {
                o.last_modified += s;
            }
            o
        }
    }

    #[async_trait::async_trait]
    impl Store for Scripted {
        fn name(&self) -> &str {
            "scripted://"
        }
        fn capabilities(&self) -> crate::StoreCapabilities {
            self.inner.capabilities()
        }
        async fn put_stream(&self, key: &str, data: crate::ByteStream) -> Result<u64> {
            self.inner.put_stream(key, data).await
        }
        async fn put_bytes(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<()> {
            use std::sync::atomic::Ordering::SeqCst;
            if self.is_target(key) {
                if self
                    .fail
                    .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(Error::store("put", key, "injected: a failed renewal"));
                }
                if self.stall.load(SeqCst) {
                    // Held in flight; lands once released, whether or not anyone still waits.
                    let me = self.0.clone();
                    let key = key.to_owned();
                    let task = tokio::spawn(async move {
                        me.release.notified().await;
                        let r = me.inner.put_bytes(&key, data, mode).await;
                        me.landed.notify_one();
                        r
                    });
                    return task.await.expect("join");
                }
            }
            self.inner.put_bytes(key, data, mode).await
        }
        async fn get(&self, key: &str) -> Result<crate::ByteStream> {
            self.inner.get(key).await
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
            Ok(self.inner.head(key).await?.map(|o| self.skewed(o)))
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            Ok(self
                .inner
                .list(prefix)
                .await?
                .into_iter()
                .map(|o| self.skewed(o))
                .collect())
        }
        async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list_dirs(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key).await
        }
    }

    async fn only_key(store: &dyn Store, prefix: &str) -> String {
        let listed = store.list(prefix).await.expect("list");
        assert_eq!(listed.len(), 1, "{listed:?}");
        listed[0].key.clone()
    }

    /// The renewal race of issue 14: one renewal fails, the next hangs in flight past the
    /// lease's expiry, another run takes the expired lease over, and then the hung PUT lands.
    /// The first holder must count its lease as lost (it is never used to commit again), and
    /// the second keeps the lock alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_landing_after_expiry_never_gives_the_lock_two_holders() {
        let store = Scripted::new();
        let ttl = Duration::from_secs(3);
        let a_lock = StoreLock::new(store.clone(), "production", ttl);
        let started = tokio::time::Instant::now();
        let a = a_lock
            .acquire(Lease::new("production", "run", None, ttl), Duration::ZERO)
            .await
            .expect("a takes it");
        let a_key = only_key(store.as_ref(), "locks/production/").await;
        *store.target.lock().expect("lock") = Some(a_key.clone());
        store.fail.store(1, std::sync::atomic::Ordering::SeqCst);
        store.stall.store(true, std::sync::atomic::Ordering::SeqCst);

        // Past A's expiry in store time (its lease was written at `started`).
        tokio::time::sleep_until(started + Duration::from_millis(4_600)).await;
        let b = StoreLock::new(store.clone(), "production", ttl)
            .acquire(Lease::new("production", "run", None, ttl), Duration::ZERO)
            .await
            .expect("b takes the expired lease over");
        assert_eq!(b.took_over().len(), 1, "b took a's lease over");

        // Now A's hung renewal reaches the store.
        let landed = store.landed.notified();
        store.release.notify_one();
        tokio::time::timeout(Duration::from_secs(5), landed)
            .await
            .expect("the hung renewal landed");
        assert!(
            store.inner.head(&a_key).await.expect("head").is_some(),
            "the late write brought a's candidate back"
        );

        let err = a
            .ensure_held()
            .await
            .expect_err("a must not believe it still holds the lock");
        assert!(matches!(err, LockError::Lost { .. }), "{err}");
        b.ensure_held().await.expect("b holds it");
        // A whole renewal round later, b still holds it, and a newcomer is refused.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        b.ensure_held().await.expect("b still holds it");
        assert!(a.ensure_held().await.is_err(), "a stays lost");
        let c = StoreLock::new(store.clone(), "production", ttl)
            .acquire(Lease::new("production", "run", None, ttl), Duration::ZERO)
            .await;
        assert!(matches!(c, Err(LockError::Held { .. })), "{c:?}");
        a.release().await.expect("a releases");
        b.release().await.expect("b releases");
        assert!(store.list(LOCKS_DIR).await.expect("list").is_empty());
    }

    /// A renewal the store stamps a whole ttl after the previous write (it reached the store
    /// after the lease had expired, whatever the client saw) counts as lost, and `lost()`
    /// resolves with why.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_stamped_after_expiry_counts_as_lost() {
        let store = Scripted::new();
        let ttl = Duration::from_secs(3);
        let guard = StoreLock::new(store.clone(), "production", ttl)
            .acquire(Lease::new("production", "run", None, ttl), Duration::ZERO)
            .await
            .expect("acquire");
        let key = only_key(store.as_ref(), "locks/production/").await;
        *store.target.lock().expect("lock") = Some(key);
        *store.skew.lock().expect("lock") = Some(SignedDuration::from_secs(5));
        let why = tokio::time::timeout(Duration::from_secs(3), guard.lost())
            .await
            .expect("the lease counts as lost after its first renewal");
        assert!(why.contains("expired in between"), "{why}");
        assert!(!guard.is_held());
        assert!(guard.ensure_held().await.is_err());
    }

    /// A lease removed by another run (taken over) is reported through `lost()` while the
    /// holder waits on something else (a deploy command).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_resolves_when_another_run_removes_the_lease() {
        let store = Arc::new(MemoryStore::new());
        let ttl = Duration::from_secs(3);
        let guard = lock(&store, 3)
            .acquire(Lease::new("production", "run", None, ttl), Duration::ZERO)
            .await
            .expect("acquire");
        assert!(guard.is_held());
        store.delete(guard.key()).await.expect("taken over");
        let why = tokio::time::timeout(Duration::from_secs(3), guard.lost())
            .await
            .expect("noticed within a renewal period");
        assert!(why.contains("removed"), "{why}");
    }

    #[tokio::test]
    async fn a_blob_collection_excludes_backups_using_blobs_in_every_environment() {
        let store = Arc::new(MemoryStore::new());
        let ttl = DEFAULT_TTL;
        let collector = StoreLock::blob_collector(store.clone(), "staging", ttl)
            .acquire(Lease::new("staging", "prune", None, ttl), Duration::ZERO)
            .await
            .expect("collector");
        let refused = StoreLock::blob_user(store.clone(), "production", ttl)
            .acquire(
                Lease::new("production", "backup", None, ttl),
                Duration::ZERO,
            )
            .await
            .expect_err("a backup waits for the collection");
        assert!(refused.to_string().contains("(prune"), "{refused}");
        // Neither the run lock nor the retention lock of any environment is affected.
        let run = lock(&store, 60)
            .acquire(Lease::new("production", "run", None, ttl), Duration::ZERO)
            .await
            .expect("run lock");
        let retention = StoreLock::retention(store.clone(), "production", ttl)
            .acquire(Lease::new("production", "pin", None, ttl), Duration::ZERO)
            .await
            .expect("retention lock");
        collector.release().await.expect("release");

        let u1 = StoreLock::blob_user(store.clone(), "production", ttl)
            .acquire(
                Lease::new("production", "backup", None, ttl),
                Duration::ZERO,
            )
            .await
            .expect("user 1");
        let u2 = StoreLock::blob_user(store.clone(), "staging", ttl)
            .acquire(Lease::new("staging", "backup", None, ttl), Duration::ZERO)
            .await
            .expect("users share");
        let refused = StoreLock::blob_collector(store.clone(), "staging", ttl)
            .acquire(Lease::new("staging", "prune", None, ttl), Duration::ZERO)
            .await
            .expect_err("no collection while a backup uses blobs");
        assert!(refused.to_string().contains("(backup"), "{refused}");
        for g in [u1, u2, run, retention] {
            g.release().await.expect("release");
        }
        StoreLock::blob_collector(store.clone(), "staging", ttl)
            .acquire(Lease::new("staging", "prune", None, ttl), Duration::ZERO)
            .await
            .expect("collector once the backups are done")
            .release()
            .await
            .expect("release");
        assert!(store.list(LOCKS_DIR).await.expect("list").is_empty());
    }
}
