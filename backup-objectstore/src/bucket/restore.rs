//! [`BucketRestorer`]: puts a bucket or directory snapshot back into a bucket prefix or a
//! directory, verifying every object's digest while it streams.

use std::os::fd::OwnedFd;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use backup_core::{Digest, Error, Result, Sha256, SourceManifest, Store};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::bucket::blob::MEMORY_SPOOL_LIMIT;
use crate::bucket::client::{ObjectHeaders, S3Bucket};
use crate::bucket::index::{IndexEntry, index_artifact, read_index};
use crate::bucket::location::BucketLocation;
use crate::bucket::nofollow::{self, Found};
use crate::bucket::snapshot::DEFAULT_CONCURRENCY;
use crate::bucket::source::BucketSource;
use crate::s3::{MAX_OBJECT_SIZE, S3Settings, part_size_for};
use crate::store::SHA256_METADATA;

/// Objects a directory restore refused, named one by one in its error (the rest are counted;
/// every one is logged).
const NAMED_KEYS: usize = 50;

/// The end of a directory restore's temp file names: `.<name>.<pid>-<start>.<random>.pd-restore`.
const TEMP_SUFFIX: &str = ".pd-restore";

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
    Directory(DirTarget),
}

/// A target directory: its path (for messages) and a descriptor every write below it starts
/// from, one segment at a time, never through a link (see [`nofollow`]).
struct DirTarget {
    path: PathBuf,
    fd: Arc<OwnedFd>,
}

/// What became of one object of the snapshot.
enum Placed {
    Written,
    /// Written in place of a symbolic link, which was replaced (never followed).
    ReplacedLink,
    /// Already there with the same bytes.
    Unchanged,
    /// Not written, and why: a directory cannot hold its key, or a link or a file is in the
    /// way of its directory.
    Refused(String),
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
    /// A directory restore never writes through a symbolic link already in the target: a link
    /// where a file goes is replaced by the file (the link's own target is untouched), and an
    /// object whose directory is a link (or a file) is refused like a key the directory cannot
    /// hold. Every path below the target is opened from the target's descriptor one segment at
    /// a time with `O_NOFOLLOW`, so a link swapped in while the restore runs is refused too (the
    /// guarantee and its limits are in the `nofollow` module). Files are written to temp
    /// files named `.<name>.<pid>-<start>.<random>.pd-restore` next to them, then renamed; temp
    /// files that a killed restore left (their process is gone) are removed before writing,
    /// and snapshots never take them.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a source without an index; [`Error::Io`] naming every object a
    /// directory restore refused (a key it cannot hold, a link or a file in the way of its
    /// directory), once the other objects are restored; [`Error::Store`] (op
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
                let root = dir.clone();
                let fd = blocking(move || nofollow::open_root(&root))
                    .await
                    .map_err(|e| Error::io(format!("cannot open {}", dir.display()), e))?;
                Target::Directory(DirTarget {
                    path: dir.clone(),
                    fd: Arc::new(fd),
                })
            }
        };
        let mut notes = Vec::new();
        if let Target::Directory(d) = &target_backend {
            let fd = d.fd.clone();
            match blocking(move || Ok(remove_stale_temps(&fd))).await {
                Ok(0) | Err(_) => {}
                Ok(n) => notes.push(format!(
                    "removed {n} temp file(s) (`.*.pd-restore`) left in the target by an \
                     interrupted restore"
                )),
            }
        }
        let objects = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let written = AtomicU64::new(0);
        let links_replaced = AtomicU64::new(0);
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
                let links_replaced = &links_replaced;
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
                        Placed::ReplacedLink => {
                            links_replaced.fetch_add(1, Ordering::Relaxed);
                            written.fetch_add(1, Ordering::Relaxed)
                        }
                        Placed::Unchanged => unchanged.fetch_add(1, Ordering::Relaxed),
                        Placed::Refused(reason) => {
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

        let links_replaced = links_replaced.into_inner();
        if links_replaced > 0 {
            notes.push(format!(
                "{links_replaced} symbolic link(s) in the target were replaced by the backed-up \
                 files (a restore never writes through a link; what they pointed to is untouched)"
            ));
        }
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
            entry.blob_key(),
            entry.size,
            entry.sha256
        ),
    )
}

