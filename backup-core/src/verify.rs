//! The [`Verifier`] trait and the verification data it returns.
//!
//! Findings are data: a failed check is a [`Finding`] with [`FindingStatus::Failed`], not an
//! `Err`. An `Err` from a verifier only means "could not verify" (the store is down, a tool is
//! missing).

use std::fmt::{self, Debug};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::manifest::{Manifest, SourceManifest, ToolInfo};
use crate::store::Store;

/// The rungs of the verification ladder; each proves more than the one below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerificationLevel {
    /// 1: the stored bytes are the bytes written (sha256 and size).
    Checksum = 1,
    /// 2: the compressed stream is whole (zstd frame checksums to the end).
    Decompress = 2,
    /// 3: the dump is complete and parseable (archive table of contents and a full read).
    Archive = 3,
    /// 4: it restores, to the same data (scratch restore and comparison).
    Restore = 4,
}

impl VerificationLevel {
    /// Every level, lowest first.
    pub const ALL: [VerificationLevel; 4] = [
        VerificationLevel::Checksum,
        VerificationLevel::Decompress,
        VerificationLevel::Archive,
        VerificationLevel::Restore,
    ];

    /// The level's number (1–4).
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The kebab-case name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationLevel::Checksum => "checksum",
            VerificationLevel::Decompress => "decompress",
            VerificationLevel::Archive => "archive",
            VerificationLevel::Restore => "restore",
        }
    }
}

impl fmt::Display for VerificationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number(), self.as_str())
    }
}

impl FromStr for VerificationLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s || l.number().to_string() == s)
            .ok_or_else(|| Error::Invalid {
                what: "verification level",
                value: s.to_owned(),
                reason: "use checksum, decompress, archive or restore (or 1–4)".into(),
            })
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingStatus {
    /// The check passed.
    Passed,
    /// The check failed: the backup must not be trusted.
    Failed,
    /// The check could not apply (e.g. no tool for this artifact's format).
    Skipped,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The ladder level the check belongs to.
    pub level: VerificationLevel,
    /// Short machine name of the check, e.g. `sha256`, `zstd-frames`, `pg-restore-read`.
    pub check: String,
    /// The source checked, when the check is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The artifact key checked, when the check is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The outcome.
    pub status: FindingStatus,
    /// What was found, in words an operator understands.
    pub message: String,
}

/// How long one level took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelTiming {
    /// The level.
    pub level: VerificationLevel,
    /// Seconds spent.
    pub seconds: f64,
}

/// What a verifier found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// Every check made.
    pub findings: Vec<Finding>,
    /// Time per level.
    #[serde(default)]
    pub timings: Vec<LevelTiming>,
}

impl VerificationReport {
    /// True when no finding failed.
    pub fn passed(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| f.status == FindingStatus::Failed)
    }

    /// The failed findings.
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.status == FindingStatus::Failed)
    }

    /// The highest level up to which every level has passing findings and none failed.
    pub fn level_reached(&self) -> Option<VerificationLevel> {
        let mut reached = None;
        for level in VerificationLevel::ALL {
            let at: Vec<_> = self.findings.iter().filter(|f| f.level == level).collect();
            let passed = at.iter().any(|f| f.status == FindingStatus::Passed);
            let failed = at.iter().any(|f| f.status == FindingStatus::Failed);
            if !passed || failed {
                break;
            }
            reached = Some(level);
        }
        reached
    }

    /// Adds the findings and timings of another report.
    pub fn merge(&mut self, other: VerificationReport) {
        self.findings.extend(other.findings);
        for t in other.timings {
            match self.timings.iter_mut().find(|x| x.level == t.level) {
                Some(x) => x.seconds += t.seconds,
                None => self.timings.push(t),
            }
        }
        self.timings.sort_by_key(|t| t.level);
    }

    /// Records time spent at a level.
    pub fn add_time(&mut self, level: VerificationLevel, elapsed: Duration) {
        self.merge(VerificationReport {
            findings: vec![],
            timings: vec![LevelTiming {
                level,
                seconds: elapsed.as_secs_f64(),
            }],
        });
    }
}

/// The immutable record of one verification of a backup, stored next to its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// Format of this record.
    pub format_version: u32,
    /// The backup verified.
    pub backup_id: BackupId,
    /// When the verification finished.
    pub verified_at: Timestamp,
    /// The level asked for.
    pub level_requested: VerificationLevel,
    /// The level every check passed up to, if any.
    #[serde(default)]
    pub level_reached: Option<VerificationLevel>,
    /// True when no finding failed and the requested level was reached.
    pub passed: bool,
    /// Why the reached level is below the requested one, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    /// The checks and timings.
    #[serde(flatten)]
    pub report: VerificationReport,
    /// The tool that verified.
    pub tool: ToolInfo,
    /// The host it ran on.
    pub host: String,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Checks a stored backup at one or more levels of the ladder.
#[async_trait]
pub trait Verifier: Send + Sync + Debug + 'static {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// The highest level this verifier can check.
    fn max_level(&self) -> VerificationLevel;

    /// Whether this verifier checks the artifacts of `source` (levels 1–2 included). Artifacts
    /// of sources no verifier claims still get the generic levels 1–2 (see
    /// `backup_verify::verify_backup`), so a new kind of source is checked from its first backup.
    fn claims(&self, source: &SourceManifest) -> bool {
        let _ = source;
        false
    }

    /// Checks every artifact of `manifest` this verifier understands, at each level up to `up_to`.
    ///
    /// # Errors
    ///
    /// Only when verification could not run at all; failed checks are findings.
    async fn verify(
        &self,
        store: &dyn Store,
        manifest: &Manifest,
        up_to: VerificationLevel,
    ) -> Result<VerificationReport>;
}

/// A verifier behind `Arc<dyn …>`.
pub type DynVerifier = Arc<dyn Verifier>;

#[cfg(test)]
mod tests {
    use super::*;

    fn f(level: VerificationLevel, status: FindingStatus) -> Finding {
        Finding {
            level,
            check: "c".into(),
            source: None,
            artifact: None,
            status,
            message: String::new(),
        }
    }

    #[test]
    fn level_reached_stops_at_the_first_gap_or_failure() {
        use FindingStatus::*;
        use VerificationLevel::*;
        let r = VerificationReport {
            findings: vec![
                f(Checksum, Passed),
                f(Decompress, Passed),
                f(Archive, Failed),
            ],
            timings: vec![],
        };
        assert_eq!(r.level_reached(), Some(Decompress));
        assert!(!r.passed());
        let r = VerificationReport {
            findings: vec![f(Checksum, Passed), f(Archive, Passed)],
            timings: vec![],
        };
        assert_eq!(r.level_reached(), Some(Checksum));
        assert!(r.passed());
        assert_eq!(VerificationReport::default().level_reached(), None);
    }

    #[test]
    fn levels_parse_by_name_and_number() {
        assert_eq!(
            "archive".parse::<VerificationLevel>().expect("parses"),
            VerificationLevel::Archive
        );
        assert_eq!(
            "1".parse::<VerificationLevel>().expect("parses"),
            VerificationLevel::Checksum
        );
        assert!("full".parse::<VerificationLevel>().is_err());
    }
}
