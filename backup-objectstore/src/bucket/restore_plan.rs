//! [`ObjectRestorer`]: restoring `bucket` and `directory` sources through the gate's restore
//! seam — into their original location or a given one (`--to s3://…` or a directory), after a
//! safety snapshot of what is there, every object checked against its digest while it is
//! written.
//!
//! 1. **Plan**: reach the target, count what is there. Nothing is written.
//! 2. **Verify the backup**: every blob present with its size and sha256 (level 1; sealed blobs
//!    are decrypted, level 2); a damaged
//!    backup is refused before the target is touched.
//! 3. **Safety snapshot** of the target through the gate's safety net, when it holds anything.
//! 4. **Restore**: every object written with its content type and metadata, its bytes checked
//!    against the index while they stream. Objects in the target that the backup lacks are left
//!    alone and counted.
//!
//! A failure before step 4 leaves the target untouched; during it, the target holds part of the
//! backup's objects and the safety snapshot holds its previous state
//! ([`TargetState::PartlyRestored`], both named).

use backup_core::sealed_blobs::SEALING_FIELD;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::hooks::pause_at;
use backup_core::{
    Manifest, PlannedRestore, RestoreContext, RestoreDone, RestoreError, RestoreSetup,
    RestoreSummary, Restorer, SourceManifest, TargetState, VerificationLevel, Verifier,
};
use futures::TryStreamExt;
use serde_json::json;

use crate::S3Settings;
use crate::bucket::{
    BucketLocation, BucketRestorer, BucketSnapshotter, BucketSource, BucketVerifier, bucket_stat,
};

/// Restores bucket and directory sources (see the module docs).
#[derive(Debug, Clone)]
pub struct ObjectRestorer {
    /// The base S3 settings of targets (a target URL's query overrides them).
    pub s3: S3Settings,
    /// Objects written at once.
    pub concurrency: usize,
}

/// A bucket or directory restore planned by [`ObjectRestorer`].
#[derive(Debug, Clone)]
pub struct PlannedObjectRestore {
    summary: RestoreSummary,
    manifest: Manifest,
    source: SourceManifest,
    location: BucketLocation,
    objects: u64,
    target_objects: u64,
    restorer: ObjectRestorer,
}

#[async_trait]
impl Restorer for ObjectRestorer {
    async fn plan(&self, setup: RestoreSetup<'_>) -> Result<Arc<dyn PlannedRestore>, RestoreError> {
        let (manifest, source) = (setup.manifest, setup.source);
        let location = BucketLocation::parse(setup.target_url)
            .map_err(|e| RestoreError::Usage(e.to_string()))?;
        let (target, confirm_name, product) = match &location {
            BucketLocation::S3 { bucket, prefix, .. } => (
                if prefix.is_empty() {
                    format!("s3://{bucket}")
                } else {
                    format!("s3://{bucket}/{prefix}")
                },
                bucket.clone(),
                "S3 bucket",
            ),
            BucketLocation::Directory(d) => (
                d.display().to_string(),
                d.display().to_string(),
                "directory",
            ),
        };
        let target_objects = match &location {
            BucketLocation::Directory(d) if !d.exists() => 0,
            _ => {
                let reader = BucketSource::open(location.clone(), &self.s3)
                    .map_err(RestoreError::Preflight)?;
                reader
                    .list()
                    .try_fold(0u64, |n, _| async move { Ok(n + 1) })
                    .await
                    .map_err(RestoreError::Preflight)?
            }
        };
        let objects = bucket_stat(source, "objects").unwrap_or(0);
        let bytes = bucket_stat(source, "bytes").unwrap_or(0);
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
        let mut details = serde_json::Map::new();
        details.insert("objects".into(), json!(objects));
        details.insert("bytes".into(), json!(bytes));
        details.insert("target_objects".into(), json!(target_objects));
        Ok(Arc::new(PlannedObjectRestore {
            summary: RestoreSummary {
                target,
                product: product.into(),
                server_version: String::new(),
                target_exists: target_objects > 0,
                connections: 0,
                confirm_name,
                steps,
                notes: Vec::new(),
                details,
            },
            manifest: manifest.clone(),
            source: source.clone(),
            location,
            objects,
            target_objects,
            restorer: self.clone(),
        }))
    }
}

#[async_trait]
impl PlannedRestore for PlannedObjectRestore {
    fn summary(&self) -> &RestoreSummary {
        &self.summary
    }

    async fn execute(
        &self,
        ctx: RestoreContext<'_>,
    ) -> Result<(RestoreDone, Option<String>), RestoreError> {
        let id = self.manifest.id.to_string();
        let target = &self.summary.target;
        step(&format!("verifying the blobs of backup {id}"));
        let only_this_source = Manifest {
            sources: vec![self.source.clone()],
            ..self.manifest.clone()
        };
        // Sealed blobs are checked through decryption (level 2): their level 1 is presence and
        // size only.
        let level = if self.source.extra.contains_key(SEALING_FIELD) {
            VerificationLevel::Decompress
        } else {
            VerificationLevel::Checksum
        };
        let report = BucketVerifier::default()
            .verify(ctx.store, &only_this_source, level)
            .await
            .map_err(|e| RestoreError::Damaged {
                id: id.clone(),
                summary: format!("{e} (the target is untouched)"),
            })?;
        if !report.passed() {
            let summary = report
                .failures()
                .map(|f| f.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(RestoreError::Damaged {
                id,
                summary: format!("{summary} (the restore was refused; the target is untouched)"),
            });
        }

        let safety_backup = if self.target_objects > 0 {
            step(&format!("safety snapshot of {target}"));
            let reader = BucketSource::open(self.location.clone(), &self.restorer.s3)
                .map_err(RestoreError::Preflight)?;
            let snapshotter = BucketSnapshotter::new(self.source.name.clone(), reader);
            let safety = ctx
                .safety
                .safety_backup(Arc::new(snapshotter))
                .await
                .map_err(|e| {
                    RestoreError::untouched(format!(
                        "the safety snapshot of {target} failed, so nothing was restored: {e}"
                    ))
                })?;
            Some(safety)
        } else {
            None
        };
        pause_at("bucket-safety").await;

        step(&format!("writing {} object(s) into {target}", self.objects));
        let report = BucketRestorer::new(self.restorer.s3.clone())
            .with_concurrency(self.restorer.concurrency)
            .restore(ctx.store, &self.source, &self.location)
            .await
            .map_err(|e| RestoreError::Failed {
                message: format!(
                    "writing into {target} failed part-way: {}; {}",
                    crate::error_chain(&e),
                    match &safety_backup {
                        Some(s) => format!(
                            "its previous state is in safety backup {s} (`pre-deploy restore {s} --source {} --yes`)",
                            self.source.name
                        ),
                        None => "it was empty before".to_owned(),
                    }
                ),
                target: TargetState::PartlyRestored,
            })?;
        let mut details = serde_json::Map::new();
        details.insert(
            "report".into(),
            serde_json::to_value(&report).unwrap_or_default(),
        );
        Ok((
            RestoreDone {
                summary: format!(
                    "{} object(s) written, {} already equal, {} in the target not in the backup (left alone)",
                    report.written, report.unchanged, report.extra_in_target
                ),
                notes: match &safety_backup {
                    Some(_) => report.notes.clone(),
                    None => std::iter::once("no safety backup: the target was empty".to_owned())
                        .chain(report.notes.iter().cloned())
                        .collect(),
                },
                details,
                ..RestoreDone::default()
            },
            safety_backup,
        ))
    }
}

/// Prints one step of a restore (stderr, through the log).
fn step(message: &str) {
    tracing::info!("restore: {message}");
}
