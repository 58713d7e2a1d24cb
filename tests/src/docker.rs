//! PostgreSQL in Docker containers whose port is not published, the way Compose deployments run
//! it, for the `via=docker://…` tests: [`DockerPg`] starts the local image
//! [`POSTGRES_IMAGE`] (built by `scripts/docker-images.sh`, which `scripts/setup.sh` runs) and
//! removes the container on drop, also during a panic.
//!
//! Containers are started with the `docker` command line rather than the `testcontainers`
//! crate: every current `testcontainers` (0.25 to 0.28) talks to the daemon through bollard at a
//! fixed API version (1.48 and up) without negotiating, and Debian's `docker.io` daemon (20.10)
//! answers at most 1.41 ("client version 1.53 is too new"). The CLI negotiates.
//!
//! The password reaches `docker run` through its environment (`-e POSTGRES_PASSWORD` without a
//! value), never its argv, so the argv scans of the tests see no copy made by the harness.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cli::Output;
use crate::pg::wait_until;

/// The image the harness starts: Debian's PostgreSQL 15 listening on all addresses inside the
/// container, scram passwords over TCP, trust on the local socket.
pub const POSTGRES_IMAGE: &str = "local/predeploy-postgres:15";
/// The login and database the containers create.
pub const USER: &str = "app";

/// A running PostgreSQL container without a published port.
#[derive(Debug)]
pub struct DockerPg {
    name: String,
    password: String,
}

impl DockerPg {
    /// Starts a container named `predeploy-PREFIX-PID-N` and waits until its server accepts
    /// connections.
    ///
    /// # Panics
    /// When Docker or the image is missing (the message names the setup command), or the
    /// server does not come up.
    #[must_use]
    pub fn start(prefix: &str) -> DockerPg {
        Self::start_labelled(prefix, &[])
    }

    /// [`DockerPg::start`] with the labels Docker Compose puts on a service's container.
    ///
    /// # Panics
    /// As [`DockerPg::start`].
    #[must_use]
    pub fn start_compose(prefix: &str, project: &str, service: &str) -> DockerPg {
        Self::start_labelled(
            prefix,
            &[
                ("com.docker.compose.project", project),
                ("com.docker.compose.service", service),
                ("com.docker.compose.container-number", "1"),
            ],
        )
    }

    fn start_labelled(prefix: &str, labels: &[(&str, &str)]) -> DockerPg {
        require_image(POSTGRES_IMAGE);
        let name = container_name(prefix);
        let password = random_password();
        let out = run_detached(
            POSTGRES_IMAGE,
            &name,
            labels,
            &["POSTGRES_USER=app", "POSTGRES_DB=app"],
            ("POSTGRES_PASSWORD", &password),
        );
        assert!(
            out.status.success(),
            "docker run {POSTGRES_IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = DockerPg { name, password };
        // TCP inside the container, as our connection will arrive.
        let ready = wait_until(Duration::from_secs(60), || {
            pg.exec(&["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"])
                .status
                .success()
        });
        assert!(ready, "{} did not start: {}", pg.name, pg.logs());
        pg
    }

    /// The container's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password of [`USER`] (hand it to `pre-deploy` in `PGPASSWORD`).
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://app@localhost:5432/DB?via=docker://NAME`, without the password.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}@localhost:5432/{db}?via=docker://{}",
            self.name
        )
    }

    /// The container's ports published on the host, as `docker port` lists them (none unless
    /// a test publishes one).
    #[must_use]
    pub fn published_ports(&self) -> String {
        published_ports(&self.name)
    }

    /// Runs `sql` with `psql` inside the container (local socket, trust) in database `db`;
    /// returns its unaligned, tuples-only output.
    ///
    /// # Panics
    /// When psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut child = docker()
            .args(["exec", "-i", &self.name, "psql", "-X", "-q", "-At"])
            .args(["-v", "ON_ERROR_STOP=1", "-U", USER, "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker exec psql");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .expect("write sql");
        let out = child.wait_with_output().expect("psql");
        assert!(
            out.status.success(),
            "psql in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the container (it stays, stopped, until drop).
    pub fn stop(&self) {
        stop_container(&self.name);
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        docker()
            .args(["exec", &self.name])
            .args(args)
            .output()
            .expect("docker exec")
    }

    fn logs(&self) -> String {
        container_logs(&self.name)
    }
}

impl Drop for DockerPg {
    fn drop(&mut self) {
        remove_container(&self.name);
    }
}

/// A small database with the types a Compose app keeps (an enum, arrays, jsonb, bytea,
/// numeric, timestamptz), a foreign key, a view and a sequence.
pub const SEED_SQL: &str = "
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL, mood mood, tags text[],
  data jsonb, blob bytea, amount numeric(12,2), at timestamptz);
