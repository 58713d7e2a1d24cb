//! [`PgRestorer`]: restores a pg_dump archive file into a database with `pg_restore`.

use std::path::Path;

use tokio::process::Command;

use crate::command::{CLEARED_ENV, connection_env};
use crate::config::PgSourceConfig;
use crate::tools::PgTools;

/// Options of a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Parallel jobs (`pg_restore -j`); needs a seekable archive file.
    pub jobs: u32,
    /// Skip ownership and privilege commands (for restores onto a server that may lack the
    /// source's roles, such as a verification scratch server).
    pub without_owners_and_privileges: bool,
}

/// Runs `pg_restore` against a target database.
#[derive(Debug, Clone)]
pub struct PgRestorer {
    tools: PgTools,
}

impl PgRestorer {
    /// A restorer using these client tools.
    pub fn new(tools: PgTools) -> Self {
        PgRestorer { tools }
    }

    /// Restores `archive` (a seekable custom-format file) into `target`'s database, stopping at
    /// the first error (`--exit-on-error`).
    ///
    /// # Errors
    ///
    /// A message with pg_restore's last lines of output (or why it could not start).
    pub async fn restore_file(
        &self,
        archive: &Path,
        target: &PgSourceConfig,
        options: &RestoreOptions,
    ) -> std::result::Result<(), String> {
        let mut cmd = Command::new(self.tools.pg_restore());
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(connection_env(target))
            .arg("--exit-on-error")
            .arg("--no-password")
            .arg(format!("--jobs={}", options.jobs.max(1)))
            .arg(format!("--dbname={}", target.dbname));
        if options.without_owners_and_privileges {
            cmd.args(["--no-owner", "--no-privileges"]);
        }
        cmd.arg(archive)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("cannot start pg_restore: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
        Err(format!("pg_restore failed ({}): {tail}", out.status))
    }

    /// The tools in use.
    pub fn tools(&self) -> &PgTools {
        &self.tools
    }
}
