//! [`KeepPolicy`]: per-kind keep rules applied per group, under protections no rule overrides.

use std::collections::{BTreeMap, HashSet};

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use super::rules::KeepRules;
use super::{BackupSummary, RetentionAction, RetentionDecision, RetentionPlan, RetentionPolicy};
use crate::id::BackupId;
use crate::manifest::BackupKind;

/// Which of the two protected deployments a [`DeployedRelease`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentRole {
    /// The release running now (the newest recorded deployment).
    Current,
    /// The release before it (the newest recorded deployment of another commit).
    Previous,
}

impl DeploymentRole {
    /// `current` or `previous`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentRole::Current => "current",
            DeploymentRole::Previous => "previous",
        }
    }
}

/// A recorded deployment whose backups are protected: the backup it ran on, and in every group
/// the newest verified backup of its commit (what a rollback to or past it needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedRelease {
    /// The environment it was deployed to.
    pub environment: String,
    /// Current or previous.
    pub role: DeploymentRole,
    /// The deployed commit, when known.
    pub commit: Option<String>,
    /// The backup the deployment ran on, when known.
    pub backup_id: Option<BackupId>,
}

/// The retention policy of pre-deploy: per-kind [`KeepRules`], applied separately to each group
/// (environment × kind), under protections no rule can override.
///
/// For each group, newest backup first:
///
/// 1. **Protected**, whatever the rules say: the newest verified backup of the group; pinned
///    backups; the backup each [`DeployedRelease`] of the group's environment ran on, and the
///    group's newest verified backup of each deployed commit; and, when fewer than
///    `min_verified` verified backups would remain, the newest removed verified backups up to
///    that floor.
/// 2. **Rules** (verified backups only; unverified and failed backups fill no slot): the kind's
///    [`KeepRules`], ORed, plus each backup's own expiry (`expires_at` later than the reference
///    time keeps it).
/// 3. **Forensic window**: unverified and failed backups are kept for `failed_grace`, then removed.
///
/// Time is measured from the group's **reference time**: the creation time of its newest verified
/// backup (or `now`, if that is earlier). A pipeline that stopped backing up therefore never eats
/// its history. A kind without rules is never pruned; neither is a group without any verified
/// backup.
///
/// Applying a plan and planning again removes nothing more (the plan is idempotent).
#[derive(Debug, Clone)]
pub struct KeepPolicy {
    /// The rules of each kind; kinds without rules are kept whole.
    pub rules: BTreeMap<BackupKind, KeepRules>,
    /// The zone periods and calendar durations are computed in (default UTC).
    pub time_zone: TimeZone,
    /// The floor of verified backups per group (default 1).
    pub min_verified: u32,
    /// How long unverified and failed backups are kept for forensics (default 7 days).
    pub failed_grace: Span,
    /// The deployments whose backups are protected.
    pub deployments: Vec<DeployedRelease>,
}

impl KeepPolicy {
    /// A policy with these rules, in UTC, with a floor of 1 verified backup, a forensic window of
    /// 7 days and no recorded deployment.
    pub fn new(rules: impl IntoIterator<Item = (BackupKind, KeepRules)>) -> Self {
        KeepPolicy {
            rules: rules.into_iter().collect(),
            time_zone: TimeZone::UTC,
            min_verified: 1,
            failed_grace: 7.days(),
            deployments: Vec::new(),
        }
    }

    /// Sets the time zone.
    #[must_use]
    pub fn with_time_zone(mut self, tz: TimeZone) -> Self {
        self.time_zone = tz;
        self
    }

    /// Sets the floor of verified backups per group.
    #[must_use]
    pub fn with_min_verified(mut self, n: u32) -> Self {
        self.min_verified = n;
        self
    }

    /// Sets the forensic window of unverified and failed backups.
    #[must_use]
    pub fn with_failed_grace(mut self, grace: Span) -> Self {
        self.failed_grace = grace;
        self
    }

    /// Sets the protected deployments.
    #[must_use]
    pub fn with_deployments(mut self, deployments: Vec<DeployedRelease>) -> Self {
        self.deployments = deployments;
        self
    }

    /// `at - span` in the policy's zone; the earliest time when that is out of range.
    fn minus(&self, at: Timestamp, span: Span) -> Timestamp {
        at.to_zoned(self.time_zone.clone())
            .checked_sub(span)
            .map_or(Timestamp::MIN, |z| z.timestamp())
    }

