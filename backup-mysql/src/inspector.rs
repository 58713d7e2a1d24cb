//! [`MysqlInspector`]: our own connection to the source — version, size, tables, the global
//! read lock, a consistent snapshot, and exact row counts read in it.

use std::time::{Duration, Instant};

use backup_core::{Error, Result, TableStat};
use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Row};

use crate::config::MysqlSourceConfig;

/// MySQL's "access denied; you need (at least one of) the … privilege" error.
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;
/// `ER_LOCK_WAIT_TIMEOUT`.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// The binary log position of a snapshot, when the server keeps a binary log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinlogPosition {
    /// `SHOW MASTER STATUS` (`SHOW BINARY LOG STATUS` on MySQL 8.4+) file.
    pub file: Option<String>,
    /// `SHOW MASTER STATUS` position.
    pub position: Option<u64>,
    /// The GTID set / position (`@@gtid_binlog_pos` on MariaDB, `@@gtid_executed` on MySQL).
    pub gtid: Option<String>,
}

/// One table of the database: its name and storage engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The table's name.
    pub name: String,
    /// Its storage engine (`InnoDB`, `MyISAM`, …).
    pub engine: String,
}

/// A connection to one MySQL/MariaDB database.
#[derive(Debug)]
pub struct MysqlInspector {
    conn: Conn,
    source_name: String,
    location: String,
    database: String,
}

