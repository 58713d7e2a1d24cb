//! `pre-deploy run --rollback-on-failure -- CMD` against a real server: a failed deploy's damage
//! is rolled back to the run's backup, the failed state is kept in a safety backup, and the exit
//! code is always the deploy command's.

use std::path::Path;

use predeploy_tests::restoring::{
    backups, content, databases_containing, restore_command, small_database,
};
use predeploy_tests::{Output, PgServer, pre_deploy, run};

/// SQL a bad deploy runs.
const BAD_MIGRATION: &str = "DELETE FROM notes; UPDATE items SET name = upper(name)";

/// A shell command running `sql` on `db` with this server's psql.
fn psql(server: &PgServer, db: &str, sql: &str) -> String {
    format!(
        "{} -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d {db} -c \"{sql}\"",
        server.bin_dir().join("psql").display(),
        server.socket_dir().display(),
        server.port()
    )
}

fn deploy(server: &PgServer, db: &str, store: &Path, flags: &[&str], script: &str) -> Output {
    let work = tempfile::tempdir().expect("workdir");
    run(pre_deploy()
        .args(["run", "--verify-level", "archive", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={}", server.url(db)))
        .args(flags)
        .args(["--", "sh", "-c", script])
        .current_dir(work.path()))
}

#[test]
fn a_failed_deploy_is_rolled_back_and_its_state_kept_in_a_safety_backup() {
    let server = PgServer::shared();
    let db = small_database(server, "rbk");
    let before = content(server, &db);
    let store = tempfile::tempdir().expect("store");
    let script = format!("{} && exit 3", psql(server, &db, BAD_MIGRATION));
    let out = deploy(
        server,
        &db,
        store.path(),
        &["--rollback-on-failure"],
        &script,
    );
    out.assert_code(3);
    out.assert_stderr_contains("rolling back to backup");
    out.assert_stderr_contains("rollback done; exiting with the deploy command's code 3");
    assert!(
        !out.stderr.contains("REFUSED"),
        "the gate did not refuse: {}",
        out.stderr
    );
    assert_eq!(content(server, &db), before, "the data is back");

    // The failed state is in a verified safety backup, and restores.
    let list = backups(store.path(), "default");
    let kinds: Vec<&str> = list.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(kinds, vec!["safety", "pre-deploy"], "{list:?}");
    assert_eq!(list[0].2["passed"], true);
    out.assert_stderr_contains(&format!(
        "the failed state is in safety backup {}",
        list[0].0
    ));
    let kept = databases_containing(server, &format!("{db}__predeploy_before_"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    let failed = content(server, &kept[0]);
    assert_eq!(
        failed["public.notes"].rows, 0,
        "the kept database is the failed state"
    );
    let out = run(&mut restore_command(
        store.path(),
        &server.url(&db),
        &[&list[0].0, "--yes"],
    ));
    out.assert_success();
    assert_eq!(content(server, &db), failed);
}

#[test]
fn without_the_flag_a_failed_deploy_is_left_as_it_is() {
    let server = PgServer::shared();
    let db = small_database(server, "rbkoff");
    let store = tempfile::tempdir().expect("store");
    let script = format!("{} && exit 5", psql(server, &db, BAD_MIGRATION));
    let out = deploy(server, &db, store.path(), &[], &script);
    out.assert_code(5);
    assert!(!out.stderr.contains("rolling back"), "{}", out.stderr);
    // The end of the run prints the rollback commands.
    out.assert_stderr_contains("to roll back to backup");
    out.assert_stderr_contains("pre-deploy restore ");
    out.assert_stderr_contains("pg_restore --exit-on-error");
    assert_eq!(
        content(server, &db)["public.notes"].rows,
        0,
        "not rolled back"
    );
    assert_eq!(
        backups(store.path(), "default").len(),
        1,
        "no safety backup"
    );
}

#[test]
fn a_successful_deploy_is_not_rolled_back() {
    let server = PgServer::shared();
    let db = small_database(server, "rbkok");
    let store = tempfile::tempdir().expect("store");
    let script = psql(server, &db, "DELETE FROM notes");
    let out = deploy(
        server,
        &db,
        store.path(),
        &["--rollback-on-failure"],
        &script,
    );
    out.assert_success();
    assert!(!out.stderr.contains("rolling back"), "{}", out.stderr);
    assert_eq!(content(server, &db)["public.notes"].rows, 0);
    assert_eq!(backups(store.path(), "default").len(), 1);
}

#[test]
fn a_rollback_that_fails_says_so_and_keeps_the_deploy_exit_code() {
    let server = PgServer::shared();
    let db = small_database(server, "rbkfail");
    let store = tempfile::tempdir().expect("store");
    // The deploy leaves a session connected (and no --terminate-connections): the swap is refused.
    let count = format!(
        "{} -X -At -h {} -p {} -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE '%pg_sleep%'\"",
        server.bin_dir().join("psql").display(),
        server.socket_dir().display(),
        server.port()
    );
    let script = format!(
        "{bad} && ({hold} >/dev/null 2>&1 &) && until [ \"$({count})\" = 1 ]; do sleep 0.1; done; exit 4",
        bad = psql(server, &db, BAD_MIGRATION),
        hold = psql(server, &db, "SELECT pg_sleep(60)"),
    );
    let out = deploy(
        server,
        &db,
        store.path(),
        &["--rollback-on-failure"],
        &script,
    );
    server.psql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    );
    out.assert_code(4);
    out.assert_stderr_contains("ROLLBACK FAILED");
    out.assert_stderr_contains("--terminate-connections");
    out.assert_stderr_contains("exiting with the deploy command's code 4");
    assert_eq!(
        content(server, &db)["public.notes"].rows,
        0,
        "the failed state stays when the rollback is refused"
    );
    assert!(databases_containing(server, &format!("{db}__predeploy_")).is_empty());
}

#[test]
fn rollback_with_terminate_connections_ends_the_sessions_and_restores() {
    let server = PgServer::shared();
    let db = small_database(server, "rbkterm");
    let before = content(server, &db);
    let store = tempfile::tempdir().expect("store");
    let count = format!(
        "{} -X -At -h {} -p {} -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE '%pg_sleep%'\"",
        server.bin_dir().join("psql").display(),
        server.socket_dir().display(),
        server.port()
    );
    let script = format!(
        "{bad} && ({hold} >/dev/null 2>&1 &) && until [ \"$({count})\" = 1 ]; do sleep 0.1; done; exit 7",
        bad = psql(server, &db, BAD_MIGRATION),
        hold = psql(server, &db, "SELECT pg_sleep(60)"),
    );
    let out = deploy(
        server,
        &db,
        store.path(),
        &["--rollback-on-failure", "--terminate-connections"],
        &script,
    );
    out.assert_code(7);
    out.assert_stderr_contains("rollback done");
    assert_eq!(content(server, &db), before);
}

/// A deploy that damages a database and a directory of uploads, then fails: both are put back
/// from the run's backup (one backup id, one manifest), the exit code stays the deploy's.
#[test]
fn a_failed_deploy_rolls_back_the_database_and_the_uploads_directory() {
    let server = PgServer::shared();
    let db = small_database(server, "rbkdir");
    let before = content(server, &db);
    let store = tempfile::tempdir().expect("store");
    let uploads = tempfile::tempdir().expect("uploads");
    std::fs::write(uploads.path().join("avatar.png"), b"\x89PNG original").expect("write");
    std::fs::create_dir_all(uploads.path().join("docs")).expect("mkdir");
    std::fs::write(uploads.path().join("docs/terms.txt"), b"v1 terms").expect("write");
    let script = format!(
        "{} && echo broken > '{}' && rm '{}' && exit 4",
        psql(server, &db, BAD_MIGRATION),
        uploads.path().join("avatar.png").display(),
        uploads.path().join("docs/terms.txt").display()
    );
    let work = tempfile::tempdir().expect("workdir");
    let out = run(pre_deploy()
        .args([
            "run",
            "--verify-level",
            "archive",
            "--rollback-on-failure",
            "--store",
        ])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .arg("--source")
        .arg(format!("uploads=file://{}", uploads.path().display()))
        .args(["--", "sh", "-c", &script])
        .current_dir(work.path()));
    out.assert_code(4);
    out.assert_stderr_contains("rollback done; exiting with the deploy command's code 4");
    assert_eq!(content(server, &db), before, "the database is back");
    assert_eq!(
        std::fs::read(uploads.path().join("avatar.png")).expect("avatar"),
        b"\x89PNG original",
        "the changed upload is back"
    );
    assert_eq!(
        std::fs::read(uploads.path().join("docs/terms.txt")).expect("terms"),
        b"v1 terms",
        "the deleted upload is back"
    );
    let kinds: Vec<String> = backups(store.path(), "default")
        .into_iter()
        .map(|(_, k, _)| k)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "safety").count(),
        2,
        "one safety backup per source: {kinds:?}"
    );
}
