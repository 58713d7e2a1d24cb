//! # backup-postgres
//!
//! PostgreSQL for pre-deploy: [`PgSnapshotter`] streams `pg_dump` custom-format archives (or,
//! for a parallel dump, each file of a directory-format archive: [`DumpArchive`]) through
//! the core pipeline, in a snapshot exported by its own connection so that the exact row counts
//! and schema fingerprint it records describe exactly the dumped data; [`PgInspector`] reads
//! versions, privileges and statistics; [`find_tools`] picks the newest client tools that can
//! handle the server.
//!
//! Connection settings come from a `postgres://` URL and the standard `PG*` variables
//! ([`PgSourceConfig`]); the password reaches the tools through their environment only.
//!
//! ```no_run
//! # async fn demo(store: &dyn backup_core::Store) -> backup_core::Result<()> {
//! use backup_core::{BackupId, PipelineConfig, SnapshotContext, Snapshotter};
//! use backup_postgres::PgSnapshotter;
//!
//! let pg = PgSnapshotter::from_url("db".parse()?, "postgres://app@localhost/app")?;
//! pg.preflight().await?;
//! let id = BackupId::new(jiff::Timestamp::now());
//! let source = pg.snapshot(SnapshotContext { store, backup_id: &id, environment: "default", pipeline: &PipelineConfig::default() }).await?;
//! println!("{} tables, {} bytes", source.stats.tables.len(), source.stored_size());
//! # Ok(()) }
//! ```

mod backend;
mod catalog;
mod client_key;
pub mod command;
mod config;
mod dump_archive;
/// `via=docker://…` containers (shared with other backends).
pub use backup_core::docker;
#[cfg(test)]
mod fuzz_tests;
mod inspector;
mod local_cluster;
mod parallel_dump;
/// Running dump tools (shared with other backends).
pub use backup_core::process;
mod restore;
mod restorer;
mod runbook;
mod schema;
mod scratch;
mod snapshotter;
mod swap;
pub mod tls;
mod tools;
mod unchanged;
pub mod verify;

pub use backend::{BIN_DIR_ENV, LOCAL_SCRATCH, PostgresBackend, PostgresSection, SOURCE_SCRATCH};
pub use config::{Env, PgSourceConfig, ProcessEnv, Secret, redact_url};
pub use dump_archive::{DIR_FORMAT, DIR_PREFIX, DumpArchive, TOC_FILE, dir_artifact_name};
pub use inspector::{PgInspector, quote_ident};
pub use local_cluster::LocalCluster;
pub use restore::{DatabaseRestorer, PlannedDatabaseRestore};
pub use restorer::{FailedStatement, PgRestorer, RestoreOptions, failed_statements};
pub use schema::{FINGERPRINT_V2, SEQUENCE_VALUE, SchemaEntry, SchemaListing, Section};
pub use scratch::{SCRATCH_PREFIX, ScratchDatabase, cleanup_leftovers};
pub use snapshotter::{
    DUMP_FILE, DUMP_FORMAT, GLOBALS_FILE, GLOBALS_FORMAT, PgSnapshotter, SCHEMA_FILE,
    SCHEMA_FORMAT, SOURCE_KIND,
};
pub use swap::{
    BEFORE_MARK, DatabaseInfo, MAX_IDENTIFIER_BYTES, PendingDatabase, PgAdmin, RESTORE_MARK,
    SwapNames, quote_literal,
};
pub use tools::{PgTools, find_tools, installed_tools, parse_major, select_tools};
pub use unchanged::{CHANGE_MARK_FIELD, ChangeMark};
