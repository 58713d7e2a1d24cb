//! Proving a backup is good for an upgrade: a PostgreSQL 15 backup is test-restored into a
//! PostgreSQL 18 server with PostgreSQL 18's own client tools, and compared.

use predeploy_tests::pg::pg18_bin_dir;
use predeploy_tests::{PgServer, fixtures, pre_deploy, run};

#[test]
fn a_pg15_backup_verifies_by_restoring_into_pg18() {
    let source = PgServer::shared();
    assert_eq!(source.major_version(), 15);
    let db = source.create_database("upgrade");
    fixtures::load_varied(source, &db);
    let store = tempfile::tempdir().expect("store");
    run(pre_deploy()
        .args(["backup", "--verify-level", "checksum", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", source.url(&db))))
    .assert_success();

    let bin18 = pg18_bin_dir();
    let target = PgServer::start_in(&bin18);
    assert_eq!(target.major_version(), 18);
    let out = run(pre_deploy()
        .args(["verify", "last", "--level", "restore", "--json", "--store"])
        .arg(store.path())
        .arg("--verify-restore-url")
        .arg(target.url("postgres"))
        .env("PREDEPLOY_PG_BINDIR", &bin18));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let record = &v["verifications"][0];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    let restore = record["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "pg-restore")
        .expect("a restore finding");
    let message = restore["message"].as_str().expect("message");
    assert!(
        message.contains("PostgreSQL) 18."),
        "PostgreSQL 18's pg_restore did the restore: {message}"
    );
    assert!(
        message.contains(&format!(":{}/", target.port())),
        "into the 18 server: {message}"
    );
    for check in ["row-counts", "schema-fingerprint"] {
        assert!(
            record["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .any(|f| f["check"] == check && f["status"] == "passed"),
            "{check} passed across versions: {record:#}"
        );
    }
}
