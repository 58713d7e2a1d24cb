//! What level 4 and a restore compare in a restored database: exact row counts against the
//! manifest's, and the schema by its fingerprint (objects named through the listing stored with
//! the dump when they differ).

use backup_core::{
    ArtifactMeta, Finding, FindingStatus, SourceManifest, Store, TableStat, VerificationLevel,
};
use backup_verify::{finding, read_small_text};

use crate::config::MysqlSourceConfig;
use crate::inspector::MysqlInspector;
use crate::schema::MysqlSchemaListing;
use crate::snapshotter::SCHEMA_FORMAT;

/// How many differences a message names before "and N more".
const NAMED_DIFFERENCES: usize = 5;

/// A stored listing larger than this is not read (a damaged or hostile store must not exhaust
/// memory); the comparison then names no objects.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// The schema listing recorded with `source`'s dump, if the backup has one.
///
/// # Errors
///
/// A message saying why it could not be read (missing, damaged, too large, malformed).
pub async fn recorded_listing(
    store: &dyn Store,
    source: &SourceManifest,
) -> Result<Option<MysqlSchemaListing>, String> {
    let Some(a) = source.artifacts.iter().find(|a| a.format == SCHEMA_FORMAT) else {
        return Ok(None);
    };
    let text = read_small_text(store, a, MAX_LISTING_BYTES).await?;
    MysqlSchemaListing::parse(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", a.name))
}

/// Every table whose restored count differs from the recorded one, named with both counts.
pub fn count_differences(recorded: &[TableStat], restored: &[TableStat]) -> Vec<String> {
    backup_verify::count_differences(recorded, restored, |t| t.name.clone())
}

/// The first few items, then how many more.
pub(crate) fn first_few(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(NAMED_DIFFERENCES)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > NAMED_DIFFERENCES {
        text.push_str(&format!("; and {} more", items.len() - NAMED_DIFFERENCES));
    }
    text
}

/// Row counts and schema of the database `restored` against `source`'s record, as level-4
/// findings (`row-counts`, `schema-fingerprint`). A restore passes when none failed.
pub async fn restored_findings(
    store: &dyn Store,
    restored: &MysqlSourceConfig,
    source: &SourceManifest,
    a: &ArtifactMeta,
    disabled_events: &[String],
) -> Vec<Finding> {
    use FindingStatus::*;
    let label = format!("{}/{}", source.name, a.name);
    let make = |check: &str, status: FindingStatus, message: String| {
        finding(
            VerificationLevel::Restore,
            check,
            source,
            a,
            status,
            message,
        )
    };
    let mut inspector = match MysqlInspector::connect(restored, source.name.as_str()).await {
        Ok(i) => i,
        Err(e) => {
            return vec![make(
                "row-counts",
                Failed,
                format!("{label}: cannot inspect the restored database: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    let counts = match inspector.base_tables().await {
        Ok(tables) => inspector.row_counts(&tables).await,
        Err(e) => Err(e),
    };
    out.push(match counts {
        Ok(counts) => {
            let d = count_differences(&source.stats.tables, &counts);
            if d.is_empty() {
                make(
                    "row-counts",
                    Passed,
                    format!(
                        "{label}: all {} tables restored with exactly the {} rows counted at backup time",
                        source.stats.tables.len(),
                        source.stats.total_rows()
                    ),
                )
            } else {
                make(
                    "row-counts",
                    Failed,
                    format!(
                        "{label}: the restored data differs from the backup's record: {}",
                        first_few(&d)
                    ),
                )
            }
        }
        Err(e) => make(
            "row-counts",
            Failed,
            format!("{label}: cannot count the restored rows: {e}"),
        ),
    });
    let listing = inspector.schema_listing(disabled_events).await;
    inspector.close().await;
    let Some(want) = source.stats.schema_fingerprint.as_deref() else {
        out.push(make(
            "schema-fingerprint",
            Skipped,
            format!("{label}: the manifest records no schema fingerprint"),
        ));
        return out;
    };
    let restored_listing = match listing {
        Ok(l) => l,
        Err(e) => {
            out.push(make(
                "schema-fingerprint",
                Failed,
                format!("{label}: cannot read the restored schema: {e}"),
            ));
            return out;
        }
    };
    let got = restored_listing.fingerprint();
    out.push(if got == want {
        make(
            "schema-fingerprint",
            Passed,
            format!(
                "{label}: the restored schema has the recorded fingerprint ({} objects compared)",
                restored_listing.entries().len()
            ),
        )
    } else {
        let named = match recorded_listing(store, source).await {
            Ok(Some(l)) if l.fingerprint() != want => {
                "the stored schema listing does not match the recorded fingerprint (damaged or altered)".to_owned()
            }
            Ok(Some(l)) => {
                let d = l.differences(&restored_listing);
                if d.is_empty() {
                    "no object differs (a tool bug)".to_owned()
                } else {
                    first_few(&d)
                }
            }
            Ok(None) => "the backup has no schema listing to name the objects".to_owned(),
            Err(e) => format!("the backup's schema listing cannot be read to name the objects: {e}"),
        };
        make(
            "schema-fingerprint",
            Failed,
            format!(
                "{label}: the restored schema differs from the backup's ({got} against the recorded {want}): {named}"
            ),
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, rows: u64) -> TableStat {
        TableStat {
            schema: "app".into(),
            name: name.into(),
            rows,
        }
    }

    #[test]
    fn differences_name_each_table_with_both_counts() {
        let d = count_differences(
            &[t("a", 1), t("b", 2), t("c", 3)],
            &[t("a", 1), t("b", 5), t("d", 0)],
        );
        assert_eq!(
            d,
            vec![
                "table b has 5 rows in the restored copy, the backup recorded 2".to_owned(),
                "table c is missing from the restored copy (the backup recorded 3 rows)".to_owned(),
                "table d is in the restored copy but not in the backup's record".to_owned(),
            ]
        );
        let many: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
        assert_eq!(first_few(&many), "d0; d1; d2; d3; d4; and 3 more");
    }
}
