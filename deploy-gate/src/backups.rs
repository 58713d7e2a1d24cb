//! [`Backups`]: taking and verifying backups — preflight, snapshot every source, commit the
//! manifest, verify, record; and re-verifying stored ones.

use std::time::Instant;

use backup_core::disk::human_bytes;
use backup_core::progress::{Stage, StageKind};
use backup_core::{
    BackupId, BackupKind, DeployInfo, DynSnapshotter, DynVerifier, MANIFEST_FORMAT_VERSION,
    Manifest, PipelineConfig, PreflightReport, Registry, SnapshotContext, SourceName, SourceSpec,
    StoreExt, ToolInfo, VerificationLevel, VerificationRecord, layout,
};
use backup_objectstore::{LockGuard, probe_store};
use backup_verify::verify_backup;
use futures::future::try_join_all;

use crate::error::{GateError, Result};
use crate::inventory::Inventory;
use crate::scope::Scope;

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

/// What new backups are made of: the sources, their verifiers, the levels, compression and
/// expiry.
#[derive(Debug, Clone)]
pub struct BackupSetup {
    pub(crate) snapshotters: Vec<DynSnapshotter>,
    pub(crate) verifiers: Vec<DynVerifier>,
    /// The verifiers of `verify` (re-verifying stored backups); `None`: `verifiers`.
    pub(crate) reverifiers: Option<Vec<DynVerifier>>,
    pub(crate) verify_level: VerificationLevel,
    pub(crate) verify_required: VerificationLevel,
    pub(crate) pipeline: PipelineConfig,
    /// `--expire-in`: recorded in new manifests as `expires_at` (see `retention.rs`).
    pub(crate) expire_in: Option<jiff::Span>,
}

impl BackupSetup {
    /// Backups of `snapshotters`' sources checked by `verifiers`, to level 3 (archive), with the
    /// default compression and no expiry.
    pub fn new(snapshotters: Vec<DynSnapshotter>, verifiers: Vec<DynVerifier>) -> Self {
        BackupSetup {
            snapshotters,
            verifiers,
            reverifiers: None,
            verify_level: VerificationLevel::Archive,
            verify_required: VerificationLevel::Archive,
            pipeline: PipelineConfig::default(),
            expire_in: None,
        }
    }

    /// The sources' snapshotters.
    pub fn snapshotters(&self) -> &[DynSnapshotter] {
        &self.snapshotters
    }
}

/// Taking and verifying backups in a [`Scope`]: see [`crate::Gate::backups`].
#[derive(Debug, Clone, Copy)]
pub struct Backups<'g> {
    pub(crate) scope: &'g Scope,
    pub(crate) setup: &'g BackupSetup,
}

