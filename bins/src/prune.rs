//! `prune`, `pin` and `unpin`, and the retention steps of `run`/`backup`: arguments, the call
//! into `deploy-gate`, and rendering.

use deploy_gate::{
    AutoRetention, BackupOutcome, Gate, GateError, KeepSection, PruneOptions, PruneReport,
    RetentionDecision, parse_expire_in, parse_kind,
};
use serde_json::json;

use crate::cli::{BackupArgs, Cli, PruneArgs};
use crate::progress::print_result as print_json;
use crate::render::Output;

impl PruneArgs {
    /// The options these flags ask for.
    fn options(&self) -> Result<PruneOptions, GateError> {
        // The flags are the config file's keys for one run: same parsing, same validation.
        let rules = KeepSection {
            keep_last: self.keep_last,
            keep_within: self.keep_within.clone(),
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
        .rules_if_any()?;
        Ok(PruneOptions {
            kinds: self
                .kinds
                .iter()
                .map(|k| parse_kind(k))
                .collect::<Result<_, _>>()?,
            rules,
            apply: self.yes,
            force: self.force,
        })
    }
}

/// `pre-deploy prune`: prints the plan; with `--yes`, applies it. A plan over budget without
/// `--force` exits 2, naming the budget and `--force`.
pub async fn prune(cli: &Cli, args: &PruneArgs, out: &Output) -> Result<u8, GateError> {
    let options = args.options()?;
    let settings = crate::settings(cli, None)?;
    let gate = Gate::from_settings(&settings, false)?;
    // Only a prune that deletes takes the locks (the run lock, then the retention lock that
    // keeps pin, unpin and verify out); a dry run reads.
    let report = gate
        .commands()
        .prune(settings.retention.as_ref(), &options)
        .await?;
    finish_prune(&report, out)
}

/// Prints the plan and maps a refusal onto its exit code.
fn finish_prune(report: &deploy_gate::PruneReport, out: &Output) -> Result<u8, GateError> {
    let refusal = report.refusal();
    out.prune(report, refusal.as_ref());
    match refusal {
        Some(e) if out.json => {
            // The JSON document above already carries the error; say it once on stderr too.
            eprintln!("pre-deploy: error: {e}");
            Ok(e.exit_code().code())
        }
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// `pre-deploy pin ID`.
pub async fn pin(
    cli: &Cli,
    backup: &str,
    note: Option<String>,
    out: &Output,
) -> Result<u8, GateError> {
    let gate = Gate::from_settings(&crate::settings(cli, None)?, false)?;
    // Under the retention lock of the backup's environment.
    let outcome = gate.commands().pin(backup, note).await?;
    if out.json {
        print_json(
            &json!({ "ok": true, "already_pinned": outcome.already_pinned, "pin": outcome.pin }),
        );
    } else if outcome.already_pinned {
        println!(
            "backup {} was already pinned (since {})",
            outcome.pin.backup_id, outcome.pin.pinned_at
        );
    } else {
        println!(
            "pinned backup {}: retention will never remove it (undo with `pre-deploy unpin {}`)",
            outcome.pin.backup_id, outcome.pin.backup_id
        );
    }
    Ok(0)
}

/// `pre-deploy unpin ID`.
pub async fn unpin(cli: &Cli, backup: &str, out: &Output) -> Result<u8, GateError> {
    let gate = Gate::from_settings(&crate::settings(cli, None)?, false)?;
    let outcome = gate.commands().unpin(backup).await?;
    if out.json {
        print_json(
            &json!({ "ok": true, "backup_id": outcome.backup_id, "was_pinned": outcome.was_pinned }),
        );
    } else if outcome.was_pinned {
        println!("unpinned backup {}", outcome.backup_id);
    } else {
        println!("backup {} was not pinned", outcome.backup_id);
    }
    Ok(0)
}

/// `--expire-in` of `run`/`backup`, parsed (before the store is opened or anything is written).
pub fn expire_in(backup: &BackupArgs) -> Result<Option<jiff::Span>, GateError> {
    backup.expire_in.as_deref().map(parse_expire_in).transpose()
}

/// What the automatic retention after `outcome` removed (log) and its warnings (stderr).
pub fn report_retention(outcome: &BackupOutcome, auto: &AutoRetention) {
    if let Some(report) = &auto.report
        && !report.removed.is_empty()
    {
        let ids: Vec<String> = report.removed.iter().map(ToString::to_string).collect();
        tracing::info!(
            "retention removed {} older {} backup(s): {}",
            ids.len(),
            outcome.manifest.kind,
            ids.join(", ")
        );
    }
    for w in &auto.warnings {
        eprintln!("pre-deploy: warning: {w}");
    }
}

fn state(d: &RetentionDecision) -> &'static str {
    match d.verified {
        Some(true) => "verified",
        Some(false) => "FAILED",
        None => "unverified",
    }
}

impl Output {
    /// The plan with every reason, and what was done.
    pub fn prune(&self, r: &PruneReport, refusal: Option<&GateError>) {
        if self.json {
            print_json(&json!({
                "ok": refusal.is_none(),
                "exit_code": refusal.map_or(0, |e| e.exit_code().code()),
                "error": refusal.map(ToString::to_string),
                "dry_run": r.dry_run,
                "over_budget": !r.budget_violations.is_empty(),
                "applied": !r.dry_run && !r.refused,
                "environment": r.environment,
                "store": r.store,
                "time_zone": r.time_zone,
                "rules": r.rules,
                "deployments": r.deployments,
                "decisions": r.plan.decisions,
                "budget_violations": r.budget_violations,
                "removed": r.removed,
                "skipped": r.skipped,
                "leftovers_removed": r.leftovers_removed,
                "blobs": r.blobs,
                "blobs_removed": r.blobs_removed,
                "warnings": r.warnings,
            }));
            return;
        }
        println!(
            "retention plan for environment {:?} in {} (periods in {})",
            r.environment, r.store, r.time_zone
        );
        for (kind, rules) in &r.rules {
            println!("  {kind}: {rules}");
        }
        for d in &r.deployments {
            println!(
                "  protected: the {} deployment (commit {}, backup {})",
                d.role.as_str(),
                d.commit.as_deref().unwrap_or("-"),
                d.backup_id.as_ref().map_or("-".into(), ToString::to_string)
            );
        }
        let groups = r.plan.group_counts();
        if groups.is_empty() {
            println!("\nno backups to consider");
        }
        for ((env, kind), (total, removals)) in &groups {
            println!(
                "\n{kind} ({env}): {total} backup(s), keep {}, remove {removals}",
                total - removals
            );
            for d in r
                .plan
                .decisions
                .iter()
                .filter(|d| &d.environment == env && d.kind == *kind)
            {
                println!(
                    "  {:<6} {}  {:<10}  {}",
                    if d.is_removal() { "remove" } else { "keep" },
                    d.id,
                    state(d),
                    d.reasons.join("; ")
                );
            }
        }
        println!();
        for w in &r.warnings {
            eprintln!("pre-deploy: warning: {w}");
        }
        let planned = r.plan.removals().count();
        if let Some(b) = r.blobs.as_ref().filter(|b| b.blocked.is_none()) {
            let verb = if r.dry_run {
                "would be removed"
            } else {
                "removed"
            };
            println!(
                "blobs: {} stored, {} referenced, {} unreferenced but younger than the grace period; \
                 {} unreferenced ({} bytes) {verb}",
                b.blobs, b.referenced, b.young, b.removable, b.removable_bytes
            );
        }
        if r.dry_run {
            if planned == 0 {
                println!("nothing to remove");
            } else {
                println!(
                    "dry run: nothing was removed; run again with --yes to remove {planned} backup(s)"
                );
            }
            for v in &r.budget_violations {
                println!("note: --yes alone will refuse: {}; add --force", v.message);
            }
            return;
        }
        if refusal.is_some() {
            return;
        }
        println!("removed {} backup(s)", r.removed.len());
        for id in &r.removed {
            println!("removed {id}");
        }
        for s in &r.skipped {
            println!("left {}: {}", s.id, s.reason);
        }
        for l in &r.leftovers_removed {
            println!("removed leftover {l}");
        }
    }
}
