//! Running the ladder over a backup and turning the result into a [`VerificationRecord`].

use backup_core::{
    Clock, DynVerifier, Finding, FindingStatus, Manifest, Result, Store, ToolInfo,
    VerificationLevel, VerificationRecord, VerificationReport,
};

use crate::findings::generic_findings;

/// Runs every verifier up to `requested` and builds the record (not yet stored).
///
/// The record passes when no check failed and at least `required` was reached; `required` may
/// be lower than `requested` (the default "restore when a scratch server is available, else
/// archive"). When the reached level is below `requested`, `limited_by` says why.
///
/// # Errors
///
/// When a verifier could not run at all (store down, tool missing).
pub async fn verify_backup(
    store: &dyn Store,
    manifest: &Manifest,
    verifiers: &[DynVerifier],
    requested: VerificationLevel,
    required: VerificationLevel,
    clock: &dyn Clock,
    host: &str,
) -> Result<VerificationRecord> {
    // Without an identity an encrypted backup can only be checked at level 1 (the stored
    // ciphertext); the record says why it stopped there.
    let keyless = backup_core::encryption::manifest_is_encrypted(manifest)
        && backup_core::encryption::installed_identities().is_none();
    let asked = requested;
    let requested = if keyless {
        requested.min(VerificationLevel::Checksum)
    } else {
        requested
    };
    let mut report = VerificationReport::default();
    // Hidden table details (`hide_table_names`) are read back from their encrypted artifact so
    // levels 3–4 compare against them as without the option.
    let hidden = manifest
        .sources
        .iter()
        .any(backup_core::hidden_stats::is_hidden);
    let revealed = match hidden && !keyless && requested > VerificationLevel::Checksum {
        true => match crate::small::reveal_stats(store, manifest).await {
            Ok(m) => Some(m),
            Err(why) => {
                report.findings.push(Finding {
                    level: VerificationLevel::Decompress,
                    check: "stats-artifact".into(),
                    source: None,
                    artifact: None,
                    status: FindingStatus::Failed,
                    message: format!("cannot read the encrypted table statistics: {why}"),
                });
                None
            }
        },
        false => None,
    };
    let full = revealed.as_ref().unwrap_or(manifest);
    for v in verifiers {
        report.merge(v.verify(store, full, requested).await?);
    }
    if let Some(full) = &revealed {
        // The record is stored in plaintext next to the manifest: it names no table either.
        let tables: Vec<_> = full
            .sources
            .iter()
            .filter(|s| backup_core::hidden_stats::is_hidden(s))
            .flat_map(|s| s.stats.tables.iter().cloned())
            .collect();
        for f in &mut report.findings {
            f.message = backup_core::hidden_stats::hide_names(&f.message, &tables);
        }
    }
    // Levels 1–2 need no knowledge of the format: every artifact of a source that no verifier
    // claims gets them here.
    let started = std::time::Instant::now();
    let mut generic = false;
    for (source, artifact) in manifest.artifacts() {
        if !verifiers.iter().any(|v| v.claims(source)) {
            generic = true;
            report
                .findings
                .extend(generic_findings(store, source, artifact, requested).await?);
        }
    }
    if generic {
        report.add_time(
            requested.min(VerificationLevel::Decompress),
            started.elapsed(),
        );
    }
    let max_available = verifiers
        .iter()
        .map(|v| v.max_level())
        .max()
        .unwrap_or(VerificationLevel::Decompress)
        .max(if generic {
            VerificationLevel::Decompress
        } else {
            VerificationLevel::Checksum
        });
    let level_reached = report.level_reached();
    let limited_by = if keyless && asked > requested && level_reached >= Some(requested) {
        Some(backup_core::encryption::no_identity_reason())
    } else if level_reached >= Some(requested) {
        None
    } else if requested > max_available {
        Some(format!(
            "level {requested} is not available: {max_available} is the highest this configuration can check"
        ))
    } else {
        // The first check above the reached level that did not pass explains why.
        let next = level_reached.map_or(1, |l| l.number() + 1);
        report
            .findings
            .iter()
            .filter(|f| f.level.number() == next && f.status != FindingStatus::Passed)
            .map(|f| f.message.clone())
            .next()
            .or_else(|| Some(format!("no check at level {next} could run")))
    };
    let passed = report.passed() && level_reached >= Some(required.min(asked));
    let mut extra = serde_json::Map::new();
    if let Some(fingerprints) = decrypted_with(manifest, level_reached) {
        extra.insert("decrypted_with".into(), fingerprints.into());
    }
    Ok(VerificationRecord {
        format_version: 1,
        backup_id: manifest.id.clone(),
        verified_at: clock.now(),
        level_requested: asked,
        level_reached,
        passed,
        limited_by,
        report,
        tool: ToolInfo::current(),
        host: host.to_owned(),
        extra,
    })
}

