//! Scratch databases for test restores: created with a recognisable name and a comment saying
//! who owns them, dropped when done — also when verification fails, panics or is cancelled
//! (the guard's `Drop`) — and cleaned up by the next run when a crash left one behind.

use std::time::Duration;

use backup_core::{Error, Result};

use crate::config::PgSourceConfig;
use crate::inspector::{PgInspector, quote_ident};

/// Every scratch database's name starts with this.
pub const SCRATCH_PREFIX: &str = "predeploy_scratch_";

/// Scratch databases of dead runs on other hosts are dropped after this long.
const FOREIGN_LEFTOVER_AGE: Duration = Duration::from_secs(6 * 3600);

/// A scratch database on a server; dropped when this value goes away.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: PgSourceConfig,
    name: String,
    dropped: bool,
}

impl ScratchDatabase {
    /// Creates an empty UTF-8 scratch database on `admin`'s server (connecting to `admin`'s
    /// database to do so).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the server is unreachable or the user may not create
    /// databases (the message says to grant `CREATEDB` or use another restore server).
    pub async fn create(admin: &PgSourceConfig, label: &str) -> Result<Self> {
        let inspector = PgInspector::connect(admin, label).await?;
        let mut suffix = [0u8; 3];
        let _ = getrandom::fill(&mut suffix);
        let name = format!(
            "{SCRATCH_PREFIX}{}_{}",
            std::process::id(),
            hex::encode(suffix)
        );
        let comment = serde_json::json!({
            "owner": "pre-deploy",
            "host": crate::scratch::host(),
            "pid": std::process::id(),
            "created_at": jiff::Timestamp::now().to_string(),
            "purpose": label,
        })
        .to_string();
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'",
            quote_ident(&name)
        );
        inspector.execute(&sql).await.map_err(|message| Error::SourceUnavailable {
            source_name: label.to_owned(),
            message: format!(
                "cannot create a scratch database on {}: {message}; grant the user CREATEDB or point --verify-restore-url at a server where it may",
                admin.location()
            ),
        })?;
        let scratch = ScratchDatabase {
            admin: admin.clone(),
            name,
            dropped: false,
        };
        let comment_sql = format!(
            "COMMENT ON DATABASE {} IS '{}'",
            quote_ident(&scratch.name),
            comment.replace('\'', "''")
        );
        if let Err(e) = inspector.execute(&comment_sql).await {
            tracing::warn!("could not label scratch database {}: {e}", scratch.name);
        }
        Ok(scratch)
    }

    /// The scratch database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings for the scratch database.
    pub fn config(&self) -> PgSourceConfig {
        self.admin.with_dbname(&self.name)
    }

    /// Drops the database now.
    ///
    /// # Errors
    ///
    /// When the server refuses; the guard does not retry.
    pub async fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        drop_database(&self.admin, &self.name).await
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        if let Err(e) = drop_database_blocking(&self.admin, &self.name) {
            tracing::warn!(
                "could not drop scratch database {}: {e}; the next run drops it",
                self.name
            );
        }
    }
}

/// Drops `name` synchronously on a thread of its own (async work cannot run in `Drop`), bounded
/// by the connection timeout. For guards that were cancelled or failed before an async drop.
pub(crate) fn drop_database_blocking(admin: &PgSourceConfig, name: &str) -> Result<()> {
    let (admin, owned) = (admin.clone(), name.to_owned());
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match rt {
            Ok(rt) => rt.block_on(drop_database(&admin, &owned)),
            Err(e) => Err(Error::io("runtime for dropping a database", e)),
        }
    });
    handle.join().unwrap_or_else(|_| {
        Err(Error::SourceUnavailable {
            source_name: "scratch".into(),
            message: format!("dropping database {name} panicked"),
        })
    })
}

pub(crate) async fn drop_database(admin: &PgSourceConfig, name: &str) -> Result<()> {
    let inspector = PgInspector::connect(admin, "scratch").await?;
    inspector
        .execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await
        .map_err(|message| Error::SourceUnavailable {
            source_name: "scratch".into(),
            message: format!("cannot drop database {name}: {message}"),
        })
}

/// Drops scratch databases left by runs that died: those of this host whose process is gone,
/// and those of other hosts older than six hours. Returns the names dropped.
///
/// # Errors
///
/// When the server cannot be queried.
pub async fn cleanup_leftovers(admin: &PgSourceConfig) -> Result<Vec<String>> {
    cleanup_leftovers_with_prefix(admin, SCRATCH_PREFIX).await
}

/// [`cleanup_leftovers`] for databases whose name starts with `prefix` and whose comment is a
/// pre-deploy label (host, pid, creation time) or missing (killed before it was labelled).
pub(crate) async fn cleanup_leftovers_with_prefix(
    admin: &PgSourceConfig,
    prefix: &str,
) -> Result<Vec<String>> {
    let inspector = PgInspector::connect(admin, "scratch").await?;
    let rows = inspector.scratch_databases(prefix).await?;
    let me = host();
    let now = jiff::Timestamp::now();
    let mut dropped = Vec::new();
    for (name, comment) in rows {
        let info: serde_json::Value = comment
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let pid = info["pid"].as_u64();
        let same_host = info["host"].as_str() == Some(me.as_str());
        let created: Option<jiff::Timestamp> =
            info["created_at"].as_str().and_then(|t| t.parse().ok());
        let stale = match (same_host, pid) {
            // No label at all under our reserved prefix: its creator died between CREATE
            // DATABASE and the COMMENT that labels it (two statements: CREATE DATABASE cannot
            // run in a transaction). Nobody else names databases this way.
            _ if comment.is_none() => true,
            (true, Some(pid)) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            _ if info["owner"].as_str() != Some("pre-deploy") && prefix != SCRATCH_PREFIX => false,
            _ => created.is_none_or(|c| {
                now.duration_since(c).as_secs() > FOREIGN_LEFTOVER_AGE.as_secs() as i64
            }),
        };
        if stale && drop_database(admin, &name).await.is_ok() {
            tracing::info!("dropped database {name} left by an earlier run");
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// This machine's host name.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}
