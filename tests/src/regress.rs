//! PostgreSQL's own regression database as a fixture: what `pg_regress` of the PostgreSQL 15
//! source leaves in its `regression` database (600 tables, inheritance and partition trees,
//! about 400,000 rows, SQL, plpgsql and C functions, triggers, rules, RLS policies,
//! publications, domains, ranges, large objects...).
//!
//! `scripts/regress-db.sh` (called by `scripts/setup.sh`) builds it once and caches it under
//! `/opt/pre-deploy/regress` (or `PREDEPLOY_REGRESS_ROOT`): `regression.pgc` (`pg_dump -Fc`),
//! `roles.sql` (`pg_dumpall --roles-only`) and `stamp` (source version, counts). The tables a
//! plain `pg_dump`/`pg_restore` cannot reproduce are dropped there (the script says which and
//! why), so a restore of the archive is the database it was taken from.
//!
//! Its C functions point at `regress.so`, `autoinc.so` and `refint.so` under
//! `/opt/pre-deploy/regress/lib`, built for PostgreSQL 15: a server of another major version
//! cannot load them, and the objects built on them fail there
//! ([`try_load_regression`] lists what fails).
//!
//! ```no_run
//! use predeploy_tests::{PgServer, regress};
//!
//! let server = PgServer::start();
//! regress::load_regression(&server, "regression");
//! ```

use std::path::{Path, PathBuf};

use crate::pg::{PgServer, SUPERUSER};

/// Where `scripts/regress-db.sh` caches the fixture unless `PREDEPLOY_REGRESS_ROOT` says
/// otherwise.
pub const DEFAULT_REGRESS_ROOT: &str = "/opt/pre-deploy/regress";

/// The fixture's cache directory (`PREDEPLOY_REGRESS_ROOT`, else [`DEFAULT_REGRESS_ROOT`]).
#[must_use]
pub fn regress_root() -> PathBuf {
    std::env::var_os("PREDEPLOY_REGRESS_ROOT")
        .map_or_else(|| PathBuf::from(DEFAULT_REGRESS_ROOT), PathBuf::from)
}

/// The cached `pg_dump -Fc` archive of the regression database.
///
/// # Panics
/// When it is missing (a test that needs it fails, it is never skipped), naming the command
/// that builds it.
#[must_use]
pub fn regression_archive() -> PathBuf {
    cached_file("regression.pgc")
}

/// The cached `pg_dumpall --roles-only` of the cluster the regression database came from.
///
/// # Panics
/// When it is missing, naming the command that builds it.
#[must_use]
pub fn regression_roles() -> PathBuf {
    cached_file("roles.sql")
}

/// A `key=value` line of the fixture's stamp file (e.g. `tables`, `rows`, `functions`,
/// `source_version`), `None` when the key is not there.
///
/// # Panics
/// When the stamp file is missing, naming the command that builds it.
#[must_use]
pub fn stamp_value(key: &str) -> Option<String> {
    let stamp = cached_file("stamp");
    let text =
        std::fs::read_to_string(&stamp).unwrap_or_else(|e| panic!("read {}: {e}", stamp.display()));
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

fn cached_file(name: &str) -> PathBuf {
    let path = regress_root().join(name);
    assert!(
        path.is_file(),
        "the PostgreSQL regression database fixture is not built ({} is missing): run \
         scripts/setup.sh (it runs scripts/regress-db.sh)",
        path.display()
    );
    path
}

/// Creates the fixture's roles on `server` (those that exist already are left as they are),
/// creates the database `db` and restores the cached archive into it with the server's own
/// `pg_restore`.
///
/// # Panics
/// When the archive is missing (naming `scripts/setup.sh`), when `db` cannot be created, and
/// when any object of the archive fails to restore, with pg_restore's errors.
pub fn load_regression(server: &PgServer, db: &str) {
    if let Err(errors) = try_load_regression(server, db) {
        panic!(
            "restoring the regression database into {db} (PostgreSQL {}) failed: {}",
            server.major_version(),
            errors.summary()
        );
    }
}

/// What [`try_load_regression`] could not restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreErrors {
    /// pg_restore's exit status.
    pub status: String,
    /// Its `pg_restore: error: ...` messages (each with the detail lines that follow it).
    pub errors: Vec<String>,
    /// pg_restore's whole stderr.
    pub stderr: String,
}