INSERT INTO customers (email, mood, tags, data, blob, amount, at)
  SELECT 'c' || g || '@example.com', (ARRAY['ok','sad'])[1 + g % 2]::mood, ARRAY['t' || g, 'ü'],
         jsonb_build_object('n', g), decode(md5(g::text), 'hex'), g * 1.25,
         '2026-01-01'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 500) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers, total numeric);
INSERT INTO orders (customer, total) SELECT 1 + g % 500, g FROM generate_series(1, 2000) g;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 1000;
";

/// The content of a [`SEED_SQL`] database: row hashes of both tables, the view's count, the
/// sequence's position and the list of tables.
pub const CONTENT_SQL: &str = "
SELECT concat_ws(' ',
  (SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM customers c),
  (SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o),
  (SELECT count(*) FROM big_orders),
  (SELECT last_value FROM orders_id_seq),
  (SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'))
";

/// Runs `cmd` to completion like [`crate::run`] while reading `/proc/*/cmdline` of every
/// process of the machine over and over; returns the output and the argv of each process seen
/// with `needle` in it (each distinct argv once).
///
/// # Panics
/// When the command cannot be started.
pub fn run_scanning_argv(cmd: &mut Command, needle: &str) -> (Output, Vec<String>) {
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let mut seen = BTreeSet::new();
    let status = loop {
        seen.extend(argv_containing(needle));
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = Output {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    };
    (out, seen.into_iter().collect())
}

/// The argv (space-joined) of every live process whose command line contains `needle`.
fn argv_containing(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|argv| argv.contains(needle))
        .collect()
}

/// A `docker` command with stdin from `/dev/null`.
/// `docker run --detach` of `image` as test container `name` with `labels` and `env`
/// (`KEY=VALUE`), plus one secret variable passed through docker's environment, never its argv.
pub(crate) fn run_detached(
    image: &str,
    name: &str,
    labels: &[(&str, &str)],
    env: &[&str],
    secret: (&str, &str),
) -> std::process::Output {
    let mut cmd = docker();
    cmd.args([
        "run",
        "--detach",
        "--name",
        name,
        "--label",
        "predeploy.test=1",
    ]);
    for (k, v) in labels {
        cmd.arg("--label").arg(format!("{k}={v}"));
    }
    for e in env {
        cmd.args(["--env", e]);
    }
    cmd.args(["--env", secret.0])
        .env(secret.0, secret.1)
        .arg(image);
    cmd.output().expect("docker run")
}

pub(crate) fn docker() -> Command {
    let mut cmd = Command::new("docker");
    cmd.stdin(Stdio::null());
    cmd
}

/// What the container `name` printed.
pub(crate) fn container_logs(name: &str) -> String {
    let out = docker().args(["logs", name]).output().expect("docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Removes the container `name` and its volumes, running or not (errors ignored: for `Drop`).
pub(crate) fn remove_container(name: &str) {
    let _ = docker()
        .args(["rm", "--force", "--volumes", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops the container `name` (it stays, stopped).
///
/// # Panics
/// When `docker stop` fails.
pub(crate) fn stop_container(name: &str) {
    let out = docker()
        .args(["stop", "--time", "5", name])
        .output()
        .expect("docker stop");
    assert!(out.status.success(), "docker stop {name}");
}

/// The ports of container `name` published on the host, as `docker port` lists them.
pub(crate) fn published_ports(name: &str) -> String {
    let out = docker().args(["port", name]).output().expect("docker port");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A container name unique to this test process: `predeploy-PREFIX-PID-N`.
pub(crate) fn container_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "predeploy-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh random password for a container's user.
pub(crate) fn random_password() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random password");
    format!("dk-{}", hex(&bytes))
}

/// Fails (never skips) when the daemon does not answer or `image` is missing.
pub(crate) fn require_image(image: &str) {
    let info = docker()
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    assert!(
        info.is_ok_and(|o| o.status.success()),
        "no Docker daemon answers: run scripts/setup.sh (it installs docker.io and starts dockerd)"
    );
    let found = docker().args(["image", "inspect", image]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "the image {image} is missing: run scripts/setup.sh (scripts/docker-images.sh builds it)"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
