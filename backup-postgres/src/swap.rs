//! Restoring into a **new** database and swapping names: the PostgreSQL mechanics of
//! `pre-deploy restore`.
//!
//! The restored data goes into `<db>__predeploy_restore_<backup>` (a [`PendingDatabase`], dropped
//! unless the swap happens); the swap renames the target to `<db>__predeploy_before_<time>` and
//! the new database to `<db>` in **one transaction**, so there is never a moment (not even after
//! a `kill -9`) where the target name is missing or half-restored. [`PgAdmin::swap_back`] undoes
//! it the same way.

use std::collections::BTreeSet;
use std::path::PathBuf;

use backup_core::{Error, Result};

use crate::config::PgSourceConfig;
use crate::inspector::{PgInspector, quote_ident};
use crate::scratch::{cleanup_leftovers_with_prefix, drop_database, drop_database_blocking};

/// Marks the database a restore writes into: `<db>__predeploy_restore_<backup>`.
pub const RESTORE_MARK: &str = "__predeploy_restore_";
/// Marks the database a restore replaced, kept until the operator drops it:
/// `<db>__predeploy_before_<time>`.
pub const BEFORE_MARK: &str = "__predeploy_before_";
/// PostgreSQL truncates identifiers longer than this many bytes (`NAMEDATALEN - 1`).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The names one restore uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwapNames {
    /// The database being restored (its name does not change from the user's point of view).
    pub target: String,
    /// Where the backup is restored first.
    pub restoring: String,
    /// What the target is renamed to by the swap.
    pub before: String,
    /// Whether `<db>` had to be shortened to fit [`MAX_IDENTIFIER_BYTES`].
    pub truncated: bool,
}

impl SwapNames {
    /// Names for restoring into `target`: `backup_suffix` identifies the backup (e.g. its id),
    /// `before_suffix` the moment of the restore. Both are lower-cased, `-` becomes `_`, and the
    /// database part is shortened (on a character boundary) when a name would pass 63 bytes.
    pub fn new(target: &str, backup_suffix: &str, before_suffix: &str) -> Self {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let (b, t) = (clean(backup_suffix), clean(before_suffix));
        let mut truncated = false;
        let mut name = |mark: &str, suffix: &str| {
            let room = MAX_IDENTIFIER_BYTES.saturating_sub(mark.len() + suffix.len());
            let mut db = target;
            if db.len() > room {
                truncated = true;
                let mut end = room;
                while !db.is_char_boundary(end) {
                    end -= 1;
                }
                db = &db[..end];
            }
            format!("{db}{mark}{suffix}")
        };
        let restoring = name(RESTORE_MARK, &b);
        let before = name(BEFORE_MARK, &t);
        SwapNames {
            target: target.to_owned(),
            restoring,
            before,
            truncated,
        }
    }

    /// The prefix shared by every restore database of this target (for leftover cleanup).
    pub fn restoring_prefix(&self) -> &str {
        let end = self.restoring.rfind(RESTORE_MARK).unwrap_or(0) + RESTORE_MARK.len();
        &self.restoring[..end]
    }
}

/// What the server says about one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// Encoding, e.g. `UTF8`.
    pub encoding: String,
    /// `LC_COLLATE`.
    pub collate: String,
    /// `LC_CTYPE`.
    pub ctype: String,
    /// Owner role.
    pub owner: String,
    /// `pg_database_size`, in bytes.
    pub size: u64,
}

/// A connection to a server's maintenance database (`postgres`, else `template1`), for the
/// statements that cannot run inside the database they change.
#[derive(Debug)]
pub struct PgAdmin {
    inspector: PgInspector,
    config: PgSourceConfig,
}

