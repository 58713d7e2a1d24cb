//! [`environment_report`]: what the store says about one project/environment, gathered for
//! `pre-deploy report` — the backup timeline (kind, verification, pin, deployment), the last
//! verification of each source, and what retention would remove next (a dry-run plan: nothing
//! is ever removed here). The binary renders it as HTML; `--json` prints it as is.

use std::collections::BTreeMap;

use backup_core::{
    BackupId, BackupKind, BudgetViolation, FindingStatus, RetentionDecision, VerificationLevel,
};
use jiff::Timestamp;
use serde::Serialize;

use crate::error::Result;
use crate::gate::Gate;
use crate::retention::RetentionSettings;

/// One project/environment as the report shows it: see [`environment_report`].
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentReport {
    /// The project (`None`: the top level of the config).
    pub project: Option<String>,
    /// The environment.
    pub environment: String,
    /// The store's display name (credentials redacted).
    pub store: String,
    /// When the report was gathered.
    pub generated_at: Timestamp,
    /// Every readable backup of the environment, newest first.
    pub backups: Vec<ReportBackup>,
    /// The last verification of each source, by source name.
    pub sources: Vec<SourceVerification>,
    /// What a `prune` would remove now; `None` when no retention rules are configured (then
    /// nothing is ever pruned).
    pub retention: Option<RetentionForecast>,
}

/// One backup in the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct ReportBackup {
    /// Its id.
    pub id: BackupId,
    /// Why it was taken.
    pub kind: BackupKind,
    /// When it started.
    pub created_at: Timestamp,
    /// How long it took, start to last artifact, in seconds.
    pub duration_seconds: f64,
    /// Stored (compressed) bytes, every source.
    pub stored_bytes: u64,
    /// Uncompressed bytes, every source.
    pub raw_bytes: u64,
    /// The names of its sources.
    pub sources: Vec<String>,
    /// The outcome of its latest verification (`None`: never verified).
    pub verified: Option<bool>,
    /// The level its latest verification reached.
    pub level_reached: Option<VerificationLevel>,
    /// When it was last verified.
    pub verified_at: Option<Timestamp>,
    /// True when it is pinned (retention never removes it).
    pub pinned: bool,
    /// The note of its pin, when it has one.
    pub pin_note: Option<String>,
    /// The commit it protects (the working tree's when it was taken).
    pub commit: Option<String>,
    /// The branch it protects.
    pub branch: Option<String>,
    /// When a deploy ran on it successfully (the newest, when several did).
    pub deployed_at: Option<Timestamp>,
    /// The commit that deploy recorded.
    pub deployed_commit: Option<String>,
    /// Until when retention keeps it whatever its rules say (`--expire-in`).
    pub expires_at: Option<Timestamp>,
}

/// The newest verification that covered a source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceVerification {
    /// The source's name.
    pub source: String,
    /// Its kind, as its manifest entry records it (`mysql`, `bucket`, …).
    pub kind: String,
    /// Where it is read from, without credentials.
    pub location: String,
    /// The backup that verification was about.
    pub backup_id: BackupId,
    /// When it finished.
    pub verified_at: Timestamp,
    /// The level reached.
    pub level_reached: Option<VerificationLevel>,
    /// Whether it passed.
    pub passed: bool,
    /// Why the level reached is below the one asked for, when it is.
    pub limited_by: Option<String>,
    /// The failed checks of this source, in words.
    pub failures: Vec<String>,
}

/// What retention would remove next, planned as `prune` (without `--yes`) plans it.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionForecast {
    /// The rules of each kind, in words.
    pub rules: BTreeMap<BackupKind, String>,
    /// The time zone of periods.
    pub time_zone: String,
    /// How many backups the plan keeps.
    pub kept: usize,
    /// The backups it would remove, with the reasons.
    pub removals: Vec<RetentionDecision>,
    /// How the plan exceeds the deletion budget (`prune --yes` alone would refuse it).
    pub budget_violations: Vec<BudgetViolation>,
    /// Things the operator should know (unreadable manifests, …).
    pub warnings: Vec<String>,
}

