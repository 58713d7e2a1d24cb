//! `[encryption] hide_table_names`: a source's table names and per-table row counts kept out of
//! the plaintext manifest.
//!
//! [`seal`] writes the source's detailed statistics (and its notes, which may name tables) as
//! one more artifact of the backup, [`STATS_FILE`], through the same pipeline as the dump, so it
//! is compressed, age-encrypted and hashed like any artifact (level 1 checks it without a key).
//! The manifest keeps what `list`, `show`, `check` and retention need without a key: the number
//! of tables and their total rows (`counted_tables`, `counted_rows`), the object counts per
//! kind and the schema fingerprints (hashes), and marks the source with `stats_encrypted`.
//! Notes are kept with every table name replaced by [`HIDDEN`].
//!
//! Readers that hold the identity (verification above level 1, restores, `show` with a key)
//! read the artifact back and put the details in place with [`reveal`] before comparing, so
//! verification is as strong as without the option.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::manifest::{ArtifactMeta, SourceManifest, SourceStats, TableStat};
use crate::snapshot::{ArtifactSpec, SnapshotContext};

/// The file name of the stats artifact (`.age` is appended to its key when encrypted).
pub const STATS_FILE: &str = "stats.json.zst";
/// Its format: a JSON [`SealedDetails`].
pub const STATS_FORMAT: &str = "pre-deploy-stats-json";
/// The source field marking that its details are in the stats artifact.
pub const MARKER: &str = "stats_encrypted";
/// What a table name is replaced with in the plaintext notes (and verification records).
pub const HIDDEN: &str = "[hidden]";
/// The largest stats artifact a reader accepts (a damaged store must not exhaust memory).
pub const MAX_STATS_BYTES: usize = 256 * 1024 * 1024;

/// What the stats artifact holds: the source's statistics and notes as the snapshot made them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedDetails {
    /// The full statistics (table names, exact row counts, object counts, fingerprints,
    /// anything the backend recorded).
    pub stats: SourceStats,
    /// The notes, unredacted.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Whether `source`'s table details are in its encrypted stats artifact.
pub fn is_hidden(source: &SourceManifest) -> bool {
    source.extra.get(MARKER).and_then(Value::as_bool) == Some(true)
}

/// The stats artifact of a source whose details are hidden.
pub fn stats_artifact(source: &SourceManifest) -> Option<&ArtifactMeta> {
    source.artifacts.iter().find(|a| a.format == STATS_FORMAT)
}

/// What the plaintext manifest keeps of `full`: the number of tables and their total rows,
/// the object counts per kind, and the fingerprints (hashes); no name.
pub fn public_stats(full: &SourceStats) -> SourceStats {
    SourceStats {
        tables: Vec::new(),
        object_counts: full.object_counts.clone(),
        schema_fingerprint: full.schema_fingerprint.clone(),
        privileges_fingerprint: full.privileges_fingerprint.clone(),
        counted_tables: Some(full.table_count()),
        counted_rows: Some(full.total_rows()),
        // A backend's own fields may name objects: they stay in the artifact only.
        extra: Map::new(),
    }
}

/// `text` with every whole-word occurrence of a table's name (`schema.name` or `name`)
/// replaced by [`HIDDEN`].
pub fn hide_names(text: &str, tables: &[TableStat]) -> String {
    let mut names: Vec<String> = tables
        .iter()
        .flat_map(|t| [format!("{}.{}", t.schema, t.name), t.name.clone()])
        .filter(|n| !n.is_empty())
        .collect();
    // Longest first, so `schema.name` goes before `name`.
    names.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    names.dedup();
    let mut out = text.to_owned();
    for name in &names {
        out = replace_word(&out, name, HIDDEN);
    }
    out
}

