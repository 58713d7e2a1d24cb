//! Content-addressed blobs: an object's bytes are hashed into a spool (memory for small objects,
//! an anonymous temp file for large ones), then stored under `blobs/sha256/<2 hex>/<hex>` unless
//! the store already holds that blob. Encrypted, the spool is sealed to the recipients and
//! stored under its keyed name (`blobs/sealed/…`, see [`backup_core::sealed_blobs`]).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};

use backup_core::encryption::Recipients;
use backup_core::sealed_blobs::BlobNameKey;
use backup_core::{ByteStream, Digest, Error, Result, Sha256, Store, WriteMode, layout};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{OnceCell, Semaphore};

/// Objects up to this size are spooled in memory (and stored in one request); larger ones go to
/// a temp file in the system temp dir, removed when dropped.
pub const MEMORY_SPOOL_LIMIT: usize = 4 * 1024 * 1024;

/// An object's bytes, held until its digest (and so its blob key) is known.
#[derive(Debug)]
pub(crate) enum Spool {
    /// Small: the chunks themselves.
    Memory(Vec<Bytes>),
    /// Large: an anonymous temp file (gone when dropped, also on a crash).
    File(tokio::fs::File),
}

/// A spooled object.
#[derive(Debug)]
pub(crate) struct Spooled {
    pub(crate) spool: Spool,
    pub(crate) sha256: Digest,
    pub(crate) size: u64,
}

/// What storing a blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobWrite {
    /// The blob was uploaded.
    Uploaded,
    /// The store already had it (same key and size): nothing was uploaded.
    Deduplicated,
}

/// Reads `body` to the end, hashing it into a spool.
pub(crate) async fn spool(mut body: ByteStream, what: &str) -> Result<Spooled> {
    let mut hasher = Sha256::new();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut file: Option<tokio::fs::File> = None;
    let read_err = |e: std::io::Error| Error::io(format!("cannot read {what}"), e);
    let spool_err = |e: std::io::Error| Error::io(format!("cannot spool {what} to a temp file"), e);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(read_err)?;
        hasher.update(&chunk);
        match &mut file {
            Some(f) => f.write_all(&chunk).await.map_err(spool_err)?,
            None if hasher.len() as usize > MEMORY_SPOOL_LIMIT => {
                let std_file = tokio::task::spawn_blocking(tempfile::tempfile)
                    .await
                    .map_err(|e| spool_err(std::io::Error::other(e)))?
                    .map_err(spool_err)?;
                let mut f = tokio::fs::File::from_std(std_file);
                for c in chunks.drain(..) {
                    f.write_all(&c).await.map_err(spool_err)?;
                }
                f.write_all(&chunk).await.map_err(spool_err)?;
                file = Some(f);
            }
            None => chunks.push(chunk),
        }
    }
    let size = hasher.len();
    let spool = match file {
        Some(mut f) => {
            f.flush().await.map_err(spool_err)?;
            f.seek(SeekFrom::Start(0)).await.map_err(spool_err)?;
            Spool::File(f)
        }
        None => Spool::Memory(chunks),
    };
    Ok(Spooled {
        spool,
        sha256: hasher.finish(),
        size,
    })
}

/// Stores a spooled object as a blob. With `dedup`, a blob already present with the same size
/// is kept (one `HEAD`); without it (repair after a failed verification), it is rewritten.
/// `large_uploads` bounds how many temp-file uploads run at once (each buffers multipart parts).
pub(crate) async fn store_blob(
    store: &dyn Store,
    spooled: Spooled,
    dedup: bool,
    large_uploads: &Semaphore,
) -> Result<BlobWrite> {
    let key = layout::blob_key(&spooled.sha256);
    if dedup
        && let Some(info) = store.head(&key).await?
        && info.size == spooled.size
    {
        return Ok(BlobWrite::Deduplicated);
    }
    match spooled.spool {
        Spool::Memory(chunks) => {
            let data = if chunks.len() == 1 {
                chunks.into_iter().next().unwrap_or_default()
            } else {
                Bytes::from(chunks.concat())
            };
            store.put_bytes(&key, data, WriteMode::Overwrite).await?;
        }
        Spool::File(file) => {
            let _permit = large_uploads
                .acquire()
                .await
                .map_err(|e| Error::store("put", &key, e))?;
            let stream: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(
                file,
                1024 * 1024,
            ));
            let written = store
                .put_stream_known(&key, stream, &spooled.sha256)
                .await?;
            if written != spooled.size {
                return Err(Error::store(
                    "put",
                    &key,
                    format!("{written} bytes were stored instead of {}", spooled.size),
                ));
            }
        }
    }
    Ok(BlobWrite::Uploaded)
}

