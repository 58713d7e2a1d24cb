//! [`BucketSource`]: lists and reads the objects of a bucket prefix or a local directory.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use backup_core::{ByteStream, Error, Result};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use object_store::path::Path;
use object_store::{Attribute, Attributes, GetOptions, ObjectStore};
use rustix::fs::FileType;
use tokio::sync::mpsc;

use crate::bucket::client::S3Bucket;
use crate::bucket::location::BucketLocation;
use crate::bucket::nofollow::{self, Found};
use crate::bucket::restore::is_restore_temp;
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
/// file is seen, whatever its name; never through a symbolic link, see [`BucketSource::list`]).
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

    /// Every object, sorted by key (byte order). A directory is walked without following any
    /// symbolic link (links are skipped, to files and directories alike: a link cannot make a
    /// snapshot read outside the directory); files that are not regular, and temp files of
    /// pre-deploy restores (`.*.pd-restore`), are skipped.
    pub fn list(&self) -> BoxStream<'static, Result<ListedObject>> {
        self.list_noting(Arc::default())
    }

    /// [`list`](Self::list), counting what a directory walk leaves out in `skipped`.
    pub(crate) fn list_noting(&self, skipped: SkipLog) -> BoxStream<'static, Result<ListedObject>> {
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
                tokio::task::spawn_blocking(move || walk(&dir, &tx, &skipped));
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
                let (root, rel) = (dir.clone(), key.to_owned());
                let opened =
                    tokio::task::spawn_blocking(move || nofollow::open_file_below(&root, &rel))
                        .await
                        .map_err(|e| {
                            Error::io(
                                format!("cannot open {}", file_path.display()),
                                std::io::Error::other(e),
                            )
                        })?
                        .map_err(|e| {
                            Error::io(format!("cannot open {}", file_path.display()), e)
                        })?;
                let file = match opened {
                    Found::Yes(f) => tokio::fs::File::from_std(f),
                    Found::Missing => return Ok(None),
                    // Replaced since the listing: a link is never followed, nor anything but
                    // a regular file read.
                    Found::Link(p) | Found::Other(p) => {
                        tracing::warn!(
                            "{key:?} is no longer a regular file ({p:?} is a link or another kind \
                             of file); it is left out"
                        );
                        return Ok(None);
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
    stamp(meta.ino(), nanos, meta.len())
}

fn stamp(ino: u64, mtime_nanos: i128, size: u64) -> (Timestamp, String) {
    let modified = Timestamp::from_nanosecond(mtime_nanos).unwrap_or(Timestamp::UNIX_EPOCH);
    let etag = format!("{ino:x}-{mtime_nanos:x}-{size:x}");
    (modified, etag)
}

/// What a directory listing left out, for the snapshot's notes.
#[derive(Debug, Default)]
pub(crate) struct Skipped {
    /// Symbolic links (never followed), how many.
    pub(crate) links: u64,
    /// The first few of them (keys).
    pub(crate) link_examples: Vec<String>,
    /// Temp files of pre-deploy restores (partial files), how many.
    pub(crate) restore_temps: u64,
}

/// Links named in a snapshot's note.
const LINK_EXAMPLES: usize = 5;

/// Shared between the walk (a blocking task) and whoever reads the notes afterwards.
pub(crate) type SkipLog = Arc<Mutex<Skipped>>;

impl Skipped {
    /// The manifest notes of what was left out.
    pub(crate) fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.links > 0 {
            let mut named: Vec<String> = self
                .link_examples
                .iter()
                .map(|k| format!("{k:?}"))
                .collect();
            if self.links > self.link_examples.len() as u64 {
                named.push("…".into());
            }
            notes.push(format!(
                "{} symbolic link(s) were skipped and are not in this backup ({}): a directory \
                 snapshot never follows a link, so a link cannot make it read outside the directory",
                self.links,
                named.join(", ")
            ));
        }
        if self.restore_temps > 0 {
            notes.push(format!(
                "{} temp file(s) of a pre-deploy restore (`.*.pd-restore`, partial files) were skipped",
                self.restore_temps
            ));
        }
        notes
    }
}

fn note_link(skipped: &SkipLog, key: String) {
    tracing::warn!("skipping {key:?}: a symbolic link (links are never followed)");
    if let Ok(mut s) = skipped.lock() {
        s.links += 1;
        if s.link_examples.len() < LINK_EXAMPLES {
            s.link_examples.push(key);
        }
    }
}

/// One directory entry of the walk, sorted by `sort_key` (the relative path, with a trailing `/`
/// for directories, so the walk yields keys in byte order).
struct WalkEntry {
    sort_key: String,
    dir: bool,
    size: u64,
    stamp: (Timestamp, String),
}

