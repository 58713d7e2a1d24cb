//! The bucket flow over the in-memory store and a temp directory: snapshot, reuse, restore.

use std::path::Path;

use backup_core::testkit::MemoryStore;
use backup_core::{
    BackupId, BackupKind, Manifest, PipelineConfig, SnapshotContext, Snapshotter, SourceManifest,
    Store, StoreExt, ToolInfo, VerificationLevel, VerificationRecord, VerificationReport, layout,
};

use super::*;
use crate::S3Settings;
use backup_core::Verifier;

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

/// Takes a snapshot and commits it as a backup with a passing verification record.
async fn backup(store: &MemoryStore, snap: &BucketSnapshotter, env: &str) -> SourceManifest {
    backup_with(store, snap, env, &PipelineConfig::default()).await
}

/// [`backup`] with the given pipeline settings (recipients: encrypted).
async fn backup_with(
    store: &MemoryStore,
    snap: &BucketSnapshotter,
    env: &str,
    pipeline: &PipelineConfig,
) -> SourceManifest {
    let id = BackupId::new(jiff::Timestamp::now());
    let ctx = SnapshotContext {
        store,
        backup_id: &id,
        environment: env,
        pipeline,
    };
    let source = snap.snapshot(ctx).await.expect("snapshot");
    let now = jiff::Timestamp::now();
    let manifest = Manifest {
        format_version: 1,
        id: id.clone(),
        kind: BackupKind::Manual,
        environment: env.into(),
        created_at: now,
        finished_at: now,
        tool: ToolInfo::current(),
        host: "h".into(),
        deploy: Default::default(),
        sources: vec![source.clone()],
        expires_at: None,
        extra: Default::default(),
    };
    store.write_manifest(&manifest).await.expect("manifest");
    store
        .write_verification(&VerificationRecord {
            format_version: 1,
            backup_id: id,
            verified_at: now,
            level_requested: VerificationLevel::Checksum,
            level_reached: Some(VerificationLevel::Checksum),
            passed: true,
            limited_by: None,
            report: VerificationReport::default(),
            tool: ToolInfo::current(),
            host: "h".into(),
            extra: Default::default(),
        })
        .await
        .expect("record");
    // Backup ids have one-second resolution plus a random suffix: keep them ordered.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    source
}

