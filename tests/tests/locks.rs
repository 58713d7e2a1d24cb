//! The run lock, proven with real concurrent `pre-deploy run` processes against the local
//! store, moto (honours create-only writes) and Garage (silently overwrites): the deploy
//! commands never overlap, a second run without `--wait-lock` exits 6 naming the holder, and
//! the lease of a killed run is taken over once it expired, with a report.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use predeploy_tests::pg::wait_until;
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
    cmd.spawn().expect("pre-deploy starts")
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
        // Every lease was released.
        let out = predeploy_tests::run(
            pre_deploy()
                .args(["--store", &target.store, "list", "--json"])
                .envs(target.env.iter().map(|(k, v)| (*k, v.as_str())))
                .current_dir(work.path()),
        );
        out.assert_success();
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
        let started = work.path().join("started");
        let release = work.path().join("release");
        let deploy = format!(
            "touch '{}'; while [ ! -e '{}' ]; do sleep 0.1; done",
            started.display(),
            release.display()
        );
        let holder = spawn_run(&target, work.path(), &server.url(&db), &[], &deploy);
        let holder_pid = holder.id();
        assert!(
            wait_until(Duration::from_secs(120), || started.exists()),
            "{}: the first run reached its deploy command",
            target.name
        );

        let second = finish(spawn_run(
            &target,
            work.path(),
            &server.url(&db),
            &[],
            "true",
        ));
        second.assert_code(6);
        second.assert_stderr_contains(&format!("pid {holder_pid} (run"));
        second.assert_stderr_contains("--wait-lock");
        second.assert_stderr_contains("REFUSED (exit 6)");

        let waiter = spawn_run(
            &target,
            work.path(),
            &server.url(&db),
            &["--wait-lock", "300s"],
            "true",
        );
        std::thread::sleep(Duration::from_millis(1500));
        std::fs::write(&release, "").expect("release the holder");
        let first = finish(holder);
        assert_eq!(first.code, 0, "{}: {}", target.name, first.stderr);
        let waited = finish(waiter);
        assert_eq!(waited.code, 0, "{}: {}", target.name, waited.stderr);

        let list = predeploy_tests::run(
            pre_deploy()
                .args(["--store", &target.store, "--json", "list"])
                .envs(target.env.iter().map(|(k, v)| (*k, v.as_str())))
                .current_dir(work.path()),
        );
        list.assert_success();
        let v: serde_json::Value = serde_json::from_str(&list.stdout).expect("json");
        let n = v["backups"].as_array().map_or(0, Vec::len);
        assert_eq!(
            n, 2,
            "{}: the refused run stored nothing: {}",
            target.name, list.stdout
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
        let started = work.path().join("started");
        let deploy = format!("touch '{}'; sleep 600", started.display());
        let mut victim = spawn_run(&target, work.path(), &server.url(&db), &[], &deploy);
        assert!(
            wait_until(Duration::from_secs(120), || started.exists()),
            "{}: the first run reached its deploy command",
            target.name
        );
        victim.kill().expect("SIGKILL");
        let _ = victim.wait();
        let _ = Command::new("pkill").args(["-f", "sleep 600"]).status();

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
        let started = work.path().join("started");
        let release = work.path().join("release");
        let deploy = format!(
            "touch '{}'; while [ ! -e '{}' ]; do sleep 0.1; done",
            started.display(),
            release.display()
        );
        let holder = spawn_run(&target, work.path(), &server.url(&db), &[], &deploy);
        assert!(
            wait_until(Duration::from_secs(120), || started.exists()),
            "{}: the first run reached its deploy command",
            target.name
        );
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
