//! The [`Snapshotter`] trait: something that can be backed up (a database, a bucket, a directory).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Map;
use tokio::io::AsyncRead;

use crate::error::Result;
use crate::id::{BackupId, SourceName};
use crate::layout;
use crate::manifest::{ArtifactMeta, SourceManifest};
use crate::pipeline::{self, PipelineConfig};
use crate::progress::{CountingReader, Stage, StageKind};
use crate::store::Store;

/// What a source's preflight found. Nothing is written by a preflight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreflightReport {
    /// The server's version, when the source is a server.
    pub server_version: Option<String>,
    /// The dump tool that will be used, with its version.
    pub tool: Option<String>,
    /// Approximate size of the data to back up, in bytes, when known.
    pub estimated_bytes: Option<u64>,
    /// Things worth telling the operator.
    pub notes: Vec<String>,
}

/// Where and how a snapshot writes its artifacts.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotContext<'a> {
    /// The store receiving the artifacts.
    pub store: &'a dyn Store,
    /// The backup being taken.
    pub backup_id: &'a BackupId,
    /// The environment the backup belongs to (sources that reuse an earlier backup's work,
    /// such as buckets, look only at backups of the same environment).
    pub environment: &'a str,
    /// Compression settings.
    pub pipeline: &'a PipelineConfig,
}

/// How an artifact's bytes are described in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactSpec<'a> {
    /// The source it belongs to.
    pub source: &'a SourceName,
    /// File name, e.g. `dump.pgc.zst`.
    pub file: &'a str,
    /// What the raw bytes are, e.g. `pg_dump-custom`.
    pub format: &'a str,
}

impl SnapshotContext<'_> {
    /// Streams `reader` through the pipeline into this backup's data area and describes the
    /// stored artifact.
    ///
    /// # Errors
    ///
    /// See [`pipeline::write_artifact`].
    pub async fn write_artifact<R>(&self, spec: ArtifactSpec<'_>, reader: R) -> Result<ArtifactMeta>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.write(spec, reader, self.pipeline.encrypts(), None)
            .await
    }

    /// Like [`SnapshotContext::write_artifact`], compressed at zstd `level` unless the operator
    /// chose a level ([`PipelineConfig::zstd_level`]): for content another level than
    /// [`crate::pipeline::DEFAULT_ZSTD_LEVEL`] suits better (faster at the same size).
    ///
    /// # Errors
    ///
    /// See [`pipeline::write_artifact`].
    pub async fn write_artifact_at<R>(
        &self,
        spec: ArtifactSpec<'_>,
        level: i32,
        reader: R,
    ) -> Result<ArtifactMeta>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.write(spec, reader, self.pipeline.encrypts(), Some(level))
            .await
    }

    /// Like [`SnapshotContext::write_artifact`], but never encrypted: for metadata that must
    /// stay readable without a key and reveals nothing (the list of sealed blob names a bucket
    /// backup references, which blob collection reads).
    ///
    /// # Errors
    ///
    /// See [`pipeline::write_artifact`].
    pub async fn write_plain_artifact<R>(
        &self,
        spec: ArtifactSpec<'_>,
        reader: R,
    ) -> Result<ArtifactMeta>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.write(spec, reader, false, None).await
    }

    async fn write<R>(
        &self,
        spec: ArtifactSpec<'_>,
        reader: R,
        encrypt: bool,
        level: Option<i32>,
    ) -> Result<ArtifactMeta>
    where
        R: AsyncRead + Unpin + Send,
    {
        // The operator's level wins over the one the artifact asks for.
        let zstd_level = self.pipeline.zstd_level.or(level);
        let own;
        let pipeline =
            if encrypt == self.pipeline.encrypts() && zstd_level == self.pipeline.zstd_level {
                self.pipeline
            } else {
                own = PipelineConfig {
                    recipients: if encrypt {
                        self.pipeline.recipients.clone()
                    } else {
                        Vec::new()
                    },
                    zstd_level,
                    ..self.pipeline.clone()
                };
                &own
            };
        let mut key = layout::artifact_key(self.backup_id, spec.source, spec.file);
        if encrypt {
            // The age CLI's convention, so a file fetched from the store says what it is.
            key.push_str(".age");
        }
        let stage = Stage::start(
            StageKind::Dump,
            format!("{}/{}", spec.source, spec.file),
            None,
        );
        let reader = CountingReader::new(reader, stage.counter());
        let stats =
            pipeline::write_artifact(self.store, &key, spec.source.as_str(), reader, pipeline)
                .await;
        stage.finish(&stats);
        let stats = stats?;
        let mut meta = ArtifactMeta {
            name: spec.file.to_owned(),
            key,
            format: spec.format.to_owned(),
            compression: "zstd".into(),
            stored_size: stats.stored_size,
            raw_size: stats.raw_size,
            sha256: stats.sha256,
            extra: Map::new(),
        };
        if encrypt {
            crate::encryption::mark_encrypted(&mut meta);
        }
        Ok(meta)
    }
}

/// What [`Snapshotter::unchanged_since`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeProof {
    /// Nothing that a backup holds can have changed since the earlier snapshot.
    Unchanged,
    /// Something may have changed, or it cannot be told: why, for the operator.
    Changed(String),
}

