//! The bucket index: one JSON line per object (`bucket-index-v1`), sorted by key, stored as the
//! zstd artifact `index.jsonl.zst` of the source. The bytes themselves are blobs
//! (`blobs/sha256/…`), shared between backups.
//!
//! Encrypted, the index is an age artifact like any other, each entry names its sealed blob
//! (`blobs/sealed/…`, see [`backup_core::sealed_blobs`]), and a plaintext blob list
//! (`blobs.txt.zst`, one `<blob key> <stored size>` line per index entry, in the same order)
//! lets level 1 and blob collection work without a key: it names blobs by keyed hashes only.

use std::collections::BTreeMap;
use std::pin::Pin;

use async_compression::tokio::bufread::ZstdDecoder;
use backup_core::{ArtifactMeta, ByteStream, Digest, Error, Result, SourceManifest, Store, layout};
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

/// The artifact format of a bucket index.
pub const INDEX_FORMAT: &str = "bucket-index-v1";
/// The artifact file name of a bucket index.
pub const INDEX_FILE: &str = "index.jsonl.zst";
/// The artifact format of the plaintext list of sealed blobs an encrypted bucket backup
/// references.
pub const BLOB_LIST_FORMAT: &str = "sealed-blob-list-v1";
/// The artifact file name of that list.
pub const BLOB_LIST_FILE: &str = "blobs.txt.zst";
/// The longest blob list line read: a sealed blob key and a size are about 100 bytes.
const MAX_BLOB_LIST_LINE: usize = 1024;

/// One object of a bucket snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Key relative to the source's prefix (a relative path for directories).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes: the blob is `blobs/sha256/<2 hex>/<hex>`.
    pub sha256: Digest,
    /// The ETag the source reported for the bytes that were hashed (for directories: inode,
    /// modification time and size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Last modification time the source reported.
    pub last_modified: Timestamp,
    /// `Content-Type`, when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Other standard headers kept with the object (`cache-control`, `content-disposition`,
    /// `content-encoding`, `content-language`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// User metadata (`x-amz-meta-*` without the prefix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Taken from the previous backup's index without reading the object (same ETag, size and
    /// time). Its blob was read and hashed by the verification of the backup that first stored
    /// it, so the verification right after a backup only checks that it is there with its size.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reused: bool,
    /// The sealed blob holding the bytes (`blobs/sealed/…`) when the backup was encrypted;
    /// absent, the blob is `blobs/sha256/<sha256>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// Bytes of the sealed blob (the ciphertext), when sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl IndexEntry {
    /// An entry for an object whose bytes are stored in the plain blob of `sha256`.
    pub fn plain(key: String, size: u64, sha256: Digest, last_modified: Timestamp) -> Self {
        IndexEntry {
            key,
            size,
            sha256,
            etag: None,
            last_modified,
            content_type: None,
            headers: BTreeMap::new(),
            metadata: BTreeMap::new(),
            reused: false,
            blob: None,
            stored_size: None,
        }
    }

    /// The store key of the blob holding the object's bytes.
    pub fn blob_key(&self) -> String {
        match &self.blob {
            Some(key) => key.clone(),
            None => layout::blob_key(&self.sha256),
        }
    }

    /// Whether the blob is sealed (encrypted, under a keyed name).
    pub fn is_sealed(&self) -> bool {
        self.blob.is_some()
    }

    /// The size of the stored blob: the ciphertext's when sealed, else the object's.
    pub fn stored_blob_size(&self) -> u64 {
        self.stored_size.unwrap_or(self.size)
    }

    /// The entry's line of the blob list (`<blob key> <stored size>\n`).
    pub fn blob_list_line(&self) -> String {
        format!("{} {}\n", self.blob_key(), self.stored_blob_size())
    }

    /// The entry as one JSON line, newline included.
    ///
    /// # Errors
    ///
    /// Never in practice (every field serializes); reported as [`Error::Io`].
    pub fn to_line(&self) -> Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self)
            .map_err(|e| Error::io("cannot serialize an index entry", e.into()))?;
        line.push(b'\n');
        Ok(line)
    }
}

