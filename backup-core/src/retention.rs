//! The [`RetentionPolicy`] trait: which backups to keep, decided as a pure function.
//!
//! Policies (keep-last, keep-daily, …) are planned in their own module; this crate defines the
//! contract every policy implements, and [`KeepAll`], the policy used when none is configured.

use std::fmt::Debug;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::id::BackupId;
use crate::manifest::BackupKind;

/// What a policy needs to know about one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// The backup.
    pub id: BackupId,
    /// Its kind.
    pub kind: BackupKind,
    /// Its environment.
    pub environment: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether its latest verification passed (`None`: never verified).
    pub verified: Option<bool>,
    /// The commit it protects.
    pub commit: Option<String>,
    /// Its expiry, if one was set.
    pub expires_at: Option<Timestamp>,
}

/// Keep or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionAction {
    /// Keep the backup.
    Keep,
    /// Remove the backup.
    Remove,
}

/// The decision for one backup, with every reason behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionDecision {
    /// The backup.
    pub id: BackupId,
    /// What to do.
    pub action: RetentionAction,
    /// Why, in words (e.g. `newest verified backup`, `keep-daily 3 of 7`).
    pub reasons: Vec<String>,
}

/// A policy's decisions for a set of backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPlan {
    /// One decision per backup given to the policy.
    pub decisions: Vec<RetentionDecision>,
}

impl RetentionPlan {
    /// The backups to remove.
    pub fn removals(&self) -> impl Iterator<Item = &RetentionDecision> {
        self.decisions
            .iter()
            .filter(|d| d.action == RetentionAction::Remove)
    }
}

/// Decides which backups to keep.
///
/// # Contract
///
/// `plan` is pure: the same backups and `now` give the same plan, it performs no I/O, and it
/// returns exactly one decision per backup, each with at least one reason.
pub trait RetentionPolicy: Send + Sync + Debug {
    /// Plans keep/remove for `backups` at time `now`.
    fn plan(&self, backups: &[BackupSummary], now: Timestamp) -> RetentionPlan;
}

/// Keeps every backup: the policy when no retention is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepAll;

impl RetentionPolicy for KeepAll {
    fn plan(&self, backups: &[BackupSummary], _now: Timestamp) -> RetentionPlan {
        RetentionPlan {
            decisions: backups
                .iter()
                .map(|b| RetentionDecision {
                    id: b.id.clone(),
                    action: RetentionAction::Keep,
                    reasons: vec!["no retention policy is configured".into()],
                })
                .collect(),
        }
    }
}