impl PgAdmin {
    /// Connects to the maintenance database of `target`'s server, never to a database in
    /// `avoid` (a database that is connected to cannot be renamed).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when neither `postgres` nor `template1` accepts the
    /// connection.
    pub async fn connect(target: &PgSourceConfig, label: &str, avoid: &[&str]) -> Result<Self> {
        let mut last = None;
        for db in ["postgres", "template1"] {
            if avoid.contains(&db) {
                continue;
            }
            let config = target.with_dbname(db);
            match PgInspector::connect(&config, label).await {
                Ok(inspector) => return Ok(PgAdmin { inspector, config }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::SourceUnavailable {
            source_name: label.to_owned(),
            message: "no maintenance database (postgres, template1) to connect to".into(),
        }))
    }

    /// The connection settings of the maintenance database.
    pub fn config(&self) -> &PgSourceConfig {
        &self.config
    }

    /// The inspector of the maintenance connection.
    pub fn inspector(&self) -> &PgInspector {
        &self.inspector
    }

    /// The database `name`, if it exists.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn database(&self, name: &str) -> Result<Option<DatabaseInfo>> {
        let i = &self.inspector;
        let row = i
            .client
            .query_opt(
                "SELECT pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text,
                        pg_get_userbyid(d.datdba)::text, pg_database_size(d.oid)
                 FROM pg_database d WHERE d.datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| i.query_error("reading the target database", &e))?;
        Ok(row.map(|r| DatabaseInfo {
            encoding: r.get(0),
            collate: r.get(1),
            ctype: r.get(2),
            owner: r.get(3),
            size: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
        }))
    }

    /// Sessions connected to `name`, other than this one.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn other_connections(&self, name: &str) -> Result<u64> {
        let i = &self.inspector;
        let row = i
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .map_err(|e| i.query_error("counting connections", &e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// Extensions the server can install (`pg_available_extensions`).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn available_extensions(&self) -> Result<BTreeSet<String>> {
        self.inspector.available_extensions().await
    }

    /// The server's data directory, when the user may read it and it is on this machine.
    pub async fn local_data_directory(&self) -> Option<PathBuf> {
        self.inspector.local_data_directory().await
    }

    /// Drops restore databases of this target left by runs that died (see
    /// [`cleanup_leftovers`](crate::cleanup_leftovers)). Returns their names.
    ///
    /// # Errors
    ///
    /// When the server cannot be queried.
    pub async fn cleanup_restore_leftovers(&self, names: &SwapNames) -> Result<Vec<String>> {
        cleanup_leftovers_with_prefix(&self.config, names.restoring_prefix()).await
    }

    /// Creates the empty database `name` like `like` (encoding, locale, owner) or with the
    /// server's defaults, labelled as pre-deploy's (host, pid, time, `purpose`) so a run that
    /// dies leaves something the next one recognises. Dropped when the guard goes away unless
    /// [`PendingDatabase::keep`] is called.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the server refuses (the message names `CREATEDB`).
    pub async fn create_database(
        &self,
        name: &str,
        like: Option<&DatabaseInfo>,
        purpose: &str,
    ) -> Result<PendingDatabase> {
        let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
        if let Some(info) = like {
            sql.push_str(&format!(
                " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                quote_literal(&info.encoding),
                quote_literal(&info.collate),
                quote_literal(&info.ctype)
            ));
        }
        self.inspector
            .execute(&sql)
            .await
            .map_err(|message| Error::SourceUnavailable {
                source_name: self.inspector.source_name.clone(),
                message: format!(
                    "cannot create database {name} on {}: {message}; the user needs CREATEDB",
                    self.config.location()
                ),
            })?;
        let pending = PendingDatabase {
            admin: self.config.clone(),
            name: name.to_owned(),
            armed: true,
        };
        let label = serde_json::json!({
            "owner": "pre-deploy",
            "host": crate::scratch::host(),
            "pid": std::process::id(),
            "created_at": jiff::Timestamp::now().to_string(),
            "purpose": purpose,
        })
        .to_string();
        let comment = format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(name),
            quote_literal(&label)
        );
        if let Err(e) = self.inspector.execute(&comment).await {
            tracing::warn!("could not label database {name}: {e}");
        }
        if let Some(info) = like {
            let owner = format!(
                "ALTER DATABASE {} OWNER TO {}",
                quote_ident(name),
                quote_ident(&info.owner)
            );
            if let Err(e) = self.inspector.execute(&owner).await {
                tracing::warn!("could not give database {name} to {}: {e}", info.owner);
            }
        }
        Ok(pending)
    }

