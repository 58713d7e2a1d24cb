//! [`Gate`]: one store, environment and set of sources, and the parts that work on them —
//! [`Backups`] (take and verify), [`Inventory`] (list, show, check, pins, deployments),
//! [`Pruner`] (retention and garbage collection), [`Restores`] and [`Doctor`]. The whole gate
//! of a deploy is [`Gate::run`] (`run.rs`); the command line's commands, with their locks, are
//! [`Gate::commands`] (`commands.rs`).

use std::sync::Arc;

use backup_core::{
    Clock, DynSnapshotter, DynStore, DynVerifier, PipelineConfig, VerificationLevel,
};
use backup_objectstore::ObjectStoreStore;

use crate::backups::{BackupSetup, Backups, verifiers_of};
use crate::config::Settings;
use crate::doctor::Doctor;
use crate::error::{GateError, Result};
use crate::inventory::Inventory;
use crate::prune::Pruner;
use crate::restore::Restores;
use crate::scope::Scope;

/// The composition of a store, sources and verifiers that takes, checks, keeps and restores
/// backups.
///
/// Library users build one with [`Gate::builder`] (level 4 by default) or [`Gate::new`] from
/// their own parts; the command line builds one from [`Settings`] with [`Gate::from_settings`].
#[derive(Debug)]
pub struct Gate {
    pub(crate) scope: Scope,
    pub(crate) setup: BackupSetup,
}

impl Gate {
    /// A gate over explicit parts, verifying to level 3 (no signal handling; the caller owns
    /// the process).
    pub fn new(
        store: DynStore,
        environment: impl Into<String>,
        snapshotters: Vec<DynSnapshotter>,
        verifiers: Vec<DynVerifier>,
    ) -> Self {
        Gate {
            scope: Scope::new(store, environment),
            setup: BackupSetup::new(snapshotters, verifiers),
        }
    }

    /// Sets how far new backups are verified (and require that level to pass).
    #[must_use]
    pub fn with_verify_level(mut self, level: VerificationLevel) -> Self {
        self.setup.verify_level = level;
        self.setup.verify_required = level;
        self
    }

    /// Lowers the level a verification must reach to pass below the one attempted (e.g.
    /// attempt `restore`, accept `archive` when no scratch server is usable).
    #[must_use]
    pub fn with_required_level(mut self, level: VerificationLevel) -> Self {
        self.setup.verify_required = level.min(self.setup.verify_level);
        self
    }

    /// Sets the compression settings.
    #[must_use]
    pub fn with_pipeline(mut self, pipeline: PipelineConfig) -> Self {
        self.setup.pipeline = pipeline;
        self
    }

    /// Sets the clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.scope.clock = clock;
        self
    }

    /// Sets the expiry of new backups (`--expire-in`): their manifests record `expires_at`,
    /// and retention keeps them at least until then (as one more rule ORed with the others).
    #[must_use]
    pub fn with_expire_in(mut self, span: Option<jiff::Span>) -> Self {
        self.setup.expire_in = span;
        self
    }

    /// Opens the store and builds the sources the settings name. Enables SIGINT/SIGTERM
    /// handling: an interrupted backup is cleaned up and reported, never half-committed.
    /// `create_store`: create a missing local store (for commands that write backups).
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for a source kind this version does not support or a malformed URL;
    /// [`GateError::Preflight`] when the store cannot be opened.
    pub fn from_settings(settings: &Settings, create_store: bool) -> Result<Self> {
        let store = ObjectStoreStore::open_with(&settings.store, create_store, &settings.s3)
            .map_err(|e| match e {
                backup_core::Error::Invalid { .. } => GateError::usage(e.to_string()),
                other => GateError::Preflight { source: other },
            })?;
        let backends = crate::backends::registry(&settings.backend_config());
        let snapshotters = settings
            .sources
            .iter()
            .map(|s| {
                // A malformed URL is a usage error; a source found unreachable while its
                // settings are read (`via=docker://` naming a stopped container) exit 5.
                backends.snapshotter(s).map_err(GateError::from)
            })
            .collect::<Result<Vec<_>>>()?;
        // Readers (verification above level 1, restores) decrypt with these.
        backup_core::encryption::install_identities(settings.encryption.identities.clone());
        let (verifiers, reverifiers) = verifiers_of(&backends, &settings.sources)?;
        let mut gate = Gate::new(
            Arc::new(store),
            settings.environment.clone(),
            snapshotters,
            verifiers,
        )
        .with_verify_level(settings.verify_level)
        .with_required_level(settings.verify_required)
        .with_pipeline(settings.pipeline.clone());
        gate.setup.reverifiers = Some(reverifiers);
        gate.scope.store_url = Some(settings.store.clone());
        gate.scope.backends = backends;
        gate.scope.handle_signals = true;
        gate.scope.lock_ttl = settings.lock_ttl;
        gate.scope.wait_lock = settings.wait_lock;
        Ok(gate)
    }

    /// The store, environment, locks and backends every part shares.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The store.
    pub fn store(&self) -> &DynStore {
        &self.scope.store
    }

    /// The store's display name.
    pub fn store_name(&self) -> &str {
        self.scope.store_name()
    }

    /// The environment.
    pub fn environment(&self) -> &str {
        &self.scope.environment
    }

    /// Taking and verifying backups (no lock: see [`Gate::commands`] for `backup` with its
    /// lock and retention).
    pub fn backups(&self) -> Backups<'_> {
        Backups {
            scope: &self.scope,
            setup: &self.setup,
        }
    }

    /// The backups, pins and deployment records in the store.
    pub fn inventory(&self) -> Inventory<'_> {
        Inventory { scope: &self.scope }
    }

    /// Retention and garbage collection (no lock: see [`Gate::commands`] for `prune`).
    pub fn pruner(&self) -> Pruner<'_> {
        Pruner { scope: &self.scope }
    }

    /// Restores and rollbacks (no lock: see [`Gate::commands`] for `restore`).
    pub fn restores(&self) -> Restores<'_> {
        Restores {
            backups: self.backups(),
        }
    }

    /// The probes of `doctor`.
    pub fn doctor(&self) -> Doctor<'_> {
        Doctor {
            scope: &self.scope,
            snapshotters: &self.setup.snapshotters,
        }
    }
}
