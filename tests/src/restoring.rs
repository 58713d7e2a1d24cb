//! Helpers for the tests of `pre-deploy restore` and `run --rollback-on-failure`: a small
//! database with known content, a backup of it, database listings, and [`Paused`], a restore
//! stopped at a named step (the binary's test-only `PREDEPLOY_TEST_PAUSE_AT` hook) so a test can
//! kill it or break its server exactly there.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::cli::{Output, pre_deploy, run};
use crate::compare::{TableSum, table_checksums};
use crate::pg::PgServer;

/// Creates `<prefix>_…` with two tables (`items`: 500 rows, `notes`: 20 rows, a foreign key, a
/// sequence, an index), returns its name.
#[must_use]
pub fn small_database(server: &PgServer, prefix: &str) -> String {
    let db = server.create_database(prefix);
    server.psql(
        &db,
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[]);
         INSERT INTO items (name, price, tags) SELECT 'item ' || g, g * 1.25, ARRAY['t' || (g % 5)] FROM generate_series(1, 500) g;
         CREATE TABLE notes (id int PRIMARY KEY, item int REFERENCES items(id), body jsonb);
         INSERT INTO notes SELECT g, g, jsonb_build_object('n', g) FROM generate_series(1, 20) g;
         CREATE INDEX ON items (name);",
    );
    db
}

/// Changes the content of a [`small_database`] (what a bad deploy might do).
pub fn damage(server: &PgServer, db: &str) {
    server.psql(
        db,
        "DELETE FROM notes WHERE id > 10; UPDATE items SET price = 0 WHERE id <= 100;
         INSERT INTO items (name) VALUES ('added after the backup');",
    );
}

/// Content of `db`, table by table.
#[must_use]
pub fn content(server: &PgServer, db: &str) -> BTreeMap<String, TableSum> {
    table_checksums(server, db)
}

/// `pre-deploy backup --json` of `url` as source `db` into `store` (environment `env`); returns
/// the backup id.
///
/// # Panics
/// When the backup fails.
#[must_use]
pub fn backup_id(store: &Path, url: &str, env: &str) -> String {
    let out = run(pre_deploy()
        .args([
            "backup",
            "--json",
            "--verify-level",
            "archive",
            "--env",
            env,
            "--store",
        ])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}")));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("backup --json");
    v["id"].as_str().expect("id").to_owned()
}

/// `pre-deploy list --json` of `store` (environment `env`): `(id, kind, verification)` per
/// backup, newest first.
///
/// # Panics
/// When listing fails.
#[must_use]
pub fn backups(store: &Path, env: &str) -> Vec<(String, String, serde_json::Value)> {
    let out = run(pre_deploy()
        .args(["list", "--json", "--env", env, "--store"])
        .arg(store));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("list --json");
    v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap_or_default().to_owned(),
                b["kind"].as_str().unwrap_or_default().to_owned(),
                b["verification"].clone(),
            )
        })
        .collect()
}

/// Databases of `server` whose name contains `part`, sorted.
#[must_use]
pub fn databases_containing(server: &PgServer, part: &str) -> Vec<String> {
    let mut names: Vec<String> = server
        .psql(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database WHERE strpos(datname, {}) > 0",
                crate::pg::quote_literal(part)
            ),
        )
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// A `sh -e` running a runbook's raw commands `raw` against `server`: its client tools first on
/// `PATH`, `PGHOST`, `PGPORT` and `PGUSER` set (add what else they need, e.g. the age identity).
#[must_use]
pub fn raw_commands(server: &PgServer, raw: &str) -> Command {
    let path = format!(
        "{}:{}",
        server.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-e", "-c", raw])
        .env("PATH", path)
        .env("PGHOST", server.socket_dir())
        .env("PGPORT", server.port().to_string())
        .env("PGUSER", "postgres");
    cmd
}

/// A `pre-deploy restore` command for source `db` at `url` with store `store`.
#[must_use]
pub fn restore_command(store: &Path, url: &str, args: &[&str]) -> Command {
    let mut cmd = pre_deploy();
    cmd.arg("restore")
        .args(args)
        .arg("--store")
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"))
        // A test that kills a restore leaves its lock lease behind; the next restore in the same
        // store waits for it to expire (3 s) instead of refusing with exit 6.
        .env("PREDEPLOY_LOCK_TTL", "3s")
        .env("PREDEPLOY_WAIT_LOCK", "120s");
    cmd
}

/// A running `pre-deploy` paused at a named step.
pub struct Paused {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    resume_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Paused {
    /// Starts `cmd` with `PREDEPLOY_TEST_PAUSE_AT=<point>:<file>` and waits (up to two minutes)
    /// until it reports the pause on stderr.
    ///
    /// # Panics
    /// When it exits or stays silent instead, with what it printed.
    #[must_use]
    pub fn start(mut cmd: Command, point: &str) -> Paused {
        let dir = tempfile::tempdir().expect("tempdir");
        let resume_file = dir.path().join("resume");
        cmd.env(
            "PREDEPLOY_TEST_PAUSE_AT",
            format!("{point}:{}", resume_file.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("pre-deploy starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut paused = Paused {
            child,
            lines,
            seen: Vec::new(),
            resume_file,
            _dir: dir,
        };
        let wanted = format!("test hook: paused at {point}");
        loop {
            match paused.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let done = line.contains(&wanted);
                    paused.seen.push(line);
                    if done {
                        return paused;
                    }
                }
                Err(_) => {
                    let _ = paused.child.kill();
                    panic!(
                        "pre-deploy never paused at {point}:\n{}",
                        paused.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Lets it go on.
    pub fn resume(&self) {
        std::fs::write(&self.resume_file, b"go").expect("resume file");
    }

    /// Sends `signal` (a name for `kill -NAME`: `KILL`, `TERM`, `INT`) to it.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// Waits for it to exit; the exit code is `128 + N` when signal N killed it.
    ///
    /// A `Paused` dropped without `wait` (a failing test) kills the process.
    ///
    /// # Panics
    /// When waiting fails.
    #[must_use]
    pub fn wait(mut self) -> Output {
        use std::io::Read as _;
        use std::os::unix::process::ExitStatusExt as _;
        let status = self.child.wait().expect("wait");
        let mut stdout = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut stdout);
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        Output {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout,
            stderr: self.seen.join("\n"),
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
