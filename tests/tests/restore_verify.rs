//! Level 4: every backup is test-restored into a scratch database and compared with what was
//! recorded at dump time. Fidelity is also checked independently of the tool's own checks.

use std::path::Path;
use std::time::Duration;

use predeploy_tests::pg::wait_until;
use predeploy_tests::{
    Output, PgServer, assert_same_database, dump_path, fixtures, pre_deploy, restore_artifact, run,
};

/// Extensions, generated columns, row-level security, comments and grants on top of the varied
/// fixture.
const EXTRAS: &str = "
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
DO $$ BEGIN CREATE ROLE reporting_ro NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE public.accounts (
    id int PRIMARY KEY,
    owner text NOT NULL,
    attrs hstore,
    secret bytea,
    net numeric(12,2) NOT NULL,
    gross numeric(12,2) GENERATED ALWAYS AS (net * 1.19) STORED
);
INSERT INTO public.accounts (id, owner, attrs, secret, net)
SELECT g, 'owner' || (g % 7), hstore('tier', (g % 3)::text), digest(g::text, 'sha256'), g * 1.5
FROM generate_series(1, 300) g;
ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY accounts_owner ON public.accounts USING (owner = current_user);
COMMENT ON TABLE public.accounts IS 'Accounts with row-level security';
COMMENT ON COLUMN public.accounts.gross IS 'net plus VAT, generated';
GRANT SELECT ON public.accounts TO reporting_ro;
";

fn backup(store: &Path, url: &str, extra: &[&str]) -> Output {
    run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"))
        .args(extra))
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

fn scratch_databases(server: &PgServer) -> Vec<String> {
    server
        .psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'predeploy_scratch_%'",
        )
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_varied_database_with_extensions_is_verified_by_a_test_restore() {
    // Its own server: it asserts that no scratch database is left, which sibling tests running
    // in parallel on the shared server would make racy.
    let server = &PgServer::start();
    let db = server.create_database("l4");
    fixtures::load_varied(server, &db);
    server.psql(&db, EXTRAS);
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &server.url(&db), &[]);
    out.assert_success();
    let v = json(&out);
    let record = &v["verification"];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    assert_eq!(record["passed"], true);
    let findings = record["findings"].as_array().expect("findings");
    for check in [
        "sha256",
        "zstd-frames",
        "pg-restore-toc",
        "pg-restore",
        "row-counts",
        "schema-fingerprint",
    ] {
        assert!(
            findings
                .iter()
                .any(|f| f["check"] == check && f["status"] == "passed"),
            "{check} passed: {record:#}"
        );
    }
    let timed: Vec<&str> = record["timings"]
        .as_array()
        .expect("timings")
        .iter()
        .filter_map(|t| t["level"].as_str())
        .collect();
    assert!(
        timed.contains(&"restore") && timed.contains(&"decompress"),
        "each level is timed: {timed:?}"
    );
    assert!(
        scratch_databases(server).is_empty(),
        "the scratch database was dropped"
    );

    // Independently of the tool: restore with plain pg_restore and compare schema and content.
    let id = v["id"].as_str().expect("id");
    let copy = restore_artifact(server, &dump_path(store.path(), id), "l4_copy");
    assert_same_database(server, &db, server, &copy);
}

#[test]
fn a_manifest_whose_row_counts_disagree_with_the_dump_fails_naming_the_table() {
    // Its own server: it asserts that no scratch database is left, which sibling tests running
    // in parallel on the shared server would make racy.
    let server = &PgServer::start();
    let db = server.create_database("l4count");
    fixtures::load_varied(server, &db);
    let store = tempfile::tempdir().expect("store");
    let v = json(&backup(
        store.path(),
        &server.url(&db),
        &["--verify-level", "checksum"],
    ));
    let id = v["id"].as_str().expect("id");
    let path = store.path().join(format!("backups/{id}/manifest.json"));
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let tables = manifest["sources"][0]["stats"]["tables"]
        .as_array_mut()
        .expect("tables");
    let orders = tables
        .iter_mut()
        .find(|t| t["name"] == "orders")
        .expect("orders recorded");
    orders["rows"] = serde_json::json!(1999);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("json")).expect("write");

    let out = run(pre_deploy()
        .args(["verify", id, "--level", "restore", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db))));
    out.assert_code(4);
    out.assert_stderr_contains(
        "table public.orders has 2000 rows in the restored copy, the backup recorded 1999",
    );
    assert!(
        scratch_databases(server).is_empty(),
        "the scratch database was dropped after the failure"
    );
}

