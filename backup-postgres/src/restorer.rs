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
    /// Go on past failed statements and name every one in the error (for test restores, where
    /// an operator rehearsing an upgrade needs the whole list); `false` stops at the first error
    /// (`--exit-on-error`, for real restores).
    pub continue_past_errors: bool,
}

/// Runs `pg_restore` against a target database.
#[derive(Debug, Clone)]
pub struct PgRestorer {
    tools: PgTools,
}

/// Whether a `pg_restore` run with `jobs` parallel jobs that failed with `error` should run
/// again with one job, in a fresh database: parallel jobs can deadlock each other on their own
/// (attaching the indexes of nested partitions, seen with PostgreSQL 15), which says nothing
/// about the archive. Callers log [`DEADLOCK_RETRY`].
pub fn retry_with_one_job(jobs: u32, error: &str) -> bool {
    jobs > 1 && error.contains("deadlock detected")
}

/// What a restore that retries after [`retry_with_one_job`] says.
pub const DEADLOCK_RETRY: &str =
    "parallel pg_restore jobs deadlocked each other; restoring again with one job";

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
        cmd.envs(connection_env(target).map_err(|e| e.to_string())?);
        if !options.continue_past_errors {
            cmd.arg("--exit-on-error");
        }
        cmd.arg("--no-password")
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
        let failed = failed_statements(&stderr);
        if options.continue_past_errors && !failed.is_empty() {
            return Err(format!(
                "{} statement(s) failed ({}): {}",
                failed.len(),
                out.status,
                name_failures(&failed)
            ));
        }
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
        Err(format!("pg_restore failed ({}): {tail}", out.status))
    }

    /// The tools in use.
    pub fn tools(&self) -> &PgTools {
        &self.tools
    }
}

/// A statement pg_restore could not execute: its first line and the server's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStatement {
    /// The statement's first line (`CREATE FUNCTION public.f(integer) RETURNS …`).
    pub statement: String,
    /// The server's message (`could not load library …`).
    pub error: String,
}

/// The statements pg_restore reports as failed (`pg_restore: error: could not execute query:
/// ERROR: …` followed by `Command was: …`), in order.
pub fn failed_statements(stderr: &str) -> Vec<FailedStatement> {
    let mut out = Vec::new();
    let mut lines = stderr.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("pg_restore: error: could not execute query: ") else {
            continue;
        };
        let error = rest.trim_start_matches("ERROR:").trim().to_owned();
        let statement = match lines.peek().and_then(|l| l.strip_prefix("Command was: ")) {
            Some(command) => {
                let command = command.trim().to_owned();
                lines.next();
                command
            }
            None => String::new(),
        };
        out.push(FailedStatement { statement, error });
    }
    out
}

/// The failures that are causes, not consequences: statements that create something first
/// (an `ALTER … OWNER` of an object that failed to be created adds nothing), at most 12, then a
/// count of the rest.
fn name_failures(failed: &[FailedStatement]) -> String {
    const SHOWN: usize = 12;
    let is_cause = |f: &&FailedStatement| {
        let ownership = f.statement.starts_with("ALTER ") && f.statement.contains(" OWNER TO ");
        !ownership && !f.statement.starts_with("COMMENT ON ")
    };
    let causes: Vec<&FailedStatement> = failed.iter().filter(is_cause).collect();
    let mut text = causes
        .iter()
        .take(SHOWN)
        .map(|f| {
            let mut statement: String = f.statement.chars().take(100).collect();
            if statement.len() < f.statement.len() {
                statement.push('…');
            }
            format!("{statement} ({})", f.error)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let rest = failed.len() - causes.len().min(SHOWN);
    if rest > 0 {
        text.push_str(&format!(
            "; and {rest} more (ownership and comments of those included)"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_statements_are_named_with_their_errors() {
        let stderr =
            "pg_restore: error: could not execute query: ERROR:  ICU is not supported in this build
Command was: CREATE COLLATION public.coll (provider = icu, locale = 'und');


pg_restore: error: could not execute query: ERROR:  collation \"public.coll\" does not exist
Command was: ALTER COLLATION public.coll OWNER TO postgres;

pg_restore: error: could not execute query: ERROR:  could not load library \"/x/regress.so\"
Command was: CREATE FUNCTION public.f(cstring) RETURNS public.t
    LANGUAGE c IMMUTABLE STRICT
pg_restore: warning: errors ignored on restore: 3
";
        let failed = failed_statements(stderr);
        assert_eq!(failed.len(), 3);
        assert_eq!(
            failed[0],
            FailedStatement {
                statement: "CREATE COLLATION public.coll (provider = icu, locale = 'und');".into(),
                error: "ICU is not supported in this build".into(),
            }
        );
        assert_eq!(
            name_failures(&failed),
            "CREATE COLLATION public.coll (provider = icu, locale = 'und'); (ICU is not supported in this build); \
             CREATE FUNCTION public.f(cstring) RETURNS public.t (could not load library \"/x/regress.so\"); \
             and 1 more (ownership and comments of those included)"
        );
    }
}
