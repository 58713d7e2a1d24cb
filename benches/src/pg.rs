//! The throwaway server (from the `predeploy-tests` harness) and the dataset loaders.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use predeploy_tests::pg::PgServer;

use crate::Res;
use crate::exec::run_plain;

/// The benchmark's view of the server: client commands over TCP with `PGPASSWORD`.
pub struct Pg {
    /// The harness server (stopped on drop).
    pub server: PgServer,
    /// Client binaries.
    pub bin_dir: PathBuf,
    /// Port.
    pub port: u16,
    password: String,
}

/// How a dataset is generated.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `pgbench -i -s <scale>`.
    Pgbench {
        /// Scale factor.
        scale: u32,
    },
    /// `mixed_dataset.sql` with `rows`.
    Mixed {
        /// The script's `rows` variable.
        rows: u64,
    },
}

/// Seed for `random()` in the loading session, so the mixed dataset is the same every run
/// (apart from `gen_random_uuid()`, which has a fixed size).
pub const SEED: &str = "0.4242";

impl Pg {
    /// Start a fresh PostgreSQL 15 through the harness.
    pub fn start() -> Res<Pg> {
        let server = PgServer::start();
        let bin_dir = server.bin_dir().to_path_buf();
        let port = server.port();
        let password = server.password().to_string();
        Ok(Pg {
            server,
            bin_dir,
            port,
            password,
        })
    }

    /// A client binary.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `-h 127.0.0.1 -p PORT -U postgres`.
    pub fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// The environment every measured command gets: `PGPASSWORD`, and the server's `bin/`
    /// first on `PATH` (so a `pg_dump` looked up on `PATH` is the real one, not Debian's
    /// perl wrapper).
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin_dir.clone()];
        dirs.extend(std::env::split_paths(&path));
        let path = std::env::join_paths(dirs).unwrap_or(path);
        vec![
            ("PGPASSWORD".into(), self.password.clone().into()),
            ("PATH".into(), path),
        ]
    }

    /// A client command with the connection environment set.
    pub fn client(&self, name: &str) -> Command {
        let mut cmd = self.server.client_command(name);
        cmd.envs(self.env());
        cmd
    }

    /// Run one SQL statement (its own transaction) and return the unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Res<String> {
        let mut cmd = self.client("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(self.conn_args())
            .args(["-d", db, "-c", sql]);
        Ok(run_plain(cmd, &format!("psql {sql:?}"))?.trim().to_string())
    }

    /// `count(*)` of a table.
    pub fn count(&self, db: &str, table: &str) -> Res<u64> {
        let out = self.psql(db, &format!("select count(*) from {table}"))?;
        Ok(out
            .parse()
            .map_err(|e| format!("count of {table} in {db}: {out:?}: {e}"))?)
    }

    /// Create a database named after `prefix` (harness) and return its name.
    pub fn create_database(&self, prefix: &str) -> String {
        self.server.create_database(prefix)
    }

    /// The URL for `db`, with the password, for the tool.
    pub fn url(&self, db: &str) -> String {
        self.server.url(db)
    }

    /// Generate a dataset into `db`, then VACUUM ANALYZE and CHECKPOINT. Returns the seconds
    /// spent and the row counts of its main tables.
    pub fn load(&self, db: &str, load: Load, mixed_sql: &Path) -> Res<(f64, Vec<(String, u64)>)> {
        let start = Instant::now();
        let tables: &[&str] = match load {
            Load::Pgbench { scale } => {
                let mut cmd = self.client("pgbench");
                cmd.args(["-i", "-q", "-s", &scale.to_string()])
                    .args(self.conn_args())
                    .arg(db);
                run_plain(cmd, "pgbench -i")?;
                &["pgbench_accounts", "pgbench_history", "pgbench_branches"]
            }
            Load::Mixed { rows } => {
                let mut cmd = self.client("psql");
                cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
                    .args(self.conn_args())
                    .args(["-d", db, "-v", &format!("rows={rows}")])
                    .args(["-c", &format!("select setseed({SEED})")])
                    .arg("-f")
                    .arg(mixed_sql);
                run_plain(cmd, "psql -f mixed_dataset.sql")?;
                &["events", "docs"]
            }
        };
        // VACUUM first (it sets hint bits and the visibility map, dirtying pages), then a
        // CHECKPOINT that writes them out, so no measurement pays for either.
        self.psql(db, "VACUUM ANALYZE")?;
        self.psql(db, "CHECKPOINT")?;
        let secs = start.elapsed().as_secs_f64();
        let mut counts = Vec::new();
        for t in tables {
            counts.push((t.to_string(), self.count(db, t)?));
        }
        Ok((secs, counts))
    }

    /// `pg_database_size(db)`.
    pub fn db_size(&self, db: &str) -> Res<u64> {
        let out = self.psql(db, "select pg_database_size(current_database())")?;
        Ok(out
            .parse()
            .map_err(|e| format!("size of {db}: {out:?}: {e}"))?)
    }

    /// Drop a database (best effort).
    pub fn drop_database(&self, db: &str) {
        if let Err(e) = self.psql("postgres", &format!("drop database if exists \"{db}\"")) {
            eprintln!("warning: could not drop {db}: {e}");
        }
    }
}
