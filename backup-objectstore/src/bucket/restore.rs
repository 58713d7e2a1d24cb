//! [`BucketRestorer`]: puts a bucket or directory snapshot back into a bucket prefix or a
//! directory, verifying every object's digest while it streams.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use backup_core::{Digest, Error, Result, Sha256, SourceManifest, Store, layout};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::bucket::blob::MEMORY_SPOOL_LIMIT;
use crate::bucket::client::{ObjectHeaders, S3Bucket};
use crate::bucket::index::{IndexEntry, index_artifact, read_index};
use crate::bucket::location::BucketLocation;
use crate::bucket::snapshot::DEFAULT_CONCURRENCY;
use crate::bucket::source::BucketSource;
use crate::s3::S3Settings;
use crate::store::SHA256_METADATA;

/// Multipart part size for large restored objects (at most 10,000 parts: objects up to
/// about 97 GiB).
const PART_SIZE: usize = 10 * 1024 * 1024;

/// Keys that cannot be files, named one by one in the error of a directory restore (the rest
/// are counted; every one is logged).
const NAMED_KEYS: usize = 50;

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
    S3(S3Bucket),
    Directory(PathBuf),
}

/// What became of one object of the snapshot.
enum Placed {
    Written,
    /// Already there with the same bytes.
    Unchanged,
    /// A directory cannot hold its key (the reason); nothing was written for it.
    NotAFile(String),
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
    /// S3 targets take every key as it is. A directory cannot hold every key S3 can (empty,
    /// `.` or `..` segments, a leading or trailing `/`, a segment over 255 bytes, a file and a
    /// directory of the same name): such objects are skipped, each logged with its key, every
    /// other object is restored, and then the restore fails naming them.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a source without an index; [`Error::Io`] naming every key a
    /// directory could not hold, once the other objects are restored; [`Error::Store`] (op
    /// `restore`) naming the key for a digest mismatch; the store's or the target's errors.
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
            } => Target::S3(S3Bucket::open(
                &self.base.overridden_by(settings),
                bucket,
                prefix,
            )?),
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
        let not_files: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
        let target_ref = &target_backend;
        read_index(store, artifact)
            .await?
            .map_ok(|entry| {
                let (objects, bytes, written, unchanged, with_metadata, not_files) = (
                    &objects,
                    &bytes,
                    &written,
                    &unchanged,
                    &with_metadata,
                    &not_files,
                );
                async move {
                    objects.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(entry.size, Ordering::Relaxed);
                    let placed = match target_ref {
                        Target::S3(t) => restore_s3(store, t, &entry).await?,
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
                    match placed {
                        Placed::Written => written.fetch_add(1, Ordering::Relaxed),
                        Placed::Unchanged => unchanged.fetch_add(1, Ordering::Relaxed),
                        Placed::NotAFile(reason) => {
                            tracing::warn!("object {:?} was not restored: {reason}", entry.key);
                            if let Ok(mut v) = not_files.lock() {
                                v.push((entry.key, reason));
                            }
                            0
                        }
                    };
                    Ok::<_, Error>(())
                }
            })
            .try_buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        let not_files = not_files.into_inner().unwrap_or_default();
        if !not_files.is_empty() {
            return Err(not_files_error(
                target,
                not_files,
                written.into_inner() + unchanged.into_inner(),
            ));
        }

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

/// The error of a directory restore that skipped `not_files` (key, reason) and restored
/// `restored` other objects.
fn not_files_error(
    target: &BucketLocation,
    mut not_files: Vec<(String, String)>,
    restored: u64,
) -> Error {
    not_files.sort();
    let n = not_files.len();
    let mut named: Vec<String> = not_files
        .iter()
        .take(NAMED_KEYS)
        .map(|(key, reason)| format!("{key:?} ({reason})"))
        .collect();
    if n > NAMED_KEYS {
        named.push(format!("and {} more (each is in the log)", n - NAMED_KEYS));
    }
    Error::io(
        format!(
            "{n} object(s) were not restored into {target}: a directory cannot hold their keys: \
             {}; the other {restored} object(s) were restored",
            named.join(", ")
        ),
        std::io::Error::new(std::io::ErrorKind::InvalidFilename, "not restored"),
    )
}

/// Writes one object to an S3 target, or leaves it when it is already there with the same
/// bytes (its `x-amz-meta-sha256` says so).
async fn restore_s3(store: &dyn Store, target: &S3Bucket, entry: &IndexEntry) -> Result<Placed> {
    if let Some((size, metadata)) = target.head(&entry.key).await?
        && size == entry.size
        && metadata
            .get(SHA256_METADATA)
            .is_some_and(|v| *v == entry.sha256.hex())
    {
        return Ok(Placed::Unchanged);
    }
    let headers = ObjectHeaders {
        content_type: entry.content_type.as_deref(),
        headers: &entry.headers,
        metadata: &entry.metadata,
    };
    let blob = layout::blob_key(&entry.sha256);
    let mut stream = store.get(&blob).await?;
    let mut hasher = Sha256::new();
    if entry.size as usize <= MEMORY_SPOOL_LIMIT {
        let mut data = BytesMut::with_capacity(entry.size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::store("get", &blob, e))?;
            hasher.update(&chunk);
            data.extend_from_slice(&chunk);
        }
        let size = hasher.len();
        let got = hasher.finish();
        if got != entry.sha256 || size != entry.size {
            return Err(mismatch(entry, got, size));
        }
        target.put(&entry.key, data.freeze(), &headers).await?;
        return Ok(Placed::Written);
    }
    // Aborted when it fails, and on drop: a cancelled restore leaves no upload behind.
    let mut upload = target.start_upload(&entry.key, &headers).await?;
    let mut part = BytesMut::with_capacity(PART_SIZE);
    let outcome: Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let mut chunk: Bytes = chunk.map_err(|e| Error::store("get", &blob, e))?;
            hasher.update(&chunk);
            while !chunk.is_empty() {
                let take = chunk.len().min(PART_SIZE - part.len());
                part.extend_from_slice(&chunk.split_to(take));
                if part.len() == PART_SIZE {
                    upload.put_part(part.split().freeze()).await?;
                }
            }
        }
        let size = hasher.len();
        let got = hasher.clone().finish();
        if got != entry.sha256 || size != entry.size {
            return Err(mismatch(entry, got, size));
        }
        if !part.is_empty() {
            upload.put_part(part.split().freeze()).await?;
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => upload.finish().await?,
        Err(e) => {
            upload.abort().await;
            return Err(e);
        }
    }
    Ok(Placed::Written)
}

