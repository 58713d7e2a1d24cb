//! [`ObjectStoreStore`]: the [`Store`] over any `object_store` backend.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use backup_core::{
    ByteStream, Digest, Error, ObjectInfo, Result, Store, StoreCapabilities, WriteMode,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutPayloadMut, PutResult,
};
use tokio::task::JoinSet;

use crate::error::map_error;
use crate::s3::{S3Settings, growing_part_size};
use crate::url::StoreUrl;

/// Object metadata key holding our own SHA-256 of an object (`x-amz-meta-sha256` on S3). The
/// ETag is never taken for a content hash: multipart ETags are not one.
pub const SHA256_METADATA: &str = "sha256";

/// Whether create-only writes are honoured: not known yet, no, yes.
const CREATE_ONLY_UNKNOWN: u8 = 0;
const CREATE_ONLY_NO: u8 = 1;
const CREATE_ONLY_YES: u8 = 2;

/// Parts uploaded concurrently.
const PART_CONCURRENCY: usize = 2;
/// Read size when streaming a local file.
const READ_CHUNK: usize = 1024 * 1024;

/// A [`Store`] backed by an [`ObjectStore`].
///
/// For a local directory ([`ObjectStoreStore::local`]) every write is atomic (staged, then
/// renamed) and fsynced with its directory before it returns; files are made `0600` and
/// directories `0700`, so only the backup's owner can read a dump.
#[derive(Debug, Clone)]
pub struct ObjectStoreStore {
    inner: Arc<dyn ObjectStore>,
    name: String,
    capabilities: StoreCapabilities,
    /// Whether the server honours `PutMode::Create` (S3 servers differ: Garage silently
    /// overwrites). Shared by clones; settled by configuration or by
    /// [`Store::detect_create_only`].
    create_only: Arc<AtomicU8>,
    /// The backend stores user metadata (S3); the local backend refuses attributes.
    metadata: bool,
    /// The directory of a local store, for permissions.
    local_root: Option<PathBuf>,
    /// The storage class of backup objects (S3), never of lock leases.
    storage_class: Option<String>,
}

