//! [`GateBuilder`]: a gate built from code (no config file), verifying to level 4 by default.

use std::sync::Arc;
use std::time::Duration;

use backup_core::{
    DynBackend, DynStore, Registry, SourceName, SourceSpec, Store, VerificationLevel,
};

use crate::error::{GateError, Result};
use crate::gate::Gate;

/// Builds a [`Gate`] the way another Rust tool would: a store, sources by URL, and the kinds of
/// source it knows ([`crate::default_registry`] unless [`GateBuilder::backend`] adds more).
///
/// New backups are verified to level 4 (a test restore, where each backend puts it by
/// default) and must reach it: "verified" means restored.
///
/// ```no_run
/// # async fn demo() -> deploy_gate::Result<()> {
/// use deploy_gate::{BackupKind, BackupRequest, DeployExit, Gate, RunRequest};
/// use backup_objectstore::ObjectStoreStore;
///
/// let store = ObjectStoreStore::local("/var/backups/app".as_ref())?;
/// let gate = Gate::builder(store)
///     .environment("production")
///     .source("db", std::env::var("DATABASE_URL").unwrap_or_default())?
///     .build()?;
/// let backup = BackupRequest { kind: BackupKind::PreDeploy, deploy: Default::default() };
/// let run = RunRequest { backup: &backup, retention: None, workdir: None, rollback: None, fresh: false };
/// let report = gate
///     .run(&run, |ctx| async move {
///         println!("migrating; backup {} protects it", ctx.manifest.id);
///         Ok(DeployExit::with_code(0))
///     }, &())
///     .await?;
/// assert_eq!(report.exit_code(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GateBuilder {
    store: DynStore,
    environment: String,
    backends: Registry,
    sources: Vec<SourceSpec>,
    verify_level: VerificationLevel,
    required_level: VerificationLevel,
    lock_ttl: Option<Duration>,
    wait_lock: Duration,
}

impl Gate {
    /// A builder over `store` (an `ObjectStoreStore`, or any [`Store`]) with this build's
    /// backends, environment `default`, no sources.
    pub fn builder(store: impl Store) -> GateBuilder {
        GateBuilder {
            store: Arc::new(store),
            environment: crate::DEFAULT_ENVIRONMENT.to_owned(),
            backends: crate::backends::default_registry(),
            sources: Vec::new(),
            verify_level: VerificationLevel::Restore,
            required_level: VerificationLevel::Restore,
            lock_ttl: None,
            wait_lock: Duration::ZERO,
        }
    }
}

impl GateBuilder {
    /// The environment backups, locks and retention belong to.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    /// Registers a kind of source ahead of the built-in ones (it wins for the URLs it accepts).
    pub fn backend(mut self, backend: DynBackend) -> Self {
        let mut backends = Registry::new().with(backend);
        for b in self.backends.backends() {
            backends.register(b.clone());
        }
        self.backends = backends;
        self
    }

    /// Replaces the kinds of source known (e.g. a database backend with other settings).
    pub fn backends(mut self, backends: Registry) -> Self {
        self.backends = backends;
        self
    }

    /// Adds a source to back up.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for an invalid source name.
    pub fn source(mut self, name: &str, url: impl Into<String>) -> Result<Self> {
        let name: SourceName = name
            .parse()
            .map_err(|e: backup_core::Error| GateError::usage(e.to_string()))?;
        self.sources.push(SourceSpec {
            name,
            url: url.into(),
        });
        Ok(self)
    }

    /// The level new backups are verified to, and must reach (default: 4, restore).
    pub fn verify_level(mut self, level: VerificationLevel) -> Self {
        self.verify_level = level;
        self.required_level = level;
        self
    }

    /// Accepts a lower level than attempted (e.g. attempt restore, accept archive).
    pub fn required_level(mut self, level: VerificationLevel) -> Self {
        self.required_level = level;
        self
    }

    /// How long the run lock's lease lasts without renewal (default: 60 s).
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = Some(ttl);
        self
    }

    /// How long to wait for another run's lock before refusing (default: not at all), the
    /// `--wait-lock` of the command line.
    pub fn wait_lock(mut self, wait: Duration) -> Self {
        self.wait_lock = wait;
        self
    }

    /// The gate.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for a source URL no backend accepts or a malformed one;
    /// [`GateError::Preflight`] for a source found unreachable while its settings are read.
    pub fn build(self) -> Result<Gate> {
        let snapshotters = self
            .sources
            .iter()
            .map(|s| self.backends.snapshotter(s).map_err(GateError::from))
            .collect::<Result<Vec<_>>>()?;
        let (verifiers, reverifiers) = crate::backups::verifiers_of(&self.backends, &self.sources)?;
        let mut gate = Gate::new(self.store, self.environment, snapshotters, verifiers)
            .with_verify_level(self.verify_level)
            .with_required_level(self.required_level);
        gate.setup.reverifiers = Some(reverifiers);
        gate.scope.backends = self.backends;
        if let Some(ttl) = self.lock_ttl {
            gate.scope.lock_ttl = ttl;
        }
        gate.scope.wait_lock = self.wait_lock;
        Ok(gate)
    }
}
