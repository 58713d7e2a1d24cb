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
