//! [`BucketBackend`]: buckets (`s3://`) and directories (`file://`, absolute paths) as a
//! [`Backend`] of the gate.

use std::sync::Arc;

use backup_core::{Backend, BackendVerifiers, DynSnapshotter, Error, Result, SourceSpec};

use crate::S3Settings;
use crate::bucket::{
    BucketLocation, BucketSnapshotter, BucketSource, BucketVerifier, ObjectRestorer,
};

/// Bucket and directory sources, with the S3 settings and concurrency they start from.
#[derive(Debug, Clone)]
pub struct BucketBackend {
    /// The base S3 settings of bucket sources (`[s3]` overridden by `AWS_*`); a source URL's
    /// query overrides them.
    pub s3: S3Settings,
    /// Objects read or written at once.
    pub concurrency: usize,
    /// Whether the verification right after a backup reads and hashes blobs reused unchanged
    /// from the previous backup too (`[buckets] verify_reused`); else it checks their presence
    /// and size. `verify` always reads every blob.
    pub verify_reused: bool,
}

impl Default for BucketBackend {
    fn default() -> Self {
        BucketBackend {
            s3: S3Settings::from_env(),
            concurrency: crate::bucket::DEFAULT_CONCURRENCY,
            verify_reused: false,
        }
    }
}

impl Backend for BucketBackend {
    fn name(&self) -> &'static str {
        "bucket and directory"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["s3://", "file://", "an absolute directory path"]
    }

    fn kinds(&self) -> &'static [&'static str] {
        &["bucket", "directory"]
    }

    fn accepts(&self, url: &str) -> bool {
        BucketLocation::is_bucket_url(url)
    }

    fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter> {
        let invalid = |e: Error| Error::Invalid {
            what: "source",
            value: spec.name.to_string(),
            reason: e.to_string(),
        };
        let location = BucketLocation::parse(&spec.url).map_err(invalid)?;
        let source = BucketSource::open(location, &self.s3).map_err(invalid)?;
        Ok(Arc::new(
            BucketSnapshotter::new(spec.name.clone(), source).with_concurrency(self.concurrency),
        ))
    }

    fn verifiers(&self, _sources: &[SourceSpec]) -> Result<BackendVerifiers> {
        let after_backup = if self.verify_reused {
            BucketVerifier::default()
        } else {
            BucketVerifier::after_backup()
        };
        Ok(BackendVerifiers {
            after_backup: vec![Arc::new(after_backup)],
            reverify: vec![Arc::new(BucketVerifier::default())],
        })
    }

    fn restorer(&self) -> Option<Arc<dyn backup_core::Restorer>> {
        Some(Arc::new(ObjectRestorer {
            s3: self.s3.clone(),
            concurrency: self.concurrency,
        }))
    }

    fn runbook_steps(
        &self,
        source: &backup_core::SourceManifest,
        ctx: &backup_core::runbook::RunbookContext<'_>,
    ) -> Vec<backup_core::runbook::RunbookStep> {
        crate::bucket::runbook::runbook_steps(source, ctx)
    }
}
