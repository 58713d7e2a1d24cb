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
            Some(e) if backup_core::encryption::is_encrypted(a) => (
                Failed,
                format!(
                    "{label}: age decryption or zstd decompression failed after {} bytes: {e}",
                    pass.raw_size
                ),
            ),
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
            None if backup_core::encryption::is_encrypted(a) => (
                Passed,
                format!(
                    "{label}: decrypts and decompresses to {} bytes, age and frame checksums valid",
                    pass.raw_size
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

#[cfg(test)]
mod tests {
    use backup_core::Digest;

    use super::*;
    use crate::test_support::source;

    fn artifact() -> ArtifactMeta {
        ArtifactMeta {
            name: "dump.zst".into(),
            key: "backups/x/data/db/dump.zst".into(),
            format: "raw".into(),
            compression: "zstd".into(),
            stored_size: 100,
            raw_size: 300,
            sha256: Digest::of(b"the stored bytes"),
            extra: Default::default(),
        }
    }

    /// What a pass over an artifact that matches [`artifact`] in every respect reports.
    fn intact() -> PassResult {
        PassResult {
            missing: false,
            stored_size: 100,
            sha256: Some(Digest::of(b"the stored bytes")),
            raw_size: 300,
            decompress_error: None,
            consumer_stopped: false,
        }
    }

    fn checks(pass: &PassResult, up_to: VerificationLevel) -> Vec<(String, FindingStatus, String)> {
        pass_findings(pass, &source(), &artifact(), up_to)
            .into_iter()
            .map(|f| (f.check, f.status, f.message))
            .collect()
    }

    #[test]
    fn an_intact_artifact_passes_both_rungs_with_its_figures() {
        let found = checks(&intact(), VerificationLevel::Archive);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "sha256");
        assert_eq!(found[0].1, FindingStatus::Passed);
        assert!(
            found[0].2.starts_with("db/dump.zst: 100 bytes"),
            "{}",
            found[0].2
        );
        assert_eq!(found[1].0, "zstd-frames");
        assert_eq!(found[1].1, FindingStatus::Passed);
        assert!(
            found[1].2.contains("decompresses to 300 bytes"),
            "{}",
            found[1].2
        );
    }

    #[test]
    fn a_missing_artifact_is_one_failure_naming_its_key() {
        let pass = PassResult {
            missing: true,
            ..intact()
        };
        let found = checks(&pass, VerificationLevel::Decompress);
        assert_eq!(found.len(), 1, "no rung can pass on nothing: {found:?}");
        assert_eq!(found[0].0, "present");
        assert_eq!(found[0].1, FindingStatus::Failed);
        assert!(
            found[0].2.contains("backups/x/data/db/dump.zst"),
            "{}",
            found[0].2
        );
    }

    #[test]
    fn size_and_digest_failures_say_which() {
        let truncated = PassResult {
            stored_size: 40,
            ..intact()
        };
        let found = checks(&truncated, VerificationLevel::Checksum);
        assert_eq!(found[0].1, FindingStatus::Failed);
        assert!(
            found[0].2.contains("truncated: 40 bytes instead of 100"),
            "{}",
            found[0].2
        );

        let longer = PassResult {
            stored_size: 140,
            ..intact()
        };
        let found = checks(&longer, VerificationLevel::Checksum);
        assert_eq!(found[0].1, FindingStatus::Failed);
        assert!(
            found[0].2.contains("is 140 bytes instead of 100"),
            "{}",
            found[0].2
        );

        let flipped = PassResult {
            sha256: Some(Digest::of(b"other bytes")),
            ..intact()
        };
        let found = checks(&flipped, VerificationLevel::Checksum);
        assert_eq!(found[0].1, FindingStatus::Failed);
        assert!(found[0].2.contains("corrupted"), "{}", found[0].2);
        assert!(found[0].2.contains(&Digest::of(b"other bytes").to_string()));

        let unread = PassResult {
            sha256: None,
            ..intact()
        };
        assert_eq!(
            checks(&unread, VerificationLevel::Checksum)[0].1,
            FindingStatus::Failed
        );
    }

    #[test]
    fn level_two_fails_on_its_own_when_the_stored_bytes_match() {
        let broken_stream = PassResult {
            decompress_error: Some("Unknown frame descriptor".into()),
            raw_size: 12,
            ..intact()
        };
        let found = checks(&broken_stream, VerificationLevel::Decompress);
        assert_eq!(
            found[0].1,
            FindingStatus::Passed,
            "level 1 holds: {found:?}"
        );
        assert_eq!(found[1].1, FindingStatus::Failed);
        assert!(
            found[1]
                .2
                .contains("failed after 12 bytes: Unknown frame descriptor"),
            "{}",
            found[1].2
        );

        let short_stream = PassResult {
            raw_size: 299,
            ..intact()
        };
        let found = checks(&short_stream, VerificationLevel::Decompress);
        assert_eq!(found[1].1, FindingStatus::Failed);
        assert!(
            found[1].2.contains("299 bytes but 300 were dumped"),
            "{}",
            found[1].2
        );
    }

    #[test]
    fn level_two_runs_only_when_asked_and_only_on_zstd() {
        let broken_stream = PassResult {
            decompress_error: Some("bad".into()),
            ..intact()
        };
        assert_eq!(checks(&broken_stream, VerificationLevel::Checksum).len(), 1);
        let mut plain = artifact();
        plain.compression = "none".into();
        let found = pass_findings(
            &broken_stream,
            &source(),
            &plain,
            VerificationLevel::Archive,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].check, "sha256");
    }

    #[test]
    fn findings_name_their_source_artifact_and_level() {
        let found = pass_findings(
            &intact(),
            &source(),
            &artifact(),
            VerificationLevel::Decompress,
        );
        assert_eq!(found[0].level, VerificationLevel::Checksum);
        assert_eq!(found[1].level, VerificationLevel::Decompress);
        for f in &found {
            assert_eq!(f.source.as_deref(), Some("db"));
            assert_eq!(f.artifact.as_deref(), Some("backups/x/data/db/dump.zst"));
        }
    }
}
