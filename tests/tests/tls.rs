//! Databases that accept only TLS (issue 13, item 1): a server of its own with a `hostssl`-only
//! `pg_hba.conf` and certificates made by the test ([`TlsServer`]). Every connection the tool
//! makes (its own, `pg_dump`, the level-4 `pg_restore`, `restore`) must use TLS, or the server
//! refuses it; a certificate that does not verify is exit 5 naming `sslrootcert`.

use std::path::Path;

use predeploy_tests::cli::assert_level_4;
use predeploy_tests::restoring::content;
use predeploy_tests::tls::{CERT_USER, TlsServer};
use predeploy_tests::{Output, fixtures, pre_deploy, run};

/// A backup whose test restore goes to the source's own server, over TLS too.
fn backup(store: &Path, url: &str) -> Output {
    run(pre_deploy()
        .args([
            "backup",
            "--json",
            "--verify-restore-url",
            "source",
            "--store",
        ])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}")))
}

fn database(server: &TlsServer, prefix: &str) -> String {
    let db = server.pg.create_database(prefix);
    fixtures::load_varied(&server.pg, &db);
    db
}

#[test]
fn the_default_sslmode_uses_tls_like_pg_dump_does_and_reaches_level_4() {
    // Before TLS was built in, our own connection went in plaintext with the default `prefer`
    // (while pg_dump used TLS), so a TLS-only server refused the run with exit 5.
    let server = TlsServer::start();
    let db = database(&server, "prefer");
    let store = tempfile::tempdir().expect("store");
    assert_level_4(&backup(store.path(), &server.url("127.0.0.1", &db, "")));
}

#[test]
fn require_and_verify_full_with_the_right_ca_back_up_to_level_4() {
    let server = TlsServer::start();
    let db = database(&server, "verify");
    let ca = server.files.ca();
    for url in [
        server.url("127.0.0.1", &db, "sslmode=require"),
        server.url(
            "localhost",
            &db,
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        ),
        server.url(
            "127.0.0.1",
            &db,
            &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
        ),
    ] {
        let store = tempfile::tempdir().expect("store");
        assert_level_4(&backup(store.path(), &url));
    }
}

#[test]
fn a_certificate_from_another_ca_is_refused_with_exit_5_naming_sslrootcert() {
    let server = TlsServer::start();
    let db = server.pg.create_database("wrongca");
    let store = tempfile::tempdir().expect("store");
    let url = server.url(
        "localhost",
        &db,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            server.files.wrong_ca().display()
        ),
    );
    let out = backup(store.path(), &url);
    out.assert_code(5).assert_stderr_contains("sslrootcert");
    assert!(
        !out.stderr.contains(server.pg.password()),
        "no password in: {}",
        out.stderr
    );
    assert!(
        !store.path().join("backups").exists()
            || std::fs::read_dir(store.path().join("backups"))
                .expect("list")
                .next()
                .is_none(),
        "nothing was written"
    );
}

#[test]
fn sslmode_disable_against_a_tls_only_server_says_the_server_wants_tls() {
    let server = TlsServer::start();
    let db = server.pg.create_database("plain");
    let store = tempfile::tempdir().expect("store");
    backup(
        store.path(),
        &server.url("127.0.0.1", &db, "sslmode=disable"),
    )
    .assert_code(5)
    .assert_stderr_contains("accepts only TLS");
}

#[test]
fn a_client_certificate_logs_in_without_a_password() {
    let server = TlsServer::start();
    let db = database(&server, "cert");
    let store = tempfile::tempdir().expect("store");
    let f = &server.files;
    let url = format!(
        "postgres://{CERT_USER}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        server.pg.port(),
        f.ca().display(),
        f.client_cert().display(),
        f.client_key().display()
    );
    assert_level_4(&backup(store.path(), &url));
}

#[test]
fn channel_binding_require_works_over_tls_and_refuses_without_it() {
    let server = TlsServer::start();
    let db = database(&server, "bind");
    let store = tempfile::tempdir().expect("store");
    assert_level_4(&backup(
        store.path(),
        &server.url("127.0.0.1", &db, "sslmode=require&channel_binding=require"),
    ));
    backup(
        store.path(),
        &server.url("127.0.0.1", &db, "sslmode=disable&channel_binding=require"),
    )
    .assert_code(5);
}

#[test]
fn run_and_restore_over_tls_bring_the_database_back() {
    let server = TlsServer::start();
    let db = database(&server, "runrestore");
    let store = tempfile::tempdir().expect("store");
    let url = server.url(
        "localhost",
        &db,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            server.files.ca().display()
        ),
    );
    let before = content(&server.pg, &db);
    // The run writes its last-deployment file into its working directory.
    let work = tempfile::tempdir().expect("workdir");
    run(pre_deploy()
        .current_dir(work.path())
        .args(["run", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}"))
        .args(["--", "true"]))
    .assert_success();
    server.pg.psql(
        &db,
        "CREATE TABLE after_deploy (id int); UPDATE customers SET email = 'changed@example.com';",
    );
    assert_ne!(content(&server.pg, &db), before, "the deploy changed data");
    run(pre_deploy()
        .args(["restore", "last", "--yes", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}")))
    .assert_success();
    assert_eq!(
        content(&server.pg, &db),
        before,
        "restored over TLS to the backup's content"
    );
}
