//! Back up a varied database with the real binary, restore it with plain `pg_restore`, and
//! compare by content. The backup's own records (row counts) must match the source.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use predeploy_tests::fakes::{FakePgDump, tool_dir};
use predeploy_tests::{
    PgServer, assert_same_database, fixtures, pre_deploy, restore_artifact, run, table_checksums,
};

fn manifest_of(store: &Path, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(store.join("backups").join(id).join("manifest.json"))
        .expect("manifest exists");
    serde_json::from_str(&text).expect("manifest is JSON")
}

#[test]
fn varied_database_round_trips_through_pg_restore() {
    let server = PgServer::shared();
    let db = server.create_database("rt");
    fixtures::load_varied(server, &db);
    let store = tempfile::tempdir().expect("store dir");
    let tools = tool_dir(FakePgDump::LogsArguments);

    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("PREDEPLOY_PG_BINDIR", tools.path()));
    out.assert_success();
    let result: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    let id = result["id"].as_str().expect("id").to_owned();
    assert_eq!(result["verification"]["passed"], true);
    assert_eq!(result["verification"]["level_reached"], "restore");

    // The dump restores with the vendor's own tool into a fresh database, to the same content.
    let dump = store
        .path()
        .join(format!("backups/{id}/data/db/dump.pgc.zst"));
    let restored = restore_artifact(server, &dump, "restored");
    assert_same_database(server, &db, server, &restored);

    // The manifest's exact row counts are the source's.
    let manifest = manifest_of(store.path(), &id);
    let source = &manifest["sources"][0];
    let sums = table_checksums(server, &db);
    let tables = source["stats"]["tables"].as_array().expect("tables");
    assert!(!tables.is_empty());
    for t in tables {
        let key = format!(
            "{}.{}",
            t["schema"].as_str().expect("schema"),
            t["name"].as_str().expect("name")
        );
        let expected = sums
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is a table of the source"));
        assert_eq!(
            t["rows"].as_i64(),
            Some(expected.rows),
            "row count of {key}"
        );
    }
    // Every table that holds rows itself is recorded (the partitioned parent and the
    // materialized view hold none of their own).
    let recorded: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "{}.{}",
                t["schema"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    for (name, _) in fixtures::VARIED_ROW_COUNTS {
        if *name != "public.measurements" && *name != "public.status_counts" {
            assert!(
                recorded.iter().any(|r| r == name),
                "{name} is recorded in {recorded:?}"
            );
        }
    }
    assert!(
        source["stats"]["schema_fingerprint"]
            .as_str()
            .expect("fingerprint")
            .starts_with("v2:sha256:")
    );
    assert_eq!(source["stats"]["object_counts"]["large_objects"], 1);
    let globals = source["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .any(|a| a["name"] == "globals.sql.zst");
    assert!(globals, "a superuser's backup includes the roles");

    // Files are private; the password is nowhere: not in argv, files, output.
    let mode = std::fs::metadata(&dump).expect("dump").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "artifacts are 0600");
    let log = std::fs::read_to_string(tools.path().join("args.log")).expect("pg_dump ran");
    assert!(
        log.contains("--snapshot="),
        "pg_dump used the exported snapshot: {log}"
    );
    assert!(
        log.contains("PGPASSWORD set"),
        "the password went through the environment"
    );
    let password = server.password();
    assert!(
        !log.contains(password),
        "the password is not in pg_dump's argv"
    );
    let manifest_text = serde_json::to_string(&manifest).expect("json");
    assert!(
        !manifest_text.contains(password),
        "the manifest holds no password"
    );
    assert!(
        !result.to_string().contains(password),
        "the JSON result holds no password"
    );
}

#[test]
fn two_backups_of_the_same_data_record_the_same_fingerprint_and_counts() {
    let server = PgServer::shared();
    let db = server.create_database("fp");
    fixtures::load_varied(server, &db);
    let store = tempfile::tempdir().expect("store dir");
    let backup = || {
        let out = run(pre_deploy()
            .args(["backup", "--json", "--verify-level", "checksum", "--store"])
            .arg(store.path())
            .arg("--source")
            .arg(format!("db={}", server.url(&db))));
        out.assert_success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        v["manifest"]["sources"][0]["stats"].clone()
    };
    let first = backup();
    let second = backup();
    assert_eq!(
        first, second,
        "statistics are deterministic for unchanged data"
    );
    server.psql(
        &db,
        "ALTER TABLE public.customers ADD COLUMN loyalty_tier text",
    );
    let third = backup();
    assert_ne!(
        first["schema_fingerprint"], third["schema_fingerprint"],
        "a schema change changes the fingerprint"
    );

    let out = run(pre_deploy()
        .args(["list", "--json", "--store"])
        .arg(store.path()));
    out.assert_success();
    let listed: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        listed["backups"].as_array().map(Vec::len),
        Some(3),
        "list shows all three, newest first"
    );
}
