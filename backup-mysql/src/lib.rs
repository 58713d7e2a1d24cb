//! # backup-mysql
//!
//! MySQL and MariaDB for pre-deploy: [`MysqlSnapshotter`] streams a `mariadb-dump` (MariaDB
//! servers) or `mysqldump` (MySQL servers) SQL dump, taken with `--single-transaction`, through
//! the core pipeline and records exact per-table row counts and a schema fingerprint
//! ([`MysqlSchemaListing`]); [`MysqlArchiveVerifier`] proves the stored dump complete (level 3)
//! and, with [`MysqlRestoreTargets`], restores it into a scratch database and compares it
//! (level 4); [`MysqlRestorer`] puts a backup back with a safety net (restore into a new
//! database, compare, one atomic `RENAME TABLE` swap, swap back on failure; see its module
//! docs and [`swap`]); [`MysqlBackend`] registers them for `mysql://` and `mariadb://` URLs
//! under the one source kind `mysql` (the flavour is in the manifest's `server_version` and
//! `extra.flavour`).
//!
//! ## Credentials
//!
//! Settings come from the URL (`mysql://user:pass@host:3306/db`, `?socket=/path` optional);
//! without a password in the URL the tools read `~/.my.cnf` as usual, and so does our own
//! connection (its `[client]` group). The dump tool gets the password through a
//! `--defaults-extra-file` written with mode 0600 and removed afterwards — never on its argv,
//! which every user of the machine can read. Messages show URLs redacted.
//!
//! `?via=ssh://…` reaches a server behind a jump host; `?via=docker://NAME` and
//! `?via=docker-compose://PROJECT/SERVICE` one in a container whose port is not published,
//! at the container's address ([`backup_core::docker`]), for every connection and tool alike.
//!
//! ## Row counts that describe the dump
//!
//! MySQL has no exported snapshot (PostgreSQL's `pg_export_snapshot`): two connections see the
//! same data only if both open their consistent snapshots while nothing is written. So, when
//! the backup user has the RELOAD privilege:
//!
//! 1. our connection takes `FLUSH TABLES WITH READ LOCK` (writes wait, reads go on),
//! 2. opens `START TRANSACTION WITH CONSISTENT SNAPSHOT`, reads the binary log position and
//!    GTID state and the table list,
//! 3. starts the dump tool, which opens its own `--single-transaction` snapshot,
//! 4. waits until `information_schema.INNODB_TRX` shows a transaction on a connection of the
//!    same user opened after step 2 (the dump's), or the dump has ended while the lock was
//!    still held — either way both snapshots were opened with writes blocked,
//! 5. `UNLOCK TABLES` (writes resume; the lock is held for milliseconds), then counts every
//!    table with `COUNT(*)` inside its snapshot while the dump streams.
//!
//! The manifest then says `extra.counts = "dump-snapshot"`, records the binary log file,
//! position and GTID state read under the lock (`extra.binlog_file`, `extra.binlog_position`,
//! `extra.gtid`), and level 3 requires the dump's `INSERT` rows to equal the counts exactly.
//! Step 4 recognises the dump's connection by its user and by being newer than the lock; an
//! application connection of the same user that opens a transaction in those milliseconds could
//! release the lock early — the exact comparison of level 3 then refuses the backup, so a wrong
//! count can never pass unnoticed. Without RELOAD (or without PROCESS, which
//! `INNODB_TRX` needs, or when the dump's transaction is not seen within 20 s), the counts are
//! taken in a snapshot of our own right after the dump starts: `extra.counts = "after-dump"`,
//! a note says they may differ if the database was written meanwhile, and level 3 only checks
//! that every counted table is in the dump, with data where rows were counted; no binary log
//! position is recorded, as none is tied to the dump's snapshot. Tables of
//! non-transactional engines (MyISAM, Aria) are named in a note: no snapshot covers them.
//!
//! ## Failures
//!
//! A dump tool that exits non-zero, is killed, writes nothing, or ends without its
//! `-- Dump completed` trailer fails the read of its stdout, so the pipeline aborts the upload
//! and [`backup_core::Error::SnapshotFailed`] is returned before anything is committed.
//!
//! ```no_run
//! # async fn demo(store: &dyn backup_core::Store) -> backup_core::Result<()> {
//! use backup_core::{BackupId, PipelineConfig, SnapshotContext, Snapshotter};
//! use backup_mysql::MysqlSnapshotter;
//!
//! let db = MysqlSnapshotter::from_url("db".parse()?, "mariadb://app@localhost/app")?;
//! db.preflight().await?;
//! let id = BackupId::new(jiff::Timestamp::now());
//! let source = db.snapshot(SnapshotContext { store, backup_id: &id, environment: "default", pipeline: &PipelineConfig::default() }).await?;
//! println!("{} tables, {} bytes", source.stats.tables.len(), source.stored_size());
//! # Ok(()) }
//! ```

mod admin;
mod backend;
mod compare;
mod config;
mod inspector;
pub mod process;
pub mod replay_filter;
pub mod restore;
mod runbook;
pub mod scan;
mod schema;
mod snapshotter;
pub mod swap;
mod tools;
mod verifier;

pub use admin::{
    BEFORE_MARK, LABEL_TABLE, MAX_NAME_CHARS, MysqlAdmin, RESTORE_MARK, VERIFY_MARK, WorkDatabase,
    replay_dump, work_name,
};
pub use backend::{BIN_DIR_ENV, MysqlBackend, MysqlSection};
pub use compare::{count_differences, recorded_listing, restored_findings};
pub use config::{DEFAULT_PORT, MysqlSourceConfig};
pub use inspector::{BinlogPosition, DumpStart, MysqlInspector, TableInfo, quote_ident};
pub use restore::{MysqlRestorer, MysqlSwapNames, PlannedMysqlRestore};
pub use schema::{FINGERPRINT_V1, MARKER_PREFIX, MysqlSchemaListing, SchemaEntry, read_listing};
pub use snapshotter::{
    COUNTS_AFTER_DUMP, COUNTS_DUMP_SNAPSHOT, DUMP_FILE, DUMP_FORMAT, MysqlSnapshotter, SCHEMA_FILE,
    SCHEMA_FORMAT, SOURCE_KIND, dump_args,
};
pub use tools::{Flavour, MysqlTools, find_client, find_tools};
pub use verifier::{MysqlArchiveVerifier, MysqlRestoreTargets};
