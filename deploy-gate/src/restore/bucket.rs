//! Restoring `bucket` and `directory` sources: into their original location or a given one
//! (`--to s3://…` or a directory), after a safety snapshot of what is there, every object checked
//! against its digest while it is written.
//!
//! 1. **Plan**: resolve the backup and source, reach the target, count what is there.
//! 2. **Consent**: as for databases (`--yes`, the variable, `--allow-production`).
//! 3. **Verify the backup**: every blob present with its size and sha256 (level 1); a damaged
//!    backup is refused (exit 4) before the target is touched.
//! 4. **Safety snapshot** of the target (kind `safety`, verified), when it holds anything.
//! 5. **Restore**: every object written with its content type and metadata, its bytes checked
//!    against the index while they stream. Objects in the target that the backup lacks are left
//!    alone and counted.
//!
//! A failure before step 5 leaves the target untouched; during it, the target holds part of the
//! backup's objects and the safety snapshot holds its previous state (exit 8, both named).

use std::sync::Arc;

use backup_core::{BackupKind, DeployInfo, Manifest, SourceManifest, VerificationLevel, Verifier};
use backup_objectstore::bucket::BucketVerifier;
use backup_objectstore::bucket::{RestoreReport, bucket_stat};
use backup_objectstore::{BucketLocation, BucketRestorer, BucketSnapshotter, BucketSource};
use futures::TryStreamExt;
use serde::Serialize;

use super::{RestoreRequest, pick_source, step};
use crate::error::{GateError, Result, TargetState};
use crate::gate::{BackupRequest, Gate};

/// What a bucket or directory restore will do.
#[derive(Debug, Clone, Serialize)]
pub struct BucketRestorePlan {
    /// The backup.
    pub backup_id: String,
    /// The environment.
    pub environment: String,
    /// The source of the backup being restored.
    pub source: String,
    /// `bucket` or `directory`.
    pub kind: String,
    /// Where it goes (no secrets).
    pub target: String,
    /// What to type to confirm: the bucket name or the directory path.
    pub confirm_name: String,
    /// Objects in the backup.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects in the target now (a safety snapshot is taken when there are any).
    pub target_objects: u64,
    /// Whether the environment is production.
    pub production: bool,
    /// The steps, in order.
    pub steps: Vec<String>,
    #[serde(skip)]
    manifest: Manifest,
    #[serde(skip)]
    location: BucketLocation,
}

/// What a finished bucket or directory restore did.
#[derive(Debug, Clone, Serialize)]
pub struct BucketRestoreOutcome {
    /// The plan it followed.
    pub plan: BucketRestorePlan,
    /// The safety snapshot of the target taken first (none when the target was empty).
    pub safety_backup: Option<String>,
    /// What was written, skipped and left alone.
    pub report: RestoreReport,
}

/// True when source `name` of `manifest` (or its only source) is a bucket or directory.
///
/// # Errors
///
/// [`GateError::Usage`] when the source cannot be picked.
pub fn is_bucket_restore(manifest: &Manifest, name: Option<&str>) -> Result<bool> {
    let source = pick_source(manifest, name)?;
    Ok(matches!(source.kind.as_str(), "bucket" | "directory"))
}

fn bucket_verifier_source(manifest: &Manifest, source: &SourceManifest) -> Manifest {
    Manifest {
        sources: vec![source.clone()],
        ..manifest.clone()
    }
}

impl Gate {
    /// Plans the restore of a bucket or directory source. Writes nothing.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for an unknown backup or source, a source of another kind, or a
    /// malformed target; [`GateError::Preflight`] when the target cannot be read.
    pub async fn plan_bucket_restore(&self, request: &RestoreRequest) -> Result<BucketRestorePlan> {
        let manifest = self.resolve_restorable(&request.backup).await?;
        let source = pick_source(&manifest, request.source.as_deref())?.clone();
        if !matches!(source.kind.as_str(), "bucket" | "directory") {
            return Err(GateError::usage(format!(
                "source {} is a {} source, not a bucket or directory",
                source.name, source.kind
            )));
        }
        let url = match (
            &request.to,
            request.configured.iter().find(|s| s.name == source.name),
        ) {
            (Some(url), _) => url.clone(),
            (None, Some(spec)) => spec.url.clone(),
            // Never a location read from the store: a tampered manifest could point a restore
            // at any directory or bucket, written with the operator's credentials.
            (None, None) => {
                return Err(GateError::usage(format!(
                    "source {} of backup {} is not configured here: give the target with --to (the backup was taken from {}; pre-deploy does not restore to a location read from the store)",
                    source.name, manifest.id, source.location
                )));
            }
        };
        let location = BucketLocation::parse(&url).map_err(|e| GateError::usage(e.to_string()))?;
        let (target, confirm_name) = match &location {
            BucketLocation::S3 { bucket, prefix, .. } => (
                if prefix.is_empty() {
                    format!("s3://{bucket}")
                } else {
                    format!("s3://{bucket}/{prefix}")
                },
                bucket.clone(),
            ),
            BucketLocation::Directory(d) => (d.display().to_string(), d.display().to_string()),
        };
        let target_objects = match &location {
            BucketLocation::Directory(d) if !d.exists() => 0,
            _ => {
                let reader = BucketSource::open(location.clone(), &self.s3_base)
                    .map_err(|source| GateError::Preflight { source })?;
                reader
                    .list()
                    .try_fold(0u64, |n, _| async move { Ok(n + 1) })
                    .await
                    .map_err(|source| GateError::Preflight { source })?
            }
        };
        let objects = bucket_stat(&source, "objects").unwrap_or(0);
        let bytes = bucket_stat(&source, "bytes").unwrap_or(0);
        let mut steps = vec![format!(
            "verify every blob of backup {} (size and sha256)",
            manifest.id
        )];
        if target_objects > 0 {
            steps.push(format!(
                "safety snapshot of the {target_objects} object(s) now in {target} (kind safety)"
            ));
        } else {
            steps.push(format!("{target} is empty: no safety snapshot needed"));
        }
        steps.push(format!(
            "write {objects} object(s) ({bytes} bytes) into {target}, each checked against its \
             sha256; objects the backup lacks are left alone"
        ));
        Ok(BucketRestorePlan {
            backup_id: manifest.id.to_string(),
            environment: self.environment.clone(),
            source: source.name.to_string(),
            kind: source.kind.clone(),
            target,
            confirm_name,
            objects,
            bytes,
            target_objects,
            production: request.production,
            steps,
            manifest,
            location,
        })
    }

