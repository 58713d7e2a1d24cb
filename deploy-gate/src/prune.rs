//! Retention against a store: plan (always, with reasons), guard (protections checked again,
//! the deletion budget), then remove (only when asked), crash-safe.
//!
//! A backup is removed manifest first: from that moment it no longer exists (listing skips
//! directories without a manifest), so a crash part-way leaves an incomplete directory, never a
//! half-deleted backup that looks whole. Its data, verification records and pin go next.
//! `prune --yes` also collects what such crashes (and interrupted uploads) leave behind:
//! backup directories without a manifest untouched for [`LEFTOVER_GRACE_DAYS`] days, and pins of
//! backups that no longer exist.
//!
//! Content-addressed bucket blobs (`blobs/sha256/…`, `blobs/sealed/…`) are collected by [`Pruner::collect_blobs`]:
//! a blob goes only when no remaining manifest's index references it and it is older than
//! [`DEFAULT_BLOB_GRACE_HOURS`] hours (a backup still uploading has not written its manifest
//! yet), and never when some manifest or index could not be read.

use std::collections::{BTreeMap, BTreeSet};

use backup_core::{
    BackupId, BackupKind, BackupSummary, BudgetViolation, DeletionBudget, DeployedRelease,
    KeepRules, RetentionPlan, RetentionPolicy, StoreExt, layout,
};
use backup_objectstore::bucket::{
    BlobGcPlan, DEFAULT_BLOB_GRACE_HOURS, apply_blob_gc, plan_blob_gc,
};
use jiff::SignedDuration;
use serde::Serialize;

use crate::backups::BackupOutcome;
use crate::deployments::protected_releases;
use crate::error::{GateError, Result};
use crate::inventory::Inventory;
use crate::retention::RetentionSettings;
use crate::scope::Scope;

/// How long an incomplete backup directory (no manifest) must have been untouched before
/// `prune --yes` removes it: far longer than any upload, so a backup in progress is never hit.
pub const LEFTOVER_GRACE_DAYS: i64 = 7;

/// What a prune is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// The kinds to consider; empty: every kind.
    pub kinds: Vec<BackupKind>,
    /// Rules replacing the configured ones for those kinds (`--keep-…` flags).
    pub rules: Option<KeepRules>,
    /// Remove what the plan says (`--yes`); otherwise a dry run.
    pub apply: bool,
    /// Apply even when the plan exceeds the deletion budget (`--force`).
    pub force: bool,
}

/// A backup the plan removes that was left in place when it came to it.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedRemoval {
    /// The backup.
    pub id: BackupId,
    /// Why it was left.
    pub reason: String,
}

/// What a prune planned and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// The environment pruned.
    pub environment: String,
    /// The store's display name.
    pub store: String,
    /// The time zone of periods.
    pub time_zone: String,
    /// The rules of each kind considered, in words.
    pub rules: BTreeMap<BackupKind, String>,
    /// The deployments whose backups are protected.
    pub deployments: Vec<DeployedRelease>,
    /// Every decision, with its reasons.
    pub plan: RetentionPlan,
    /// How the plan exceeds the deletion budget, if it does.
    pub budget_violations: Vec<BudgetViolation>,
    /// True when nothing was to be removed because this is a dry run.
    pub dry_run: bool,
    /// True when the plan exceeded the budget without `--force`, so nothing was removed.
    pub refused: bool,
    /// The backups removed, oldest first.
    pub removed: Vec<BackupId>,
    /// Removals left out at the last moment (pinned meanwhile).
    pub skipped: Vec<SkippedRemoval>,
    /// Incomplete backup directories and stale pins removed.
    pub leftovers_removed: Vec<String>,
    /// Unreferenced bucket blobs: what would go (dry run) or went, when the store has blobs.
    pub blobs: Option<BlobGcPlan>,
    /// Blobs removed.
    pub blobs_removed: u64,
    /// Things the operator should know (unreadable manifests, leftovers that could not go).
    pub warnings: Vec<String>,
}

impl PruneReport {
    /// The error for a refused run (exit 2, saying how to force it), if it was refused.
    pub fn refusal(&self) -> Option<GateError> {
        if !self.refused {
            return None;
        }
        let why: Vec<&str> = self
            .budget_violations
            .iter()
            .map(|v| v.message.as_str())
            .collect();
        Some(GateError::usage(format!(
            "retention refused to remove {} backup(s): {}; nothing was removed. Check the plan \
             above, then run again with --force to apply it (or raise max-delete-share / \
             max-delete-count in [retention])",
            self.plan.removals().count(),
            why.join("; ")
        )))
    }
}

