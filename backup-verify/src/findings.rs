//! Findings of the generic rungs (1: checksum and size, 2: zstd frames), shared by every
//! format's verifier, and those rungs for artifacts no format verifier claims.

use backup_core::{
    ArtifactMeta, Finding, FindingStatus, Result, SourceManifest, Store, VerificationLevel,
};

use crate::artifact::{Consumer, PassResult, read_pass};

/// A finding about `artifact` of `source`.
pub fn finding(
    level: VerificationLevel,
    check: &str,
    source: &SourceManifest,
    artifact: &ArtifactMeta,
    status: FindingStatus,
    message: String,
) -> Finding {
    Finding {
        level,
        check: check.to_owned(),
        source: Some(source.name.to_string()),
        artifact: Some(artifact.key.clone()),
        status,
        message,
    }
}

/// Levels 1 and 2 of `a` from one pass over it (up to `up_to`).
pub fn pass_findings(
    pass: &PassResult,
    source: &SourceManifest,
    a: &ArtifactMeta,
    up_to: VerificationLevel,
) -> Vec<Finding> {
    use FindingStatus::*;
    use VerificationLevel::*;
    let label = format!("{}/{}", source.name, a.name);
    let mut out = Vec::new();
    if pass.missing {
        out.push(finding(
            Checksum,
            "present",
            source,
            a,
            Failed,
            format!(
                "{label}: the artifact is missing from the store ({})",
                a.key
            ),
        ));
        return out;
    }
    let sha_ok = pass.sha256 == Some(a.sha256);
    let size_ok = pass.stored_size == a.stored_size;
    let (status, message) = match (size_ok, sha_ok) {
        (true, true) => (
            Passed,
            format!("{label}: {} bytes, {} as recorded", a.stored_size, a.sha256),
        ),
        (false, _) if pass.stored_size < a.stored_size => (
            Failed,
            format!(
                "{label}: the stored artifact is truncated: {} bytes instead of {}",
                pass.stored_size, a.stored_size
            ),
        ),
        (false, _) => (
            Failed,
            format!(
                "{label}: the stored artifact is {} bytes instead of {}",
                pass.stored_size, a.stored_size
            ),
        ),
        (true, false) => (
            Failed,
            format!(
                "{label}: the stored bytes are corrupted: sha256 is {} but the manifest records {}",
                pass.sha256.map(|d| d.to_string()).unwrap_or_default(),
                a.sha256
            ),
        ),
    };
    out.push(finding(Checksum, "sha256", source, a, status, message));
    if up_to >= Decompress && a.compression == "zstd" {
        let (status, message) = match &pass.decompress_error {
            Some(e) => (
                Failed,
                format!(
                    "{label}: zstd decompression failed after {} bytes: {e}",
                    pass.raw_size
                ),
            ),
            None if pass.raw_size != a.raw_size => (
                Failed,
                format!(
                    "{label}: decompresses to {} bytes but {} were dumped",
                    pass.raw_size, a.raw_size
                ),
            ),
            None => (
                Passed,
                format!(
                    "{label}: decompresses to {} bytes, frame checksums valid",
                    pass.raw_size
                ),
            ),
        };
        out.push(finding(
            Decompress,
            "zstd-frames",
            source,
            a,
            status,
            message,
        ));
    }
    out
}

/// Levels 1–2 of one artifact whose format no verifier knows: one read of the store.
///
/// # Errors
///
/// Only when the store fails to deliver the bytes.
pub async fn generic_findings(
    store: &dyn Store,
    source: &SourceManifest,
    a: &ArtifactMeta,
    up_to: VerificationLevel,
) -> Result<Vec<Finding>> {
    let top = up_to.min(VerificationLevel::Decompress);
    let pass = read_pass(
        store,
        a,
        top >= VerificationLevel::Decompress,
        Consumer::Discard,
    )
    .await?;
    Ok(pass_findings(&pass, source, a, top))
}
