//! Real S3 servers for tests: [`MotoServer`] (AWS semantics: create-only writes are honoured)
//! and [`GarageServer`] (a real self-hosted S3 server that silently overwrites on create-only
//! writes). Both run as local processes on free loopback ports, from the binaries
//! `scripts/setup.sh` installs, and are stopped on drop (and by a watchdog when the test process
//! ends without dropping them, e.g. a server kept in a `static`).
//!
//! Tests share one server per test binary ([`MotoServer::shared`], [`GarageServer::shared`]) and
//! take a bucket of their own ([`S3Server::create_bucket`]), so they run in parallel.

use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backup_objectstore::S3Settings;

use crate::pg::{unused_port, wait_until};

/// What a test needs from an S3 server, whichever it is.
pub trait S3Server: Send + Sync {
    /// `moto` or `garage`, for messages.
    fn kind(&self) -> &'static str;
    /// `http://127.0.0.1:PORT`.
    fn endpoint(&self) -> String;
    /// The region the server expects.
    fn region(&self) -> &'static str;
    /// Access key id of the test key.
    fn access_key(&self) -> &str;
    /// Secret of the test key.
    fn secret_key(&self) -> &str;
    /// Creates a new empty bucket whose name starts with `prefix`; returns its name.
    fn create_bucket(&self, prefix: &str) -> String;

    /// `s3://bucket/prefix?endpoint=…&region=…&allow_http=true`: a store or source URL.
    fn url(&self, bucket: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() {
            bucket.to_owned()
        } else {
            format!("{bucket}/{prefix}")
        };
        format!(
            "s3://{path}?endpoint={}&region={}&allow_http=true",
            self.endpoint(),
            self.region()
        )
    }

    /// The credentials as the standard `AWS_*` variables, for the `pre-deploy` binary.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key().to_owned()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key().to_owned()),
        ]
    }

    /// Complete client settings, for library-level tests.
    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            region: Some(self.region().to_owned()),
            allow_http: Some(true),
            access_key_id: Some(self.access_key().to_owned()),
            secret_access_key: Some(self.secret_key().to_owned()),
            ..S3Settings::default()
        }
    }
}

/// A unique bucket name (lowercase, DNS-safe).
fn bucket_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!("{clean}-{}-{n}", std::process::id())
}

/// A spawned server process with its temp dir and watchdog.
struct Process {
    child: Child,
    watchdog: Option<Child>,
    /// Kept for its `Drop`.
    _dir: tempfile::TempDir,
}

impl Process {
    fn spawn(mut cmd: Command, dir: tempfile::TempDir, log: &Path) -> Process {
        let log_file = std::fs::File::create(log).expect("server log file");
        let err_file = log_file.try_clone().expect("server log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        // Kills the server when this test process is gone without dropping it.
        let watchdog = crate::procs::watchdog("predeploy-s3-watchdog", child.id(), dir.path());
        Process {
            child,
            watchdog,
            _dir: dir,
        }
    }

    fn wait_for_port(&mut self, port: u16, what: &str, log: &Path) {
        let up = wait_until(Duration::from_secs(60), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                || matches!(self.child.try_wait(), Ok(Some(_)))
        });
        let exited = self.child.try_wait().ok().flatten();
        if !up || exited.is_some() {
            panic!(
                "{what} did not start on port {port} ({exited:?}); log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

fn require_binary(path: &Path, what: &str) {
    assert!(
        path.is_file(),
        "{what} is missing at {}: run `scripts/setup.sh` (it installs it)",
        path.display()
    );
}

/// A moto server (PyPI `moto[server]`): AWS S3 semantics, honours `If-None-Match: *`.
pub struct MotoServer {
    port: u16,
    _process: Process,
}

impl MotoServer {
    /// The binary `scripts/setup.sh` installs (`PREDEPLOY_MOTO_VENV` overrides the venv).
    pub fn binary() -> PathBuf {
        let venv = std::env::var_os("PREDEPLOY_MOTO_VENV")
            .map_or_else(|| PathBuf::from("/opt/pre-deploy/moto"), PathBuf::from);
        venv.join("bin/moto_server")
    }

    /// Starts a new server.
    ///
    /// # Panics
    /// When moto is not installed (naming the setup command) or does not start.
    pub fn start() -> MotoServer {
        let bin = Self::binary();
        require_binary(&bin, "moto_server");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("moto.log");
        let port = unused_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path());
        let mut process = Process::spawn(cmd, dir, &log);
        process.wait_for_port(port, "moto_server", &log);
        MotoServer {
            port,
            _process: process,
        }
    }

    /// One server per test process.
    pub fn shared() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        SHARED.get_or_init(MotoServer::start)
    }
}

impl S3Server for MotoServer {
    fn kind(&self) -> &'static str {
        "moto"
    }
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn region(&self) -> &'static str {
        "us-east-1"
    }
    fn access_key(&self) -> &str {
        "moto-test-key"
    }
    fn secret_key(&self) -> &str {
        "moto-test-secret"
    }
    fn create_bucket(&self, prefix: &str) -> String {
        let name = bucket_name(prefix);
        // moto does not check signatures: a plain PUT creates the bucket.
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT"])
            .arg(format!("{}/{name}", self.endpoint()))
            .output()
            .expect("curl (installed with the system) creates the moto bucket");
        assert!(
            out.status.success(),
            "creating bucket {name} on moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        name
    }
}

/// A single-node Garage server (crates.io `garage`, built by `scripts/setup.sh`): silently
/// overwrites on create-only writes.
pub struct GarageServer {
    s3_port: u16,
    config: PathBuf,
    key_id: String,
    secret: String,
    _process: Process,
}

impl GarageServer {
    /// The binary `scripts/setup.sh` builds (`PREDEPLOY_GARAGE_ROOT` overrides the root).
    pub fn binary() -> PathBuf {
        let root = std::env::var_os("PREDEPLOY_GARAGE_ROOT")
            .map_or_else(|| PathBuf::from("/opt/pre-deploy/garage"), PathBuf::from);
        root.join("bin/garage")
    }

