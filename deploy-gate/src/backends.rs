//! The kinds of source this build knows: the one place where the gate names its backends.
//! Everything else reaches them through [`Registry`].

use std::sync::Arc;

use backup_core::Registry;
use backup_objectstore::bucket::BucketBackend;
use backup_postgres::PostgresBackend;

use crate::config::Settings;

/// The backends of the command line, configured from `settings`: PostgreSQL, then buckets and
/// directories.
pub fn registry(settings: &Settings) -> Registry {
    Registry::new()
        .with(Arc::new(PostgresBackend {
            bin_dir: settings.pg_bin_dir.clone(),
            verify_restore_url: settings.verify_restore_url.clone(),
            verify_jobs: settings.verify_jobs,
            verify_temp_dir: settings.verify_temp_dir.clone(),
            archive_only: false,
        }))
        .with(Arc::new(BucketBackend {
            s3: settings.s3.clone(),
            concurrency: settings.bucket_concurrency,
            verify_reused: settings.bucket_verify_reused,
        }))
}

/// The backends with their defaults (tools discovered on `PATH`, test restores into each
/// source's own server with two jobs, S3 settings from `AWS_*`): what [`crate::Gate::builder`]
/// starts from.
pub fn default_registry() -> Registry {
    Registry::new()
        .with(Arc::new(PostgresBackend {
            verify_jobs: 2,
            ..PostgresBackend::default()
        }))
        .with(Arc::new(BucketBackend::default()))
}
