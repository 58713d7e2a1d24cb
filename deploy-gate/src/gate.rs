//! [`Gate`]: preflight, snapshot every source, commit the manifest, verify.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use backup_core::{
    BackupId, BackupKind, Clock, DeployInfo, DynSnapshotter, DynStore, DynVerifier,
    MANIFEST_FORMAT_VERSION, Manifest, PipelineConfig, PreflightReport, Registry, SnapshotContext,
    SourceName, StoreExt, SystemClock, ToolInfo, VerificationLevel, VerificationRecord, layout,
};
use backup_objectstore::{LockGuard, ObjectStoreStore, StoreUrl, probe_store};
use backup_verify::verify_backup;
use futures::future::try_join_all;

use crate::config::{Settings, SourceSpec};
use crate::error::{GateError, Result};

/// What to record about a new backup.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// Why it is taken.
    pub kind: BackupKind,
    /// The release it protects.
    pub deploy: DeployInfo,
}

/// A committed, verified backup.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its first verification.
    pub verification: VerificationRecord,
    /// What each source's preflight found.
    pub preflight: Vec<(SourceName, PreflightReport)>,
    /// Seconds spent snapshotting.
    pub snapshot_seconds: f64,
}

/// The composition of a store, sources and verifiers that takes and checks backups.
///
/// Library users build one with [`Gate::new`] from their own parts; the command line builds one
/// from [`Settings`] with [`Gate::from_settings`].
#[derive(Debug)]
pub struct Gate {
    pub(crate) store: DynStore,
    pub(crate) store_url: Option<StoreUrl>,
    pub(crate) environment: String,
    pub(crate) snapshotters: Vec<DynSnapshotter>,
    pub(crate) verifiers: Vec<DynVerifier>,
    /// The verifiers of `verify` (re-verifying stored backups); `None`: [`Gate::verifiers`].
    pub(crate) reverifiers: Option<Vec<DynVerifier>>,
    pub(crate) verify_level: VerificationLevel,
    pub(crate) verify_required: VerificationLevel,
    pub(crate) pipeline: PipelineConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) host: String,
    pub(crate) handle_signals: bool,
    /// `--expire-in`: recorded in new manifests as `expires_at` (see `retention.rs`).
    pub(crate) expire_in: Option<jiff::Span>,
    /// Lease length of the run lock (see `lock.rs`).
    pub(crate) lock_ttl: std::time::Duration,
    /// How long [`Gate::lock`] waits for another run.
    pub(crate) wait_lock: std::time::Duration,
    /// The kinds of source this gate knows (see `backends.rs`): restores and the runbook
    /// find a stored source's backend here by its kind.
    pub(crate) backends: Registry,
}

impl Gate {
    /// A gate over explicit parts (no signal handling; the caller owns the process).
    pub fn new(
        store: DynStore,
        environment: impl Into<String>,
        snapshotters: Vec<DynSnapshotter>,
        verifiers: Vec<DynVerifier>,
    ) -> Self {
        Gate {
            store,
            store_url: None,
            environment: environment.into(),
            snapshotters,
            verifiers,
            reverifiers: None,
            verify_level: VerificationLevel::Archive,
            verify_required: VerificationLevel::Archive,
            pipeline: PipelineConfig::default(),
            clock: Arc::new(SystemClock),
            host: host_name(),
            handle_signals: false,
            expire_in: None,
            lock_ttl: backup_objectstore::DEFAULT_LOCK_TTL,
            wait_lock: std::time::Duration::ZERO,
            backends: crate::backends::default_registry(),
        }
    }

    /// Sets how far new backups are verified (and require that level to pass).
    pub fn with_verify_level(mut self, level: VerificationLevel) -> Self {
        self.verify_level = level;
        self.verify_required = level;
        self
    }

    /// Lowers the level a verification must reach to pass below the one attempted (e.g.
    /// attempt `restore`, accept `archive` when no scratch server is usable).
    pub fn with_required_level(mut self, level: VerificationLevel) -> Self {
        self.verify_required = level.min(self.verify_level);
        self
    }

