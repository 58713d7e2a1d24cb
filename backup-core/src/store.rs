//! The [`Store`] trait: where backups live, and [`StoreExt`], the conveniences built on it.

use std::fmt::Debug;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use jiff::Timestamp;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::layout;
use crate::manifest::Manifest;
use crate::verify::VerificationRecord;

/// A stream of bytes moving into or out of a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A store behind `Arc<dyn …>`, as the orchestration holds it.
pub type DynStore = Arc<dyn Store>;

/// How a small object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace whatever is there.
    Overwrite,
    /// Fail with [`Error::AlreadyExists`] if the key exists. Only guaranteed when
    /// [`StoreCapabilities::create_only_writes`] is true.
    CreateOnly,
}

/// What a store promises, so callers branch on declared features instead of error strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCapabilities {
    /// `WriteMode::CreateOnly` is honoured atomically (false on servers that silently overwrite).
    pub create_only_writes: bool,
    /// Writes are durable (fsynced) when they return.
    pub durable_writes: bool,
    /// The store is on this machine's file system (free-space checks apply).
    pub local: bool,
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: Timestamp,
}

/// Where backups live: a key/value store of immutable objects.
///
/// # Contract
///
/// - Keys are `/`-separated, relative to the store's own root or prefix, and come from
///   [`crate::layout`].
/// - [`put_stream`](Store::put_stream) is atomic: after `Ok` the whole object is visible; after
///   `Err` (including an `Err` item yielded by the input stream) nothing is visible under the key
///   and any partial upload has been aborted. Memory use does not depend on the object's size.
/// - [`put_bytes`](Store::put_bytes) with [`WriteMode::CreateOnly`] never replaces an existing
///   object on stores that declare `create_only_writes`.
/// - [`delete`](Store::delete) is idempotent: deleting a missing key succeeds.
/// - [`list`](Store::list) is recursive and returns keys in lexicographic order.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// A display name for messages, e.g. `file:///var/backups/app` (never contains secrets).
    fn name(&self) -> &str;

    /// What this store promises.
    fn capabilities(&self) -> StoreCapabilities;

    /// Settles whether create-only writes are honoured (some S3 servers silently overwrite:
    /// Garage does), probing the server if it must, and remembers the answer. Default: what
    /// [`Store::capabilities`] says.
    ///
    /// # Errors
    ///
    /// The store's error when a probe cannot be written or removed.
    async fn detect_create_only(&self) -> Result<bool> {
        Ok(self.capabilities().create_only_writes)
    }

    /// Streams `data` into `key`; returns the number of bytes stored.
    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64>;

    /// [`put_stream`](Store::put_stream) for data whose SHA-256 is known before the upload
    /// (content-addressed blobs). Stores that keep object metadata record it with the object
    /// (`x-amz-meta-sha256` on S3), so the object can be checked without our manifest.
    async fn put_stream_known(&self, key: &str, data: ByteStream, sha256: &Digest) -> Result<u64> {
        let _ = sha256;
        self.put_stream(key, data).await
    }

    /// Writes a small object in one request.
    async fn put_bytes(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<()>;

    /// Streams an object's bytes. [`Error::NotFound`] when it does not exist.
    async fn get(&self, key: &str) -> Result<ByteStream>;

    /// Size and time of an object, `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>>;

    /// Every object under `prefix` (recursive), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// The immediate "directories" under `prefix` (which ends in `/`), as names without slashes.
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>>;

    /// Removes an object; succeeds when it is already gone.
    async fn delete(&self, key: &str) -> Result<()>;
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: Store + ?Sized> Store for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn capabilities(&self) -> StoreCapabilities {
                (**self).capabilities()
            }
            async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64> {
                (**self).put_stream(key, data).await
            }
            async fn put_stream_known(
                &self,
                key: &str,
                data: ByteStream,
                sha256: &Digest,
            ) -> Result<u64> {
                (**self).put_stream_known(key, data, sha256).await
            }
            async fn put_bytes(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<()> {
                (**self).put_bytes(key, data, mode).await
            }
            async fn get(&self, key: &str) -> Result<ByteStream> {
                (**self).get(key).await
            }
            async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
                (**self).head(key).await
            }
            async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
                (**self).list(prefix).await
            }
            async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
                (**self).list_dirs(prefix).await
            }
            async fn delete(&self, key: &str) -> Result<()> {
                (**self).delete(key).await
            }
        }
    };
}
forward_store!(Arc<T>);
forward_store!(Box<T>);

