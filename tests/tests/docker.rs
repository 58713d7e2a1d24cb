//! PostgreSQL inside a Docker container whose port is not published (issue 13, item 3):
//! `via=docker://CONTAINER` and `via=docker-compose://PROJECT/SERVICE` reach it at the
//! container's address, for our own connection, `pg_dump`, the level-4 test restore and
//! `restore` alike. A stopped or missing container, or no daemon, is exit 5 naming it; the
//! password is in no process's argv.

use std::path::Path;
use std::process::Command;

use predeploy_tests::docker::{CONTENT_SQL, DockerPg, SEED_SQL, run_scanning_argv};
use predeploy_tests::{Output, pre_deploy, run};

/// `pre-deploy ARGS --store STORE --source db=URL` with the container's password in
/// `PGPASSWORD` (not in the URL, so that no argv of ours holds it), in a temp working dir.
fn command(pg: &DockerPg, store: &Path, work: &Path, args: &[&str], url: &str) -> Command {
    let mut cmd = pre_deploy();
    cmd.current_dir(work)
        .args(args)
        .arg("--store")
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"))
        .env("PGPASSWORD", pg.password());
    cmd
}

/// A backup reached level 4 (a test restore in the container's server) and passed, and the
/// manifest names the container, not its passing address.
fn assert_level_4(out: &Output, via: &str) {
    predeploy_tests::cli::assert_level_4(out);
    assert!(
        out.stdout.contains(&format!("?via={via}")),
        "the location names {via}: {}",
        out.stdout
    );
}

#[test]
fn run_and_restore_reach_a_container_whose_port_is_not_published() {
    let pg = DockerPg::start("run");
    assert_eq!(pg.published_ports(), "", "the port is not published");
    pg.psql("app", SEED_SQL);
    let before = pg.psql("app", CONTENT_SQL);
    let url = pg.url("app");
    let via = format!("docker://{}", pg.name());
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("workdir");

    // The backup, its level-4 test restore (in the container's server: `source`) and every
    // tool they start, watched from /proc.
    let (out, argv_with_password) = run_scanning_argv(
        &mut command(
            &pg,
            store.path(),
            work.path(),
            &["backup", "--json", "--verify-restore-url", "source"],
            &url,
        ),
        pg.password(),
    );
    assert_level_4(&out, &via);
    assert!(
        argv_with_password.is_empty(),
        "the password is in these argv: {argv_with_password:?}"
    );
    assert!(!out.stdout.contains(pg.password()) && !out.stderr.contains(pg.password()));

    let mut run_cmd = command(&pg, store.path(), work.path(), &["run"], &url);
    run(run_cmd.args(["--", "true"])).assert_success();
    pg.psql(
        "app",
        "CREATE TABLE after_deploy (id int); UPDATE customers SET email = 'changed@example.com';",
    );
    assert_ne!(
        pg.psql("app", CONTENT_SQL),
        before,
        "the deploy changed data"
    );

    let (out, argv_with_password) = run_scanning_argv(
        &mut command(
            &pg,
            store.path(),
            work.path(),
            &["restore", "last", "--yes"],
            &url,
        ),
        pg.password(),
    );
    out.assert_success();
    assert!(
        argv_with_password.is_empty(),
        "the password is in these argv: {argv_with_password:?}"
    );
    assert_eq!(
        pg.psql("app", CONTENT_SQL),
        before,
        "restored into the container to the backup's content"
    );

    // The runbook's raw commands, for an operator without pre-deploy, reach the same container
    // (not the URL's `localhost`, which is the container itself) and restore it too.
    pg.psql("app", "UPDATE customers SET email = 'changed again';");
    let shown = run(&mut command(
        &pg,
        store.path(),
        work.path(),
        &["show", "last", "--json"],
        &url,
    ));
    shown.assert_success();
    let raw = predeploy_tests::cli::raw_runbook(&shown.stdout);
    assert!(raw.contains("docker inspect"), "{raw}");
    let out = run(Command::new("sh")
        .current_dir(work.path())
        .args(["-e", "-c", &raw])
        .env("PATH", with_pg_tools())
        .env("PGUSER", predeploy_tests::docker::USER)
        .env("PGPASSWORD", pg.password())
        .env_remove("PGHOST")
        .env_remove("PGPORT"));
    out.assert_success();
    assert_eq!(
        pg.psql("app", CONTENT_SQL),
        before,
        "the raw commands restored the container's database"
    );
}

/// `PATH` with the PostgreSQL 15 client tools first.
fn with_pg_tools() -> String {
    format!(
        "/usr/lib/postgresql/15/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_compose_service_is_found_by_its_project_and_service_labels() {
    let project = format!("pdshop{}", std::process::id());
    let pg = DockerPg::start_compose("compose", &project, "postgres");
    pg.psql("app", SEED_SQL);
    let via = format!("docker-compose://{project}/postgres");
    let url = format!("postgres://app@localhost:5432/app?via={via}");
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("workdir");
    let out = run(&mut command(
        &pg,
        store.path(),
        work.path(),
        &["backup", "--json", "--verify-restore-url", "source"],
        &url,
    ));
    assert_level_4(&out, &via);

    // A project with no such service says so, and how to start it.
    let missing = url.replace("/postgres", "/db");
    run(&mut command(
        &pg,
        store.path(),
        work.path(),
        &["backup"],
        &missing,
    ))
    .assert_code(5)
    .assert_stderr_contains("no container of Compose service \"db\"");
}

#[test]
fn a_stopped_or_missing_container_or_no_daemon_is_exit_5_naming_it() {
    let pg = DockerPg::start("stopped");
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("workdir");
    pg.stop();
    let out = run(&mut command(
        &pg,
        store.path(),
        work.path(),
        &["backup"],
        &pg.url("app"),
    ));
    out.assert_code(5)
        .assert_stderr_contains(pg.name())
        .assert_stderr_contains("not running")
        .assert_stderr_contains(&format!("docker start {}", pg.name()));

    let gone = format!("predeploy-missing-{}", std::process::id());
    let url = format!("postgres://app@localhost/app?via=docker://{gone}");
    run(&mut command(
        &pg,
        store.path(),
        work.path(),
        &["backup"],
        &url,
    ))
    .assert_code(5)
    .assert_stderr_contains(&gone)
    .assert_stderr_contains("does not exist");

    let mut no_daemon = command(&pg, store.path(), work.path(), &["backup"], &url);
    no_daemon.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    run(&mut no_daemon)
        .assert_code(5)
        .assert_stderr_contains("Docker daemon does not answer");

    // `restore` into a stopped container is refused the same way.
    run(&mut command(
        &pg,
        store.path(),
        work.path(),
        &["restore", "last", "--yes"],
        &pg.url("app"),
    ))
    .assert_code(5)
    .assert_stderr_contains("not running");
}