impl ObjectStoreStore {
    /// Wraps any `object_store` backend; `name` is shown in messages and must hold no secret.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        name: impl Into<String>,
        capabilities: StoreCapabilities,
    ) -> Self {
        let create_only = if capabilities.create_only_writes {
            CREATE_ONLY_YES
        } else {
            CREATE_ONLY_NO
        };
        ObjectStoreStore {
            inner,
            name: name.into(),
            capabilities,
            create_only: Arc::new(AtomicU8::new(create_only)),
            metadata: false,
            local_root: None,
            storage_class: None,
        }
    }

    /// A store in an S3-compatible bucket under `prefix`, with `settings` (see [`S3Settings`]).
    ///
    /// Whether the server honours create-only writes is taken from `settings.create_only`, or
    /// else assumed not until [`Store::detect_create_only`] proves it (the
    /// preflight probe does). Until then create-only writes check for the key first, which
    /// catches everything but a race.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for settings the client rejects (see [`S3Settings::build`]).
    pub fn s3(bucket: &str, prefix: &str, settings: &S3Settings) -> Result<Self> {
        let inner = settings.build(bucket, prefix)?;
        let mut name = format!("s3://{bucket}");
        if !prefix.is_empty() {
            name = format!("{name}/{prefix}");
        }
        if let Some(ep) = &settings.endpoint {
            name = format!("{name} at {ep}");
        }
        let create_only = match settings.create_only {
            Some(true) => CREATE_ONLY_YES,
            Some(false) => CREATE_ONLY_NO,
            None => CREATE_ONLY_UNKNOWN,
        };
        Ok(ObjectStoreStore {
            inner,
            name,
            capabilities: StoreCapabilities {
                create_only_writes: false,
                durable_writes: true,
                local: false,
            },
            create_only: Arc::new(AtomicU8::new(create_only)),
            metadata: true,
            local_root: None,
            storage_class: settings.storage_class.clone(),
        })
    }

    /// Finds out whether the server honours create-only writes, by writing a probe key twice
    /// with `PutMode::Create` (then deleting it), and remembers the answer. Returns it.
    ///
    /// Garage (2.5) accepts the second write and replaces the object; AWS S3, MinIO and moto
    /// refuse it. A configured answer (`create_only=`) is returned without probing.
    ///
    /// # Errors
    ///
    /// The store's error when the probe cannot be written or removed.
    async fn probe_create_only(&self) -> Result<bool> {
        match self.create_only.load(Ordering::Relaxed) {
            CREATE_ONLY_YES => return Ok(true),
            CREATE_ONLY_NO if self.local_root.is_some() || !self.metadata => return Ok(false),
            _ => {}
        }
        let key = format!(
            ".probe/create-only-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        );
        let path = self.path(&key)?;
        let create = || PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&path, PutPayload::from_static(b"1"), create())
            .await
            .map_err(|e| map_error("put", &key, e))?;
        let second = self
            .inner
            .put_opts(&path, PutPayload::from_static(b"2"), create())
            .await;
        let honoured = match second {
            Err(object_store::Error::AlreadyExists { .. }) => true,
            Ok(_) => false,
            Err(e) => {
                let _ = self.inner.delete(&path).await;
                return Err(map_error("put", &key, e));
            }
        };
        self.inner
            .delete(&path)
            .await
            .map_err(|e| map_error("delete", &key, e))?;
        self.create_only.store(
            if honoured {
                CREATE_ONLY_YES
            } else {
                CREATE_ONLY_NO
            },
            Ordering::Relaxed,
        );
        Ok(honoured)
    }

    /// The attributes of a new object at `key`: its sha256 as metadata (S3), and the storage
    /// class, except for lock leases (read and renewed often) and probes.
    fn object_attributes(&self, key: &str, sha256: Option<&Digest>) -> Attributes {
        let mut attrs = Attributes::new();
        if let (true, Some(d)) = (self.metadata, sha256) {
            attrs.insert(Attribute::Metadata(SHA256_METADATA.into()), d.hex().into());
        }
        if let Some(class) = &self.storage_class
            && !key.starts_with(backup_core::lock::LOCKS_DIR)
            && !key.starts_with(".probe/")
        {
            attrs.insert(Attribute::StorageClass, class.clone().into());
        }
        attrs
    }

    /// The streaming upload behind `put_stream` and `put_stream_known`: a multipart upload,
    /// aborted on any error.
    async fn put_stream_inner(
        &self,
        key: &str,
        mut data: ByteStream,
        sha256: Option<&Digest>,
    ) -> Result<u64> {
        let path = self.path(key)?;
        self.prepare_local(key)?;
        // Declared before the writer so it drops after it: if this future is cancelled (the
        // backup was interrupted), the staged file and new directories are gone at once.
        let mut guard = LocalUploadGuard {
            store: self,
            key,
            armed: self.local_root.is_some(),
        };
        let upload = self
            .inner
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes: self.object_attributes(key, sha256),
                    ..PutMultipartOptions::default()
                },
            )
            .await
            .map_err(|e| map_error("put", key, e))?;
        // Owned by a guard: if this future is cancelled mid-upload (the backup was interrupted),
        // the guard's drop aborts the multipart upload instead of leaking it on S3.
        let mut upload = AbortOnDrop::new(PartWriter::new(upload), key);
        let writer = upload.writer();
        let mut written = 0u64;
        while let Some(item) = data.next().await {
            let step = match item {
                Ok(chunk) => {
                    written += chunk.len() as u64;
                    writer
                        .wait_for_capacity(PART_CONCURRENCY)
                        .await
                        .map(|()| writer.put(chunk))
                        .map_err(|e| map_error("put", key, e))
                }
                Err(e) => Err(Error::store("put", key, e)),
            };
            if let Err(e) = step {
                upload.abort().await;
                self.prune_local_dirs(key);
                return Err(e);
            }
        }
        if let Err(e) = upload.finish().await {
            self.prune_local_dirs(key);
            return Err(map_error("put", key, e));
        }
        guard.armed = false;
        self.finish_local(key)?;
        Ok(written)
    }

    /// A store in a local directory, created (mode `0700`) when missing.
    ///
    /// # Errors
    ///
    /// [`Error::StoreUnavailable`] when the directory cannot be created or used.
    pub fn local(dir: &FsPath) -> Result<Self> {
        let unavailable = |message: String| Error::StoreUnavailable {
            store: format!("file://{}", dir.display()),
            message,
        };
        create_private_dirs(dir)
            .map_err(|e| unavailable(format!("cannot create the directory: {e}")))?;
        let root = dir
            .canonicalize()
            .map_err(|e| unavailable(format!("cannot resolve the directory: {e}")))?;
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| unavailable(e.to_string()))?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(ObjectStoreStore {
            inner: Arc::new(fs),
            name: format!("file://{}", root.display()),
            capabilities: StoreCapabilities {
                create_only_writes: true,
                durable_writes: true,
                local: true,
            },
            create_only: Arc::new(AtomicU8::new(CREATE_ONLY_YES)),
            metadata: false,
            local_root: Some(root),
            storage_class: None,
        })
    }

    /// Opens the store a `--store` value names. With `create`, a missing local directory is
    /// created; without it (read-only commands), a missing directory is an error, so a mistyped
    /// path is reported instead of silently created.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a malformed URL or a store kind this build does not support yet;
    /// [`Error::StoreUnavailable`] when a local directory cannot be used or does not exist.
    pub fn open(url: &StoreUrl, create: bool) -> Result<Self> {
        Self::open_with(url, create, &S3Settings::from_env())
    }

    /// [`open`](Self::open) with explicit base settings for S3 (the config file's `[s3]`
    /// overridden by the environment); the URL's own query overrides them.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(url: &StoreUrl, create: bool, base: &S3Settings) -> Result<Self> {
        match url {
            StoreUrl::Local(dir) if !create && !dir.is_dir() => Err(Error::StoreUnavailable {
                store: url.to_string(),
                message: "the directory does not exist (no backup has been stored there)".into(),
            }),
            StoreUrl::Local(dir) => Self::local(dir),
            StoreUrl::S3 {
                bucket,
                prefix,
                settings,
            } => Self::s3(bucket, prefix, &base.overridden_by(settings)),
        }
    }

    /// The underlying `object_store`.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn path(&self, key: &str) -> Result<Path> {
        Path::parse(key).map_err(|e| Error::Invalid {
            what: "store key",
            value: key.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Local stores: create the key's parent directories `0700` before object_store writes there.
    fn prepare_local(&self, key: &str) -> Result<()> {
        if let Some(root) = &self.local_root {
            let file = root.join(key);
            if let Some(parent) = file.parent() {
                create_private_dirs(parent).map_err(|e| Error::store("put", key, e))?;
            }
        }
        Ok(())
    }

    /// Local stores: remove directories left empty by a delete, up to (not including) the root,
    /// so a discarded backup leaves nothing behind. A concurrent writer is unaffected: the local
    /// backend recreates missing parents when it writes.
    fn prune_local_dirs(&self, key: &str) {
        let Some(root) = &self.local_root else { return };
        let mut dir = root.join(key);
        while dir.pop() && dir.starts_with(root) && dir != *root {
            if std::fs::remove_dir(&dir).is_err() {
                break; // not empty (or already gone): stop climbing
            }
        }
    }

    /// Local stores: make a written file `0600`. Its directory is already `0700`, so the file
    /// was never readable by others in between.
    fn finish_local(&self, key: &str) -> Result<()> {
        if let Some(root) = &self.local_root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.join(key), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::store("put", key, e))?;
        }
        Ok(())
    }
}