    /// Starts a new single-node server with a layout, and imports a test key.
    ///
    /// # Panics
    /// When Garage is not installed (naming the setup command) or does not start.
    pub fn start() -> GarageServer {
        let bin = Self::binary();
        require_binary(&bin, "garage");
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc_port, s3_port) = (unused_port(), unused_port());
        let config = dir.path().join("garage.toml");
        let secret_hex = random_hex(32);
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret_hex}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"
"#,
                dir = dir.path().display()
            ),
        )
        .expect("garage config");
        let log = dir.path().join("garage.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .current_dir(dir.path());
        let mut process = Process::spawn(cmd, dir, &log);
        process.wait_for_port(s3_port, "garage", &log);
        process.wait_for_port(rpc_port, "garage rpc", &log);
        let mut server = GarageServer {
            s3_port,
            config,
            key_id: format!("GK{}", random_hex(12)),
            secret: random_hex(32),
            _process: process,
        };
        let node = server.cli(&["node", "id", "-q"]);
        let node_id = node.trim().split('@').next().unwrap_or_default().to_owned();
        server.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node_id]);
        server.cli(&["layout", "apply", "--version", "1"]);
        let (key, secret) = (server.key_id.clone(), server.secret.clone());
        server.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "predeploy-test",
            &key,
            &secret,
        ]);
        server.key_id = key;
        server
    }

    /// One server per test process.
    pub fn shared() -> &'static GarageServer {
        static SHARED: OnceLock<GarageServer> = OnceLock::new();
        SHARED.get_or_init(GarageServer::start)
    }

    /// Runs the `garage` CLI against this server; returns stdout.
    ///
    /// # Panics
    /// When the command fails (its output is in the message).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut last = String::new();
        // Right after start the node may still be settling its layout: retry briefly.
        for _ in 0..40 {
            let out = Command::new(Self::binary())
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .expect("run the garage CLI");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("garage {args:?} failed: {last}");
    }
}

impl S3Server for GarageServer {
    fn kind(&self) -> &'static str {
        "garage"
    }
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }
    fn region(&self) -> &'static str {
        "garage"
    }
    fn access_key(&self) -> &str {
        &self.key_id
    }
    fn secret_key(&self) -> &str {
        &self.secret
    }
    fn create_bucket(&self, prefix: &str) -> String {
        let name = bucket_name(prefix);
        self.cli(&["bucket", "create", &name]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &name,
            "--key",
            &self.key_id,
        ]);
        name
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("OS random numbers");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Both servers, for tests that must pass on each.
pub fn all_servers() -> [&'static dyn S3Server; 2] {
    [MotoServer::shared(), GarageServer::shared()]
}