/// A stream of index entries, in the order they were written (sorted by key).
pub type IndexStream = Pin<Box<dyn Stream<Item = Result<IndexEntry>> + Send>>;

/// The index artifact of a bucket source, if it has one.
pub fn index_artifact(source: &SourceManifest) -> Option<&ArtifactMeta> {
    source
        .artifacts
        .iter()
        .find(|a| a.format == INDEX_FORMAT || a.name == INDEX_FILE)
}

/// The plaintext list of sealed blobs of a bucket source, when it was encrypted.
pub fn blob_list_artifact(source: &SourceManifest) -> Option<&ArtifactMeta> {
    source
        .artifacts
        .iter()
        .find(|a| a.format == BLOB_LIST_FORMAT)
}

/// True for the source kinds this module writes (`bucket`, `directory`).
pub fn is_bucket_source(source: &SourceManifest) -> bool {
    matches!(source.kind.as_str(), "bucket" | "directory")
}

/// The longest index line read (bytes, newline included). A real entry is at most a few tens
/// of KiB (an S3 key is at most 1 KiB, user metadata 2 KiB, a directory path 4 KiB, each at
/// most six times longer escaped); a longer line means a damaged or hostile store, and is
/// refused before it is held whole in memory.
pub const MAX_INDEX_LINE: usize = 1024 * 1024;

/// Reads a stored index as a stream of entries: decompressed and parsed line by line, never
/// held whole in memory; a line longer than [`MAX_INDEX_LINE`] is an error, not an allocation.
///
/// # Errors
///
/// The store's error when the artifact cannot be opened; later items are `Err` with
/// [`Error::Io`] (decompression, a line too long) or [`Error::Format`] (a line that does not
/// parse), naming the backup by the artifact's key.
pub async fn read_index(store: &dyn Store, artifact: &ArtifactMeta) -> Result<IndexStream> {
    let lines = read_lines(store, artifact, MAX_INDEX_LINE, "bucket index").await?;
    let key = artifact.key.clone();
    Ok(Box::pin(lines.map(move |line| {
        let (line_no, text) = line?;
        let entry = serde_json::from_slice::<IndexEntry>(&text).map_err(|source| Error::Format {
            key: format!("{key} (line {line_no})"),
            what: "bucket index entry",
            source,
        })?;
        match &entry.blob {
            Some(blob) if !layout::is_sealed_blob_key(blob) => Err(Error::io(
                format!(
                    "{key}: line {line_no} of the bucket index names {blob:?}, which is not a sealed blob; the store is damaged or was tampered with ({})",
                    backup_of(&key)
                ),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a sealed blob key"),
            )),
            _ => Ok(entry),
        }
    })))
}

/// One line of a blob list: a sealed blob's key and stored size.
pub type BlobListStream = Pin<Box<dyn Stream<Item = Result<(String, u64)>> + Send>>;

/// Reads a stored blob list (plaintext, see the module docs) line by line.
///
/// # Errors
///
/// As [`read_index`]; a line that is not `<sealed blob key> <size>` is an error item.
pub async fn read_blob_list(store: &dyn Store, artifact: &ArtifactMeta) -> Result<BlobListStream> {
    let lines = read_lines(store, artifact, MAX_BLOB_LIST_LINE, "blob list").await?;
    let key = artifact.key.clone();
    Ok(Box::pin(lines.map(move |line| {
        let (line_no, text) = line?;
        let parsed = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.split_once(' '))
            .filter(|(blob, _)| layout::is_sealed_blob_key(blob))
            .and_then(|(blob, size)| Some((blob.to_owned(), size.parse::<u64>().ok()?)));
        parsed.ok_or_else(|| {
            Error::io(
                format!(
                    "{key}: line {line_no} of the blob list is not a sealed blob and a size ({})",
                    backup_of(&key)
                ),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad blob list line"),
            )
        })
    })))
}

