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
