//! Every failure class of a backup, provoked for real: the documented exit code, a message that
//! names the problem, no manifest for the broken backup, and the earlier backup untouched.

use std::path::Path;

use predeploy_tests::fakes::{FakePgDump, tool_dir};
use predeploy_tests::{Output, PgServer, fixtures, pre_deploy, run, unused_port};

/// A database big enough that its dump is well past 64 KiB.
fn big_database(server: &PgServer) -> String {
    let db = server.create_database("fail");
    fixtures::load_varied(server, &db);
    server.psql(
        &db,
        "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g",
    );
    db
}

fn backup(store: &Path, url: &str, extra_env: &[(&str, &Path)]) -> Output {
    let mut cmd = pre_deploy();
    cmd.args(["backup", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// Backup ids with a manifest, and every directory under backups/.
fn store_state(store: &Path) -> (Vec<String>, Vec<String>) {
    let dirs: Vec<String> = std::fs::read_dir(store.join("backups"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let committed = dirs
        .iter()
        .filter(|d| store.join("backups").join(d).join("manifest.json").exists())
        .cloned()
        .collect();
    (committed, dirs)
}

/// Takes one good backup and returns its id.
fn good_backup(store: &Path, url: &str) -> String {
    backup(store, url, &[]).assert_success();
    let (committed, _) = store_state(store);
    assert_eq!(committed.len(), 1);
    committed[0].clone()
}

fn assert_untouched(store: &Path, good: &str) {
    let (committed, dirs) = store_state(store);
    assert_eq!(
        committed,
        vec![good.to_owned()],
        "only the earlier backup is committed"
    );
    assert_eq!(
        dirs,
        vec![good.to_owned()],
        "no leftovers of the failed backup remain"
    );
    let out = run(pre_deploy().args(["verify", good, "--store"]).arg(store));
    out.assert_success();
}

#[test]
fn pg_dump_killed_mid_stream_is_refused_with_exit_3_and_leaves_nothing() {
    let server = PgServer::shared();
    let db = big_database(server);
    let store = tempfile::tempdir().expect("store");
    let good = good_backup(store.path(), &server.url(&db));
    let tools = tool_dir(FakePgDump::KilledMidStream);
    let out = backup(
        store.path(),
        &server.url(&db),
        &[("PREDEPLOY_PG_BINDIR", tools.path())],
    );
    out.assert_code(3);
    out.assert_stderr_contains(
        "pg_dump was killed by signal 9 (SIGKILL) after writing 65536 bytes",
    );
    out.assert_stderr_contains("REFUSED (exit 3)");
    assert_untouched(store.path(), &good);
}

#[test]
fn pg_dump_writing_nothing_is_a_failed_backup() {
    let server = PgServer::shared();
    let db = server.create_database("empty");
    let store = tempfile::tempdir().expect("store");
    let tools = tool_dir(FakePgDump::EmptyOutput);
    let out = backup(
        store.path(),
        &server.url(&db),
        &[("PREDEPLOY_PG_BINDIR", tools.path())],
    );
    out.assert_code(3);
    out.assert_stderr_contains("pg_dump exited successfully but wrote nothing");
    assert_eq!(store_state(store.path()), (vec![], vec![]));
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_in_preflight() {
    let server = PgServer::shared();
    let db = server.create_database("old");
    let store = tempfile::tempdir().expect("store");
    let tools = tool_dir(FakePgDump::TooOld);
    let out = backup(
        store.path(),
        &server.url(&db),
        &[("PREDEPLOY_PG_BINDIR", tools.path())],
    );
    out.assert_code(5);
    out.assert_stderr_contains("pg_dump 15 or newer is needed");
    out.assert_stderr_contains("found only pg_dump (PostgreSQL) 9.6.24");
    out.assert_stderr_contains("postgresql-client-15");
    assert_eq!(store_state(store.path()), (vec![], vec![]));
}

#[test]
fn a_wrong_password_is_refused_in_preflight_without_showing_it() {
    let server = PgServer::shared();
    let db = server.create_database("pw");
    let store = tempfile::tempdir().expect("store");
    let wrong = "not-the-password-42";
    let out = backup(store.path(), &server.url_with("postgres", wrong, &db), &[]);
    out.assert_code(5);
    out.assert_stderr_contains("password authentication failed for user \"postgres\"");
    assert!(
        out.stderr.contains("PGPASSWORD"),
        "the message says where the password comes from: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(wrong) && !out.stdout.contains(wrong),
        "the password is never printed"
    );
    assert_eq!(store_state(store.path()), (vec![], vec![]));
}

#[test]
fn a_server_that_is_down_is_refused_in_preflight() {
    let store = tempfile::tempdir().expect("store");
    let port = unused_port();
    let out = backup(
        store.path(),
        &format!("postgres://postgres:pw@127.0.0.1:{port}/app"),
        &[],
    );
    out.assert_code(5);
    out.assert_stderr_contains(&format!(
        "cannot connect to postgres://postgres@127.0.0.1:{port}/app"
    ));
    out.assert_stderr_contains("is the server running");
    assert_eq!(store_state(store.path()), (vec![], vec![]));
}

#[test]
fn an_unusable_store_is_refused_in_preflight() {
    let server = PgServer::shared();
    let db = server.create_database("st");
    let file = tempfile::NamedTempFile::new().expect("a file where the store should be");
    let out = backup(file.path(), &server.url(&db), &[]);
    out.assert_code(5);
    out.assert_stderr_contains("the store");
}

#[test]
fn a_flipped_byte_fails_verification_with_exit_4_naming_the_artifact() {
    let server = PgServer::shared();
    let db = big_database(server);
    let store = tempfile::tempdir().expect("store");
    let id = good_backup(store.path(), &server.url(&db));
    let dump = store
        .path()
        .join(format!("backups/{id}/data/db/dump.pgc.zst"));
    let mut bytes = std::fs::read(&dump).expect("dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, bytes).expect("write");
    // Level 1 alone catches it: the checksum rung, not a later one.
    let out = run(pre_deploy()
        .args(["verify", "last", "--level", "checksum", "--store"])
        .arg(store.path()));
    out.assert_code(4);
    out.assert_stderr_contains("db/dump.pgc.zst: the stored bytes are corrupted");
    let out = run(pre_deploy()
        .args(["verify", "last", "--store"])
        .arg(store.path()));
    out.assert_code(4);
    out.assert_stderr_contains("db/dump.pgc.zst: the stored bytes are corrupted");
    assert!(
        out.stderr.contains("zstd decompression failed"),
        "level 2 catches it too: {}",
        out.stderr
    );
    // The failure is recorded next to the manifest, and the listing shows it.
    let list = run(pre_deploy().args(["list", "--store"]).arg(store.path()));
    assert!(list.stdout.contains("FAILED"), "{}", list.stdout);
}

#[test]
fn a_truncated_artifact_fails_verification_with_exit_4() {
    let server = PgServer::shared();
    let db = big_database(server);
    let store = tempfile::tempdir().expect("store");
    let id = good_backup(store.path(), &server.url(&db));
    let dump = store
        .path()
        .join(format!("backups/{id}/data/db/dump.pgc.zst"));
    let len = std::fs::metadata(&dump).expect("dump").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&dump)
        .expect("open");
    f.set_len(len * 2 / 3).expect("truncate");
    let out = run(pre_deploy()
        .args(["verify", &id, "--store"])
        .arg(store.path()));
    out.assert_code(4);
    out.assert_stderr_contains("db/dump.pgc.zst: the stored artifact is truncated");
}

#[test]
fn a_missing_artifact_fails_verification_with_exit_4() {
    let server = PgServer::shared();
    let db = server.create_database("miss");
    let store = tempfile::tempdir().expect("store");
    let id = good_backup(store.path(), &server.url(&db));
    std::fs::remove_file(
        store
            .path()
            .join(format!("backups/{id}/data/db/globals.sql.zst")),
    )
    .expect("remove");
    let out = run(pre_deploy()
        .args(["verify", "last", "--store"])
        .arg(store.path()));
    out.assert_code(4);
    out.assert_stderr_contains("db/globals.sql.zst: the artifact is missing");

    // The dump itself, at every level: level 1 names it, and no level passes without it.
    std::fs::remove_file(
        store
            .path()
            .join(format!("backups/{id}/data/db/dump.pgc.zst")),
    )
    .expect("remove");
    for level in ["checksum", "archive", "restore"] {
        let out = run(pre_deploy()
            .args(["verify", "last", "--level", level, "--store"])
            .arg(store.path())
            .arg("--source")
            .arg(format!("db={}", server.url(&db))));
        out.assert_code(4);
        out.assert_stderr_contains("db/dump.pgc.zst: the artifact is missing");
    }
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("predeploy.toml"), "stor = \"/x\"\n").expect("write");
    let out = run(pre_deploy().arg("list").current_dir(dir.path()));
    out.assert_code(2);
    out.assert_stderr_contains("unknown field `stor`");

    let out = run(pre_deploy()
        .args(["backup", "--source", "db"])
        .current_dir(dir.path()));
    out.assert_code(2);
    let out = run(pre_deploy()
        .args([
            "backup",
            "--store",
            "/tmp/x",
            "--source",
            "db=redis://a@b/c",
        ])
        .env("PREDEPLOY_CONFIG", "/dev/null"));
    out.assert_code(2);
    out.assert_stderr_contains("not supported by this version yet");
    let out = run(pre_deploy()
        .args(["show", "20990101T000000Z-abcdef", "--store"])
        .arg(dir.path())
        .env("PREDEPLOY_CONFIG", "/dev/null"));
    out.assert_code(2);
    out.assert_stderr_contains("there is no backup 20990101T000000Z-abcdef");
    // A read-only command never creates a mistyped store: it says the store is not there.
    let typo = dir.path().join("no-such-store");
    let out = run(pre_deploy()
        .args(["list", "--store"])
        .arg(&typo)
        .env("PREDEPLOY_CONFIG", "/dev/null"));
    out.assert_code(5);
    out.assert_stderr_contains("the directory does not exist");
    assert!(!typo.exists(), "list did not create the store");
    let out = run(pre_deploy().arg("frobnicate"));
    out.assert_code(2);
}

#[test]
fn an_application_role_that_is_not_a_superuser_gets_a_backup_and_a_note() {
    let server = PgServer::shared();
    let role = format!("app_{}", std::process::id());
    let db = server.create_database("owned");
    server.psql(&db, &format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'app-pass-9'; ALTER DATABASE {db} OWNER TO {role}; GRANT CREATE ON SCHEMA public TO {role};"
    ));
    server.psql(&db, &format!("SET ROLE {role}; CREATE TABLE public.items AS SELECT g AS id FROM generate_series(1, 100) g;"));
    let store = tempfile::tempdir().expect("store");
    let url = server.url_with(&role, "app-pass-9", &db);
    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}")));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let source = &v["manifest"]["sources"][0];
    let notes = source["notes"].to_string();
    assert!(notes.contains("without their passwords"), "{notes}");
    assert_eq!(source["stats"]["tables"][0]["rows"], 100);

    // A table the role may not read is caught in preflight, before anything is written.
    server.psql(
        &db,
        "CREATE TABLE public.secrets (k text); REVOKE ALL ON public.secrets FROM PUBLIC;",
    );
    let store2 = tempfile::tempdir().expect("store");
    let out = run(pre_deploy()
        .args(["backup", "--store"])
        .arg(store2.path())
        .arg("--source")
        .arg(format!("db={url}")));
    out.assert_code(5);
    out.assert_stderr_contains("cannot read public.secrets");
    assert!(!out.stderr.contains("app-pass-9"));
}
