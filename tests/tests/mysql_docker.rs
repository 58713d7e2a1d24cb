//! MariaDB inside a Docker container whose port is not published (issue 13, "Into a
//! container", for MySQL/MariaDB sources): `via=docker://CONTAINER` and
//! `via=docker-compose://PROJECT/SERVICE` reach it at the container's address, for our own
//! connection, `mariadb-dump`, the level-4 test restore into a scratch database on the same
//! server and `restore` (also with `--to`) alike. A stopped or missing container is exit 5
//! naming it; the password is in no process's argv (it comes from `~/.my.cnf`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use predeploy_tests::docker::run_scanning_argv;
use predeploy_tests::docker_mariadb::{DockerMariaDb, with_credentials};
use predeploy_tests::mysql::table_hashes;
use predeploy_tests::restoring::restore_command;
use predeploy_tests::{Output, pre_deploy, run};

const VARIED: &str = include_str!("../fixtures/mysql_varied.sql");

/// `pre-deploy ARGS --store STORE --source db=URL` with the container's password in the
/// `.my.cnf` of its `HOME` (not in the URL, so that no argv of ours holds it), in a temp
/// working dir.
fn command(db: &DockerMariaDb, store: &Path, work: &Path, args: &[&str], url: &str) -> Command {
    let mut cmd = pre_deploy();
    cmd.current_dir(work)
        .args(args)
        .arg("--store")
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"));
    with_credentials(&mut cmd, db);
    cmd
}

/// A `pre-deploy restore ARGS` of source `db` at `url`, credentials as for [`command`].
fn restore(db: &DockerMariaDb, store: &Path, url: &str, args: &[&str]) -> Command {
    let mut cmd = restore_command(store, url, args);
    with_credentials(&mut cmd, db);
    cmd
}

/// A backup reached level 4 (a test restore on the container's server) and passed, the
/// manifest names the container, not its passing address, and the row counts it recorded are
/// those of the database.
fn assert_level_4(out: &Output, via: &str, db: &DockerMariaDb, database: &str) {
    predeploy_tests::cli::assert_level_4(out);
    let json = out.json();
    let source = &json["manifest"]["sources"][0];
    let location = source["location"].as_str().unwrap_or_default();
    assert!(
        location.ends_with(&format!("@localhost:3306/{database}?via={via}")),
        "the location names {via}: {source:#}"
    );
    let recorded: BTreeMap<String, u64> = source["stats"]["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_owned(),
                t["rows"].as_u64().expect("rows"),
            )
        })
        .collect();
    let counted: BTreeMap<String, u64> = table_hashes(db, database)
        .into_iter()
        .map(|(table, hash)| {
            let rows = hash.split(' ').next().and_then(|n| n.parse().ok());
            (table, rows.expect("a row count"))
        })
        .collect();
    assert_eq!(
        recorded, counted,
        "the manifest's counts are the database's"
    );
    assert!(
        scratch_databases(db).is_empty(),
        "the level-4 scratch database is dropped"
    );
}

fn scratch_databases(db: &DockerMariaDb) -> Vec<String> {
    db.sql("", "SHOW DATABASES LIKE '%predeploy_verify%'")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn backup_run_and_restore_reach_a_mariadb_container_whose_port_is_not_published() {
    let db = DockerMariaDb::start("mdb-run");
    assert_eq!(db.published_ports(), "", "the port is not published");
    db.sql("app", VARIED);
    let before = table_hashes(&db, "app");
    let url = db.url("app");
    let via = format!("docker://{}", db.name());
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("workdir");

    // The backup, its level-4 test restore and every tool they start, watched from /proc.
    let (out, argv_with_password) = run_scanning_argv(
        &mut command(&db, store.path(), work.path(), &["backup", "--json"], &url),
        db.password(),
    );
    assert_level_4(&out, &via, &db, "app");
    assert!(
        argv_with_password.is_empty(),
        "the password is in these argv: {argv_with_password:?}"
    );
    assert!(!out.stdout.contains(db.password()) && !out.stderr.contains(db.password()));

    let mut run_cmd = command(&db, store.path(), work.path(), &["run"], &url);
    run(run_cmd.args(["--", "true"])).assert_success();
    db.sql(
        "app",
        "DELETE FROM audit_log; UPDATE customers SET name = 'gone'; \
         CREATE TABLE added_by_deploy (id INT PRIMARY KEY);",
    );
    assert_ne!(table_hashes(&db, "app"), before, "the deploy changed data");

    let (out, argv_with_password) = run_scanning_argv(
        &mut restore(&db, store.path(), &url, &["last", "--yes"]),
        db.password(),
    );
    out.assert_success();
    assert!(
        argv_with_password.is_empty(),
        "the password is in these argv: {argv_with_password:?}"
    );
    assert_eq!(
        table_hashes(&db, "app"),
        before,
        "restored into the container to the backup's content"
    );

    // `--to` another database of the same container, also reached through the container.
    let copy = db.url("app_copy");
    run(&mut restore(
        &db,
        store.path(),
        &url,
        &["last", "--yes", "--to", &copy],
    ))
    .assert_success();
    assert_eq!(table_hashes(&db, "app_copy"), before, "restored with --to");
}

#[test]
fn a_compose_service_is_found_by_its_project_and_service_labels() {
    let project = format!("pdmdb{}", std::process::id());
    let db = DockerMariaDb::start_compose("mdb-compose", &project, "mariadb");
    db.sql("app", VARIED);
    let via = format!("docker-compose://{project}/mariadb");
    let url = format!("mariadb://app@localhost:3306/app?via={via}");
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("workdir");
    let out = run(&mut command(
        &db,
        store.path(),
        work.path(),
        &["backup", "--json"],
        &url,
    ));
    assert_level_4(&out, &via, &db, "app");

    // A project with no such service says so, and how to start it.
    let missing = url.replace("/mariadb", "/db");
    run(&mut command(
        &db,
        store.path(),
        work.path(),
        &["backup"],
        &missing,
    ))
    .assert_code(5)
    .assert_stderr_contains("no container of Compose service \"db\"");
}

#[test]
fn a_stopped_or_missing_mariadb_container_is_exit_5_naming_it() {
    let db = DockerMariaDb::start("mdb-stopped");
    db.sql(
        "app",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);",
    );
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("workdir");
    let url = db.url("app");
    run(&mut command(
        &db,
        store.path(),
        work.path(),
        &["backup", "--verify-level", "archive"],
        &url,
    ))
    .assert_success();
    db.stop();
    run(&mut command(
        &db,
        store.path(),
        work.path(),
        &["backup"],
        &url,
    ))
    .assert_code(5)
    .assert_stderr_contains(db.name())
    .assert_stderr_contains("not running")
    .assert_stderr_contains(&format!("docker start {}", db.name()));

    let gone = format!("predeploy-missing-{}", std::process::id());
    let missing = format!("mysql://app@localhost/app?via=docker://{gone}");
    run(&mut command(
        &db,
        store.path(),
        work.path(),
        &["backup"],
        &missing,
    ))
    .assert_code(5)
    .assert_stderr_contains(&gone)
    .assert_stderr_contains("does not exist");

    // `restore` into the stopped container is refused the same way, before touching anything.
    run(&mut restore(&db, store.path(), &url, &["last", "--yes"]))
        .assert_code(5)
        .assert_stderr_contains("not running");

    // The host with via=docker is the container itself.
    let remote = url.replace("@localhost:", "@db.example:");
    run(&mut command(
        &db,
        store.path(),
        work.path(),
        &["backup"],
        &remote,
    ))
    .assert_code(2)
    .assert_stderr_contains("write localhost");
}
