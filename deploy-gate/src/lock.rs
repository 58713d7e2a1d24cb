//! The run lock, as the gate takes it: one `run`/`backup`/`prune --yes` at a time per store and
//! environment (see `backup_objectstore::StoreLock` for the protocol).

use backup_objectstore::{Lease, LockError, LockGuard, StoreLock};

use crate::error::{GateError, Result};
use crate::gate::Gate;

impl Gate {
    /// Takes the lock of this gate's environment for `command`, waiting as configured
    /// (`--wait-lock`). Expired leases of dead runs are taken over and reported.
    ///
    /// Release it with [`Gate::unlock`] on every path: a guard that is only dropped leaves its
    /// lease until it expires when the process exits right after.
    ///
    /// # Errors
    ///
    /// [`GateError::LockHeld`] (exit 6) naming the holder; [`GateError::Preflight`] (exit 5)
    /// when the store cannot hold a lock.
    pub async fn lock(&self, command: &str, commit: Option<String>) -> Result<LockGuard> {
        let lease = Lease::new(&self.environment, command, commit, self.lock_ttl);
        let lock = StoreLock::new(self.store.clone(), &self.environment, self.lock_ttl);
        if !self.wait_lock.is_zero() {
            tracing::debug!("waiting up to {}s for the lock", self.wait_lock.as_secs());
        }
        let guard = lock
            .acquire(lease, self.wait_lock)
            .await
            .map_err(lock_error)?;
        for dead in guard.took_over() {
            tracing::warn!(
                "took over the expired lock of {} (it stopped renewing its lease: the run was \
                 probably killed; check that it left nothing half-done)",
                dead.describe()
            );
        }
        Ok(guard)
    }

    /// Releases the lock taken by [`Gate::lock`]; a failure is only a warning (the lease then
    /// expires after its ttl).
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