/// A backup big enough that its test restore takes seconds, and `verify --level restore` of it
/// running against a fresh scratch server, returned once pg_restore is writing its data.
fn test_restore_in_progress(prefix: &str) -> (tempfile::TempDir, PgServer, std::process::Child) {
    let source = PgServer::shared();
    let db = source.create_database(prefix);
    source.psql(&db, "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b FROM generate_series(1, 600000) g;
                      CREATE INDEX ON big (a); CREATE INDEX ON big (b);");
    let store = tempfile::tempdir().expect("store");
    let v = json(&backup(
        store.path(),
        &source.url(&db),
        &["--verify-level", "checksum"],
    ));
    let id = v["id"].as_str().expect("id").to_owned();
    let scratch_server = PgServer::start();
    let child = pre_deploy()
        .args(["verify", &id, "--level", "restore", "--store"])
        .arg(store.path())
        .arg("--verify-restore-url")
        .arg(scratch_server.url("postgres"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    assert!(
        wait_until(Duration::from_secs(60), || restoring_data(&scratch_server)),
        "the test restore is writing into its scratch database"
    );
    (store, scratch_server, child)
}

/// Whether pg_restore is writing into a scratch database of `server` (a `COPY` or a `CREATE
/// INDEX` of it is running).
fn restoring_data(server: &PgServer) -> bool {
    server
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'predeploy_scratch_%'
             AND state = 'active' AND (query LIKE 'COPY %' OR query LIKE 'CREATE INDEX %')",
        )
        .trim()
        != "0"
}

#[test]
fn a_scratch_server_that_goes_away_mid_restore_fails_verification() {
    let (_store, mut scratch_server, child) = test_restore_in_progress("l4gone");
    scratch_server.stop();
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("db/dump.pgc.zst"),
        "names the artifact: {stderr}"
    );
    let explained = [
        "the test restore into",
        "cannot inspect the restored database",
        "cannot count the restored rows",
        "cannot read the restored schema",
    ];
    assert!(
        explained.iter().any(|e| stderr.contains(e)),
        "says the restore broke: {stderr}"
    );
}

#[test]
fn leftover_scratch_databases_of_dead_runs_are_dropped_by_the_next_run() {
    // Its own server: it asserts that no scratch database is left, which sibling tests running
    // in parallel on the shared server would make racy.
    let server = &PgServer::start();
    let db = server.create_database("l4left");
    server.psql(&db, "CREATE TABLE t AS SELECT 1 AS x");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    // A pid that cannot be alive (above the kernel's maximum).
    server.psql(
        "postgres",
        "CREATE DATABASE predeploy_scratch_4999999_abcdef",
    );
    server.psql("postgres", &format!(
        "COMMENT ON DATABASE predeploy_scratch_4999999_abcdef IS '{{\"owner\":\"pre-deploy\",\"host\":\"{host}\",\"pid\":4999999,\"created_at\":\"2026-01-01T00:00:00Z\"}}'"
    ));
    let store = tempfile::tempdir().expect("store");
    // Leftovers are collected on the server that hosts the test restore.
    backup(
        store.path(),
        &server.url(&db),
        &["--verify-restore-url", "source"],
    )
    .assert_success();
    assert!(
        !scratch_databases(server).contains(&"predeploy_scratch_4999999_abcdef".to_owned()),
        "the leftover was dropped"
    );
}

#[test]
fn check_passes_only_for_a_matching_backup_verified_far_enough() {
    let server = PgServer::shared();
    let db = server.create_database("chk");
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g",
    );
    let work = tempfile::tempdir().expect("work");
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(work.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .status()
            .expect("git")
            .success();
        assert!(ok);
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "one"]);
    let sha = String::from_utf8(
        std::process::Command::new("git")
            .arg("-C")
            .arg(work.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("git")
            .stdout,
    )
    .expect("utf8")
    .trim()
    .to_owned();
    let check = |args: &[&str]| {
        run(pre_deploy()
            .arg("check")
            .args(args)
            .current_dir(work.path()))
    };

    let out = check(&["--commit", &sha]);
    out.assert_code(5); // no store yet
    // A backup verified only to level 3: `check --level restore` says why it is not enough.
    run(pre_deploy()
        .args(["backup", "--verify-level", "archive"])
        .env("DATABASE_URL", server.url(&db))
        .current_dir(work.path()))
    .assert_success();
    check(&["--commit", &sha]).assert_success();
    let out = check(&["--commit", &sha, "--level", "restore"]);
    out.assert_code(7);
    out.assert_stderr_contains("verified only to level 3 (archive)");

    // Verified at level 4: now it passes, for the full SHA and a prefix, within a max age.
    run(pre_deploy()
        .args(["verify", "last", "--level", "restore"])
        .env("DATABASE_URL", server.url(&db))
        .current_dir(work.path()))
    .assert_success();
    check(&["--commit", &sha, "--level", "restore", "--max-age", "1h"]).assert_success();
    check(&["--commit", &sha[..8]]).assert_success();
    let out = check(&["--commit", "0123456789abcdef"]);
    out.assert_code(7);
    out.assert_stderr_contains("no backup protects");
    check(&["--commit", "xyz"]).assert_code(2);
    check(&["--max-age", "soon"]).assert_code(2);
}

#[test]
fn an_interrupted_test_restore_drops_its_scratch_database() {
    let (_store, scratch_server, child) = test_restore_in_progress("l4intr");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("was interrupted by SIGTERM; the backup stays"),
        "{stderr}"
    );
    assert!(
        scratch_databases(&scratch_server).is_empty(),
        "the scratch database was dropped on the way out"
    );
}

#[test]
fn a_staged_archive_left_by_a_killed_run_is_removed_by_the_next_one() {
    let server = PgServer::shared();
    let db = server.create_database("l4stage");
    server.psql(&db, "CREATE TABLE t AS SELECT 1 AS x");
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("predeploy.toml");
    std::fs::write(
        &config,
        format!("[verify]\ntemp_dir = \"{}\"\n", tmp.path().display()),
    )
    .expect("config");
    // pid 4999999 cannot be alive (above the kernel's maximum).
    let stale = tmp.path().join("predeploy-verify-4999999-abc123");
    std::fs::write(&stale, b"half a dump").expect("stale file");
    let store = tempfile::tempdir().expect("store");
    run(pre_deploy()
        .args(["backup", "--verify-level", "restore", "--config"])
        .arg(&config)
        .arg("--store")
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db))))
    .assert_success();
    assert!(!stale.exists(), "the stale staged archive was removed");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("predeploy.toml")],
        "and this run removed its own"
    );
}
