//! [`BucketSource`]: lists and reads the objects of a bucket prefix or a local directory.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use backup_core::{ByteStream, Error, Result};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use object_store::path::Path;
use object_store::{Attribute, Attributes, GetOptions, ObjectStore};
use tokio::sync::mpsc;

use crate::bucket::client::S3Bucket;
use crate::bucket::location::BucketLocation;
use crate::error::map_error;
use crate::s3::S3Settings;

/// Read size when streaming a local file.
const READ_CHUNK: usize = 1024 * 1024;

/// An object as listed: enough to decide whether the previous backup already has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key relative to the source's prefix (`/`-separated relative path for directories).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: Timestamp,
    /// ETag (S3), or inode, modification time and size (directories).
    pub etag: Option<String>,
}

/// An object being read, with what the read itself reported (not the listing: a bucket is not
/// point-in-time, and these describe the bytes actually streamed).
pub struct FetchedObject {
    /// Size the source reported for this read.
    pub size: u64,
    /// Last modification time of the bytes read.
    pub last_modified: Timestamp,
    /// ETag of the bytes read.
    pub etag: Option<String>,
    /// `Content-Type`, when there is one.
    pub content_type: Option<String>,
    /// `cache-control`, `content-disposition`, `content-encoding`, `content-language`.
    pub headers: BTreeMap<String, String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// The bytes.
    pub body: ByteStream,
}

impl std::fmt::Debug for FetchedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedObject")
            .field("size", &self.size)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

/// Where a bucket snapshot reads from: an S3-compatible bucket (with a client that keeps every
/// key S3 can hold exactly as it is) or a local directory (read directly, so every regular
/// file is seen, whatever its name).
#[derive(Debug, Clone)]
pub struct BucketSource {
    location: BucketLocation,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    S3(S3Bucket),
    /// An `object_store` client given by the caller: only keys its `Path` can represent.
    ObjectStore(Arc<dyn ObjectStore>),
    Directory(PathBuf),
}

impl BucketSource {
    /// Opens `location`; for S3, `base` (config file and `AWS_*` variables) overridden by the
    /// URL's query.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for S3 settings the client rejects.
    pub fn open(location: BucketLocation, base: &S3Settings) -> Result<Self> {
        let backend = match &location {
            BucketLocation::S3 {
                bucket,
                prefix,
                settings,
            } => Backend::S3(S3Bucket::open(
                &base.overridden_by(settings),
                bucket,
                prefix,
            )?),
            BucketLocation::Directory(dir) => Backend::Directory(dir.clone()),
        };
        Ok(BucketSource { location, backend })
    }

    /// Wraps an existing `object_store` client (tests, embedding tools). Keys its `Path`
    /// cannot represent (empty, `.` or `..` segments, control characters) fail the listing;
    /// [`BucketSource::open`] has no such limit.
    pub fn from_object_store(location: BucketLocation, store: Arc<dyn ObjectStore>) -> Self {
        BucketSource {
            location,
            backend: Backend::ObjectStore(store),
        }
    }

    /// Where it reads.
    pub fn location(&self) -> &BucketLocation {
        &self.location
    }

    /// Checks the source can be listed (reads at most one listing page).
    ///
    /// # Errors
    ///
    /// The listing's error.
    pub async fn probe(&self) -> Result<()> {
        match &self.backend {
            Backend::Directory(dir) => {
                let meta = std::fs::metadata(dir)
                    .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
                if !meta.is_dir() {
                    return Err(Error::io(
                        format!("{} is not a directory", dir.display()),
                        std::io::Error::other("not a directory"),
                    ));
                }
                std::fs::read_dir(dir)
                    .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
                Ok(())
            }
            Backend::S3(_) | Backend::ObjectStore(_) => match self.list().next().await {
                None | Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(e),
            },
        }
    }

    /// Every object, sorted by key (byte order). A directory is walked without following
    /// symbolic links to directories; files that are not regular are skipped.
    pub fn list(&self) -> BoxStream<'static, Result<ListedObject>> {
        match &self.backend {
            Backend::S3(bucket) => bucket.list(),
            Backend::ObjectStore(store) => store
                .list(None)
                .map(|item| {
                    item.map(|meta| ListedObject {
                        key: meta.location.as_ref().to_owned(),
                        size: meta.size,
                        last_modified: meta_time(&meta),
                        etag: meta.e_tag,
                    })
                    .map_err(|e| map_error("list", "", e))
                })
                .boxed(),
            Backend::Directory(dir) => {
                let (tx, rx) = mpsc::channel(256);
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || walk(&dir, &tx));
                futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                })
                .boxed()
            }
        }
    }

    /// Starts reading one object; `None` when it no longer exists (deleted since the listing).
    ///
    /// # Errors
    ///
    /// The source's error.
    pub async fn get(&self, key: &str) -> Result<Option<FetchedObject>> {
        match &self.backend {
            Backend::S3(bucket) => bucket.get(key).await,
            Backend::ObjectStore(store) => {
                let path = Path::parse(key).map_err(|e| Error::Invalid {
                    what: "object key",
                    value: key.to_owned(),
                    reason: e.to_string(),
                })?;
                let result = match store.get_opts(&path, GetOptions::default()).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(map_error("get", key, e)),
                };
                let (content_type, headers, metadata) = split_attributes(&result.attributes);
                let size = result.meta.size;
                let last_modified = meta_time(&result.meta);
                let etag = result.meta.e_tag.clone();
                let body = result.into_stream().map_err(std::io::Error::other).boxed();
                Ok(Some(FetchedObject {
                    size,
                    last_modified,
                    etag,
                    content_type,
                    headers,
                    metadata,
                    body,
                }))
            }
            Backend::Directory(dir) => {
                let file_path = dir.join(key);
                let file = match tokio::fs::File::open(&file_path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(Error::io(format!("cannot open {}", file_path.display()), e));
                    }
                };
                let meta = file
                    .metadata()
                    .await
                    .map_err(|e| Error::io(format!("cannot stat {}", file_path.display()), e))?;
                let (last_modified, etag) = file_stamp(&meta);
                Ok(Some(FetchedObject {
                    size: meta.len(),
                    last_modified,
                    etag: Some(etag),
                    content_type: None,
                    headers: BTreeMap::new(),
                    metadata: BTreeMap::new(),
                    body: Box::pin(tokio_util::io::ReaderStream::with_capacity(
                        file, READ_CHUNK,
                    )),
                }))
            }
        }
    }
}

