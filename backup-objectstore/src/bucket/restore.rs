//! [`BucketRestorer`]: puts a bucket or directory snapshot back into a bucket prefix or a
//! directory, verifying every object's digest while it streams.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use backup_core::{Digest, Error, Result, Sha256, SourceManifest, Store, layout};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, GetOptions, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::bucket::blob::MEMORY_SPOOL_LIMIT;
use crate::bucket::index::{IndexEntry, index_artifact, read_index};
use crate::bucket::location::BucketLocation;
use crate::bucket::snapshot::DEFAULT_CONCURRENCY;
use crate::bucket::source::{BucketSource, join_attributes};
use crate::error::map_error;
use crate::s3::S3Settings;
use crate::store::SHA256_METADATA;

/// Multipart part size for large restored objects.
const PART_SIZE: usize = 10 * 1024 * 1024;

/// What a bucket restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Where it restored to (no secrets).
    pub target: String,
    /// Objects in the snapshot.
    pub objects: u64,
    /// Their total size.
    pub bytes: u64,
    /// Objects written.
    pub written: u64,
    /// Objects already present with the same bytes, left as they were.
    pub unchanged: u64,
    /// Objects in the target that are not in the snapshot: left alone.
    pub extra_in_target: u64,
    /// Things the operator should know (e.g. metadata a directory cannot keep).
    pub notes: Vec<String>,
}

/// Restores bucket and directory snapshots.
#[derive(Debug, Clone)]
pub struct BucketRestorer {
    base: S3Settings,
    concurrency: usize,
}

enum Target {
    S3(Arc<dyn ObjectStore>),
    Directory(PathBuf),
}

