//! Blob garbage collection: blobs that no remaining backup's index references, once they are
//! older than a grace period.
//!
//! Blobs are shared by every backup of the store (all environments), so the plan reads every
//! manifest and every bucket index. If any of them cannot be read, nothing is collected: deleting
//! on partial knowledge would lose data.
//!
//! # Collection against backups of every environment
//!
//! A backup references blobs it did not write: objects unchanged since the previous backup reuse
//! its digests, and objects whose blob is already stored are deduplicated against it. A
//! collector that listed the references before such a backup committed, and deletes after, would
//! leave a committed (and possibly verified) backup with a missing blob. The environment's run
//! lock does not help: the backup may belong to any environment. So:
//!
//! - a collection holds the store-wide lease [`StoreLock::blob_collector`] from before its plan
//!   (the listing of blobs and references) until its last delete;
//! - every backup that stores or reuses blobs holds a [`StoreLock::blob_user`] lease, in whatever
//!   environment, from before it reads the previous index or checks a blob until its manifest
//!   is committed (a later plan sees the manifest);
//! - the two exclude each other with the write-then-list protocol of the lock (see
//!   `backup_core::lock`), which needs no create-only writes, so it holds on moto and AWS (which honour
//!   them) and on Garage (which silently overwrites) alike. Backups wait for a running
//!   collection; a collection that finds a backup running does not wait: it collects nothing
//!   this time;
//! - [`apply_blob_gc`] checks before every delete that its lease is still held (renewed in time,
//!   see [`LockGuard::is_held`]), and stops when it is not.
//!
//! Two older safeguards stay, for backups written by versions that took no blob lease: the
//! grace period (a running backup uploads blobs before its manifest exists), and backups
//! committed since the plan are read again before anything is deleted.
use std::collections::{BTreeSet, HashSet};

use backup_core::{BackupId, ObjectInfo, Result, Store, StoreExt, layout};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::bucket::index::{
    blob_list_artifact, index_artifact, is_bucket_source, read_blob_list, read_index,
};
use backup_core::lock::LockGuard;
#[cfg(doc)]
use backup_core::lock::StoreLock;

/// Default grace period: an unreferenced blob younger than this is kept.
pub const DEFAULT_BLOB_GRACE_HOURS: i64 = 24;

/// What a blob collection would remove, and why the rest stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlobGcPlan {
    /// Blobs in the store.
    pub blobs: u64,
    /// Blobs some remaining backup references.
    pub referenced: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub young: u64,
    /// Unreferenced blobs older than the grace period: these go.
    pub removable: u64,
    /// Their total size.
    pub removable_bytes: u64,
    /// Why nothing is collected, when an index or manifest could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The keys to remove.
    #[serde(skip)]
    pub keys: Vec<String>,
    /// The backups the plan read (so a backup committed since can be taken into account).
    #[serde(skip)]
    pub seen: BTreeSet<BackupId>,
}

/// Plans a blob collection as if the backups in `excluded` (about to be removed) were gone.
///
/// # Errors
///
/// The store's error when the blobs or the backups cannot be listed. A manifest or index that
/// cannot be read is not an error: the plan is then `blocked` and removes nothing.
pub async fn plan_blob_gc(
    store: &dyn Store,
    excluded: &BTreeSet<BackupId>,
    grace: SignedDuration,
    now: Timestamp,
) -> Result<BlobGcPlan> {
    let blobs: Vec<ObjectInfo> = store
        .list(layout::BLOBS_ROOT)
        .await?
        .into_iter()
        .filter(|b| is_blob(&b.key))
        .collect();
    let mut plan = BlobGcPlan {
        blobs: blobs.len() as u64,
        ..BlobGcPlan::default()
    };
    if blobs.is_empty() {
        return Ok(plan);
    }
    let mut referenced: HashSet<String> = HashSet::new();
    for id in store.list_backup_ids().await? {
        plan.seen.insert(id.clone());
        if excluded.contains(&id) {
            continue;
        }
        if let Err(why) = referenced_by(store, &id, &mut referenced).await {
            plan.blocked = Some(why);
            return Ok(plan);
        }
    }
    let cutoff = now - grace;
    for blob in blobs {
        if referenced.contains(&blob.key) {
            plan.referenced += 1;
        } else if blob.last_modified > cutoff {
            plan.young += 1;
        } else {
            plan.removable += 1;
            plan.removable_bytes += blob.size;
            plan.keys.push(blob.key);
        }
    }
    Ok(plan)
}

/// Whether `key` is a blob this module writes (plain or sealed); anything else under `blobs/`
/// is not ours to collect.
fn is_blob(key: &str) -> bool {
    layout::blob_digest(key).is_some() || layout::is_sealed_blob_key(key)
}

