//! Running the ladder over a backup and turning the result into a [`VerificationRecord`].

use backup_core::{
    Clock, DynVerifier, Manifest, Result, Store, ToolInfo, VerificationLevel, VerificationRecord,
    VerificationReport,
};

/// Runs every verifier up to `up_to` and builds the record (not yet stored).
///
/// # Errors
///
/// When a verifier could not run at all (store down, tool missing).
pub async fn verify_backup(
    store: &dyn Store,
    manifest: &Manifest,
    verifiers: &[DynVerifier],
    up_to: VerificationLevel,
    clock: &dyn Clock,
    host: &str,
) -> Result<VerificationRecord> {
    let mut report = VerificationReport::default();
    for v in verifiers {
        report.merge(v.verify(store, manifest, up_to).await?);
    }
    let max_available = verifiers
        .iter()
        .map(|v| v.max_level())
        .max()
        .unwrap_or(VerificationLevel::Checksum);
    let level_reached = report.level_reached();
    let limited_by = (up_to > max_available).then(|| {
        format!("level {up_to} is not available in this version; {max_available} is the highest")
    });
    let passed = report.passed() && level_reached >= Some(up_to.min(max_available));
    Ok(VerificationRecord {
        format_version: 1,
        backup_id: manifest.id.clone(),
        verified_at: clock.now(),
        level_requested: up_to,
        level_reached,
        passed,
        limited_by,
        report,
        tool: ToolInfo::current(),
        host: host.to_owned(),
        extra: serde_json::Map::new(),
    })
}
