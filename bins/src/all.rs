//! The commands that walk every configured project and environment: `backup --all`,
//! `verify --all` and `status`. Each pair runs on its own (its own settings, store, lock and
//! group); one failure does not stop the others; a closing summary says which failed, and the
//! exit code is the first failure's (0 when all passed).

use deploy_gate::{
    BackupRequest, CheckQuery, CliOverrides, Gate, GateError, Settings, Target, detect_deploy_info,
    parse_duration,
};
use serde_json::{Value, json};

use crate::cli::{BackupArgs, Cli};
use crate::notify::Alert;
use crate::render::Output;
use crate::{backup_core_kind, overrides, prune};

/// What one project/environment came to.
struct Outcome {
    target: Target,
    result: Result<(String, Value), GateError>,
}

/// The process environment, as the settings read it.
fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn workdir() -> Result<std::path::PathBuf, GateError> {
    std::env::current_dir().map_err(|e| GateError::Internal {
        message: format!("cannot read the working directory: {e}"),
    })
}

/// The targets of the command line, and the settings of one of them.
pub(crate) struct Walk {
    base: CliOverrides,
    workdir: std::path::PathBuf,
    pub(crate) targets: Vec<Target>,
}

impl Walk {
    pub(crate) fn new(cli: &Cli, backup: Option<&BackupArgs>) -> Result<Walk, GateError> {
        let base = overrides(cli, backup);
        let workdir = workdir()?;
        let targets = deploy_gate::targets(&base, &env, &workdir)?;
        Ok(Walk {
            base,
            workdir,
            targets,
        })
    }

    pub(crate) fn settings(&self, t: &Target) -> Result<Settings, GateError> {
        let mut o = self.base.clone();
        o.project.clone_from(&t.project);
        o.env = Some(t.environment.clone());
        Settings::resolve(&o, &env, &self.workdir)
    }

    /// Whether the walk is the single environment a command without projects always had.
    pub fn is_single_plain(&self) -> bool {
        self.targets.len() == 1 && self.targets[0].project.is_none()
    }

    /// The alert of `command` on `t` (`[notify]` of its project and environment), its ping's
    /// start sent; `None` when nothing is configured or its settings do not resolve (the
    /// target then fails and says why).
    async fn alert(&self, command: &'static str, t: &Target) -> Option<Alert> {
        let settings = self.settings(t).ok()?;
        Alert::start(command, t.project.clone(), &settings).await
    }
}

/// Whether `verify --all` walks projects and environments (else it is the single plain
/// environment, verified as without `--all`, and alerted as a single command).
pub fn verify_walks(cli: &Cli) -> Result<bool, GateError> {
    Walk::new(cli, None).map(|w| !w.is_single_plain())
}

/// Per-target output: the usual text on stderr, nothing on stdout when the summary is JSON.
fn per_target(out: &Output) -> Output {
    Output {
        json: false,
        quiet: out.quiet || out.json,
        facts: crate::notify::Facts::default(),
    }
}

fn announce(out: &Output, verb: &str, t: &Target) {
    if !out.quiet && !out.json {
        eprintln!("== {}: {verb}", t.label());
    }
}

/// `backup --all`.
pub async fn backup_all(
    cli: &Cli,
    backup: &BackupArgs,
    kind: Option<&str>,
    out: &Output,
) -> Result<u8, GateError> {
    let walk = Walk::new(cli, Some(backup))?;
    let per = per_target(out);
    let expire_in = prune::expire_in(backup)?;
    let mut outcomes = Vec::new();
    for t in &walk.targets {
        announce(out, "backing up", t);
        let alert = walk.alert("backup", t).await;
        let result = async {
            let settings = walk.settings(t)?;
            settings.require_sources()?;
            let gate = Gate::from_settings(&settings, true)?.with_expire_in(expire_in);
            let request = BackupRequest {
                kind: backup_core_kind(kind.unwrap_or("scheduled")),
                deploy: detect_deploy_info(&settings.workdir, backup.app_version.clone()),
            };
            let report = gate
                .commands()
                .backup(&request, settings.retention.as_ref())
                .await?;
            per.backup_done(&gate, &report.outcome, None);
            prune::report_retention(&report.outcome, &report.retention);
            let m = &report.outcome.manifest;
            let level = report
                .outcome
                .verification
                .level_reached
                .map_or_else(|| "none".to_owned(), |l| l.to_string());
            Ok((
                format!(
                    "backup {} verified to level {level}, {}",
                    m.id,
                    deploy_gate::human_bytes(m.stored_size())
                ),
                json!({
                    "id": m.id,
                    "store": gate.store_name(),
                    "stored_bytes": m.stored_size(),
                    "level_reached": report.outcome.verification.level_reached,
                    "snapshot_seconds": report.outcome.snapshot_seconds,
                }),
            ))
        }
        .await;
        if let Err(e) = &result {
            per.error(e, false);
        }
        if let Some(alert) = alert {
            alert.finish_target(&result).await;
        }
        outcomes.push(Outcome {
            target: t.clone(),
            result,
        });
    }
    Ok(summary(out, "backup --all", &outcomes))
}

