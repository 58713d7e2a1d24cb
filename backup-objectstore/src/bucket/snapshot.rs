//! [`BucketSnapshotter`]: every object of a bucket prefix or directory into content-addressed
//! blobs, plus a streamed index.
//!
//! ```text
//! listing (sorted) ──merge-join── previous index (sorted, streamed)
//!        │  same ETag, size, time: reuse the digest (no GET, no PUT)
//!        ▼  otherwise: GET ─► sha256 + spool ─► HEAD blob ─► PUT blob (if missing)
//!   buffered(concurrency), in key order ─► JSON lines ─► pipeline (zstd) ─► index.jsonl.zst
//! ```
//!
//! Memory stays bounded whatever the bucket size: neither listing nor index is ever held whole.
//!
//! With encryption, each blob is sealed and named by a keyed hash ([`backup_core::sealed_blobs`]),
//! the index is encrypted, and a plaintext blob list is written beside it (see
//! [`crate::bucket::index`]). The previous backup's entries are reused only when its blobs are
//! sealed the same way (same recipient set, or both unencrypted).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use backup_core::{
    ArtifactMeta, ArtifactSpec, BackupId, Error, PreflightReport, Result, SnapshotContext,
    Snapshotter, SourceManifest, SourceName, SourceStats, Store, StoreExt,
};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::io::StreamReader;

use crate::bucket::blob::{BlobWrite, Sealing, spool, store_blob, store_sealed_blob};
use crate::bucket::index::{
    BLOB_LIST_FILE, BLOB_LIST_FORMAT, INDEX_FILE, INDEX_FORMAT, IndexEntry, IndexStream,
    index_artifact, read_index,
};
use crate::bucket::source::{BucketSource, ListedObject, SkipLog};
use backup_core::sealed_blobs::{SEALING_FIELD, blob_name_key};

/// Objects read and stored at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Large objects (spooled to a temp file) uploaded at once: each buffers multipart parts.
const LARGE_UPLOADS: usize = 2;

/// The note every bucket snapshot carries.
pub const NOT_ATOMIC_NOTE: &str = "bucket and directory snapshots are not atomic: each object is \
     recorded as it was when it was read, and objects changed during the snapshot may be from \
     different moments";

/// Snapshots a bucket prefix (kind `bucket`) or a directory (kind `directory`).
#[derive(Debug, Clone)]
pub struct BucketSnapshotter {
    name: SourceName,
    source: BucketSource,
    concurrency: usize,
}

impl BucketSnapshotter {
    /// A snapshotter of `source`, named `name` in backups.
    pub fn new(name: SourceName, source: BucketSource) -> Self {
        BucketSnapshotter {
            name,
            source,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Sets how many objects are read and stored at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The source.
    pub fn source(&self) -> &BucketSource {
        &self.source
    }
}

/// What to do with one listed object.
pub(crate) enum Task {
    /// The previous backup has it unchanged: reuse its entry.
    Reuse(IndexEntry),
    /// Read, hash and store it.
    Fetch(ListedObject),
}

/// What became of one listed object.
enum Outcome {
    Stored(Box<IndexEntry>, How),
    /// Deleted between the listing and the read.
    Vanished,
}

#[derive(Clone, Copy)]
enum How {
    Reused,
    Uploaded,
    Deduplicated,
}

/// The previous backup's index, read alongside the new listing (both sorted by key).
struct PrevCursor {
    entries: Option<IndexStream>,
    current: Option<IndexEntry>,
}

impl PrevCursor {
    /// The previous entry for `key`, if the previous index has one. Keys must be asked in
    /// ascending order; an out-of-order key finds nothing (the object is read again: slower,
    /// never wrong).
    async fn lookup(&mut self, key: &str) -> Option<IndexEntry> {
        loop {
            if self.current.is_none() {
                let entries = self.entries.as_mut()?;
                match entries.next().await {
                    Some(Ok(e)) => self.current = Some(e),
                    Some(Err(e)) => {
                        tracing::warn!(
                            "the previous bucket index is damaged ({e}); the remaining objects are read again"
                        );
                        self.entries = None;
                        return None;
                    }
                    None => {
                        self.entries = None;
                        return None;
                    }
                }
            }
            let current = self.current.as_ref()?;
            match current.key.as_str().cmp(key) {
                std::cmp::Ordering::Less => self.current = None,
                std::cmp::Ordering::Equal => return self.current.take(),
                std::cmp::Ordering::Greater => return None,
            }
        }
    }
}

/// Whether a listed object is unchanged since the previous backup recorded it: same ETag, size
/// and modification time (to the second: listings and reads report different precisions).
pub(crate) fn unchanged(prev: &IndexEntry, listed: &ListedObject) -> bool {
    prev.etag.is_some()
        && prev.etag == listed.etag
        && prev.size == listed.size
        && prev.last_modified.as_second() == listed.last_modified.as_second()
}

/// Pairs each listed object with the previous backup's entry, in listing order.
pub(crate) fn plan_tasks(
    listing: BoxStream<'static, Result<ListedObject>>,
    previous: Option<IndexStream>,
) -> BoxStream<'static, Result<Task>> {
    let cursor = PrevCursor {
        entries: previous,
        current: None,
    };
    futures::stream::unfold((listing, cursor), |(mut listing, mut cursor)| async move {
        let item = listing.next().await?;
        let task = match item {
            Err(e) => Err(e),
            Ok(obj) => Ok(match cursor.lookup(&obj.key).await {
                Some(prev) if unchanged(&prev, &obj) => Task::Reuse(prev),
                _ => Task::Fetch(obj),
            }),
        };
        Some((task, (listing, cursor)))
    })
    .boxed()
}

/// Counters of one snapshot.
#[derive(Default)]
struct Counters {
    objects: AtomicU64,
    bytes: AtomicU64,
    reused: AtomicU64,
    uploaded: AtomicU64,
    deduplicated: AtomicU64,
    vanished: AtomicU64,
}

impl BucketSnapshotter {
    fn unavailable(&self, message: String) -> Error {
        Error::SourceUnavailable {
            source_name: self.name.to_string(),
            message,
        }
    }