/// The parts of a multipart upload of unknown size, cut from the bytes written to it: part `n`
/// is [`growing_part_size`]`(n)` long (10 MiB, doubling every 1,000 parts up to 5 GiB), so any
/// object S3 can hold fits in its 10,000 parts. (object_store's `WriteMultipart` cuts parts of
/// one fixed size: 10 MiB parts stop at 97.7 GiB.) Parts upload as tasks; callers bound them
/// with [`wait_for_capacity`](Self::wait_for_capacity).
#[derive(Debug)]
pub(crate) struct PartWriter {
    upload: Box<dyn MultipartUpload>,
    buffer: PutPayloadMut,
    /// Parts started so far.
    parts: u64,
    tasks: JoinSet<object_store::Result<()>>,
}

impl PartWriter {
    pub(crate) fn new(upload: Box<dyn MultipartUpload>) -> PartWriter {
        PartWriter {
            upload,
            buffer: PutPayloadMut::new(),
            parts: 0,
            tasks: JoinSet::new(),
        }
    }

    /// The size of the part being filled.
    fn part_size(&self) -> usize {
        usize::try_from(growing_part_size(self.parts + 1)).unwrap_or(usize::MAX)
    }

    /// Waits until fewer than `max` parts are on their way (all of them for 0).
    pub(crate) async fn wait_for_capacity(&mut self, max: usize) -> object_store::Result<()> {
        while !self.tasks.is_empty() && self.tasks.len() >= max {
            match self.tasks.join_next().await {
                Some(Ok(result)) => result?,
                Some(Err(e)) => {
                    return Err(object_store::Error::Generic {
                        store: "multipart",
                        source: Box::new(e),
                    });
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Adds `bytes` (without copying), starting the upload of each part that fills.
    pub(crate) fn put(&mut self, mut bytes: Bytes) {
        while !bytes.is_empty() {
            let remaining = self.part_size() - self.buffer.content_length();
            if bytes.len() < remaining {
                self.buffer.push(bytes);
                return;
            }
            self.buffer.push(bytes.split_to(remaining));
            self.start_part();
        }
    }

    fn start_part(&mut self) {
        let part = std::mem::take(&mut self.buffer);
        self.parts += 1;
        self.tasks.spawn(self.upload.put_part(part.into()));
    }

    /// Sends the last part, waits for every part and completes the upload; aborts it when a
    /// part failed.
    pub(crate) async fn finish(mut self) -> object_store::Result<PutResult> {
        if !self.buffer.is_empty() {
            self.start_part();
        }
        if let Err(e) = self.wait_for_capacity(0).await {
            self.abort().await?;
            return Err(e);
        }
        match self.upload.complete().await {
            Ok(result) => Ok(result),
            Err(e) => {
                self.abort().await?;
                Err(e)
            }
        }
    }

    /// Stops the parts on their way and aborts the upload.
    pub(crate) async fn abort(mut self) -> object_store::Result<()> {
        self.tasks.shutdown().await;
        self.upload.abort().await
    }
}

/// A multipart upload in progress, aborted when dropped before it finished (a dropped
/// upload would leave the parts on S3, billed and invisible, until a lifecycle rule removes
/// them).
pub(crate) struct AbortOnDrop {
    writer: Option<PartWriter>,
    key: String,
}

impl AbortOnDrop {
    pub(crate) fn new(writer: PartWriter, key: &str) -> AbortOnDrop {
        AbortOnDrop {
            writer: Some(writer),
            key: key.to_owned(),
        }
    }

    /// The upload, until it is finished or aborted.
    pub(crate) fn writer(&mut self) -> &mut PartWriter {
        self.writer
            .as_mut()
            .expect("the upload is neither finished nor aborted")
    }

    /// Completes the upload. Every full part is settled first, while the upload can still be
    /// aborted on failure; `PartWriter::finish` consumes the writer, so only its last part
    /// or the completion itself can fail past that point (object_store then drops the upload
    /// without aborting it; a bucket lifecycle rule for incomplete uploads is the backstop).
    pub(crate) async fn finish(&mut self) -> object_store::Result<()> {
        if let Err(e) = self.writer().wait_for_capacity(0).await {
            self.abort().await;
            return Err(e);
        }
        let writer = self.writer.take().expect("checked above");
        writer.finish().await.map(|_| ())
    }

    /// Aborts now and waits for it.
    pub(crate) async fn abort(&mut self) {
        if let Some(writer) = self.writer.take()
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(key = self.key, error = %e, "aborting the failed upload also failed");
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        // Cancelled: the abort cannot be awaited here, so it runs as a task of its own (the
        // interrupted backup's cleanup that follows gives it time to complete).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let key = std::mem::take(&mut self.key);
            runtime.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(key, error = %e, "aborting the cancelled upload failed");
                }
            });
        }
    }
}

