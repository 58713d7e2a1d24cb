//! One pass over a stored artifact: sha256 and size of the stored bytes (level 1), zstd
//! decompression to the end with frame checksums (level 2), and the raw bytes handed to a
//! consumer (level 3) — all from a single read of the store.

use std::io;
use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::ZstdDecoder;
use backup_core::{ArtifactMeta, Digest, Error, Result, Sha256, Store};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::io::StreamReader;

/// What one pass over an artifact found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassResult {
    /// The artifact was not in the store.
    pub missing: bool,
    /// Stored bytes read.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: Option<Digest>,
    /// Decompressed bytes (when decompression ran).
    pub raw_size: u64,
    /// Why decompression failed, if it did.
    pub decompress_error: Option<String>,
    /// Whether the consumer stopped accepting bytes early (it exited).
    pub consumer_stopped: bool,
}

/// Where decompressed bytes go.
pub enum Consumer<'a> {
    /// Nowhere: the pass only checks.
    Discard,
    /// A writer (e.g. `pg_restore`'s stdin); an early close is recorded, not an error.
    Writer(&'a mut (dyn AsyncWrite + Unpin + Send)),
}

/// Reads `artifact` once, hashing it and, if `decompress`, decompressing it into `consumer`.
///
/// # Errors
///
/// Only when the store fails to deliver the bytes (the store is down): corruption is reported in
/// the result.
pub async fn read_pass(
    store: &dyn Store,
    artifact: &ArtifactMeta,
    decompress: bool,
    mut consumer: Consumer<'_>,
) -> Result<PassResult> {
    let mut result = PassResult {
        missing: false,
        stored_size: 0,
        sha256: None,
        raw_size: 0,
        decompress_error: None,
        consumer_stopped: false,
    };
    let stream = match store.get(&artifact.key).await {
        Ok(s) => s,
        Err(Error::NotFound { .. }) => {
            result.missing = true;
            return Ok(result);
        }
        Err(e) => return Err(e),
    };
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let read_error: Arc<Mutex<Option<String>>> = Arc::default();
    let hashed = {
        let hasher = hasher.clone();
        let read_error = read_error.clone();
        stream
            .inspect_ok(move |chunk| {
                if let Ok(mut h) = hasher.lock() {
                    h.update(chunk);
                }
            })
            .inspect_err(move |e| {
                if let Ok(mut slot) = read_error.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            })
    };
    let mut stored = BufReader::with_capacity(256 * 1024, StreamReader::new(hashed));

    if decompress && artifact.compression == "zstd" {
        let mut decoder = ZstdDecoder::new(&mut stored);
        decoder.multiple_members(true);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match decoder.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    result.raw_size += n as u64;
                    if let Consumer::Writer(w) = &mut consumer
                        && !result.consumer_stopped
                        && w.write_all(&buf[..n]).await.is_err()
                    {
                        result.consumer_stopped = true;
                    }
                }
                Err(e) => {
                    result.decompress_error = Some(e.to_string());
                    break;
                }
            }
        }
        if let Consumer::Writer(w) = &mut consumer {
            let _ = w.shutdown().await;
        }
    }
    // Whatever decompression did, read the rest so level 1 sees every stored byte.
    let drained = tokio::io::copy(&mut stored, &mut tokio::io::sink()).await;
    if let Some(e) = read_error.lock().ok().and_then(|mut s| s.take()) {
        return Err(Error::store("get", &artifact.key, io::Error::other(e)));
    }
    drained.map_err(|e| Error::store("get", &artifact.key, e))?;
    let h = std::mem::take(
        &mut *hasher
            .lock()
            .map_err(|_| Error::store("get", &artifact.key, "hasher poisoned"))?,
    );
    result.stored_size = h.len();
    result.sha256 = Some(h.finish());
    Ok(result)
}

/// Decompresses an artifact into `out` until `out` stops accepting (used to feed a reader that
/// only needs the beginning, such as `pg_restore --list`).
///
/// # Errors
///
/// When the store fails.
pub async fn stream_prefix(
    store: &dyn Store,
    artifact: &ArtifactMeta,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<()> {
    let stream = store.get(&artifact.key).await?;
    let reader = BufReader::new(StreamReader::new(stream));
    let mut decoder: Box<dyn AsyncRead + Unpin + Send> = if artifact.compression == "zstd" {
        let mut d = ZstdDecoder::new(reader);
        d.multiple_members(true);
        Box::new(d)
    } else {
        Box::new(reader)
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match decoder.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if out.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = out.shutdown().await;
    Ok(())
}