impl ChangeProof {
    /// Why a `kind` source never proves itself unchanged (the default of
    /// [`Snapshotter::unchanged_since`]).
    pub fn no_proof_reason(kind: &str) -> String {
        format!("{kind} sources offer no proof that nothing changed")
    }
}

/// A source that can be snapshotted into a store.
///
/// # Contract
///
/// - [`preflight`](Snapshotter::preflight) writes nothing; it fails with
///   [`crate::Error::SourceUnavailable`] when the source is unreachable, refuses the credentials,
///   or the tools to dump it are missing, with a message that says what to do.
/// - [`snapshot`](Snapshotter::snapshot) writes only under `backups/<id>/data/<source>/` and
///   returns the manifest entry describing exactly what it wrote. A failure part-way returns
///   [`crate::Error::SnapshotFailed`] (or the store's error); artifacts it had already committed
///   are left for the caller to clean up, and no manifest refers to them.
/// - The snapshot is consistent: everything in it, including the statistics, comes from one
///   point in time of the source.
#[async_trait]
pub trait Snapshotter: Send + Sync + Debug + 'static {
    /// The source's name within the backup.
    fn source_name(&self) -> &SourceName;

    /// The source kind (`postgres`, `mysql`, `bucket`).
    fn kind(&self) -> &'static str;

    /// The location, without credentials, for messages and the manifest.
    fn location(&self) -> String;

    /// Whether its snapshots store or reuse content-addressed blobs shared between backups
    /// (`blobs/…`): the gate then holds the store-wide blob lease until the manifest is
    /// committed, so blob collection cannot delete a blob it references.
    fn shares_blobs(&self) -> bool {
        false
    }

    /// Checks that a snapshot can be taken, without writing anything.
    async fn preflight(&self) -> Result<PreflightReport>;

    /// Whether [`unchanged_since`](Self::unchanged_since) can ever prove anything for this
    /// kind of source. `run` asks this first, so a configuration with a source that cannot
    /// skips the search through earlier backups. False by default.
    fn can_prove_unchanged(&self) -> bool {
        false
    }

    /// Whether the source provably has not changed since `previous` (its entry in an earlier
    /// backup) was taken, so that backup still describes it exactly: `run` then reuses it
    /// instead of taking a new one. The proof must be conservative: anything that could have
    /// changed data or schema must answer [`ChangeProof::Changed`]. The default offers no proof.
    ///
    /// # Errors
    ///
    /// Never by default; an implementation's error is taken as "no proof", not as a failure.
    async fn unchanged_since(&self, previous: &SourceManifest) -> Result<ChangeProof> {
        let _ = previous;
        Ok(ChangeProof::Changed(ChangeProof::no_proof_reason(
            self.kind(),
        )))
    }

    /// Takes the snapshot into `ctx.store`.
    async fn snapshot(&self, ctx: SnapshotContext<'_>) -> Result<SourceManifest>;
}

/// A snapshotter behind `Arc<dyn …>`.
pub type DynSnapshotter = Arc<dyn Snapshotter>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::MemoryStore;

    /// JSON-like lines that zstd's level 19 compresses far better than levels 1 and 3.
    fn text() -> Vec<u8> {
        let words = [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        ];
        let mut x = 12_345u64;
        let mut out = String::new();
        for i in 0..20_000 {
            x = (x * 1_103_515_245 + 12_345) % (1 << 31);
            let (a, b) = (words[(x % 8) as usize], words[((x >> 8) % 8) as usize]);
            out.push_str(&format!(
                "{{\"id\":{i},\"name\":\"{a} {b}\",\"n\":{}}}\n",
                x % 100_000
            ));
        }
        out.into_bytes()
    }

    async fn stored_size(operator: Option<i32>, asked: Option<i32>) -> u64 {
        let store = MemoryStore::new();
        let id: BackupId = "20261204T031500Z-7f3a9c".parse().expect("id");
        let pipeline = PipelineConfig {
            zstd_level: operator,
            zstd_workers: 0,
            ..PipelineConfig::default()
        };
        let ctx = SnapshotContext {
            store: &store,
            backup_id: &id,
            environment: "default",
            pipeline: &pipeline,
        };
        let source: SourceName = "db".parse().expect("name");
        let spec = ArtifactSpec {
            source: &source,
            file: "a",
            format: "text",
        };
        let data = std::io::Cursor::new(text());
        let meta = match asked {
            Some(level) => ctx.write_artifact_at(spec, level, data).await,
            None => ctx.write_artifact(spec, data).await,
        };
        meta.expect("written").stored_size
    }

    /// A snapshotter's level applies unless the operator chose one, which then applies to all.
    #[tokio::test]
    async fn the_operators_zstd_level_wins_over_the_one_an_artifact_asks_for() {
        let default = stored_size(None, None).await;
        let asked_19 = stored_size(None, Some(19)).await;
        let at_1 = stored_size(Some(1), None).await;
        let asked_19_operator_1 = stored_size(Some(1), Some(19)).await;
        assert!(
            asked_19 * 5 < default * 4,
            "{asked_19} well below {default}"
        );
        assert!(asked_19 * 5 < at_1 * 4, "{asked_19} well below {at_1}");
        assert_eq!(asked_19_operator_1, at_1);
    }
}
