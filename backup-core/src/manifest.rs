//! The manifest: the commit marker and table of contents of one backup.
//!
//! A backup exists if and only if its manifest exists. Unknown fields written by newer versions
//! are kept in `extra` maps and written back unchanged.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::id::{BackupId, SourceName};

/// The manifest format this version writes. Readers accept this version and older ones.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Why a backup was taken; retention treats each kind separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    /// Taken by `pre-deploy run` right before a deploy.
    PreDeploy,
    /// Taken on a schedule (cron, CI schedule).
    Scheduled,
    /// Taken by hand (`pre-deploy backup`).
    Manual,
    /// Taken of a restore target right before it is overwritten.
    Safety,
}

impl BackupKind {
    /// The kebab-case name used in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::PreDeploy => "pre-deploy",
            BackupKind::Scheduled => "scheduled",
            BackupKind::Manual => "manual",
            BackupKind::Safety => "safety",
        }
    }
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tool that wrote a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// `pre-deploy`.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl ToolInfo {
    /// This build of the tool.
    pub fn current() -> Self {
        ToolInfo {
            name: "pre-deploy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The deploy a backup protects: the release that was about to replace the backed-up state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployInfo {
    /// Git commit of the working directory (full SHA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Git branch, when not detached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Git tag pointing exactly at the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Whether the working tree had uncommitted changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    /// The application's own version string, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// URL of the CI run that took the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run_url: Option<String>,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One stored file of a source, as the pipeline wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// File name within the source, e.g. `dump.pgc.zst`.
    pub name: String,
    /// Full store key.
    pub key: String,
    /// What the uncompressed bytes are, e.g. `pg_dump-custom`, `pg_dumpall-globals-sql`.
    pub format: String,
    /// `zstd` (with frame checksums) or `none`.
    pub compression: String,
    /// Bytes stored.
    pub stored_size: u64,
    /// Bytes before compression.
    pub raw_size: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: Digest,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Exact row count of one table, taken in the same snapshot as the dump.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableStat {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Exact row count.
    pub rows: u64,
}

/// Statistics captured with a source's snapshot, compared again when the backup is restored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStats {
    /// Exact row count per table, sorted by schema and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableStat>,
    /// Number of objects per kind (`tables`, `views`, `functions`, `sequences`, `large_objects`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub object_counts: BTreeMap<String, u64>,
    /// A versioned fingerprint of the schema, e.g. `v2:sha256:…` (`v1:` records are still read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_fingerprint: Option<String>,
    /// A versioned fingerprint of owners and grants, compared when a restore keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges_fingerprint: Option<String>,
    /// How many tables were counted, when `tables` is kept out of the manifest (`[encryption]
    /// hide_table_names`: the names and counts are in the source's encrypted stats artifact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_tables: Option<u64>,
    /// Their total rows, when `tables` is kept out of the manifest (see `counted_tables`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_rows: Option<u64>,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SourceStats {
    /// Sum of all table row counts (`counted_rows` when the tables are kept out of the
    /// manifest).
    pub fn total_rows(&self) -> u64 {
        match (self.tables.is_empty(), self.counted_rows) {
            (true, Some(rows)) => rows,
            _ => self.tables.iter().map(|t| t.rows).sum(),
        }
    }

    /// Number of tables counted (`counted_tables` when the tables are kept out of the
    /// manifest).
    pub fn table_count(&self) -> u64 {
        match (self.tables.is_empty(), self.counted_tables) {
            (true, Some(n)) => n,
            _ => self.tables.len() as u64,
        }
    }
}

/// Everything recorded about one source of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceManifest {
    /// The source's name (`db`).
    pub name: SourceName,
    /// The source kind (`postgres`).
    pub kind: String,
    /// Where it was read from, without credentials (e.g. `postgres://app@db:5432/app`).
    pub location: String,
    /// The server's version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The dump tool and its version, e.g. `pg_dump (PostgreSQL) 15.19`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<String>,
    /// The stored files.
    pub artifacts: Vec<ArtifactMeta>,
    /// Statistics from the dump's snapshot.
    #[serde(default)]
    pub stats: SourceStats,
    /// Things the operator should know (e.g. why the roles were not dumped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SourceManifest {
    /// Total stored bytes of this source's artifacts.
    pub fn stored_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.stored_size).sum()
    }
}