    /// Sets the compression settings.
    pub fn with_pipeline(mut self, pipeline: PipelineConfig) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Sets the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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
        let backends = crate::backends::registry(settings);
        let snapshotters = settings
            .sources
            .iter()
            .map(|s| {
                backends
                    .snapshotter(s)
                    .map_err(|e| GateError::usage(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let (verifiers, reverifiers) = verifiers_of(&backends, &settings.sources)?;
        let mut gate = Gate::new(
            Arc::new(store.clone()),
            settings.environment.clone(),
            snapshotters,
            verifiers,
        )
        .with_verify_level(settings.verify_level)
        .with_required_level(settings.verify_required)
        .with_pipeline(settings.pipeline.clone());
        gate.store_url = Some(settings.store.clone());
        gate.reverifiers = Some(reverifiers);
        gate.backends = backends;
        gate.handle_signals = true;
        gate.lock_ttl = settings.lock_ttl;
        gate.wait_lock = settings.wait_lock;
        Ok(gate)
    }

    /// The store.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// The store's display name.
    pub fn store_name(&self) -> &str {
        self.store.name()
    }

    /// The environment.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// Checks the store and every source, writing nothing that stays.
    ///
    /// # Errors
    ///
    /// [`GateError::Preflight`] naming the first unusable store or source.
    pub async fn preflight(&self) -> Result<Vec<(SourceName, PreflightReport)>> {
        // The store's probes and the sources' checks are independent round trips: run them at
        // once (on S3 each probe is a request; together they are most of a run's fixed cost).
        let store_probe = probe_store(self.store.as_ref());
        // Settles whether create-only writes are honoured (S3 servers differ).
        let create_only = async { self.store.detect_create_only().await.map(|_| ()) };
        let sources = try_join_all(self.snapshotters.iter().map(|s| async move {
            let report = s.preflight().await?;
            tracing::info!(
                "preflight {}: {} {}, {}",
                s.source_name(),
                s.kind(),
                report.server_version.as_deref().unwrap_or("?"),
                report.tool.as_deref().unwrap_or("no tool")
            );
            Ok::<_, backup_core::Error>((s.source_name().clone(), report))
        }));
        let ((), (), reports) = tokio::try_join!(store_probe, create_only, sources)
            .map_err(|source| GateError::Preflight { source })?;
        Ok(reports)
    }

    /// Preflight, snapshot every source concurrently, commit the manifest, verify, record.
    ///
    /// # Errors
    ///
    /// - [`GateError::Preflight`] (5) before anything is written;
    /// - [`GateError::Backup`] / [`GateError::Interrupted`] (3): the partial data is removed and
    ///   no manifest exists;
    /// - [`GateError::Verification`] (4): the backup is committed but failed verification; its
    ///   record says why.
    pub async fn backup(&self, request: &BackupRequest) -> Result<BackupOutcome> {
        self.backup_locked(request, None).await
    }

    /// [`Gate::backup`] under a lock taken with [`Gate::lock`]: the manifest is committed only
    /// if the lease is still ours (otherwise [`GateError::LockHeld`], exit 6, and nothing is
    /// committed).
    ///
    /// # Errors
    ///
    /// As [`Gate::backup`], and [`GateError::LockHeld`] when the lock was lost.
    pub async fn backup_locked(
        &self,
        request: &BackupRequest,
        lock: Option<&LockGuard>,
    ) -> Result<BackupOutcome> {
        if self.snapshotters.is_empty() {
            return Err(GateError::usage(
                "nothing to back up: no source is configured",
            ));
        }
        let preflight = self.preflight().await?;
        // A backup that stores or reuses blobs holds the store-wide blob lease until its
        // manifest is committed, so no blob collection (`prune --yes` of any environment) can
        // delete a blob it references between the collection's listing and its delete (see
        // `backup_objectstore::bucket::apply_blob_gc`).
        let uses_blobs = self.snapshotters.iter().any(|s| s.shares_blobs());
        let blob_lease = match uses_blobs {
            true => Some(self.lock_blob_user().await?),
            false => None,
        };
        let committed = self
            .snapshot_and_commit(request, lock, blob_lease.as_ref())
            .await;
        if let Some(g) = blob_lease {
            self.unlock(g).await;
        }
        let (manifest, snapshot_seconds) = committed?;

        let verification = self
            .verify_manifest(&manifest, self.verify_level, self.verify_required)
            .await?;
        Ok(BackupOutcome {
            manifest,
            verification,
            preflight,
            snapshot_seconds,
        })
    }

    /// Snapshots every source and commits the manifest, if the leases given are still held
    /// (else nothing is committed, exit 6). Returns the manifest and the seconds spent.
    async fn snapshot_and_commit(
        &self,
        request: &BackupRequest,
        lock: Option<&LockGuard>,
        blob_lease: Option<&LockGuard>,
    ) -> Result<(Manifest, f64)> {
        let created_at = self.clock.now();
        let id = BackupId::new(created_at);
        tracing::info!(
            "backing up {} source(s) as {id} into {}",
            self.snapshotters.len(),
            self.store.name()
        );

        let started = Instant::now();
        let ctx = SnapshotContext {
            store: self.store.as_ref(),
            backup_id: &id,
            environment: &self.environment,
            pipeline: &self.pipeline,
        };
        let snapshots = try_join_all(self.snapshotters.iter().map(|s| async move {
            let t = Instant::now();
            let m = s.snapshot(ctx).await?;
            tracing::info!(
                "stored {}: {} in {:.1}s ({} tables, {} rows)",
                s.source_name(),
                human_bytes(m.stored_size()),
                t.elapsed().as_secs_f64(),
                m.stats.tables.len(),
                m.stats.total_rows()
            );
            Ok::<_, backup_core::Error>(m)
        }));
        let sources = match self.interruptible(snapshots).await {
            Ok(Ok(sources)) => sources,
            Ok(Err(source)) => {
                self.discard(&id).await;
                return Err(GateError::Backup { source });
            }
            Err(signal) => {
                self.discard(&id).await;
                return Err(GateError::Interrupted { signal });
            }
        };
        let snapshot_seconds = started.elapsed().as_secs_f64();

        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: id.clone(),
            kind: request.kind,
            environment: self.environment.clone(),
            created_at,
            finished_at: self.clock.now(),
            tool: ToolInfo::current(),
            host: self.host.clone(),
            deploy: request.deploy.clone(),
            sources,
            expires_at: crate::retention::expiry(created_at, self.expire_in),
            extra: serde_json::Map::new(),
        };
        // Every artifact is stored, the manifest is not: a kill here must leave no backup.
        crate::restore::pause_at("before-manifest").await;
        for guard in [lock, blob_lease].into_iter().flatten() {
            if let Err(e) = guard.ensure_held().await {
                self.discard(&id).await;
                return Err(crate::lock::lock_error(e));
            }
        }
        if let Err(source) = self.store.write_manifest(&manifest).await {
            self.discard(&id).await;
            return Err(GateError::Backup { source });
        }
        tracing::info!("committed backup {id}");
        Ok((manifest, snapshot_seconds))
    }

    /// Verifies a committed backup up to `requested` and appends the record to the store; it
    /// passes when no check failed and `required` was reached.
    ///
    /// # Errors
    ///
    /// [`GateError::Verification`] (4) when a check failed or verification could not run;
    /// [`GateError::VerificationInterrupted`] on SIGINT/SIGTERM (a scratch database is dropped
    /// first).
    pub async fn verify_manifest(
        &self,
        manifest: &Manifest,
        requested: VerificationLevel,
        required: VerificationLevel,
    ) -> Result<VerificationRecord> {
        self.verify_manifest_with(&self.verifiers, manifest, requested, required)
            .await
    }

    /// [`Gate::verify_manifest`] with the verifiers of `verify` (which read every bucket blob).
    ///
    /// # Errors
    ///
    /// As [`Gate::verify_manifest`].
    pub async fn reverify_manifest(
        &self,
        manifest: &Manifest,
        requested: VerificationLevel,
        required: VerificationLevel,
    ) -> Result<VerificationRecord> {
        let verifiers = self.reverifiers.as_ref().unwrap_or(&self.verifiers);
        self.verify_manifest_with(verifiers, manifest, requested, required)
            .await
    }

    async fn verify_manifest_with(
        &self,
        verifiers: &[DynVerifier],
        manifest: &Manifest,
        requested: VerificationLevel,
        required: VerificationLevel,
    ) -> Result<VerificationRecord> {
        let started = Instant::now();
        let verification = verify_backup(
            self.store.as_ref(),
            manifest,
            verifiers,
            requested,
            required,
            self.clock.as_ref(),
            &self.host,
        );
        let record = self
            .interruptible(verification)
            .await
            .map_err(|signal| GateError::VerificationInterrupted {
                id: manifest.id.to_string(),
                signal,
            })?
            .map_err(|e| GateError::Verification {
                id: manifest.id.to_string(),
                summary: format!("could not verify: {}", backup_objectstore::error_chain(&e)),
            })?;
        self.store
            .write_verification(&record)
            .await
            .map_err(|e| GateError::Verification {
                id: manifest.id.to_string(),
                summary: format!(
                    "could not store the verification record: {}",
                    backup_objectstore::error_chain(&e)
                ),
            })?;
        if !record.passed {
            let summary: Vec<String> = record
                .report
                .failures()
                .map(|f| f.message.clone())
                .collect();
            let summary = if summary.is_empty() {
                record
                    .limited_by
                    .clone()
                    .unwrap_or_else(|| "no check could pass".into())
            } else {
                summary.join("; ")
            };
            return Err(GateError::Verification {
                id: manifest.id.to_string(),
                summary,
            });
        }
        tracing::info!(
            "verified {} to level {} in {:.1}s",
            manifest.id,
            record
                .level_reached
                .map_or_else(|| "none".into(), |l| l.to_string()),
            started.elapsed().as_secs_f64()
        );
        if let Some(why) = &record.limited_by {
            tracing::warn!("not verified to level {requested}: {why}");
        }
        Ok(record)
    }

    /// Runs `fut`, or returns the name of the signal that interrupted it (when this gate
    /// handles signals).
    async fn interruptible<T>(
        &self,
        fut: impl Future<Output = T>,
    ) -> std::result::Result<T, &'static str> {
        backup_core::hooks::Signals::new(self.handle_signals)
            .run(fut)
            .await
    }

    /// Removes whatever an uncommitted backup left in the store (best effort: leftovers without
    /// a manifest are never mistaken for a backup).
    async fn discard(&self, id: &BackupId) {
        // The manifest first (as prune does): a manifest write that succeeded but reported an
        // error must not be left pointing at data a kill during this cleanup already deleted.
        if let Err(e) = self.store.delete(&layout::manifest_key(id)).await {
            tracing::warn!("could not remove the manifest of {id}: {e}; its data is kept");
            return;
        }
        match self.store.delete_prefix(&layout::backup_prefix(id)).await {
            Ok(n) if n > 0 => tracing::info!("removed {n} partial object(s) of {id}"),
            Ok(_) => {}
            Err(e) => tracing::warn!("could not remove the partial data of {id}: {e}"),
        }
    }
}

/// The verifiers of every backend of `backends` (each given its configured sources), right
/// after a backup and for `verify`.
pub(crate) fn verifiers_of(
    backends: &Registry,
    sources: &[SourceSpec],
) -> Result<(Vec<DynVerifier>, Vec<DynVerifier>)> {
    let (mut after_backup, mut reverify) = (Vec::new(), Vec::new());
    for backend in backends.backends() {
        let v = backend
            .verifiers(sources)
            .map_err(|e| GateError::usage(e.to_string()))?;
        if v.reverify.is_empty() {
            reverify.extend(v.after_backup.iter().cloned());
        } else {
            reverify.extend(v.reverify);
        }
        after_backup.extend(v.after_backup);
    }
    Ok((after_backup, reverify))
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

pub use backup_core::disk::human_bytes;