    fn failed(&self, message: String) -> Error {
        Error::SnapshotFailed {
            source_name: self.name.to_string(),
            message,
        }
    }

    /// The newest committed backup of the same environment with this source (same name, kind
    /// and location), and whether objects may be deduplicated against stored blobs: not when
    /// that backup failed (or never had) a verification, since a damaged blob must be rewritten
    /// instead of referenced again.
    async fn previous_index(
        &self,
        ctx: &SnapshotContext<'_>,
        sealing: Option<&str>,
    ) -> (Option<(BackupId, IndexStream)>, bool) {
        let ids = match ctx.store.list_backup_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(
                    "source {}: cannot list earlier backups ({e}); taking a full snapshot",
                    self.name
                );
                return (None, true);
            }
        };
        let location = self.location();
        for id in ids.iter().rev() {
            let Ok(manifest) = ctx.store.read_manifest(id).await else {
                continue;
            };
            if manifest.environment != ctx.environment {
                continue;
            }
            let Some(previous) = manifest
                .sources
                .iter()
                .find(|s| s.name == self.name && s.kind == self.kind() && s.location == location)
            else {
                continue;
            };
            let Some(artifact) = index_artifact(previous).cloned() else {
                continue;
            };
            if previous.extra.get(SEALING_FIELD).and_then(Value::as_str) != sealing {
                tracing::info!(
                    "source {}: the blobs of backup {id} are not sealed to the current \
                     [encryption] recipients; every object is read and stored again",
                    self.name
                );
                return (None, true);
            }
            let passed = matches!(
                ctx.store.read_verifications(id).await.as_deref(),
                Ok([.., last]) if last.passed
            );
            if !passed {
                tracing::warn!(
                    "source {}: the previous backup {id} did not pass verification; taking a full \
                     snapshot and rewriting every blob",
                    self.name
                );
                return (None, false);
            }
            return match self.open_previous(ctx.store, &artifact).await {
                Ok(entries) => {
                    tracing::info!("source {}: unchanged objects reuse backup {id}", self.name);
                    (Some((id.clone(), entries)), true)
                }
                Err(e) => {
                    tracing::warn!(
                        "source {}: the index of backup {id} is unusable ({e}); taking a full snapshot",
                        self.name
                    );
                    (None, true)
                }
            };
        }
        (None, true)
    }

    /// Checks the previous index's checksum in one read, then opens it as a stream.
    async fn open_previous(
        &self,
        store: &dyn Store,
        artifact: &ArtifactMeta,
    ) -> Result<IndexStream> {
        let mut stream = store.get(&artifact.key).await?;
        let mut hasher = backup_core::Sha256::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(|e| Error::store("get", &artifact.key, e))?);
        }
        if hasher.len() != artifact.stored_size || hasher.finish() != artifact.sha256 {
            return Err(Error::store(
                "get",
                &artifact.key,
                "the stored index does not match its recorded checksum",
            ));
        }
        read_index(store, artifact).await
    }

    async fn process(
        &self,
        store: &dyn Store,
        task: Task,
        dedup: bool,
        sealing: Option<&Sealing>,
        large_uploads: &Semaphore,
    ) -> Result<Outcome> {
        let obj = match task {
            Task::Reuse(mut entry) => {
                entry.reused = true;
                return Ok(Outcome::Stored(Box::new(entry), How::Reused));
            }
            Task::Fetch(obj) => obj,
        };
        let Some(fetched) = self.source.get(&obj.key).await? else {
            tracing::warn!(
                "source {}: {} was deleted during the snapshot",
                self.name,
                obj.key
            );
            return Ok(Outcome::Vanished);
        };
        let what = format!("{} of source {}", obj.key, self.name);
        let spooled = spool(fetched.body, &what).await?;
        let mut entry = IndexEntry {
            key: obj.key,
            size: spooled.size,
            sha256: spooled.sha256,
            etag: fetched.etag,
            last_modified: fetched.last_modified,
            content_type: fetched.content_type,
            headers: fetched.headers,
            metadata: fetched.metadata,
            reused: false,
            blob: None,
            stored_size: None,
        };
        let write = match sealing {
            None => store_blob(store, spooled, dedup, large_uploads).await?,
            Some(sealing) => {
                let (write, sealed) =
                    store_sealed_blob(store, spooled, sealing, dedup, large_uploads).await?;
                entry.blob = Some(sealed.key);
                entry.stored_size = Some(sealed.stored_size);
                write
            }
        };
        let how = match write {
            BlobWrite::Uploaded => How::Uploaded,
            BlobWrite::Deduplicated => How::Deduplicated,
        };
        Ok(Outcome::Stored(Box::new(entry), how))
    }
}

