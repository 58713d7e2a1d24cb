//! Level 4 proves exactly what a restore brings back: no false refusals on databases full of
//! partitions, inheritance, policies and grants, and a named refusal when the restore differs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use predeploy_tests::cli::finding;
use predeploy_tests::pg::PG15_BIN_DIR;
use predeploy_tests::restoring::restore_command;
use predeploy_tests::{
    Output, PgServer, assert_same_database, dump_path, fixtures, pre_deploy, restore_artifact, run,
};

fn backup(store: &Path, url: &str, extra: &[&str]) -> Output {
    run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"))
        .args(extra))
}

#[test]
fn the_fidelity_database_passes_level_4_with_owners_and_grants_proven() {
    let server = PgServer::shared();
    let db = server.create_database("fid");
    fixtures::load_fidelity(server, &db);
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &server.url(&db), &[]);
    out.assert_success();
    let v = out.json();
    let record = &v["verification"];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    for check in [
        "schema-fingerprint",
        "sequences",
        "privileges",
        "row-counts",
    ] {
        assert_eq!(
            finding(record, check)["status"],
            "passed",
            "{check}: {record:#}"
        );
    }
    assert!(
        finding(record, "pg-restore")["message"]
            .as_str()
            .is_some_and(|m| m.contains("with owners and privileges")),
        "{record:#}"
    );
    let stats = &v["manifest"]["sources"][0]["stats"];
    assert!(
        stats["schema_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("v2:sha256:")),
        "{stats}"
    );
    assert!(
        stats["privileges_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("v2:sha256:")),
        "{stats}"
    );

    // The roles dump holds the fixture's roles, quoting included, as SQL that recreates them.
    let id = v["id"].as_str().expect("id");
    let globals = std::process::Command::new("zstd")
        .args(["-dc"])
        .arg(
            store
                .path()
                .join(format!("backups/{id}/data/db/globals.sql.zst")),
        )
        .output()
        .expect("zstd");
    let globals = String::from_utf8_lossy(&globals.stdout);
    for role in [
        "CREATE ROLE predeploy_fx_owner;",
        "CREATE ROLE predeploy_fx_reader;",
        "CREATE ROLE \"predeploy fx \"\"odd\"\" role\";",
    ] {
        assert!(
            globals.contains(role),
            "{role} in the roles dump:\n{globals}"
        );
    }

    // Independently of the tool: a plain pg_restore of the stored dump has the same schema and
    // content.
    let copy = restore_artifact(server, &dump_path(store.path(), id), "fid_copy");
    assert_same_database(server, &db, server, &copy);
}

#[test]
fn restore_brings_the_fidelity_database_back_identical() {
    let server = PgServer::start();
    let db = server.create_database("fidr");
    fixtures::load_fidelity(&server, &db);
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &server.url(&db), &[]);
    out.assert_success();
    let id = out.json()["id"].as_str().expect("id").to_owned();
    // A copy of the original, to compare with after the restore replaced `db`.
    let reference = restore_artifact(&server, &dump_path(store.path(), &id), "fid_ref");
    assert_same_database(&server, &db, &server, &reference);
    server.psql(
        &db,
        "DELETE FROM public.events WHERE id > 100; DROP VIEW app.account_emails; ALTER TABLE public.cars DROP COLUMN seats",
    );
    let restored = run(&mut restore_command(
        store.path(),
        &server.url(&db),
        &["last", "--yes"],
    ));
    restored.assert_success();
    assert_same_database(&server, &db, &server, &reference);
}