    /// Carries out a [`BucketRestorePlan`]. The caller holds the store lock.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] (2) without consent; [`GateError::Verification`] (4) for a damaged
    /// backup, the target untouched; [`GateError::Backup`] (3) when the safety snapshot fails,
    /// the target untouched; [`GateError::Restore`] (8) when writing fails part-way, naming the
    /// safety snapshot that holds the previous state.
    pub async fn restore_bucket(
        &self,
        plan: BucketRestorePlan,
        request: &RestoreRequest,
    ) -> Result<BucketRestoreOutcome> {
        if plan.production && !request.allow_production {
            return Err(GateError::usage(format!(
                "environment {:?} is production: restoring into it needs --allow-production (nothing was changed)",
                plan.environment
            )));
        }
        if !request.confirmed {
            return Err(GateError::usage(format!(
                "the restore of {} into {} was not confirmed: type {:?} at the prompt, or pass --yes, or set {}=yes (nothing was changed)",
                plan.backup_id,
                plan.target,
                plan.confirm_name,
                super::CONFIRM_RESTORE_ENV
            )));
        }
        let source = pick_source(&plan.manifest, Some(&plan.source))?.clone();

        step(&format!("verifying the blobs of backup {}", plan.backup_id));
        let report = BucketVerifier::default()
            .verify(
                self.store.as_ref(),
                &bucket_verifier_source(&plan.manifest, &source),
                VerificationLevel::Checksum,
            )
            .await
            .map_err(|e| GateError::Verification {
                id: plan.backup_id.clone(),
                summary: format!("{e} (the target is untouched)"),
            })?;
        if !report.passed() {
            let summary = report
                .failures()
                .map(|f| f.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(GateError::Verification {
                id: plan.backup_id.clone(),
                summary: format!("{summary} (the restore was refused; the target is untouched)"),
            });
        }

        let safety_backup = if plan.target_objects > 0 {
            step(&format!("safety snapshot of {}", plan.target));
            let reader = BucketSource::open(plan.location.clone(), &self.s3_base)
                .map_err(|source| GateError::Preflight { source })?;
            let name = source.name.clone();
            let snapshotter = BucketSnapshotter::new(name, reader);
            let safety_gate = Gate::new(
                self.store.clone(),
                self.environment.clone(),
                vec![Arc::new(snapshotter)],
                vec![Arc::new(BucketVerifier::default())],
            )
            .with_verify_level(VerificationLevel::Checksum)
            .with_required_level(VerificationLevel::Checksum);
            let outcome = safety_gate
                .backup(&BackupRequest {
                    kind: BackupKind::Safety,
                    deploy: DeployInfo::default(),
                })
                .await
                .map_err(|e| GateError::Restore {
                    message: format!(
                        "the safety snapshot of {} failed, so nothing was restored: {e}",
                        plan.target
                    ),
                    target: TargetState::Untouched,
                })?;
            Some(outcome.manifest.id.to_string())
        } else {
            None
        };
        super::pause_at("bucket-safety").await;

        step(&format!(
            "writing {} object(s) into {}",
            plan.objects, plan.target
        ));
        let restorer =
            BucketRestorer::new(self.s3_base.clone()).with_concurrency(self.bucket_concurrency);
        let report = restorer
            .restore(self.store.as_ref(), &source, &plan.location)
            .await
            .map_err(|e| GateError::Restore {
                message: format!(
                    "writing into {} failed part-way: {}; {}",
                    plan.target,
                    backup_objectstore::error_chain(&e),
                    match &safety_backup {
                        Some(id) => format!(
                            "its previous state is in safety backup {id} (`pre-deploy restore {id} --source {} --yes`)",
                            plan.source
                        ),
                        None => "it was empty before".to_owned(),
                    }
                ),
                target: TargetState::PartlyRestored,
            })?;
        Ok(BucketRestoreOutcome {
            plan,
            safety_backup,
            report,
        })
    }
}
