//! PostgreSQL's own regression database (600+ tables, partitions with foreign keys, rules,
//! policies, 300+ functions) through the gate: the default backup reaches level 4 and passes,
//! `restore` brings it back identical, and a test restore into PostgreSQL 18 names every object
//! that version cannot create instead of skipping it.

use std::time::Instant;

use predeploy_tests::cli::finding;
use predeploy_tests::pg::pg18_bin_dir;
use predeploy_tests::regress::load_regression;
use predeploy_tests::restoring::restore_command;
use predeploy_tests::{
    PgServer, assert_same_database, dump_path, pre_deploy, restore_artifact, run,
};

/// Whether the v1 and the v2 fingerprints of `a` and `b` on `server` are equal.
fn fingerprints(server: &PgServer, a: &str, b: &str) -> (bool, bool) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut out = Vec::new();
        for db in [a, b] {
            let config = backup_postgres::PgSourceConfig::from_url(
                &server.url(db),
                &backup_postgres::ProcessEnv,
            )
            .expect("url");
            let inspector = backup_postgres::PgInspector::connect(&config, "db")
                .await
                .expect("connect");
            let v1 = inspector.schema_fingerprint_v1().await.expect("v1");
            let started = Instant::now();
            let listing = inspector.schema_listing().await.expect("listing");
            eprintln!(
                "schema listing of {db}: {} entries in {:?}",
                listing.entries().len(),
                started.elapsed()
            );
            let v2 = listing.fingerprint();
            out.push((v1, v2));
        }
        (out[0].0 == out[1].0, out[0].1 == out[1].1)
    })
}

#[test]
fn the_regression_database_passes_level_4_and_restores_identical() {
    let server = PgServer::start();
    let db = "regression";
    load_regression(&server, db);
    let store = tempfile::tempdir().expect("store");

    let started = Instant::now();
    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(db))));
    eprintln!("backup with level 4 took {:?}", started.elapsed());
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
    let tables = v["manifest"]["sources"][0]["stats"]["tables"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(tables > 500, "{tables} tables counted");

    // The same archive through plain pg_restore is the reference to compare the restore with.
    let id = v["id"].as_str().expect("id").to_owned();
    let reference = restore_artifact(&server, &dump_path(store.path(), &id), "regress_ref");
    assert_same_database(&server, db, &server, &reference);
    let (v1, v2) = fingerprints(&server, db, &reference);
    eprintln!("v1 fingerprint equal across a single-job pg_restore: {v1}");
    assert!(
        v2,
        "the v2 fingerprint is equal across the faithful restore"
    );

    // A bad deploy: rows gone, a table dropped, a view and a function changed.
    server.psql(
        db,
        "DELETE FROM public.tenk1 WHERE unique1 < 5000; DROP TABLE public.onek2 CASCADE;
         CREATE OR REPLACE VIEW public.street AS SELECT 'x'::text AS name, NULL::path AS thepath, 'y'::text AS cname;",
    );
    let restored = run(&mut restore_command(
        store.path(),
        &server.url(db),
        &["last", "--yes"],
    ));
    restored.assert_success();
    assert_same_database(&server, db, &server, &reference);
}

#[test]
fn a_pg15_backup_of_the_regression_database_names_what_pg18_cannot_create() {
    let source = PgServer::start();
    let db = "regression";
    load_regression(&source, db);
    let store = tempfile::tempdir().expect("store");
    run(pre_deploy()
        .args(["backup", "--verify-level", "checksum", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", source.url(db))))
    .assert_success();

    let bin18 = pg18_bin_dir();
    let target = PgServer::start_in(&bin18);
    let out = run(pre_deploy()
        .args(["verify", "last", "--level", "restore", "--store"])
        .arg(store.path())
        .arg("--verify-restore-url")
        .arg(target.url("postgres"))
        .env("PREDEPLOY_PG_BINDIR", &bin18));
    // PyPI's PostgreSQL 18 has no ICU, no lz4 and no libxml, cannot load the regression
    // suite's C libraries built for 15, and refuses a generated column on an inheritance child
    // whose parent's column is not generated: each is named, none silently skipped.
    out.assert_code(4);
    for named in [
        "statement(s) failed",
        "CREATE COLLATION public.coll_icu_upgrade",
        "ICU is not supported in this build",
        "CREATE FUNCTION public.int44in(cstring)",
        "could not load library",
    ] {
        out.assert_stderr_contains(named);
    }
}
