//! The leases the gate takes (see `backup_objectstore::StoreLock` for the protocol):
//!
//! - the **run lock**: one `run`/`backup`/`restore`/`prune --yes` at a time per store and
//!   environment ([`Scope::lock`]);
//! - the **retention lock** of an environment: removals of its backups (`prune --yes`, the
//!   retention after a backup) against `pin`, `unpin` and `verify`, which must not see a backup
//!   disappear half-way ([`Scope::lock_retention`]). It is held for the length of one such
//!   command, never through a deploy command, so a deploy script may pin or verify;
//! - the store-wide **blob leases**: a backup that stores or reuses blobs, in any environment,
//!   against a blob collection (see `backup_objectstore::bucket::apply_blob_gc`).

use std::future::Future;
use std::time::Duration;

use backup_objectstore::{Lease, LockError, LockGuard, StoreLock};

use crate::error::{GateError, Result};
use crate::scope::Scope;

/// How long a backup waits for a running blob collection (started by `prune --yes` in any
/// environment) before it is refused with exit 6, when `--wait-lock` is shorter.
pub const BLOB_COLLECTION_WAIT: Duration = Duration::from_secs(10 * 60);

impl Scope {
    /// Takes the lock of this scope's environment for `command`, waiting as configured
    /// (`--wait-lock`). Expired leases of dead runs are taken over and reported.
    ///
    /// Release it with [`Scope::unlock`] on every path: a guard that is only dropped leaves its
    /// lease until it expires when the process exits right after.
    ///
    /// # Errors
    ///
    /// [`GateError::LockHeld`] (exit 6) naming the holder; [`GateError::Preflight`] (exit 5)
    /// when the store cannot hold a lock.
    pub async fn lock(&self, command: &str, commit: Option<String>) -> Result<LockGuard> {
        let lock = StoreLock::new(self.store.clone(), &self.environment, self.lock_ttl);
        self.take(lock, &self.environment, command, commit, self.wait_lock)
            .await
    }

    /// Takes the retention lock of `environment` (the environment of the backups concerned,
    /// which for `pin ID` or `verify ID` need not be this gate's), waiting up to `wait`.
    ///
    /// # Errors
    ///
    /// As [`Scope::lock`].
    pub async fn lock_retention(
        &self,
        environment: &str,
        command: &str,
        wait: Duration,
    ) -> Result<LockGuard> {
        let lock = StoreLock::retention(self.store.clone(), environment, self.lock_ttl);
        self.take(lock, environment, command, None, wait).await
    }

    /// The blob lease of a backup in this environment: waits for a running blob collection
    /// (up to `--wait-lock`, at least [`BLOB_COLLECTION_WAIT`]).
    ///
    /// # Errors
    ///
    /// As [`Scope::lock`].
    pub(crate) async fn lock_blob_user(&self) -> Result<LockGuard> {
        let lock = StoreLock::blob_user(self.store.clone(), &self.environment, self.lock_ttl);
        let wait = self.wait_lock.max(BLOB_COLLECTION_WAIT);
        self.take(lock, &self.environment, "backup", None, wait)
            .await
    }

    /// The store-wide lease of a blob collection: one attempt, never waiting (a backup using
    /// blobs is running: collect another time).
    pub(crate) async fn lock_blob_collector(&self) -> std::result::Result<LockGuard, LockError> {
        let lock = StoreLock::blob_collector(self.store.clone(), &self.environment, self.lock_ttl);
        let lease = Lease::new(&self.environment, "prune", None, self.lock_ttl);
        lock.acquire(lease, Duration::ZERO).await
    }

    /// Checks that `guard` (a lock of this scope's) is still held: before starting a deploy
    /// command, before recording a deployment.
    ///
    /// # Errors
    ///
    /// [`GateError::LockHeld`] (exit 6) when it was lost; [`GateError::Preflight`] when the
    /// store cannot tell.
    pub async fn check_lock(&self, guard: &LockGuard) -> Result<()> {
        guard.ensure_held().await.map_err(lock_error)
    }

    /// How long [`Scope::lock`] waits for another run (`--wait-lock`).
    pub fn wait_lock(&self) -> Duration {
        self.wait_lock
    }

    async fn take(
        &self,
        lock: StoreLock,
        environment: &str,
        command: &str,
        commit: Option<String>,
        wait: Duration,
    ) -> Result<LockGuard> {
        let lease = Lease::new(environment, command, commit, self.lock_ttl);
        if !wait.is_zero() {
            tracing::debug!("waiting up to {}s for the lock", wait.as_secs());
        }
        let guard = lock.acquire(lease, wait).await.map_err(lock_error)?;
        for dead in guard.took_over() {
            tracing::warn!(
                "took over the expired lock of {} (it stopped renewing its lease: the run was \
                 probably killed; check that it left nothing half-done)",
                dead.describe()
            );
        }
        Ok(guard)
    }

    /// Runs `body` under `guard`, then releases it (whatever `body` returned).
    pub(crate) async fn holding<T>(&self, guard: LockGuard, body: impl Future<Output = T>) -> T {
        let out = body.await;
        self.unlock(guard).await;
        out
    }

    /// Releases a lock taken by [`Scope::lock`] (or another of the scope's leases); a failure is
    /// only a warning (the lease then expires after its ttl).
    pub async fn unlock(&self, guard: LockGuard) {
        if let Err(e) = guard.release().await {
            tracing::warn!(
                "could not release the lock ({e}); it expires in {}s",
                self.lock_ttl.as_secs()
            );
        }
    }
}

/// Maps lock failures onto the documented exit codes.
pub(crate) fn lock_error(e: LockError) -> GateError {
    match e {
        LockError::Store(source) => GateError::Preflight { source },
        held_or_lost => GateError::LockHeld {
            message: held_or_lost.to_string(),
        },
    }
}
