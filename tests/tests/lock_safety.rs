//! Lock safety (issue 14, items 3 and 4), with the real binary on a local store and directory
//! sources (no database needed):
//!
//! - a run whose lease is lost while its deploy command runs says so (stderr and `--json`),
//!   records no deployment and exits 9;
//! - SIGTERM to a run reaches the deploy command's whole process group, and the lock is released
//!   only once the deploy command has finished its cleanup;
//! - `pin`, `unpin` and `verify` wait for (or are refused by) a `prune --yes` of the same
//!   environment, not of another;
//! - a `prune --yes` in one environment never deletes a blob that a backup in another
//!   environment reuses while the collection is between its listing and its delete.
//!
//! The in-process interleavings (a renewal landing after the lease expired, a collection paused
//! before its delete) are unit tests of `backup-objectstore` (`lock.rs`, `bucket/gc.rs`) and
//! `deploy-gate` (`prune/tests.rs`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use predeploy_tests::pg::wait_until;
use predeploy_tests::procs::ProcessGroup;
use predeploy_tests::{Output, pre_deploy};

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

    fn run(&self, env: &str, source: Option<&str>, args: &[&str]) -> Output {
        predeploy_tests::run(&mut self.command(env, source, args))
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

/// Environment `a` with two manual backups, the first holding `shared` in a blob that is two
/// days old (past the 24-hour grace period), and a `prune --yes --keep-last 1` of `a` started
/// with the test hook that holds it between the blob collection's listing and its delete: it
/// removes the first backup, so the blob is planned for collection. Returns the prune (paused)
/// and the file that releases it.
fn paused_prune(
    rig: &Rig,
    shared: &[u8],
) -> (
    Child,
    ProcessGroup,
    mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
    PathBuf,
) {
    // a1 stores the blob; a2 (other bytes) makes a1 removable with --keep-last 1.
    let a1 = rig.source("a1", shared);
    rig.run(
        "a",
        Some(&a1),
        &["backup", "--kind", "manual", "--verify-level", "checksum"],
    )
    .assert_success();
    let a2 = rig.source("a2", b"other bytes");
    rig.run(
        "a",
        Some(&a2),
        &["backup", "--kind", "manual", "--verify-level", "checksum"],
    )
    .assert_success();
    let old = SystemTime::now() - Duration::from_secs(48 * 3600);
    for blob in files_under(&rig.store().join("blobs")) {
        std::fs::File::options()
            .write(true)
            .open(&blob)
            .and_then(|f| f.set_modified(old))
            .expect("age the blob");
    }
    let release = rig.path("release-gc");
    let mut prune = rig.command(
        "a",
        None,
        &["prune", "--yes", "--kind", "manual", "--keep-last", "1"],
    );
    prune.env(
        "PREDEPLOY_TEST_PAUSE_AT",
        format!("blob-gc-planned:{}", release.display()),
    );
    let (mut prune, group) = ProcessGroup::spawn(&mut prune);
    let (lines, stderr) = stderr_lines(&mut prune);
    assert!(
        wait_for_line(
            &lines,
            "test hook: paused at blob-gc-planned",
            Duration::from_secs(120)
        ),
        "the collection reached its delete"
    );
    (prune, group, lines, stderr, release)
}

/// Item 4, with the binary: a blob no backup references any more, older than the grace period,
/// is planned for collection by `prune --yes` in environment `a`, which is held between its
/// listing and its delete (test hook). A backup in environment `b` of a directory with the same
/// bytes runs meanwhile. Afterwards, `b`'s backup must still pass a full `verify` (every blob
/// read and hashed): the backup waited for the collection and stored the blob again.
#[test]
fn prune_in_one_environment_never_deletes_a_blob_a_backup_in_another_reuses() {
    let rig = Rig::new();
    let shared = b"bytes both environments back up".as_slice();
    let (mut prune, _prune_group, _prune_lines, prune_stderr, release) = paused_prune(&rig, shared);

    // Environment b backs up the same bytes while the collection is held.
    let b = rig.source("b", shared);
    let (mut backup, _backup_group) = ProcessGroup::spawn(&mut rig.command(
        "b",
        Some(&b),
        &["backup", "--kind", "manual", "--verify-level", "checksum"],
    ));
    let (backup_lines, backup_stderr) = stderr_lines(&mut backup);
    // It either waits for the collection (now) or finishes (before the fix); give it time.
    let waited = wait_for_line(
        &backup_lines,
        "the lock is held; waiting",
        Duration::from_secs(20),
    );
    std::fs::write(&release, "").expect("release the collection");
    let prune_exit = prune.wait().expect("prune exits");
    let prune_stderr = prune_stderr.join().expect("stderr");
    assert_eq!(prune_exit.code(), Some(0), "{prune_stderr}");
    let backup_exit = backup.wait().expect("backup exits");
    let backup_stderr = backup_stderr.join().expect("stderr");
    assert_eq!(backup_exit.code(), Some(0), "{backup_stderr}");

    let verify = rig.run("b", None, &["verify", "last"]);
    assert_eq!(
        verify.code, 0,
        "b's backup lost a blob to the collection of a (it waited: {waited})\n--- prune\n\
         {prune_stderr}\n--- backup\n{backup_stderr}\n--- verify\n{}",
        verify.stderr
    );
    assert!(
        waited,
        "b's backup waited for the collection\n{backup_stderr}"
    );
    assert!(
        files_under(&rig.store().join("locks")).is_empty(),
        "every lease was released"
    );
}

/// Item 3: `pin`, `unpin` and `verify` hold the retention lock of the backup's environment,
/// which `prune --yes` holds while it removes backups: while a prune of `a` runs, they are
/// refused for `a`'s backups (exit 6, naming the prune; `--wait-lock` waits), and work for
/// another environment's.
#[test]
fn pin_unpin_and_verify_wait_for_a_prune_of_the_same_environment() {
    let rig = Rig::new();
    let b = rig.source("b", b"bytes of b");
    rig.run(
        "b",
        Some(&b),
        &["backup", "--kind", "manual", "--verify-level", "checksum"],
    )
    .assert_success();
    let (mut prune, _group, _lines, prune_stderr, release) = paused_prune(&rig, b"bytes of a");

    for args in [
        &["pin", "last"][..],
        &["unpin", "last"],
        &["verify", "last"],
    ] {
        let out = rig.run("a", None, args);
        out.assert_code(6);
        out.assert_stderr_contains("the retention lock of environment a");
        out.assert_stderr_contains("(prune");
    }
    assert!(
        files_under(&rig.store().join("pins")).is_empty(),
        "nothing was pinned while the prune ran"
    );
    // Another environment is not held up.
    rig.run("b", None, &["pin", "last"]).assert_success();
    rig.run("b", None, &["verify", "last"]).assert_success();
    rig.run("b", None, &["unpin", "last"]).assert_success();

    // Waiting, a pin of a's last backup succeeds once the prune is done.
    let (mut pin, _pin_group) =
        ProcessGroup::spawn(&mut rig.command("a", None, &["--wait-lock", "120s", "pin", "last"]));
    let (pin_lines, pin_stderr) = stderr_lines(&mut pin);
    assert!(
        wait_for_line(
            &pin_lines,
            "the lock is held; waiting",
            Duration::from_secs(30)
        ),
        "the pin waits for the prune"
    );
    std::fs::write(&release, "").expect("release the prune");
    let prune_exit = prune.wait().expect("prune exits");
    assert_eq!(
        prune_exit.code(),
        Some(0),
        "{}",
        prune_stderr.join().expect("stderr")
    );
    let pin_exit = pin.wait().expect("pin exits");
    assert_eq!(
        pin_exit.code(),
        Some(0),
        "{}",
        pin_stderr.join().expect("stderr")
    );
    assert_eq!(files_under(&rig.store().join("pins")).len(), 1);
}
