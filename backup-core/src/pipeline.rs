//! The streaming artifact pipeline: bytes in → zstd → (age, when [`PipelineConfig::recipients`]
//! is set) → sha256 and byte counts → [`Store`].
//!
//! ```text
//!  source (AsyncRead) ──raw chunks──► compressor thread ──compressed chunks──► Store::put_stream
//!       async task        bounded       zstd (N workers),     bounded               async
//!                         channel       sha256, counts        channel
//! ```
//!
//! Compression runs on a blocking thread (zstd's own worker threads do the heavy lifting), so the
//! async runtime never stalls. Both channels are bounded, so memory use is a few MiB whatever the
//! size of the artifact. If the source fails, the store sees an error item and aborts the upload;
//! if the store fails, the source is no longer read and the caller's process can be killed.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::digest::{Digest, Sha256};
use crate::error::{Error, Result};
use crate::store::Store;

/// The zstd level of artifacts whose snapshotter asks for none.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How the pipeline compresses and chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// zstd level (1–19) of every artifact, when the operator chose one; `None` (the default):
    /// each artifact's own ([`DEFAULT_ZSTD_LEVEL`], or the level its snapshotter asks for with
    /// [`crate::SnapshotContext::write_artifact_at`]).
    pub zstd_level: Option<i32>,
    /// zstd worker threads; 0 compresses on the pipeline's own thread. Defaults to the number of
    /// CPUs, because the dump tool and the server mostly wait on I/O while zstd is CPU-bound.
    pub zstd_workers: u32,
    /// Bytes read from the source per chunk (≥ 128 KiB keeps zstd efficient).
    pub read_chunk: usize,
    /// Bytes of compressed output per chunk handed to the store.
    pub write_chunk: usize,
    /// age recipients (`age1…`, public keys) to encrypt every artifact to after compression;
    /// empty: artifacts are stored unencrypted. See [`crate::encryption`].
    pub recipients: Vec<String>,
    /// `[encryption] hide_table_names`: the gate seals each new source's table names and row
    /// counts into an encrypted stats artifact (see [`crate::hidden_stats`]).
    pub hide_table_names: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        PipelineConfig {
            zstd_level: None,
            zstd_workers: u32::try_from(cpus).unwrap_or(1),
            read_chunk: 256 * 1024,
            write_chunk: 1024 * 1024,
            recipients: Vec::new(),
            hide_table_names: false,
        }
    }
}

impl PipelineConfig {
    /// Checks the values are usable.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a zstd level outside 1–19 or a recipient that is not an age
    /// X25519 recipient.
    pub fn validate(&self) -> Result<()> {
        self.parsed_recipients()?;
        if let Some(level) = self.zstd_level.filter(|l| !(1..=19).contains(l)) {
            return Err(Error::Invalid {
                what: "zstd level",
                value: level.to_string(),
                reason: "use a level from 1 to 19".into(),
            });
        }
        Ok(())
    }
}

impl PipelineConfig {
    /// Whether artifacts are encrypted.
    pub fn encrypts(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// The recipients, parsed; `None` when encryption is off.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a recipient that does not parse.
    pub fn parsed_recipients(&self) -> Result<Option<crate::encryption::Recipients>> {
        if self.recipients.is_empty() {
            return Ok(None);
        }
        crate::encryption::Recipients::parse(&self.recipients).map(Some)
    }
}

/// What the pipeline wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactStats {
    /// Bytes read from the source.
    pub raw_size: u64,
    /// Bytes handed to the store.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes (the ciphertext when encrypted).
    pub sha256: Digest,
}