#[async_trait]
impl Snapshotter for BucketSnapshotter {
    fn source_name(&self) -> &SourceName {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.source.location().kind()
    }

    fn shares_blobs(&self) -> bool {
        true
    }

    fn location(&self) -> String {
        self.source.location().to_string()
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        self.source.probe().await.map_err(|e| {
            self.unavailable(format!(
                "cannot list {}: {}",
                self.location(),
                crate::error_chain(&e)
            ))
        })?;
        Ok(PreflightReport {
            server_version: None,
            tool: None,
            estimated_bytes: None,
            notes: vec![format!(
                "{} objects are read {} at a time",
                self.kind(),
                self.concurrency
            )],
        })
    }

    async fn snapshot(&self, ctx: SnapshotContext<'_>) -> Result<SourceManifest> {
        let sealing = match ctx.pipeline.parsed_recipients()? {
            None => None,
            Some(recipients) => {
                let names = blob_name_key(ctx.store, &recipients)
                    .await
                    .map_err(|e| self.failed(crate::error_chain(&e)))?;
                Some(Sealing::new(recipients, names))
            }
        };
        let set_id = sealing.as_ref().map(|s| s.recipients.set_id());
        let (previous, dedup) = self.previous_index(&ctx, set_id.as_deref()).await;
        let reused_from = previous.as_ref().map(|(id, _)| id.to_string());
        let skipped = SkipLog::default();
        let tasks = plan_tasks(
            self.source.list_noting(skipped.clone()),
            previous.map(|(_, s)| s),
        );
        let counters = Counters::default();
        let large_uploads = Semaphore::new(LARGE_UPLOADS);
        let store = ctx.store;
        let mut outcomes = tasks
            .map_ok(|task| self.process(store, task, dedup, sealing.as_ref(), &large_uploads))
            .try_buffered(self.concurrency);

        // Index lines flow to the pipeline through a bounded channel; an error item makes the
        // pipeline abort the upload instead of committing a short index.
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
        // The blob list of a sealed backup, the same way (closed at once when not sealed).
        let (list_tx, list_rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
        let mut list_tx = sealing.is_some().then_some(list_tx);
        let upload_stopped = std::sync::atomic::AtomicBool::new(false);
        let produce = async {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut list_buf = BytesMut::new();
            let result: Result<()> = async {
                while let Some(outcome) = outcomes.next().await {
                    let (entry, how) = match outcome? {
                        Outcome::Stored(e, h) => (e, h),
                        Outcome::Vanished => {
                            counters.vanished.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    counters.objects.fetch_add(1, Ordering::Relaxed);
                    counters.bytes.fetch_add(entry.size, Ordering::Relaxed);
                    let counter = match how {
                        How::Reused => &counters.reused,
                        How::Uploaded => &counters.uploaded,
                        How::Deduplicated => &counters.deduplicated,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    buf.extend_from_slice(&entry.to_line()?);
                    if buf.len() >= 60 * 1024 && tx.send(Ok(buf.split().freeze())).await.is_err() {
                        upload_stopped.store(true, Ordering::Relaxed);
                        return Err(self.failed("the index upload stopped".into()));
                    }
                    if let Some(list_tx) = &list_tx {
                        list_buf.extend_from_slice(entry.blob_list_line().as_bytes());
                        if list_buf.len() >= 60 * 1024
                            && list_tx.send(Ok(list_buf.split().freeze())).await.is_err()
                        {
                            upload_stopped.store(true, Ordering::Relaxed);
                            return Err(self.failed("the blob list upload stopped".into()));
                        }
                    }
                }
                if !buf.is_empty() {
                    let _ = tx.send(Ok(buf.split().freeze())).await;
                }
                if let Some(list_tx) = &list_tx
                    && !list_buf.is_empty()
                {
                    let _ = list_tx.send(Ok(list_buf.split().freeze())).await;
                }
                Ok(())
            }
            .await;
            if let Err(e) = &result {
                let failed = || std::io::Error::other(format!("the snapshot failed: {e}"));
                let _ = tx.send(Err(failed())).await;
                if let Some(list_tx) = &list_tx {
                    let _ = list_tx.send(Err(failed())).await;
                }
            }
            drop(tx);
            list_tx.take();
            result
        };
        let spec = ArtifactSpec {
            source: &self.name,
            file: INDEX_FILE,
            format: INDEX_FORMAT,
        };
        let list_spec = ArtifactSpec {
            source: &self.name,
            file: BLOB_LIST_FILE,
            format: BLOB_LIST_FORMAT,
        };
        let write_list = async {
            match &sealing {
                Some(_) => ctx
                    .write_plain_artifact(list_spec, channel_reader(list_rx))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (produced, artifact, list) = tokio::join!(
            produce,
            ctx.write_artifact(spec, channel_reader(rx)),
            write_list
        );
        let artifact = match (produced, artifact.and_then(|a| Ok((a, list?)))) {
            (Ok(()), artifact) => artifact?,
            // The index upload failed first: its error is the cause.
            (Err(_), Err(e)) if upload_stopped.load(Ordering::Relaxed) => return Err(e),
            (Err(e @ (Error::SnapshotFailed { .. } | Error::SourceUnavailable { .. })), _) => {
                return Err(e);
            }
            (Err(other), _) => return Err(self.failed(crate::error_chain(&other))),
        };

        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut stats = SourceStats::default();
        stats
            .object_counts
            .insert("objects".into(), get(&counters.objects));
        stats
            .object_counts
            .insert("bytes".into(), get(&counters.bytes));
        for (k, c) in [
            ("reused", &counters.reused),
            ("uploaded", &counters.uploaded),
            ("deduplicated", &counters.deduplicated),
        ] {
            stats.extra.insert(k.into(), Value::from(get(c)));
        }
        let mut notes = vec![NOT_ATOMIC_NOTE.to_owned()];
        if let Ok(skipped) = skipped.lock() {
            notes.extend(skipped.notes());
        }
        let vanished = get(&counters.vanished);
        if vanished > 0 {
            notes.push(format!(
                "{vanished} object(s) were deleted between the listing and the read and are not in this backup"
            ));
        }
        let (artifact, list) = artifact;
        let mut extra = Map::new();
        if let Some(set_id) = set_id {
            extra.insert(SEALING_FIELD.into(), Value::from(set_id));
        }
        if let Some(id) = reused_from {
            extra.insert("reused_from".into(), Value::from(id));
        }
        tracing::info!(
            "source {}: {} objects, {} reused, {} uploaded, {} already stored",
            self.name,
            get(&counters.objects),
            get(&counters.reused),
            get(&counters.uploaded),
            get(&counters.deduplicated)
        );
        Ok(SourceManifest {
            name: self.name.clone(),
            kind: self.kind().to_owned(),
            location: self.location(),
            server_version: None,
            tool_version: None,
            artifacts: std::iter::once(artifact).chain(list).collect(),
            stats,
            notes,
            extra,
        })
    }
}

/// The bytes sent through `rx`, as a reader; an error item fails the read.
fn channel_reader(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> StreamReader<BoxStream<'static, std::io::Result<Bytes>>, Bytes> {
    StreamReader::new(
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed(),
    )
}

/// The counts a bucket source recorded: objects, bytes, reused, uploaded, deduplicated.
pub fn bucket_stat(source: &SourceManifest, name: &str) -> Option<u64> {
    source
        .stats
        .object_counts
        .get(name)
        .copied()
        .or_else(|| source.stats.extra.get(name).and_then(Value::as_u64))
}