fn replace_word(text: &str, word: &str, with: &str) -> String {
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(word) {
        let end = i + word.len();
        let before = text[..i].chars().next_back();
        let after = text[end..].chars().next();
        if before.is_some_and(word_char) || after.is_some_and(word_char) {
            continue;
        }
        out.push_str(&text[last..i]);
        out.push_str(with);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// Moves `source`'s statistics and notes into a stats artifact written through `ctx`'s
/// pipeline (encrypted when it encrypts), and leaves in `source` only [`public_stats`], the
/// notes with table names hidden, and the [`MARKER`].
///
/// # Errors
///
/// The pipeline's or the store's error when the artifact cannot be written.
pub async fn seal(ctx: &SnapshotContext<'_>, source: &mut SourceManifest) -> Result<()> {
    let details = SealedDetails {
        stats: source.stats.clone(),
        notes: source.notes.clone(),
        extra: Map::new(),
    };
    let json = serde_json::to_vec(&details).map_err(|e| Error::SnapshotFailed {
        source_name: source.name.to_string(),
        message: format!("cannot write the table statistics: {e}"),
    })?;
    let spec = ArtifactSpec {
        source: &source.name,
        file: STATS_FILE,
        format: STATS_FORMAT,
    };
    let meta = ctx.write_artifact(spec, std::io::Cursor::new(json)).await?;
    source.artifacts.push(meta);
    let tables = std::mem::take(&mut source.stats.tables);
    source.notes = source
        .notes
        .iter()
        .map(|n| hide_names(n, &tables))
        .collect();
    source.stats.tables = tables;
    source.stats = public_stats(&source.stats);
    source.extra.insert(MARKER.into(), Value::Bool(true));
    Ok(())
}

/// Puts the details read from a source's stats artifact (`json`, its decrypted and
/// decompressed text) back in place: the full statistics and notes.
///
/// # Errors
///
/// Why the text is not a stats document.
pub fn reveal(source: &mut SourceManifest, json: &str) -> std::result::Result<(), String> {
    let details: SealedDetails = serde_json::from_str(json).map_err(|e| {
        format!(
            "{}/{STATS_FILE}: not a table statistics document: {e}",
            source.name
        )
    })?;
    source.stats = details.stats;
    source.notes = details.notes;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BackupId;
    use crate::pipeline::PipelineConfig;
    use crate::store::StoreExt;
    use crate::testkit::MemoryStore;

    fn t(schema: &str, name: &str, rows: u64) -> TableStat {
        TableStat {
            schema: schema.into(),
            name: name.into(),
            rows,
        }
    }

    #[test]
    fn names_are_hidden_as_whole_words_only() {
        let tables = [t("public", "orders", 1), t("billing", "ord", 2)];
        let text = "tables without transactions (orders, ord) and public.orders, billing.ord; reorders and ord_x stay";
        assert_eq!(
            hide_names(text, &tables),
            "tables without transactions ([hidden], [hidden]) and [hidden], [hidden]; reorders and ord_x stay"
        );
        assert_eq!(hide_names("", &tables), "");
    }

    #[test]
    fn public_stats_keep_counts_and_fingerprints_but_no_name() {
        let full = SourceStats {
            tables: vec![t("public", "orders", 7), t("public", "items", 5)],
            object_counts: [("tables".to_owned(), 2)].into(),
            schema_fingerprint: Some("v2:sha256:ab".into()),
            extra: [("names".to_owned(), Value::from("orders"))]
                .into_iter()
                .collect(),
            ..SourceStats::default()
        };
        let public = public_stats(&full);
        assert!(public.tables.is_empty());
        assert_eq!((public.table_count(), public.total_rows()), (2, 12));
        assert_eq!(public.schema_fingerprint, full.schema_fingerprint);
        let json = serde_json::to_string(&public).expect("json");
        assert!(
            !json.contains("orders") && !json.contains("items"),
            "{json}"
        );
        assert!(json.contains("\"counted_tables\":2"), "{json}");
        // Old manifests (no counted_* fields) still count their tables.
        assert_eq!((full.table_count(), full.total_rows()), (2, 12));
    }

    #[tokio::test]
    async fn sealed_details_are_an_artifact_and_reveal_restores_them() {
        let store = MemoryStore::new();
        let id: BackupId = "20261122T031500Z-7f3a9c".parse().expect("id");
        let pipeline = PipelineConfig {
            zstd_workers: 0,
            ..PipelineConfig::default()
        };
        let ctx = SnapshotContext {
            store: &store,
            backup_id: &id,
            environment: "default",
            pipeline: &pipeline,
        };
        let full = SourceStats {
            tables: vec![t("public", "orders", 7)],
            ..SourceStats::default()
        };
        let mut source: SourceManifest = serde_json::from_value(serde_json::json!({
            "name": "db", "kind": "postgres", "location": "postgres://h/app",
            "artifacts": [], "notes": ["orders may have changed"]}))
        .expect("source");
        source.stats = full.clone();
        seal(&ctx, &mut source).await.expect("sealed");
        assert!(is_hidden(&source));
        assert_eq!(source.notes, ["[hidden] may have changed"]);
        let a = stats_artifact(&source).expect("artifact");
        assert_eq!(a.name, STATS_FILE);
        let json = serde_json::to_string(&source).expect("json");
        assert!(!json.contains("orders"), "{json}");

        let sealed = store.get_all(&a.key).await.expect("stored");
        let text = String::from_utf8(zstd::decode_all(&sealed[..]).expect("zstd")).expect("utf8");
        let mut back = source.clone();
        reveal(&mut back, &text).expect("revealed");
        assert_eq!(back.stats, full);
        assert_eq!(back.notes, ["orders may have changed"]);
        assert!(reveal(&mut back, "{}").is_err());
    }
}