/// Adds the blob keys backup `id` references to `referenced`; `Err` says why they cannot be
/// known. An encrypted backup's references are read from its plaintext blob list, so no key is
/// needed.
async fn referenced_by(
    store: &dyn Store,
    id: &BackupId,
    referenced: &mut HashSet<String>,
) -> std::result::Result<(), String> {
    let manifest = match store.read_manifest(id).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(()), // removed meanwhile
        Err(e) => return Err(format!("the manifest of backup {id} cannot be read: {e}")),
    };
    for source in manifest.sources.iter().filter(|s| is_bucket_source(s)) {
        let name = &source.name;
        let damaged = |e: backup_core::Error| {
            format!("the blob references of backup {id}, source {name}, cannot be read: {e}")
        };
        if let Some(list) = blob_list_artifact(source) {
            let mut blobs = read_blob_list(store, list).await.map_err(damaged)?;
            while let Some(line) = blobs.next().await {
                referenced.insert(line.map_err(damaged)?.0);
            }
            continue;
        }
        let artifact = index_artifact(source)
            .ok_or_else(|| format!("backup {id}: source {name} has no index artifact"))?;
        let mut entries = read_index(store, artifact).await.map_err(damaged)?;
        while let Some(entry) = entries.next().await {
            referenced.insert(entry.map_err(damaged)?.blob_key());
        }
    }
    Ok(())
}