impl BucketRestorer {
    /// A restorer whose S3 targets use `base` (config file and `AWS_*` variables), overridden
    /// by the target URL's query.
    pub fn new(base: S3Settings) -> Self {
        BucketRestorer {
            base,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Sets how many objects are written at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Restores the snapshot `source` (a `bucket` or `directory` source of a manifest) into
    /// `target`. Every object is written with its content type, headers and user metadata (S3;
    /// a directory cannot keep them, which the report says once), its bytes checked against
    /// the index's sha256 while they stream: a mismatch fails the restore, naming the key, and
    /// the damaged object is not left in the target. Objects already in the target with the
    /// same bytes are skipped; objects in the target that the snapshot lacks are left alone and
    /// counted.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a source without an index or a key that would escape a directory;
    /// [`Error::Store`] (op `restore`) naming the key for a digest mismatch; the store's or the
    /// target's errors.
    pub async fn restore(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        target: &BucketLocation,
    ) -> Result<RestoreReport> {
        let artifact = index_artifact(source).ok_or_else(|| Error::Invalid {
            what: "bucket source",
            value: source.name.to_string(),
            reason: "the backup has no bucket index for this source".into(),
        })?;
        let target_backend = match target {
            BucketLocation::S3 {
                bucket,
                prefix,
                settings,
            } => Target::S3(self.base.overridden_by(settings).build(bucket, prefix)?),
            BucketLocation::Directory(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
                Target::Directory(dir.clone())
            }
        };
        let objects = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let written = AtomicU64::new(0);
        let unchanged = AtomicU64::new(0);
        let with_metadata = AtomicU64::new(0);
        let target_ref = &target_backend;
        read_index(store, artifact)
            .await?
            .map_ok(|entry| {
                let (objects, bytes, written, unchanged, with_metadata) =
                    (&objects, &bytes, &written, &unchanged, &with_metadata);
                async move {
                    objects.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(entry.size, Ordering::Relaxed);
                    let wrote = match target_ref {
                        Target::S3(t) => restore_s3(store, t.as_ref(), &entry).await?,
                        Target::Directory(d) => {
                            if entry.content_type.is_some()
                                || !entry.metadata.is_empty()
                                || !entry.headers.is_empty()
                            {
                                with_metadata.fetch_add(1, Ordering::Relaxed);
                            }
                            restore_file(store, d, &entry).await?
                        }
                    };
                    let counter = if wrote { written } else { unchanged };
                    counter.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Error>(())
                }
            })
            .try_buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;

        let mut notes = Vec::new();
        let with_metadata = with_metadata.into_inner();
        if with_metadata > 0 {
            notes.push(format!(
                "{with_metadata} object(s) had a content type or metadata, which a directory cannot keep"
            ));
        }
        let extra_in_target = self
            .count_extra(store, artifact, target)
            .await
            .unwrap_or_else(|e| {
                notes.push(format!(
                    "could not look for objects the snapshot lacks: {e}"
                ));
                0
            });
        if extra_in_target > 0 {
            notes.push(format!(
                "{extra_in_target} object(s) in the target are not in the backup and were left alone"
            ));
        }
        Ok(RestoreReport {
            target: target.to_string(),
            objects: objects.into_inner(),
            bytes: bytes.into_inner(),
            written: written.into_inner(),
            unchanged: unchanged.into_inner(),
            extra_in_target,
            notes,
        })
    }

    /// Counts target objects the index does not have (both listed in key order).
    async fn count_extra(
        &self,
        store: &dyn Store,
        artifact: &backup_core::ArtifactMeta,
        target: &BucketLocation,
    ) -> Result<u64> {
        let listing = BucketSource::open(target.clone(), &self.base)?.list();
        let mut index = read_index(store, artifact).await?;
        let mut current: Option<IndexEntry> = None;
        let mut extra = 0;
        let mut listing = listing;
        let mut index_done = false;
        while let Some(obj) = listing.next().await {
            let obj = obj?;
            loop {
                if current.is_none() && !index_done {
                    match index.next().await {
                        Some(e) => current = Some(e?),
                        None => index_done = true,
                    }
                }
                match &current {
                    Some(e) if e.key < obj.key => current = None,
                    _ => break,
                }
            }
            if current.as_ref().is_none_or(|e| e.key != obj.key) {
                extra += 1;
            }
        }
        Ok(extra)
    }
}

/// A digest mismatch while restoring `entry`.
fn mismatch(entry: &IndexEntry, got: Digest, size: u64) -> Error {
    Error::store(
        "restore",
        &entry.key,
        format!(
            "the stored blob {} is damaged: {size} bytes with {got}, the index records {} bytes with {}",
            layout::blob_key(&entry.sha256),
            entry.size,
            entry.sha256
        ),
    )
}

/// Writes one object to an S3 target; false when it was already there with the same bytes.
async fn restore_s3(
    store: &dyn Store,
    target: &dyn ObjectStore,
    entry: &IndexEntry,
) -> Result<bool> {
    let path = Path::parse(&entry.key).map_err(|e| Error::Invalid {
        what: "object key",
        value: entry.key.clone(),
        reason: e.to_string(),
    })?;
    let head = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    match target.get_opts(&path, head).await {
        Ok(existing)
            if existing.meta.size == entry.size
                && existing
                    .attributes
                    .get(&Attribute::Metadata(SHA256_METADATA.into()))
                    .is_some_and(|v| v.as_ref() == entry.sha256.hex()) =>
        {
            return Ok(false);
        }
        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(map_error("head", &entry.key, e)),
    }
    let attributes = join_attributes(
        entry.content_type.as_deref(),
        &entry.headers,
        &entry.metadata,
    );
    let blob = layout::blob_key(&entry.sha256);
    let mut stream = store.get(&blob).await?;
    let mut hasher = Sha256::new();
    if entry.size as usize <= MEMORY_SPOOL_LIMIT {
        let mut chunks: Vec<Bytes> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::store("get", &blob, e))?;
            hasher.update(&chunk);
            chunks.push(chunk);
        }
        let size = hasher.len();
        let got = hasher.finish();
        if got != entry.sha256 || size != entry.size {
            return Err(mismatch(entry, got, size));
        }
        let opts = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        target
            .put_opts(&path, PutPayload::from_iter(chunks), opts)
            .await
            .map_err(|e| map_error("put", &entry.key, e))?;
        return Ok(true);
    }
    let upload = target
        .put_multipart_opts(
            &path,
            PutMultipartOptions {
                attributes,
                ..PutMultipartOptions::default()
            },
        )
        .await
        .map_err(|e| map_error("put", &entry.key, e))?;
    // Aborted on drop: a cancelled restore leaves no upload behind on the target.
    let mut upload = crate::store::AbortOnDrop::new(
        WriteMultipart::new_with_chunk_size(upload, PART_SIZE),
        &entry.key,
    );
    let writer = upload.writer();
    let outcome: Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::store("get", &blob, e))?;
            hasher.update(&chunk);
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| map_error("put", &entry.key, e))?;
            writer.put(chunk);
        }
        Ok(())
    }
    .await;
    let size = hasher.len();
    let got = hasher.finish();
    let outcome = outcome.and_then(|()| {
        if got != entry.sha256 || size != entry.size {
            Err(mismatch(entry, got, size))
        } else {
            Ok(())
        }
    });
    if let Err(e) = outcome {
        upload.abort().await;
        return Err(e);
    }
    upload
        .finish()
        .await
        .map_err(|e| map_error("put", &entry.key, e))?;
    Ok(true)
}