/// The lines (number, text without the newline) of a stored zstd artifact, decrypted with the
/// installed identities when it is encrypted; a line longer than `limit` or an empty line is an
/// error item, and the stream ends at the first error.
async fn read_lines(
    store: &dyn Store,
    artifact: &ArtifactMeta,
    limit: usize,
    what: &'static str,
) -> Result<Pin<Box<dyn Stream<Item = Result<(u64, Vec<u8>)>> + Send>>> {
    let key = artifact.key.clone();
    let mut stream: ByteStream = store.get(&artifact.key).await?;
    if backup_core::encryption::is_encrypted(artifact) {
        stream = backup_core::encryption::decrypt_stream(stream)
            .await
            .map_err(|e| Error::io(format!("{key}: cannot open the {what}"), e))?;
    }
    let reader = BufReader::with_capacity(256 * 1024, StreamReader::new(stream));
    let mut decoder = ZstdDecoder::new(reader);
    decoder.multiple_members(true);
    let lines = BufReader::with_capacity(256 * 1024, decoder);
    let entries = futures::stream::unfold(
        (lines, key, 0u64, false, Vec::new()),
        move |(mut lines, key, n, done, mut line)| async move {
            if done {
                return None;
            }
            let line_no = n + 1;
            line.clear();
            // At most one byte past the limit: enough to know the line is too long.
            let read = (&mut lines)
                .take(limit as u64 + 1)
                .read_until(b'\n', &mut line)
                .await;
            let item = match read {
                Ok(0) => return None,
                Err(e) => Err(Error::io(format!("{key}: cannot read the {what}"), e)),
                Ok(_) if line.len() > limit => Err(Error::io(
                    format!(
                        "{key}: line {line_no} of the {what} is longer than {limit} \
                         bytes; the store is damaged or was tampered with ({})",
                        backup_of(&key)
                    ),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"),
                )),
                Ok(_) => {
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    if text.trim_ascii().is_empty() {
                        Err(Error::io(
                            format!("{key}: empty line {line_no} in the {what}"),
                            std::io::Error::other("empty line"),
                        ))
                    } else {
                        Ok((line_no, text.to_vec()))
                    }
                }
            };
            let failed = item.is_err();
            Some((item, (lines, key, line_no, failed, line)))
        },
    );
    Ok(Box::pin(entries.fuse()))
}

