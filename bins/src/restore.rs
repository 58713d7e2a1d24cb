//! `restore`, and the rollback of `run --rollback-on-failure`: arguments, the confirmation
//! prompt, the calls into `deploy-gate`, and rendering.

use std::io::{BufRead, IsTerminal, Write};

use deploy_gate::{
    CONFIRM_RESTORE_ENV, Gate, GateError, Manifest, RestoreOutcome, RestorePlan, RestoreRequest,
    RollbackReport, Settings,
};
use serde_json::json;

use crate::cli::{Cli, RestoreArgs};
use crate::progress::print_result as print_json;
use crate::render::Output;

/// `pre-deploy restore`.
pub async fn restore(cli: &Cli, args: &RestoreArgs, out: &Output) -> Result<u8, GateError> {
    // The global `--source` defines sources as NAME=URL; here a bare NAME picks the backup's source.
    let (picks, defs): (Vec<String>, Vec<String>) = cli
        .global
        .sources
        .iter()
        .cloned()
        .partition(|s| !s.contains('='));
    if picks.len() > 1 {
        return Err(GateError::Usage {
            message: "restore one source at a time: give --source NAME once".into(),
        });
    }
    let mut overrides = crate::overrides(cli, None);
    overrides.sources = defs;
    let settings = resolve(&overrides)?;
    let gate = Gate::from_settings(&settings, false)?;
    let mut request = RestoreRequest::from_settings(&settings, args.backup.clone());
    request.source = picks.into_iter().next();
    request.to.clone_from(&args.to);
    request.terminate_connections = args.terminate_connections;
    request.allow_production = args.allow_production;
    let plan = gate.commands().plan_restore(&request).await?;
    print_plan(out, &plan, args.dry_run);
    if args.dry_run {
        if out.json {
            print_json(&json!({ "ok": true, "dry_run": true, "plan": plan }));
        }
        return Ok(0);
    }
    request.check_connections(&plan)?;
    request.check_production(&plan)?;
    request.confirmed =
        args.yes || std::env::var(CONFIRM_RESTORE_ENV).is_ok_and(|v| v == "yes") || prompt(&plan)?;
    // Under the run lock: one restore, backup or run per store and environment at a time.
    let outcome = gate.commands().restore(plan, &request).await?;
    print_outcome(out, &outcome);
    Ok(0)
}

/// Asks the operator to type `expected` on the terminal; false without a terminal or on a
/// mismatch.
fn confirm_by_typing(question: &str, expected: &str) -> Result<bool, GateError> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} Type {expected:?} to confirm: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| GateError::Internal {
            message: format!("cannot read the confirmation: {e}"),
        })?;
    if line.trim() == expected {
        Ok(true)
    } else {
        eprintln!("pre-deploy: {:?} is not {expected:?}", line.trim());
        Ok(false)
    }
}

fn resolve(overrides: &deploy_gate::CliOverrides) -> Result<Settings, GateError> {
    let workdir = std::env::current_dir().map_err(|e| GateError::Internal {
        message: format!("cannot read the working directory: {e}"),
    })?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Settings::resolve(overrides, &env, &workdir)
}

/// Asks for the target's name (the database, bucket or directory) on the terminal; false
/// without a terminal or on a mismatch.
fn prompt(plan: &RestorePlan) -> Result<bool, GateError> {
    confirm_by_typing(
        &format!(
            "Restore backup {} into {}?",
            plan.backup_id, plan.summary.target
        ),
        &plan.summary.confirm_name,
    )
}

fn print_plan(out: &Output, plan: &RestorePlan, dry_run: bool) {
    if out.quiet && !dry_run {
        return;
    }
    eprintln!(
        "{}restore backup {} ({}) source {} into {} ({}){}:",
        if dry_run { "dry run: " } else { "" },
        plan.backup_id,
        plan.backup_kind,
        plan.source,
        plan.summary.target,
        format!("{} {}", plan.summary.product, plan.summary.server_version).trim_end(),
        if plan.production {
            ", a PRODUCTION environment"
        } else {
            ""
        }
    );
    for (i, s) in plan.summary.steps.iter().enumerate() {
        eprintln!("  {}. {s}", i + 1);
    }
    for n in &plan.summary.notes {
        eprintln!("  note: {n}");
    }
    if dry_run {
        eprintln!("dry run: nothing was changed");
    }
}

fn print_outcome(out: &Output, o: &RestoreOutcome) {
    out.facts.backup(&o.plan.backup_id, None, None);
    if out.json {
        print_json(&json!({ "ok": true, "restore": o }));
        return;
    }
    if out.quiet {
        return;
    }
    let d = &o.done;
    eprintln!(
        "restored backup {} into {}: {}",
        o.plan.backup_id, o.plan.summary.target, d.summary
    );
    if let Some(id) = &o.safety_backup {
        eprintln!(
            "  safety backup of the previous state: {id} (undo with `pre-deploy restore {id} --source {}`)",
            o.plan.source
        );
    }
    if let (Some(kept), Some(cmd)) = (&d.kept_as, &d.drop_command) {
        eprintln!("  the previous state is kept as {kept}; drop it when you no longer need it:");
        eprintln!("    {cmd}");
    }
    if d.terminated > 0 {
        eprintln!("  terminated {} session(s) for the swap", d.terminated);
    }
    for n in &d.notes {
        eprintln!("  note: {n}");
    }
}

/// The rollback commands on stderr (the `--json` result of `run` carries them as `runbook`).
pub fn print_runbook(gate: &Gate, manifest: &Manifest, out: &Output) {
    if !out.quiet && !out.json {
        eprintln!("to roll back to backup {}:", manifest.id);
        for line in gate.inventory().runbook(manifest).to_text().lines() {
            eprintln!("  {line}");
        }
    }
}

/// What `run --rollback-on-failure` restored, and whether all of it worked.
pub fn print_rollback(report: &RollbackReport, code: i32) {
    for r in &report.restores {
        match r {
            Ok(o) => eprintln!(
                "pre-deploy: rolled back {} to backup {}{}",
                o.target,
                o.backup_id,
                o.safety_backup
                    .as_ref()
                    .map_or_else(String::new, |s| format!(
                        "; the failed state is in safety backup {s}"
                    ))
            ),
            Err(e) => eprintln!("pre-deploy: ROLLBACK FAILED: {e}"),
        }
    }
    if report.succeeded() {
        eprintln!("pre-deploy: rollback done; exiting with the deploy command's code {code}");
    } else {
        eprintln!(
            "pre-deploy: ROLLBACK FAILED: the databases, buckets or directories may hold the failed deploy's state; exiting with the deploy command's code {code}"
        );
    }
}