/// A `pg_restore` that restores faithfully, then changes a view body, a constraint and a grant in
/// the database it restored into: what a tool bug or a damaged archive could do.
fn tampering_pg_restore() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgtools")
        .tempdir()
        .expect("temp dir");
    for tool in ["pg_dump", "pg_dumpall", "psql"] {
        std::os::unix::fs::symlink(Path::new(PG15_BIN_DIR).join(tool), dir.path().join(tool))
            .expect("symlink");
    }
    let script = format!(
        "#!/bin/sh
if [ \"$1\" = --version ] || [ \"$1\" = --list ] || [ \"$1\" = --file=/dev/null ]; then exec {bin}/pg_restore \"$@\"; fi
{bin}/pg_restore \"$@\" || exit $?
for a in \"$@\"; do case \"$a\" in --dbname=*) db=${{a#--dbname=}};; esac; done
{bin}/psql -X -q -v ON_ERROR_STOP=1 -d \"$db\" -c \"CREATE OR REPLACE VIEW app.account_emails AS SELECT id, upper(email) AS email FROM app.accounts WHERE id > 3\" \
  -c 'ALTER TABLE public.players DROP CONSTRAINT players_id_positive' \
  -c 'REVOKE SELECT (email) ON app.accounts FROM \"predeploy fx \"\"odd\"\" role\"' >/dev/null
",
        bin = PG15_BIN_DIR
    );
    let path = dir.path().join("pg_restore");
    std::fs::write(&path, script).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn a_restore_that_differs_is_refused_and_the_objects_are_named() {
    let server = PgServer::shared();
    let db = server.create_database("fidbad");
    fixtures::load_fidelity(server, &db);
    let store = tempfile::tempdir().expect("store");
    backup(
        store.path(),
        &server.url(&db),
        &["--verify-level", "archive"],
    )
    .assert_success();
    let tools = tampering_pg_restore();
    let out = run(pre_deploy()
        .args(["verify", "last", "--level", "restore", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("PREDEPLOY_PG_BINDIR", tools.path()));
    out.assert_code(4);
    out.assert_stderr_contains("view-body app.account_emails differs");
    let shown = run(pre_deploy()
        .args(["show", "last", "--json", "--store"])
        .arg(store.path()));
    shown.assert_success();
    let v = shown.json();
    let record = v["verifications"]
        .as_array()
        .expect("verifications")
        .iter()
        .find(|r| r["passed"] == false)
        .expect("the failed verification is recorded");
    let schema = finding(record, "schema-fingerprint");
    assert_eq!(schema["status"], "failed", "{record:#}");
    let message = schema["message"].as_str().expect("message");
    assert!(
        message.contains("view-body app.account_emails differs")
            && message.contains("lower(accounts.email)")
            && message.contains("upper(accounts.email)"),
        "the view is named with both bodies: {message}"
    );
    assert!(
        message.contains("constraint public.players.players_id_positive is in the backup"),
        "the missing constraint is named: {message}"
    );
    let privileges = finding(record, "privileges");
    assert_eq!(privileges["status"], "failed", "{record:#}");
    assert!(
        privileges["message"]
            .as_str()
            .is_some_and(|m| m.contains("column app.accounts.email")),
        "the column grant is named: {privileges}"
    );
}

/// The varied database, backed up from PostgreSQL 15 and restored with `--to` into a database of
/// a PostgreSQL 18 server: the copy equals the source by content, large objects and sequences
/// (schema dumps of two majors are not comparable line by line; the tool's own level-4 check
/// compares the schema listing across them).
#[test]
fn the_varied_database_restores_from_15_into_18_equal_to_the_source() {
    let source = PgServer::shared();
    let db = source.create_database("var18");
    fixtures::load_varied(source, &db);
    let store = tempfile::tempdir().expect("store");
    backup(
        store.path(),
        &source.url(&db),
        &["--verify-level", "archive"],
    )
    .assert_success();
    let bin18 = predeploy_tests::pg::pg18_bin_dir();
    let target = PgServer::start_in(&bin18);
    let db18 = target.create_database("var18target");
    let out = run(pre_deploy()
        .args(["restore", "last", "--source", "db", "--yes", "--to"])
        .arg(target.url(&db18))
        .arg("--store")
        .arg(store.path())
        .env("PREDEPLOY_PG_BINDIR", &bin18));
    out.assert_success();
    assert_same_database(source, &db, &target, &db18);
}

#[test]
fn restore_brings_the_varied_database_back_identical() {
    let server = PgServer::start();
    let db = server.create_database("varr");
    fixtures::load_varied(&server, &db);
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &server.url(&db), &[]);
    out.assert_success();
    let id = out.json()["id"].as_str().expect("id").to_owned();
    let reference = restore_artifact(&server, &dump_path(store.path(), &id), "varr_ref");
    server.psql(
        &db,
        "TRUNCATE public.orders CASCADE; SELECT lo_unlink(424242); SELECT setval('public.ticket_seq', 5000)",
    );
    run(&mut restore_command(
        store.path(),
        &server.url(&db),
        &["last", "--yes"],
    ))
    .assert_success();
    assert_same_database(&server, &db, &server, &reference);
}

/// `run --rollback-on-failure` on the fidelity database (owners, grants, policies, partitions,
/// large objects): the failed deploy's damage is rolled back to a database identical to the
/// run's backup by schema and content.
#[test]
fn a_failed_deploy_of_the_fidelity_database_is_rolled_back_identical() {
    let server = PgServer::start();
    let db = server.create_database("fidrb");
    fixtures::load_fidelity(&server, &db);
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work");
    let migration = format!(
        "{} -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d {db} -c \"DROP TABLE public.event_notes; UPDATE app.accounts SET secret = NULL; SELECT lo_unlink(515151)\" && exit 7",
        server.bin_dir().join("psql").display(),
        server.socket_dir().display(),
        server.port()
    );
    let out = run(pre_deploy()
        .args([
            "--json",
            "run",
            "--verify-level",
            "archive",
            "--rollback-on-failure",
            "--store",
        ])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .args(["--", "sh", "-c", &migration])
        .current_dir(work.path()));
    out.assert_code(7);
    out.assert_stderr_contains("rollback done");
    let list = predeploy_tests::restoring::backups(store.path(), "default");
    let (id, _, _) = list
        .iter()
        .find(|(_, kind, _)| kind == "pre-deploy")
        .expect("the run's backup");
    let reference = restore_artifact(&server, &dump_path(store.path(), id), "fidrb_ref");
    assert_same_database(&server, &db, &server, &reference);
}