    fn plan_group(
        &self,
        environment: &str,
        kind: BackupKind,
        mut members: Vec<&BackupSummary>,
        now: Timestamp,
    ) -> Vec<RetentionDecision> {
        members.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        let n = members.len();
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut protected = vec![false; n];
        let verified: Vec<usize> = (0..n).filter(|&i| members[i].is_verified()).collect();

        // 1. Protections.
        let mut protect = |i: usize, why: String, reasons: &mut Vec<Vec<String>>| {
            protected[i] = true;
            reasons[i].push(why);
        };
        if let Some(&i) = verified.first() {
            protect(
                i,
                "newest verified backup of the group".into(),
                &mut reasons,
            );
        }
        for (i, b) in members.iter().enumerate() {
            if b.pinned {
                protect(i, "pinned".into(), &mut reasons);
            }
        }
        for d in self
            .deployments
            .iter()
            .filter(|d| d.environment == environment)
        {
            let role = d.role.as_str();
            if let Some(id) = &d.backup_id
                && let Some(i) = members.iter().position(|b| &b.id == id)
            {
                protect(
                    i,
                    format!("the {role} deployment ran on this backup"),
                    &mut reasons,
                );
            }
            if let Some(commit) = &d.commit
                && let Some(&i) = verified
                    .iter()
                    .find(|&&i| members[i].commit.as_deref() == Some(commit.as_str()))
            {
                protect(
                    i,
                    format!(
                        "newest verified backup of the {role} deployed commit {}",
                        short(commit)
                    ),
                    &mut reasons,
                );
            }
        }

        let rules = self.rules.get(&kind);
        let Some(rules) = rules.filter(|r| !r.is_empty()) else {
            return self.keep_rest(members, reasons, protected, |_| {
                format!("no retention rules for {kind} backups: every one is kept")
            });
        };
        let Some(&newest) = verified.first() else {
            return self.keep_rest(members, reasons, protected, |_| {
                "the group has no verified backup: nothing is removed until one verifies".into()
            });
        };
        let reference = members[newest].created_at.min(now);

        // 2. Rules, over verified backups only.
        if let Some(count) = rules.last {
            for (k, &i) in verified.iter().take(count as usize).enumerate() {
                reasons[i].push(format!("keep-last {}/{count}", k + 1));
            }
        }
        if let Some(span) = rules.within {
            let cutoff = self.minus(reference, span);
            for &i in &verified {
                if members[i].created_at >= cutoff {
                    reasons[i].push(format!("keep-within {span:#}"));
                }
            }
        }
        for (period, count) in rules.periods() {
            let mut seen = HashSet::new();
            for &i in &verified {
                let label = period.label(members[i].created_at, &self.time_zone);
                if seen.contains(&label) {
                    continue;
                }
                if seen.len() >= count as usize {
                    break;
                }
                seen.insert(label.clone());
                reasons[i].push(format!("{period} {}/{count} ({label})", seen.len()));
            }
        }
        for &i in &verified {
            if let Some(expires) = members[i].expires_at
                && expires > reference
            {
                reasons[i].push(format!("its own expiry is {expires}"));
            }
        }

        // 1 (cont.). The floor of verified backups.
        let kept_verified = verified.iter().filter(|&&i| !reasons[i].is_empty()).count();
        let floor = self.min_verified as usize;
        if kept_verified < floor {
            let extra: Vec<usize> = verified
                .iter()
                .copied()
                .filter(|&i| reasons[i].is_empty())
                .take(floor - kept_verified)
                .collect();
            for i in extra {
                protected[i] = true;
                reasons[i].push(format!(
                    "min-verified {floor}: the floor of verified backups"
                ));
            }
        }

        // 3. Forensic window of unverified and failed backups.
        let grace_cutoff = self.minus(reference, self.failed_grace);
        let grace = self.failed_grace;
        for (i, b) in members.iter().enumerate() {
            if b.is_verified() {
                continue;
            }
            let state = failed_state(b);
            if b.created_at >= grace_cutoff {
                reasons[i].push(format!(
                    "{state}: kept for forensics (failed-grace {grace:#})"
                ));
            }
        }

        members
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (action, why) = if reasons[i].is_empty() {
                    let why = if b.is_verified() {
                        format!("no keep rule matched ({})", rules.describe())
                    } else {
                        format!(
                            "{}, and older than the forensic window (failed-grace {grace:#})",
                            failed_state(b)
                        )
                    };
                    (RetentionAction::Remove, vec![why])
                } else {
                    (RetentionAction::Keep, std::mem::take(&mut reasons[i]))
                };
                decision(b, action, protected[i], why)
            })
            .collect()
    }

    /// Keeps every member, with the protections found and `why` for the others.
    fn keep_rest(
        &self,
        members: Vec<&BackupSummary>,
        mut reasons: Vec<Vec<String>>,
        protected: Vec<bool>,
        why: impl Fn(&BackupSummary) -> String,
    ) -> Vec<RetentionDecision> {
        members
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut r = std::mem::take(&mut reasons[i]);
                r.push(why(b));
                decision(b, RetentionAction::Keep, protected[i], r)
            })
            .collect()
    }
}

fn failed_state(b: &BackupSummary) -> &'static str {
    match b.verified {
        Some(false) => "its latest verification failed",
        _ => "never verified",
    }
}

fn decision(
    b: &BackupSummary,
    action: RetentionAction,
    protected: bool,
    reasons: Vec<String>,
) -> RetentionDecision {
    RetentionDecision {
        id: b.id.clone(),
        environment: b.environment.clone(),
        kind: b.kind,
        created_at: b.created_at,
        verified: b.verified,
        action,
        protected,
        reasons,
    }
}

/// The first 12 characters of a commit, as `git log --oneline` would show it.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl RetentionPolicy for KeepPolicy {
    fn plan(&self, backups: &[BackupSummary], now: Timestamp) -> RetentionPlan {
        let mut groups: BTreeMap<(&str, BackupKind), Vec<&BackupSummary>> = BTreeMap::new();
        for b in backups {
            groups
                .entry((b.environment.as_str(), b.kind))
                .or_default()
                .push(b);
        }
        let decisions = groups
            .into_iter()
            .flat_map(|((env, kind), members)| self.plan_group(env, kind, members, now))
            .collect();
        RetentionPlan { decisions }
    }
}
