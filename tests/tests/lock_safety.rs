//! Lock safety (issue 14, items 3 and 4), with the real binary on a local store and directory
//! sources (no database needed):
//!
//! - a run whose lease is lost while its deploy command runs says so (stderr and `--json`),
//!   records no deployment and exits 9;
//! - SIGTERM to a run reaches the deploy command's whole process group, and the lock is released
//!   only once the deploy command has finished its cleanup;
//!
//! The in-process interleaving (a renewal landing after the lease expired) is a unit test of
//! `backup-objectstore` (`lock.rs`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use predeploy_tests::pg::wait_until;
use predeploy_tests::pre_deploy;
use predeploy_tests::procs::ProcessGroup;

/// A local store and directories to back up, in one temp dir.
struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        Rig {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A directory `name` holding one file with `content`; returns `--source` for it.
    fn source(&self, name: &str, content: &[u8]) -> String {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("source dir");
        std::fs::write(dir.join("file.bin"), content).expect("source file");
        format!("files=file://{}", dir.display())
    }

    /// `pre-deploy --store STORE --env ENV --source SOURCE ARGS…`, run in the rig's dir.
    fn command(&self, env: &str, source: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = pre_deploy();
        cmd.arg("--store").arg(self.store()).args(["--env", env]);
        if let Some(s) = source {
            cmd.args(["--source", s]);
        }
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// The lease files of `env`'s run lock.
    fn leases(&self, env: &str) -> Vec<PathBuf> {
        files_under(&self.store().join("locks").join(env))
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Reads a child's stderr on a thread: each line is sent on the returned channel, and the
/// thread returns everything read when the stream ends.
fn stderr_lines(child: &mut Child) -> (mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    (rx, reader)
}

/// Waits up to `limit` for a line containing `needle`.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn pid_alive(pid: u32) -> bool {
    // A zombie is dead; anything else listed in /proc is alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state != Some('Z'))
}

/// Item 3: the lease is lost while the deploy command runs (here another run "takes it over":
/// the lease file is removed). pre-deploy says so while the command still runs, lets it finish,
/// records no deployment, and exits 9 although the command succeeded; `--json` says the same.
#[test]
fn a_lease_lost_during_the_deploy_command_is_reported_and_the_deployment_not_recorded() {
    let rig = Rig::new();
    std::fs::write(rig.path("predeploy.toml"), "[lock]\nttl = \"3s\"\n").expect("config");
    let source = rig.source("src", b"some bytes");
    let go_on = rig.path("go-on");
    let ran = rig.path("deploy-finished");
    let deploy = format!(
        "rm -f '{locks}'/*.json; i=0; while [ ! -e '{go}' ] && [ $i -lt 600 ]; do sleep 0.1; \
         i=$((i+1)); done; touch '{ran}'",
        locks = rig.store().join("locks/default").display(),
        go = go_on.display(),
        ran = ran.display()
    );
    let mut child = rig
        .command(
            "default",
            Some(&source),
            &[
                "--json",
                "run",
                "--verify-level",
                "checksum",
                "--",
                "sh",
                "-c",
                &deploy,
            ],
        )
        .spawn()
        .expect("run starts");
    let (lines, stderr) = stderr_lines(&mut child);
    // Reported while the deploy command still runs (it waits for `go-on`).
    let reported_during = wait_for_line(
        &lines,
        "LOCK LOST while the deploy command runs",
        Duration::from_secs(60),
    );
    let still_running = !ran.exists();
    std::fs::write(&go_on, "").expect("let the deploy command finish");
    let out = child.wait_with_output().expect("run exits");
    let stderr = stderr.join().expect("stderr");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        reported_during && still_running,
        "the loss is said while the deploy command runs\n{stderr}"
    );
    assert!(ran.exists(), "the deploy command was left to finish");
    assert_eq!(
        out.status.code(),
        Some(9),
        "exit 9: the deploy succeeded without the lock\n{stderr}"
    );
    assert!(stderr.contains("was NOT recorded"), "{stderr}");
    assert!(stdout.contains("\"lock_lost\": true"), "{stdout}");
    assert!(
        stdout.contains("\"deployment_recorded\": false"),
        "{stdout}"
    );
    assert!(
        files_under(&rig.store().join("deployments")).is_empty(),
        "no deployment record"
    );
}

/// Item 3: SIGTERM to `run` goes to the deploy command's whole process group (the command's
/// own cleanup runs, and a child it started in the background ends too), and the lock is
/// released only after the deploy command has exited.
#[test]
fn sigterm_reaches_the_whole_deploy_command_and_the_lock_outlives_its_cleanup() {
    let rig = Rig::new();
    let source = rig.source("src", b"some bytes");
    let started = rig.path("started");
    let child_pid = rig.path("child-pid");
    let cleaned = rig.path("cleaned");
    let deploy = format!(
        "trap 'sleep 1; touch \"{cleaned}\"; exit 143' TERM; sleep 300 & echo $! > '{child}'; \
         echo $$ > '{started}.tmp'; mv '{started}.tmp' '{started}'; wait",
        cleaned = cleaned.display(),
        child = child_pid.display(),
        started = started.display()
    );
    let (mut run, _group) = ProcessGroup::spawn(&mut rig.command(
        "default",
        Some(&source),
        &[
            "run",
            "--verify-level",
            "checksum",
            "--",
            "sh",
            "-c",
            &deploy,
        ],
    ));
    let (_lines, stderr) = stderr_lines(&mut run);
    assert!(
        wait_until(Duration::from_secs(120), || started.exists()),
        "the deploy command started"
    );
    let background: u32 = std::fs::read_to_string(&child_pid)
        .expect("child pid")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(rig.leases("default").len(), 1, "the run holds the lock");
    let status = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // Until the run exits: whenever the lease is gone, the deploy command's cleanup is done.
    let mut released_early = false;
    let exit = loop {
        if let Some(exit) = run.try_wait().expect("try_wait") {
            break exit;
        }
        if rig.leases("default").is_empty() && !cleaned.exists() {
            released_early = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = stderr.join().expect("stderr");
    let background_alive = pid_alive(background);
    if background_alive {
        // Old behaviour: it outlives the run; end it (by its pid: the test started it).
        let _ = Command::new("kill")
            .args(["-KILL", &background.to_string()])
            .status();
    }
    assert!(
        cleaned.exists(),
        "the deploy command got SIGTERM and ran its cleanup\n{stderr}"
    );
    assert!(
        !released_early,
        "the lock was released before the deploy command finished\n{stderr}"
    );
    assert!(
        !background_alive,
        "the deploy command's background child {background} outlived the run\n{stderr}"
    );
    assert_eq!(exit.code(), Some(143), "{stderr}");
    assert!(rig.leases("default").is_empty(), "the lock was released");
}