/// Longest file name (bytes) Linux file systems take.
const NAME_MAX: usize = 255;
/// Longest path (bytes, without the final NUL) a system call takes.
const PATH_MAX: usize = 4095;

/// The file a key restores to, or why no file system can hold it there (keys that would leave
/// the directory, or name another file, among them).
fn file_for(dir: &FsPath, key: &str) -> std::result::Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt as _;
    let reason = if key.is_empty() {
        Some("an empty key".to_owned())
    } else if key.starts_with('/') {
        Some("it starts with /".to_owned())
    } else if key.ends_with('/') {
        Some("it ends with /".to_owned())
    } else if key.contains('\0') {
        Some("it has a NUL byte".to_owned())
    } else {
        key.split('/').find_map(|seg| match seg {
            "" => Some("it has an empty segment".to_owned()),
            "." => Some("it has a . segment".to_owned()),
            ".." => Some("it has a .. segment".to_owned()),
            s if s.len() > NAME_MAX => Some(format!(
                "a segment of {} bytes is longer than a file name can be ({NAME_MAX})",
                s.len()
            )),
            _ => None,
        })
    };
    if let Some(reason) = reason {
        return Err(reason);
    }
    let path = dir.join(key);
    if path.as_os_str().as_bytes().len() > PATH_MAX {
        return Err(format!(
            "the file's path would be longer than {PATH_MAX} bytes"
        ));
    }
    Ok(path)
}

/// Whether an I/O error says a file system cannot hold a path: a file where a directory must
/// be or the reverse (S3 holds `a` and `a/b` side by side), or a name too long for it.
fn is_not_a_file(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{
        AlreadyExists, DirectoryNotEmpty, InvalidFilename, IsADirectory, NotADirectory,
    };
    matches!(
        e.kind(),
        AlreadyExists | DirectoryNotEmpty | InvalidFilename | IsADirectory | NotADirectory
    )
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

/// Writes one object into a directory (temp file, then rename), or leaves it when the file is
/// already there with the same bytes, or says why the directory cannot hold its key.
async fn restore_file(store: &dyn Store, dir: &FsPath, entry: &IndexEntry) -> Result<Placed> {
    let path = match file_for(dir, &entry.key) {
        Ok(path) => path,
        Err(reason) => return Ok(Placed::NotAFile(reason)),
    };
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", path.display()), e);
    let conflict = |e: &std::io::Error| {
        Placed::NotAFile(format!(
            "{} cannot be a file there: {e} (a file and a directory cannot share a name; S3 \
             holds `a` and `a/b` side by side)",
            path.display()
        ))
    };
    if let Ok(meta) = tokio::fs::metadata(&path).await
        && meta.len() == entry.size
        && file_digest(&path)
            .await
            .is_some_and(|(_, d)| d == entry.sha256)
    {
        return Ok(Placed::Unchanged);
    }
    let parent = path.parent().unwrap_or(dir).to_path_buf();
    match tokio::fs::create_dir_all(&parent).await {
        Ok(()) => {}
        Err(e) if is_not_a_file(&e) => return Ok(conflict(&e)),
        Err(e) => return Err(io("cannot create the directory of", e)),
    }
    // The temp file's name must fit too: `.<name>.<random>.pd-restore` with a shortened name.
    let name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .scan(0, |len, c| {
            *len += c.len_utf8();
            (*len <= 100).then_some(c)
        })
        .collect();
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
    let persisted = tokio::task::spawn_blocking(move || {
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
    })?;
    match persisted {
        Ok(_) => Ok(Placed::Written),
        Err(e) if is_not_a_file(&e) => Ok(conflict(&e)),
        Err(e) => Err(io("cannot move the restored file into place at", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_escape_the_directory() {
        let d = FsPath::new("/restore");
        assert_eq!(
            file_for(d, "a b/é\t\n%2F\\x").expect("ok"),
            PathBuf::from("/restore/a b/é\t\n%2F\\x")
        );
        assert!(file_for(d, &"n".repeat(255)).is_ok());
        for (bad, why) in [
            ("", "empty"),
            ("/etc/passwd", "starts with /"),
            ("../x", ".. segment"),
            ("a/../../x", ".. segment"),
            ("a//b", "empty segment"),
            ("a/./b", ". segment"),
            (".", ". segment"),
            ("trail/", "ends with /"),
            ("nul\0", "NUL"),
            (&"é".repeat(128), "256 bytes"),
            (&["d"; 2100].join("/"), "longer than 4095"),
        ] {
            let reason = file_for(d, bad).expect_err(bad);
            assert!(reason.contains(why), "{bad}: {reason}");
        }
    }
}
