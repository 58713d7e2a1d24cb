//! The run lock, proven with real concurrent `pre-deploy run` processes against the local
//! store, moto (honours create-only writes) and Garage (silently overwrites): the deploy
//! commands never overlap, a second run without `--wait-lock` exits 6 naming the holder, and
//! the lease of a killed run is taken over once it expired, with a report.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use predeploy_tests::pg::wait_until;
use predeploy_tests::procs::ProcessGroup;
use predeploy_tests::s3::all_servers;
use predeploy_tests::{Output, PgServer, pre_deploy};

/// A store to run against: its URL and the environment the binary needs for it.
struct Target {
    name: &'static str,
    store: String,
    env: Vec<(&'static str, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn targets(test: &str) -> Vec<Target> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = vec![Target {
        name: "local",
        store: dir.path().join("store").display().to_string(),
        env: vec![],
        _dir: Some(dir),
    }];
    for server in all_servers() {
        let bucket = server.create_bucket(test);
        out.push(Target {
            name: server.kind(),
            store: server.url(&bucket, "backups"),
            env: server.env(),
            _dir: None,
        });
    }
    out
}

fn spawn_run(target: &Target, work: &Path, db_url: &str, extra: &[&str], deploy: &str) -> Child {
    run_command(target, work, db_url, extra, deploy)
        .spawn()
        .expect("pre-deploy starts")
}

