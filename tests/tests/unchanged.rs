//! `run` on a PostgreSQL database nobody touched deploys on the newest restore-verified backup
//! instead of taking a new one, and records the new release against it; a write anywhere in
//! the cluster, a sequence moved without a write, unlogged tables and `--fresh` each mean a new
//! backup. A server of its own: other tests' writes would move the write-ahead log.

use std::path::Path;
use std::time::Duration;

use predeploy_tests::cli::{git, git_commit};
use predeploy_tests::{Output, PgServer, pre_deploy, run};

/// `pre-deploy run -- true` in `work` on `url`, reuse allowed (the harness sets
/// `PREDEPLOY_FRESH` for every other test).
fn gate(work: &Path, url: &str, extra: &[&str]) -> Output {
    let out = run(pre_deploy()
        .env_remove("PREDEPLOY_FRESH")
        .current_dir(work)
        .env("DATABASE_URL", url)
        .arg("run")
        .args(extra)
        .args(["--", "true"]));
    out.assert_success();
    out
}

/// The ids of the backups in `work`'s store, oldest first.
fn backups(work: &Path) -> Vec<String> {
    let out = run(pre_deploy().current_dir(work).args(["list", "--json"]));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let mut ids: Vec<String> = v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// Every deployment record of `work`'s store: (backup id, commit), oldest first.
fn deployments(work: &Path) -> Vec<(String, String)> {
    let dir = work.join(".pre-deploy/deployments/default");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("deployments")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).expect("record")).expect("json");
            (
                v["backup_id"].as_str().unwrap_or_default().to_owned(),
                v["commit"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Lets the cluster settle: hint bits set and statistics current (so neither a read nor
/// autovacuum writes), a checkpoint, then [`wait_quiet`]. The second `VACUUM` removes the
/// `pg_statistic` rows `ANALYZE` replaced: left in place, the planner's first reads of them
/// prune those pages, which writes to the log in the middle of the backup (seen in CI).
fn settle(server: &PgServer, db: &str) {
    server.psql(db, "VACUUM ANALYZE");
    server.psql(db, "VACUUM");
    server.psql(db, "CHECKPOINT");
    wait_quiet(server, db);
}

/// Waits until the write-ahead log stays put for 30 s: after a write, the background writer
/// logs a snapshot of running transactions within 15 s, or 25 s when it hibernates
/// (`wal_level` replica), which a backup taken meanwhile would see move.
fn wait_quiet(server: &PgServer, db: &str) {
    for _ in 0..6 {
        let before = wal_position(server, db);
        std::thread::sleep(Duration::from_secs(30));
        if wal_position(server, db) == before {
            return;
        }
    }
    panic!("the write-ahead log of the test's own server never stopped moving");
}

fn wal_position(server: &PgServer, db: &str) -> String {
    server
        .psql(db, "SELECT pg_current_wal_insert_lsn()")
        .trim()
        .to_owned()
}

#[test]
fn an_unchanged_database_is_deployed_on_its_verified_backup_and_any_change_means_a_new_one() {
    let server = PgServer::start();
    let db = server.create_database("still");
    server.psql(
        &db,
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 500) g;",
    );
    settle(&server, &db);
    let url = server.url(&db);
    let work = tempfile::tempdir().expect("work");
    git(work.path(), &["init", "-q", "-b", "main"]);
    let first_commit = git_commit(work.path(), &["--allow-empty"], "release 1");

    // The first run backs up and verifies to level 4.
    let out = gate(work.path(), &url, &[]);
    assert!(!out.stderr.contains("no new backup"), "{}", out.stderr);
    let first = backups(work.path());
    assert_eq!(first.len(), 1);

    // Nothing happened since: the second run (another release) deploys on that backup.
    let second_commit = git_commit(work.path(), &["--allow-empty"], "release 2");
    let out = gate(work.path(), &url, &["--json"]);
    out.assert_stderr_contains(&format!(
        "no new backup: no source changed since backup {}, verified to level restore",
        first[0]
    ));
    let json = out.json();
    assert_eq!(json["id"], first[0].as_str(), "{json:#}");
    assert!(json["unchanged"].is_string(), "{json:#}");
    assert_eq!(backups(work.path()), first, "no new backup");
    assert_eq!(
        deployments(work.path()),
        vec![
            (first[0].clone(), first_commit.clone()),
            (first[0].clone(), second_commit.clone()),
        ],
        "the second release is recorded against the first backup"
    );
    let last = std::fs::read_to_string(work.path().join(".last-deployment-backup"))
        .expect("the last-deployment file");
    assert!(last.contains(&first[0]), "{last}");

    // --fresh takes one anyway.
    gate(work.path(), &url, &["--fresh"]);
    assert_eq!(backups(work.path()).len(), 2);

    // A write, even in another database of the cluster, moves the write-ahead log.
    let other = server.create_database("elsewhere");
    server.psql(&other, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let out = gate(work.path(), &url, &[]);
    assert!(!out.stderr.contains("no new backup"), "{}", out.stderr);
    out.assert_stderr_contains("write-ahead log moved");
    assert_eq!(backups(work.path()).len(), 3);

    // A sequence moved without a write (nextval pre-logs 32 values) is caught by the sequence
    // digest (or by the position, were the log written after all): a new backup either way.
    settle(&server, &db);
    server.psql(&db, "SELECT nextval('items_id_seq')");
    wait_quiet(&server, &db);
    gate(work.path(), &url, &[]);
    let count = backups(work.path()).len();
    server.psql(&db, "SELECT nextval('items_id_seq')");
    let out = gate(work.path(), &url, &[]);
    assert!(!out.stderr.contains("no new backup"), "{}", out.stderr);
    assert_eq!(backups(work.path()).len(), count + 1, "{}", out.stderr);

    // Unlogged tables leave no trace in the log: a backup of such a database records no
    // position, so it is never reused.
    server.psql(&db, "CREATE UNLOGGED TABLE scratchpad (x int)");
    settle(&server, &db);
    let out = gate(work.path(), &url, &[]);
    out.assert_stderr_contains("1 unlogged table(s) or sequence(s)");
    let count = backups(work.path()).len();
    let out = gate(work.path(), &url, &[]);
    assert!(!out.stderr.contains("no new backup"), "{}", out.stderr);
    assert_eq!(backups(work.path()).len(), count + 1);
}

#[test]
fn a_backup_verified_below_the_required_level_is_not_reused() {
    let server = PgServer::start();
    let db = server.create_database("lowlevel");
    server.psql(&db, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    settle(&server, &db);
    let url = server.url(&db);
    let work = tempfile::tempdir().expect("work");
    gate(work.path(), &url, &["--verify-level", "checksum"]);
    let out = gate(work.path(), &url, &[]);
    assert!(!out.stderr.contains("no new backup"), "{}", out.stderr);
    out.assert_stderr_contains("this run requires 4 (restore)");
    assert_eq!(backups(work.path()).len(), 2);
    // The level-4 backup is then reused.
    let out = gate(work.path(), &url, &[]);
    out.assert_stderr_contains("no new backup");
    assert_eq!(backups(work.path()).len(), 2);
}

#[test]
fn a_source_that_offers_no_proof_always_gets_a_new_backup() {
    let src = tempfile::tempdir().expect("src");
    std::fs::write(src.path().join("a.txt"), "alpha").expect("write");
    let source = format!("files=file://{}", src.path().display());
    let work = tempfile::tempdir().expect("work");
    let gate = || {
        let out = run(pre_deploy()
            .env_remove("PREDEPLOY_FRESH")
            .current_dir(work.path())
            .args(["run", "--source", &source, "--", "true"]));
        out.assert_success();
        out
    };
    gate();
    let out = gate();
    out.assert_stderr_contains(
        "taking a new backup: source files: directory sources offer no proof that nothing changed",
    );
    assert_eq!(backups(work.path()).len(), 2, "{}", out.stderr);
}
