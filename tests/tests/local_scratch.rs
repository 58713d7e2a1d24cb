//! `--verify-restore-url local`: level 4 in a throwaway cluster started on this machine, so a
//! production server never hosts the test restore; the backup's roles are replayed there, so
//! owners and grants are still proven.

use predeploy_tests::cli::finding;
use predeploy_tests::{PgServer, fixtures, pre_deploy, run};

fn scratch_databases(server: &PgServer) -> String {
    server.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'predeploy_scratch_%'",
    )
}

#[test]
fn level_4_in_a_throwaway_local_cluster_proves_data_schema_and_grants() {
    let server = PgServer::start();
    let db = server.create_database("local");
    fixtures::load_fidelity(&server, &db);
    let store = tempfile::tempdir().expect("store");
    let temp = tempfile::tempdir().expect("temp");
    // Watch the source server for scratch databases while the backup runs.
    let out = run(pre_deploy()
        .args([
            "backup",
            "--json",
            "--verify-restore-url",
            "local",
            "--store",
        ])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("TMPDIR", temp.path()));
    out.assert_success();
    let v = out.json();
    let record = &v["verification"];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    for check in [
        "row-counts",
        "schema-fingerprint",
        "sequences",
        "privileges",
    ] {
        assert_eq!(
            finding(record, check)["status"],
            "passed",
            "{check}: {record:#}"
        );
    }
    let restored_on = finding(record, "pg-restore")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !restored_on.contains(&format!(":{}/", server.port())),
        "not restored on the source server: {restored_on}"
    );
    assert_eq!(scratch_databases(&server).trim(), "0");
    let left: Vec<_> = std::fs::read_dir(temp.path())
        .expect("temp")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the local cluster was removed: {left:?}");
}

/// The `pg-restore` finding's message: where the test restore ran, and why there.
fn restored_on(out: &predeploy_tests::Output) -> String {
    let v = out.json();
    let record = &v["verification"];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    finding(record, "pg-restore")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn backup(
    server: &PgServer,
    db: &str,
    temp: &std::path::Path,
    extra: &[&str],
) -> predeploy_tests::Output {
    let store = tempfile::tempdir().expect("store");
    run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .args(extra)
        .arg("--source")
        .arg(format!("db={}", server.url(db)))
        .env("TMPDIR", temp))
}

#[test]
fn by_default_the_test_restore_runs_in_a_local_cluster_when_this_machine_has_the_server() {
    // This machine has PostgreSQL 15's server binaries, the source's own major: the default
    // keeps the test restore off the source server.
    let server = PgServer::start();
    let db = server.create_database("localdefault");
    fixtures::load_fidelity(&server, &db);
    let temp = tempfile::tempdir().expect("temp");
    let out = backup(&server, &db, temp.path(), &[]);
    out.assert_success();
    let on = restored_on(&out);
    assert!(
        !on.contains(&format!(":{}/", server.port())),
        "not restored on the source server: {on}"
    );
    assert_eq!(scratch_databases(&server).trim(), "0");
    let record = &out.json()["verification"];
    assert_eq!(
        finding(record, "privileges")["status"],
        "passed",
        "owners and grants are still proven: {record:#}"
    );

    // `source` asks for the source's own server.
    let out = backup(
        &server,
        &db,
        temp.path(),
        &["--verify-restore-url", "source"],
    );
    out.assert_success();
    let on = restored_on(&out);
    assert!(
        on.contains(&format!(":{}/", server.port())),
        "restored on the source server: {on}"
    );
}

/// A temp dir readable by the `postgres` OS user the harness runs servers as.
fn shared_temp() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn without_the_server_binaries_of_the_backup_s_version_the_source_server_hosts_it_and_says_why() {
    // pre-deploy is pointed at a directory with PostgreSQL 15's client tools only, as on a
    // deploy host with the client package and no server package.
    let server = PgServer::start();
    let db = server.create_database("localnone");
    fixtures::load_varied(&server, &db);
    let clients = shared_temp();
    for tool in ["pg_dump", "pg_dumpall", "pg_restore", "psql"] {
        std::os::unix::fs::symlink(server.bin_dir().join(tool), clients.path().join(tool))
            .expect("symlink");
    }
    let temp = tempfile::tempdir().expect("temp");
    let store = tempfile::tempdir().expect("store");
    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("PREDEPLOY_PG_BINDIR", clients.path())
        .env("TMPDIR", temp.path()));
    out.assert_success();
    let on = restored_on(&out);
    assert!(
        on.contains(&format!(":{}/", server.port())) && on.contains("the source's own server"),
        "restored on the source server, saying so: {on}"
    );
    assert!(
        on.contains("install postgresql-15"),
        "says how to avoid it: {on}"
    );
}

