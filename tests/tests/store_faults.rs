//! A store that fails part-way (the Nth write, the manifest write, a full disk): the backup is
//! refused with exit 3, nothing is committed, and earlier backups stay intact. Uses the library
//! with the test kit's fault-injecting store around a real local store and a real PostgreSQL.

use std::sync::Arc;

use backup_core::testkit::{FaultPlan, FaultyStore};
use backup_core::{BackupKind, DeployInfo, DynStore, Store, StoreExt, VerificationLevel};
use backup_objectstore::ObjectStoreStore;
use backup_postgres::PgSnapshotter;
use backup_postgres::verify::ArchiveVerifier;
use deploy_gate::{BackupRequest, ExitCode, Gate, GateError};
use predeploy_tests::{PgServer, fixtures};

fn request() -> BackupRequest {
    BackupRequest {
        kind: BackupKind::Manual,
        deploy: DeployInfo::default(),
    }
}

fn gate(store: DynStore, url: &str) -> Gate {
    let pg = PgSnapshotter::from_url("db".parse().expect("name"), url).expect("url");
    Gate::new(
        store,
        "default",
        vec![Arc::new(pg)],
        vec![Arc::new(ArchiveVerifier::default())],
    )
    .with_verify_level(VerificationLevel::Archive)
}

async fn committed(store: &dyn Store) -> Vec<String> {
    store
        .list_backup_ids()
        .await
        .expect("list")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_on_any_write_commits_nothing() {
    let server = PgServer::shared();
    let db = server.create_database("faults");
    fixtures::load_varied(server, &db);
    let dir = tempfile::tempdir().expect("dir");
    let real = ObjectStoreStore::local(dir.path()).expect("local store");
    let faulty = Arc::new(FaultyStore::new(real, FaultPlan::default()));

    // A good backup first.
    let good = gate(faulty.clone(), &server.url(&db))
        .backups()
        .backup(&request())
        .await
        .expect("good backup");
    let good_id = good.manifest.id.to_string();

    // Writes of a backup: the preflight probes (1: a small object, 2: a streamed one), dump
    // (3), globals (4), manifest (5).
    for (plan, what) in [
        (FaultPlan::fail_nth_write(3), "the dump upload"),
        (FaultPlan::fail_nth_write(4), "the globals upload"),
        (FaultPlan::fail_manifest_write(), "the manifest write"),
        (
            FaultPlan::fail_put_after_bytes(50_000),
            "a full disk mid-upload",
        ),
    ] {
        faulty.set_plan(FaultPlan::default());
        let counting = Arc::new(FaultyStore::new(faulty.clone(), plan.clone()));
        let err = gate(counting.clone(), &server.url(&db))
            .backups()
            .backup(&request())
            .await
            .expect_err(what);
        assert_eq!(err.exit_code(), ExitCode::BackupFailed, "{what}: {err}");
        assert!(matches!(err, GateError::Backup { .. }), "{what}: {err:?}");
        let chain = backup_objectstore::error_chain(&err);
        assert!(
            chain.contains("injected fault"),
            "{what}: the message carries the store's error: {chain}"
        );
        assert!(counting.faults_injected() > 0, "{what}: the fault happened");
        assert_eq!(
            committed(faulty.inner()).await,
            vec![good_id.clone()],
            "{what}: nothing new committed"
        );
        let leftovers: Vec<String> = faulty
            .inner()
            .list("backups/")
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !k.starts_with(&format!("backups/{good_id}/")))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{what}: partial data removed, found {leftovers:?}"
        );
    }

    // The earlier backup still verifies.
    let g = gate(faulty.clone(), &server.url(&db));
    let record = g
        .backups()
        .verify_stored(Some(&good_id), false, Some(VerificationLevel::Archive))
        .await
        .expect("still good");
    assert!(record[0].passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_a_preflight_refusal() {
    let server = PgServer::shared();
    let db = server.create_database("down");
    let dir = tempfile::tempdir().expect("dir");
    let real = ObjectStoreStore::local(dir.path()).expect("local store");
    let faulty = Arc::new(FaultyStore::new(
        real,
        FaultPlan {
            unreachable: true,
            ..FaultPlan::default()
        },
    ));
    let err = gate(faulty.clone(), &server.url(&db))
        .backups()
        .backup(&request())
        .await
        .expect_err("unreachable");
    assert_eq!(err.exit_code(), ExitCode::Preflight, "{err}");
    assert!(
        faulty.inner().list("").await.expect("list").is_empty(),
        "nothing written"
    );
}