/// Streams `source` through zstd into `store` under `key`.
///
/// The object is committed only when the source reached its end without error; the
/// [`crate::reader::CheckedReader`] wrapper turns a dump tool's failure exit into such an error.
///
/// # Errors
///
/// - [`Error::SnapshotFailed`] (with `source_name`) when reading the source failed;
/// - the store's error when storing failed;
/// - [`Error::Invalid`] for a bad configuration.
pub async fn write_artifact<R>(
    store: &dyn Store,
    key: &str,
    source_name: &str,
    mut source: R,
    config: &PipelineConfig,
) -> Result<ArtifactStats>
where
    R: AsyncRead + Unpin + Send,
{
    config.validate()?;
    let (raw_tx, raw_rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let (out_tx, out_rx) = mpsc::channel::<io::Result<Bytes>>(4);
    // The first error of the source, so a failed upload can be told apart from a failed source.
    let source_error: Arc<Mutex<Option<String>>> = Arc::default();

    let compressor = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || compress(raw_rx, out_tx, &config))
    };

    let read = {
        let source_error = source_error.clone();
        let chunk = config.read_chunk;
        async move {
            loop {
                let mut buf = BytesMut::with_capacity(chunk);
                match read_full(&mut source, &mut buf, chunk).await {
                    Ok(_) => {
                        // read_full only stops short of `chunk` at the end of the source.
                        let eof = buf.len() < chunk;
                        if !buf.is_empty() && raw_tx.send(Ok(buf.freeze())).await.is_err() {
                            return; // the compressor stopped: the store side failed
                        }
                        if eof {
                            return;
                        }
                    }
                    Err(e) => {
                        if let Ok(mut slot) = source_error.lock() {
                            slot.get_or_insert_with(|| e.to_string());
                        }
                        let _ = raw_tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        }
    };

    let stream = Box::pin(futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let (_, put_result) = tokio::join!(read, store.put_stream(key, stream));
    let compressed = compressor.await.map_err(|e| Error::SnapshotFailed {
        source_name: source_name.to_owned(),
        message: format!("the compressor thread failed: {e}"),
    })?;

    let source_failure = source_error.lock().ok().and_then(|mut s| s.take());
    if let Some(message) = source_failure {
        return Err(Error::SnapshotFailed {
            source_name: source_name.to_owned(),
            message,
        });
    }
    let stored = put_result?;
    let stats = compressed.map_err(|e| Error::SnapshotFailed {
        source_name: source_name.to_owned(),
        message: format!("compression failed: {e}"),
    })?;
    if stored != stats.stored_size {
        return Err(Error::store(
            "put",
            key,
            format!(
                "the store reports {stored} bytes written but {} were sent",
                stats.stored_size
            ),
        ));
    }
    Ok(stats)
}

/// Reads until `buf` holds `want` bytes or the source ends; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(
    source: &mut R,
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    let mut total = 0;
    while buf.len() < want {
        let n = source.read_buf(buf).await?;
        if n == 0 {
            break;
        }
        total += n;
    }
    Ok(total)
}

/// The blocking half: zstd-compresses raw chunks and emits hashed, counted output chunks.
fn compress(
    mut raw_rx: mpsc::Receiver<io::Result<Bytes>>,
    out_tx: mpsc::Sender<io::Result<Bytes>>,
    config: &PipelineConfig,
) -> io::Result<ArtifactStats> {
    let sink = ChunkSink {
        tx: out_tx.clone(),
        buf: BytesMut::with_capacity(config.write_chunk),
        chunk: config.write_chunk,
        hasher: Sha256::new(),
    };
    let recipients = config
        .parsed_recipients()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let inner = match &recipients {
        Some(r) => Sealed::Age(r.encrypt_to(sink)?),
        None => Sealed::Plain(sink),
    };
    let mut encoder =
        zstd::stream::write::Encoder::new(inner, config.zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL))?;
    encoder.include_checksum(true)?;
    if config.zstd_workers > 0 {
        encoder.multithread(config.zstd_workers)?;
        // Smaller jobs than zstd's default (4 × window) keep memory bounded and flat.
        encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(2 * 1024 * 1024))?;
    }
    let mut raw_size = 0u64;
    while let Some(item) = raw_rx.blocking_recv() {
        match item {
            Ok(chunk) => {
                raw_size += chunk.len() as u64;
                encoder.write_all(&chunk)?;
            }
            Err(e) => {
                // Forward the source's error so the store aborts instead of committing.
                let _ = out_tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        }
    }
    let mut sink = match encoder.finish()? {
        Sealed::Age(w) => w.finish()?,
        Sealed::Plain(sink) => sink,
    };
    sink.flush_chunk()?;
    Ok(ArtifactStats {
        raw_size,
        stored_size: sink.hasher.len(),
        sha256: sink.hasher.finish(),
    })
}

/// Where zstd's output goes: straight to the sink, or through age encryption first.
enum Sealed {
    Plain(ChunkSink),
    Age(age::stream::StreamWriter<ChunkSink>),
}

impl Write for Sealed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(data),
            Sealed::Age(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

/// Collects compressed bytes into chunks, hashes them and sends them to the store side.
struct ChunkSink {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
    chunk: usize,
    hasher: Sha256,
}

impl ChunkSink {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.hasher.update(&chunk);
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the store stopped accepting data",
            )
        })?;
        self.buf.reserve(self.chunk);
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.chunk {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::store::StoreExt;
    use crate::testkit::{FaultPlan, FaultyStore, MemoryStore};

    fn data(len: usize) -> Vec<u8> {
        // Compressible but not trivial.
        (0..len)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trip_compresses_hashes_and_counts() {
        let store = MemoryStore::new();
        let input = data(3 * 1024 * 1024 + 17);
        let stats = write_artifact(
            &store,
            "a/b.zst",
            "db",
            &input[..],
            &PipelineConfig::default(),
        )
        .await
        .expect("stored");
        let stored = store.get_all("a/b.zst").await.expect("readable");
        assert_eq!(stats.raw_size, input.len() as u64);
        assert_eq!(stats.stored_size, stored.len() as u64);
        assert_eq!(stats.sha256, Digest::of(&stored));
        assert!(stats.stored_size < stats.raw_size / 2, "{stats:?}");
        assert_eq!(zstd::decode_all(&stored[..]).expect("valid zstd"), input);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_recipients_the_stored_bytes_are_age_and_the_digest_is_of_the_ciphertext() {
        use age::secrecy::ExposeSecret;
        let store = MemoryStore::new();
        let id = age::x25519::Identity::generate();
        let config = PipelineConfig {
            recipients: vec![id.to_public().to_string()],
            ..PipelineConfig::default()
        };
        let input = data(2 * 1024 * 1024 + 5);
        let stats = write_artifact(&store, "k.zst.age", "db", &input[..], &config)
            .await
            .expect("stored");
        let stored = store.get_all("k.zst.age").await.expect("readable");
        assert_eq!(stats.sha256, Digest::of(&stored));
        assert_eq!(stats.stored_size, stored.len() as u64);
        assert!(stored.starts_with(b"age-encryption.org/v1"));
        let key = id.to_string();
        let identity: age::x25519::Identity = key.expose_secret().parse().expect("parses");
        let plain = age::decrypt(&identity, &stored).expect("decrypts");
        assert_eq!(zstd::decode_all(&plain[..]).expect("valid zstd"), input);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_source_commits_nothing_and_says_so() {
        let store = MemoryStore::new();
        let input = data(1024 * 1024);
        let failing = crate::reader::CheckedReader::new(&input[..], |_n| async {
            Err(io::Error::other("pg_dump was killed by signal 9"))
        });
        let err = write_artifact(&store, "k", "db", failing, &PipelineConfig::default())
            .await
            .expect_err("must fail");
        assert!(matches!(err, Error::SnapshotFailed { .. }), "{err:?}");
        assert!(err.to_string().contains("signal 9"), "{err}");
        assert!(store.head("k").await.expect("head").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_store_is_reported_as_a_store_error() {
        let store = FaultyStore::new(MemoryStore::new(), FaultPlan::fail_put_after_bytes(100_000));
        let input = data(4 * 1024 * 1024);
        let config = PipelineConfig {
            zstd_level: Some(1),
            ..PipelineConfig::default()
        };
        let err = write_artifact(&store, "k", "db", &input[..], &config)
            .await
            .expect_err("must fail");
        assert!(matches!(err, Error::Store { .. }), "{err:?}");
        assert!(store.inner().head("k").await.expect("head").is_none());
    }
}
