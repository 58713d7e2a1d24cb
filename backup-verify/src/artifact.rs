//! One pass over a stored artifact: sha256 and size of the stored bytes (level 1), zstd
//! decompression to the end with frame checksums (level 2), and the raw bytes handed to a
//! consumer (level 3) — all from a single read of the store. An age-encrypted artifact is
//! decrypted between the two with the installed identities
//! ([`backup_core::encryption::installed_identities`]); without one, decompression fails with
//! the reason.

use std::io;
use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::ZstdDecoder;
use backup_core::encryption;
use backup_core::progress::{Stage, StageKind};
use backup_core::{ArtifactMeta, Digest, Error, Result, Sha256, Store};
use futures::TryStreamExt;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
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
    let stage = Stage::start(
        StageKind::Read,
        artifact.key.clone(),
        Some(artifact.stored_size),
    );
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let read_error: Arc<Mutex<Option<String>>> = Arc::default();
    let hashed = {
        let hasher = hasher.clone();
        let read_error = read_error.clone();
        let counter = stage.counter();
        stream
            .inspect_ok(move |chunk| {
                counter.add(chunk.len() as u64);
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
        let opened: std::io::Result<Box<dyn AsyncRead + Unpin + Send + '_>> =
            if encryption::is_encrypted(artifact) {
                match encryption::installed_identities() {
                    Some(ids) => ids.decrypt(&mut stored).await,
                    None => Err(io::Error::other(encryption::no_identity_reason())),
                }
            } else {
                Ok(Box::new(&mut stored))
            };
        let mut decoder = match opened {
            Ok(plain) => ZstdDecoder::new(BufReader::with_capacity(256 * 1024, plain)),
            Err(e) => {
                result.decompress_error = Some(e.to_string());
                let empty: Box<dyn AsyncRead + Unpin + Send + '_> = Box::new(tokio::io::empty());
                ZstdDecoder::new(BufReader::new(empty))
            }
        };
        decoder.multiple_members(true);
        let mut buf = vec![0u8; 256 * 1024];
        while result.decompress_error.is_none() {
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
        drop(decoder);
    }
    // Whatever decompression did, read the rest so level 1 sees every stored byte.
    let drained = tokio::io::copy(&mut stored, &mut tokio::io::sink()).await;
    if let Some(e) = read_error.lock().ok().and_then(|mut s| s.take()) {
        stage.fail(&e);
        return Err(Error::store("get", &artifact.key, io::Error::other(e)));
    }
    if let Err(e) = drained {
        stage.fail(&e);
        return Err(Error::store("get", &artifact.key, e));
    }
    match &result.decompress_error {
        Some(e) => stage.fail(e),
        None => stage.succeed(),
    }
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
    let mut reader: Box<dyn AsyncBufRead + Unpin + Send> =
        Box::new(BufReader::new(StreamReader::new(stream)));
    if encryption::is_encrypted(artifact) {
        let Some(ids) = encryption::installed_identities() else {
            let _ = out.shutdown().await;
            return Ok(());
        };
        let Ok(plain) = ids.decrypt(reader).await else {
            let _ = out.shutdown().await;
            return Ok(());
        };
        reader = Box::new(BufReader::new(plain));
    }
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

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use backup_core::testkit::MemoryStore;
    use backup_core::{ByteStream, ObjectInfo, StoreCapabilities, WriteMode};
    use bytes::Bytes;

    use super::*;
    use crate::test_support::{put, zstd};

    const KEY: &str = "backups/x/data/db/dump.zst";

    fn raw() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[tokio::test]
    async fn one_pass_hashes_every_stored_byte_and_decompresses_to_the_end() {
        let store = MemoryStore::new();
        let stored = zstd(&raw());
        let a = put(&store, KEY, &stored, raw().len() as u64, "zstd").await;
        let mut out = Vec::new();
        let pass = read_pass(&store, &a, true, Consumer::Writer(&mut out))
            .await
            .expect("reads");
        assert!(!pass.missing);
        assert_eq!(pass.stored_size, stored.len() as u64);
        assert_eq!(pass.sha256, Some(Digest::of(&stored)));
        assert_eq!(pass.raw_size, raw().len() as u64);
        assert_eq!(pass.decompress_error, None);
        assert!(out == raw(), "the consumer gets exactly the dumped bytes");
    }

    #[tokio::test]
    async fn without_decompression_only_the_stored_bytes_are_read() {
        let store = MemoryStore::new();
        let a = put(&store, KEY, b"not zstd at all", 99, "zstd").await;
        let pass = read_pass(&store, &a, false, Consumer::Discard)
            .await
            .expect("reads");
        assert_eq!(pass.sha256, Some(a.sha256));
        assert_eq!(pass.raw_size, 0);
        assert_eq!(pass.decompress_error, None);
    }

    #[tokio::test]
    async fn a_missing_artifact_is_reported_not_an_error() {
        let store = MemoryStore::new();
        let mut a = put(&store, KEY, b"x", 1, "none").await;
        a.key = "backups/x/data/db/gone.zst".into();
        let pass = read_pass(&store, &a, true, Consumer::Discard)
            .await
            .expect("a missing artifact is a finding");
        assert!(pass.missing);
        assert_eq!(pass.sha256, None);
    }

    #[tokio::test]
    async fn several_frames_are_all_decompressed() {
        let store = MemoryStore::new();
        let mut stored = zstd(b"first frame, ");
        stored.extend(zstd(b"second frame"));
        let a = put(&store, KEY, &stored, 25, "zstd").await;
        let mut out = Vec::new();
        let pass = read_pass(&store, &a, true, Consumer::Writer(&mut out))
            .await
            .expect("reads");
        assert_eq!(pass.decompress_error, None);
        assert_eq!(out, b"first frame, second frame");
    }

    #[tokio::test]
    async fn a_damaged_stream_fails_decompression_yet_every_stored_byte_is_hashed() {
        let store = MemoryStore::new();
        let mut stored = zstd(&raw());
        // Past the frame header, inside the compressed blocks: the record below is of these
        // very bytes, so only level 2 can notice.
        let middle = stored.len() / 2;
        stored[middle] ^= 0xff;
        let a = put(&store, KEY, &stored, raw().len() as u64, "zstd").await;
        let pass = read_pass(&store, &a, true, Consumer::Discard)
            .await
            .expect("reads");
        assert!(pass.decompress_error.is_some(), "{pass:?}");
        assert_eq!(pass.stored_size, stored.len() as u64);
        assert_eq!(pass.sha256, Some(Digest::of(&stored)));
    }

    #[tokio::test]
    async fn an_encrypted_artifact_decrypts_with_the_key_and_a_flipped_byte_fails_decryption() {
        use age::secrecy::ExposeSecret;
        use std::os::unix::fs::PermissionsExt;
        let id = age::x25519::Identity::generate();
        let recipients = backup_core::encryption::Recipients::parse(&[id.to_public().to_string()])
            .expect("recipient");
        let mut w = recipients.encrypt_to(Vec::new()).expect("writer");
        std::io::Write::write_all(&mut w, &zstd(&raw())).expect("write");
        let sealed = w.finish().expect("sealed");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("key.txt");
        std::fs::write(&file, id.to_string().expose_secret()).expect("key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        encryption::install_identities(Some(
            encryption::Identities::from_file(&file).expect("identity"),
        ));

        let store = MemoryStore::new();
        let mut a = put(
            &store,
            "k/good.zst.age",
            &sealed,
            raw().len() as u64,
            "zstd",
        )
        .await;
        encryption::mark_encrypted(&mut a);
        let mut out = Vec::new();
        let pass = read_pass(&store, &a, true, Consumer::Writer(&mut out))
            .await
            .expect("reads");
        assert_eq!(pass.decompress_error, None);
        assert!(out == raw(), "the plaintext comes back");

        // The record matches the damaged bytes, so only decryption (age's per-chunk MAC) can
        // notice.
        let mut damaged = sealed.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x01;
        let mut a = put(
            &store,
            "k/bad.zst.age",
            &damaged,
            raw().len() as u64,
            "zstd",
        )
        .await;
        encryption::mark_encrypted(&mut a);
        let pass = read_pass(&store, &a, true, Consumer::Discard)
            .await
            .expect("reads");
        assert!(pass.decompress_error.is_some(), "{pass:?}");
        assert_eq!(pass.sha256, Some(Digest::of(&damaged)));
    }

    /// Accepts `left` bytes, then refuses, like a pg_restore that exited early.
    struct Closing {
        left: usize,
        got: usize,
    }

    impl AsyncWrite for Closing {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            if self.left == 0 {
                return std::task::Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            self.got += n;
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_consumer_that_stops_early_is_recorded_and_levels_one_and_two_still_finish() {
        let store = MemoryStore::new();
        let stored = zstd(&raw());
        let a = put(&store, KEY, &stored, raw().len() as u64, "zstd").await;
        let mut closing = Closing { left: 1000, got: 0 };
        let pass = read_pass(&store, &a, true, Consumer::Writer(&mut closing))
            .await
            .expect("reads");
        assert!(pass.consumer_stopped);
        assert_eq!(closing.got, 1000);
        assert_eq!(pass.raw_size, raw().len() as u64, "decompression went on");
        assert_eq!(pass.sha256, Some(a.sha256));
    }

    /// A store whose reads break after the first chunk (the connection dropped).
    #[derive(Debug, Default)]
    struct DroppingReads(MemoryStore);

    #[async_trait]
    impl Store for DroppingReads {
        fn name(&self) -> &str {
            "dropping"
        }
        fn capabilities(&self) -> StoreCapabilities {
            self.0.capabilities()
        }
        async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64> {
            self.0.put_stream(key, data).await
        }
        async fn put_bytes(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<()> {
            self.0.put_bytes(key, data, mode).await
        }
        async fn get(&self, key: &str) -> Result<ByteStream> {
            let mut whole = self.0.get(key).await?;
            let first = futures::StreamExt::next(&mut whole).await;
            let chunks: Vec<io::Result<Bytes>> = vec![
                first.unwrap_or_else(|| Ok(Bytes::new())),
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "reset by peer",
                )),
            ];
            Ok(Box::pin(futures::stream::iter(chunks)))
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
            self.0.head(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            self.0.list(prefix).await
        }
        async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
            self.0.list_dirs(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.0.delete(key).await
        }
    }

    #[tokio::test]
    async fn a_store_that_breaks_mid_read_is_an_error_not_a_damaged_artifact() {
        let store = DroppingReads::default();
        let stored = zstd(&raw());
        let a = put(&store.0, KEY, &stored, raw().len() as u64, "zstd").await;
        for decompress in [false, true] {
            let err = read_pass(&store, &a, decompress, Consumer::Discard)
                .await
                .expect_err("could not verify, which is not \"damaged\"");
            assert!(err.to_string().contains(KEY), "{err}");
        }
    }

    #[tokio::test]
    async fn a_prefix_is_streamed_until_the_reader_has_enough() {
        let store = MemoryStore::new();
        let stored = zstd(&raw());
        let a = put(&store, KEY, &stored, raw().len() as u64, "zstd").await;
        let mut closing = Closing { left: 5000, got: 0 };
        stream_prefix(&store, &a, &mut closing)
            .await
            .expect("streams");
        assert_eq!(closing.got, 5000);
        let mut all = Vec::new();
        stream_prefix(&store, &a, &mut all).await.expect("streams");
        assert!(all == raw());
        let plain = put(&store, "k/plain", b"uncompressed", 12, "none").await;
        let mut out = Vec::new();
        stream_prefix(&store, &plain, &mut out)
            .await
            .expect("streams");
        assert_eq!(out, b"uncompressed");
    }
}
