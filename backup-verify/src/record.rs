//! Running the ladder over a backup and turning the result into a [`VerificationRecord`].

use backup_core::{
    Clock, DynVerifier, FindingStatus, Manifest, Result, Store, ToolInfo, VerificationLevel,
    VerificationRecord, VerificationReport,
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
    let mut report = VerificationReport::default();
    for v in verifiers {
        report.merge(v.verify(store, manifest, requested).await?);
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
    let limited_by = if level_reached >= Some(requested) {
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
    let passed = report.passed() && level_reached >= Some(required.min(requested));
    Ok(VerificationRecord {
        format_version: 1,
        backup_id: manifest.id.clone(),
        verified_at: clock.now(),
        level_requested: requested,
        level_reached,
        passed,
        limited_by,
        report,
        tool: ToolInfo::current(),
        host: host.to_owned(),
        extra: serde_json::Map::new(),
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
}
