//! [`MysqlSnapshotter`]: a consistent, streamed backup of one MySQL or MariaDB database, with
//! exact row counts that describe the dumped data.

use std::time::Duration;

use async_trait::async_trait;
use backup_core::{
    ArtifactSpec, Error, PreflightReport, Result, SnapshotContext, Snapshotter, SourceManifest,
    SourceName, SourceStats,
};
use serde_json::{Map, Value, json};
use tokio::process::Command;

use crate::config::MysqlSourceConfig;
use crate::inspector::{BinlogPosition, DumpStart, MysqlInspector, TableInfo};
use crate::process::spawn_dump;
use crate::tools::{Flavour, MysqlTools, find_tools};

/// The kind recorded in the manifest for MySQL and MariaDB sources.
pub const SOURCE_KIND: &str = "mysql";
/// File name of the dump within the source's directory.
pub const DUMP_FILE: &str = "dump.sql.zst";
/// File name of the schema listing within the source's directory.
pub const SCHEMA_FILE: &str = "schema.txt.zst";
/// Format name of the schema listing ([`crate::MysqlSchemaListing::to_text`]).
pub const SCHEMA_FORMAT: &str = "mysql-schema-listing-v1";
/// Format name of a `mysqldump`/`mariadb-dump` SQL dump.
pub const DUMP_FORMAT: &str = "mysqldump-sql";
/// `extra.counts` when the row counts were read in a snapshot taken at the dump's point in
/// time (level 3 then compares them exactly with the dump's rows).
pub const COUNTS_DUMP_SNAPSHOT: &str = "dump-snapshot";
/// `extra.counts` when the row counts were read right after the dump and may differ from it.
pub const COUNTS_AFTER_DUMP: &str = "after-dump";

/// The zstd level of the dump unless the operator chose one: on mysqldump's SQL text zstd's
/// level 1 takes about half the CPU of level 3 for output within 2 % of its size (smaller where
/// `--hex-blob` writes hashes or binary data), and the dump shares the machine's cores with the
/// dump tool and the server (benches/REPORT.mysql.md).
pub const DUMP_ZSTD_LEVEL: i32 = 1;
/// The longest we hold the global read lock waiting for the dump to open its transaction.
const LOCK_WAIT: Duration = Duration::from_secs(20);
/// How long `FLUSH TABLES WITH READ LOCK` may wait for running statements: the application's
/// writes queue behind it meanwhile.
const READ_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Environment variables of the client library that could redirect the tool elsewhere.
const CLEARED_ENV: &[&str] = &[
    "MYSQL_PWD",
    "MYSQL_HOST",
    "MYSQL_TCP_PORT",
    "MYSQL_UNIX_PORT",
];

/// Backs up one MySQL/MariaDB database with `mariadb-dump`/`mysqldump --single-transaction`.
///
/// See the crate docs for how the row counts are made to describe the dumped data.
#[derive(Debug, Clone)]
pub struct MysqlSnapshotter {
    name: SourceName,
    config: MysqlSourceConfig,
}

/// The dump tool's arguments after `--defaults-extra-file` (pure, for tests and the docs).
///
/// For MySQL servers `--set-gtid-purged=OFF` keeps the dump restorable into any server (with
/// GTIDs on, mysqldump would otherwise write `SET @@GLOBAL.GTID_PURGED`, which a server with
/// GTIDs of its own refuses); the position is in the manifest instead.
pub fn dump_args(flavour: Flavour, database: &str) -> Vec<String> {
    let mysql_only: &[&str] = match flavour {
        Flavour::MySql => &["--set-gtid-purged=OFF"],
        Flavour::MariaDb => &[],
    };
    [
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--skip-dump-date",
        "--quick",
    ]
    .iter()
    .chain(mysql_only)
    .map(|s| (*s).to_owned())
    .chain([database.to_owned()])
    .collect()
}

impl MysqlSnapshotter {
    /// A snapshotter for `config`'s database, recorded under `name`.
    pub fn new(name: SourceName, config: MysqlSourceConfig) -> Self {
        MysqlSnapshotter { name, config }
    }

    /// A snapshotter from a `mysql://` or `mariadb://` URL.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a malformed URL.
    pub fn from_url(name: SourceName, url: &str) -> Result<Self> {
        Ok(Self::new(name, MysqlSourceConfig::from_url(url)?))
    }

    /// The connection settings.
    pub fn config(&self) -> &MysqlSourceConfig {
        &self.config
    }