/// `verify --all`: every backup of every target. `None` when the walk is the single plain
/// environment (the caller keeps its usual output then).
pub async fn verify_all(
    cli: &Cli,
    level: Option<deploy_gate::VerificationLevel>,
    out: &Output,
) -> Result<Option<u8>, GateError> {
    let walk = Walk::new(cli, None)?;
    if walk.is_single_plain() {
        return Ok(None);
    }
    let per = per_target(out);
    let mut outcomes = Vec::new();
    for t in &walk.targets {
        announce(out, "verifying every backup", t);
        let alert = walk.alert("verify", t).await;
        let result = async {
            let gate = Gate::from_settings(&walk.settings(t)?, false)?;
            let records = gate.commands().verify("last", true, level).await?;
            if !per.quiet {
                per.verified(&records);
            }
            Ok((
                format!("{} backup(s) verified", records.len()),
                json!({ "verifications": records }),
            ))
        }
        .await;
        if let Err(e) = &result {
            per.error(e, false);
        }
        if let Some(alert) = alert {
            alert.finish_target(&result).await;
        }
        outcomes.push(Outcome {
            target: t.clone(),
            result,
        });
    }
    Ok(Some(summary(out, "verify --all", &outcomes)))
}

/// `status --max-age`: the newest verified backup of every target is young enough.
pub async fn status(cli: &Cli, max_age: &str, out: &Output) -> Result<u8, GateError> {
    let max_age = parse_duration("--max-age", max_age)?;
    let walk = Walk::new(cli, None)?;
    let mut outcomes = Vec::new();
    for t in &walk.targets {
        let alert = walk.alert("status", t).await;
        let result = async {
            let settings = walk.settings(t)?;
            let gate = Gate::from_settings(&settings, false)?;
            let query = CheckQuery {
                commit: None,
                max_age: Some(max_age),
                level: settings.verify_required,
            };
            let c = gate.commands().check(&query).await?;
            let level = c
                .verification
                .level_reached
                .map_or_else(|| "none".to_owned(), |l| l.to_string());
            Ok((
                format!(
                    "backup {} verified to level {level} at {}",
                    c.manifest.id, c.verification.verified_at
                ),
                json!({
                    "id": c.manifest.id,
                    "created_at": c.manifest.created_at,
                    "verified_at": c.verification.verified_at,
                    "level_reached": c.verification.level_reached,
                }),
            ))
        }
        .await;
        if let Some(alert) = alert {
            alert.finish_target(&result).await;
        }
        outcomes.push(Outcome {
            target: t.clone(),
            result,
        });
    }
    Ok(summary(out, "status", &outcomes))
}

/// Prints what each target came to (a JSON document with `--json`) and returns the exit code:
/// 0 when all passed, else the first failure's.
fn summary(out: &Output, command: &str, outcomes: &[Outcome]) -> u8 {
    for o in outcomes {
        crate::metrics::record(
            &o.target,
            o.result
                .as_ref()
                .map_or_else(|e| e.exit_code().code(), |_| 0),
        );
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let code = outcomes
        .iter()
        .find_map(|o| o.result.as_ref().err())
        .map_or(0, |e| e.exit_code().code());
    if out.json {
        let results: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                let mut v = json!({
                    "project": o.target.project,
                    "environment": o.target.environment,
                    "ok": o.result.is_ok(),
                });
                match &o.result {
                    Ok((_, detail)) => {
                        if let (Some(v), Value::Object(d)) = (v.as_object_mut(), detail) {
                            v.extend(d.clone());
                        }
                    }
                    Err(e) => {
                        v["exit_code"] = json!(e.exit_code().code());
                        v["error"] = json!(e.to_string());
                        v["hint"] = json!(e.hint());
                    }
                }
                v
            })
            .collect();
        crate::progress::print_result(&json!({
            "ok": failed == 0,
            "command": command,
            "exit_code": code,
            "results": results,
        }));
        return code;
    }
    let width = outcomes
        .iter()
        .map(|o| o.target.label().len())
        .max()
        .unwrap_or(0);
    let mut lines = vec![format!(
        "pre-deploy {command}: {} of {} passed",
        outcomes.len() - failed,
        outcomes.len()
    )];
    for o in outcomes {
        let label = o.target.label();
        lines.push(match &o.result {
            Ok((text, _)) => format!("  ok      {label:width$}  {text}"),
            Err(e) => format!(
                "  FAILED  {label:width$}  exit {}: {e}",
                e.exit_code().code()
            ),
        });
    }
    // The result of `status` is its output; for the others it closes the log on stderr.
    // With --quiet, nothing when all passed (cron mails any output).
    if command == "status" && (!out.quiet || failed > 0) {
        println!("{}", lines.join("\n"));
    } else if command != "status" && (!out.quiet || failed > 0) {
        eprintln!("{}", lines.join("\n"));
    }
    code
}
