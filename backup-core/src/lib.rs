//! # backup-core
//!
//! The vocabulary of pre-deploy: what a backup is ([`Manifest`], [`BackupId`], [`ArtifactMeta`],
//! [`Digest`], [`DeployInfo`]), the traits backends implement ([`Snapshotter`], [`Store`],
//! [`Verifier`], [`RetentionPolicy`], and [`Backend`] with its [`Registry`] that maps a source URL
//! to them), and the streaming artifact pipeline that moves a dump
//! through zstd and SHA-256 into a store with bounded memory.
//!
//! This crate names no backend: no database driver, no object store. Backends depend on it.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")] async fn main() -> backup_core::Result<()> {
//! use backup_core::testkit::MemoryStore;
//! use backup_core::{pipeline, PipelineConfig, StoreExt, Digest};
//!
//! let store = MemoryStore::new();
//! let dump: &[u8] = b"PGDMP pretend this is a pg_dump archive";
//! let stats = pipeline::write_artifact(&store, "backups/x/data/db/dump.pgc.zst", "db", dump,
//!     &PipelineConfig::default()).await?;
//! assert_eq!(stats.raw_size, dump.len() as u64);
//! let stored = store.get_all("backups/x/data/db/dump.pgc.zst").await?;
//! assert_eq!(Digest::of(&stored), stats.sha256);
//! # Ok(()) }
//! ```

mod backend;
mod clock;
mod digest;
pub mod disk;
pub mod docker;
pub mod encryption;
mod error;
pub mod hidden_stats;
pub mod hooks;
mod id;
pub mod layout;
pub mod lock;
mod manifest;
pub mod pipeline;
mod probe;
pub mod process;
pub mod progress;
pub mod reader;
mod redact;
mod restore;
pub mod retention;
pub mod runbook;
pub mod sealed_blobs;
mod snapshot;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tunnel;
mod verify;

pub use backend::{
    Backend, BackendSettings, BackendVerifiers, DynBackend, Registry, SourceSpec, parse_section,
};
pub use clock::{Clock, SystemClock};
pub use digest::{Digest, Sha256};
pub use error::{BoxError, Error, Result};
pub use id::{BackupId, SourceName};
pub use manifest::{
    ArtifactMeta, BackupKind, DeployInfo, MANIFEST_FORMAT_VERSION, Manifest, SourceManifest,
    SourceStats, TableStat, ToolInfo,
};
pub use pipeline::{ArtifactStats, DEFAULT_ZSTD_LEVEL, PipelineConfig};
pub use probe::{error_chain, probe_store};
pub use redact::redact_url;
pub use restore::{
    PlannedRestore, RestoreContext, RestoreDone, RestoreError, RestoreSetup, RestoreSummary,
    Restorer, SafetyNet, TargetState,
};
pub use retention::{
    BackupSummary, BudgetViolation, DeletionBudget, DeployedRelease, DeploymentRole, KeepAll,
    KeepPolicy, KeepRules, Period, RetentionAction, RetentionDecision, RetentionPlan,
    RetentionPolicy,
};
pub use snapshot::{
    ArtifactSpec, ChangeProof, DynSnapshotter, PreflightReport, SnapshotContext, Snapshotter,
};
pub use store::{
    ByteStream, DynStore, MAX_DOCUMENT_SIZE, ObjectInfo, Store, StoreCapabilities, StoreExt,
    WriteMode,
};
pub use verify::{
    DynVerifier, Finding, FindingStatus, LevelTiming, VerificationLevel, VerificationRecord,
    VerificationReport, Verifier,
};