fn run_command(
    target: &Target,
    work: &Path,
    db_url: &str,
    extra: &[&str],
    deploy: &str,
) -> Command {
    let mut cmd = pre_deploy();
    cmd.args([
        "--store",
        &target.store,
        "--source",
        &format!("db={db_url}"),
    ])
    .args(extra)
    .args([
        "run",
        "--verify-level",
        "checksum",
        "--",
        "sh",
        "-c",
        deploy,
    ])
    .envs(target.env.iter().map(|(k, v)| (*k, v.as_str())))
    .current_dir(work)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Starts a `run` whose deploy command holds the lock until `release` exists (forever when
/// `None`), in a process group of its own (killed when the returned group is dropped, so a failing
/// test leaves nothing behind), and waits until it is in its deploy command, so it certainly
/// holds the lock. Returns the run, its group and the pid of the deploy command's shell.
fn hold(
    target: &Target,
    work: &Path,
    db_url: &str,
    release: Option<&Path>,
) -> (Child, ProcessGroup, u32) {
    let started = work.join("started");
    let wait = match release {
        Some(r) => format!("while [ ! -e '{}' ]; do sleep 0.1; done", r.display()),
        None => "sleep 600".to_owned(),
    };
    let deploy = format!(
        "echo $$ > '{0}.tmp'; mv '{0}.tmp' '{0}'; {wait}",
        started.display()
    );
    let (child, group) = ProcessGroup::spawn(&mut run_command(target, work, db_url, &[], &deploy));
    assert!(
        wait_until(Duration::from_secs(120), || started.exists()),
        "{}: the first run reached its deploy command",
        target.name
    );
    let shell = std::fs::read_to_string(&started)
        .expect("the deploy shell's pid")
        .trim()
        .parse()
        .expect("a pid");
    (child, group, shell)
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

/// The number of backups in the target's store.
fn backup_count(target: &Target, work: &Path) -> usize {
    let list = predeploy_tests::run(
        pre_deploy()
            .args(["--store", &target.store, "--json", "list"])
            .envs(target.env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(work),
    );
    list.assert_success();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).expect("json");
    v["backups"].as_array().map_or(0, Vec::len)
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().expect("wait");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Four runs started at once with `--wait-lock` all succeed, one after the other: their deploy
/// commands never overlap (each writes `start`/`end` around a pause into one file).
#[test]
fn concurrent_runs_take_turns_on_every_store() {
    let server = PgServer::shared();
    let db = server.create_database("locks");
    server.psql(
        &db,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);",
    );
    for target in targets("turns") {
        let work = tempfile::tempdir().expect("workdir");
        let log = work.path().join("deploys.log");
        let deploy = format!(
            "echo start $$ >> '{0}'; sleep 1; echo end $$ >> '{0}'",
            log.display()
        );
        let children: Vec<Child> = (0..4)
            .map(|_| {
                spawn_run(
                    &target,
                    work.path(),
                    &server.url(&db),
                    &["--wait-lock", "300s"],
                    &deploy,
                )
            })
            .collect();
        for child in children {
            let out = finish(child);
            assert_eq!(out.code, 0, "{}: {}", target.name, out.stderr);
        }
        let lines: Vec<String> = std::fs::read_to_string(&log)
            .expect("deploy log")
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            lines.len(),
            8,
            "{}: every deploy ran: {lines:?}",
            target.name
        );
        for pair in lines.chunks(2) {
            let (start, end) = (&pair[0], &pair[1]);
            assert!(
                start.starts_with("start ") && end.starts_with("end ") && start[6..] == end[4..],
                "{}: deploys overlapped: {lines:?}",
                target.name
            );
        }
        // Each run made its own backup.
        assert_eq!(
            backup_count(&target, work.path()),
            4,
            "{}: one backup per run",
            target.name
        );
    }
}

/// Without `--wait-lock`, a second run exits 6 at once naming the holder, and takes nothing:
/// no backup of its own appears. With `--wait-lock` it waits and then succeeds.
#[test]
fn a_held_lock_refuses_with_exit_6_naming_the_holder() {
    let server = PgServer::shared();
    let db = server.create_database("held");
    server.psql(&db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    for target in targets("held") {
        let work = tempfile::tempdir().expect("workdir");
        let release = work.path().join("release");
        let (holder, _group, _) = hold(&target, work.path(), &server.url(&db), Some(&release));
        let holder_pid = holder.id();

        let refused_marker = work.path().join("refused-deploy-ran");
        let second = finish(spawn_run(
            &target,
            work.path(),
            &server.url(&db),
            &[],
            &format!("touch '{}'", refused_marker.display()),
        ));
        second.assert_code(6);
        second.assert_stderr_contains(&format!("pid {holder_pid} (run"));
        second.assert_stderr_contains("--wait-lock");
        second.assert_stderr_contains("REFUSED (exit 6): the deploy command did not run");
        assert!(
            !refused_marker.exists(),
            "{}: the refused run's deploy command did not run",
            target.name
        );

        let waited_marker = work.path().join("waiting-deploy-ran");
        let mut waiter = spawn_run(
            &target,
            work.path(),
            &server.url(&db),
            &["--wait-lock", "300s"],
            &format!("touch '{}'", waited_marker.display()),
        );
        let (lines, waiter_stderr) = stderr_lines(&mut waiter);
        // Release the holder only once the waiter has found the lock held and is waiting.
        let waiting = lines
            .iter()
            .any(|line| line.contains("the lock is held; waiting"));
        assert!(waiting, "{}: the waiter waits for the lock", target.name);
        assert!(
            !waited_marker.exists(),
            "{}: nothing is deployed while the lock is held",
            target.name
        );
        std::fs::write(&release, "").expect("release the holder");
        let first = finish(holder);
        assert_eq!(first.code, 0, "{}: {}", target.name, first.stderr);
        let status = waiter.wait().expect("the waiter exits");
        let waiter_stderr = waiter_stderr.join().expect("stderr reader");
        assert_eq!(status.code(), Some(0), "{}: {waiter_stderr}", target.name);
        assert!(
            waited_marker.exists(),
            "{}: the waiter deployed",
            target.name
        );

        assert_eq!(
            backup_count(&target, work.path()),
            2,
            "{}: the refused run stored nothing",
            target.name
        );
    }
}

/// A run killed with SIGKILL cannot release its lease; with a short ttl the next run waits
/// for it to expire, takes it over and says so.
#[test]
fn the_lease_of_a_killed_run_is_taken_over_after_it_expires() {
    let server = PgServer::shared();
    let db = server.create_database("killed");
    server.psql(&db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    for target in targets("killed") {
        let work = tempfile::tempdir().expect("workdir");
        std::fs::write(work.path().join("predeploy.toml"), "[lock]\nttl = \"4s\"\n")
            .expect("config");
        let (mut victim, group, shell) = hold(&target, work.path(), &server.url(&db), None);
        // The deploy command runs in a process group of its own, led by its shell (pre-deploy
        // passes SIGTERM and SIGINT on to that group).
        let deploy_group = format!("-{shell}");
        let pgrp = std::fs::read_to_string(format!("/proc/{shell}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().nth(2)?.to_owned()));
        assert_eq!(
            pgrp.as_deref(),
            Some(shell.to_string().as_str()),
            "{}: the deploy shell {shell} leads its own process group",
            target.name
        );
        victim.kill().expect("SIGKILL");
        let _ = victim.wait();
        // SIGKILL cannot be passed on: the deploy command of the killed run lives on, in its
        // own process group. End that group and the run's (by their ids, nothing else).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &deploy_group])
            .stderr(Stdio::null())
            .status();
        group.kill();
        // Live (not zombie) processes of the run's group and of the deploy command's.
        let left = || {
            let mut pids = group.members();
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| {
                    rest.split_whitespace().take(3).collect()
                });
                if fields.len() == 3 && fields[0] != "Z" && fields[2] == &deploy_group[1..] {
                    pids.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
                }
            }
            pids
        };
        assert!(
            wait_until(Duration::from_secs(10), || left().is_empty()),
            "{}: the deploy command (shell {shell}) and its children are gone: {:?}",
            target.name,
            left()
        );

        let next = finish(spawn_run(
            &target,
            work.path(),
            &server.url(&db),
            &["--wait-lock", "120s"],
            "true",
        ));
        assert_eq!(next.code, 0, "{}: {}", target.name, next.stderr);
        next.assert_stderr_contains("took over the expired lock");
    }
}

/// A run that lasts longer than its lease keeps renewing it: well past the ttl, another run is
/// still refused (and the refused run never takes it over).
#[test]
fn a_long_run_keeps_its_lease_by_renewing_it() {
    let server = PgServer::shared();
    let db = server.create_database("renew");
    server.psql(&db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    for target in targets("renew") {
        let work = tempfile::tempdir().expect("workdir");
        std::fs::write(work.path().join("predeploy.toml"), "[lock]\nttl = \"3s\"\n")
            .expect("config");
        let release = work.path().join("release");
        let (holder, _group, _) = hold(&target, work.path(), &server.url(&db), Some(&release));
        // Three ttls later the lease would long have expired without renewal.
        std::thread::sleep(Duration::from_secs(9));
        let second = finish(spawn_run(
            &target,
            work.path(),
            &server.url(&db),
            &[],
            "true",
        ));
        second.assert_code(6);
        assert!(
            !second.stderr.contains("took over"),
            "{}: {}",
            target.name,
            second.stderr
        );
        std::fs::write(&release, "").expect("release");
        let first = finish(holder);
        assert_eq!(first.code, 0, "{}: {}", target.name, first.stderr);
    }
}