    /// Swaps names in one transaction: `target` → `before`, `restoring` → `target` (or only the
    /// second rename when the target did not exist). With `terminate`, other sessions on either
    /// database are terminated first; without it, connected sessions make it fail (nothing
    /// changes). Returns how many sessions were terminated.
    ///
    /// # Errors
    ///
    /// The server's message; the transaction is rolled back, so the names are as before.
    pub async fn swap(
        &self,
        names: &SwapNames,
        target_exists: bool,
        terminate: bool,
    ) -> Result<u64> {
        let mut sql = String::from("BEGIN;\n");
        if target_exists {
            sql.push_str(&format!(
                "ALTER DATABASE {} RENAME TO {};\n",
                quote_ident(&names.target),
                quote_ident(&names.before)
            ));
        }
        sql.push_str(&format!(
            "ALTER DATABASE {} RENAME TO {};\nCOMMIT;",
            quote_ident(&names.restoring),
            quote_ident(&names.target)
        ));
        if !terminate {
            self.run_swap(&sql, "swap").await?;
            return Ok(0);
        }
        // A connection pool reconnects as soon as its sessions are terminated, and a session on
        // either database makes the rename fail: new connections are refused from before the
        // sessions end until the names are swapped, then allowed again as they were.
        let mut blocked = vec![(names.restoring.clone(), names.target.clone())];
        if target_exists {
            blocked.push((names.target.clone(), names.before.clone()));
        }
        let before: Vec<(String, bool)> = self.block_connections(&blocked).await?;
        let swapped = match self.terminate(&[&names.target, &names.restoring]).await {
            Ok(n) => self.run_swap(&sql, "swap").await.map(|()| n),
            Err(e) => Err(e),
        };
        // Allow connections again under the names the databases have now.
        let now: Vec<(String, bool)> = before
            .into_iter()
            .zip(&blocked)
            .map(|((name, allowed), (_, renamed))| {
                (
                    if swapped.is_ok() {
                        renamed.clone()
                    } else {
                        name
                    },
                    allowed,
                )
            })
            .collect();
        self.allow_connections(&now).await;
        swapped
    }

    /// Refuses new connections to each `(name, _)` of `databases`; returns each name with
    /// whether it allowed connections before.
    async fn block_connections(
        &self,
        databases: &[(String, String)],
    ) -> Result<Vec<(String, bool)>> {
        let mut before = Vec::new();
        for (name, _) in databases {
            let allowed = match self.database(name).await? {
                Some(_) => self.allows_connections(name).await?,
                None => continue,
            };
            if let Err(message) = self
                .inspector
                .execute(&format!(
                    "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
                    quote_ident(name)
                ))
                .await
            {
                self.allow_connections(&before).await;
                return Err(Error::SourceUnavailable {
                    source_name: self.inspector.source_name.clone(),
                    message: format!("cannot refuse new connections to {name}: {message}"),
                });
            }
            before.push((name.clone(), allowed));
        }
        Ok(before)
    }

