//! # backup-verify
//!
//! The verification ladder as [`Verifier`](backup_core::Verifier)s. [`ArchiveVerifier`] covers
//! levels 1–3 in one read of each artifact: the stored bytes' sha256 and size, zstd decompression
//! to the end (frame checksums), and for pg_dump archives a full read by `pg_restore` plus its
//! table of contents checked against the tables counted at backup time. [`BucketVerifier`]
//! checks bucket and directory sources: the index, and every blob it references. Findings are data; an
//! `Err` only means verification could not run.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")] async fn main() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::{SystemClock, VerificationLevel, testkit::MemoryStore, StoreExt};
//! # let store = MemoryStore::new();
//! # let manifest: backup_core::Manifest = serde_json::from_value(serde_json::json!({
//! #   "format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "manual", "environment": "default",
//! #   "created_at": "2026-11-22T03:15:00Z", "finished_at": "2026-11-22T03:15:00Z",
//! #   "tool": {"name": "pre-deploy", "version": "0"}, "host": "h", "sources": []})).unwrap();
//! let verifiers: Vec<backup_core::DynVerifier> = vec![Arc::new(backup_verify::ArchiveVerifier::default())];
//! let record = backup_verify::verify_backup(&store, &manifest, &verifiers,
//!     VerificationLevel::Checksum, VerificationLevel::Checksum, &SystemClock, "host").await?;
//! assert!(record.passed || record.report.findings.is_empty());
//! # Ok(()) }
//! ```

mod archive;
mod artifact;
mod bucket;
mod compare;
mod local;
mod record;
mod restore;

pub use archive::ArchiveVerifier;
pub use artifact::{Consumer, PassResult, read_pass, stream_prefix};
pub use bucket::{BucketVerifier, DEFAULT_VERIFY_CONCURRENCY};
pub use compare::{Privileges, count_differences, recorded_listing, restored_findings};
pub use record::verify_backup;
pub use restore::{
    MAX_JOBS_ON_SOURCE, RestoreTargets, StagedArchive, stage_archive, staging_space_problem,
    toc_extensions, toc_finding,
};