/// The file a key restores to, refusing keys that would leave the directory.
fn file_for(dir: &FsPath, key: &str) -> Result<PathBuf> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg.contains('\0'));
    if bad {
        return Err(Error::Invalid {
            what: "object key",
            value: key.to_owned(),
            reason: "it cannot be restored as a file inside the target directory".into(),
        });
    }
    Ok(dir.join(key))
}

/// Hashes an existing file; `None` when it is missing or not a regular file.
async fn file_digest(path: &FsPath) -> Option<(u64, Digest)> {
    let file = tokio::fs::File::open(path).await.ok()?;
    if !file.metadata().await.ok()?.is_file() {
        return None;
    }
    let mut stream = tokio_util::io::ReaderStream::with_capacity(file, 1024 * 1024);
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk.ok()?);
    }
    Some((hasher.len(), hasher.finish()))
}

/// Writes one object into a directory (temp file, then rename); false when the file was
/// already there with the same bytes.
async fn restore_file(store: &dyn Store, dir: &FsPath, entry: &IndexEntry) -> Result<bool> {
    let path = file_for(dir, &entry.key)?;
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", path.display()), e);
    if let Ok(meta) = tokio::fs::metadata(&path).await
        && meta.len() == entry.size
        && file_digest(&path)
            .await
            .is_some_and(|(_, d)| d == entry.sha256)
    {
        return Ok(false);
    }
    let parent = path.parent().unwrap_or(dir).to_path_buf();
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| io("cannot create the directory of", e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Removed when dropped: a failed or interrupted restore leaves no partial file.
    let (std_file, temp) = {
        let parent = parent.clone();
        tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".pd-restore")
                .tempfile_in(parent)
        })
        .await
        .map_err(|e| io("cannot create a temp file for", std::io::Error::other(e)))?
        .map_err(|e| io("cannot create a temp file for", e))?
        .into_parts()
    };
    let mut file = tokio::fs::File::from_std(std_file);
    let blob = layout::blob_key(&entry.sha256);
    let mut stream = store.get(&blob).await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::store("get", &blob, e))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| io("cannot write", e))?;
    }
    let size = hasher.len();
    let got = hasher.finish();
    if got != entry.sha256 || size != entry.size {
        return Err(mismatch(entry, got, size));
    }
    file.flush().await.map_err(|e| io("cannot write", e))?;
    let std_file = file.into_std().await;
    let modified = Some(std::time::SystemTime::from(entry.last_modified));
    let target = path.clone();
    tokio::task::spawn_blocking(move || {
        if let Some(t) = modified {
            let _ = std_file.set_modified(t);
        }
        drop(std_file);
        temp.persist(&target).map_err(|e| e.error)
    })
    .await
    .map_err(|e| {
        io(
            "cannot move the restored file into place at",
            std::io::Error::other(e),
        )
    })?
    .map_err(|e| io("cannot move the restored file into place at", e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_escape_the_directory() {
        let d = FsPath::new("/restore");
        assert_eq!(
            file_for(d, "a b/é").expect("ok"),
            PathBuf::from("/restore/a b/é")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b"] {
            assert!(file_for(d, bad).is_err(), "{bad}");
        }
    }
}
