//! Databases that accept only TLS (issue 13, item 1): a server of its own with a `hostssl`-only
//! `pg_hba.conf` and certificates made by the test ([`TlsServer`]). Every connection the tool
//! makes (its own, `pg_dump`, the level-4 `pg_restore`, `restore`) must use TLS, or the server
//! refuses it; a certificate that does not verify is exit 5 naming `sslrootcert`.

use std::path::Path;

use predeploy_tests::cli::assert_level_4;
use predeploy_tests::restoring::content;
use predeploy_tests::tls::{CERT_USER, CLIENT_KEY_PASSWORD, TlsServer};
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

/// The client-certificate URL of [`CERT_USER`] (the server's `cert` auth: no password) with
/// `key` and `sslpassword=password` (percent-encoded).
fn cert_url(server: &TlsServer, db: &str, key: &Path, password: &str) -> String {
    let f = &server.files;
    let password: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "postgres://{CERT_USER}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}&sslpassword={password}",
        server.pg.port(),
        f.ca().display(),
        f.client_cert().display(),
        key.display()
    )
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).expect("read")));
        }
    }
    out
}

/// `backup` with `XDG_RUNTIME_DIR` set to `runtime` (where the tools' decrypted key copy goes).
fn backup_with_runtime_dir(store: &Path, url: &str, runtime: &Path) -> Output {
    run(pre_deploy()
        .env("XDG_RUNTIME_DIR", runtime)
        .args(["backup", "--json", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}")))
}

#[test]
fn an_encrypted_client_key_with_sslpassword_backs_up_to_level_4_and_the_passphrase_stays_secret() {
    // Issue 13: encrypted keys were refused. Our connection decrypts the key in memory; pg_dump
    // and the level-4 pg_restore log in with the same certificate (the server's `cert` auth
    // for this user), through a decrypted 0600 copy that is gone when the run ends.
    let server = TlsServer::start();
    let db = database(&server, "sslpw");
    let store = tempfile::tempdir().expect("store");
    let runtime = tempfile::tempdir().expect("runtime dir");
    let url = cert_url(
        &server,
        &db,
        &server.files.client_key_pkcs8(),
        CLIENT_KEY_PASSWORD,
    );
    let out = backup_with_runtime_dir(store.path(), &url, runtime.path());
    assert_level_4(&out);
    let secret = "Xyzzy";
    assert!(
        !out.stdout.contains(secret) && !out.stderr.contains(secret),
        "the passphrase is shown:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let files = files_under(store.path());
    assert!(!files.is_empty(), "the backup was stored");
    for (path, bytes) in files {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the passphrase is in {}",
            path.display()
        );
    }
    assert!(
        std::fs::read_dir(runtime.path())
            .expect("list")
            .next()
            .is_none(),
        "the decrypted copy of the key was removed"
    );
}

#[test]
fn a_wrong_sslpassword_or_a_legacy_encrypted_key_is_exit_5_without_the_passphrase() {
    let server = TlsServer::start();
    let db = server.pg.create_database("sslpwbad");
    let f = &server.files;
    for (key, password, says) in [
        (f.client_key_pkcs8(), "Plugh-wrong", "sslpassword"),
        (
            f.client_key_legacy(),
            CLIENT_KEY_PASSWORD,
            "openssl pkcs8 -topk8",
        ),
    ] {
        let store = tempfile::tempdir().expect("store");
        let runtime = tempfile::tempdir().expect("runtime dir");
        let out = backup_with_runtime_dir(
            store.path(),
            &cert_url(&server, &db, &key, password),
            runtime.path(),
        );
        out.assert_code(5).assert_stderr_contains(says);
        for secret in ["Plugh", "Xyzzy"] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "the passphrase is shown:\n{}\n{}",
                out.stdout,
                out.stderr
            );
        }
        assert!(
            !store.path().join("backups").exists()
                || std::fs::read_dir(store.path().join("backups"))
                    .expect("list")
                    .next()
                    .is_none(),
            "nothing was written"
        );
        assert!(
            std::fs::read_dir(runtime.path())
                .expect("list")
                .next()
                .is_none(),
            "no decrypted copy is left"
        );
    }
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