impl RestoreErrors {
    /// The number of errors and the first few, for a failure message.
    #[must_use]
    pub fn summary(&self) -> String {
        let shown: Vec<&str> = self.errors.iter().take(20).map(String::as_str).collect();
        format!(
            "pg_restore exited with {}, {} error(s):\n{}{}",
            self.status,
            self.errors.len(),
            shown.join("\n"),
            if self.errors.len() > shown.len() {
                "\n..."
            } else {
                ""
            }
        )
    }
}

/// Like [`load_regression`], but a restore that fails on some objects is returned as an error
/// (the database is left with everything that did restore) instead of a panic: pg_restore runs
/// to the end without `--exit-on-error`.
///
/// # Errors
/// The objects pg_restore could not restore.
///
/// # Panics
/// When the archive is missing, when creating the roles fails for another reason than a role
/// that exists already, and when `db` cannot be created.
pub fn try_load_regression(server: &PgServer, db: &str) -> Result<(), RestoreErrors> {
    let archive = regression_archive();
    create_roles(server, &regression_roles());
    server.create_database_named(db);
    let out = server
        .client_command("pg_restore")
        .args(["--no-password", "-j", "2", "-h"])
        .arg(server.socket_dir())
        .args(["-p", &server.port().to_string(), "-U", SUPERUSER, "-d", db])
        .arg(&archive)
        .output()
        .expect("run pg_restore");
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Err(RestoreErrors {
        status: out.status.to_string(),
        errors: error_messages(&stderr),
        stderr,
    })
}

/// Runs the roles script with psql, statement by statement without stopping, and fails on any
/// error but "already exists" (roles are cluster-wide: another test may have created them). The
/// statements about the harness's own superuser are left out.
fn create_roles(server: &PgServer, roles: &Path) {
    let script =
        std::fs::read_to_string(roles).unwrap_or_else(|e| panic!("read {}: {e}", roles.display()));
    let about_superuser = |line: &str| {
        let line = line.trim_start();
        ["CREATE ROLE ", "ALTER ROLE "].iter().any(|prefix| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(SUPERUSER))
                .is_some_and(|rest| rest.starts_with([' ', ';']))
        })
    };
    let script: String = script
        .lines()
        .filter(|line| !about_superuser(line))
        .flat_map(|line| [line, "\n"])
        .collect();
    let file = tempfile::NamedTempFile::new().expect("temp file for the roles script");
    std::fs::write(file.path(), script).expect("write the roles script");
    let out = server
        .client_command("psql")
        .args(["-X", "-q", "--no-password", "-h"])
        .arg(server.socket_dir())
        .args(["-p", &server.port().to_string(), "-U", SUPERUSER, "-d"])
        .arg("postgres")
        .arg("-f")
        .arg(file.path())
        .output()
        .expect("run psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ERROR:") && !line.contains("already exists"))
        .collect();
    assert!(
        out.status.success() && unexpected.is_empty(),
        "creating the regression database's roles failed ({}):\n{}",
        out.status,
        unexpected.join("\n")
    );
}

/// The `pg_restore: error:` messages of pg_restore's stderr, each with its continuation lines
/// (`Command was: ...`, `DETAIL`, `HINT`...).
fn error_messages(stderr: &str) -> Vec<String> {
    let mut errors: Vec<String> = Vec::new();
    let mut in_error = false;
    for line in stderr.lines() {
        if line.starts_with("pg_restore: error:") {
            errors.push(line.to_owned());
            in_error = true;
        } else if line.starts_with("pg_restore:") {
            in_error = false;
        } else if in_error && let Some(last) = errors.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::error_messages;

    #[test]
    fn error_messages_keep_their_detail_lines() {
        let stderr = "pg_restore: while PROCESSING TOC:\n\
                      pg_restore: from TOC entry 1; 1255 16 FUNCTION f() postgres\n\
                      pg_restore: error: could not execute query: ERROR:  boom\n\
                      Command was: CREATE FUNCTION f();\n\
                      pg_restore: warning: errors ignored on restore: 1\n";
        assert_eq!(
            error_messages(stderr),
            vec![
                "pg_restore: error: could not execute query: ERROR:  boom\n\
                 Command was: CREATE FUNCTION f();"
                    .to_owned()
            ]
        );
    }
}