/// Removes what a cancelled local upload left: object_store's staged file (`<key>#<n>`, whose
/// own cleanup runs later on a blocking thread) and directories left empty.
struct LocalUploadGuard<'a> {
    store: &'a ObjectStoreStore,
    key: &'a str,
    armed: bool,
}

impl Drop for LocalUploadGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Some(root) = &self.store.local_root else {
            return;
        };
        let target = root.join(self.key);
        if let (Some(dir), Some(name)) = (target.parent(), target.file_name()) {
            let staged_prefix = format!("{}#", name.to_string_lossy());
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&staged_prefix)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        self.store.prune_local_dirs(self.key);
    }
}

fn create_private_dirs(dir: &FsPath) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn object_info(meta: object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.to_string(),
        size: meta.size,
        last_modified: jiff::Timestamp::from_millisecond(meta.last_modified.timestamp_millis())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    }
}

/// object_store lists by whole path segments: `backups/` is the directory `backups`.
fn prefix_path(prefix: &str) -> Result<Option<Path>> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    Path::parse(trimmed).map(Some).map_err(|e| Error::Invalid {
        what: "store prefix",
        value: prefix.to_owned(),
        reason: e.to_string(),
    })
}

#[async_trait]
impl Store for ObjectStoreStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            create_only_writes: self.create_only.load(Ordering::Relaxed) == CREATE_ONLY_YES,
            ..self.capabilities
        }
    }

    /// Writes a probe key twice with `PutMode::Create` (then deletes it) unless the answer is
    /// known (the probe of `probe_create_only`).
    async fn detect_create_only(&self) -> Result<bool> {
        self.probe_create_only().await
    }

    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64> {
        self.put_stream_inner(key, data, None).await
    }

    async fn put_stream_known(&self, key: &str, data: ByteStream, sha256: &Digest) -> Result<u64> {
        self.put_stream_inner(key, data, Some(sha256)).await
    }

    async fn put_bytes(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<()> {
        let path = self.path(key)?;
        let honoured = self.create_only.load(Ordering::Relaxed) == CREATE_ONLY_YES;
        if mode == WriteMode::CreateOnly && !honoured && self.head(key).await?.is_some() {
            // The server would silently replace it: refuse ourselves (a race can still slip
            // through, which is why nothing relies on this for mutual exclusion).
            return Err(Error::AlreadyExists { key: key.into() });
        }
        self.prepare_local(key)?;
        let opts = PutOptions {
            mode: match mode {
                WriteMode::Overwrite => PutMode::Overwrite,
                WriteMode::CreateOnly => PutMode::Create,
            },
            attributes: self.object_attributes(key, Some(&Digest::of(&data))),
            ..PutOptions::default()
        };
        if let Err(e) = self
            .inner
            .put_opts(&path, PutPayload::from_bytes(data), opts)
            .await
        {
            self.prune_local_dirs(key);
            return Err(map_error("put", key, e));
        }
        self.finish_local(key)
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let path = self.path(key)?;
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| map_error("get", key, e))?;
        match result.payload {
            // object_store streams local files in 8 KiB reads, each a blocking-pool round trip;
            // reading the open file ourselves in 1 MiB chunks is several times faster.
            object_store::GetResultPayload::File(file, _) => {
                let file = tokio::fs::File::from_std(file);
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    file, READ_CHUNK,
                )))
            }
            object_store::GetResultPayload::Stream(stream) => {
                Ok(Box::pin(stream.map_err(std::io::Error::other)))
            }
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(key)?;
        match self.inner.head(&path).await {
            Ok(meta) => Ok(Some(object_info(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_error("head", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let p = prefix_path(prefix)?;
        let mut out: Vec<ObjectInfo> = self
            .inner
            .list(p.as_ref())
            .map_ok(object_info)
            .try_collect()
            .await
            .map_err(|e| map_error("list", prefix, e))?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let p = prefix_path(prefix)?;
        let listing = self
            .inner
            .list_with_delimiter(p.as_ref())
            .await
            .map_err(|e| map_error("list", prefix, e))?;
        let mut dirs: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|d| d.filename().map(str::to_owned))
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(map_error("delete", key, e)),
        }
        self.prune_local_dirs(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::testkit::store_conformance;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_store_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ObjectStoreStore::local(&dir.path().join("store")).expect("opens");
        store_conformance(&store, "t/").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let store = ObjectStoreStore::local(&root).expect("opens");
        store
            .put_bytes(
                "backups/x/data/db/f",
                Bytes::from_static(b"secret"),
                WriteMode::CreateOnly,
            )
            .await
            .expect("put");
        let mode = |p: PathBuf| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(root.clone()), 0o700);
        assert_eq!(mode(root.join("backups/x/data/db")), 0o700);
        assert_eq!(mode(root.join("backups/x")), 0o700);
        assert_eq!(mode(root.join("backups/x/data/db/f")), 0o600);
    }
}
