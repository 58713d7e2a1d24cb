//! The documented exit codes that no other test provokes for real: 3 from `run` (the deploy
//! command does not run), 5 from `restore` to an unreachable server, without client tools and
//! into a server that cannot install an extension the backup needs, 6
//! from `restore` while another run holds the lock and from a `run` whose lease is lost before it
//! commits, and 8 from a directory restore that cannot
//! write. Each one leaves what it refused to touch as it was. (4 from `run` and `backup`: the
//! tests of the verification ladder in `ladder.rs`.)

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use predeploy_tests::fakes::{FakePgDump, PAUSED_MARKER, RESUME_MARKER, tool_dir};
use predeploy_tests::pg::{pg18_bin_dir, wait_until};
use predeploy_tests::procs::ProcessGroup;
use predeploy_tests::restoring::{backup_id, backups, content, small_database};
use predeploy_tests::{Output, PgServer, fixtures, pre_deploy, run, unused_port};

/// `pre-deploy restore ARGS --store STORE --source db=URL --yes`, without waiting for a lock.
fn restore(store: &Path, url: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = pre_deploy();
    cmd.args(["restore", "last", "--yes", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"))
        .args(args);
    cmd
}

fn committed_backups(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("backups"))
        .map(|dirs| {
            dirs.flatten()
                .filter(|d| d.path().join("manifest.json").exists())
                .map(|d| d.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn run_exits_3_when_the_backup_cannot_be_taken_and_the_deploy_does_not_run() {
    let server = PgServer::shared();
    let db = server.create_database("x3");
    fixtures::load_varied(server, &db);
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work dir");
    let marker = work.path().join("deployed");
    let tools = tool_dir(FakePgDump::KilledMidStream);
    let out = run(pre_deploy()
        .args(["run", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .env("PREDEPLOY_PG_BINDIR", tools.path())
        .current_dir(work.path()));
    out.assert_code(3);
    out.assert_stderr_contains("pg_dump was killed by signal 9 (SIGKILL)");
    out.assert_stderr_contains("REFUSED (exit 3): the deploy command did not run");
    assert!(!marker.exists(), "the deploy command never ran");
    assert!(
        committed_backups(store.path()).is_empty(),
        "no backup was committed"
    );
    assert!(
        !work.path().join(".last-deployment-backup").exists(),
        "no backup is named for the deploy"
    );
}

#[test]
fn restore_to_an_unreachable_server_exits_5() {
    let server = PgServer::shared();
    let db = small_database(server, "x5down");
    let store = tempfile::tempdir().expect("store");
    let _ = backup_id(store.path(), &server.url(&db), "default");
    let port = unused_port();
    let out = run(&mut restore(
        store.path(),
        &format!("postgres://postgres:pw@127.0.0.1:{port}/{db}"),
        &[],
    ));
    out.assert_code(5);
    out.assert_stderr_contains(&format!("127.0.0.1:{port}"));
    assert_eq!(
        backups(store.path(), "default").len(),
        1,
        "no safety backup"
    );
}

#[test]
fn missing_client_tools_exit_5_for_backup_and_restore() {
    let server = PgServer::shared();
    let db = small_database(server, "x5tools");
    let store = tempfile::tempdir().expect("store");
    let _ = backup_id(store.path(), &server.url(&db), "default");
    let before = content(server, &db);
    let empty = tempfile::tempdir().expect("an empty tool dir");

    let out = run(pre_deploy()
        .args(["backup", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("PREDEPLOY_PG_BINDIR", empty.path()));
    out.assert_code(5);
    out.assert_stderr_contains(&format!("PREDEPLOY_PG_BINDIR={}", empty.path().display()));

    let out =
        run(restore(store.path(), &server.url(&db), &[]).env("PREDEPLOY_PG_BINDIR", empty.path()));
    out.assert_code(5);
    out.assert_stderr_contains(&format!("PREDEPLOY_PG_BINDIR={}", empty.path().display()));
    assert_eq!(content(server, &db), before, "the target is untouched");
    assert_eq!(
        backups(store.path(), "default").len(),
        1,
        "neither command stored a backup"
    );
}

/// A backup that needs pgcrypto, restored into PostgreSQL 18 from PyPI (built without OpenSSL,
/// it has no pgcrypto) with PostgreSQL 18's own tools: refused with exit 5 in preflight, naming
/// the extension, the target untouched.
#[test]
fn restore_into_a_server_that_cannot_install_an_extension_exits_5() {
    let server = PgServer::shared();
    let db = server.create_database("x5ext");
    server.psql(
        &db,
        "CREATE EXTENSION pgcrypto; CREATE TABLE digests AS SELECT g AS id, digest(g::text, 'sha256') AS d FROM generate_series(1, 10) g;",
    );
    let store = tempfile::tempdir().expect("store");
    let _ = backup_id(store.path(), &server.url(&db), "default");

    let bin18 = pg18_bin_dir();
    let target = PgServer::start_in(&bin18);
    let target_db = target.create_database("x5ext_target");
    target.psql(&target_db, "CREATE TABLE kept AS SELECT 1 AS x");
    let before = content(&target, &target_db);
    let out = run(restore(
        store.path(),
        &server.url(&db),
        &["--to", &target.url(&target_db)],
    )
    .env("PREDEPLOY_PG_BINDIR", &bin18));
    out.assert_code(5);
    out.assert_stderr_contains(
        "the backup needs extension(s) pgcrypto that the target server cannot install",
    );
    assert_eq!(
        content(&target, &target_db),
        before,
        "the target is untouched"
    );
    assert_eq!(
        backups(store.path(), "default").len(),
        1,
        "no safety backup"
    );
}

/// A `run` whose deploy command touches `started`, then waits for `release`; in a process group
/// of its own, killed when the group is dropped (a failing test leaves nothing behind).
fn holding_run(store: &Path, url: &str, work: &Path) -> (Child, ProcessGroup) {
    let started = work.join("started");
    let release = work.join("release");
    let (child, group) = ProcessGroup::spawn(
        pre_deploy()
            .args(["run", "--verify-level", "checksum", "--store"])
            .arg(store)
            .arg("--source")
            .arg(format!("db={url}"))
            .args(["--", "sh", "-c"])
            .arg(format!(
                "touch '{}'; while [ ! -e '{}' ]; do sleep 0.1; done",
                started.display(),
                release.display()
            ))
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(
        wait_until(Duration::from_secs(120), || started.exists()),
        "the holding run reached its deploy command"
    );
    (child, group)
}

#[test]
fn restore_exits_6_while_another_run_holds_the_lock() {
    let server = PgServer::shared();
    let db = small_database(server, "x6");
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work dir");
    let (holder, _group) = holding_run(store.path(), &server.url(&db), work.path());
    server.psql(&db, "DELETE FROM notes WHERE id > 10");
    let changed = content(server, &db);

    let out = run(&mut restore(store.path(), &server.url(&db), &[]));
    out.assert_code(6);
    out.assert_stderr_contains(&format!("pid {} (run", holder.id()));
    out.assert_stderr_contains("--wait-lock");
    assert_eq!(content(server, &db), changed, "the target is untouched");
    assert_eq!(
        backups(store.path(), "default").len(),
        1,
        "only the holder's backup, no safety backup"
    );

    std::fs::write(work.path().join("release"), "").expect("release the holder");
    let held = holder.wait_with_output().expect("the holder exits");
    assert_eq!(
        held.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );
    // With the lock free, the same restore goes through.
    run(&mut restore(store.path(), &server.url(&db), &[])).assert_success();
    assert_ne!(content(server, &db), changed, "restored");
}

/// A run whose lease is removed while its dump is in progress (what another run taking over an
/// expired lease does) exits 6 before committing: no backup, and the deploy command does not run.
#[test]
fn run_exits_6_when_its_lease_is_lost_before_commit() {
    let server = PgServer::shared();
    let db = small_database(server, "x6lost");
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work dir");
    let marker = work.path().join("deployed");
    let tools = tool_dir(FakePgDump::PausesUntilResumed);
    let (child, _group) = ProcessGroup::spawn(
        pre_deploy()
            .args(["run", "--verify-level", "checksum", "--store"])
            .arg(store.path())
            .arg("--source")
            .arg(format!("db={}", server.url(&db)))
            .arg("--")
            .arg("touch")
            .arg(&marker)
            .env("PREDEPLOY_PG_BINDIR", tools.path())
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(
        wait_until(Duration::from_secs(60), || tools
            .path()
            .join(PAUSED_MARKER)
            .exists()),
        "pg_dump has dumped and waits"
    );
    let leases = store.path().join("locks/default");
    let removed: Vec<_> = std::fs::read_dir(&leases)
        .expect("the lease folder")
        .flatten()
        .map(|e| {
            std::fs::remove_file(e.path()).expect("remove the lease");
            e.file_name()
        })
        .collect();
    assert_eq!(removed.len(), 1, "one lease was held: {removed:?}");
    std::fs::write(tools.path().join(RESUME_MARKER), "").expect("resume pg_dump");

    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("the lock for environment default was lost"),
        "{stderr}"
    );
    assert!(
        stderr.contains("REFUSED (exit 6): the deploy command did not run"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the deploy command never ran");
    assert!(
        committed_backups(store.path()).is_empty(),
        "nothing was committed"
    );
}

/// A directory restore that fails part-way (a file of the target is in the way of a directory
/// the backup needs) exits 8, says the write failed part-way, and names the safety snapshot
/// holding the target's previous state.
#[test]
fn a_directory_restore_that_cannot_write_exits_8_naming_the_safety_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("sub")).expect("mkdir");
    std::fs::write(files.join("sub/a.txt"), b"alpha").expect("write");
    std::fs::write(files.join("b.txt"), b"beta").expect("write");
    let store = dir.path().join("store");
    let store = store.to_str().expect("utf-8 path");
    let cli = |source: &str, args: &[&str]| -> Output {
        run(pre_deploy()
            .args(["--store", store, "--source", source, "--json"])
            .args(args))
    };
    let source = format!("files=file://{}", files.display());
    cli(&source, &["backup"]).assert_success();

    // The target holds a plain file where the backup has the directory `sub`.
    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("sub"), b"in the way").expect("write");
    let out = cli(
        &source,
        &[
            "restore",
            "last",
            "--source",
            "files",
            "--to",
            &format!("file://{}", target.display()),
            "--yes",
        ],
    );
    out.assert_code(8);
    out.assert_stderr_contains(&format!(
        "writing into {} failed part-way",
        target.display()
    ));
    out.assert_stderr_contains("its previous state is in safety backup");
    assert_eq!(
        std::fs::read(target.join("sub")).expect("still a file"),
        b"in the way"
    );
    let listed = run(pre_deploy().args(["--store", store, "--json", "list"]));
    listed.assert_success();
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    let kinds: Vec<&str> = v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["safety", "manual"], "{}", listed.stdout);
}
