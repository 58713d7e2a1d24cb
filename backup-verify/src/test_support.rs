//! Helpers of the unit tests: artifacts put straight into a [`MemoryStore`] with whatever bytes
//! and metadata a test needs (a consistent record, a lying one, a damaged stream).

use backup_core::testkit::MemoryStore;
use backup_core::{ArtifactMeta, Digest, SourceManifest, Store, WriteMode};

/// A source named `db` of a kind no verifier knows.
pub(crate) fn source() -> SourceManifest {
    SourceManifest {
        name: "db".parse().expect("name"),
        kind: "k".into(),
        location: "-".into(),
        server_version: None,
        tool_version: None,
        artifacts: vec![],
        stats: Default::default(),
        notes: vec![],
        extra: Default::default(),
    }
}

/// zstd (with frame checksums, as the pipeline writes) of `raw`.
pub(crate) fn zstd(raw: &[u8]) -> Vec<u8> {
    let mut encoder = zstd::Encoder::new(Vec::new(), 3).expect("encoder");
    encoder.include_checksum(true).expect("checksum flag");
    std::io::Write::write_all(&mut encoder, raw).expect("compress");
    encoder.finish().expect("finish")
}

/// Stores `stored` under `key` and returns the metadata that records it truthfully (sha256 and
/// size of `stored`, `raw_size` as given).
pub(crate) async fn put(
    store: &MemoryStore,
    key: &str,
    stored: &[u8],
    raw_size: u64,
    compression: &str,
) -> ArtifactMeta {
    store
        .put_bytes(key, stored.to_vec().into(), WriteMode::Overwrite)
        .await
        .expect("put");
    ArtifactMeta {
        name: key.rsplit('/').next().unwrap_or(key).to_owned(),
        key: key.to_owned(),
        format: "raw".into(),
        compression: compression.into(),
        stored_size: stored.len() as u64,
        raw_size,
        sha256: Digest::of(stored),
        extra: Default::default(),
    }
}
