//! Retention: which backups to keep, decided as a pure function with a reason for every decision.
//!
//! - [`RetentionPolicy`] is the contract: `plan(backups, now)` returns one [`RetentionDecision`]
//!   per backup, each with its reasons, and performs no I/O.
//! - [`KeepPolicy`] is the policy the tool uses: per-kind [`KeepRules`] in the style of restic's
//!   `forget` (keep-last, keep-within, keep-hourly/daily/weekly/monthly/yearly, all ORed, plus
//!   each backup's own expiry), applied per group (environment × kind), under protections no rule
//!   can override (the newest verified backup of each group, pinned backups, the backups of the
//!   current and previous deployment, a floor of verified backups).
//! - [`DeletionBudget`] is the guard a caller checks before acting on a plan: a run that would
//!   remove too large a share of a group, or too many backups, needs to be forced.
//! - [`KeepAll`] keeps everything: the policy when no retention is configured.
//!
//! ```
//! use backup_core::{BackupId, BackupKind, BackupSummary, KeepPolicy, KeepRules, RetentionPolicy};
//! use jiff::{SignedDuration, Timestamp};
//!
//! let t0: Timestamp = "2026-11-01T03:00:00Z".parse().expect("a valid time");
//! let backups: Vec<BackupSummary> = (0..8)
//!     .map(|day| {
//!         let at = t0 + SignedDuration::from_hours(24 * day);
//!         BackupSummary::new(BackupId::from_parts(at, [0, 0, day as u8]), BackupKind::PreDeploy, "production", at)
//!             .with_verified(Some(true))
//!     })
//!     .collect();
//! let policy = KeepPolicy::new([(BackupKind::PreDeploy, KeepRules { last: Some(5), ..KeepRules::default() })]);
//! let plan = policy.plan(&backups, Timestamp::now());
//! assert_eq!(plan.removals().count(), 3);
//! assert!(plan.decisions.iter().all(|d| !d.reasons.is_empty()));
//! ```

mod budget;
mod period;
mod policy;
mod rules;
#[cfg(test)]
mod tests;

use std::fmt::Debug;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::id::BackupId;
use crate::manifest::{BackupKind, Manifest};

pub use budget::{BudgetViolation, DeletionBudget};
pub use period::Period;
pub use policy::{DeployedRelease, DeploymentRole, KeepPolicy};
pub use rules::KeepRules;

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
    /// Whether it is pinned (`pre-deploy pin`): pinned backups are never removed.
    #[serde(default)]
    pub pinned: bool,
}

impl BackupSummary {
    /// A summary with only the identifying fields set: never verified, no commit, no expiry,
    /// not pinned.
    pub fn new(
        id: BackupId,
        kind: BackupKind,
        environment: impl Into<String>,
        created_at: Timestamp,
    ) -> Self {
        BackupSummary {
            id,
            kind,
            environment: environment.into(),
            created_at,
            verified: None,
            commit: None,
            expires_at: None,
            pinned: false,
        }
    }

    /// The summary of a stored backup, given its latest verification outcome and pin state.
    pub fn from_manifest(manifest: &Manifest, verified: Option<bool>, pinned: bool) -> Self {
        BackupSummary {
            id: manifest.id.clone(),
            kind: manifest.kind,
            environment: manifest.environment.clone(),
            created_at: manifest.created_at,
            verified,
            commit: manifest.deploy.commit.clone(),
            expires_at: manifest.expires_at,
            pinned,
        }
    }

    /// Sets the verification outcome.
    #[must_use]
    pub fn with_verified(mut self, verified: Option<bool>) -> Self {
        self.verified = verified;
        self
    }

    /// Sets the commit.
    #[must_use]
    pub fn with_commit(mut self, commit: impl Into<String>) -> Self {
        self.commit = Some(commit.into());
        self
    }

    /// Sets the expiry.
    #[must_use]
    pub fn with_expires_at(mut self, at: Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets the pin state.
    #[must_use]
    pub fn with_pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }

    /// True when its latest verification passed.
    pub fn is_verified(&self) -> bool {
        self.verified == Some(true)
    }
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
    /// Its environment (the group is environment × kind).
    pub environment: String,
    /// Its kind.
    pub kind: BackupKind,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its latest verification outcome (`None`: never verified).
    pub verified: Option<bool>,
    /// What to do.
    pub action: RetentionAction,
    /// True when a protection no rule can override keeps it (newest verified backup of its
    /// group, pinned, a deployment's backup, the `min-verified` floor).
    #[serde(default)]
    pub protected: bool,
    /// Why, in words (e.g. `newest verified backup of the group`, `keep-daily 3/7 (2026-11-20)`).
    pub reasons: Vec<String>,
}

impl RetentionDecision {
    /// True when the backup is to be removed.
    pub fn is_removal(&self) -> bool {
        self.action == RetentionAction::Remove
    }
}

/// A policy's decisions for a set of backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPlan {
    /// One decision per backup given to the policy, grouped by environment and kind, newest
    /// first within a group.
    pub decisions: Vec<RetentionDecision>,
}

impl RetentionPlan {
    /// The backups to remove.
    pub fn removals(&self) -> impl Iterator<Item = &RetentionDecision> {
        self.decisions.iter().filter(|d| d.is_removal())
    }

    /// The backups to keep.
    pub fn keeps(&self) -> impl Iterator<Item = &RetentionDecision> {
        self.decisions.iter().filter(|d| !d.is_removal())
    }

    /// The decision about `id`, if the plan has one.
    pub fn decision(&self, id: &BackupId) -> Option<&RetentionDecision> {
        self.decisions.iter().find(|d| &d.id == id)
    }

    /// Per group (environment, kind): how many backups it holds and how many the plan removes.
    pub fn group_counts(&self) -> std::collections::BTreeMap<(String, BackupKind), (usize, usize)> {
        let mut groups = std::collections::BTreeMap::new();
        for d in &self.decisions {
            let entry = groups
                .entry((d.environment.clone(), d.kind))
                .or_insert((0, 0));
            entry.0 += 1;
            if d.is_removal() {
                entry.1 += 1;
            }
        }
        groups
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
                    environment: b.environment.clone(),
                    kind: b.kind,
                    created_at: b.created_at,
                    verified: b.verified,
                    action: RetentionAction::Keep,
                    protected: false,
                    reasons: vec!["no retention policy is configured".into()],
                })
                .collect(),
        }
    }
}
