//! What level 4 compares after a restore: exact row counts, the schema (by its fingerprint, and
//! object by object through the listing stored with the dump when they differ), sequences, and
//! owners and grants when the restore kept them.

use std::collections::BTreeMap;

use crate::{FINGERPRINT_V2, PgInspector, PgSourceConfig, SCHEMA_FORMAT, SchemaListing, Section};
use backup_core::{
    ArtifactMeta, Finding, FindingStatus, SourceManifest, Store, TableStat, VerificationLevel,
};

use backup_verify::finding;
use backup_verify::read_small_text;

/// Whether a restore brought back owners and privileges, and so whether they can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileges {
    /// Restored with owners and grants: compare them with the record.
    Restored,
    /// Restored without them, for this reason (said in the record: not proven).
    NotRestored(String),
}

/// How many differing objects a message names before "and N more".
const NAMED_DIFFERENCES: usize = 5;

/// A stored listing larger than this is not read (a damaged or hostile store must not exhaust
/// memory); the comparison then names no objects.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// The schema listing recorded with `source`'s dump, if the backup has one (`v2` and later).
///
/// # Errors
///
/// A message saying why it could not be read (missing, damaged, too large, malformed).
pub async fn recorded_listing(
    store: &dyn Store,
    source: &SourceManifest,
) -> Result<Option<SchemaListing>, String> {
    let Some(a) = source.artifacts.iter().find(|a| a.format == SCHEMA_FORMAT) else {
        return Ok(None);
    };
    let text = read_small_text(store, a, MAX_LISTING_BYTES).await?;
    SchemaListing::parse(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", a.name))
}

/// Row counts, schema, sequences and (when `privileges` says they were restored) owners and
/// grants of a restored database against the manifest, as level-4 findings (`row-counts`,
/// `schema-fingerprint`, `sequences`, `privileges`). A restore passes when none failed.
pub async fn restored_findings(
    store: &dyn Store,
    restored: &PgSourceConfig,
    source: &SourceManifest,
    a: &ArtifactMeta,
    privileges: &Privileges,
) -> Vec<Finding> {
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
    let inspector = match PgInspector::connect(restored, source.name.as_str()).await {
        Ok(i) => i,
        Err(e) => {
            return vec![make(
                "row-counts",
                FindingStatus::Failed,
                format!("{label}: cannot inspect the restored database: {e}"),
            )];
        }
    };
    let mut out = vec![row_counts(&inspector, source, &label, &make).await];
    let want = source.stats.schema_fingerprint.clone();
    match want.as_deref() {
        None => out.push(make(
            "schema-fingerprint",
            FindingStatus::Skipped,
            format!("{label}: the manifest records no schema fingerprint"),
        )),
        Some(want) if !want.starts_with(FINGERPRINT_V2) => {
            out.push(match inspector.schema_fingerprint_v1().await {
                Ok(got) if got == want => make(
                    "schema-fingerprint",
                    FindingStatus::Passed,
                    format!("{label}: the restored schema has the recorded (v1) fingerprint"),
                ),
                Ok(got) => make(
                    "schema-fingerprint",
                    FindingStatus::Failed,
                    format!("{label}: the restored schema's fingerprint {got} differs from the recorded {want}"),
                ),
                Err(e) => make(
                    "schema-fingerprint",
                    FindingStatus::Failed,
                    format!("{label}: cannot read the restored schema: {e}"),
                ),
            });
        }
        Some(want) => {
            let restored_listing = match inspector.schema_listing().await {
                Ok(l) => l,
                Err(e) => {
                    out.push(make(
                        "schema-fingerprint",
                        FindingStatus::Failed,
                        format!("{label}: cannot read the restored schema: {e}"),
                    ));
                    return out;
                }
            };
            let recorded =
                recorded_for_comparison(store, source, want, &inspector, &restored_listing).await;
            out.extend(compare_listings(
                &recorded,
                &restored_listing,
                privileges,
                &label,
                &make,
            ));
        }
    }
    out
}

/// What the backup recorded, as level 4 compares it.
struct Recorded {
    /// The structure fingerprint to compare with.
    fingerprint: String,
    /// The owners-and-grants fingerprint.
    privileges: Option<String>,
    /// The listing, to name differences and check sequences.
    listing: Result<Option<SchemaListing>, String>,
    /// How many view bodies were re-rendered by the restored database's server.
    rerendered: usize,
}

/// The recorded listing, checked against the recorded fingerprint, and the fingerprint to
/// compare with. When the restored schema differs only in how view bodies are rendered (a newer
/// major version prints the same query differently), the recorded bodies are re-rendered by the
/// restored database's server and the comparison uses them; the count says how many.
async fn recorded_for_comparison(
    store: &dyn Store,
    source: &SourceManifest,
    want: &str,
    inspector: &PgInspector,
    restored: &SchemaListing,
) -> Recorded {
    let done = |listing, fingerprint: &str, rerendered| Recorded {
        fingerprint: fingerprint.to_owned(),
        privileges: source.stats.privileges_fingerprint.clone(),
        listing,
        rerendered,
    };
    let recorded = match recorded_listing(store, source).await {
        Ok(Some(l)) if l.fingerprint() != want => Err(
            "the stored schema listing does not match the recorded fingerprint (damaged or altered)"
                .to_owned(),
        ),
        other => other,
    };
    let Ok(Some(listing)) = &recorded else {
        return done(recorded, want, 0);
    };
    if restored.fingerprint() == want {
        return done(recorded, want, 0);
    }
    let restored_bodies: BTreeMap<(&str, &str), &str> = restored
        .entries()
        .iter()
        .filter(|e| is_view_body(&e.kind))
        .map(|e| ((e.kind.as_str(), e.object.as_str()), e.definition.as_str()))
        .collect();
    let mut rerendered = 0;
    let mut entries = Vec::with_capacity(listing.entries().len());
    for e in listing.entries() {
        let mut e = e.clone();
        let differs = restored_bodies
            .get(&(e.kind.as_str(), e.object.as_str()))
            .is_some_and(|d| *d != e.definition);
        if is_view_body(&e.kind)
            && differs
            && let Ok(body) = inspector.render_view_body(&e.definition).await
        {
            e.definition = body;
            rerendered += 1;
        }
        entries.push(e);
    }
    if rerendered == 0 {
        return done(recorded, want, 0);
    }
    let listing = SchemaListing::new(entries);
    let fingerprint = listing.fingerprint();
    done(Ok(Some(listing)), &fingerprint, rerendered)
}

fn is_view_body(kind: &str) -> bool {
    kind == "view-body" || kind == "materialized-view-body"
}

async fn row_counts(
    inspector: &PgInspector,
    source: &SourceManifest,
    label: &str,
    make: &impl Fn(&str, FindingStatus, String) -> Finding,
) -> Finding {
    match inspector.row_counts().await {
        Ok(restored) => {
            let differences = count_differences(&source.stats.tables, &restored);
            if differences.is_empty() {
                make(
                    "row-counts",
                    FindingStatus::Passed,
                    format!(
                        "{label}: all {} tables restored with exactly the {} rows counted at backup time",
                        source.stats.tables.len(),
                        source.stats.total_rows()
                    ),
                )
            } else {
                make(
                    "row-counts",
                    FindingStatus::Failed,
                    format!(
                        "{label}: the restored data differs from the backup's record: {}",
                        differences.join("; ")
                    ),
                )
            }
        }
        Err(e) => make(
            "row-counts",
            FindingStatus::Failed,
            format!("{label}: cannot count the restored rows: {e}"),
        ),
    }
}

/// The `v2` comparisons: structure by fingerprint (objects named through the recorded listing
/// when they differ), sequence values, and owners and grants.
fn compare_listings(
    record: &Recorded,
    restored: &SchemaListing,
    privileges: &Privileges,
    label: &str,
    make: &impl Fn(&str, FindingStatus, String) -> Finding,
) -> Vec<Finding> {
    use FindingStatus::*;
    let (want, recorded, rerendered) = (&record.fingerprint, &record.listing, record.rerendered);
    let named = |section: Section| -> String {
        match recorded {
            Ok(Some(listing)) => name_differences(&listing.differences(restored, section)),
            Ok(None) => "the backup has no schema listing to name the objects".to_owned(),
            Err(e) => {
                format!("the backup's schema listing cannot be read to name the objects: {e}")
            }
        }
    };
    let mut out = Vec::new();
    let got = restored.fingerprint();
    out.push(if &got == want {
        make(
            "schema-fingerprint",
            Passed,
            format!(
                "{label}: the restored schema has the recorded fingerprint ({} objects compared{})",
                restored
                    .entries()
                    .iter()
                    .filter(|e| e.section() == Section::Structure)
                    .count(),
                if rerendered > 0 {
                    format!(
                        "; {rerendered} view bodies re-rendered by the restored database's server first"
                    )
                } else {
                    String::new()
                }
            ),
        )
    } else {
        make(
            "schema-fingerprint",
            Failed,
            format!(
                "{label}: the restored schema differs from the backup's ({got} against the recorded {want}): {}",
                named(Section::Structure)
            ),
        )
    });
    if let Ok(Some(listing)) = recorded {
        let behind = listing.differences(restored, Section::SequenceValue);
        out.push(if behind.is_empty() {
            make(
                "sequences",
                Passed,
                format!("{label}: every sequence restored at or past its recorded value"),
            )
        } else {
            make(
                "sequences",
                Failed,
                format!(
                    "{label}: sequences restored behind their recorded values: {}",
                    name_differences(&behind)
                ),
            )
        });
    }
    out.push(match (privileges, record.privileges.as_deref()) {
        (Privileges::NotRestored(why), _) => make(
            "privileges",
            Skipped,
            format!("{label}: owners and grants not proven: {why}"),
        ),
        (Privileges::Restored, None) => make(
            "privileges",
            Skipped,
            format!("{label}: owners and grants not proven: the manifest records no privileges fingerprint"),
        ),
        (Privileges::Restored, Some(want)) if restored.privileges_fingerprint() == want => make(
            "privileges",
            Passed,
            format!("{label}: owners and grants restored as recorded"),
        ),
        (Privileges::Restored, Some(_)) => make(
            "privileges",
            Failed,
            format!(
                "{label}: owners or grants differ from the backup's: {}",
                named(Section::Privileges)
            ),
        ),
    });
    out
}

/// The first few differences, then how many more.
fn name_differences(differences: &[String]) -> String {
    if differences.is_empty() {
        return "no object differs by name and definition (the listing and the fingerprint disagree: a tool bug)".to_owned();
    }
    let mut text = differences
        .iter()
        .take(NAMED_DIFFERENCES)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if differences.len() > NAMED_DIFFERENCES {
        text.push_str(&format!(
            "; and {} more",
            differences.len() - NAMED_DIFFERENCES
        ));
    }
    text
}

/// Every table whose restored count differs from the recorded one, named with both counts.
pub fn count_differences(recorded: &[TableStat], restored: &[TableStat]) -> Vec<String> {
    backup_verify::count_differences(recorded, restored, |t| format!("{}.{}", t.schema, t.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SchemaEntry;

    fn t(name: &str, rows: u64) -> TableStat {
        TableStat {
            schema: "public".into(),
            name: name.into(),
            rows,
        }
    }

    #[test]
    fn differences_name_each_table() {
        let d = count_differences(
            &[t("a", 1), t("b", 2), t("c", 3)],
            &[t("a", 1), t("b", 5), t("d", 0)],
        );
        assert_eq!(
            d,
            vec![
                "table public.b has 5 rows in the restored copy, the backup recorded 2".to_owned(),
                "table public.c is missing from the restored copy (the backup recorded 3 rows)"
                    .to_owned(),
                "table public.d is in the restored copy but not in the backup's record".to_owned(),
            ]
        );
        assert!(count_differences(&[t("a", 1)], &[t("a", 1)]).is_empty());
    }

    fn entry(kind: &str, object: &str, definition: &str) -> SchemaEntry {
        SchemaEntry {
            kind: kind.into(),
            object: object.into(),
            definition: definition.into(),
        }
    }

    fn check(
        recorded: &SchemaListing,
        restored: &SchemaListing,
        privileges: &Privileges,
    ) -> Vec<(String, FindingStatus, String)> {
        let make = |check: &str, status: FindingStatus, message: String| Finding {
            level: VerificationLevel::Restore,
            check: check.to_owned(),
            source: None,
            artifact: None,
            status,
            message,
        };
        let record = Recorded {
            fingerprint: recorded.fingerprint(),
            privileges: Some(recorded.privileges_fingerprint()),
            listing: Ok(Some(recorded.clone())),
            rerendered: 0,
        };
        compare_listings(&record, restored, privileges, "db/dump", &make)
            .into_iter()
            .map(|f| (f.check, f.status, f.message))
            .collect()
    }

    #[test]
    fn a_changed_view_body_fails_and_is_named() {
        let recorded = SchemaListing::new(vec![
            entry("view-body", "public.v", " SELECT 1;"),
            entry("owner", "table public.t", "owner=app"),
        ]);
        let restored = SchemaListing::new(vec![
            entry("view-body", "public.v", " SELECT 2;"),
            entry("owner", "table public.t", "owner=app"),
        ]);
        let found = check(&recorded, &restored, &Privileges::Restored);
        assert_eq!(found[0].1, FindingStatus::Failed);
        assert!(
            found[0].2.contains("view-body public.v differs"),
            "{}",
            found[0].2
        );
        assert_eq!(found[2].1, FindingStatus::Passed, "{:?}", found[2]);
    }

    #[test]
    fn privileges_are_compared_only_when_restored() {
        let recorded = SchemaListing::new(vec![entry("owner", "table public.t", "owner=app")]);
        let restored = SchemaListing::new(vec![entry("owner", "table public.t", "owner=postgres")]);
        let found = check(&recorded, &restored, &Privileges::Restored);
        assert_eq!(found[0].1, FindingStatus::Passed);
        assert_eq!(found[2].1, FindingStatus::Failed);
        assert!(
            found[2].2.contains("owner table public.t differs"),
            "{}",
            found[2].2
        );
        let skipped = check(
            &recorded,
            &restored,
            &Privileges::NotRestored("the scratch server lacks role app".into()),
        );
        assert_eq!(skipped[2].1, FindingStatus::Skipped);
        assert!(
            skipped[2]
                .2
                .contains("not proven: the scratch server lacks role app")
        );
    }

    #[test]
    fn many_differences_are_counted() {
        let d: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
        assert_eq!(name_differences(&d), "d0; d1; d2; d3; d4; and 3 more");
    }

    fn record_of(
        recorded: &SchemaListing,
        listing: Result<Option<SchemaListing>, String>,
    ) -> Recorded {
        Recorded {
            fingerprint: recorded.fingerprint(),
            privileges: Some(recorded.privileges_fingerprint()),
            listing,
            rerendered: 0,
        }
    }

    fn compare(
        record: &Recorded,
        restored: &SchemaListing,
    ) -> Vec<(String, FindingStatus, String)> {
        let make = |check: &str, status: FindingStatus, message: String| Finding {
            level: VerificationLevel::Restore,
            check: check.to_owned(),
            source: None,
            artifact: None,
            status,
            message,
        };
        compare_listings(record, restored, &Privileges::Restored, "db/dump", &make)
            .into_iter()
            .map(|f| (f.check, f.status, f.message))
            .collect()
    }

    #[test]
    fn an_equal_restore_passes_every_comparison() {
        let listing = SchemaListing::new(vec![
            entry("table", "public.t", "id int"),
            entry(crate::SEQUENCE_VALUE, "public.t_id_seq", "41"),
            entry("owner", "table public.t", "owner=app"),
        ]);
        let found = compare(&record_of(&listing, Ok(Some(listing.clone()))), &listing);
        let checks: Vec<_> = found.iter().map(|f| (f.0.as_str(), f.1)).collect();
        assert_eq!(
            checks,
            vec![
                ("schema-fingerprint", FindingStatus::Passed),
                ("sequences", FindingStatus::Passed),
                ("privileges", FindingStatus::Passed),
            ]
        );
        assert!(
            found[0].2.contains("(1 objects compared)"),
            "{}",
            found[0].2
        );
    }

    #[test]
    fn a_sequence_restored_behind_its_recorded_value_fails_and_ahead_passes() {
        let recorded = SchemaListing::new(vec![entry(crate::SEQUENCE_VALUE, "public.s", "100")]);
        let behind = SchemaListing::new(vec![entry(crate::SEQUENCE_VALUE, "public.s", "99")]);
        let ahead = SchemaListing::new(vec![entry(crate::SEQUENCE_VALUE, "public.s", "150")]);
        let record = record_of(&recorded, Ok(Some(recorded.clone())));
        let found = compare(&record, &behind);
        assert_eq!(
            found[0].1,
            FindingStatus::Passed,
            "values are not structure"
        );
        assert_eq!(found[1].0, "sequences");
        assert_eq!(found[1].1, FindingStatus::Failed);
        assert!(found[1].2.contains("public.s"), "{}", found[1].2);
        assert!(
            found[1].2.contains("\"100\"") && found[1].2.contains("\"99\""),
            "{}",
            found[1].2
        );
        assert_eq!(compare(&record, &ahead)[1].1, FindingStatus::Passed);
    }

    #[test]
    fn without_a_readable_listing_the_schema_still_compares_but_names_no_objects() {
        let recorded = SchemaListing::new(vec![entry("table", "public.t", "id int")]);
        let restored = SchemaListing::new(vec![entry("table", "public.t", "id bigint")]);
        let damaged = record_of(&recorded, Err("schema.txt.zst is damaged".into()));
        let found = compare(&damaged, &restored);
        assert_eq!(
            found.len(),
            2,
            "no sequence check without a listing: {found:?}"
        );
        assert_eq!(found[0].1, FindingStatus::Failed);
        assert!(
            found[0]
                .2
                .contains("cannot be read to name the objects: schema.txt.zst is damaged"),
            "{}",
            found[0].2
        );
        let absent = record_of(&recorded, Ok(None));
        let found = compare(&absent, &restored);
        assert_eq!(found[0].1, FindingStatus::Failed);
        assert!(
            found[0].2.contains("has no schema listing"),
            "{}",
            found[0].2
        );
        assert!(
            found[0].2.contains(&restored.fingerprint()),
            "{}",
            found[0].2
        );
    }

    #[test]
    fn privileges_without_a_recorded_fingerprint_are_not_proven() {
        let listing = SchemaListing::new(vec![entry("owner", "table public.t", "owner=app")]);
        let mut record = record_of(&listing, Ok(Some(listing.clone())));
        record.privileges = None;
        let found = compare(&record, &listing);
        assert_eq!(found[2].1, FindingStatus::Skipped);
        assert!(
            found[2].2.contains("records no privileges fingerprint"),
            "{}",
            found[2].2
        );
    }

    #[test]
    fn re_rendered_view_bodies_are_said_in_the_passing_finding() {
        let listing = SchemaListing::new(vec![entry("view-body", "public.v", " SELECT 1;")]);
        let mut record = record_of(&listing, Ok(Some(listing.clone())));
        record.rerendered = 3;
        let found = compare(&record, &listing);
        assert_eq!(found[0].1, FindingStatus::Passed);
        assert!(
            found[0].2.contains("3 view bodies re-rendered"),
            "{}",
            found[0].2
        );
    }

    #[test]
    fn differences_are_found_both_ways_and_by_schema() {
        let s = |schema: &str, name: &str, rows| TableStat {
            schema: schema.into(),
            name: name.into(),
            rows,
        };
        let d = count_differences(&[s("a", "t", 1)], &[s("b", "t", 1)]);
        assert_eq!(
            d,
            vec![
                "table a.t is missing from the restored copy (the backup recorded 1 rows)"
                    .to_owned(),
                "table b.t is in the restored copy but not in the backup's record".to_owned()
            ]
        );
        assert!(count_differences(&[], &[]).is_empty());
        assert!(name_differences(&[]).contains("a tool bug"));
        assert_eq!(name_differences(&["x".into()]), "x");
    }

    mod stored {
        use backup_core::testkit::MemoryStore;
        use backup_core::{
            ArtifactSpec, BackupId, PipelineConfig, SnapshotContext, SourceManifest, SourceName,
        };

        use super::*;
        use crate::SCHEMA_FORMAT;

        async fn with_listing(store: &MemoryStore, text: &[u8]) -> SourceManifest {
            let id: BackupId = "20261122T031500Z-7f3a9c".parse().expect("id");
            let name: SourceName = "db".parse().expect("name");
            let ctx = SnapshotContext {
                store,
                backup_id: &id,
                environment: "default",
                pipeline: &PipelineConfig::default(),
            };
            let spec = ArtifactSpec {
                source: &name,
                file: "schema.txt.zst",
                format: SCHEMA_FORMAT,
            };
            let artifact = ctx.write_artifact(spec, text).await.expect("write");
            SourceManifest {
                name,
                kind: crate::SOURCE_KIND.into(),
                location: "-".into(),
                server_version: None,
                tool_version: None,
                artifacts: vec![artifact],
                stats: Default::default(),
                notes: vec![],
                extra: Default::default(),
            }
        }

        #[tokio::test]
        async fn a_stored_listing_reads_back_as_written() {
            let store = MemoryStore::new();
            let listing = SchemaListing::new(vec![
                entry("table", "public.t", "id int"),
                entry("comment", "public.t", "tabs\tand\nnewlines"),
            ]);
            let source = with_listing(&store, listing.to_text().as_bytes()).await;
            let read = recorded_listing(&store, &source).await.expect("reads");
            assert_eq!(read, Some(listing));
        }

        #[tokio::test]
        async fn an_unreadable_listing_says_why() {
            let store = MemoryStore::new();
            let listing = SchemaListing::new(vec![entry("table", "public.t", "id int")]);
            let source = with_listing(&store, listing.to_text().as_bytes()).await;
            let key = source.artifacts[0].key.clone();
            store.tamper(&key, |b| {
                let n = b.len();
                b[n - 2] ^= 0x10;
            });
            let err = recorded_listing(&store, &source)
                .await
                .expect_err("damaged");
            assert_eq!(err, "schema.txt.zst is damaged");
            store.delete(&key).await.expect("delete");
            let err = recorded_listing(&store, &source)
                .await
                .expect_err("missing");
            assert_eq!(err, "schema.txt.zst is missing from the store");

            let source = with_listing(&store, b"some other file\n").await;
            let err = recorded_listing(&store, &source)
                .await
                .expect_err("not a listing");
            assert!(
                err.starts_with("schema.txt.zst: not a pre-deploy schema listing"),
                "{err}"
            );

            let source = with_listing(&store, &[0xff, 0xfe, 0x00]).await;
            let err = recorded_listing(&store, &source).await.expect_err("binary");
            assert_eq!(err, "schema.txt.zst is not UTF-8");
        }

        #[tokio::test]
        async fn a_backup_without_a_listing_has_none() {
            let store = MemoryStore::new();
            let mut source = with_listing(&store, b"").await;
            source.artifacts.clear();
            assert_eq!(recorded_listing(&store, &source).await, Ok(None));
        }
    }
}
