//! Databases reached through an SSH jump host (issue 13, item 2): `?via=ssh://…` makes the tool
//! forward a local port with the system's `ssh` ([`SshServer`] is a real `sshd` on loopback), and
//! every connection — its own, `pg_dump`, the level-4 `pg_restore`, `restore` — goes through
//! it: `sshd`'s log shows each forwarded connection to the database's port. Host key problems and
//! refused keys are exit 5 with ssh's own words; no `ssh` outlives the run, also when the run is
//! interrupted or killed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use predeploy_tests::mysql::{MariaDbServer, table_hashes};
use predeploy_tests::pg::wait_until;
use predeploy_tests::restoring::{
    Paused, content, databases_containing, restore_command, small_database,
};
use predeploy_tests::ssh::{JUMP, SshServer, UNKNOWN_HOST_KEY, WRONG_KEY};
use predeploy_tests::tls::TlsServer;
use predeploy_tests::{Output, PgServer, finding, fixtures, pre_deploy, run};

/// `url` reached via `ssh://ALIAS` (the database's host and port stay as the jump host sees
/// them: 127.0.0.1 and the server's port).
fn via(url: &str, alias: &str) -> String {
    format!("{url}?via=ssh://{alias}")
}

/// `pre-deploy` using the test's ssh configuration and no agent of the machine.
fn tool(ssh: &SshServer) -> Command {
    let mut cmd = pre_deploy();
    cmd.env("PREDEPLOY_SSH_COMMAND", ssh.ssh_command())
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

fn backup(ssh: &SshServer, store: &Path, url: &str) -> Output {
    run(tool(ssh)
        .args(["backup", "--json", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}")))
}

fn assert_no_ssh_left(ssh: &SshServer) {
    let gone = wait_until(Duration::from_secs(10), || ssh.ssh_clients().is_empty());
    assert!(
        gone,
        "ssh processes outlived the run: {:?}",
        ssh.ssh_clients()
    );
}

fn assert_nothing_written(store: &Path) {
    let backups = store.join("backups");
    assert!(
        !backups.exists() || std::fs::read_dir(&backups).expect("list").next().is_none(),
        "nothing was written"
    );
}

#[test]
fn run_verifies_at_level_4_and_restore_brings_the_database_back_all_through_the_tunnel() {
    let ssh = SshServer::start();
    let pg = PgServer::start();
    let db = pg.create_database("viassh");
    fixtures::load_varied(&pg, &db);
    let url = via(&pg.url(&db), JUMP);
    let before = content(&pg, &db);
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("workdir");

    let out = run(tool(&ssh)
        .current_dir(work.path())
        .args(["run", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}"))
        // The test restore on the source's server, through the tunnel too.
        .args(["--verify-restore-url", "source", "--", "true"]));
    predeploy_tests::cli::assert_level_4(&out);
    assert!(!out.stdout.contains(pg.password()) && !out.stderr.contains(pg.password()));
    // Our connection, pg_dump, pg_dumpall, the scratch database and pg_restore: all forwarded.
    let forwarded = ssh.forwards_to("127.0.0.1", pg.port());
    assert!(
        forwarded >= 4,
        "sshd forwarded {forwarded} connections to the database:\n{}",
        ssh.log()
    );
    // The manifest records the source as written, jump host included, without the password.
    let shown = run(tool(&ssh)
        .args(["show", "last", "--json", "--store"])
        .arg(store.path()));
    shown.assert_success();
    let text = shown.stdout;
    assert!(
        text.contains(&format!(
            "postgres://postgres@127.0.0.1:{}/{db}?via=ssh://{JUMP}",
            pg.port()
        )),
        "{text}"
    );
    assert!(!text.contains(pg.password()), "{text}");
    assert_no_ssh_left(&ssh);

    pg.psql(
        &db,
        "CREATE TABLE after_deploy (id int); UPDATE customers SET email = 'changed@example.com';",
    );
    assert_ne!(content(&pg, &db), before, "the deploy changed data");
    let through_before = ssh.forwards_to("127.0.0.1", pg.port());
    run(tool(&ssh)
        .current_dir(work.path())
        .args(["restore", "last", "--yes", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}")))
    .assert_success();
    assert_eq!(
        content(&pg, &db),
        before,
        "restored through the tunnel to the backup's content"
    );
    assert!(
        ssh.forwards_to("127.0.0.1", pg.port()) > through_before,
        "the restore went through the tunnel"
    );
    assert_no_ssh_left(&ssh);

    // The runbook's raw commands, for an operator without pre-deploy, open the same tunnel
    // (the URL's host is the jump host's view) and close it when they end.
    pg.psql(&db, "UPDATE customers SET email = 'changed again';");
    let shown = run(tool(&ssh)
        .args(["show", "last", "--json", "--store"])
        .arg(store.path()));
    shown.assert_success();
    let raw = predeploy_tests::cli::raw_runbook(&shown.stdout);
    assert!(raw.contains("ssh -f -N -M"), "{raw}");
    // The operator's `ssh` reads their ~/.ssh/config; this test's reads the test's.
    let bin = tempfile::tempdir().expect("bin");
    let wrapper = bin.path().join("ssh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
            ssh.ssh_config().display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let through_before = ssh.forwards_to("127.0.0.1", pg.port());
    let out = run(Command::new("sh")
        .current_dir(work.path())
        .args(["-e", "-c", &raw])
        .env(
            "PATH",
            format!(
                "{}:{}:{}",
                bin.path().display(),
                pg.bin_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", pg.password())
        .env_remove("SSH_AUTH_SOCK"));
    out.assert_success();
    assert_eq!(
        content(&pg, &db),
        before,
        "the raw commands restored it through their tunnel"
    );
    assert!(ssh.forwards_to("127.0.0.1", pg.port()) > through_before);
    assert_no_ssh_left(&ssh);
}

#[test]
fn an_unknown_host_key_is_refused_with_exit_5_and_ssh_s_words() {
    let ssh = SshServer::start();
    let pg = PgServer::shared();
    let db = pg.create_database("sshhostkey");
    let store = tempfile::tempdir().expect("store");
    let out = backup(&ssh, store.path(), &via(&pg.url(&db), UNKNOWN_HOST_KEY));
    out.assert_code(5)
        .assert_stderr_contains("Host key verification failed")
        .assert_stderr_contains("known_hosts");
    assert!(!out.stderr.contains(pg.password()), "{}", out.stderr);
    assert_nothing_written(store.path());
    assert_eq!(ssh.forwards_to("127.0.0.1", pg.port()), 0);
    assert_no_ssh_left(&ssh);
}

#[test]
fn a_refused_key_is_exit_5_with_ssh_s_words() {
    let ssh = SshServer::start();
    let pg = PgServer::shared();
    let db = pg.create_database("sshkey");
    let store = tempfile::tempdir().expect("store");
    let out = backup(&ssh, store.path(), &via(&pg.url(&db), WRONG_KEY));
    out.assert_code(5)
        .assert_stderr_contains("Permission denied")
        .assert_stderr_contains("IdentityFile");
    assert!(!out.stderr.contains(pg.password()), "{}", out.stderr);
    assert_nothing_written(store.path());
    assert_no_ssh_left(&ssh);
}

#[test]
fn a_killed_run_takes_its_ssh_with_it_and_an_interrupted_restore_cleans_up_through_the_tunnel() {
    let ssh = SshServer::start();
    let pg = PgServer::shared();
    let db = small_database(pg, "sshkill");
    let url = via(&pg.url(&db), JUMP);

    // kill -9 mid-backup: the kernel's parent-death signal ends ssh too.
    let store = tempfile::tempdir().expect("store");
    let mut cmd = tool(&ssh);
    cmd.args(["backup", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}"));
    let paused = Paused::start(cmd, "before-manifest");
    let clients = ssh.ssh_clients();
    assert_eq!(clients.len(), 1, "one ssh for the whole run: {clients:?}");
    let argv = std::fs::read(format!("/proc/{}/cmdline", clients[0])).expect("cmdline");
    let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
    assert!(!argv.contains(pg.password()), "{argv}");
    assert!(
        argv.contains(&format!(":127.0.0.1:{}", pg.port())),
        "the forward names the database as the jump host sees it: {argv}"
    );
    paused.signal("KILL");
    assert_eq!(paused.wait().code, 128 + 9);
    assert_no_ssh_left(&ssh);

    // SIGTERM mid-restore: ssh is in its own process group and stays up while pre-deploy drops
    // the half-restored database through it, then goes.
    let store = tempfile::tempdir().expect("store");
    backup(&ssh, store.path(), &url).assert_success();
    let mut cmd = restore_command(store.path(), &url, &["last", "--yes"]);
    cmd.env("PREDEPLOY_SSH_COMMAND", ssh.ssh_command())
        .env_remove("SSH_AUTH_SOCK");
    let paused = Paused::start(cmd, "restored");
    paused.signal("TERM");
    let out = paused.wait();
    out.assert_code(8)
        .assert_stderr_contains("interrupted by SIGTERM")
        .assert_stderr_contains("untouched");
    assert!(
        databases_containing(pg, &format!("{db}__predeploy_")).is_empty(),
        "the scratch database was dropped through the tunnel: {:?}",
        databases_containing(pg, &format!("{db}__predeploy_"))
    );
    assert_no_ssh_left(&ssh);
}

#[test]
fn a_mariadb_source_backs_up_verifies_at_level_4_and_restores_through_the_tunnel() {
    let ssh = SshServer::start();
    let server = MariaDbServer::shared();
    let db = server.create_database("viassh");
    server.sql(
        &db,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);
         INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'drei');
         CREATE VIEW named AS SELECT name FROM items;",
    );
    let url = via(&server.url(&db), JUMP);
    let store = tempfile::tempdir().expect("store");
    let out = backup(&ssh, store.path(), &url);
    out.assert_success();
    let v = out.json();
    let record = &v["verification"];
    assert_eq!(record["level_reached"], "restore", "{v:#}");
    for check in ["mysql-restore", "row-counts", "schema-fingerprint"] {
        assert_eq!(finding(record, check)["status"], "passed", "{record:#}");
    }
    assert!(!out.stdout.contains(server.password()) && !out.stderr.contains(server.password()));
    // Our connections, mariadb-dump and the level-4 replay into the scratch database.
    let forwarded = ssh.forwards_to("127.0.0.1", server.port());
    assert!(
        forwarded >= 3,
        "sshd forwarded {forwarded} connections to the database:\n{}",
        ssh.log()
    );
    let shown = run(tool(&ssh)
        .args(["show", "last", "--json", "--store"])
        .arg(store.path()));
    assert!(
        shown.stdout.contains(&format!(
            "127.0.0.1:{}/{db}?via=ssh://{JUMP}",
            server.port()
        )),
        "the location keeps the jump host: {}",
        shown.stdout
    );
    assert_no_ssh_left(&ssh);

    // `restore` through the tunnel: the safety backup, the restore into a new database, the
    // swap and the check all reach the server via ssh.
    let before = table_hashes(server, &db);
    server.sql(
        &db,
        "UPDATE items SET name = 'changed'; DELETE FROM items WHERE id = 3;",
    );
    assert_ne!(table_hashes(server, &db), before);
    let through_before = ssh.forwards_to("127.0.0.1", server.port());
    let mut cmd = restore_command(store.path(), &url, &["last", "--yes"]);
    cmd.env("PREDEPLOY_SSH_COMMAND", ssh.ssh_command())
        .env_remove("SSH_AUTH_SOCK");
    run(&mut cmd).assert_success();
    assert_eq!(
        table_hashes(server, &db),
        before,
        "restored through the tunnel"
    );
    assert!(ssh.forwards_to("127.0.0.1", server.port()) > through_before);
    assert_no_ssh_left(&ssh);
}

#[test]
fn verify_full_through_the_tunnel_checks_the_certificate_against_the_url_s_host() {
    // The connection goes to 127.0.0.1:<tunnel>, but the certificate names `localhost`, the
    // URL's host: libpq's and the driver's `hostaddr` keep the name for the check.
    let ssh = SshServer::start();
    let server = TlsServer::start();
    let db = server.pg.create_database("sshtls");
    fixtures::load_varied(&server.pg, &db);
    let store = tempfile::tempdir().expect("store");
    let ca = server.files.ca();
    let url = server.url(
        "localhost",
        &db,
        &format!(
            "sslmode=verify-full&sslrootcert={}&via=ssh://{JUMP}",
            ca.display()
        ),
    );
    let out = backup(&ssh, store.path(), &url);
    out.assert_success();
    assert_eq!(out.json()["verification"]["level_reached"], "restore");
    assert!(
        ssh.forwards_to("localhost", server.pg.port()) >= 3,
        "{}",
        ssh.log()
    );
    let wrong = server.url(
        "localhost",
        &db,
        &format!(
            "sslmode=verify-full&sslrootcert={}&via=ssh://{JUMP}",
            server.files.wrong_ca().display()
        ),
    );
    backup(&ssh, store.path(), &wrong)
        .assert_code(5)
        .assert_stderr_contains("sslrootcert");
    assert_no_ssh_left(&ssh);
}

#[test]
fn a_database_the_jump_host_cannot_reach_is_exit_5_saying_so() {
    let ssh = SshServer::start();
    let store = tempfile::tempdir().expect("store");
    // Nothing listens on this port: ssh logs in, but the jump host's connection is refused.
    let url = format!(
        "postgres://postgres:pw@127.0.0.1:{}/app?via=ssh://{JUMP}",
        predeploy_tests::unused_port()
    );
    let out = backup(&ssh, store.path(), &url);
    out.assert_code(5).assert_stderr_contains("jump host");
    assert_nothing_written(store.path());
    assert_no_ssh_left(&ssh);
}