/// How a backup seals its blobs: the recipients and the blob-name key, and the sealed blobs
/// being written right now.
#[derive(Debug)]
pub(crate) struct Sealing {
    pub(crate) recipients: Recipients,
    pub(crate) names: BlobNameKey,
    /// Names being sealed and stored by this snapshot, each with the stored size once known: a
    /// second object with the same bytes waits for the first instead of writing the name again.
    /// (age adds a random-length "grease" stanza to every header, so two seals of the same bytes
    /// differ in size, and a rewritten blob would no longer match a size already recorded.)
    in_flight: Mutex<HashMap<String, Arc<OnceCell<u64>>>>,
}

impl Sealing {
    pub(crate) fn new(recipients: Recipients, names: BlobNameKey) -> Self {
        Sealing {
            recipients,
            names,
            in_flight: Mutex::default(),
        }
    }
}

/// A sealed blob as stored: its key and ciphertext size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealedBlob {
    pub(crate) key: String,
    pub(crate) stored_size: u64,
}

/// Seals a spooled object and stores it under its keyed name, unless a blob of that name is
/// already stored: sealed to the same recipient set, it holds the same bytes (verification reads
/// it back and checks that). Without `dedup` (repair after a failed verification), an existing
/// blob is kept only when it decrypts to the right bytes, and replaced otherwise.
pub(crate) async fn store_sealed_blob(
    store: &dyn Store,
    spooled: Spooled,
    sealing: &Sealing,
    dedup: bool,
    large_uploads: &Semaphore,
) -> Result<(BlobWrite, SealedBlob)> {
    let key = sealing.names.blob_key(&spooled.sha256);
    let cell = {
        let mut in_flight = sealing
            .in_flight
            .lock()
            .map_err(|_| Error::store("put", &key, "blob bookkeeping poisoned"))?;
        in_flight.entry(key.clone()).or_default().clone()
    };
    let how: Mutex<BlobWrite> = Mutex::new(BlobWrite::Deduplicated);
    let stored = cell
        .get_or_try_init(|| async {
            let (write, size) =
                seal_and_store(store, spooled, sealing, &key, dedup, large_uploads).await?;
            if let Ok(mut how) = how.lock() {
                *how = write;
            }
            Ok::<_, Error>(size)
        })
        .await;
    if let Ok(mut in_flight) = sealing.in_flight.lock() {
        // Later objects with these bytes find the blob with a HEAD.
        in_flight.remove(&key);
    }
    let stored_size = *stored?;
    let how = how.lock().map(|h| *h).unwrap_or(BlobWrite::Deduplicated);
    Ok((how, SealedBlob { key, stored_size }))
}

/// Stores `spooled` sealed under `key` (see [`store_sealed_blob`]); returns what it did and the
/// stored size.
async fn seal_and_store(
    store: &dyn Store,
    spooled: Spooled,
    sealing: &Sealing,
    key: &str,
    dedup: bool,
    large_uploads: &Semaphore,
) -> Result<(BlobWrite, u64)> {
    if let Some(info) = store.head(key).await?
        && (dedup || opens_to(store, key, &spooled).await)
    {
        return Ok((BlobWrite::Deduplicated, info.size));
    }
    let seal_err = |e: std::io::Error| Error::io(format!("cannot encrypt the blob {key}"), e);
    let stored_size = match spooled.spool {
        Spool::Memory(chunks) => {
            let sealed = sealing
                .recipients
                .seal(&chunks.concat())
                .map_err(seal_err)?;
            let size = sealed.len() as u64;
            // Create-only where the store honours it: a blob another backup stored meanwhile
            // is kept, and its size recorded.
            let mode = if dedup {
                WriteMode::CreateOnly
            } else {
                WriteMode::Overwrite
            };
            match store.put_bytes(key, Bytes::from(sealed), mode).await {
                Ok(()) => size,
                Err(Error::AlreadyExists { .. }) => {
                    let info = store.head(key).await?.ok_or_else(|| {
                        Error::store("put", key, "the blob vanished after it was found")
                    })?;
                    return Ok((BlobWrite::Deduplicated, info.size));
                }
                Err(e) => return Err(e),
            }
        }
        Spool::File(file) => {
            let _permit = large_uploads
                .acquire()
                .await
                .map_err(|e| Error::store("put", key, e))?;
            // Sealed into a second anonymous temp file (age writes synchronously), hashed on
            // the way, then uploaded with its digest known.
            let plain = file.into_std().await;
            let recipients = sealing.recipients.clone();
            let (sealed, digest, size) =
                tokio::task::spawn_blocking(move || seal_file(plain, &recipients))
                    .await
                    .map_err(|e| seal_err(std::io::Error::other(e)))?
                    .map_err(seal_err)?;
            let stream: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(
                tokio::fs::File::from_std(sealed),
                1024 * 1024,
            ));
            let written = store.put_stream_known(key, stream, &digest).await?;
            if written != size {
                return Err(Error::store(
                    "put",
                    key,
                    format!("{written} bytes were stored instead of {size}"),
                ));
            }
            size
        }
    };
    Ok((BlobWrite::Uploaded, stored_size))
}

