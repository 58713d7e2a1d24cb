//! [`Scope`]: what every part of a gate shares — the store and environment it works on, the
//! clock and host it records, its lock settings, whether it handles signals, and the kinds of
//! source it knows. The parts ([`crate::Backups`], [`crate::Inventory`], [`crate::Pruner`],
//! [`crate::Restores`], [`crate::Doctor`]) are views over one scope; the leases it takes are in
//! `lock.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{Clock, DynStore, Registry, SystemClock};
use backup_objectstore::StoreUrl;

/// The store, environment and settings shared by every part of a [`crate::Gate`].
#[derive(Debug, Clone)]
pub struct Scope {
    pub(crate) store: DynStore,
    /// Where the store is, when it was opened from a URL (printed in runbooks).
    pub(crate) store_url: Option<StoreUrl>,
    pub(crate) environment: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) host: String,
    pub(crate) handle_signals: bool,
    /// Lease length of the locks (see `lock.rs`).
    pub(crate) lock_ttl: Duration,
    /// How long [`Scope::lock`] waits for another run.
    pub(crate) wait_lock: Duration,
    /// The kinds of source known (see `backends.rs`): restores and the runbook find a stored
    /// source's backend here by its kind.
    pub(crate) backends: Registry,
}

impl Scope {
    /// A scope over `store` and `environment` with the system clock, this host, no signal
    /// handling, the default lease and no waiting for locks, and this build's backends.
    pub fn new(store: DynStore, environment: impl Into<String>) -> Self {
        Scope {
            store,
            store_url: None,
            environment: environment.into(),
            clock: Arc::new(SystemClock),
            host: host_name(),
            handle_signals: false,
            lock_ttl: backup_objectstore::DEFAULT_LOCK_TTL,
            wait_lock: Duration::ZERO,
            backends: crate::backends::default_registry(),
        }
    }

    /// The store.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// The store's display name.
    pub fn store_name(&self) -> &str {
        self.store.name()
    }

    /// Where the store is, when it was opened from a URL.
    pub fn store_url(&self) -> Option<&StoreUrl> {
        self.store_url.as_ref()
    }

    /// The environment.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The kinds of source known.
    pub fn backends(&self) -> &Registry {
        &self.backends
    }

    /// Runs `fut`, or returns the name of the signal that interrupted it (when this scope
    /// handles signals).
    pub(crate) async fn interruptible<T>(
        &self,
        fut: impl Future<Output = T>,
    ) -> std::result::Result<T, &'static str> {
        backup_core::hooks::Signals::new(self.handle_signals)
            .run(fut)
            .await
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}