/// A value quoted as a MySQL identifier: `` `a``b` ``.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl MysqlInspector {
    /// Connects to `config`'s database.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the server cannot be reached, refuses the credentials
    /// or has no such database (the message shows the location, never the password).
    pub async fn connect(config: &MysqlSourceConfig, source_name: &str) -> Result<Self> {
        config.open_tunnel(source_name).await?;
        let conn =
            Conn::new(config.connect_opts()?)
                .await
                .map_err(|e| Error::SourceUnavailable {
                    source_name: source_name.to_owned(),
                    message: format!(
                        "cannot connect to {}: {e}{}",
                        config.location(),
                        config.connect_hint(&e)
                    ),
                })?;
        Ok(MysqlInspector {
            conn,
            source_name: source_name.to_owned(),
            location: config.location(),
            database: config.database.clone(),
        })
    }

    fn failed(&self, what: &str, e: &mysql_async::Error) -> Error {
        Error::SourceUnavailable {
            source_name: self.source_name.clone(),
            message: format!("{what} on {}: {e}", self.location),
        }
    }

    /// `VERSION()`, e.g. `10.11.19-MariaDB-0+deb12u1-log`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn server_version(&mut self) -> Result<String> {
        let v: Option<String> = self
            .conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| self.failed("reading the server version", &e))?;
        Ok(v.unwrap_or_default())
    }

    /// Data plus index bytes of the database's tables (an estimate of the dump's size).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn estimated_size(&mut self) -> Result<u64> {
        let v: Option<Option<u64>> = self
            .conn
            .query_first(
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS UNSIGNED) \
                 FROM information_schema.TABLES WHERE table_schema = DATABASE()",
            )
            .await
            .map_err(|e| self.failed("estimating the database size", &e))?;
        Ok(v.flatten().unwrap_or(0))
    }

    /// The database's base tables (not views), by name.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn base_tables(&mut self) -> Result<Vec<TableInfo>> {
        let rows: Vec<(String, Option<String>)> = self
            .conn
            .query(
                "SELECT table_name, engine FROM information_schema.TABLES \
                 WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
            )
            .await
            .map_err(|e| self.failed("listing the tables", &e))?;
        Ok(rows
            .into_iter()
            .filter(|(name, _)| !name.starts_with(crate::schema::MARKER_PREFIX))
            .map(|(name, engine)| TableInfo {
                name,
                engine: engine.unwrap_or_default(),
            })
            .collect())
    }

    /// Whether the user holds the global RELOAD and PROCESS privileges (from `SHOW GRANTS`),
    /// which exact row counts in the dump's snapshot need.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn global_privileges(&mut self) -> Result<(bool, bool)> {
        let grants: Vec<String> = self
            .conn
            .query("SHOW GRANTS")
            .await
            .map_err(|e| self.failed("reading the user's privileges", &e))?;
        Ok(global_privileges(&grants))
    }

    /// `FLUSH TABLES WITH READ LOCK`, waited for at most `wait`: `Ok(Err(why))` when it is not
    /// held (the user lacks the RELOAD privilege, or a running statement kept it from being
    /// granted in time).
    ///
    /// While the lock is requested, every write of the application queues behind it, so the
    /// wait is short: a busy server gets a backup with counts taken after the dump rather than
    /// a stall.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] for any other failure.
    pub async fn lock_for_snapshot(
        &mut self,
        wait: Duration,
    ) -> Result<std::result::Result<(), &'static str>> {
        let _ = self
            .conn
            .query_drop(format!(
                "SET SESSION lock_wait_timeout = {}",
                wait.as_secs().max(1)
            ))
            .await;
        match self.conn.query_drop("FLUSH TABLES WITH READ LOCK").await {
            Ok(()) => Ok(Ok(())),
            Err(mysql_async::Error::Server(e)) if e.code == ER_SPECIFIC_ACCESS_DENIED => Ok(Err(
                "the backup user lacks the RELOAD privilege, so writes could not be paused while the snapshots opened",
            )),
            Err(mysql_async::Error::Server(e)) if e.code == ER_LOCK_WAIT_TIMEOUT => Ok(Err(
                "a running statement kept the global read lock from being granted in time (writes are never held back longer)",
            )),
            Err(e) => Err(self.failed("FLUSH TABLES WITH READ LOCK", &e)),
        }
    }

    /// `UNLOCK TABLES`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when it fails.
    pub async fn unlock(&mut self) -> Result<()> {
        self.conn
            .query_drop("UNLOCK TABLES")
            .await
            .map_err(|e| self.failed("UNLOCK TABLES", &e))
    }

    /// Opens our REPEATABLE READ transaction with a consistent snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when it fails.
    pub async fn start_snapshot(&mut self) -> Result<()> {
        self.conn
            .query_drop(
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                 START TRANSACTION WITH CONSISTENT SNAPSHOT",
            )
            .await
            .map_err(|e| self.failed("starting a consistent snapshot", &e))
    }

    /// Ends our transaction.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when it fails.
    pub async fn end_snapshot(&mut self) -> Result<()> {
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| self.failed("ending the snapshot", &e))
    }

    /// The binary log position and GTID state; empty parts when there is no binary log or the
    /// user may not read it.
    pub async fn binlog_position(&mut self, mariadb: bool) -> BinlogPosition {
        let mut pos = BinlogPosition::default();
        // MySQL 8.4 renamed the statement; MariaDB and older MySQL know the first.
        for sql in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
            match self.conn.query_first::<Row, _>(sql).await {
                Ok(Some(row)) => {
                    pos.file = row
                        .get_opt::<String, _>(0)
                        .and_then(std::result::Result::ok);
                    pos.position = row.get_opt::<u64, _>(1).and_then(std::result::Result::ok);
                    break;
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let gtid = if mariadb {
            "SELECT @@GLOBAL.gtid_binlog_pos"
        } else {
            "SELECT @@GLOBAL.gtid_executed"
        };
        if let Ok(Some(Some(g))) = self.conn.query_first::<Option<String>, _>(gtid).await {
            pos.gtid = Some(g).filter(|g| !g.is_empty());
        }
        pos
    }

    /// The highest connection id now on the server (the dump tool's connection comes after).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn max_connection_id(&mut self) -> Result<u64> {
        let v: Option<u64> = self
            .conn
            .query_first(
                "SELECT CAST(COALESCE(MAX(ID), 0) AS UNSIGNED) FROM information_schema.PROCESSLIST",
            )
            .await
            .map_err(|e| self.failed("reading the process list", &e))?;
        Ok(v.unwrap_or(0))
    }

    /// Whether a connection of our user opened after `after_id` has an InnoDB transaction
    /// (`None`: we may not see `INNODB_TRX`, which needs the PROCESS privilege).
    async fn new_transaction_seen(&mut self, after_id: u64) -> Option<bool> {
        let seen: Option<u64> = self
            .conn
            .exec_first(
                "SELECT CAST(COUNT(*) AS UNSIGNED) FROM information_schema.INNODB_TRX t \
                 JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
                 WHERE p.ID > ? AND p.ID <> CONNECTION_ID() \
                 AND p.USER = SUBSTRING_INDEX(USER(), '@', 1)",
                (after_id,),
            )
            .await
            .ok()?;
        Some(seen.unwrap_or(0) > 0)
    }

    /// Waits until the dump tool's connection (a connection of our user opened after
    /// `after_id`) has opened its transaction, or `finished` says the dump ended, or
    /// `timeout` passed. Returns how the wait ended.
    pub async fn wait_for_dump_transaction(
        &mut self,
        after_id: u64,
        finished: &tokio::sync::watch::Receiver<bool>,
        timeout: Duration,
    ) -> DumpStart {
        let started = Instant::now();
        loop {
            match self.new_transaction_seen(after_id).await {
                Some(true) => return DumpStart::TransactionSeen,
                None => return DumpStart::CannotWatch,
                Some(false) => {}
            }
            if *finished.borrow() {
                return DumpStart::FinishedUnderLock;
            }
            if started.elapsed() >= timeout {
                return DumpStart::TimedOut;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Exact row counts of `tables`, read in our transaction.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when a count fails.
    pub async fn row_counts(&mut self, tables: &[TableInfo]) -> Result<Vec<TableStat>> {
        let mut out = Vec::with_capacity(tables.len());
        for t in tables {
            let sql = format!(
                "SELECT CAST(COUNT(*) AS UNSIGNED) FROM {}.{}",
                quote_ident(&self.database),
                quote_ident(&t.name)
            );
            let rows: Option<u64> = self
                .conn
                .query_first(sql)
                .await
                .map_err(|e| self.failed(&format!("counting the rows of {}", t.name), &e))?;
            out.push(TableStat {
                schema: self.database.clone(),
                name: t.name.clone(),
                rows: rows.unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// The schema listing of the database (see [`crate::MysqlSchemaListing`]); the events named
    /// in `disabled_events` are listed as enabled (a scratch copy creates them disabled).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when a query fails.
    pub async fn schema_listing(
        &mut self,
        disabled_events: &[String],
    ) -> Result<crate::MysqlSchemaListing> {
        let db = self.database.clone();
        match crate::schema::read_listing(&mut self.conn, &db, disabled_events).await {
            Ok(l) => Ok(l),
            Err(e) => Err(self.failed("reading the schema", &e)),
        }
    }

    /// Runs one statement.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when it fails.
    pub async fn execute(&mut self, sql: &str) -> Result<()> {
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed("a statement", &e)),
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

/// RELOAD and PROCESS among `SHOW GRANTS` lines on `*.*`.
fn global_privileges(grants: &[String]) -> (bool, bool) {
    let mut reload = false;
    let mut process = false;
    for g in grants {
        let Some((privileges, rest)) = g.split_once(" ON ") else {
            continue;
        };
        if !rest.trim_start().starts_with("*.*") {
            continue;
        }
        let all = privileges.contains("ALL PRIVILEGES");
        reload |= all || privileges.contains("RELOAD");
        process |= all || privileges.contains("PROCESS");
    }
    (reload, process)
}

/// How the wait for the dump tool's transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpStart {
    /// Its transaction was seen while our lock was held.
    TransactionSeen,
    /// The dump finished before its transaction was seen, so it ran wholly under our lock.
    FinishedUnderLock,
    /// `INNODB_TRX` is not readable (no PROCESS privilege).
    CannotWatch,
    /// Neither happened in time.
    TimedOut,
}

impl DumpStart {
    /// Whether our snapshot and the dump's are known to show the same data.
    pub fn same_snapshot(self) -> bool {
        matches!(
            self,
            DumpStart::TransactionSeen | DumpStart::FinishedUnderLock
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_privileges_are_read_from_the_grants() {
        let g = |lines: &[&str]| {
            global_privileges(&lines.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(g(&["GRANT ALL PRIVILEGES ON *.* TO `a`@`%`"]), (true, true));
        assert_eq!(
            g(&[
                "GRANT RELOAD, PROCESS ON *.* TO `a`@`%`",
                "GRANT SELECT ON `db`.* TO `a`@`%`"
            ]),
            (true, true)
        );
        assert_eq!(
            g(&["GRANT ALL PRIVILEGES ON `db`.* TO `a`@`%`"]),
            (false, false)
        );
        assert_eq!(g(&["GRANT USAGE ON *.* TO `a`@`%`"]), (false, false));
    }
}
