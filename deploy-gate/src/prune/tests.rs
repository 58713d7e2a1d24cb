//! Tests of prune against the in-memory store: dry runs, the budget, protections, crash-safe
//! removal, leftovers, the automatic retention, and a property test over random histories.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::testkit::{FixedClock, MemoryStore};
use backup_core::{
    ByteStream, DeployInfo, MANIFEST_FORMAT_VERSION, Manifest, ObjectInfo, Store,
    StoreCapabilities, ToolInfo, VerificationLevel, VerificationRecord, VerificationReport,
    WriteMode,
};
use jiff::{Timestamp, ToSpan};
use proptest::prelude::*;

use super::*;
use crate::Gate;

/// Writes a synthetic committed backup (manifest, plus a verification record unless
/// `verified` is `None`) created at `at`, and returns its id.
pub(crate) async fn write_backup(
    store: &dyn Store,
    at: &str,
    env: &str,
    kind: BackupKind,
    verified: Option<bool>,
) -> BackupId {
    let at: Timestamp = at.parse().expect("time");
    write_backup_at(store, at, env, kind, verified, None).await
}

pub(crate) async fn write_backup_at(
    store: &dyn Store,
    at: Timestamp,
    env: &str,
    kind: BackupKind,
    verified: Option<bool>,
    commit: Option<String>,
) -> BackupId {
    let n = at.as_second().unsigned_abs();
    // Backups of different kinds and environments may share a second.
    let group = (kind as u8) << 4 | (env.len() as u8 & 0x0f);
    let id = BackupId::from_parts(at, [group, (n >> 8) as u8, n as u8]);
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id.clone(),
        kind,
        environment: env.into(),
        created_at: at,
        finished_at: at,
        tool: ToolInfo::current(),
        host: "test".into(),
        deploy: DeployInfo {
            commit,
            ..DeployInfo::default()
        },
        sources: vec![],
        expires_at: None,
        extra: serde_json::Map::new(),
    };
    store
        .put_bytes(
            &layout::artifact_key(&id, &"db".parse().expect("name"), "dump.pgc.zst"),
            b"data".to_vec().into(),
            WriteMode::CreateOnly,
        )
        .await
        .expect("data");
    store.write_manifest(&manifest).await.expect("manifest");
    if let Some(passed) = verified {
        store
            .write_verification(&VerificationRecord {
                format_version: 1,
                backup_id: id.clone(),
                verified_at: at + SignedDuration::from_secs(1),
                level_requested: VerificationLevel::Archive,
                level_reached: passed.then_some(VerificationLevel::Archive),
                passed,
                limited_by: None,
                report: VerificationReport::default(),
                tool: ToolInfo::current(),
                host: "test".into(),
                extra: serde_json::Map::new(),
            })
            .await
            .expect("verification");
    }
    id
}

fn gate(store: Arc<dyn Store>, now: &str) -> Gate {
    Gate::new(store, "prod", vec![], vec![])
        .with_clock(Arc::new(FixedClock::new(now.parse().expect("time"))))
}

fn keep_last(n: u32) -> RetentionSettings {
    RetentionSettings::default()
        .with_rules_for(
            &[BackupKind::PreDeploy],
            KeepRules {
                last: Some(n),
                ..KeepRules::default()
            },
        )
        .expect("valid")
}

async fn nightly(store: &dyn Store, kind: BackupKind, days: u32) -> Vec<BackupId> {
    let mut ids = Vec::new();
    for d in 1..=days {
        ids.push(
            write_backup(
                store,
                &format!("2026-10-{d:02}T02:00:00Z"),
                "prod",
                kind,
                Some(true),
            )
            .await,
        );
    }
    ids
}

