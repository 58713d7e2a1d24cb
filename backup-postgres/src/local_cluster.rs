//! [`LocalCluster`]: a throwaway PostgreSQL server on this machine, for test restores that must
//! not touch a production server: `initdb` into a temp dir with the installed server binaries,
//! listening on a Unix socket only, stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use backup_core::{Error, Result};
use tokio::process::Command;

use crate::config::{PgSourceConfig, ProcessEnv};
use crate::tools::{PgTools, installed_tools};

/// The superuser `initdb` creates in a [`LocalCluster`].
const SUPERUSER: &str = "postgres";

/// Names the temp dirs of local clusters.
const DIR_PREFIX: &str = "predeploy-scratch-cluster-";

/// In a cluster's temp dir: the pid of the process that started it.
const OWNER_FILE: &str = "owner.pid";

/// A running throwaway server. Stopped (`pg_ctl stop -m immediate`) and its directory removed
/// on drop; after a `kill -9` of this process the server goes on until the next local cluster
/// started under the same temp dir collects it (its owner's pid is gone).
#[derive(Debug)]
pub struct LocalCluster {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    major: u32,
    port: u16,
    /// The OS user running the server when this process is root (PostgreSQL refuses root).
    run_as: Option<u32>,
}

impl LocalCluster {
    /// Server binaries (`initdb`, `pg_ctl`, `postgres`) of the major version closest above or
    /// equal to `min_major` installed here (`explicit` first, then the usual places).
    pub async fn find_server(min_major: u32, explicit: Option<&Path>) -> Option<PgTools> {
        let mut found: Vec<PgTools> = installed_tools(explicit)
            .await
            .into_iter()
            .filter(|t| t.major >= min_major)
            .filter(|t| {
                ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|b| t.bin_dir.join(b).is_file())
            })
            .collect();
        // The same major as the backup's server first (privileges compare exactly there).
        found.sort_by_key(|t| t.major);
        found.into_iter().next()
    }

    /// Creates and starts a cluster with `server`'s binaries under `parent` (default: the system
    /// temp dir).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] naming the step that failed (initdb, start) and its output.
    pub async fn start(server: &PgTools, parent: Option<&Path>) -> Result<Self> {
        let fail = |message: String| Error::SourceUnavailable {
            source_name: "local scratch server".into(),
            message,
        };
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        collect_leftovers(&parent);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&parent)
            .map_err(|e| {
                fail(format!(
                    "cannot create a temp dir under {}: {e}",
                    parent.display()
                ))
            })?;
        std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| fail(format!("cannot write under {}: {e}", dir.path().display())))?;
        let run_as = if is_root() {
            let uid = postgres_uid()
                .await
                .ok_or_else(|| fail("running as root, and there is no `postgres` OS user to run a local server as (PostgreSQL refuses root)".into()))?;
            std::os::unix::fs::chown(dir.path(), Some(uid), None).map_err(|e| {
                fail(format!(
                    "cannot hand {} to the postgres user: {e}",
                    dir.path().display()
                ))
            })?;
            Some(uid)
        } else {
            None
        };
        let port = free_port().map_err(|e| fail(format!("no free port: {e}")))?;
        let cluster = LocalCluster {
            dir,
            bin_dir: server.bin_dir.clone(),
            major: server.major,
            port,
            run_as,
        };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .await
            .map_err(|e| fail(format!("cannot run initdb: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // A throwaway cluster that only ever loads one archive: nothing to make durable or
        // replicate. `wal_level=minimal` lets pg_restore's parallel COPY into the tables it
        // just created (it truncates them in the same transaction) and the index builds skip
        // the WAL; no checkpoint or autovacuum competes with the load.
        let options = format!(
            "-p {port} -k {} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c synchronous_commit=off \
             -c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=16GB -c checkpoint_timeout=1h \
             -c autovacuum=off",
            cluster.dir.path().display()
        );
        let out = cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(cluster.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .await
            .map_err(|e| fail(format!("cannot run pg_ctl: {e}")))?;
        if !out.status.success() {
            let log =
                std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default();
            return Err(fail(format!(
                "the local server did not start: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(cluster)
    }

    /// Settings to connect to its `postgres` database as its superuser.
    pub fn config(&self) -> PgSourceConfig {
        let url = format!("postgres://{SUPERUSER}@localhost:{}/postgres", self.port);
        let mut c = PgSourceConfig::from_url(&url, &NoEnv).unwrap_or_else(|_| {
            PgSourceConfig::from_url("postgres://postgres@localhost/postgres", &ProcessEnv)
                .expect("a fixed URL parses")
        });
        c.host = self.dir.path().display().to_string();
        c.port = self.port;
        c.password = None;
        c.bin_dir = Some(self.bin_dir.clone());
        c
    }

    /// Its major version.
    pub fn major(&self) -> u32 {
        self.major
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(uid) = self.run_as {
            cmd.uid(uid);
            if let Some(gid) = postgres_gid() {
                cmd.gid(gid);
            }
        }
        cmd
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let mut cmd = std::process::Command::new(self.bin_dir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(uid) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid);
            if let Some(gid) = postgres_gid() {
                cmd.gid(gid);
            }
        }
        let _ = cmd.status();
    }
}

/// No environment: the cluster's settings come from nowhere else.
struct NoEnv;

impl crate::config::Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    })
}

async fn postgres_uid() -> Option<u32> {
    let out = Command::new("id")
        .args(["-u", SUPERUSER])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn postgres_gid() -> Option<u32> {
    let out = std::process::Command::new("id")
        .args(["-g", SUPERUSER])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn free_port() -> std::io::Result<u16> {
    // Only names the socket file (`.s.PGSQL.<port>`): the server listens on no TCP address.
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Stops and removes the local clusters under `parent` whose owning process is gone (a run
/// killed with `kill -9`): their server would otherwise run on, holding memory and disk.
fn collect_leftovers(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_cluster = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        // No owner file: a cluster being created right now, or not ours.
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(owner) = owner.filter(|_| is_cluster) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let data = dir.join("data");
        if let Some(postmaster) = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        {
            // Only a postmaster of this data directory (the pid may have been reused).
            let cmdline = std::fs::read(format!("/proc/{postmaster}/cmdline")).unwrap_or_default();
            let data_text = data.display().to_string();
            if String::from_utf8_lossy(&cmdline).contains(&data_text) {
                // SIGQUIT: immediate shutdown; the backends follow their postmaster.
                let _ = std::process::Command::new("kill")
                    .args(["-QUIT", &postmaster.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                for _ in 0..50 {
                    if !Path::new(&format!("/proc/{postmaster}")).exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!(
                "removed the local scratch cluster {} left by a run that died",
                dir.display()
            ),
            Err(e) => tracing::debug!("could not remove {}: {e}", dir.display()),
        }
    }
}