/// The fingerprints of the installed identities that opened an encrypted backup (those the
/// manifest names as recipients; all of them when it names none), when decryption was proven
/// (level 2 reached).
fn decrypted_with(manifest: &Manifest, reached: Option<VerificationLevel>) -> Option<Vec<String>> {
    use backup_core::encryption::{
        ManifestEncryption, installed_identities, manifest_is_encrypted,
    };
    if !manifest_is_encrypted(manifest) || reached < Some(VerificationLevel::Decompress) {
        return None;
    }
    let installed = installed_identities()?.fingerprints();
    let recipients = ManifestEncryption::of(manifest)
        .map(|e| e.recipients)
        .unwrap_or_default();
    let matching: Vec<String> = installed
        .iter()
        .filter(|f| recipients.contains(f))
        .cloned()
        .collect();
    Some(if matching.is_empty() {
        installed
    } else {
        matching
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use backup_core::testkit::MemoryStore;
    use backup_core::{
        ArtifactSpec, BackupId, PipelineConfig, SnapshotContext, SourceManifest, SystemClock,
        Verifier,
    };

    use super::*;

    /// Claims source `a` and checks nothing: what the generic rungs skip is visible.
    #[derive(Debug)]
    struct ClaimsA;

    #[async_trait]
    impl Verifier for ClaimsA {
        fn name(&self) -> &str {
            "claims-a"
        }
        fn max_level(&self) -> VerificationLevel {
            VerificationLevel::Archive
        }
        fn claims(&self, source: &SourceManifest) -> bool {
            source.name.as_str() == "a"
        }
        async fn verify(
            &self,
            _: &dyn Store,
            _: &Manifest,
            _: VerificationLevel,
        ) -> Result<VerificationReport> {
            Ok(VerificationReport::default())
        }
    }

    async fn manifest(store: &MemoryStore) -> Manifest {
        let id: BackupId = "20261122T031500Z-7f3a9c".parse().expect("id");
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": id, "kind": "manual", "environment": "default",
            "created_at": "2026-11-22T03:15:00Z", "finished_at": "2026-11-22T03:15:00Z",
            "tool": {"name": "pre-deploy", "version": "0"}, "host": "h", "sources": []}))
        .expect("manifest");
        for name in ["a", "b"] {
            let name = name.parse().expect("name");
            let ctx = SnapshotContext {
                store,
                backup_id: &id,
                environment: "default",
                pipeline: &PipelineConfig::default(),
            };
            let spec = ArtifactSpec {
                source: &name,
                file: "x.zst",
                format: "raw",
            };
            let artifact = ctx
                .write_artifact(spec, &b"bytes"[..])
                .await
                .expect("write");
            m.sources.push(SourceManifest {
                name,
                kind: "k".into(),
                location: "-".into(),
                server_version: None,
                tool_version: None,
                artifacts: vec![artifact],
                stats: Default::default(),
                notes: vec![],
                extra: Default::default(),
            });
        }
        m
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unclaimed_artifacts_get_the_generic_rungs_and_claimed_ones_are_left_to_their_verifier()
    {
        let store = MemoryStore::new();
        let m = manifest(&store).await;
        let verifiers: Vec<DynVerifier> = vec![Arc::new(ClaimsA)];
        let record = verify_backup(
            &store,
            &m,
            &verifiers,
            VerificationLevel::Decompress,
            VerificationLevel::Decompress,
            &SystemClock,
            "h",
        )
        .await
        .expect("runs");
        let sources: Vec<_> = record
            .report
            .findings
            .iter()
            .map(|f| (f.source.clone().unwrap_or_default(), f.check.clone()))
            .collect();
        assert_eq!(
            sources,
            vec![
                ("b".to_owned(), "sha256".to_owned()),
                ("b".to_owned(), "zstd-frames".to_owned())
            ]
        );
        assert!(record.passed, "{:?}", record.limited_by);
    }

    /// Claims source `a` and fails naming every table of its stats (as a row-count comparison
    /// that found them missing would).
    #[derive(Debug)]
    struct NamesTables;

    #[async_trait]
    impl Verifier for NamesTables {
        fn name(&self) -> &str {
            "names-tables"
        }
        fn max_level(&self) -> VerificationLevel {
            VerificationLevel::Archive
        }
        fn claims(&self, source: &SourceManifest) -> bool {
            source.name.as_str() == "a"
        }
        async fn verify(
            &self,
            _: &dyn Store,
            manifest: &Manifest,
            _: VerificationLevel,
        ) -> Result<VerificationReport> {
            let tables = &manifest.source("a").expect("a").stats.tables;
            let names: Vec<String> = tables
                .iter()
                .map(|t| format!("{}.{} ({} rows)", t.schema, t.name, t.rows))
                .collect();
            Ok(VerificationReport {
                findings: vec![backup_core::Finding {
                    level: VerificationLevel::Archive,
                    check: "toc".into(),
                    source: Some("a".into()),
                    artifact: None,
                    status: FindingStatus::Failed,
                    message: format!("{} tables missing: {}", tables.len(), names.join(", ")),
                }],
                ..Default::default()
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hidden_table_details_are_read_back_for_the_verifiers_and_kept_out_of_the_record() {
        let store = MemoryStore::new();
        let mut m = manifest(&store).await;
        let pipeline = PipelineConfig {
            hide_table_names: true,
            ..PipelineConfig::default()
        };
        let ctx = SnapshotContext {
            store: &store,
            backup_id: &m.id.clone(),
            environment: "default",
            pipeline: &pipeline,
        };
        let a = &mut m.sources[0];
        a.stats.tables = vec![backup_core::TableStat {
            schema: "public".into(),
            name: "zq_secret_table".into(),
            rows: 4211,
        }];
        backup_core::hidden_stats::seal(&ctx, a)
            .await
            .expect("sealed");
        assert!(a.stats.tables.is_empty());
        let verifiers: Vec<DynVerifier> = vec![Arc::new(NamesTables)];
        let record = verify_backup(
            &store,
            &m,
            &verifiers,
            VerificationLevel::Archive,
            VerificationLevel::Archive,
            &SystemClock,
            "h",
        )
        .await
        .expect("runs");
        let toc = record
            .report
            .findings
            .iter()
            .find(|f| f.check == "toc")
            .expect("the verifier's finding");
        assert_eq!(toc.message, "1 tables missing: [hidden] (4211 rows)");

        // A stats artifact that cannot be read fails level 2, saying so.
        let key = backup_core::hidden_stats::stats_artifact(&m.sources[0])
            .expect("artifact")
            .key
            .clone();
        store.delete(&key).await.expect("delete");
        let record = verify_backup(
            &store,
            &m,
            &verifiers,
            VerificationLevel::Archive,
            VerificationLevel::Archive,
            &SystemClock,
            "h",
        )
        .await
        .expect("runs");
        assert!(!record.passed);
        assert!(
            record
                .report
                .findings
                .iter()
                .any(|f| f.check == "stats-artifact"
                    && f.message
                        .contains("cannot read the encrypted table statistics")),
            "{:?}",
            record.report.findings
        );
    }

    /// Claims source `a` and answers with what it is given.
    #[derive(Debug)]
    struct Scripted {
        max: VerificationLevel,
        findings: Vec<(VerificationLevel, FindingStatus, &'static str)>,
        broken: bool,
    }

    #[async_trait]
    impl Verifier for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn max_level(&self) -> VerificationLevel {
            self.max
        }
        fn claims(&self, source: &SourceManifest) -> bool {
            source.name.as_str() == "a"
        }
        async fn verify(
            &self,
            _: &dyn Store,
            _: &Manifest,
            _: VerificationLevel,
        ) -> Result<VerificationReport> {
            if self.broken {
                return Err(backup_core::Error::io(
                    "cannot start pg_restore",
                    std::io::Error::other("no such file"),
                ));
            }
            let findings = self
                .findings
                .iter()
                .map(|(level, status, message)| backup_core::Finding {
                    level: *level,
                    check: "scripted".into(),
                    source: Some("a".into()),
                    artifact: None,
                    status: *status,
                    message: (*message).to_owned(),
                })
                .collect();
            Ok(VerificationReport {
                findings,
                ..Default::default()
            })
        }
    }

    fn scripted(
        max: VerificationLevel,
        findings: Vec<(VerificationLevel, FindingStatus, &'static str)>,
    ) -> Vec<DynVerifier> {
        vec![Arc::new(Scripted {
            max,
            findings,
            broken: false,
        })]
    }

    async fn run(
        store: &MemoryStore,
        m: &Manifest,
        verifiers: &[DynVerifier],
        requested: VerificationLevel,
        required: VerificationLevel,
    ) -> VerificationRecord {
        verify_backup(store, m, verifiers, requested, required, &SystemClock, "h")
            .await
            .expect("runs")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_level_no_verifier_offers_is_named_and_passes_only_if_not_required() {
        use VerificationLevel::*;
        let store = MemoryStore::new();
        let m = manifest(&store).await;
        let record = run(&store, &m, &[], Restore, Decompress).await;
        assert_eq!(record.level_reached, Some(Decompress));
        assert!(record.passed, "the required level was reached");
        assert_eq!(
            record.limited_by.as_deref(),
            Some(
                "level 4 (restore) is not available: 2 (decompress) is the highest this configuration can check"
            )
        );
        let record = run(&store, &m, &[], Restore, Restore).await;
        assert!(
            !record.passed,
            "level 4 was required and nothing can reach it"
        );
        assert_eq!(record.level_requested, Restore);
        assert_eq!(record.backup_id, m.id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupted_artifact_fails_the_record_and_explains_why() {
        use VerificationLevel::*;
        let store = MemoryStore::new();
        let m = manifest(&store).await;
        let key = m.sources[1].artifacts[0].key.clone();
        store.tamper(&key, |b| b[0] ^= 1);
        let record = run(&store, &m, &[], Decompress, Checksum).await;
        assert!(!record.passed);
        assert_eq!(record.level_reached, None);
        let why = record.limited_by.expect("a reason");
        assert!(
            why.starts_with("b/x.zst: the stored bytes are corrupted"),
            "{why}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_failure_above_the_reached_level_is_the_reason() {
        use FindingStatus::*;
        use VerificationLevel::*;
        let store = MemoryStore::new();
        let m = manifest(&store).await;
        let verifiers = scripted(
            Restore,
            vec![
                (Checksum, Passed, "a ok"),
                (Decompress, Passed, "a ok"),
                (Archive, Skipped, "no pg_restore"),
                (
                    Archive,
                    Failed,
                    "the archive's table of contents is incomplete",
                ),
                (Restore, Failed, "not restored"),
            ],
        );
        let record = run(&store, &m, &verifiers, Restore, Archive).await;
        assert!(!record.passed);
        assert_eq!(record.level_reached, Some(Decompress));
        assert_eq!(record.limited_by.as_deref(), Some("no pg_restore"));

        let verifiers = scripted(
            Restore,
            vec![
                (Checksum, Passed, "a ok"),
                (Decompress, Passed, "a ok"),
                (Archive, Passed, "a read whole"),
                (Restore, Skipped, "no scratch server"),
            ],
        );
        let record = run(&store, &m, &verifiers, Restore, Archive).await;
        assert!(record.passed, "level 3 was required and reached");
        assert_eq!(record.level_reached, Some(Archive));
        let record = run(&store, &m, &verifiers, Restore, Restore).await;
        assert!(!record.passed);
        assert_eq!(record.limited_by.as_deref(), Some("no scratch server"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_below_the_required_level_fails_even_when_a_level_is_reached() {
        use FindingStatus::*;
        use VerificationLevel::*;
        let store = MemoryStore::new();
        let m = manifest(&store).await;
        let verifiers = scripted(
            Archive,
            vec![
                (Checksum, Passed, "a ok"),
                (Decompress, Passed, "a ok"),
                (
                    Archive,
                    Failed,
                    "pg_restore could not read the whole archive",
                ),
            ],
        );
        let record = run(&store, &m, &verifiers, Archive, Checksum).await;
        assert!(!record.passed, "any failed finding refuses");
        assert_eq!(record.level_reached, Some(Decompress));
        assert_eq!(
            record.limited_by.as_deref(),
            Some("pg_restore could not read the whole archive")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_verifier_that_cannot_run_is_an_error_not_a_record() {
        let store = MemoryStore::new();
        let m = manifest(&store).await;
        let verifiers: Vec<DynVerifier> = vec![Arc::new(Scripted {
            max: VerificationLevel::Archive,
            findings: vec![],
            broken: true,
        })];
        let err = verify_backup(
            &store,
            &m,
            &verifiers,
            VerificationLevel::Archive,
            VerificationLevel::Archive,
            &SystemClock,
            "h",
        )
        .await
        .expect_err("could not verify");
        assert!(err.to_string().contains("pg_restore"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_with_nothing_to_check_is_not_verified() {
        let store = MemoryStore::new();
        let mut m = manifest(&store).await;
        m.sources.clear();
        let record = run(
            &store,
            &m,
            &[],
            VerificationLevel::Decompress,
            VerificationLevel::Checksum,
        )
        .await;
        assert!(!record.passed);
        assert_eq!(record.level_reached, None);
        assert_eq!(
            record.limited_by.as_deref(),
            Some("no check at level 1 could run")
        );
    }
}