fn apply() -> PruneOptions {
    PruneOptions {
        apply: true,
        ..PruneOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_removes_nothing_and_yes_removes_the_plan() {
    let store = Arc::new(MemoryStore::new());
    let ids = nightly(store.as_ref(), BackupKind::PreDeploy, 6).await;
    let gate = gate(store.clone(), "2026-11-01T00:00:00Z");
    let settings = keep_last(3);

    let dry = gate
        .pruner()
        .prune(Some(&settings), &PruneOptions::default())
        .await
        .expect("plans");
    assert!(dry.dry_run && !dry.refused && dry.removed.is_empty());
    assert_eq!(dry.plan.removals().count(), 3);
    assert_eq!(store.list_backup_ids().await.expect("list").len(), 6);

    let done = gate
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect("prunes");
    assert_eq!(done.removed, ids[..3].to_vec(), "oldest first");
    assert_eq!(
        store.list_backup_ids().await.expect("list"),
        ids[3..].to_vec()
    );
    for id in &ids[..3] {
        assert!(
            store
                .list(&layout::backup_prefix(id))
                .await
                .expect("list")
                .is_empty(),
            "nothing of {id} is left"
        );
    }
    let again = gate
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect("prunes");
    assert!(again.removed.is_empty(), "idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_deletion_is_refused_without_force() {
    let store = Arc::new(MemoryStore::new());
    nightly(store.as_ref(), BackupKind::PreDeploy, 10).await;
    let gate = gate(store.clone(), "2026-11-01T00:00:00Z");
    let settings = keep_last(2);
    let refused = gate
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect("plans");
    assert!(refused.refused && refused.removed.is_empty());
    let err = refused.refusal().expect("an error");
    assert_eq!(err.exit_code(), crate::ExitCode::Usage);
    let msg = err.to_string();
    assert!(
        msg.contains("remove 8 of the 10 pre-deploy backups"),
        "{msg}"
    );
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(store.list_backup_ids().await.expect("list").len(), 10);

    let mut count = settings.clone();
    count.budget.max_share = 1.0;
    count.budget.max_count = Some(5);
    let refused = gate
        .pruner()
        .prune(Some(&count), &apply())
        .await
        .expect("plans");
    assert!(refused.refused);
    assert!(
        refused
            .refusal()
            .expect("err")
            .to_string()
            .contains("max-delete-count 5")
    );

    let forced = gate
        .pruner()
        .prune(
            Some(&settings),
            &PruneOptions {
                force: true,
                ..apply()
            },
        )
        .await
        .expect("prunes");
    assert_eq!(forced.removed.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rules_prune_is_a_usage_error_and_flags_select_kinds() {
    let store = Arc::new(MemoryStore::new());
    nightly(store.as_ref(), BackupKind::PreDeploy, 4).await;
    let manual = nightly(store.as_ref(), BackupKind::Manual, 4).await;
    let gate = gate(store.clone(), "2026-11-01T00:00:00Z");
    let err = gate
        .pruner()
        .prune(None, &PruneOptions::default())
        .await
        .expect_err("no rules");
    assert_eq!(err.exit_code(), crate::ExitCode::Usage);
    assert!(err.to_string().contains("--keep-last"), "{err}");

    let options = PruneOptions {
        kinds: vec![BackupKind::Manual],
        rules: Some(KeepRules {
            last: Some(2),
            ..KeepRules::default()
        }),
        ..apply()
    };
    let report = gate.pruner().prune(None, &options).await.expect("prunes");
    assert_eq!(report.removed, manual[..2].to_vec());
    assert!(
        report
            .plan
            .decisions
            .iter()
            .all(|d| d.kind == BackupKind::Manual)
    );
    assert_eq!(
        report.rules,
        BTreeMap::from([(BackupKind::Manual, "keep-last 2".to_owned())])
    );
    assert_eq!(store.list_backup_ids().await.expect("list").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_and_deployments_protect() {
    let store = Arc::new(MemoryStore::new());
    let ids = nightly(store.as_ref(), BackupKind::PreDeploy, 4).await;
    let gate = gate(store.clone(), "2026-11-01T00:00:00Z");
    gate.inventory()
        .pin(ids[0].as_str(), None)
        .await
        .expect("pin");
    let m = store.read_manifest(&ids[1]).await.expect("manifest");
    gate.inventory()
        .record_deployment(&m)
        .await
        .expect("records");
    let mut settings = keep_last(1);
    settings.budget.max_share = 1.0;
    let report = gate
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect("prunes");
    assert_eq!(report.removed, vec![ids[2].clone()]);
    let reasons = |id: &BackupId| report.plan.decision(id).expect("d").reasons.join("; ");
    assert_eq!(reasons(&ids[0]), "pinned");
    assert_eq!(
        reasons(&ids[1]),
        "the current deployment ran on this backup"
    );
    assert_eq!(report.deployments.len(), 1);
}

/// A store that records deletions and can fail every delete after the first N.
#[derive(Debug)]
struct CrashingStore {
    inner: MemoryStore,
    deletes: Mutex<Vec<String>>,
    fail_after: Mutex<Option<usize>>,
}

#[async_trait]
impl Store for CrashingStore {
    fn name(&self) -> &str {
        "crashing://"
    }
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn put_stream(&self, key: &str, data: ByteStream) -> backup_core::Result<u64> {
        self.inner.put_stream(key, data).await
    }
    async fn put_bytes(
        &self,
        key: &str,
        data: bytes::Bytes,
        mode: WriteMode,
    ) -> backup_core::Result<()> {
        self.inner.put_bytes(key, data, mode).await
    }
    async fn get(&self, key: &str) -> backup_core::Result<ByteStream> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_core::Result<Option<ObjectInfo>> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_core::Result<Vec<ObjectInfo>> {
        self.inner.list(prefix).await
    }
    async fn list_dirs(&self, prefix: &str) -> backup_core::Result<Vec<String>> {
        self.inner.list_dirs(prefix).await
    }
    async fn delete(&self, key: &str) -> backup_core::Result<()> {
        {
            let mut deletes = self.deletes.lock().expect("lock");
            if let Some(n) = *self.fail_after.lock().expect("lock")
                && deletes.len() >= n
            {
                return Err(backup_core::Error::store(
                    "delete",
                    key,
                    "the machine crashed",
                ));
            }
            deletes.push(key.to_owned());
        }
        self.inner.delete(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_is_manifest_first_and_a_crash_leaves_no_half_backup() {
    let store = Arc::new(CrashingStore {
        inner: MemoryStore::new(),
        deletes: Mutex::new(Vec::new()),
        fail_after: Mutex::new(Some(1)),
    });
    let ids = nightly(store.as_ref(), BackupKind::PreDeploy, 3).await;
    let gate = gate(store.clone(), "2026-11-01T00:00:00Z");
    let mut settings = keep_last(2);
    settings.budget.max_share = 1.0;
    let err = gate
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect_err("the store crashes after one delete");
    assert!(
        err.to_string()
            .contains(&format!("failed to remove {}", ids[0])),
        "{err}"
    );
    assert_eq!(
        *store.deletes.lock().expect("lock"),
        vec![layout::manifest_key(&ids[0])],
        "the manifest goes first"
    );
    // The backup is gone as a unit; its data is an incomplete directory.
    assert_eq!(
        store.list_backup_ids().await.expect("list"),
        ids[1..].to_vec()
    );
    assert!(
        !store
            .list(&layout::backup_prefix(&ids[0]))
            .await
            .expect("list")
            .is_empty()
    );

    // Healed, a prune removes nothing more and, past the grace, collects the leftovers.
    *store.fail_after.lock().expect("lock") = None;
    let again = gate
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect("prunes");
    assert!(again.removed.is_empty());
    let later = self::gate(store.clone(), "2099-01-01T00:00:00Z");
    let mut report = later
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect("prunes");
    later.pruner().collect_leftovers(&mut report).await;
    assert_eq!(
        report.leftovers_removed,
        vec![layout::backup_prefix(&ids[0])]
    );
    assert!(
        store
            .list(&layout::backup_prefix(&ids[0]))
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_are_collected_only_after_the_grace() {
    let store = Arc::new(MemoryStore::new());
    let now: Timestamp = "2099-01-01T00:00:00Z".parse().expect("time");
    let old = BackupId::from_parts("2026-10-01T00:00:00Z".parse().expect("time"), [1, 2, 3]);
    let fresh = BackupId::from_parts(now - SignedDuration::from_hours(2), [1, 2, 3]);
    for id in [&old, &fresh] {
        store
            .put_bytes(
                &layout::artifact_key(id, &"db".parse().expect("name"), "dump.pgc.zst"),
                b"partial".to_vec().into(),
                WriteMode::CreateOnly,
            )
            .await
            .expect("put");
    }
    // A stale pin of a backup that no longer exists, and a live one.
    let live = write_backup(
        store.as_ref(),
        "2026-10-02T00:00:00Z",
        "prod",
        BackupKind::Manual,
        Some(true),
    )
    .await;
    store
        .put_bytes(
            &layout::pin_key(&old),
            b"{}".to_vec().into(),
            WriteMode::CreateOnly,
        )
        .await
        .expect("pin");
    store
        .put_bytes(
            &layout::pin_key(&live),
            b"{}".to_vec().into(),
            WriteMode::CreateOnly,
        )
        .await
        .expect("pin");
    let gate = gate(store.clone(), "2099-01-01T00:00:00Z");
    let mut report = gate
        .pruner()
        .plan_retention(&keep_last(1), &[])
        .await
        .expect("plans");
    gate.pruner().collect_leftovers(&mut report).await;
    assert_eq!(
        report.leftovers_removed,
        vec![layout::backup_prefix(&old), layout::pin_key(&old)]
    );
    assert!(
        !store
            .list(&layout::backup_prefix(&fresh))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .head(&layout::pin_key(&live))
            .await
            .expect("head")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_retention_prunes_only_the_new_backups_group_and_never_fails() {
    let store = Arc::new(MemoryStore::new());
    let pre = nightly(store.as_ref(), BackupKind::PreDeploy, 3).await;
    nightly(store.as_ref(), BackupKind::Scheduled, 3).await;
    let gate = gate(store.clone(), "2026-11-01T00:00:00Z");
    let mut settings = keep_last(2);
    settings.rules.insert(
        BackupKind::Scheduled,
        KeepRules {
            last: Some(1),
            ..KeepRules::default()
        },
    );
    let newest = store.read_manifest(&pre[2]).await.expect("manifest");
    let outcome = BackupOutcome {
        verification: store
            .read_verifications(&pre[2])
            .await
            .expect("records")
            .pop()
            .expect("one"),
        manifest: newest,
        preflight: vec![],
        snapshot_seconds: 0.0,
    };
    assert!(
        gate.pruner()
            .retain_after_backup(None, &outcome)
            .await
            .report
            .is_none()
    );
    let auto = gate
        .pruner()
        .retain_after_backup(Some(&settings), &outcome)
        .await;
    assert!(auto.warnings.is_empty(), "{:?}", auto.warnings);
    assert_eq!(auto.report.expect("ran").removed, vec![pre[0].clone()]);
    assert_eq!(
        store.list_backup_ids().await.expect("list").len(),
        5,
        "scheduled untouched"
    );

    // Over budget: a warning, nothing removed.
    let mut strict = keep_last(1);
    strict.budget.max_share = 0.4; // 1 of the 2 left is 50%
    let auto = gate
        .pruner()
        .retain_after_backup(Some(&strict), &outcome)
        .await;
    assert!(auto.report.expect("ran").removed.is_empty());
    assert!(
        auto.warnings[0].contains("--yes --force"),
        "{:?}",
        auto.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_manifests_are_left_alone_with_a_warning() {
    let store = Arc::new(MemoryStore::new());
    let ids = nightly(store.as_ref(), BackupKind::PreDeploy, 3).await;
    store.tamper(&layout::manifest_key(&ids[0]), |b| b.truncate(10));
    let gate = gate(store.clone(), "2026-11-01T00:00:00Z");
    let mut settings = keep_last(1);
    settings.budget.max_share = 1.0;
    let report = gate
        .pruner()
        .prune(Some(&settings), &apply())
        .await
        .expect("prunes");
    assert_eq!(report.removed, vec![ids[1].clone()]);
    assert!(report.warnings[0].contains(&format!("backup {} is left alone", ids[0])));
    assert!(
        store
            .head(&layout::manifest_key(&ids[0]))
            .await
            .expect("head")
            .is_some()
    );
}

// Random histories in a store: a guarded run never removes more than the budget nor a
// protected backup, and a second run removes nothing more.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn pruning_a_store_respects_protections_budget_and_is_idempotent(
        backups in proptest::collection::vec((0i64..90 * 24, 0usize..3, 0u8..8, any::<bool>(), 0usize..4), 1..30),
        last in 1u32..4,
        daily in proptest::option::of(1u32..5),
        share in 1u32..=10,
        max_count in proptest::option::of(0usize..6),
        deploy in proptest::option::of(0usize..30),
        force in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let store = Arc::new(MemoryStore::new());
            let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
            let kinds = [BackupKind::PreDeploy, BackupKind::Scheduled, BackupKind::Manual];
            let mut ids = Vec::new();
            let mut seen = BTreeSet::new();
            for (hour, kind, v, pinned, commit) in &backups {
                if !seen.insert(*hour) { continue; }
                let at = start + SignedDuration::from_hours(*hour);
                let verified = match v { 0 => None, 1 => Some(false), _ => Some(true) };
                let id = write_backup_at(store.as_ref(), at, "prod", kinds[*kind], verified, Some(format!("c{commit}"))).await;
                if *pinned {
                    store.put_bytes(&layout::pin_key(&id), b"{}".to_vec().into(), WriteMode::CreateOnly).await.expect("pin");
                }
                ids.push(id);
            }
            let gate = gate(store.clone(), "2026-06-01T00:00:00Z");
            if let Some(i) = deploy && let Some(id) = ids.get(i) {
                let m = store.read_manifest(id).await.expect("manifest");
                gate.inventory().record_deployment(&m).await.expect("records");
            }
            let mut settings = RetentionSettings::default()
                .with_rules_for(&[BackupKind::PreDeploy, BackupKind::Scheduled], KeepRules { last: Some(last), daily, ..KeepRules::default() })
                .expect("valid");
            settings.failed_grace = 3.days();
            settings.budget.max_share = f64::from(share) / 10.0;
            settings.budget.max_count = max_count;

            let (before, _) = gate.pruner().retention_summaries(&[]).await.expect("summaries");
            let report = gate.pruner().prune(Some(&settings), &PruneOptions { force, ..apply() }).await.expect("prunes");
            let after: BTreeSet<BackupId> = store.list_backup_ids().await.expect("list").into_iter().collect();
            let removed: Vec<&BackupSummary> = before.iter().filter(|b| !after.contains(&b.id)).collect();
            prop_assert_eq!(removed.len(), report.removed.len());

            // Never a protected backup: pinned, the newest verified of a group, the deployment's.
            let deployed = gate.inventory().deployments().await.expect("deployments");
            for b in &removed {
                prop_assert!(!b.pinned);
                prop_assert!(deployed.iter().all(|d| d.backup_id != b.id));
                let newer_verified = before.iter().any(|o| o.kind == b.kind && o.is_verified() && o.created_at > b.created_at);
                prop_assert!(!b.is_verified() || newer_verified);
                prop_assert!(b.kind != BackupKind::Manual, "manual backups have no rules");
            }
            // Never more than the budget unless forced.
            if !force {
                if let Some(max) = max_count { prop_assert!(removed.len() <= max); }
                for kind in kinds {
                    let total = before.iter().filter(|b| b.kind == kind).count();
                    let gone = removed.iter().filter(|b| b.kind == kind).count();
                    prop_assert!(gone as f64 <= settings.budget.max_share * total as f64 + 1e-9);
                }
            }
            // Idempotent: a second run (forced, so the budget does not hide anything) removes nothing.
            if !report.refused {
                let again = gate.pruner().prune(Some(&settings), &PruneOptions { force: true, ..apply() }).await.expect("prunes");
                prop_assert!(again.removed.is_empty(), "{:?}", again.removed);
            }
            Ok(())
        })?;
    }
}

/// A store that holds the first delete of a blob until released: the moment between a blob
/// collection's listing of references and its delete, frozen.
#[derive(Debug, Default)]
struct PausingStore {
    inner: MemoryStore,
    paused: tokio::sync::Notify,
    resume: tokio::sync::Notify,
    armed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for PausingStore {
    fn name(&self) -> &str {
        "pausing://"
    }
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn put_stream(&self, key: &str, data: ByteStream) -> backup_core::Result<u64> {
        self.inner.put_stream(key, data).await
    }
    async fn put_bytes(
        &self,
        key: &str,
        data: bytes::Bytes,
        mode: WriteMode,
    ) -> backup_core::Result<()> {
        self.inner.put_bytes(key, data, mode).await
    }
    async fn get(&self, key: &str) -> backup_core::Result<ByteStream> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_core::Result<Option<ObjectInfo>> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_core::Result<Vec<ObjectInfo>> {
        self.inner.list(prefix).await
    }
    async fn list_dirs(&self, prefix: &str) -> backup_core::Result<Vec<String>> {
        self.inner.list_dirs(prefix).await
    }
    async fn delete(&self, key: &str) -> backup_core::Result<()> {
        if key.starts_with(layout::BLOBS_DIR)
            && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.paused.notify_one();
            self.resume.notified().await;
        }
        self.inner.delete(key).await
    }
}

/// Issue 14, item 4: a backup in *another* environment that deduplicates against an old,
/// unreferenced blob while a blob collection (`prune --yes` of environment `a`) is between its
/// listing and its delete. Before the store-wide blob lease, the backup committed and verified
/// referencing the blob, and the collection then deleted it: a "verified" backup with a missing
/// blob. Now the backup waits for the collection and stores the blob again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_collection_never_deletes_a_blob_a_backup_of_another_environment_reuses() {
    use backup_objectstore::bucket::BucketVerifier;
    use backup_objectstore::{BucketLocation, BucketSnapshotter, BucketSource, S3Settings};

    let store = Arc::new(PausingStore::default());
    // A blob left by a backup removed long ago: unreferenced, older than the grace period (the
    // collector's clock is a day ahead).
    let content = b"the same bytes in both environments".to_vec();
    let digest = backup_core::Digest::of(&content);
    let blob_key = layout::blob_key(&digest);
    store
        .put_bytes(&blob_key, content.clone().into(), WriteMode::Overwrite)
        .await
        .expect("old blob");
    let later = (Timestamp::now() + SignedDuration::from_hours(25)).to_string();
    let collector = gate(store.clone(), &later);

    // Environment b backs up a directory holding the same bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("shared.txt"), &content).expect("file");
    let location = BucketLocation::parse(dir.path().to_str().expect("utf-8")).expect("location");
    let source = BucketSource::open(location, &S3Settings::default()).expect("source");
    let backup_b = Gate::new(
        store.clone(),
        "b",
        vec![Arc::new(BucketSnapshotter::new(
            "files".parse().expect("name"),
            source,
        ))],
        vec![Arc::new(BucketVerifier::default())],
    )
    .with_verify_level(VerificationLevel::Checksum);

    // The collection plans (the blob is unreferenced and old) and stops before its delete.
    store.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let paused = store.paused.notified();
    let collection = {
        let collector = collector;
        tokio::spawn(async move {
            let mut report = collector
                .pruner()
                .prune(Some(&keep_last(5)), &apply())
                .await
                .expect("prune");
            collector.pruner().collect_blobs(&mut report, true).await;
            report
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), paused)
        .await
        .expect("the collection reached its delete");

    // Meanwhile the backup of environment b runs: it must not commit a reference to the blob
    // about to be deleted (it waits for the collection, or would store the blob again).
    let request = crate::BackupRequest {
        kind: BackupKind::Manual,
        deploy: DeployInfo::default(),
    };
    let mut backup = tokio::spawn(async move {
        let outcome = backup_b.backups().backup(&request).await;
        (backup_b, outcome)
    });
    let finished_early = tokio::time::timeout(std::time::Duration::from_secs(3), &mut backup)
        .await
        .ok();
    store.resume.notify_one();
    let report = collection.await.expect("collection joins");
    let (backup_b, outcome) = match finished_early {
        Some(joined) => joined.expect("backup joins"),
        None => backup.await.expect("backup joins"),
    };
    let outcome = outcome.expect("the backup of b succeeds");
    assert!(
        report.warnings.is_empty(),
        "warnings: {:?}",
        report.warnings
    );

    // Every blob b's backup references is there, and a full re-verification passes.
    assert!(
        store.head(&blob_key).await.expect("head").is_some(),
        "the blob backup {} references was deleted under it (blobs removed: {})",
        outcome.manifest.id,
        report.blobs_removed
    );
    let record = backup_b
        .backups()
        .reverify_manifest(
            &outcome.manifest,
            VerificationLevel::Checksum,
            VerificationLevel::Checksum,
        )
        .await
        .expect("the backup still verifies");
    assert!(record.passed);
    assert!(
        store
            .list(backup_objectstore::LOCKS_DIR)
            .await
            .expect("list")
            .is_empty(),
        "every lease was released"
    );
}
