//! The bucket index: one JSON line per object (`bucket-index-v1`), sorted by key, stored as the
//! zstd artifact `index.jsonl.zst` of the source. The bytes themselves are blobs
//! (`blobs/sha256/…`), shared between backups.

use std::collections::BTreeMap;
use std::pin::Pin;

use async_compression::tokio::bufread::ZstdDecoder;
use backup_core::{ArtifactMeta, Digest, Error, Result, SourceManifest, Store};
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::io::StreamReader;

/// The artifact format of a bucket index.
pub const INDEX_FORMAT: &str = "bucket-index-v1";
/// The artifact file name of a bucket index.
pub const INDEX_FILE: &str = "index.jsonl.zst";

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
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl IndexEntry {
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

/// True for the source kinds this module writes (`bucket`, `directory`).
pub fn is_bucket_source(source: &SourceManifest) -> bool {
    matches!(source.kind.as_str(), "bucket" | "directory")
}

/// Reads a stored index as a stream of entries: decompressed and parsed line by line, never
/// held whole in memory.
///
/// # Errors
///
/// The store's error when the artifact cannot be opened; later items are `Err` with
/// [`Error::Io`] (decompression) or [`Error::Format`] (a line that does not parse).
pub async fn read_index(store: &dyn Store, artifact: &ArtifactMeta) -> Result<IndexStream> {
    let key = artifact.key.clone();
    let stream = store.get(&artifact.key).await?;
    let reader = BufReader::with_capacity(256 * 1024, StreamReader::new(stream));
    let mut decoder = ZstdDecoder::new(reader);
    decoder.multiple_members(true);
    let lines = BufReader::with_capacity(256 * 1024, decoder).lines();
    let entries = futures::stream::unfold(
        (lines, key, 0u64, false),
        |(mut lines, key, n, done)| async move {
            if done {
                return None;
            }
            match lines.next_line().await {
                Ok(None) => None,
                Ok(Some(line)) if line.trim().is_empty() => Some((
                    Err(Error::io(
                        format!("{key}: empty line {} in the index", n + 1),
                        std::io::Error::other("empty line"),
                    )),
                    (lines, key, n + 1, true),
                )),
                Ok(Some(line)) => {
                    let item =
                        serde_json::from_str::<IndexEntry>(&line).map_err(|source| Error::Format {
                            key: format!("{key} (line {})", n + 1),
                            what: "bucket index entry",
                            source,
                        });
                    let failed = item.is_err();
                    Some((item, (lines, key, n + 1, failed)))
                }
                Err(e) => Some((
                    Err(Error::io(format!("{key}: cannot read the index"), e)),
                    (lines, key, n + 1, true),
                )),
            }
        },
    );
    Ok(Box::pin(entries.fuse()))
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
}