/// The error of a directory restore that refused `not_files` (key, reason) and restored
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
            "{n} object(s) were not restored into {target}: {}; the other {restored} object(s) \
             were restored",
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
    let blob = entry.blob_key();
    let mut stream = crate::bucket::blob::open_blob(store, entry).await?;
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
    if entry.size > MAX_OBJECT_SIZE {
        return Err(Error::store(
            "put",
            &entry.key,
            format!(
                "{} bytes is more than an S3 object can hold (5 TiB); restore it into a directory",
                entry.size
            ),
        ));
    }
    // The size is known: parts as small as 10,000 of them allow (10 MiB up to 97.7 GiB).
    let part_size = usize::try_from(part_size_for(entry.size)).unwrap_or(usize::MAX);
    // Aborted when it fails, and on drop: a cancelled restore leaves no upload behind.
    let mut upload = target.start_upload(&entry.key, &headers).await?;
    let mut part = BytesMut::with_capacity(part_size);
    let outcome: Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let mut chunk: Bytes = chunk.map_err(|e| Error::store("get", &blob, e))?;
            hasher.update(&chunk);
            while !chunk.is_empty() {
                let take = chunk.len().min(part_size - part.len());
                part.extend_from_slice(&chunk.split_to(take));
                if part.len() == part_size {
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

/// Runs blocking file system work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Hashes an open file.
async fn file_digest(file: std::fs::File) -> std::io::Result<(u64, Digest)> {
    let file = tokio::fs::File::from_std(file);
    let mut stream = tokio_util::io::ReaderStream::with_capacity(file, 1024 * 1024);
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    Ok((hasher.len(), hasher.finish()))
}

/// Whether `name` is a temp file of a directory restore (see [`TEMP_SUFFIX`]): snapshots skip
/// them, and the next restore removes those whose process is gone.
pub(crate) fn is_restore_temp(name: &str) -> bool {
    name.len() > TEMP_SUFFIX.len() + 1 && name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// When the process `pid` started (clock ticks after boot, field 22 of `/proc/PID/stat`), or
/// `None` when there is no such process (or no `/proc`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This process as temp file names carry it: `<pid>-<start>` (a reused pid has another start).
fn process_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id();
        format!("{pid}-{}", process_start(pid).unwrap_or(0))
    })
}

/// Whether the process that made the temp file `name` is gone (so the file is a leftover).
/// `false` whenever that cannot be told: a name without a tag, or no `/proc`.
fn temp_owner_gone(name: &str) -> bool {
    let Some(tag) = name
        .strip_suffix(TEMP_SUFFIX)
        .and_then(|n| n.rsplit_once('.'))
        .and_then(|(n, _random)| n.rsplit_once('.'))
        .map(|(_, tag)| tag)
    else {
        return false;
    };
    let Some((pid, start)) = tag
        .split_once('-')
        .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
    else {
        return false;
    };
    if process_start(std::process::id()).is_none() {
        return false; // no /proc: cannot tell
    }
    match process_start(pid) {
        None => true,
        Some(started) => start != 0 && started != start,
    }
}

/// A temp file name for `name`: `.<name, shortened>.<pid>-<start>.<random>.pd-restore`.
fn temp_name(name: &str) -> String {
    // The temp file's name must fit too (255 bytes): shorten the object's name.
    let short: String = name
        .chars()
        .scan(0, |len, c| {
            *len += c.len_utf8();
            (*len <= 100).then_some(c)
        })
        .collect();
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        random = jiff::Timestamp::now().as_nanosecond().to_le_bytes()[..8]
            .try_into()
            .unwrap_or_default();
    }
    format!(
        ".{short}.{}.{:016x}{TEMP_SUFFIX}",
        process_tag(),
        u64::from_le_bytes(random)
    )
}