    async fn connect(&self) -> Result<(MysqlInspector, String, Flavour, MysqlTools)> {
        let mut inspector = MysqlInspector::connect(&self.config, self.name.as_str()).await?;
        let version = inspector.server_version().await?;
        let flavour = Flavour::of_version(&version);
        let tools = find_tools(flavour, self.config.bin_dir.as_deref(), self.name.as_str()).await?;
        Ok((inspector, version, flavour, tools))
    }

    fn failed(&self, message: String) -> Error {
        Error::SnapshotFailed {
            source_name: self.name.to_string(),
            message,
        }
    }
}

#[async_trait]
impl Snapshotter for MysqlSnapshotter {
    fn source_name(&self) -> &SourceName {
        &self.name
    }

    fn kind(&self) -> &'static str {
        SOURCE_KIND
    }

    fn location(&self) -> String {
        self.config.location()
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let (mut inspector, version, flavour, tools) = self.connect().await?;
        let size = inspector.estimated_size().await?;
        let (reload, process) = inspector.global_privileges().await?;
        inspector.close().await;
        let mut notes = Vec::new();
        if !(reload && process) {
            notes.push(format!(
                "the backup user lacks the {} privilege: row counts will be taken right after the dump and may differ from it if the database is written meanwhile (GRANT RELOAD, PROCESS ON *.* for exact counts)",
                match (reload, process) {
                    (false, false) => "RELOAD and PROCESS",
                    (false, true) => "RELOAD",
                    _ => "PROCESS",
                }
            ));
        }
        Ok(PreflightReport {
            server_version: Some(format!("{} {version}", flavour.name())),
            tool: Some(format!("{} ({})", tools.version, tools.dump.display())),
            estimated_bytes: Some(size),
            notes,
        })
    }

    async fn snapshot(&self, ctx: SnapshotContext<'_>) -> Result<SourceManifest> {
        let (mut inspector, version, flavour, tools) = self.connect().await?;

        // Both our snapshot and the dump's are opened while writes are blocked by the global
        // read lock, so both see the same data; see the crate docs.
        let lock = inspector.lock_for_snapshot(READ_LOCK_WAIT).await?;
        let locked = lock.is_ok();
        inspector.start_snapshot().await?;
        let position = inspector.binlog_position(flavour == Flavour::MariaDb).await;
        let tables = inspector.base_tables().await?;
        let watch_from = if locked {
            Some(inspector.max_connection_id().await?)
        } else {
            None
        };

        let option_file = self.config.write_option_file()?;
        let mut cmd = Command::new(&tools.dump);
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        cmd.arg(format!(
            "--defaults-extra-file={}",
            option_file.path().display()
        ));
        cmd.args(dump_args(flavour, &self.config.database));
        let tool = flavour.dump_tool();
        let reader = spawn_dump(tool, cmd)
            .map_err(|e| self.failed(format!("cannot start {}: {e}", tools.dump.display())))?;
        let spec = ArtifactSpec {
            source: &self.name,
            file: DUMP_FILE,
            format: DUMP_FORMAT,
        };

        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let dump = async {
            let r = ctx.write_artifact_at(spec, DUMP_ZSTD_LEVEL, reader).await;
            let _ = done_tx.send(true);
            r
        };
        let counts = async {
            // The schema is read while the global read lock still holds DDL back (it was
            // taken before the dump started), so it describes the dumped schema.
            let listing = inspector.schema_listing(&[]).await?;
            let start = match watch_from {
                Some(after) => {
                    let start = inspector
                        .wait_for_dump_transaction(after, &done_rx, LOCK_WAIT)
                        .await;
                    inspector.unlock().await?;
                    Some(start)
                }
                None => None,
            };
            let stats = inspector.row_counts(&tables).await?;
            Ok::<_, Error>((start, stats, listing))
        };
        let (dump, counts) = tokio::join!(dump, counts);
        drop(option_file);
        let dump = dump?;
        let (start, stats, listing) = counts?;
        let _ = inspector.end_snapshot().await;
        inspector.close().await;

        // The listing behind the fingerprint, so a failed comparison can name what differs.
        let spec = ArtifactSpec {
            source: &self.name,
            file: SCHEMA_FILE,
            format: SCHEMA_FORMAT,
        };
        let schema = ctx
            .write_artifact(spec, std::io::Cursor::new(listing.to_text().into_bytes()))
            .await?;
        let (notes, mut extra) = describe(flavour, start, lock.err(), &tables, &position);
        if let Some((charset, collation)) = listing.charset() {
            extra.insert("default_charset".into(), json!(charset));
            extra.insert("default_collation".into(), json!(collation));
        }
        Ok(SourceManifest {
            name: self.name.clone(),
            kind: SOURCE_KIND.to_owned(),
            location: self.location(),
            server_version: Some(format!("{} {version}", flavour.name())),
            tool_version: Some(tools.version.clone()),
            artifacts: vec![dump, schema],
            stats: SourceStats {
                tables: stats,
                object_counts: listing.object_counts(),
                schema_fingerprint: Some(listing.fingerprint()),
                ..SourceStats::default()
            },
            notes,
            extra,
        })
    }
}

