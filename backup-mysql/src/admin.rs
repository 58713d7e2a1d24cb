//! [`MysqlAdmin`]: a connection to a server with no default database, for pre-deploy's work
//! databases (scratch copies of level 4, the new and the kept databases of a restore): created
//! with a recognisable name and a label table saying who made them, dropped when done (also
//! when the work fails, panics or is cancelled: [`WorkDatabase`]'s `Drop`), and dropped by the
//! next run when a crash left one behind. Also replays a stored dump into a database through
//! the `mariadb`/`mysql` client, streamed from the store.

use std::process::Stdio;
use std::time::Duration;

use backup_core::{ArtifactMeta, Error, Result, Store};
use backup_verify::{Consumer, read_pass};
use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Row};
use tokio::io::AsyncWriteExt as _;

use crate::config::MysqlSourceConfig;
use crate::inspector::quote_ident;
use crate::replay_filter::{FilteredWriter, ReplayFilter};

/// Marks a level-4 scratch database: `<db>__predeploy_verify_<short id>`.
pub const VERIFY_MARK: &str = "__predeploy_verify_";
/// Marks the database a restore writes into: `<db>__predeploy_restore_<backup>`.
pub const RESTORE_MARK: &str = "__predeploy_restore_";
/// Marks the database holding the tables a restore replaced: `<db>__predeploy_before_<time>`.
pub const BEFORE_MARK: &str = "__predeploy_before_";
/// The label table of a work database (left out of counts and schema listings).
pub const LABEL_TABLE: &str = "__predeploy_label";
/// MySQL and MariaDB database names have at most 64 characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Work databases of dead runs on other hosts are dropped after this long.
const FOREIGN_LEFTOVER_AGE: Duration = Duration::from_secs(6 * 3600);

/// Environment variables of the client library that could redirect a tool elsewhere.
pub(crate) const CLEARED_ENV: &[&str] = &[
    "MYSQL_PWD",
    "MYSQL_HOST",
    "MYSQL_TCP_PORT",
    "MYSQL_UNIX_PORT",
];

/// `<db><mark><suffix>`, the database part shortened (on a character boundary) to fit
/// [`MAX_NAME_CHARS`]; the suffix is lower-cased with anything but `[a-z0-9]` made `_`.
/// Returns the name and whether `db` was shortened.
pub fn work_name(db: &str, mark: &str, suffix: &str) -> (String, bool) {
    let suffix: String = suffix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let room = MAX_NAME_CHARS.saturating_sub(mark.chars().count() + suffix.chars().count());
    let kept: String = db.chars().take(room).collect();
    let truncated = kept.len() < db.len();
    (format!("{kept}{mark}{suffix}"), truncated)
}

/// A connection to a server, outside any database.
#[derive(Debug)]
pub struct MysqlAdmin {
    conn: Conn,
    config: MysqlSourceConfig,
    label: String,
}

impl MysqlAdmin {
    /// Connects to `config`'s server (its database need not exist).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the server cannot be reached or refuses the user.
    pub async fn connect(config: &MysqlSourceConfig, label: &str) -> Result<Self> {
        config.open_tunnel(label).await?;
        let conn =
            Conn::new(config.server_opts()?)
                .await
                .map_err(|e| Error::SourceUnavailable {
                    source_name: label.to_owned(),
                    message: format!(
                        "cannot connect to {}: {e}{}",
                        config.location(),
                        config.connect_hint(&e)
                    ),
                })?;
        Ok(MysqlAdmin {
            conn,
            config: config.clone(),
            label: label.to_owned(),
        })
    }

    /// The server's connection settings (with the configured database).
    pub fn config(&self) -> &MysqlSourceConfig {
        &self.config
    }

    fn failed(&self, what: &str, e: &mysql_async::Error) -> Error {
        Error::SourceUnavailable {
            source_name: self.label.clone(),
            message: format!("{what} on {}: {e}", self.config.location()),
        }
    }