fn stat(s: &SourceManifest, name: &str) -> u64 {
    bucket_stat(s, name).unwrap_or_else(|| panic!("no {name} in {:?}", s.stats))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reuses_unchanged_objects_and_restores_byte_for_byte() {
    let src = tempfile::tempdir().expect("tempdir");
    let big: Vec<u8> = (0..MEMORY_SPOOL_LIMIT * 2 + 7)
        .map(|i| (i % 251) as u8)
        .collect();
    write(src.path(), "empty", b"");
    write(src.path(), "dup-1", b"same bytes");
    write(src.path(), "dir with space/dup-2", b"same bytes");
    write(src.path(), "ünïcode/日本.txt", b"konnichiwa");
    write(src.path(), "a/b/c/d/e/f/deep", b"deep");
    write(src.path(), "big.bin", &big);
    let store = MemoryStore::new();
    let location = BucketLocation::Directory(src.path().to_path_buf());
    let snap = BucketSnapshotter::new(
        "files".parse().expect("name"),
        BucketSource::open(location, &S3Settings::default()).expect("opens"),
    )
    .with_concurrency(3);
    assert_eq!(snap.kind(), "directory");

    let first = backup(&store, &snap, "default").await;
    assert_eq!(stat(&first, "objects"), 6);
    assert_eq!(stat(&first, "bytes"), (10 + 10 + 10 + 4 + big.len()) as u64);
    assert_eq!(stat(&first, "reused"), 0);
    assert_eq!(stat(&first, "uploaded") + stat(&first, "deduplicated"), 6);
    assert!(first.notes.iter().any(|n| n.contains("not atomic")));
    let blobs = store.list(layout::BLOBS_DIR).await.expect("list").len();
    assert_eq!(blobs, 5, "the two identical files share a blob");

    // Unchanged: nothing is read or written again.
    let second = backup(&store, &snap, "default").await;
    assert_eq!((stat(&second, "reused"), stat(&second, "uploaded")), (6, 0));
    assert!(second.extra.contains_key("reused_from"));

    // Another environment never reuses this one's index.
    let other_env = backup(&store, &snap, "staging").await;
    assert_eq!(stat(&other_env, "reused"), 0);
    assert_eq!(stat(&other_env, "deduplicated"), 6);

    // One changed file (new size) is the only one read again.
    write(src.path(), "a/b/c/d/e/f/deep", b"deeper");
    let third = backup(&store, &snap, "default").await;
    assert_eq!((stat(&third, "reused"), stat(&third, "uploaded")), (5, 1));

    // Restore into another directory: the same bytes under the same names.
    let dst = tempfile::tempdir().expect("tempdir");
    write(dst.path(), "not-in-backup", b"keep me");
    let restorer = BucketRestorer::new(S3Settings::default()).with_concurrency(2);
    let target = BucketLocation::Directory(dst.path().to_path_buf());
    let report = restorer
        .restore(&store, &third, &target)
        .await
        .expect("restored");
    assert_eq!(
        (report.objects, report.written, report.extra_in_target),
        (6, 6, 1)
    );
    for rel in [
        "empty",
        "dup-1",
        "dir with space/dup-2",
        "ünïcode/日本.txt",
        "a/b/c/d/e/f/deep",
        "big.bin",
    ] {
        assert_eq!(
            std::fs::read(dst.path().join(rel)).expect(rel),
            std::fs::read(src.path().join(rel)).expect(rel),
            "{rel}"
        );
    }
    assert_eq!(
        std::fs::read(dst.path().join("not-in-backup")).expect("kept"),
        b"keep me"
    );
    // Again: everything is already there.
    let again = restorer
        .restore(&store, &third, &target)
        .await
        .expect("restored");
    assert_eq!((again.written, again.unchanged), (0, 6));

    // A damaged blob fails the restore, naming the key, and leaves no partial file behind.
    let digest = backup_core::Digest::of(b"konnichiwa");
    store.tamper(&layout::blob_key(&digest), |b| b[0] ^= 1);
    let fresh = tempfile::tempdir().expect("tempdir");
    let err = restorer
        .restore(
            &store,
            &third,
            &BucketLocation::Directory(fresh.path().to_path_buf()),
        )
        .await
        .expect_err("damaged");
    let text = format!("{err}: {}", crate::error_chain(&err));
    assert!(text.contains("ünïcode/日本.txt"), "{text}");
    assert!(text.contains(&digest.hex()), "{text}");
    assert!(!fresh.path().join("ünïcode/日本.txt").exists());
    let leftovers: Vec<_> = walk_names(fresh.path());
    assert!(
        leftovers.iter().all(|n| !n.contains("pd-restore")),
        "{leftovers:?}"
    );
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read").flatten() {
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.path().is_dir() {
            out.extend(walk_names(&e.path()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_backup_that_failed_verification_is_not_reused() {
    let src = tempfile::tempdir().expect("tempdir");
    write(src.path(), "f", b"data");
    let store = MemoryStore::new();
    let snap = BucketSnapshotter::new(
        "files".parse().expect("name"),
        BucketSource::open(
            BucketLocation::Directory(src.path().to_path_buf()),
            &S3Settings::default(),
        )
        .expect("opens"),
    );
    let first = backup(&store, &snap, "default").await;
    assert_eq!(stat(&first, "uploaded"), 1);
    // A damaged blob: the latest record of the newest backup fails.
    let digest = backup_core::Digest::of(b"data");
    store.tamper(&layout::blob_key(&digest), |b| b[0] ^= 1);
    let id = store
        .list_backup_ids()
        .await
        .expect("ids")
        .pop()
        .expect("one");
    let mut failed = store
        .read_verifications(&id)
        .await
        .expect("records")
        .remove(0);
    failed.passed = false;
    failed.verified_at = jiff::Timestamp::now();
    store.write_verification(&failed).await.expect("record");
    // The next snapshot reads everything again and rewrites the blob, healing it.
    let second = backup(&store, &snap, "default").await;
    assert_eq!((stat(&second, "reused"), stat(&second, "uploaded")), (0, 1));
    assert_eq!(
        store
            .get_all(&layout::blob_key(&digest))
            .await
            .expect("blob"),
        b"data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_blob_write_fails_the_snapshot_and_commits_no_index() {
    use backup_core::testkit::{FaultPlan, FaultyStore};
    let src = tempfile::tempdir().expect("tempdir");
    for i in 0..5 {
        write(
            src.path(),
            &format!("f{i}"),
            format!("content {i}").as_bytes(),
        );
    }
    let store = FaultyStore::new(MemoryStore::new(), FaultPlan::fail_nth_write(3));
    let snap = BucketSnapshotter::new(
        "files".parse().expect("name"),
        BucketSource::open(
            BucketLocation::Directory(src.path().to_path_buf()),
            &S3Settings::default(),
        )
        .expect("opens"),
    );
    let id = BackupId::new(jiff::Timestamp::now());
    let err = snap
        .snapshot(SnapshotContext {
            store: &store,
            backup_id: &id,
            environment: "default",
            pipeline: &PipelineConfig::default(),
        })
        .await
        .expect_err("a write fails");
    assert!(
        matches!(
            err,
            backup_core::Error::Store { .. } | backup_core::Error::SnapshotFailed { .. }
        ),
        "{err:?}"
    );
    let index = layout::artifact_key(&id, &"files".parse().expect("name"), INDEX_FILE);
    assert!(store.inner().head(&index).await.expect("head").is_none());
}

/// Encrypted, with no identity in this process: blobs are sealed under keyed names and the
/// index cannot be read, yet level 1 and blob collection work from the plaintext blob list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_blobs_are_checked_and_collected_without_a_key() {
    // The example recipient of the age documentation: its identity is not here.
    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "a", b"guessable");
    write(dir.path(), "b", b"guessable");
    write(dir.path(), "c/d", b"other");
    let store = MemoryStore::new();
    let source = BucketSource::open(
        BucketLocation::Directory(dir.path().to_path_buf()),
        &S3Settings::default(),
    )
    .expect("opens");
    let snap = BucketSnapshotter::new("files".parse().expect("name"), source);
    let pipeline = PipelineConfig {
        recipients: vec![RECIPIENT.into()],
        ..PipelineConfig::default()
    };
    let source = backup_with(&store, &snap, "default", &pipeline).await;
    assert!(
        source
            .extra
            .contains_key(backup_core::sealed_blobs::SEALING_FIELD)
    );
    assert!(blob_list_artifact(&source).is_some());
    assert!(
        store
            .list(layout::BLOBS_DIR)
            .await
            .expect("list")
            .is_empty()
    );
    let sealed = store.list(layout::SEALED_BLOBS_DIR).await.expect("list");
    assert_eq!(sealed.len(), 2, "one sealed blob per distinct content");
    let plain = layout::blob_key(&backup_core::Digest::of(b"guessable"));
    assert!(
        sealed
            .iter()
            .all(|b| !b.key.ends_with(&plain[plain.len() - 64..]))
    );

    let id = store
        .list_backup_ids()
        .await
        .expect("ids")
        .pop()
        .expect("id");
    let manifest = store.read_manifest(&id).await.expect("manifest");
    let verifier = BucketVerifier::default();
    let report = verifier
        .verify(&store, &manifest, VerificationLevel::Checksum)
        .await
        .expect("runs");
    assert!(
        report.passed(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("all 3 sealed blobs present")),
        "{:?}",
        report.findings
    );

    // A truncated sealed blob fails level 1, naming it.
    let victim = sealed[0].key.clone();
    let bytes = store.get_all(&victim).await.expect("blob");
    store
        .put_bytes(
            &victim,
            bytes[..bytes.len() - 1].to_vec().into(),
            backup_core::WriteMode::Overwrite,
        )
        .await
        .expect("truncate");
    let report = verifier
        .verify(&store, &manifest, VerificationLevel::Checksum)
        .await
        .expect("runs");
    assert!(
        report.failures().any(|f| f.message.contains(&victim)),
        "{:?}",
        report.findings
    );

    // Collection: the referenced sealed blobs stay, an orphan goes, without a key.
    let orphan = layout::sealed_blob_key(&"ab".repeat(32));
    store
        .put_bytes(&orphan, "x".into(), backup_core::WriteMode::Overwrite)
        .await
        .expect("orphan");
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(25);
    let plan = plan_blob_gc(
        &store,
        &Default::default(),
        jiff::SignedDuration::from_hours(DEFAULT_BLOB_GRACE_HOURS),
        later,
    )
    .await
    .expect("plan");
    assert_eq!(plan.blocked, None);
    assert_eq!((plan.referenced, plan.removable), (2, 1));
    assert_eq!(plan.keys, vec![orphan]);
}