    async fn allows_connections(&self, name: &str) -> Result<bool> {
        let i = &self.inspector;
        let row = i
            .client
            .query_one(
                "SELECT datallowconn FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| i.query_error("reading datallowconn", &e))?;
        Ok(row.get(0))
    }

    /// Sets each database's `ALLOW_CONNECTIONS` back; failures are logged with the statement
    /// that fixes them by hand.
    async fn allow_connections(&self, databases: &[(String, bool)]) {
        for (name, allowed) in databases {
            let sql = format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allowed}",
                quote_ident(name)
            );
            if let Err(message) = self.inspector.execute(&sql).await {
                tracing::error!(
                    "could not allow connections to {name} again ({message}); run: {sql}"
                );
            }
        }
    }

    /// Undoes [`swap`](Self::swap) in one transaction: `target` → `restoring`, `before` →
    /// `target`; sessions on the restored database are terminated (it is being taken away).
    ///
    /// # Errors
    ///
    /// The server's message; nothing changed.
    pub async fn swap_back(&self, names: &SwapNames, target_existed: bool) -> Result<()> {
        let blocked = vec![(names.target.clone(), names.restoring.clone())];
        let before = self.block_connections(&blocked).await?;
        if let Err(e) = self.terminate(&[&names.target]).await {
            self.allow_connections(&before).await;
            return Err(e);
        }
        let mut sql = format!(
            "BEGIN;\nALTER DATABASE {} RENAME TO {};\n",
            quote_ident(&names.target),
            quote_ident(&names.restoring)
        );
        if target_existed {
            sql.push_str(&format!(
                "ALTER DATABASE {} RENAME TO {};\n",
                quote_ident(&names.before),
                quote_ident(&names.target)
            ));
        }
        sql.push_str("COMMIT;");
        let swapped = self.run_swap(&sql, "swap back").await;
        // The restored database, now under its work name, stays closed only if it was; the
        // previous database, back under the target's name, was never blocked.
        let now: Vec<(String, bool)> = before
            .into_iter()
            .map(|(name, allowed)| {
                (
                    if swapped.is_ok() {
                        names.restoring.clone()
                    } else {
                        name
                    },
                    allowed,
                )
            })
            .collect();
        self.allow_connections(&now).await;
        swapped
    }

    /// Drops `name` (`WITH (FORCE)`).
    ///
    /// # Errors
    ///
    /// The server's message.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        drop_database(&self.config, name).await
    }

    async fn terminate(&self, databases: &[&str]) -> Result<u64> {
        let i = &self.inspector;
        let names: Vec<String> = databases.iter().map(|s| (*s).to_owned()).collect();
        let row = i
            .client
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
                &[&names],
            )
            .await
            .map_err(|e| i.query_error("terminating connections", &e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn run_swap(&self, sql: &str, what: &str) -> Result<()> {
        if let Err(message) = self.inspector.execute(sql).await {
            // A failed statement leaves the transaction aborted: end it so the connection is
            // usable for what follows (dropping the new database, swapping back).
            let _ = self.inspector.execute("ROLLBACK").await;
            return Err(Error::SourceUnavailable {
                source_name: self.inspector.source_name.clone(),
                message: format!("the {what} failed: {message}"),
            });
        }
        Ok(())
    }
}

/// A database being restored into: dropped (`WITH (FORCE)`) when the guard goes away — a
/// failure, a panic, a cancelled future (SIGINT/SIGTERM) — unless [`keep`](Self::keep) was
/// called. After a `kill -9` it stays, labelled; the next restore of the same target drops it.
#[derive(Debug)]
pub struct PendingDatabase {
    admin: PgSourceConfig,
    name: String,
    armed: bool,
}

impl PendingDatabase {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings for it.
    pub fn config(&self) -> PgSourceConfig {
        self.admin.with_dbname(&self.name)
    }

    /// Disarms the guard: the database stays (it was swapped in).
    pub fn keep(mut self) {
        self.armed = false;
    }

    /// Drops it now.
    ///
    /// # Errors
    ///
    /// The server's message; the guard does not retry.
    pub async fn drop_now(mut self) -> Result<()> {
        self.armed = false;
        drop_database(&self.admin, &self.name).await
    }
}

impl Drop for PendingDatabase {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match drop_database_blocking(&self.admin, &self.name) {
            Ok(()) => tracing::info!("dropped the unfinished database {}", self.name),
            Err(e) => tracing::warn!(
                "could not drop the unfinished database {}: {e}; the next restore of this database drops it",
                self.name
            ),
        }
    }
}

/// A string literal for SQL (`'it''s'`).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognisable_and_fit_in_63_bytes() {
        let n = SwapNames::new("app", "20261122T031500Z-7f3a9c", "20261122T101500Z");
        assert_eq!(
            n.restoring,
            "app__predeploy_restore_20261122t031500z_7f3a9c"
        );
        assert_eq!(n.before, "app__predeploy_before_20261122t101500z");
        assert!(!n.truncated);
        assert_eq!(n.restoring_prefix(), "app__predeploy_restore_");

        let long = "ä".repeat(30); // 60 bytes
        let n = SwapNames::new(&long, "20261122T031500Z-7f3a9c", "20261122T101500Z");
        assert!(n.truncated);
        assert!(n.restoring.len() <= MAX_IDENTIFIER_BYTES, "{}", n.restoring);
        assert!(n.before.len() <= MAX_IDENTIFIER_BYTES, "{}", n.before);
        assert!(
            n.restoring
                .ends_with("__predeploy_restore_20261122t031500z_7f3a9c")
        );
        assert!(n.restoring_prefix().ends_with(RESTORE_MARK));
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
