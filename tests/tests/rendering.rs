//! The text users read, compared whole with snapshots in `tests/snapshots/` (`list`, `show` with
//! its runbook, and a refusal with its exit code). A change to any of it shows up as a diff here;
//! run with `UPDATE_SNAPSHOTS=1` to accept it, then review the snapshot files.

use std::path::Path;

use predeploy_tests::compare::first_difference;
use predeploy_tests::{pre_deploy, run};

/// A stored backup with fixed ids, times, digests and release, never verified.
const MANIFEST: &str = r#"{"format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "pre-deploy",
 "environment": "default", "created_at": "2026-11-22T03:15:00Z", "finished_at": "2026-11-22T03:15:07Z",
 "tool": {"name": "pre-deploy", "version": "0.1.0"}, "host": "web1",
 "deploy": {"commit": "0123456789abcdef0123456789abcdef01234567", "branch": "main", "dirty": false},
 "sources": [{"name": "db", "kind": "postgres", "location": "postgres://app@db:5432/shop",
   "server_version": "15.20", "tool_version": "pg_dump (PostgreSQL) 15.20",
   "artifacts": [{"name": "dump.pgc.zst", "key": "backups/20261122T031500Z-7f3a9c/data/db/dump.pgc.zst",
      "format": "pg_dump-custom", "compression": "zstd", "stored_size": 1048576, "raw_size": 3145728,
      "sha256": "sha256:abababababababababababababababababababababababababababababababab"}],
   "stats": {"tables": [{"schema": "public", "name": "orders", "rows": 2000}],
             "schema_fingerprint": "v2:sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}}]}"#;

/// `text` with the store's path replaced by `<STORE>`, equal to the snapshot `name`.
fn assert_snapshot(name: &str, store: &Path, text: &str) {
    let canonical = store.canonicalize().expect("store path");
    let text = text
        .replace(&canonical.display().to_string(), "<STORE>")
        .replace(&store.display().to_string(), "<STORE>");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    if let Some(diff) = first_difference(&want, &text) {
        panic!("{name} differs from its snapshot:\n{diff}");
    }
}

fn store_with_a_backup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let backup = dir.path().join("store/backups/20261122T031500Z-7f3a9c");
    std::fs::create_dir_all(&backup).expect("mkdir");
    std::fs::write(backup.join("manifest.json"), MANIFEST).expect("manifest");
    dir
}

#[test]
fn list_show_and_a_refused_check_read_as_their_snapshots() {
    let dir = store_with_a_backup();
    let store = dir.path().join("store");

    let list = run(pre_deploy().arg("--store").arg(&store).arg("list"));
    list.assert_success();
    assert_snapshot("list.txt", &store, &list.stdout);

    let show = run(pre_deploy()
        .arg("--store")
        .arg(&store)
        .args(["show", "last"]));
    show.assert_success();
    assert_snapshot("show.txt", &store, &show.stdout);

    let check = run(pre_deploy().arg("--store").arg(&store).arg("check"));
    check.assert_code(7);
    assert_snapshot("check-refused.txt", &store, &check.stderr);
}
