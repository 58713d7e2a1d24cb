//! PostgreSQL backups kept in real S3 servers (moto and Garage), through the `pre-deploy`
//! binary: run → level-4 verification from the bucket → list/show → restore from the bucket
//! brings the data back. The secret never shows up in output, manifests or stored objects.

use predeploy_tests::restoring::content;
use predeploy_tests::s3::all_servers;
use predeploy_tests::{PgServer, assert_same_database, fixtures, pre_deploy, run};

#[test]
fn a_database_backed_up_into_s3_verifies_and_restores_from_there() {
    // Its own server: the restore renames databases.
    let server = PgServer::start();
    for s3 in all_servers() {
        // The varied database, and a copy of it as it was backed up to compare the restore with.
        let db = server.create_database(&format!("s3{}", s3.kind()));
        fixtures::load_varied(&server, &db);
        let reference = format!("{db}_ref");
        server.psql(
            "postgres",
            &format!("CREATE DATABASE {reference} TEMPLATE {db}"),
        );
        let original = content(&server, &db);
        let bucket = s3.create_bucket("pgbackup");
        let store = s3.url(&bucket, "team/app");
        let work = tempfile::tempdir().expect("workdir");
        let source = format!("db={}", server.url(&db));
        let with_env = |cmd: &mut std::process::Command| {
            cmd.envs(s3.env()).current_dir(work.path());
        };

        let mut backup = pre_deploy();
        backup.args(["--store", &store, "--source", &source, "--json"]);
        backup.args(["run", "--verify-level", "restore", "--", "true"]);
        with_env(&mut backup);
        let out = run(&mut backup);
        out.assert_success();
        assert!(!out.stdout.contains(s3.secret_key()) && !out.stderr.contains(s3.secret_key()));

        let mut list = pre_deploy();
        list.args(["--store", &store, "--json", "list"]);
        with_env(&mut list);
        let out = run(&mut list);
        out.assert_success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        let rows = v["backups"].as_array().expect("backups");
        assert_eq!(rows.len(), 1, "{}: {}", s3.kind(), out.stdout);

        let mut verify = pre_deploy();
        verify.args([
            "--store", &store, "--source", &source, "verify", "last", "--level", "restore",
        ]);
        with_env(&mut verify);
        run(&mut verify).assert_success();

        server.psql(
            &db,
            "UPDATE public.orders SET note = 'damaged'; SELECT lo_unlink(424242)",
        );
        assert_ne!(content(&server, &db), original);
        let mut restore = pre_deploy();
        restore.args([
            "--store", &store, "--source", &source, "restore", "last", "--yes",
        ]);
        with_env(&mut restore);
        let out = run(&mut restore);
        out.assert_success();
        assert_eq!(
            content(&server, &db),
            original,
            "{}: the data restored from the bucket equals the backed-up data",
            s3.kind()
        );
        assert_same_database(&server, &db, &server, &reference);

        // Nothing stored in the bucket carries the secret.
        let store_obj =
            backup_objectstore::ObjectStoreStore::s3(&bucket, "team/app", &s3.settings())
                .expect("store");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            use backup_core::{Store, StoreExt};
            for obj in store_obj.list("").await.expect("list") {
                if obj.key.ends_with(".json") {
                    let text = String::from_utf8(store_obj.get_all(&obj.key).await.expect("get"))
                        .expect("utf8");
                    assert!(!text.contains(s3.secret_key()), "{}", obj.key);
                    assert!(!text.contains(server.password()), "{}", obj.key);
                }
            }
        });
    }
}
