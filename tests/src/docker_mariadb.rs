//! MariaDB in Docker containers whose port is not published, for the MySQL/MariaDB
//! `via=docker://…` tests: [`DockerMariaDb`] starts the local image [`MARIADB_IMAGE`] (built by
//! `scripts/docker-images.sh`, which `scripts/setup.sh` runs) and removes the container on
//! drop, also during a panic. Started with the `docker` command line, as [`crate::docker`]
//! explains.
//!
//! The password reaches `docker run` through its environment (`-e MARIADB_PASSWORD` without a
//! value), never its argv; `pre-deploy` reads it from the `.my.cnf` of [`DockerMariaDb::home`]
//! (hand that directory over as `HOME`), so no argv of the test holds it either. SQL runs
//! inside the container as its root user over the local socket.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::docker::{
    container_logs, container_name, docker, published_ports, random_password, remove_container,
    require_image, run_detached, stop_container,
};
use crate::mysql::MariaDbSql;
use crate::pg::wait_until;

/// The image the harness starts: Debian's MariaDB listening on 0.0.0.0:3306 inside the
/// container, [`USER`] with a password from any host, root on the local socket.
pub const MARIADB_IMAGE: &str = "local/predeploy-mariadb:10.11";
/// The login and database the containers create.
pub const USER: &str = "app";

/// A running MariaDB container without a published port.
#[derive(Debug)]
pub struct DockerMariaDb {
    name: String,
    password: String,
    home: TempDir,
}

impl DockerMariaDb {
    /// Starts a container named `predeploy-PREFIX-PID-N` and waits until its server accepts
    /// TCP connections inside the container.
    ///
    /// # Panics
    /// When Docker or the image is missing (the message names the setup command), or the
    /// server does not come up.
    #[must_use]
    pub fn start(prefix: &str) -> DockerMariaDb {
        Self::start_labelled(prefix, &[])
    }

    /// [`DockerMariaDb::start`] with the labels Docker Compose puts on a service's container.
    ///
    /// # Panics
    /// As [`DockerMariaDb::start`].
    #[must_use]
    pub fn start_compose(prefix: &str, project: &str, service: &str) -> DockerMariaDb {
        Self::start_labelled(
            prefix,
            &[
                ("com.docker.compose.project", project),
                ("com.docker.compose.service", service),
                ("com.docker.compose.container-number", "1"),
            ],
        )
    }

    fn start_labelled(prefix: &str, labels: &[(&str, &str)]) -> DockerMariaDb {
        require_image(MARIADB_IMAGE);
        let name = container_name(prefix);
        let password = random_password();
        let home = tempfile::Builder::new()
            .prefix("predeploy-mdbhome-")
            .tempdir()
            .expect("home dir");
        write_private(
            &home.path().join(".my.cnf"),
            &format!("[client]\nuser={USER}\npassword=\"{password}\"\n"),
        );
        let out = run_detached(
            MARIADB_IMAGE,
            &name,
            labels,
            &["MARIADB_USER=app", "MARIADB_DATABASE=app"],
            ("MARIADB_PASSWORD", &password),
        );
        // From here on the guard removes the container, whatever happens.
        let db = DockerMariaDb {
            name,
            password,
            home,
        };
        assert!(
            out.status.success(),
            "docker run {MARIADB_IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // TCP inside the container, as our connection will arrive (a refused login still
        // answers the ping: the server is up).
        let ready = wait_until(Duration::from_secs(60), || {
            db.exec(&[
                "mariadb-admin",
                "--protocol=TCP",
                "--host=127.0.0.1",
                "--port=3306",
                "--silent",
                "ping",
            ])
            .status
            .success()
        });
        assert!(
            ready,
            "{} did not start: {}",
            db.name,
            container_logs(&db.name)
        );
        db
    }

    /// The container's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password of [`USER`].
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A home directory whose `.my.cnf` holds [`USER`]'s password: give it to `pre-deploy` as
    /// `HOME`, and it reads the password from there (the client tools get it in their option
    /// file), so the URL carries none.
    #[must_use]
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `mariadb://app@localhost:3306/DB?via=docker://NAME`, without the password.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!(
            "mariadb://{USER}@localhost:3306/{db}?via=docker://{}",
            self.name
        )
    }

    /// The container's ports published on the host (none unless a test publishes one).
    #[must_use]
    pub fn published_ports(&self) -> String {
        published_ports(&self.name)
    }

    /// Feeds `sql` to the `mariadb` client inside the container (root, local socket) on `db`
    /// (none when empty); returns its batch output (tab-separated rows, no column names).
    ///
    /// # Panics
    /// When the client fails.
    #[track_caller]
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let mut cmd = docker();
        cmd.args(["exec", "-i", &self.name, "mariadb", "--batch"])
            .args([
                "--skip-column-names",
                "--raw",
                "--default-character-set=utf8mb4",
            ]);
        if !db.is_empty() {
            cmd.arg(format!("--database={db}"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker exec mariadb");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = sql.as_bytes().to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("mariadb");
        let _ = writer.join();
        assert!(
            out.status.success(),
            "SQL in {} failed on {db:?}: {}\n{sql}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
}

impl MariaDbSql for DockerMariaDb {
    fn sql(&self, db: &str, sql: &str) -> String {
        DockerMariaDb::sql(self, db, sql)
    }
}

impl Drop for DockerMariaDb {
    fn drop(&mut self) {
        remove_container(&self.name);
    }
}

/// A `pre-deploy` command's environment for `db`: `HOME` with its `.my.cnf`, and none of the
/// client's own variables.
pub fn with_credentials<'a>(cmd: &'a mut Command, db: &DockerMariaDb) -> &'a mut Command {
    cmd.env("HOME", db.home());
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

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create the option file");
    f.write_all(text.as_bytes()).expect("write the option file");
}