/// "backup ID" for an artifact key `backups/ID/…`, else the key itself.
fn backup_of(key: &str) -> String {
    match key
        .strip_prefix(backup_core::layout::BACKUPS_DIR)
        .and_then(|rest| rest.split_once('/'))
    {
        Some((id, _)) => format!("backup {id}"),
        None => key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::testkit::MemoryStore;
    use backup_core::{PipelineConfig, StoreExt, pipeline};
    use futures::TryStreamExt;

    fn entry(key: &str) -> IndexEntry {
        IndexEntry {
            key: key.into(),
            size: 3,
            sha256: Digest::of(key.as_bytes()),
            etag: Some("\"e\"".into()),
            last_modified: "2026-11-22T03:15:00.123456789Z".parse().expect("time"),
            reused: false,
            content_type: Some("text/plain".into()),
            headers: BTreeMap::new(),
            metadata: BTreeMap::from([("owner".into(), "zoë".into())]),
            blob: None,
            stored_size: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_round_trips_through_the_pipeline() {
        let store = MemoryStore::new();
        let entries = vec![entry("a b/ç.txt"), entry("deep/x/y/z"), entry("")];
        let mut bytes = Vec::new();
        for e in &entries {
            bytes.extend(e.to_line().expect("line"));
        }
        let stats =
            pipeline::write_artifact(&store, "i.zst", "s", &bytes[..], &PipelineConfig::default())
                .await
                .expect("stored");
        let meta = ArtifactMeta {
            name: INDEX_FILE.into(),
            key: "i.zst".into(),
            format: INDEX_FORMAT.into(),
            compression: "zstd".into(),
            stored_size: stats.stored_size,
            raw_size: stats.raw_size,
            sha256: stats.sha256,
            extra: Default::default(),
        };
        let back: Vec<IndexEntry> = read_index(&store, &meta)
            .await
            .expect("opens")
            .try_collect()
            .await
            .expect("parses");
        assert_eq!(back, entries);

        // A damaged line is an error naming the line, not a silently shorter index.
        let mut damaged = bytes.clone();
        damaged.extend_from_slice(b"{not json\n");
        pipeline::write_artifact(
            &store,
            "d.zst",
            "s",
            &damaged[..],
            &PipelineConfig::default(),
        )
        .await
        .expect("stored");
        let meta = ArtifactMeta {
            key: "d.zst".into(),
            ..meta
        };
        let err = read_index(&store, &meta)
            .await
            .expect("opens")
            .try_collect::<Vec<_>>()
            .await
            .expect_err("damaged");
        assert!(err.to_string().contains("line 4"), "{err}");
        assert!(store.get_all("d.zst").await.is_ok());
    }

    /// Stores `bytes` as a zstd index artifact under `key`.
    async fn stored_index(store: &MemoryStore, key: &str, bytes: &[u8]) -> ArtifactMeta {
        let stats = pipeline::write_artifact(store, key, "s", bytes, &PipelineConfig::default())
            .await
            .expect("stored");
        ArtifactMeta {
            name: INDEX_FILE.into(),
            key: key.into(),
            format: INDEX_FORMAT.into(),
            compression: "zstd".into(),
            stored_size: stats.stored_size,
            raw_size: stats.raw_size,
            sha256: stats.sha256,
            extra: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_lines_have_a_length_limit() {
        let store = MemoryStore::new();
        let key = "backups/20260101T000000Z-abcd/data/files/index.jsonl.zst";
        // A valid entry whose key fills a line of more than the limit: refused, naming the
        // backup and the line, instead of being taken.
        let mut long = entry(&"k".repeat(MAX_INDEX_LINE)).to_line().expect("line");
        let mut bytes = entry("a").to_line().expect("line");
        bytes.append(&mut long);
        let meta = stored_index(&store, key, &bytes).await;
        let mut entries = read_index(&store, &meta).await.expect("opens");
        assert_eq!(entries.next().await.expect("first").expect("ok").key, "a");
        let err = entries.next().await.expect("second").expect_err("too long");
        let text = err.to_string();
        assert!(text.contains("backup 20260101T000000Z-abcd"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(
            text.contains("bucket index is longer than 1048576 bytes"),
            "{text}"
        );
        assert!(
            entries.next().await.is_none(),
            "the stream ends at the error"
        );

        // 256 MiB without a newline (a few KiB compressed): refused after the limit, not
        // read into memory.
        let bomb = vec![b'x'; 256 * 1024 * 1024];
        let meta = stored_index(&store, "bomb.zst", &bomb).await;
        drop(bomb);
        let err = read_index(&store, &meta)
            .await
            .expect("opens")
            .try_collect::<Vec<_>>()
            .await
            .expect_err("too long");
        assert!(err.to_string().contains("line 1"), "{err}");

        // The longest line allowed is read; a last line without a newline too.
        let mut fits = entry("f").to_line().expect("line");
        let pad = MAX_INDEX_LINE - fits.len();
        let k = "f".repeat(pad + 1);
        fits = entry(&k).to_line().expect("line");
        assert_eq!(fits.len(), MAX_INDEX_LINE);
        fits.extend_from_slice(&entry("g").to_line().expect("line")[..]);
        fits.pop();
        let meta = stored_index(&store, "fits.zst", &fits).await;
        let back: Vec<IndexEntry> = read_index(&store, &meta)
            .await
            .expect("opens")
            .try_collect()
            .await
            .expect("parses");
        assert_eq!(back.len(), 2);
    }
}