/// The manifest of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_VERSION`] when written by this version.
    pub format_version: u32,
    /// The backup's id.
    pub id: BackupId,
    /// Why it was taken.
    pub kind: BackupKind,
    /// The environment (`production`, `staging`, `default`).
    pub environment: String,
    /// When the backup started.
    pub created_at: Timestamp,
    /// When the last artifact was stored.
    pub finished_at: Timestamp,
    /// The tool that wrote it.
    pub tool: ToolInfo,
    /// The host it ran on.
    pub host: String,
    /// The deploy it protects.
    #[serde(default)]
    pub deploy: DeployInfo,
    /// The sources, in the order they were configured.
    pub sources: Vec<SourceManifest>,
    /// Until when retention keeps the backup (`--expire-in`), as one more keep rule ORed with
    /// the others: a backup whose expiry has passed is kept only if another rule keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Manifest {
    /// Total stored bytes of all artifacts.
    pub fn stored_size(&self) -> u64 {
        self.sources.iter().map(SourceManifest::stored_size).sum()
    }

    /// All artifacts with the source they belong to.
    pub fn artifacts(&self) -> impl Iterator<Item = (&SourceManifest, &ArtifactMeta)> {
        self.sources
            .iter()
            .flat_map(|s| s.artifacts.iter().map(move |a| (s, a)))
    }

    /// The source with this name.
    pub fn source(&self, name: &str) -> Option<&SourceManifest> {
        self.sources.iter().find(|s| s.name.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let t: Timestamp = "2026-11-22T03:15:00Z".parse().expect("time");
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: BackupId::from_parts(t, [1, 2, 3]),
            kind: BackupKind::PreDeploy,
            environment: "default".into(),
            created_at: t,
            finished_at: t,
            tool: ToolInfo::current(),
            host: "h".into(),
            deploy: DeployInfo {
                commit: Some("abc".into()),
                ..Default::default()
            },
            sources: vec![SourceManifest {
                name: "db".parse().expect("name"),
                kind: "postgres".into(),
                location: "postgres://app@localhost:5432/app".into(),
                server_version: Some("15.19".into()),
                tool_version: None,
                artifacts: vec![ArtifactMeta {
                    name: "dump.pgc.zst".into(),
                    key: "backups/x/data/db/dump.pgc.zst".into(),
                    format: "pg_dump-custom".into(),
                    compression: "zstd".into(),
                    stored_size: 10,
                    raw_size: 30,
                    sha256: Digest::of(b"x"),
                    extra: Map::new(),
                }],
                stats: SourceStats::default(),
                notes: vec![],
                extra: Map::new(),
            }],
            expires_at: None,
            extra: Map::new(),
        }
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = sample();
        let json = serde_json::to_string_pretty(&m).expect("serializes");
        assert_eq!(serde_json::from_str::<Manifest>(&json).expect("parses"), m);
        assert!(json.contains("\"kind\": \"pre-deploy\""), "{json}");
    }

    #[test]
    fn unknown_fields_from_newer_versions_survive_a_round_trip() {
        let mut v = serde_json::to_value(sample()).expect("value");
        v["retention_hint"] = serde_json::json!({"keep": true});
        v["sources"][0]["artifacts"][0]["encryption"] = serde_json::json!("age");
        v["deploy"]["pipeline"] = serde_json::json!(42);
        let m: Manifest = serde_json::from_value(v.clone()).expect("parses");
        assert_eq!(serde_json::to_value(&m).expect("value"), v);
    }
}
