//! # backup-verify
//!
//! The generic rungs of the verification ladder and the runner that composes format verifiers:
//! [`verify_backup`] runs every [`Verifier`](backup_core::Verifier) given, and checks levels 1–2
//! (stored bytes' sha256 and size, zstd decompression to the end with frame checksums) of every
//! artifact no verifier claims. Format verifiers (PostgreSQL's archives live in
//! `backup-postgres`) build on [`read_pass`], [`pass_findings`] and [`stage_archive`] so that
//! levels 1–3 still take one read of the store. Findings are data; an `Err` only means
//! verification could not run.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")] async fn main() -> backup_core::Result<()> {
//! use backup_core::{ArtifactSpec, BackupId, PipelineConfig, SnapshotContext, SourceManifest,
//!     SourceName, SystemClock, VerificationLevel, testkit::MemoryStore};
//!
//! // A source of a kind no verifier knows stores one artifact through the pipeline…
//! let store = MemoryStore::new();
//! let id: BackupId = "20261122T031500Z-7f3a9c".parse()?;
//! let name: SourceName = "notes".parse()?;
//! let ctx = SnapshotContext { store: &store, backup_id: &id, environment: "default",
//!     pipeline: &PipelineConfig::default() };
//! let spec = ArtifactSpec { source: &name, file: "notes.txt.zst", format: "text" };
//! let artifact = ctx.write_artifact(spec, &b"hello"[..]).await?;
//! let mut manifest: backup_core::Manifest = serde_json::from_value(serde_json::json!({
//!   "format_version": 1, "id": id, "kind": "manual", "environment": "default",
//!   "created_at": "2026-11-22T03:15:00Z", "finished_at": "2026-11-22T03:15:00Z",
//!   "tool": {"name": "pre-deploy", "version": "0"}, "host": "h", "sources": []})).unwrap();
//! manifest.sources.push(SourceManifest { name, kind: "notes".into(), location: "-".into(),
//!     server_version: None, tool_version: None, artifacts: vec![artifact.clone()],
//!     stats: Default::default(), notes: vec![], extra: Default::default() });
//!
//! // …and still gets levels 1–2 with no verifier given.
//! let verify = || backup_verify::verify_backup(&store, &manifest, &[],
//!     VerificationLevel::Decompress, VerificationLevel::Decompress, &SystemClock, "host");
//! assert!(verify().await?.passed);
//! store.tamper(&artifact.key, |bytes| bytes[0] ^= 1);
//! assert!(!verify().await?.passed);
//! # Ok(()) }
//! ```

mod artifact;
mod findings;
mod record;
mod small;
mod staging;
#[cfg(test)]
mod test_support;

pub use artifact::{Consumer, PassResult, read_pass, stream_prefix};
pub use findings::{finding, generic_findings, pass_findings};
pub use record::verify_backup;
pub use small::{count_differences, read_small_text, reveal_stats};
pub use staging::{
    StagedArchive, is_plain_file_name, stage_archive, stage_archive_dir, staging_space_problem,
    staging_space_problem_for,
};