/// The entries of the directory `dir` (at `rel`, empty or ending in `/`): regular files and
/// directories; links are noted in `skipped`, never followed; other kinds are left out.
fn read_sorted(dir: &OwnedFd, rel: &str, skipped: &SkipLog) -> std::io::Result<Vec<WalkEntry>> {
    let mut out = Vec::new();
    for entry in nofollow::entries(dir)? {
        let Some(name) = entry.name.to_str() else {
            return Err(std::io::Error::other(format!(
                "{rel:?} has a file name that is not UTF-8: {:?}",
                entry.name
            )));
        };
        let Some(st) = nofollow::lstat(dir, name)? else {
            continue; // gone since readdir
        };
        let rel_name = format!("{rel}{name}");
        match nofollow::file_type(&st) {
            FileType::Symlink => note_link(skipped, rel_name),
            FileType::Directory => out.push(WalkEntry {
                sort_key: format!("{rel_name}/"),
                dir: true,
                size: 0,
                stamp: (Timestamp::UNIX_EPOCH, String::new()),
            }),
            FileType::RegularFile if is_restore_temp(name) => {
                if let Ok(mut s) = skipped.lock() {
                    s.restore_temps += 1;
                }
            }
            FileType::RegularFile => out.push(WalkEntry {
                sort_key: rel_name,
                dir: false,
                size: st.st_size as u64,
                stamp: stat_stamp(&st),
            }),
            _ => {}
        }
    }
    out.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
    Ok(out)
}

/// [`file_stamp`] of a `stat` (the same values, so listings and reads agree).
// The field types differ between architectures (`c_ulong`, `u64`, `u32`).
#[allow(clippy::useless_conversion)]
fn stat_stamp(st: &rustix::fs::Stat) -> (Timestamp, String) {
    let nanos = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
    stamp(u64::from(st.st_ino), nanos, st.st_size as u64)
}

/// Walks `root` depth-first in key order, sending each regular file. Every directory below the
/// root is opened from the root one segment at a time without following links (see
/// [`nofollow`]), so at most two descriptors are open at once however deep the tree.
fn walk(root: &FsPath, tx: &mpsc::Sender<Result<ListedObject>>, skipped: &SkipLog) {
    let fail = |path: &str, e: std::io::Error| {
        let shown = root.join(path);
        let _ = tx.blocking_send(Err(Error::io(
            format!("cannot list {}", shown.display()),
            e,
        )));
    };
    let root_fd = match nofollow::open_root(root) {
        Ok(fd) => fd,
        Err(e) => return fail("", e),
    };
    let first = match read_sorted(&root_fd, "", skipped) {
        Ok(v) => v,
        Err(e) => return fail("", e),
    };
    let mut stack = vec![first.into_iter()];
    while let Some(top) = stack.last_mut() {
        let Some(entry) = top.next() else {
            stack.pop();
            continue;
        };
        if entry.dir {
            let rel = entry.sort_key.trim_end_matches('/');
            let segments: Vec<&str> = rel.split('/').collect();
            match nofollow::open_dir(&root_fd, &segments, false) {
                Ok(Found::Yes(fd)) => match read_sorted(&fd, &entry.sort_key, skipped) {
                    Ok(v) => stack.push(v.into_iter()),
                    Err(e) => return fail(rel, e),
                },
                // Replaced by a link since it was listed: still never followed.
                Ok(Found::Link(key)) => note_link(skipped, key),
                Ok(Found::Missing | Found::Other(_)) => {} // gone, or no longer a directory
                Err(e) => return fail(rel, e),
            }
            continue;
        }
        let item = ListedObject {
            key: entry.sort_key,
            size: entry.size,
            last_modified: entry.stamp.0,
            etag: Some(entry.stamp.1),
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directories_never_list_or_read_through_links() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("src");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), b"secret").expect("write");
        std::fs::write(dir.join("sub/real"), b"real").expect("write");
        std::fs::write(dir.join("sub/.real.1-2.00ff.pd-restore"), b"partial").expect("write");
        std::os::unix::fs::symlink(outside.join("secret"), dir.join("file-link")).expect("ln");
        std::os::unix::fs::symlink(&outside, dir.join("sub/dir-link")).expect("ln");
        let source = BucketSource::open(
            BucketLocation::Directory(dir.clone()),
            &S3Settings::default(),
        )
        .expect("opens");
        let skipped = SkipLog::default();
        let keys: Vec<String> = source
            .list_noting(skipped.clone())
            .map_ok(|o| o.key)
            .try_collect()
            .await
            .expect("lists");
        assert_eq!(keys, vec!["sub/real".to_owned()]);
        let notes = skipped.lock().expect("lock").notes();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("2 symbolic link(s) were skipped"),
            "{notes:?}"
        );
        assert!(notes[0].contains("\"file-link\""), "{notes:?}");
        assert!(notes[0].contains("\"sub/dir-link\""), "{notes:?}");
        assert!(notes[1].starts_with("1 temp file(s)"), "{notes:?}");
        // Read by key (a link swapped in after the listing): never through the link.
        assert!(source.get("file-link").await.expect("get").is_none());
        assert!(
            source
                .get("sub/dir-link/secret")
                .await
                .expect("get")
                .is_none()
        );
        assert!(source.get("sub/real").await.expect("get").is_some());
    }
}
