//! [`MariaDbServer`]: a real MariaDB server for the tests, started from the installed Debian
//! `mariadb-server` binaries in a temp dir, on a free loopback port, with real password
//! authentication (a `predeploy` user with a random password; no `--skip-grant-tables`).
//!
//! The server is stopped and its files removed on drop, and by a watchdog when the test
//! process ends without dropping it (a server kept in a `static`, see
//! [`MariaDbServer::shared`]). SQL runs through the `mariadb` client with the password in a
//! `--defaults-extra-file`, never on argv.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::pg::{unused_port, wait_until};

/// The user the tests back up as (all privileges, including RELOAD and PROCESS).
pub const USER: &str = "predeploy";

/// Where the Debian package puts the server.
const SERVER_BIN: &str = "/usr/sbin/mariadbd";

/// Attempts at starting the server on a fresh port.
const START_ATTEMPTS: usize = 3;

/// A running MariaDB server.
#[derive(Debug)]
pub struct MariaDbServer {
    root: Option<TempDir>,
    child: Option<Child>,
    watchdog: Option<Child>,
    port: u16,
    socket: PathBuf,
    password: String,
    client_cnf: PathBuf,
}

/// The path of a client tool (`mariadb`, `mariadb-dump`, …) on `PATH`.
///
/// # Panics
/// When it is not installed (the message names the setup command).
#[must_use]
pub fn client_tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "MariaDB tool `{name}` is not installed: run `scripts/setup.sh` (Debian packages mariadb-server and mariadb-client)"
            )
        })
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the effective user.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl MariaDbServer {
    /// The server shared by the tests of this process (each test takes its own database).
    ///
    /// # Panics
    /// When the server cannot start.
    pub fn shared() -> &'static MariaDbServer {
        static SHARED: OnceLock<MariaDbServer> = OnceLock::new();
        SHARED.get_or_init(MariaDbServer::start)
    }

    /// Initialises a data directory and starts a server on a free port.
    ///
    /// # Panics
    /// When a binary is missing or the server does not start: a test that needs MariaDB must
    /// fail, never skip.
    #[must_use]
    pub fn start() -> MariaDbServer {
        Self::start_under(&std::env::temp_dir())
    }

    /// Like [`MariaDbServer::start`], with the data directory under `parent` (e.g. a small
    /// file system).
    ///
    /// # Panics
    /// As [`MariaDbServer::start`].
    #[must_use]
    pub fn start_under(parent: &Path) -> MariaDbServer {
        assert!(
            Path::new(SERVER_BIN).is_file(),
            "{SERVER_BIN} is not installed: run `scripts/setup.sh` (Debian package mariadb-server)"
        );
        let install = client_tool("mariadb-install-db");
        let root = tempfile::Builder::new()
            .prefix("predeploy-mdb-")
            .tempdir_in(parent)
            .expect("create a temp dir for MariaDB");
        let data = root.path().join("data");
        let socket = root.path().join("mysqld.sock");
        assert!(
            socket.as_os_str().len() < 100,
            "socket path {} is too long; set TMPDIR to a shorter path",
            socket.display()
        );
        let mut cmd = Command::new(&install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let out = cmd.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let password = format!("pw-{}", random_hex(12));
        let client_cnf = root.path().join("client.cnf");
        let mut server = MariaDbServer {
            root: Some(root),
            child: None,
            watchdog: None,
            port: 0,
            socket,
            password,
            client_cnf,
        };
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            server.port = unused_port();
            match server.spawn(&data) {
                Ok(()) => {
                    server.spawn_watchdog();
                    server.create_app_user();
                    return server;
                }
                Err(e) => last = e,
            }
        }
        panic!("MariaDB did not start after {START_ATTEMPTS} attempts: {last}");
    }

    fn root(&self) -> &Path {
        self.root.as_ref().expect("server root").path()
    }

    fn spawn(&mut self, data: &Path) -> Result<(), String> {
        let log = self.root().join("server.log");
        let mut cmd = Command::new(SERVER_BIN);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--log-error={log}", log = log.display()))
            .arg(format!(
                "--pid-file={}",
                self.root().join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-bin={}",
                self.root().join("binlog").display()
            ))
            .args([
                "--server-id=1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {SERVER_BIN}: {e}"))?;
        let mut exited = None;
        let answered = wait_until(Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            Command::new(client_tool("mariadb"))
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if let Some(status) = exited {
            return Err(format!(
                "mariadbd exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if answered {
            self.child = Some(child);
            return Ok(());
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "mariadbd did not answer within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }

    fn create_app_user(&self) {
        let sql = format!(
            "CREATE USER '{USER}'@'%' IDENTIFIED BY '{pw}'; GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION;",
            pw = self.password
        );
        let out = Command::new(client_tool("mariadb"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "-e", &sql])
            .output()
            .expect("run mariadb");
        assert!(
            out.status.success(),
            "creating the test user failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            &self.client_cnf,
            format!(
                "[client]\nuser={USER}\npassword=\"{}\"\nhost=127.0.0.1\nport={}\nprotocol=TCP\ndefault-character-set=utf8mb4\n",
                self.password, self.port
            ),
        )
        .expect("write the client option file");
    }

    fn spawn_watchdog(&mut self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        self.watchdog =
            crate::procs::watchdog("predeploy-mariadb-watchdog", child.id(), self.root());
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's Unix socket.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The password of [`USER`].
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The option file with [`USER`]'s credentials, for `--defaults-extra-file`.
    #[must_use]
    pub fn client_cnf(&self) -> &Path {
        &self.client_cnf
    }

    /// `mysql://predeploy:PASSWORD@127.0.0.1:PORT/db`.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        self.url_with(USER, &self.password, db)
    }

    /// A URL for another user.
    #[must_use]
    pub fn url_with(&self, user: &str, password: &str, db: &str) -> String {
        format!("mysql://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database with a unique name starting with `prefix`.
    ///
    /// # Panics
    /// When the statement fails.
    #[must_use]
    pub fn create_database(&self, prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}{}", random_hex(3));
        self.sql(
            "",
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        );
        name
    }

    /// A `mariadb` client command as [`USER`] (password in the option file), on `db` when not
    /// empty, in batch mode without column names.
    #[must_use]
    pub fn client(&self, db: &str) -> Command {
        let mut cmd = Command::new(client_tool("mariadb"));
        cmd.arg(format!(
            "--defaults-extra-file={}",
            self.client_cnf.display()
        ))
        .args(["--batch", "--skip-column-names", "--raw"]);
        if !db.is_empty() {
            cmd.arg(format!("--database={db}"));
        }
        for var in [
            "MYSQL_PWD",
            "MYSQL_HOST",
            "MYSQL_TCP_PORT",
            "MYSQL_UNIX_PORT",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `sql` on `db` and returns its output (tab-separated rows).
    ///
    /// # Panics
    /// When the client fails.
    #[track_caller]
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client(db)
            .args(["-e", sql])
            .output()
            .expect("run mariadb");
        assert!(
            out.status.success(),
            "SQL failed on {db:?}: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Feeds `input` (an SQL script) to the client on `db`.
    ///
    /// # Panics
    /// When the client fails.
    #[track_caller]
    pub fn sql_script(&self, db: &str, input: &[u8]) {
        use std::io::Write as _;
        let mut child = self
            .client(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mariadb");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("wait for mariadb");
        let _ = writer.join();
        assert!(
            out.status.success(),
            "SQL script failed on {db:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(root) = self.root.take() {
            let _ = root.close();
        }
    }
}

/// A MariaDB server the tests can run SQL on: a local [`MariaDbServer`], or one in a container
/// ([`crate::docker_mariadb::DockerMariaDb`]).
pub trait MariaDbSql {
    /// Runs `sql` on `db` (none when empty) and returns its output (tab-separated rows, no
    /// column names).
    ///
    /// # Panics
    /// When the statement fails.
    fn sql(&self, db: &str, sql: &str) -> String;
}

impl MariaDbSql for MariaDbServer {
    fn sql(&self, db: &str, sql: &str) -> String {
        MariaDbServer::sql(self, db, sql)
    }
}

/// Per-table content of a MariaDB database: `table → (rows, hash of every row's column
/// values)`, independent of row order and physical layout (`CHECKSUM TABLE` is not stable for
/// tables with virtual columns).
///
/// # Panics
/// When a query fails.
#[must_use]
pub fn table_hashes<S: MariaDbSql + ?Sized>(
    server: &S,
    db: &str,
) -> std::collections::BTreeMap<String, String> {
    let tables = server.sql(
        db,
        "SELECT table_name FROM information_schema.TABLES WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
    );
    let mut out = std::collections::BTreeMap::new();
    for table in tables.lines() {
        let cols = server.sql(
            db,
            &format!(
                "SELECT column_name FROM information_schema.COLUMNS WHERE table_schema = DATABASE() AND table_name = '{}' ORDER BY ordinal_position",
                table.replace('\\', "\\\\").replace('\'', "''")
            ),
        );
        let values = cols.lines().fold(String::new(), |mut s, c| {
            if !s.is_empty() {
                s.push_str(", ");
            }
            let _ = write!(
                s,
                "COALESCE(HEX(CAST(`{}` AS BINARY)), 'NULL')",
                c.replace('`', "``")
            );
            s
        });
        let hash = server.sql(
            db,
            &format!(
                "SET SESSION group_concat_max_len = 1073741824; \
                 SELECT CONCAT(COUNT(*), ' ', COALESCE(SHA2(GROUP_CONCAT(h ORDER BY h SEPARATOR ''), 256), '-')) \
                 FROM (SELECT SHA2(CONCAT_WS('|', {values}), 256) AS h FROM `{}`) x",
                table.replace('`', "``")
            ),
        );
        out.insert(table.to_owned(), hash.trim().to_owned());
    }
    out
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("OS random numbers");
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// How a replacement `mariadb-dump` misbehaves (it answers `--version` like the real one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeMariaDbDump {
    /// Runs the real dump, passes on its first 16 KiB, then dies of SIGKILL.
    KilledMidStream,
    /// Runs the real dump, passes on its first 16 KiB, then exits 0: no trailer.
    CutShort,
    /// Appends its argv and the contents of its `--defaults-extra-file` (mode and whether it
    /// names a password) to `args.log` in its dir, then runs the real dump.
    LogsArguments,
}

/// A temp dir holding a fake `mariadb-dump` (for `PREDEPLOY_MYSQL_BINDIR`).
///
/// # Panics
/// When the directory cannot be prepared.
#[must_use]
pub fn fake_dump_dir(fake: FakeMariaDbDump) -> TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("mdbtools")
        .tempdir()
        .expect("tool dir");
    let real = client_tool("mariadb-dump");
    let real = real.display();
    let log = dir.path().join("args.log");
    let log = log.display();
    let body = match fake {
        FakeMariaDbDump::KilledMidStream => {
            format!("\"{real}\" \"$@\" | head -c 16384\nkill -KILL $$\n")
        }
        FakeMariaDbDump::CutShort => format!("\"{real}\" \"$@\" | head -c 16384\nexit 0\n"),
        FakeMariaDbDump::LogsArguments => format!(
            "echo \"argv: $*\" >> \"{log}\"\n\
             for a in \"$@\"; do case \"$a\" in --defaults-extra-file=*) f=\"${{a#--defaults-extra-file=}}\"; \
             echo \"mode: $(stat -c %a \"$f\")\" >> \"{log}\"; echo \"file: $f\" >> \"{log}\"; \
             grep -q '^password=' \"$f\" && echo 'has password' >> \"{log}\";; esac; done\n\
             exec \"{real}\" \"$@\"\n"
        ),
    };
    let script =
        format!("#!/bin/sh\nif [ \"$1\" = --version ]; then exec \"{real}\" --version; fi\n{body}");
    let path = dir.path().join("mariadb-dump");
    std::fs::write(&path, script).expect("write the fake mariadb-dump");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}