/// The manifest's notes and `extra` fields: which consistency was reached, the flavour, and
/// the binary log position.
fn describe(
    flavour: Flavour,
    start: Option<DumpStart>,
    not_locked: Option<&str>,
    tables: &[TableInfo],
    position: &BinlogPosition,
) -> (Vec<String>, Map<String, Value>) {
    let mut notes = Vec::new();
    let same = start.is_some_and(DumpStart::same_snapshot);
    let counts = if same {
        notes.push("row counts are from the dump's snapshot (both opened under FLUSH TABLES WITH READ LOCK)".to_owned());
        COUNTS_DUMP_SNAPSHOT
    } else {
        let why = match start {
            None => not_locked.unwrap_or("the global read lock was not taken"),
            Some(DumpStart::CannotWatch) => {
                "the backup user lacks the PROCESS privilege, so the dump's transaction could not be seen under the read lock"
            }
            Some(_) => "the dump's transaction was not seen under the read lock in time",
        };
        notes.push(format!("row counts were taken right after the dump started and may differ from the dumped data if the database was written meanwhile: {why}"));
        COUNTS_AFTER_DUMP
    };
    let non_transactional: Vec<&str> = tables
        .iter()
        .filter(|t| !t.engine.eq_ignore_ascii_case("InnoDB"))
        .map(|t| t.name.as_str())
        .collect();
    if !non_transactional.is_empty() {
        notes.push(format!(
            "tables without transactions ({}) may have changed during the dump: --single-transaction covers InnoDB only",
            non_transactional.join(", ")
        ));
    }
    let mut extra = Map::new();
    extra.insert("flavour".into(), json!(flavour.name()));
    extra.insert("counts".into(), json!(counts));
    if !same {
        // Read in our snapshot, which is not the dump's: it would mislead a point-in-time
        // recovery.
        return (notes, extra);
    }
    if let Some(file) = &position.file {
        extra.insert("binlog_file".into(), json!(file));
    }
    if let Some(pos) = position.position {
        extra.insert("binlog_position".into(), json!(pos));
    }
    if let Some(gtid) = &position.gtid {
        extra.insert("gtid".into(), json!(gtid));
    }
    (notes, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, engine: &str) -> TableInfo {
        TableInfo {
            name: name.to_owned(),
            engine: engine.to_owned(),
        }
    }

    #[test]
    fn the_manifest_says_which_guarantee_was_reached() {
        let position = BinlogPosition {
            file: Some("binlog.000001".into()),
            position: Some(42),
            gtid: Some("0-1-5".into()),
        };
        let tables = [table("a", "InnoDB"), table("m", "MyISAM")];
        let (notes, extra) = describe(
            Flavour::MariaDb,
            Some(DumpStart::TransactionSeen),
            None,
            &tables,
            &position,
        );
        assert_eq!(extra["counts"], COUNTS_DUMP_SNAPSHOT);
        assert_eq!(extra["gtid"], "0-1-5");
        assert_eq!(extra["binlog_position"], 42);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("m") && n.contains("InnoDB only"))
        );
        for (start, not_locked, why) in [
            (None, Some("lacks the RELOAD privilege"), "RELOAD"),
            (None, Some("kept the global read lock"), "global read lock"),
            (Some(DumpStart::CannotWatch), None, "PROCESS"),
            (Some(DumpStart::TimedOut), None, "in time"),
        ] {
            let (notes, extra) =
                describe(Flavour::MySql, start, not_locked, &tables[..1], &position);
            assert_eq!(extra["counts"], COUNTS_AFTER_DUMP);
            assert_eq!(extra["flavour"], "MySQL");
            assert!(extra.get("gtid").is_none());
            assert!(
                notes[0].contains("may differ") && notes[0].contains(why),
                "{notes:?}"
            );
        }
    }

    #[test]
    fn the_dump_arguments_make_a_restorable_consistent_dump() {
        for flavour in [Flavour::MariaDb, Flavour::MySql] {
            let args = dump_args(flavour, "shop");
            for a in [
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
            ] {
                assert!(args.iter().any(|x| x == a), "{a}");
            }
            assert_eq!(args.last().map(String::as_str), Some("shop"));
            let gtid = args.iter().any(|a| a == "--set-gtid-purged=OFF");
            assert_eq!(gtid, flavour == Flavour::MySql);
        }
    }
}