/// Removes the temp files that killed restores left below `root` (their process is gone),
/// walking without following links; returns how many. Errors are logged, never fatal: a
/// leftover is harmless, snapshots skip it.
fn remove_stale_temps(root: &OwnedFd) -> u64 {
    let mut removed = 0;
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        let dir = match nofollow::open_dir(root, &segments, false) {
            Ok(Found::Yes(dir)) => dir,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!("cannot look for leftover temp files in {rel:?}: {e}");
                continue;
            }
        };
        let entries = match nofollow::entries(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("cannot look for leftover temp files in {rel:?}: {e}");
                continue;
            }
        };
        for entry in entries {
            // Restores only write UTF-8 names: others are neither ours nor on our way.
            let Some(name) = entry.name.to_str() else {
                continue;
            };
            let kind = match entry.kind {
                Some(kind) => kind,
                None => match nofollow::lstat(&dir, name) {
                    Ok(Some(st)) => nofollow::file_type(&st),
                    _ => continue,
                },
            };
            match kind {
                rustix::fs::FileType::Directory => pending.push(format!("{rel}{name}/")),
                rustix::fs::FileType::RegularFile
                    if is_restore_temp(name) && temp_owner_gone(name) =>
                {
                    match nofollow::remove_file(&dir, name) {
                        Ok(()) => removed += 1,
                        Err(e) => tracing::warn!("cannot remove {rel}{name}: {e}"),
                    }
                }
                _ => {}
            }
        }
    }
    removed
}

/// A temp file being written, removed when dropped unless it was renamed into place (a failed
/// or interrupted restore leaves no partial file).
struct TempFile {
    dir: Arc<OwnedFd>,
    name: String,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = nofollow::remove_file(&self.dir, &self.name);
        }
    }
}

/// What is where a restored file goes.
enum Existing {
    Nothing,
    /// A regular file, open for reading.
    File(std::fs::File),
    /// A symbolic link: replaced, never followed.
    Link,
    /// A directory, FIFO or other: the rename says whether it can be replaced.
    Other,
}