/// Whether the stored sealed blob `key` decrypts (with the installed identity) to the spooled
/// bytes: false when it does not, or cannot be read or opened.
async fn opens_to(store: &dyn Store, key: &str, spooled: &Spooled) -> bool {
    let Ok(stream) = store.get(key).await else {
        return false;
    };
    let Ok(mut plain) = backup_core::encryption::decrypt_stream(stream).await else {
        return false;
    };
    let mut hasher = Sha256::new();
    while let Some(chunk) = plain.next().await {
        match chunk {
            Ok(chunk) => hasher.update(&chunk),
            Err(_) => return false,
        }
    }
    hasher.len() == spooled.size && hasher.finish() == spooled.sha256
}

/// The bytes of `entry`'s object, read from its blob: decrypted on the way when it is sealed
/// (each chunk authenticated; a damaged one ends the stream with an error).
///
/// # Errors
///
/// The store's error when the blob cannot be opened; for a sealed blob, also when there is no
/// identity or the age header cannot be opened.
pub(crate) async fn open_blob(
    store: &dyn Store,
    entry: &crate::bucket::IndexEntry,
) -> Result<ByteStream> {
    let key = entry.blob_key();
    let stream = store.get(&key).await?;
    if !entry.is_sealed() {
        return Ok(stream);
    }
    backup_core::encryption::decrypt_stream(stream)
        .await
        .map_err(|e| Error::store("get", &key, e))
}

/// `plain` (read from its current position) sealed to `recipients` into a new anonymous temp
/// file, rewound; with the ciphertext's digest and size.
fn seal_file(
    mut plain: std::fs::File,
    recipients: &Recipients,
) -> std::io::Result<(std::fs::File, Digest, u64)> {
    use std::io::{Read, Seek, Write};
    struct Hashing<W> {
        inner: W,
        hasher: Sha256,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let out = Hashing {
        inner: std::io::BufWriter::with_capacity(1024 * 1024, tempfile::tempfile()?),
        hasher: Sha256::new(),
    };
    let mut writer = recipients.encrypt_to(out)?;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = plain.read(&mut buf)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
    }
    let Hashing { inner, hasher } = writer.finish()?;
    let mut file = inner.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    file.seek(std::io::SeekFrom::Start(0))?;
    let size = hasher.len();
    Ok((file, hasher.finish(), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::StoreExt;
    use backup_core::testkit::MemoryStore;

    fn body(data: Vec<u8>) -> ByteStream {
        let chunks: Vec<std::io::Result<Bytes>> = data
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_large_and_empty_objects_become_blobs_once() {
        let store = MemoryStore::new();
        let sem = Semaphore::new(1);
        for data in [
            Vec::new(),
            b"hello".to_vec(),
            (0..MEMORY_SPOOL_LIMIT + 12_345)
                .map(|i| (i % 253) as u8)
                .collect(),
        ] {
            let spooled = spool(body(data.clone()), "x").await.expect("spooled");
            assert_eq!(spooled.sha256, Digest::of(&data));
            assert_eq!(
                matches!(spooled.spool, Spool::File(_)),
                data.len() > MEMORY_SPOOL_LIMIT
            );
            assert_eq!(
                store_blob(&store, spooled, true, &sem)
                    .await
                    .expect("stored"),
                BlobWrite::Uploaded
            );
            let key = layout::blob_key(&Digest::of(&data));
            assert_eq!(store.get_all(&key).await.expect("blob"), data);
            let again = spool(body(data.clone()), "x").await.expect("spooled");
            assert_eq!(
                store_blob(&store, again, true, &sem).await.expect("stored"),
                BlobWrite::Deduplicated
            );
        }
    }
}