/// Content type, other standard headers and user metadata from `object_store` attributes.
pub(crate) fn split_attributes(
    attrs: &Attributes,
) -> (
    Option<String>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
) {
    let mut content_type = None;
    let mut headers = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (attr, value) in attrs {
        let value = value.as_ref().to_owned();
        match attr {
            Attribute::ContentType => content_type = Some(value),
            Attribute::CacheControl => {
                headers.insert("cache-control".into(), value);
            }
            Attribute::ContentDisposition => {
                headers.insert("content-disposition".into(), value);
            }
            Attribute::ContentEncoding => {
                headers.insert("content-encoding".into(), value);
            }
            Attribute::ContentLanguage => {
                headers.insert("content-language".into(), value);
            }
            Attribute::Metadata(k) => {
                metadata.insert(k.to_string(), value);
            }
            _ => {}
        }
    }
    (content_type, headers, metadata)
}

fn meta_time(meta: &object_store::ObjectMeta) -> Timestamp {
    Timestamp::from_millisecond(meta.last_modified.timestamp_millis())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A local file's modification time, and an ETag-like stamp (inode, modification time in
/// nanoseconds, size) that changes whenever the file is replaced or written.
pub(crate) fn file_stamp(meta: &std::fs::Metadata) -> (Timestamp, String) {
    use std::os::unix::fs::MetadataExt;
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let modified = Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH);
    let etag = format!("{:x}-{:x}-{:x}", meta.ino(), nanos, meta.len());
    (modified, etag)
}

/// One directory entry of the walk, sorted by `sort_key` (the relative path, with a trailing `/`
/// for directories, so the walk yields keys in byte order).
struct WalkEntry {
    sort_key: String,
    path: PathBuf,
    dir: bool,
    meta: std::fs::Metadata,
}

fn read_sorted(dir: &FsPath, rel: &str) -> std::io::Result<Vec<WalkEntry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(std::io::Error::other(format!(
                "{} has a file name that is not UTF-8: {:?}",
                dir.display(),
                entry.file_name()
            )));
        };
        let file_type = entry.file_type()?;
        let path = entry.path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // gone, or a dangling link
            Err(e) => return Err(e),
        };
        let rel_name = format!("{rel}{name}");
        if meta.is_dir() {
            if file_type.is_symlink() {
                tracing::warn!(
                    "skipping {}: a symbolic link to a directory",
                    path.display()
                );
                continue;
            }
            out.push(WalkEntry {
                sort_key: format!("{rel_name}/"),
                path,
                dir: true,
                meta,
            });
        } else if meta.is_file() {
            out.push(WalkEntry {
                sort_key: rel_name,
                path,
                dir: false,
                meta,
            });
        }
    }
    out.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
    Ok(out)
}

/// Walks `root` depth-first in key order, sending each regular file.
fn walk(root: &FsPath, tx: &mpsc::Sender<Result<ListedObject>>) {
    let fail = |path: &FsPath, e: std::io::Error| {
        let _ = tx.blocking_send(Err(Error::io(format!("cannot list {}", path.display()), e)));
    };
    let first = match read_sorted(root, "") {
        Ok(v) => v,
        Err(e) => return fail(root, e),
    };
    let mut stack = vec![first.into_iter()];
    while let Some(top) = stack.last_mut() {
        let Some(entry) = top.next() else {
            stack.pop();
            continue;
        };
        if entry.dir {
            match read_sorted(&entry.path, &entry.sort_key) {
                Ok(v) => stack.push(v.into_iter()),
                Err(e) => return fail(&entry.path, e),
            }
            continue;
        }
        let (last_modified, etag) = file_stamp(&entry.meta);
        let item = ListedObject {
            key: entry.sort_key,
            size: entry.meta.len(),
            last_modified,
            etag: Some(etag),
        };
        if tx.blocking_send(Ok(item)).is_err() {
            return; // the reader stopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directories_list_in_key_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for rel in ["a.txt", "a/b", "a/c d/é", "a-", "b#1", "z/y/x/w/v"] {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, rel).expect("write");
        }
        let source = BucketSource::open(
            BucketLocation::Directory(dir.path().to_path_buf()),
            &S3Settings::default(),
        )
        .expect("opens");
        let keys: Vec<String> = source
            .list()
            .map_ok(|o| o.key)
            .try_collect()
            .await
            .expect("lists");
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert!(keys.contains(&"b#1".to_owned()), "{keys:?}");
        let got = source.get("a/c d/é").await.expect("get").expect("exists");
        let bytes: Vec<bytes::Bytes> = got.body.try_collect().await.expect("read");
        assert_eq!(bytes.concat(), b"a/c d/\xc3\xa9");
        assert!(source.get("missing").await.expect("get").is_none());
    }
}
