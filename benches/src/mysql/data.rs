//! The MySQL/MariaDB datasets (M2 and M2-half): three tables of mixed types generated inside the
//! server from MariaDB's `seq_1_to_N` sequence engine, with every value a function of the row
//! number (hashes, not `RAND()`), so a load is the same on every run.

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use benches::Res;
use benches::exec::run_plain;
use predeploy_tests::mysql::{MariaDbServer, USER};

/// The tables of a dataset, in the order they are counted.
pub const TABLES: [&str; 3] = ["accounts", "events", "docs"];

/// One dataset: `events` rows, and `accounts` and `docs` in proportion.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    /// `M2` or `M2-half`.
    pub id: &'static str,
    /// Rows of `events` (the big table).
    pub events: u64,
}

impl Dataset {
    /// Rows of `accounts`: one per 100 events.
    pub fn accounts(&self) -> u64 {
        (self.events / 100).max(1)
    }

    /// Rows of `docs`: one per 50 events.
    pub fn docs(&self) -> u64 {
        (self.events / 50).max(1)
    }

    /// Rows of all tables.
    pub fn total_rows(&self) -> u64 {
        self.events + self.accounts() + self.docs()
    }

    /// `events=1000000, accounts=10000, docs=20000 (1030000 rows)`.
    pub fn describe(&self) -> String {
        format!(
            "events={}, accounts={}, docs={} ({} rows); ints, varchars, text, decimals, \
             datetimes, a blob in 30 % of the events",
            self.events,
            self.accounts(),
            self.docs(),
            self.total_rows()
        )
    }

    /// The script that creates and fills the tables (deterministic: every value is a
    /// function of the sequence number).
    pub fn sql(&self) -> String {
        let (n, a, d) = (self.events, self.accounts(), self.docs());
        format!(
            "SET SESSION sql_log_bin = 0;
CREATE TABLE accounts (
  id INT NOT NULL PRIMARY KEY,
  email VARCHAR(255) NOT NULL,
  balance DECIMAL(14,2) NOT NULL,
  created_at DATETIME NOT NULL,
  flags TINYINT UNSIGNED NOT NULL
) ENGINE=InnoDB;
INSERT INTO accounts
SELECT seq,
       CONCAT('user', seq, '@example.', ELT(1 + seq % 4, 'com', 'org', 'net', 'io')),
       (CRC32(CONCAT('balance-', seq)) % 100000000) / 100,
       TIMESTAMP('2020-01-01') + INTERVAL (CRC32(CONCAT('created-', seq)) % 126144000) SECOND,
       seq % 8
FROM seq_1_to_{a};
CREATE TABLE events (
  id BIGINT NOT NULL PRIMARY KEY,
  account_id INT NOT NULL,
  kind VARCHAR(16) NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  note VARCHAR(255) NULL,
  payload BLOB NULL,
  KEY events_account (account_id)
) ENGINE=InnoDB;
INSERT INTO events
SELECT seq,
       1 + CRC32(CONCAT('account-', seq)) % {a},
       ELT(1 + seq % 5, 'click', 'view', 'order', 'refund', 'login'),
       (CRC32(CONCAT('amount-', seq)) % 1000000) / 100 - 2000,
       TIMESTAMP('2024-01-01') + INTERVAL seq * 7 SECOND + INTERVAL (seq * 7919) % 1000000 MICROSECOND,
       IF(seq % 3 = 0, NULL, CONCAT('order ', seq % 9973, ' for ', LEFT(MD5(CONCAT('note-', seq)), 10 + seq % 20))),
       IF(seq % 10 < 3, UNHEX(SHA2(CONCAT('payload-', seq), 256)), NULL)
FROM seq_1_to_{n};
CREATE TABLE docs (
  id INT NOT NULL PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  body TEXT NOT NULL,
  updated_at DATETIME NOT NULL
) ENGINE=InnoDB;
INSERT INTO docs
SELECT seq,
       CONCAT('Document ', seq, ': ', LEFT(MD5(CONCAT('title-', seq)), 12)),
       CONCAT_WS('\\n',
         REPEAT(CONCAT('Lorem ipsum dolor sit amet, paragraph ', seq % 97, '. '), 1 + seq % 7),
         SHA2(CONCAT('body-a-', seq), 512),
         REPEAT(CONCAT(MD5(CONCAT('body-b-', seq % 1000)), ' consectetur adipiscing elit. '), 2 + seq % 9),
         SHA2(CONCAT('body-c-', seq), 256)),
       TIMESTAMP('2023-06-01') + INTERVAL seq MINUTE
FROM seq_1_to_{d};
ANALYZE TABLE accounts, events, docs;
"
        )
    }
}