/// Gathers the report of `gate`'s environment (of `project`, for the label): its backups
/// with their verification, pin and deployment, the last verification of each source, and the
/// dry-run plan of `retention`. Reads only: nothing is written, locked or removed.
///
/// # Errors
///
/// [`crate::GateError::Store`] when the store cannot be listed or a record cannot be read.
pub async fn environment_report(
    gate: &Gate,
    project: Option<&str>,
    retention: Option<&RetentionSettings>,
) -> Result<EnvironmentReport> {
    let inventory = gate.inventory();
    let listings = inventory.list().await?;
    let pins = inventory.pinned_ids().await?;
    let deployments = inventory.deployments().await?;
    let mut backups = Vec::with_capacity(listings.len());
    let mut sources: Vec<SourceVerification> = Vec::new();
    for b in &listings {
        let m = &b.manifest;
        let v = b.last_verification.as_ref();
        let pinned = pins.contains(&m.id);
        let pin_note = match pinned {
            true => inventory.read_pin(&m.id).await?.and_then(|p| p.note),
            false => None,
        };
        // Records are newest first: the first one naming the backup is its latest deploy.
        let deployed = deployments.iter().find(|d| d.backup_id == m.id);
        backups.push(ReportBackup {
            id: m.id.clone(),
            kind: m.kind,
            created_at: m.created_at,
            duration_seconds: m
                .finished_at
                .duration_since(m.created_at)
                .as_secs_f64()
                .max(0.0),
            stored_bytes: m.stored_size(),
            raw_bytes: m
                .sources
                .iter()
                .flat_map(|s| &s.artifacts)
                .map(|a| a.raw_size)
                .sum(),
            sources: m.sources.iter().map(|s| s.name.to_string()).collect(),
            verified: v.map(|v| v.passed),
            level_reached: v.and_then(|v| v.level_reached),
            verified_at: v.map(|v| v.verified_at),
            pinned,
            pin_note,
            commit: m.deploy.commit.clone(),
            branch: m.deploy.branch.clone(),
            deployed_at: deployed.map(|d| d.deployed_at),
            deployed_commit: deployed.and_then(|d| d.commit.clone()),
            expires_at: m.expires_at,
        });
        // Backups are newest first, but a later re-verification of an older backup can be the
        // newest verification of a source: keep the newest by time.
        let Some(v) = v else { continue };
        for s in &m.sources {
            let name = s.name.to_string();
            let entry = SourceVerification {
                source: name.clone(),
                kind: s.kind.clone(),
                location: s.location.clone(),
                backup_id: m.id.clone(),
                verified_at: v.verified_at,
                level_reached: v.level_reached,
                passed: v.passed,
                limited_by: v.limited_by.clone(),
                failures: v
                    .report
                    .findings
                    .iter()
                    .filter(|f| {
                        f.status == FindingStatus::Failed
                            && f.source.as_deref().is_none_or(|fs| fs == name)
                    })
                    .map(|f| f.message.clone())
                    .collect(),
            };
            match sources.iter_mut().find(|e| e.source == name) {
                Some(e) if e.verified_at < entry.verified_at => *e = entry,
                Some(_) => {}
                None => sources.push(entry),
            }
        }
    }
    sources.sort_by(|a, b| a.source.cmp(&b.source));
    let retention = match retention {
        Some(settings) => {
            let plan = gate.pruner().plan_retention(settings, &[]).await?;
            Some(RetentionForecast {
                rules: plan.rules,
                time_zone: plan.time_zone,
                kept: plan.plan.keeps().count(),
                removals: plan.plan.removals().cloned().collect(),
                budget_violations: plan.budget_violations,
                warnings: plan.warnings,
            })
        }
        None => None,
    };
    Ok(EnvironmentReport {
        project: project.map(str::to_owned),
        environment: gate.environment().to_owned(),
        store: gate.store_name().to_owned(),
        generated_at: gate.scope().clock.now(),
        backups,
        sources,
        retention,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use backup_core::testkit::MemoryStore;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_store_reports_no_backups_and_no_retention_without_rules() {
        let gate = Gate::new(Arc::new(MemoryStore::new()), "production", vec![], vec![]);
        let r = environment_report(&gate, Some("shop"), None)
            .await
            .expect("report");
        assert_eq!(r.project.as_deref(), Some("shop"));
        assert_eq!(r.environment, "production");
        assert!(r.backups.is_empty() && r.sources.is_empty());
        assert!(r.retention.is_none());
        let with_rules = environment_report(&gate, None, Some(&RetentionSettings::default()))
            .await
            .expect("report");
        let forecast = with_rules.retention.expect("a forecast");
        assert!(forecast.removals.is_empty());
        assert_eq!(forecast.kept, 0);
    }
}