#[test]
fn a_backup_needing_an_extension_this_machine_lacks_is_test_restored_on_the_source_server() {
    // A copy of PostgreSQL 15's installation without hstore: the local cluster started from it
    // cannot install the extension the backup needs, the source server can.
    let server = PgServer::start();
    let db = server.create_database("localext");
    fixtures::load_varied(&server, &db);
    server.psql(
        &db,
        "CREATE EXTENSION hstore; CREATE TABLE tagged (id int PRIMARY KEY, tags hstore); \
         INSERT INTO tagged VALUES (1, 'a=>1'), (2, 'b=>2')",
    );
    let install = shared_temp();
    let bin = server.bin_dir().canonicalize().expect("bin dir");
    let version_dir = bin.parent().expect("version dir");
    let major = version_dir.file_name().expect("major").to_owned();
    let share = std::path::Path::new("/usr/share/postgresql").join(&major);
    let copy = |from: &std::path::Path| {
        let to = install
            .path()
            .join(from.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(&to)
            .status()
            .expect("cp");
        assert!(status.success(), "copy {}", from.display());
        to
    };
    let copied_bin = copy(version_dir).join("bin");
    let copied_share = copy(&share);
    for entry in std::fs::read_dir(copied_share.join("extension"))
        .expect("extensions")
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("hstore") {
            std::fs::remove_file(entry.path()).expect("remove");
        }
    }
    // Every directory on the way is readable by the postgres user.
    let status = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(install.path())
        .status()
        .expect("chmod");
    assert!(status.success());

    let temp = tempfile::tempdir().expect("temp");
    let store = tempfile::tempdir().expect("store");
    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("PREDEPLOY_PG_BINDIR", &copied_bin)
        .env("TMPDIR", temp.path()));
    out.assert_success();
    let on = restored_on(&out);
    assert!(
        on.contains(&format!(":{}/", server.port())) && on.contains("extension(s) hstore"),
        "restored on the source server, naming the extension: {on}"
    );
    assert_eq!(
        scratch_databases(&server).trim(),
        "0",
        "the scratch database is dropped"
    );
}

#[test]
fn a_local_cluster_left_by_a_killed_run_is_stopped_and_removed_by_the_next() {
    let server = PgServer::start();
    let db = server.create_database("localkill");
    fixtures::load_varied(&server, &db);
    server.psql(
        &db,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g",
    );
    let temp = tempfile::tempdir().expect("temp");
    let store = tempfile::tempdir().expect("store");
    let mut child = pre_deploy()
        .args(["backup", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("TMPDIR", temp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait for the local cluster's server to run, then kill pre-deploy.
    let postmaster_pid = || -> Option<(std::path::PathBuf, u32)> {
        std::fs::read_dir(temp.path())
            .ok()?
            .flatten()
            .find_map(|e| {
                let dir = e.path();
                let pid = std::fs::read_to_string(dir.join("data/postmaster.pid")).ok()?;
                let pid: u32 = pid.lines().next()?.trim().parse().ok()?;
                Some((dir, pid))
            })
    };
    let mut found = None;
    assert!(
        predeploy_tests::pg::wait_until(std::time::Duration::from_secs(120), || {
            found = postmaster_pid();
            found.is_some()
        }),
        "a local cluster started"
    );
    child.kill().expect("kill -9");
    let _ = child.wait();
    let (dir, pid) = found.expect("found");
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pid), "the orphaned server runs on after kill -9");

    let out = backup(&server, &db, temp.path(), &[]);
    out.assert_success();
    assert!(!dir.exists(), "the leftover cluster's dir is removed");
    assert!(
        predeploy_tests::pg::wait_until(std::time::Duration::from_secs(30), || !alive(pid)),
        "the leftover server is stopped"
    );
}