    /// Runs statements.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] with `what` and the server's message.
    pub async fn execute(&mut self, what: &str, sql: &str) -> Result<()> {
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(what, &e)),
        }
    }

    /// Rows of a query with one parameter.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] with `what` and the server's message.
    pub async fn rows(&mut self, what: &str, sql: &str, param: &str) -> Result<Vec<Row>> {
        match self.conn.exec(sql, (param,)).await {
            Ok(r) => Ok(r),
            Err(e) => Err(self.failed(what, &e)),
        }
    }

    /// `VERSION()`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn server_version(&mut self) -> Result<String> {
        match self.conn.query_first::<String, _>("SELECT VERSION()").await {
            Ok(v) => Ok(v.unwrap_or_default()),
            Err(e) => Err(self.failed("reading the server version", &e)),
        }
    }

    /// Why a work database of a dump of `raw_size` bytes would not fit, if the server's data
    /// directory is on this machine and has less than twice that free (InnoDB tables with
    /// their indexes take about twice the dump); `None` when it fits or cannot be told.
    pub async fn space_problem(&mut self, raw_size: u64) -> Option<String> {
        let dir: String = self
            .conn
            .query_first("SELECT @@datadir")
            .await
            .ok()
            .flatten()?;
        let dir = std::path::PathBuf::from(dir);
        if !dir.is_dir() {
            return None;
        }
        let free = backup_core::disk::free_bytes(&dir)?;
        let needed = raw_size.saturating_mul(2);
        (free < needed).then(|| {
            format!(
                "about {} needed for the work database, {} free under {}",
                backup_core::disk::human_bytes(needed),
                backup_core::disk::human_bytes(free),
                dir.display()
            )
        })
    }

    /// Whether database `name` exists.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn database_exists(&mut self, name: &str) -> Result<bool> {
        let found: Option<String> = match self
            .conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (name,),
            )
            .await
        {
            Ok(f) => f,
            Err(e) => return Err(self.failed("looking for a database", &e)),
        };
        Ok(found.is_some())
    }

    /// Data plus index bytes of database `name`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the query fails.
    pub async fn database_size(&mut self, name: &str) -> Result<u64> {
        let v: Option<Option<u64>> = match self
            .conn
            .exec_first(
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS UNSIGNED) \
                 FROM information_schema.TABLES WHERE table_schema = ?",
                (name,),
            )
            .await
        {
            Ok(v) => v,
            Err(e) => return Err(self.failed("measuring a database", &e)),
        };
        Ok(v.flatten().unwrap_or(0))
    }

    /// Other sessions whose default database is `name`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the process list cannot be read.
    pub async fn sessions_on(&mut self, name: &str) -> Result<Vec<u64>> {
        match self
            .conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
                (name,),
            )
            .await
        {
            Ok(ids) => Ok(ids),
            Err(e) => Err(self.failed("reading the process list", &e)),
        }
    }

    /// Ends the other sessions whose default database is `name`; returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the process list cannot be read.
    pub async fn terminate_sessions(&mut self, name: &str) -> Result<u64> {
        let ids = self.sessions_on(name).await?;
        let mut n = 0;
        for id in ids {
            if self.conn.query_drop(format!("KILL {id}")).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Creates database `name` with `charset`/`collation` and labels it with `purpose`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the user may not create databases or it exists.
    pub async fn create_work_database(
        &mut self,
        name: &str,
        charset: Option<&(String, String)>,
        purpose: &str,
    ) -> Result<WorkDatabase> {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
        if let Some((cs, coll)) = charset {
            sql.push_str(&format!(
                " CHARACTER SET {} COLLATE {}",
                quote_ident(cs),
                quote_ident(coll)
            ));
        }
        self.execute(&format!("creating database {name}"), &sql)
            .await
            .map_err(|e| Error::SourceUnavailable {
                source_name: self.label.clone(),
                message: format!(
                    "{e}; grant the user CREATE and DROP on `{}%` databases or use another server",
                    name.split("__predeploy_").next().unwrap_or(name)
                ),
            })?;
        let guard = WorkDatabase {
            config: self.config.clone(),
            name: name.to_owned(),
            armed: true,
        };
        let label = serde_json::json!({
            "owner": "pre-deploy",
            "host": host(),
            "pid": std::process::id(),
            "created_at": jiff::Timestamp::now().to_string(),
            "purpose": purpose,
        })
        .to_string();
        let sql = format!(
            "CREATE TABLE {db}.{t} (info TEXT NOT NULL); INSERT INTO {db}.{t} VALUES ('{}')",
            label.replace('\\', "\\\\").replace('\'', "''"),
            db = quote_ident(name),
            t = quote_ident(LABEL_TABLE)
        );
        if let Err(e) = self.execute("labelling a work database", &sql).await {
            tracing::warn!("could not label database {name}: {e}");
        }
        Ok(guard)
    }

    /// `DROP DATABASE IF EXISTS name`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the server refuses.
    pub async fn drop_database(&mut self, name: &str) -> Result<()> {
        self.execute(
            &format!("dropping database {name}"),
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(name)),
        )
        .await
    }

    /// Drops work databases whose name contains `mark` (and starts with `prefix`) left by runs
    /// that died: those of this host whose process is gone, those of other hosts older than six
    /// hours, and unlabelled ones (killed between `CREATE DATABASE` and the label). Returns the
    /// names dropped.
    ///
    /// # Errors
    ///
    /// When the server cannot be queried.
    pub async fn cleanup_leftovers(&mut self, prefix: &str, mark: &str) -> Result<Vec<String>> {
        let pattern = format!("{}%{}%", like_escape(prefix), like_escape(mark));
        let names: Vec<String> = match self
            .conn
            .exec(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?",
                (pattern,),
            )
            .await
        {
            Ok(n) => n,
            Err(e) => return Err(self.failed("listing databases", &e)),
        };
        let me = host();
        let now = jiff::Timestamp::now();
        let mut dropped = Vec::new();
        for name in names {
            let sql = format!(
                "SELECT info FROM {}.{} LIMIT 1",
                quote_ident(&name),
                quote_ident(LABEL_TABLE)
            );
            let label: Option<String> = self.conn.query_first(sql).await.ok().flatten();
            let info: serde_json::Value = label
                .as_deref()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_default();
            let pid = info["pid"].as_u64();
            let same_host = info["host"].as_str() == Some(me.as_str());
            let created: Option<jiff::Timestamp> =
                info["created_at"].as_str().and_then(|t| t.parse().ok());
            let stale = match (same_host, pid) {
                _ if label.is_none() => true,
                (true, Some(pid)) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                _ => created.is_none_or(|c| {
                    now.duration_since(c).as_secs() > FOREIGN_LEFTOVER_AGE.as_secs() as i64
                }),
            };
            if stale && self.drop_database(&name).await.is_ok() {
                tracing::info!("dropped database {name} left by an earlier run");
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A work database; dropped when this value goes away unless [`WorkDatabase::keep`] was called.
#[derive(Debug)]
pub struct WorkDatabase {
    config: MysqlSourceConfig,
    name: String,
    armed: bool,
}

impl WorkDatabase {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings for it.
    pub fn config(&self) -> MysqlSourceConfig {
        self.config.with_database(&self.name)
    }

    /// Keeps it (it now holds something the operator needs).
    pub fn keep(mut self) {
        self.armed = false;
    }

    /// Drops it now.
    ///
    /// # Errors
    ///
    /// When the server refuses; the guard does not retry.
    pub async fn drop_now(mut self) -> Result<()> {
        self.armed = false;
        let mut admin = MysqlAdmin::connect(&self.config, "work database").await?;
        let r = admin.drop_database(&self.name).await;
        admin.close().await;
        r
    }
}

impl Drop for WorkDatabase {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Async work cannot run in `Drop`: drop it from a thread of its own.
        let (config, name) = (self.config.clone(), self.name.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("runtime for dropping a database", e))?;
            rt.block_on(async {
                let mut admin = MysqlAdmin::connect(&config, "work database").await?;
                let r = admin.drop_database(&name).await;
                admin.close().await;
                r
            })
        });
        if let Ok(Err(e)) = handle.join() {
            tracing::warn!(
                "could not drop database {}: {e}; the next run drops it",
                self.name
            );
        }
    }
}

/// This machine's host name.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Replays the stored dump `artifact` into `target`'s database with the command-line client
/// `client`, streamed: decompressed from the store straight into the client's stdin. Fails
/// unless the stored bytes are the recorded ones (sha256), they decompress, and the client
/// exits with status 0. The dump passes through `filter` on its way (see [`ReplayFilter`]: no
/// statement of the dump may act on the source database); the filter is returned to say what
/// it rewrote.
///
/// # Errors
///
/// A message saying what failed (the client's own error text included).
pub async fn replay_dump(
    store: &dyn Store,
    artifact: &ArtifactMeta,
    client: &std::path::Path,
    target: &MysqlSourceConfig,
    filter: ReplayFilter,
) -> std::result::Result<ReplayFilter, String> {
    let option_file = target.write_option_file().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(client);
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    cmd.arg(format!(
        "--defaults-extra-file={}",
        option_file.path().display()
    ))
    .arg(format!("--database={}", target.database))
    .args([
        "--batch",
        "--binary-mode",
        "--default-character-set=utf8mb4",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", client.display()))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| "the client has no stdin".to_owned())?;
    let mut filtered = FilteredWriter::new(stdin, filter);
    let (pass, output) = tokio::join!(
        async {
            let r = read_pass(store, artifact, true, Consumer::Writer(&mut filtered)).await;
            let _ = filtered.shutdown().await;
            let filter = filtered.into_filter();
            r.map(|pass| (pass, filter))
        },
        child.wait_with_output()
    );
    drop(option_file);
    let output = output.map_err(|e| format!("waiting for {}: {e}", client.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let (pass, filter) = pass.map_err(|e| e.to_string())?;
    if pass.missing {
        return Err(format!("{} is missing from the store", artifact.key));
    }
    if pass.sha256.as_ref() != Some(&artifact.sha256) || pass.stored_size != artifact.stored_size {
        return Err(format!(
            "{} does not match its recorded checksum",
            artifact.key
        ));
    }
    if let Some(e) = pass.decompress_error {
        return Err(format!("{} does not decompress: {e}", artifact.key));
    }
    if !output.status.success() {
        let tool = client
            .file_name()
            .map_or_else(|| "the client".into(), |n| n.to_string_lossy());
        return Err(match output.status.code() {
            Some(code) => format!("{tool} exited with status {code}: {stderr}"),
            None => format!("{tool} was killed ({}): {stderr}", output.status),
        });
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_names_fit_64_characters() {
        assert_eq!(
            work_name("shop", VERIFY_MARK, "A1-b2").0,
            "shop__predeploy_verify_a1_b2"
        );
        let long = "é".repeat(60);
        let (name, truncated) = work_name(&long, RESTORE_MARK, "20261122t031500z_7f3a9c");
        assert!(truncated);
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
        assert!(name.ends_with("__predeploy_restore_20261122t031500z_7f3a9c"));
        assert_eq!(like_escape("a_b%"), "a\\_b\\%");
    }
}
