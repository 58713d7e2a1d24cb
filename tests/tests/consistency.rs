//! The statistics in the manifest come from the dump's own snapshot, even while the application
//! keeps writing; and an interrupted backup leaves nothing behind.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use predeploy_tests::fakes::{FakePgDump, STALLED_MARKER, tool_dir};
use predeploy_tests::pg::wait_until;
use predeploy_tests::{PgServer, dump_path, pre_deploy, restore_artifact, run};

#[test]
fn row_counts_match_the_dump_while_writes_continue() {
    let server = PgServer::shared();
    let db = server.create_database("busy");
    server.psql(
        &db,
        "CREATE TABLE events (id bigserial PRIMARY KEY, payload text);
         CREATE TABLE audit (id bigserial PRIMARY KEY, event_id bigint);
         INSERT INTO events (payload) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 200000) g;",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, batches, db) = (stop.clone(), batches.clone(), db.clone());
        std::thread::spawn(move || {
            let server = PgServer::shared();
            while !stop.load(Ordering::SeqCst) {
                server.psql(
                    &db,
                    "WITH e AS (INSERT INTO events (payload) SELECT md5(g::text) FROM generate_series(1, 500) g RETURNING id)
                     INSERT INTO audit (event_id) SELECT id FROM e;",
                );
                batches.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || batches.load(Ordering::SeqCst)
            >= 3),
        "the writer runs"
    );

    let store = tempfile::tempdir().expect("store");
    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db))));
    let during = batches.load(Ordering::SeqCst);
    let went_on = wait_until(Duration::from_secs(10), || {
        batches.load(Ordering::SeqCst) > during
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");
    out.assert_success();
    assert!(went_on, "writes went on while and after the backup ran");

    let result: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let id = result["id"].as_str().expect("id");
    let recorded = |table: &str| {
        result["manifest"]["sources"][0]["stats"]["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .find(|t| t["name"] == table)
            .and_then(|t| t["rows"].as_i64())
            .expect("table recorded")
    };

    // Restore the dump and count: the manifest's numbers are the dump's numbers.
    let restored = restore_artifact(server, &dump_path(store.path(), id), "busy_restored");
    let count = |db: &str, table: &str| -> i64 {
        server
            .psql(db, &format!("SELECT count(*) FROM {table}"))
            .trim()
            .parse()
            .expect("count")
    };
    assert_eq!(
        recorded("events"),
        count(&restored, "events"),
        "events: manifest = dump"
    );
    assert_eq!(
        recorded("audit"),
        count(&restored, "audit"),
        "audit: manifest = dump"
    );
    assert_eq!(
        recorded("events") - 200_000,
        recorded("audit"),
        "both tables from one snapshot"
    );
    assert!(
        count(&db, "events") > recorded("events"),
        "the source moved on after the snapshot"
    );
}

#[test]
fn an_interrupted_backup_is_cleaned_up_and_refused_with_exit_3() {
    let server = PgServer::shared();
    let db = server.create_database("intr");
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g",
    );
    let store = tempfile::tempdir().expect("store");
    let tools = tool_dir(FakePgDump::Stalls);
    let child = pre_deploy()
        .args(["backup", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("PREDEPLOY_PG_BINDIR", tools.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // Wait until the backup's data directory exists and pg_dump has passed on its first bytes
    // and hangs: the dump is mid-stream.
    let backups = store.path().join("backups");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_dir(&backups)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)),
        "the backup started"
    );
    assert!(
        wait_until(Duration::from_secs(20), || tools
            .path()
            .join(STALLED_MARKER)
            .exists()),
        "pg_dump is stalled mid-stream"
    );
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGINT; nothing was committed"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&backups)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no partial backup remains: {left:?}");
}