/// Writes one object into a directory (temp file, then rename), or leaves it when the file is
/// already there with the same bytes, or says why it was refused. Nothing below the target is
/// reached through a symbolic link (see [`nofollow`]).
async fn restore_file(store: &dyn Store, target: &DirTarget, entry: &IndexEntry) -> Result<Placed> {
    let path = match file_for(&target.path, &entry.key) {
        Ok(path) => path,
        Err(reason) => {
            return Ok(Placed::Refused(format!(
                "a directory cannot hold this key: {reason}"
            )));
        }
    };
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", path.display()), e);
    let conflict = |what: String| {
        Placed::Refused(format!(
            "{what} (a file and a directory cannot share a name; S3 holds `a` and `a/b` side by \
             side)"
        ))
    };
    let segments: Vec<String> = entry.key.split('/').map(str::to_owned).collect();
    let Some((name, parents)) = segments.split_last() else {
        return Ok(Placed::Refused("an empty key".into()));
    };
    let name = name.clone();

    // The file's directory (created when missing), and what is already where the file goes.
    let (root, parents, key, looked_at) = (
        target.fd.clone(),
        parents.to_vec(),
        entry.key.clone(),
        name.clone(),
    );
    let opened = blocking(move || {
        let dir = match nofollow::open_dir(&root, &parents, true)? {
            Found::Yes(dir) => dir,
            Found::Link(p) => {
                return Ok(Err(format!(
                    "{p:?} in the target is a symbolic link, and a restore never writes through one"
                )));
            }
            Found::Other(p) => {
                return Ok(Err(format!(
                    "{p:?} in the target is a file, so {key:?} cannot be written below it"
                )));
            }
            Found::Missing => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "a directory vanished while it was being created",
                ));
            }
        };
        let existing = match nofollow::open_file(&dir, &looked_at, &key)? {
            Found::Yes(file) => Existing::File(file),
            Found::Missing => Existing::Nothing,
            Found::Link(_) => Existing::Link,
            Found::Other(_) => Existing::Other,
        };
        Ok(Ok((Arc::new(dir), existing)))
    })
    .await;
    let (dir, existing) = match opened {
        Ok(Ok(found)) => found,
        Ok(Err(why)) if why.contains("symbolic link") => return Ok(Placed::Refused(why)),
        Ok(Err(why)) => return Ok(conflict(why)),
        Err(e) if is_not_a_file(&e) => {
            return Ok(conflict(format!(
                "{} cannot be a file there: {e}",
                path.display()
            )));
        }
        Err(e) => return Err(io("cannot create the directory of", e)),
    };
    let replaces_link = matches!(existing, Existing::Link);
    if let Existing::File(file) = existing
        && file.metadata().is_ok_and(|m| m.len() == entry.size)
        && file_digest(file)
            .await
            .is_ok_and(|(_, d)| d == entry.sha256)
    {
        return Ok(Placed::Unchanged);
    }

    let temp = temp_name(&name);
    // Created here, not on a blocking thread: with no await between the file and its guard, a
    // restore cancelled meanwhile (another object failed) cannot leave the temp file behind.
    let file =
        nofollow::create_new(&dir, &temp).map_err(|e| io("cannot create a temp file for", e))?;
    // Removed when dropped: a failed or interrupted restore leaves no partial file.
    let mut guard = TempFile {
        dir: dir.clone(),
        name: temp.clone(),
        armed: true,
    };
    let mut file = tokio::fs::File::from_std(file);
    let blob = entry.blob_key();
    let mut stream = crate::bucket::blob::open_blob(store, entry).await?;
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
    let modified = std::time::SystemTime::from(entry.last_modified);
    let renamed = {
        let (dir, temp, name) = (dir.clone(), temp.clone(), name.clone());
        blocking(move || {
            let _ = std_file.set_modified(modified);
            drop(std_file);
            nofollow::rename(&dir, &temp, &name)
        })
        .await
    };
    match renamed {
        Ok(()) => {
            guard.armed = false;
            Ok(if replaces_link {
                Placed::ReplacedLink
            } else {
                Placed::Written
            })
        }
        Err(e) if is_not_a_file(&e) => Ok(conflict(format!(
            "{} cannot be a file there: {e}",
            path.display()
        ))),
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

    #[test]
    fn temp_files_name_their_process() {
        let name = temp_name(&"é".repeat(200));
        assert!(name.len() <= NAME_MAX, "{}", name.len());
        assert!(is_restore_temp(&name), "{name}");
        assert!(
            name.contains(&format!(".{}-", std::process::id())),
            "{name}"
        );
        assert!(!temp_owner_gone(&name), "this process is running");
        let tag = process_tag();
        for (name, gone) in [
            (format!(".a.{tag}.0011.pd-restore"), false),
            (".a.4294967000-5.0011.pd-restore".to_owned(), true),
            // This process's pid with another start time: the pid was reused.
            (format!(".a.{}-1.0011.pd-restore", std::process::id()), true),
            // Without a start time: the pid alone decides.
            (
                format!(".a.{}-0.0011.pd-restore", std::process::id()),
                false,
            ),
            // Not made by this version: never removed.
            (".a.Xy12Zq.pd-restore".to_owned(), false),
            (".pd-restore".to_owned(), false),
        ] {
            assert_eq!(temp_owner_gone(&name), gone, "{name}");
        }
        assert!(!is_restore_temp(".pd-restore"));
        assert!(!is_restore_temp("a.pd-restore"));
    }

    /// Restores `files` (written to a source directory and backed up into a memory store) into
    /// `target`.
    async fn backup_and_restore(files: &[(&str, &[u8])], target: &FsPath) -> Result<RestoreReport> {
        use backup_core::testkit::MemoryStore;
        use backup_core::{BackupId, PipelineConfig, SnapshotContext, Snapshotter};
        let src = tempfile::tempdir().expect("tempdir");
        for (rel, data) in files {
            let p = src.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, data).expect("write");
        }
        let store = MemoryStore::new();
        let location = BucketLocation::Directory(src.path().to_path_buf());
        let snap = crate::bucket::BucketSnapshotter::new(
            "files".parse().expect("name"),
            BucketSource::open(location, &S3Settings::default()).expect("opens"),
        );
        let id = BackupId::new(jiff::Timestamp::now());
        let source = snap
            .snapshot(SnapshotContext {
                store: &store,
                backup_id: &id,
                environment: "default",
                pipeline: &PipelineConfig::default(),
            })
            .await
            .expect("snapshot");
        BucketRestorer::new(S3Settings::default())
            .restore(
                &store,
                &source,
                &BucketLocation::Directory(target.to_path_buf()),
            )
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restore_replaces_file_links_and_refuses_directory_links() {
        let base = tempfile::tempdir().expect("tempdir");
        let target = base.path().join("target");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("victim"), b"untouched").expect("write");
        std::os::unix::fs::symlink(outside.join("victim"), target.join("top")).expect("link");
        std::os::unix::fs::symlink(&outside, target.join("sub")).expect("link");
        std::fs::write(target.join("plain"), b"in the way").expect("write");
        let err = backup_and_restore(
            &[
                ("top", b"restored top"),
                ("sub/inner", b"restored inner"),
                ("plain/x", b"under a file"),
                ("ok/fine", b"fine"),
            ],
            &target,
        )
        .await
        .expect_err("two objects refused");
        let text = err.to_string();
        assert!(text.contains("2 object(s) were not restored"), "{text}");
        assert!(
            text.contains("\"sub/inner\" (\"sub\" in the target is a symbolic link"),
            "{text}"
        );
        assert!(
            text.contains("\"plain/x\" (\"plain\" in the target is a file"),
            "{text}"
        );
        assert!(
            text.contains("the other 2 object(s) were restored"),
            "{text}"
        );
        assert_eq!(
            std::fs::read(outside.join("victim")).expect("victim"),
            b"untouched"
        );
        assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 1);
        let top = std::fs::symlink_metadata(target.join("top")).expect("top");
        assert!(top.is_file(), "the link was replaced");
        assert_eq!(
            std::fs::read(target.join("top")).expect("top"),
            b"restored top"
        );
        assert_eq!(
            std::fs::read(target.join("ok/fine")).expect("fine"),
            b"fine"
        );

        // Without the directory link in the way: restored, and the report names the link.
        std::fs::remove_file(target.join("sub")).expect("rm");
        std::fs::remove_file(target.join("plain")).expect("rm");
        std::fs::remove_file(target.join("top")).expect("rm");
        std::os::unix::fs::symlink(outside.join("victim"), target.join("top")).expect("link");
        let report = backup_and_restore(&[("top", b"restored top"), ("sub/inner", b"x")], &target)
            .await
            .expect("restored");
        assert_eq!(report.written, 2);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("1 symbolic link(s) in the target were replaced")),
            "{:?}",
            report.notes
        );
        assert_eq!(
            std::fs::read(outside.join("victim")).expect("victim"),
            b"untouched"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_temp_files_are_removed_and_live_ones_kept() {
        let target = tempfile::tempdir().expect("tempdir");
        let live = temp_name("live");
        let dead = ".dead.4294967000-7.00ff.pd-restore";
        let foreign = ".x.Ab12Cd.pd-restore";
        std::fs::create_dir_all(target.path().join("d")).expect("mkdir");
        for name in [live.as_str(), dead, foreign] {
            std::fs::write(target.path().join("d").join(name), b"partial").expect("write");
        }
        let report = backup_and_restore(&[("d/f", b"f")], target.path())
            .await
            .expect("restored");
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("removed 1 temp file(s)")),
            "{:?}",
            report.notes
        );
        let mut left: Vec<String> = std::fs::read_dir(target.path().join("d"))
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec!["f".to_owned(), live, foreign.to_owned()];
        want.sort();
        assert_eq!(left, want);
    }
}