/// What the automatic retention after a backup did; it never fails the backup or the deploy.
#[derive(Debug, Clone, Default)]
pub struct AutoRetention {
    /// The prune, when one ran.
    pub report: Option<PruneReport>,
    /// Problems, for the operator: retention failed or refused, and nothing more was removed.
    pub warnings: Vec<String>,
}

/// Retention and garbage collection in a [`Scope`]: see [`crate::Gate::pruner`].
#[derive(Debug, Clone, Copy)]
pub struct Pruner<'g> {
    pub(crate) scope: &'g Scope,
}

impl Pruner<'_> {
    fn inventory(&self) -> Inventory<'_> {
        Inventory { scope: self.scope }
    }

    /// The retention view of every readable backup of this environment, of `kinds` (every kind
    /// when empty), with warnings for backups that could not be read (those are never removed).
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when the store cannot be listed or a verification record cannot be
    /// read: a plan on partial information could remove a backup it should keep.
    pub async fn retention_summaries(
        &self,
        kinds: &[BackupKind],
    ) -> Result<(Vec<BackupSummary>, Vec<String>)> {
        let store_err = |context: String| move |source| GateError::Store { context, source };
        let pins = self.inventory().pinned_ids().await?;
        let ids = self
            .scope
            .store
            .list_backup_ids()
            .await
            .map_err(store_err(format!(
                "cannot list {}",
                self.scope.store.name()
            )))?;
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for id in ids {
            let manifest = match self.scope.store.read_manifest(&id).await {
                Ok(m) => m,
                Err(e) if e.is_not_found() => continue, // removed meanwhile
                Err(e) => {
                    warnings.push(format!("backup {id} is left alone: {e}"));
                    continue;
                }
            };
            if manifest.environment != self.scope.environment
                || !(kinds.is_empty() || kinds.contains(&manifest.kind))
            {
                continue;
            }
            let verified = self
                .scope
                .store
                .read_verifications(&id)
                .await
                .map_err(store_err(format!("cannot read the verifications of {id}")))?
                .last()
                .map(|r| r.passed);
            let pinned = pins.contains(&id);
            out.push(BackupSummary::from_manifest(&manifest, verified, pinned));
        }
        Ok((out, warnings))
    }

    /// Plans retention for this environment with any `policy`, without removing anything: the
    /// plan is checked against the protections (independently of the policy) and `budget`.
    /// The report names no rules, time zone or deployments (those are the configured policy's;
    /// see [`Pruner::plan_retention`]). Apply it with [`Pruner::apply`].
    ///
    /// # Errors
    ///
    /// As [`Pruner::retention_summaries`]; [`GateError::Internal`] when the plan would remove a
    /// pinned backup or the newest verified backup of a group.
    pub async fn plan_with(
        &self,
        policy: &dyn RetentionPolicy,
        budget: &DeletionBudget,
        kinds: &[BackupKind],
    ) -> Result<PruneReport> {
        let (summaries, warnings) = self.retention_summaries(kinds).await?;
        let plan = policy.plan(&summaries, self.scope.clock.now());
        check_protections(&summaries, &plan)?;
        Ok(PruneReport {
            environment: self.scope.environment.clone(),
            store: self.scope.store.name().to_owned(),
            time_zone: "UTC".into(),
            rules: BTreeMap::new(),
            deployments: Vec::new(),
            budget_violations: budget.check(&plan),
            plan,
            dry_run: true,
            refused: false,
            removed: Vec::new(),
            skipped: Vec::new(),
            leftovers_removed: Vec::new(),
            blobs: None,
            blobs_removed: 0,
            warnings,
        })
    }

    /// Plans retention for this environment with the configured rules (protecting the
    /// backups of the current and previous deployment), without removing anything.
    ///
    /// # Errors
    ///
    /// As [`Pruner::plan_with`].
    pub async fn plan_retention(
        &self,
        settings: &RetentionSettings,
        kinds: &[BackupKind],
    ) -> Result<PruneReport> {
        let deployments = protected_releases(&self.inventory().deployments().await?);
        let policy = settings.policy(deployments.clone());
        let mut report = self.plan_with(&policy, &settings.budget, kinds).await?;
        let considered: BTreeSet<BackupKind> =
            report.plan.decisions.iter().map(|d| d.kind).collect();
        report.rules = settings
            .rules
            .iter()
            .filter(|(k, _)| considered.contains(k) || kinds.contains(k) || kinds.is_empty())
            .map(|(k, r)| (*k, r.describe()))
            .collect();
        report.time_zone.clone_from(&settings.time_zone_name);
        report.deployments = deployments;
        Ok(report)
    }

    /// Removes what a plan of [`Pruner::plan_with`] or [`Pruner::plan_retention`] says,
    /// oldest first, each backup manifest first — unless the plan exceeds its deletion budget
    /// and `force` is not set (then the report says `refused` and nothing is removed).
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when a removal fails (the message names the backups removed before
    /// it; the one that failed has lost at most its manifest, so it no longer counts as a
    /// backup).
    pub async fn apply(&self, report: &mut PruneReport, force: bool) -> Result<()> {
        report.dry_run = false;
        if !report.budget_violations.is_empty() && !force {
            report.refused = true;
            return Ok(());
        }
        self.apply_removals(report).await
    }

    /// Plans retention and, with `options.apply`, removes what the plan says, unless it exceeds
    /// the deletion budget and `options.force` is not set (then the report says `refused` and
    /// nothing is removed). With `options.rules`, those rules replace the configured ones for
    /// `options.kinds`.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] when there are no rules at all (no `[retention]` and no flags);
    /// as [`Pruner::plan_retention`]; [`GateError::Store`] when a removal fails (the message names
    /// the backups removed before it; the one that failed has lost at most its manifest, so it
    /// no longer counts as a backup).
    pub async fn prune(
        &self,
        settings: Option<&RetentionSettings>,
        options: &PruneOptions,
    ) -> Result<PruneReport> {
        let settings = match (settings, options.rules) {
            (_, Some(rules)) => settings
                .cloned()
                .unwrap_or_default()
                .with_rules_for(&options.kinds, rules)?,
            (Some(s), None) => s.clone(),
            (None, None) => {
                return Err(GateError::usage(
                    "no retention rules: add a [retention] table to the config file (e.g. \
                     [retention.pre-deploy] keep-last = 5) or give --keep-last, --keep-within, \
                     --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly or --keep-yearly",
                ));
            }
        };
        let mut report = self.plan_retention(&settings, &options.kinds).await?;
        if options.apply {
            self.apply(&mut report, options.force).await?;
        }
        Ok(report)
    }

    /// Collects what crashes and interrupted uploads leave behind (store-wide, every
    /// environment): backup directories without a manifest whose objects are all older than
    /// [`LEFTOVER_GRACE_DAYS`] days, and pins of backups that no longer exist. Best effort:
    /// problems become warnings in `report`.
    pub async fn collect_leftovers(&self, report: &mut PruneReport) {
        let now = self.scope.clock.now();
        let cutoff = now - SignedDuration::from_hours(24 * LEFTOVER_GRACE_DAYS);
        let dirs = match self.scope.store.list_dirs(layout::BACKUPS_DIR).await {
            Ok(d) => d,
            Err(e) => {
                report
                    .warnings
                    .push(format!("cannot look for incomplete backups: {e}"));
                return;
            }
        };
        for dir in dirs {
            let Ok(id) = dir.parse::<BackupId>() else {
                continue;
            };
            let prefix = layout::backup_prefix(&id);
            let result = async {
                if self
                    .scope
                    .store
                    .head(&layout::manifest_key(&id))
                    .await?
                    .is_some()
                    || id.timestamp() > cutoff
                {
                    return Ok(false);
                }
                let objects = self.scope.store.list(&prefix).await?;
                if objects.iter().any(|o| o.last_modified > cutoff) {
                    return Ok(false);
                }
                self.scope.store.delete_prefix(&prefix).await.map(|_| true)
            }
            .await;
            match result {
                Ok(true) => {
                    tracing::info!("removed the incomplete backup directory {prefix}");
                    report.leftovers_removed.push(prefix);
                }
                Ok(false) => {}
                Err(e) => report
                    .warnings
                    .push(format!("cannot remove the incomplete backup {prefix}: {e}")),
            }
        }
        let pins = match self.inventory().pinned_ids().await {
            Ok(p) => p,
            Err(e) => {
                report.warnings.push(format!("cannot list the pins: {e}"));
                return;
            }
        };
        for id in pins {
            let key = layout::pin_key(&id);
            let result = async {
                if self
                    .scope
                    .store
                    .head(&layout::manifest_key(&id))
                    .await?
                    .is_some()
                {
                    return Ok(false);
                }
                self.scope.store.delete(&key).await.map(|()| true)
            }
            .await;
            match result {
                Ok(true) => report.leftovers_removed.push(key),
                Ok(false) => {}
                Err(e) => report
                    .warnings
                    .push(format!("cannot remove the stale pin {key}: {e}")),
            }
        }
    }

    /// Collects bucket blobs no remaining backup references, older than the grace period
    /// ([`DEFAULT_BLOB_GRACE_HOURS`]). With `apply`, after the plan's backups were removed, the
    /// blobs go; without it (a dry run), the report says how many blobs and bytes would go once
    /// the planned removals are made. When any manifest or index cannot be read, nothing is
    /// collected and a warning says why. Best effort: problems become warnings in `report`.
    ///
    /// Blobs are shared by every environment, so a collection that deletes holds the
    /// store-wide blob collection lease from before its plan until its last delete, and backups
    /// that store or reuse blobs (any environment) hold a blob lease until their manifest is
    /// committed: the two exclude each other (see `backup_objectstore::bucket::apply_blob_gc`).
    /// When a backup holds one, nothing is collected this time and a warning says which.
    pub async fn collect_blobs(&self, report: &mut PruneReport, apply: bool) {
        let lease = if apply {
            match self.scope.lock_blob_collector().await {
                Ok(lease) => Some(lease),
                Err(backup_objectstore::LockError::Held { holder, .. }) => {
                    report.warnings.push(format!(
                        "unreferenced blobs were not collected this time: a backup in \
                         environment {:?} is using blobs ({}); run prune again later",
                        holder.lease.environment,
                        holder.lease.describe()
                    ));
                    return;
                }
                Err(e) => {
                    report
                        .warnings
                        .push(format!("unreferenced blobs were not collected: {e}"));
                    return;
                }
            }
        } else {
            None
        };
        self.collect_blobs_leased(report, lease.as_ref()).await;
        if let Some(lease) = lease {
            self.scope.unlock(lease).await;
        }
    }

    /// [`Pruner::collect_blobs`] under the collection lease (`None`: a dry run).
    async fn collect_blobs_leased(
        &self,
        report: &mut PruneReport,
        lease: Option<&backup_objectstore::LockGuard>,
    ) {
        let excluded: BTreeSet<BackupId> = if lease.is_some() {
            BTreeSet::new()
        } else {
            report.plan.removals().map(|d| d.id.clone()).collect()
        };
        let grace = SignedDuration::from_hours(DEFAULT_BLOB_GRACE_HOURS);
        let plan = match plan_blob_gc(
            self.scope.store.as_ref(),
            &excluded,
            grace,
            self.scope.clock.now(),
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                report
                    .warnings
                    .push(format!("cannot look for unreferenced blobs: {e}"));
                return;
            }
        };
        if let Some(why) = &plan.blocked {
            report.warnings.push(format!(
                "unreferenced blobs were not collected, because {why}"
            ));
        } else if let Some(lease) = lease
            && !plan.keys.is_empty()
        {
            backup_core::hooks::pause_at("blob-gc-planned").await;
            match apply_blob_gc(self.scope.store.as_ref(), &plan, lease).await {
                Ok(n) => report.blobs_removed = n,
                Err(e) => report.warnings.push(format!(
                    "removing unreferenced blobs failed part-way: {}",
                    backup_objectstore::error_chain(&e)
                )),
            }
        }
        if plan.blobs > 0 {
            report.blobs = Some(plan);
        }
    }

    /// The automatic retention after a new backup verified: prunes the new backup's group
    /// (its environment and kind) with the configured rules, never forced. Does nothing without
    /// a `[retention]` table or without rules for that kind. Never fails: problems come back as
    /// warnings and remove nothing more.
    pub async fn retain_after_backup(
        &self,
        settings: Option<&RetentionSettings>,
        outcome: &BackupOutcome,
    ) -> AutoRetention {
        let kind = outcome.manifest.kind;
        let Some(settings) = settings.filter(|s| s.rules.contains_key(&kind)) else {
            return AutoRetention::default();
        };
        if !outcome.verification.passed {
            return AutoRetention {
                report: None,
                warnings: vec![format!(
                    "retention did not run: backup {} did not pass verification",
                    outcome.manifest.id
                )],
            };
        }
        let options = PruneOptions {
            kinds: vec![kind],
            rules: None,
            apply: true,
            force: false,
        };
        // Removals exclude pin, unpin and verify of this environment's backups; those are short,
        // and retention after a backup never waits: it runs again after the next one.
        let retention_lock = match self
            .scope
            .lock_retention(
                &self.scope.environment,
                "retention",
                std::time::Duration::ZERO,
            )
            .await
        {
            Ok(g) => g,
            Err(e) => {
                return AutoRetention {
                    report: None,
                    warnings: vec![format!("retention did not run this time: {e}")],
                };
            }
        };
        let pruned = self.prune(Some(settings), &options).await;
        self.scope.unlock(retention_lock).await;
        match pruned {
            Ok(report) => {
                let mut warnings = report.warnings.clone();
                if report.refused {
                    let why: Vec<&str> = report
                        .budget_violations
                        .iter()
                        .map(|v| v.message.as_str())
                        .collect();
                    warnings.push(format!(
                        "retention did not remove anything: {}; review with `pre-deploy prune \
                         --kind {kind}` and apply with `pre-deploy prune --kind {kind} --yes --force`",
                        why.join("; ")
                    ));
                }
                AutoRetention {
                    report: Some(report),
                    warnings,
                }
            }
            Err(e) => AutoRetention {
                report: None,
                warnings: vec![format!(
                    "retention failed and removed nothing more: {}",
                    backup_objectstore::error_chain(&e)
                )],
            },
        }
    }

    /// Removes the plan's removals, oldest first, each one manifest first.
    async fn apply_removals(&self, report: &mut PruneReport) -> Result<()> {
        let mut removals: Vec<(jiff::Timestamp, BackupId)> = report
            .plan
            .removals()
            .map(|d| (d.created_at, d.id.clone()))
            .collect();
        removals.sort();
        for (_, id) in removals {
            // A pin made since the plan was read wins.
            let pinned = self
                .scope
                .store
                .head(&layout::pin_key(&id))
                .await
                .map_err(|source| GateError::Store {
                    context: format!("cannot check the pin of {id}"),
                    source,
                })?
                .is_some();
            if pinned {
                report.skipped.push(SkippedRemoval {
                    id,
                    reason: "pinned since the plan was made".into(),
                });
                continue;
            }
            self.delete_backup(&id)
                .await
                .map_err(|source| GateError::Store {
                    context: format!(
                        "removed {} backup(s) ({}), then failed to remove {id}",
                        report.removed.len(),
                        join_ids(&report.removed)
                    ),
                    source,
                })?;
            tracing::debug!("removed backup {id}");
            report.removed.push(id);
        }
        Ok(())
    }

    /// Removes one backup: the manifest first (the backup disappears as a unit), then its data
    /// and verification records, then its pin.
    pub(crate) async fn delete_backup(&self, id: &BackupId) -> backup_core::Result<()> {
        self.scope.store.delete(&layout::manifest_key(id)).await?;
        self.scope
            .store
            .delete_prefix(&layout::backup_prefix(id))
            .await?;
        self.scope.store.delete(&layout::pin_key(id)).await
    }
}

fn join_ids(ids: &[BackupId]) -> String {
    let ids: Vec<&str> = ids.iter().map(BackupId::as_str).collect();
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

/// Checks, independently of the policy, that `plan` removes neither a pinned backup nor the
/// newest verified backup of a group.
fn check_protections(summaries: &[BackupSummary], plan: &RetentionPlan) -> Result<()> {
    let mut newest: BTreeMap<(&str, BackupKind), &BackupSummary> = BTreeMap::new();
    for s in summaries.iter().filter(|s| s.is_verified()) {
        let slot = newest.entry((s.environment.as_str(), s.kind)).or_insert(s);
        if (s.created_at, &s.id) > (slot.created_at, &slot.id) {
            *slot = s;
        }
    }
    for d in plan.removals() {
        let pinned = summaries.iter().any(|s| s.id == d.id && s.pinned);
        let is_newest = newest
            .get(&(d.environment.as_str(), d.kind))
            .is_some_and(|s| s.id == d.id);
        if pinned || is_newest {
            return Err(GateError::Internal {
                message: format!(
                    "the retention plan would remove the protected backup {}; nothing was removed",
                    d.id
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