/// Largest document [`StoreExt::get_small`] reads (manifests and records are far smaller).
pub const MAX_DOCUMENT_SIZE: usize = 64 * 1024 * 1024;

/// Conveniences over any [`Store`]: documents, manifests, verification records.
#[async_trait]
pub trait StoreExt: Store {
    /// Reads a small object whole; refuses objects larger than `limit` bytes.
    async fn get_small(&self, key: &str, limit: usize) -> Result<Bytes> {
        let mut stream = self.get(key).await?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::store("get", key, e))?;
            if buf.len() + chunk.len() > limit {
                return Err(Error::store(
                    "get",
                    key,
                    format!("the object is larger than the {limit} bytes expected"),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Reads and parses the manifest of backup `id`.
    async fn read_manifest(&self, id: &BackupId) -> Result<Manifest> {
        let key = layout::manifest_key(id);
        let bytes = self.get_small(&key, MAX_DOCUMENT_SIZE).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Format {
            key,
            what: "manifest",
            source,
        })
    }

    /// Writes the manifest, create-only: the commit point of a backup. Call it after every
    /// artifact is stored.
    async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let key = layout::manifest_key(&manifest.id);
        let json = serde_json::to_vec_pretty(manifest).map_err(|source| Error::Format {
            key: key.clone(),
            what: "manifest",
            source,
        })?;
        self.put_bytes(&key, Bytes::from(json), WriteMode::CreateOnly)
            .await
    }

    /// Ids of every committed backup (those with a manifest), oldest first.
    ///
    /// Directories without a manifest (an interrupted backup) are not backups and are skipped.
    async fn list_backup_ids(&self) -> Result<Vec<BackupId>> {
        let mut ids = Vec::new();
        for dir in self.list_dirs(layout::BACKUPS_DIR).await? {
            let Ok(id) = dir.parse::<BackupId>() else {
                continue;
            };
            if self.head(&layout::manifest_key(&id)).await?.is_some() {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Appends a verification record next to the manifest (create-only, never rewritten).
    async fn write_verification(&self, record: &VerificationRecord) -> Result<String> {
        let key = layout::verification_key(&record.backup_id, record.verified_at);
        let json = serde_json::to_vec_pretty(record).map_err(|source| Error::Format {
            key: key.clone(),
            what: "verification record",
            source,
        })?;
        self.put_bytes(&key, Bytes::from(json), WriteMode::CreateOnly)
            .await?;
        Ok(key)
    }

    /// Every verification record of backup `id`, oldest first. Unreadable records are skipped
    /// with a warning: a damaged record must not hide the backup.
    async fn read_verifications(&self, id: &BackupId) -> Result<Vec<VerificationRecord>> {
        let mut out = Vec::new();
        for obj in self.list(&layout::verification_prefix(id)).await? {
            let bytes = self.get_small(&obj.key, MAX_DOCUMENT_SIZE).await?;
            match serde_json::from_slice::<VerificationRecord>(&bytes) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(key = %obj.key, error = %e, "skipping an unreadable verification record")
                }
            }
        }
        out.sort_by_key(|r| r.verified_at);
        Ok(out)
    }

    /// Deletes every object under `prefix`, returning how many were removed.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let objects = self.list(prefix).await?;
        for obj in &objects {
            self.delete(&obj.key).await?;
        }
        Ok(objects.len())
    }

    /// Reads an object as a stream and collects it (tests and small objects only).
    async fn get_all(&self, key: &str) -> Result<Vec<u8>> {
        let stream = self.get(key).await?;
        let chunks: Vec<Bytes> = stream
            .try_collect()
            .await
            .map_err(|e| Error::store("get", key, e))?;
        Ok(chunks.concat())
    }
}

impl<T: Store + ?Sized> StoreExt for T {}