impl Backups<'_> {
    fn inventory(&self) -> Inventory<'_> {
        Inventory { scope: self.scope }
    }

    /// Checks the store and every source, writing nothing that stays.
    ///
    /// # Errors
    ///
    /// [`GateError::Preflight`] naming the first unusable store or source.
    pub async fn preflight(&self) -> Result<Vec<(SourceName, PreflightReport)>> {
        // The store's probes and the sources' checks are independent round trips: run them at
        // once (on S3 each probe is a request; together they are most of a run's fixed cost).
        let store_probe = probe_store(self.scope.store.as_ref());
        // Settles whether create-only writes are honoured (S3 servers differ).
        let create_only = async { self.scope.store.detect_create_only().await.map(|_| ()) };
        let sources = try_join_all(self.setup.snapshotters.iter().map(|s| async move {
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

    /// [`Backups::backup`] under a lock taken with [`Scope::lock`]: the manifest is committed only
    /// if the lease is still ours (otherwise [`GateError::LockHeld`], exit 6, and nothing is
    /// committed).
    ///
    /// # Errors
    ///
    /// As [`Backups::backup`], and [`GateError::LockHeld`] when the lock was lost.
    pub async fn backup_locked(
        &self,
        request: &BackupRequest,
        lock: Option<&LockGuard>,
    ) -> Result<BackupOutcome> {
        if self.setup.snapshotters.is_empty() {
            return Err(GateError::usage(
                "nothing to back up: no source is configured",
            ));
        }
        let preflight = self.preflight().await?;
        // A backup that stores or reuses blobs holds the store-wide blob lease until its
        // manifest is committed, so no blob collection (`prune --yes` of any environment) can
        // delete a blob it references between the collection's listing and its delete (see
        // `backup_objectstore::bucket::apply_blob_gc`).
        let uses_blobs = self.setup.snapshotters.iter().any(|s| s.shares_blobs());
        let blob_lease = match uses_blobs {
            true => Some(self.scope.lock_blob_user().await?),
            false => None,
        };
        let committed = self
            .snapshot_and_commit(request, lock, blob_lease.as_ref())
            .await;
        if let Some(g) = blob_lease {
            self.scope.unlock(g).await;
        }
        let (manifest, snapshot_seconds) = committed?;

        let verification = self
            .verify_manifest(
                &manifest,
                self.setup.verify_level,
                self.setup.verify_required,
            )
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
        let created_at = self.scope.clock.now();
        let id = BackupId::new(created_at);
        tracing::info!(
            "backing up {} source(s) as {id} into {}",
            self.setup.snapshotters.len(),
            self.scope.store.name()
        );

        let started = Instant::now();
        let stage = Stage::start(StageKind::Backup, id.to_string(), None);
        let ctx = SnapshotContext {
            store: self.scope.store.as_ref(),
            backup_id: &id,
            environment: &self.scope.environment,
            pipeline: &self.setup.pipeline,
        };
        let snapshots = try_join_all(self.setup.snapshotters.iter().map(|s| async move {
            let t = Instant::now();
            let mut m = s.snapshot(ctx).await?;
            if ctx.pipeline.hide_table_names {
                backup_core::hidden_stats::seal(&ctx, &mut m).await?;
            }
            tracing::info!(
                "stored {}: {} in {:.1}s ({} tables, {} rows)",
                s.source_name(),
                human_bytes(m.stored_size()),
                t.elapsed().as_secs_f64(),
                m.stats.table_count(),
                m.stats.total_rows()
            );
            Ok::<_, backup_core::Error>(m)
        }));
        let sources = match self.scope.interruptible(snapshots).await {
            Ok(Ok(sources)) => {
                stage.succeed();
                sources
            }
            Ok(Err(source)) => {
                stage.fail(&source);
                self.discard(&id).await;
                return Err(GateError::Backup { source });
            }
            Err(signal) => {
                stage.fail(format!("interrupted by {signal}"));
                self.discard(&id).await;
                return Err(GateError::Interrupted { signal });
            }
        };
        let snapshot_seconds = started.elapsed().as_secs_f64();

        let mut manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: id.clone(),
            kind: request.kind,
            environment: self.scope.environment.clone(),
            created_at,
            finished_at: self.scope.clock.now(),
            tool: ToolInfo::current(),
            host: self.scope.host.clone(),
            deploy: request.deploy.clone(),
            sources,
            expires_at: crate::retention::expiry(created_at, self.setup.expire_in),
            extra: serde_json::Map::new(),
        };
        if let Ok(Some(recipients)) = self.setup.pipeline.parsed_recipients() {
            backup_core::encryption::ManifestEncryption {
                scheme: backup_core::encryption::AGE.into(),
                recipients: recipients.fingerprints(),
            }
            .record(&mut manifest);
        }
        // Every artifact is stored, the manifest is not: a kill here must leave no backup.
        backup_core::hooks::pause_at("before-manifest").await;
        for guard in [lock, blob_lease].into_iter().flatten() {
            if let Err(e) = guard.ensure_held().await {
                self.discard(&id).await;
                return Err(crate::lock::lock_error(e));
            }
        }
        if let Err(source) = self.scope.store.write_manifest(&manifest).await {
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
        self.verify_manifest_with(&self.setup.verifiers, manifest, requested, required)
            .await
    }

    /// [`Backups::verify_manifest`] with the verifiers of `verify` (which read every bucket blob).
    ///
    /// # Errors
    ///
    /// As [`Backups::verify_manifest`].
    pub async fn reverify_manifest(
        &self,
        manifest: &Manifest,
        requested: VerificationLevel,
        required: VerificationLevel,
    ) -> Result<VerificationRecord> {
        let verifiers = self
            .setup
            .reverifiers
            .as_ref()
            .unwrap_or(&self.setup.verifiers);
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
        let stage = Stage::start(StageKind::Verify, manifest.id.to_string(), None);
        let verification = verify_backup(
            self.scope.store.as_ref(),
            manifest,
            verifiers,
            requested,
            required,
            self.scope.clock.as_ref(),
            &self.scope.host,
        );
        let record = self
            .scope
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
        self.scope
            .store
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
            stage.fail(&summary);
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
        stage.succeed();
        Ok(record)
    }

    /// Re-verifies stored backups (`last`, an id, or every backup with `all`), appending a record
    /// to each. `level`: attempt and require that level; `None`: the gate's configured levels.
    /// Returns every record; the error, if any, comes after all were checked.
    ///
    /// # Errors
    ///
    /// [`GateError::Verification`] (4) when any backup failed; usage errors as
    /// [`Inventory::resolve`].
    pub async fn verify_stored(
        &self,
        selector: Option<&str>,
        all: bool,
        level: Option<VerificationLevel>,
    ) -> Result<Vec<VerificationRecord>> {
        let (requested, required) = level
            .map_or((self.setup.verify_level, self.setup.verify_required), |l| {
                (l, l)
            });
        let manifests = if all {
            self.inventory()
                .list()
                .await?
                .into_iter()
                .map(|l| l.manifest)
                .collect()
        } else {
            vec![self.inventory().resolve(selector.unwrap_or("last")).await?]
        };
        if let [single] = manifests.as_slice() {
            return Ok(vec![
                self.reverify_manifest(single, requested, required).await?,
            ]);
        }
        let mut records = Vec::new();
        let mut failures = Vec::new();
        for m in &manifests {
            match self.reverify_manifest(m, requested, required).await {
                Ok(r) => records.push(r),
                Err(e @ GateError::VerificationInterrupted { .. }) => return Err(e),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !failures.is_empty() {
            return Err(GateError::Verification {
                id: format!("{} of {} backups", failures.len(), manifests.len()),
                summary: failures.join("\n"),
            });
        }
        Ok(records)
    }

    /// Removes whatever an uncommitted backup left in the store (best effort: leftovers without
    /// a manifest are never mistaken for a backup).
    async fn discard(&self, id: &BackupId) {
        // The manifest first (as prune does): a manifest write that succeeded but reported an
        // error must not be left pointing at data a kill during this cleanup already deleted.
        if let Err(e) = self.scope.store.delete(&layout::manifest_key(id)).await {
            tracing::warn!("could not remove the manifest of {id}: {e}; its data is kept");
            return;
        }
        match self
            .scope
            .store
            .delete_prefix(&layout::backup_prefix(id))
            .await
        {
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
        let v = backend.verifiers(sources).map_err(GateError::from)?;
        if v.reverify.is_empty() {
            reverify.extend(v.after_backup.iter().cloned());
        } else {
            reverify.extend(v.reverify);
        }
        after_backup.extend(v.after_backup);
    }
    Ok((after_backup, reverify))
}