/// Removes the blobs `plan` names (nothing when it is blocked) while `lease` (the store-wide
/// [`StoreLock::blob_collector`] lease, taken before the plan was made) is held; returns how
/// many went.
///
/// Backups committed since the plan was made are read first and their blobs spared (a backup of
/// a version that takes no blob lease may have referenced an old blob meanwhile).
///
/// # Errors
///
/// The store's error on the first failed removal, or when the backups cannot be listed; an
/// error naming the count removed when the lease is lost part-way (the rest is left: a backup
/// may be reusing blobs now). An unreadable new backup removes nothing (`Ok(0)`, with a warning
/// in the log).
pub async fn apply_blob_gc(store: &dyn Store, plan: &BlobGcPlan, lease: &LockGuard) -> Result<u64> {
    if plan.blocked.is_some() {
        return Ok(0);
    }
    let mut spared: HashSet<String> = HashSet::new();
    for id in store.list_backup_ids().await? {
        if plan.seen.contains(&id) {
            continue;
        }
        if let Err(why) = referenced_by(store, &id, &mut spared).await {
            tracing::warn!("no blob was removed, because {why}");
            return Ok(0);
        }
    }
    let mut removed = 0;
    for key in &plan.keys {
        if spared.contains(key) {
            continue;
        }
        if let Some(why) = lease.lost_reason() {
            return Err(backup_core::Error::store(
                "delete",
                key,
                format!(
                    "the blob collection lease was lost ({why}) after {removed} blob(s) were \
                     removed; the rest stays, as a backup may be reusing them now"
                ),
            ));
        }
        store.delete(key).await?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::index::{INDEX_FILE, INDEX_FORMAT, IndexEntry};
    use backup_core::Digest;
    use backup_core::testkit::MemoryStore;
    use backup_core::{
        ArtifactMeta, BackupKind, Manifest, PipelineConfig, SourceManifest, ToolInfo, WriteMode,
        pipeline,
    };
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Duration;

    async fn collector(store: &Arc<MemoryStore>) -> LockGuard {
        let ttl = backup_core::lock::DEFAULT_TTL;
        crate::StoreLock::blob_collector(store.clone(), "default", ttl)
            .acquire(
                crate::Lease::new("default", "prune", None, ttl),
                Duration::ZERO,
            )
            .await
            .expect("collector lease")
    }

    async fn blob(store: &MemoryStore, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        store
            .put_bytes(
                &layout::blob_key(&d),
                Bytes::copy_from_slice(data),
                WriteMode::Overwrite,
            )
            .await
            .expect("blob");
        d
    }

    async fn backup(store: &MemoryStore, at: &str, digests: &[Digest], damage: bool) -> BackupId {
        let t: Timestamp = at.parse().expect("time");
        let id = BackupId::from_parts(t, [1, 2, 3]);
        let name = "files".parse().expect("name");
        let mut lines = Vec::new();
        for (i, d) in digests.iter().enumerate() {
            let e = IndexEntry {
                key: format!("k{i}"),
                size: 1,
                sha256: *d,
                etag: None,
                last_modified: t,
                content_type: None,
                headers: Default::default(),
                metadata: Default::default(),
                reused: false,
                blob: None,
                stored_size: None,
            };
            lines.extend(e.to_line().expect("line"));
        }
        let key = layout::artifact_key(&id, &name, INDEX_FILE);
        let stats =
            pipeline::write_artifact(store, &key, "files", &lines[..], &PipelineConfig::default())
                .await
                .expect("index");
        if damage {
            store
                .put_bytes(&key, Bytes::from_static(b"not zstd"), WriteMode::Overwrite)
                .await
                .expect("damage");
        }
        let manifest = Manifest {
            format_version: 1,
            id: id.clone(),
            kind: BackupKind::Manual,
            environment: "default".into(),
            created_at: t,
            finished_at: t,
            tool: ToolInfo::current(),
            host: "h".into(),
            deploy: Default::default(),
            sources: vec![SourceManifest {
                name,
                kind: "directory".into(),
                location: "file:///x".into(),
                server_version: None,
                tool_version: None,
                artifacts: vec![ArtifactMeta {
                    name: INDEX_FILE.into(),
                    key,
                    format: INDEX_FORMAT.into(),
                    compression: "zstd".into(),
                    stored_size: stats.stored_size,
                    raw_size: stats.raw_size,
                    sha256: stats.sha256,
                    extra: Default::default(),
                }],
                stats: Default::default(),
                notes: vec![],
                extra: Default::default(),
            }],
            expires_at: None,
            extra: Default::default(),
        };
        store.write_manifest(&manifest).await.expect("manifest");
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_old_unreferenced_blobs_go_and_never_on_partial_knowledge() {
        let store = Arc::new(MemoryStore::new());
        let shared = blob(&store, b"shared").await;
        let only_old = blob(&store, b"only in the old backup").await;
        let orphan = blob(&store, b"orphan").await;
        let old = backup(&store, "2026-11-01T00:00:00Z", &[shared, only_old], false).await;
        backup(&store, "2026-11-02T00:00:00Z", &[shared], false).await;
        let grace = SignedDuration::from_hours(DEFAULT_BLOB_GRACE_HOURS);

        // Everything was just written: unreferenced blobs are still within the grace period.
        let now = Timestamp::now();
        let plan = plan_blob_gc(&store, &BTreeSet::new(), grace, now)
            .await
            .expect("plan");
        assert_eq!(
            (plan.blobs, plan.referenced, plan.young, plan.removable),
            (3, 2, 1, 0)
        );

        // A day later, with the old backup about to be removed: two blobs go, the shared stays.
        let later = now + SignedDuration::from_hours(25);
        let plan = plan_blob_gc(&store, &BTreeSet::from([old]), grace, later)
            .await
            .expect("plan");
        assert_eq!((plan.referenced, plan.removable), (1, 2));
        let mut expected = vec![layout::blob_key(&only_old), layout::blob_key(&orphan)];
        expected.sort();
        let mut keys = plan.keys.clone();
        keys.sort();
        assert_eq!(keys, expected);
        let lease = collector(&store).await;
        assert_eq!(
            apply_blob_gc(&store, &plan, &lease).await.expect("applied"),
            2
        );
        assert!(
            store
                .head(&layout::blob_key(&shared))
                .await
                .expect("head")
                .is_some()
        );
        assert!(
            store
                .head(&layout::blob_key(&orphan))
                .await
                .expect("head")
                .is_none()
        );

        // A damaged index blocks collection entirely.
        blob(&store, b"another orphan").await;
        backup(&store, "2026-11-03T00:00:00Z", &[], true).await;
        let plan = plan_blob_gc(&store, &BTreeSet::new(), grace, later + grace)
            .await
            .expect("plan");
        assert!(
            plan.blocked.as_deref().unwrap_or("").contains("20261103"),
            "{plan:?}"
        );
        assert_eq!(
            apply_blob_gc(&store, &plan, &lease).await.expect("applied"),
            0
        );
        assert_eq!(store.list(layout::BLOBS_DIR).await.expect("list").len(), 2);
    }

    /// A collection whose lease was lost (taken over after it stopped renewing) deletes nothing
    /// more: a backup may be reusing the blobs by now.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_collection_that_lost_its_lease_stops_deleting() {
        let store = Arc::new(MemoryStore::new());
        blob(&store, b"orphan").await;
        let later = Timestamp::now() + SignedDuration::from_hours(25);
        let grace = SignedDuration::from_hours(DEFAULT_BLOB_GRACE_HOURS);
        let ttl = Duration::from_secs(3);
        let lease = crate::StoreLock::blob_collector(store.clone(), "default", ttl)
            .acquire(
                crate::Lease::new("default", "prune", None, ttl),
                Duration::ZERO,
            )
            .await
            .expect("collector lease");
        let plan = plan_blob_gc(store.as_ref(), &BTreeSet::new(), grace, later)
            .await
            .expect("plan");
        assert_eq!(plan.removable, 1);
        store.delete(lease.key()).await.expect("taken over");
        tokio::time::timeout(Duration::from_secs(3), lease.lost())
            .await
            .expect("the collector notices");
        let err = apply_blob_gc(store.as_ref(), &plan, &lease)
            .await
            .expect_err("stops");
        let msg = crate::error_chain(&err);
        assert!(msg.contains("lease was lost"), "{msg}");
        assert_eq!(store.list(layout::BLOBS_DIR).await.expect("list").len(), 1);
    }
}