/// The full datasets (≥ 1M rows in M2) or the tiny ones of `--quick`.
pub fn datasets(quick: bool) -> [Dataset; 2] {
    let events = if quick { 20_000 } else { 1_000_000 };
    [
        Dataset { id: "M2", events },
        Dataset {
            id: "M2-half",
            events: events / 2,
        },
    ]
}

/// The runner's own `mariadb` client on `db` (credentials from the harness's option file).
pub fn client(server: &MariaDbServer, db: &str) -> Command {
    server.client(db)
}

/// Runs `sql` on `db` (empty: none) and returns its tab-separated output.
pub fn sql(server: &MariaDbServer, db: &str, sql: &str) -> Res<String> {
    let mut cmd = client(server, db);
    cmd.args(["-e", sql]);
    run_plain(cmd, &format!("mariadb -e {sql:?}"))
}

/// Creates `db` and loads `set` into it; returns the seconds taken and the row count of every
/// table.
pub fn load(server: &MariaDbServer, db: &str, set: &Dataset) -> Res<(f64, Vec<(String, u64)>)> {
    let started = Instant::now();
    sql(
        server,
        "",
        &format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
    )?;
    let mut child = client(server, db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(set.sql().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "loading {} failed: {}",
            set.id,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((secs, counts(server, db)?))
}

/// `COUNT(*)` of every table of [`TABLES`] in `db`.
pub fn counts(server: &MariaDbServer, db: &str) -> Res<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for t in TABLES {
        let n = sql(server, db, &format!("SELECT COUNT(*) FROM `{t}`"))?;
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|e| format!("COUNT(*) of {t}: {n:?}: {e}"))?;
        out.push((t.to_owned(), n));
    }
    Ok(out)
}

/// Size of the database's tables on the server (data + indexes), bytes.
pub fn db_size(server: &MariaDbServer, db: &str) -> Res<u64> {
    let s = sql(
        server,
        "",
        &format!(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.TABLES \
             WHERE table_schema = '{db}'"
        ),
    )?;
    Ok(s.trim().parse().unwrap_or(0))
}

/// Databases left on the server by a verification: the tool's `…__predeploy_*` scratch
/// databases and the shell's.
pub fn scratch_databases(server: &MariaDbServer, shell_scratch: &str) -> Res<Vec<String>> {
    let out = sql(
        server,
        "",
        &format!(
            "SELECT schema_name FROM information_schema.SCHEMATA WHERE schema_name LIKE \
             '%\\_\\_predeploy\\_%' OR schema_name = '{shell_scratch}'"
        ),
    )?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A home directory for the measured commands whose `.my.cnf` (mode 0600) holds the backup
/// user's name and password: the tool reads it for a URL without a password, and the clients
/// read it as usual. Returns the directory.
pub fn home_with_my_cnf(server: &MariaDbServer, work: &Path) -> Res<PathBuf> {
    let home = work.join("home");
    fs::create_dir_all(&home)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(home.join(".my.cnf"))?;
    writeln!(
        f,
        "[client]\nuser={USER}\npassword=\"{}\"",
        server.password()
    )?;
    Ok(home)
}

/// The environment of every measured command: `HOME` with the option file, and nothing that
/// would give the clients other credentials or another server.
pub fn env(home: &Path) -> Vec<(OsString, OsString)> {
    vec![("HOME".into(), home.into())]
}
