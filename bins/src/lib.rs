//! The `pre-deploy` binary's library half: argument parsing, output rendering and exit codes.
//! Each subcommand calls one `deploy-gate` function.

// These shadow std's macros in every module below: output that cannot be written is dropped,
// never a panic (see `out.rs`).
macro_rules! println {
    () => { $crate::out::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { $crate::out::stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

mod all;
mod cli;
mod config_cmd;
#[cfg(test)]
mod doc_commands;
mod generate;
mod github;
mod metrics;
mod notify;
mod out;
mod progress;
mod prune;
mod render;
mod report;
mod restore;

use std::process::ExitCode;

use clap::Parser;
use deploy_gate::{
    AutoRetention, BackupOutcome, BackupRequest, CheckQuery, CliOverrides, Deployed,
    ExitCode as Code, Gate, GateError, Manifest, RestoreRequest, Rollback, RunEnd, RunEvents,
    RunReport, RunRequest, Settings, detect_deploy_info, parse_duration, parse_level,
    run_deploy_command_watched,
};

use crate::cli::{BackupArgs, Cli, Command};
use crate::render::Output;

/// Entry point: never panics on bad input; every failure maps to a documented exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Code::Usage.code()
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let events_ndjson = cli.global.events == Some(cli::EventsFormat::Ndjson);
    let step_summary = github::detect();
    progress::install(
        cli.global.progress,
        events_ndjson,
        cli.global.quiet,
        step_summary
            .clone()
            .map(|s| s as std::sync::Arc<dyn backup_core::progress::Observer>),
    );
    let out = Output {
        // The events stream ends with the result, as with --json.
        json: cli.global.json || events_ndjson,
        quiet: cli.global.quiet,
        facts: notify::Facts::default(),
    };
    let command = command_name(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pre-deploy: cannot start the async runtime: {e}");
            return ExitCode::from(Code::Internal.code());
        }
    };
    let is_run = matches!(cli.command, Command::Run { .. });
    let metrics = metrics::MetricsRequest::from_cli(&cli);
    let code = runtime.block_on(async {
        // `[notify]`: the ping's start before the command, its outcome after (the walks of
        // `--all` and `status` alert per project and environment themselves).
        let alert = match notify::single_command(&cli) {
            Some(command) => notify::start_single(&cli, command).await,
            None => None,
        };
        let result = dispatch(cli, &out).await;
        if let Err(e) = &result {
            out.error(e, is_run);
        }
        if let Some(alert) = alert {
            alert.finish(&result, &out.facts).await;
        }
        let code = match &result {
            Ok(code) => *code,
            Err(e) => e.exit_code().code(),
        };
        if let Some(summary) = &step_summary {
            summary.finish(&github::Ending {
                command,
                code,
                error: result
                    .as_ref()
                    .err()
                    .map(|e| (notify::error_chain(e), e.hint().map(str::to_owned))),
                facts: out.facts.get(),
            });
        }
        code
    });
    if let Some(m) = metrics {
        runtime.block_on(m.write(code));
    }
    ExitCode::from(code)
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PREDEPLOY_LOG").unwrap_or_else(|_| {
        let deps = if verbose > 1 { level } else { "warn" };
        tracing_subscriber::EnvFilter::new(format!(
            "{deps},pre_deploy={level},bins={level},deploy_gate={level},backup_core={level},backup_postgres={level},backup_objectstore={level},backup_verify={level},backup_mysql={level}"
        ))
    });
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // https://no-color.org: set and not empty.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter)
        // Colour codes only for a terminal: never in a CI log, a file or a pipe.
        .with_ansi(terminal && !no_color)
        .with_target(false)
        .with_level(verbose > 0);
    // A person at a terminal sees the time; a log file or CI log needs it on every line.
    if terminal {
        builder.without_time().init();
    } else {
        builder.with_timer(UtcSeconds).init();
    }
}

/// Log line times: UTC, to the second.
struct UtcSeconds;

impl tracing_subscriber::fmt::time::FormatTime for UtcSeconds {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&progress::now())
    }
}

/// The command's name in summaries.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Run { .. } => "run",
        Command::Backup { .. } => "backup",
        Command::List => "list",
        Command::Show { .. } => "show",
        Command::Verify { .. } => "verify",
        Command::Check { .. } => "check",
        Command::Status { .. } => "status",
        Command::Prune(_) => "prune",
        Command::Pin { .. } => "pin",
        Command::Unpin { .. } => "unpin",
        Command::Doctor => "doctor",
        Command::Restore(_) => "restore",
        Command::Report { .. } => "report",
        Command::Config => "config",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
}

pub(crate) fn overrides(cli: &Cli, backup: Option<&BackupArgs>) -> CliOverrides {
    CliOverrides {
        config: cli.global.config.clone(),
        store: cli.global.store.clone(),
        sources: cli.global.sources.clone(),
        env: cli.global.env.clone(),
        project: cli.global.project.clone(),
        verify_level: backup.and_then(|b| b.verify_level.clone()),
        zstd_level: backup.and_then(|b| b.zstd_level),
        verify_restore_url: cli.global.verify_restore_url.clone(),
        wait_lock: cli.global.wait_lock.clone(),
    }
}

fn settings(cli: &Cli, backup: Option<&BackupArgs>) -> Result<Settings, GateError> {
    let workdir = std::env::current_dir().map_err(|e| GateError::Internal {
        message: format!("cannot read the working directory: {e}"),
    })?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Settings::resolve(&overrides(cli, backup), &env, &workdir)
}

async fn dispatch(cli: Cli, out: &Output) -> Result<u8, GateError> {
    match &cli.command {
        Command::Run {
            backup,
            rollback,
            fresh,
            command,
        } => {
            let settings = settings(&cli, Some(backup))?;
            settings.require_sources()?;
            let expire_in = prune::expire_in(backup)?;
            let gate = Gate::from_settings(&settings, true)?.with_expire_in(expire_in);
            let request = BackupRequest {
                kind: backup_core_kind("pre-deploy"),
                deploy: detect_deploy_info(&settings.workdir, backup.app_version.clone()),
            };
            let restores = RestoreRequest::from_settings(&settings, "");
            let run = RunRequest {
                backup: &request,
                retention: settings.retention.as_ref(),
                workdir: Some(&settings.workdir),
                rollback: rollback.rollback_on_failure.then_some(Rollback {
                    restores: &restores,
                    terminate_connections: rollback.terminate_connections,
                }),
                fresh: *fresh,
            };
            let events = CliRun {
                out,
                rollback_on_failure: rollback.rollback_on_failure,
                unchanged: std::sync::Mutex::new(None),
            };
            let workdir = &settings.workdir;
            // The lock covers the deploy command too: one deploy per environment at a time.
            let report = gate
                .run(
                    &run,
                    |ctx| async move {
                        tracing::info!("running the deploy command: {}", command.join(" "));
                        run_deploy_command_watched(command, &ctx.env, workdir, ctx.lock_lost).await
                    },
                    &events,
                )
                .await?;
            render_run(&gate, report, rollback, out)
        }
        Command::Backup {
            backup,
            kind,
            all: true,
        } => all::backup_all(&cli, backup, kind.as_deref(), out).await,
        Command::Backup { backup, kind, .. } => {
            let settings = settings(&cli, Some(backup))?;
            settings.require_sources()?;
            let expire_in = prune::expire_in(backup)?;
            let gate = Gate::from_settings(&settings, true)?.with_expire_in(expire_in);
            let request = BackupRequest {
                kind: backup_core_kind(kind.as_deref().unwrap_or("manual")),
                deploy: detect_deploy_info(&settings.workdir, backup.app_version.clone()),
            };
            let report = gate
                .commands()
                .backup(&request, settings.retention.as_ref())
                .await?;
            out.backup_done(&gate, &report.outcome, None);
            prune::report_retention(&report.outcome, &report.retention);
            Ok(0)
        }
        Command::List => {
            let gate = Gate::from_settings(&settings(&cli, None)?, false)?;
            out.list(&gate, &gate.commands().list().await?);
            Ok(0)
        }
        Command::Show { backup } => {
            let gate = Gate::from_settings(&settings(&cli, None)?, false)?;
            out.show(&gate.commands().show(backup).await?);
            Ok(0)
        }
        Command::Verify {
            backup,
            all,
            level,
            recovery_key,
        } => {
            let level = level.as_deref().map(parse_level).transpose()?;
            if let Some(path) = recovery_key {
                let ids = backup_core::encryption::Identities::from_file(path).map_err(|e| {
                    GateError::Usage {
                        message: format!("--recovery-key: {e}"),
                    }
                })?;
                // Only this key opens the backups now, whatever the configuration names.
                backup_core::encryption::override_identities(ids);
            }
            if *all && let Some(code) = all::verify_all(&cli, level, out).await? {
                return Ok(code);
            }
            let gate = Gate::from_settings(&settings(&cli, None)?, false)?;
            // Under the retention lock: records must not land in a backup being removed.
            let records = gate.commands().verify(backup, *all, level).await?;
            out.verified(&records);
            Ok(0)
        }
        Command::Check {
            commit,
            max_age,
            level,
        } => {
            let settings = settings(&cli, None)?;
            let query = CheckQuery {
                commit: commit.clone(),
                max_age: max_age
                    .as_deref()
                    .map(|s| parse_duration("--max-age", s))
                    .transpose()?,
                level: match level {
                    Some(l) => parse_level(l)?,
                    None => settings.verify_required,
                },
            };
            let gate = Gate::from_settings(&settings, false)?;
            out.checked(&gate.commands().check(&query).await?);
            Ok(0)
        }
        Command::Status { max_age } => all::status(&cli, max_age, out).await,
        Command::Prune(args) => prune::prune(&cli, args, out).await,
        Command::Pin { backup, note } => prune::pin(&cli, backup, note.clone(), out).await,
        Command::Unpin { backup } => prune::unpin(&cli, backup, out).await,
        Command::Doctor => {
            let gate = Gate::from_settings(&settings(&cli, None)?, true)?;
            let report = gate.commands().doctor().await;
            out.doctor(&report);
            Ok(if report.ok() {
                0
            } else {
                Code::Preflight.code()
            })
        }
        Command::Restore(args) => restore::restore(&cli, args, out).await,
        Command::Report { html } => report::report(&cli, html, out).await,
        Command::Config => config_cmd::config(&cli, out),
        Command::Completions { shell } => Ok(generate::completions(*shell)),
        Command::Man => Ok(generate::man()),
    }
}

/// What `run` prints as it goes: the verified backup before the deploy starts, then the deploy's
/// end and the way back.
struct CliRun<'a> {
    out: &'a Output,
    rollback_on_failure: bool,
    /// What was proven when the run reused a backup of unchanged sources.
    unchanged: std::sync::Mutex<Option<String>>,
}

impl RunEvents for CliRun<'_> {
    fn backed_up(
        &self,
        gate: &Gate,
        outcome: &BackupOutcome,
        last_deployment: Option<&std::path::Path>,
        retention: &AutoRetention,
    ) {
        let unchanged = self.unchanged.lock().ok().and_then(|u| u.clone());
        self.out
            .backup_done_or_reused(gate, outcome, last_deployment, unchanged.as_deref());
        prune::report_retention(outcome, retention);
    }

    fn unchanged(&self, _gate: &Gate, _outcome: &BackupOutcome, proof: &str) {
        if let Ok(mut u) = self.unchanged.lock() {
            *u = Some(proof.to_owned());
        }
        if !self.out.quiet {
            eprintln!("pre-deploy: no new backup: {proof} (pass --fresh to take one anyway)");
        }
    }

    fn deploy_finished(&self, gate: &Gate, manifest: &Manifest, deployed: &Deployed) {
        if let Some(w) = &deployed.record_warning {
            eprintln!(
                "pre-deploy: warning: the deploy succeeded, but it could not be recorded for retention: {w}"
            );
        }
        self.out.deploy_done(manifest.id.as_str(), deployed.code);
        if deployed.lock_lost.is_none() {
            restore::print_runbook(gate, manifest, self.out);
            if deployed.code != 0 && self.rollback_on_failure {
                eprintln!(
                    "pre-deploy: the deploy command failed (exit {}): rolling back to backup {} (--rollback-on-failure)",
                    deployed.code, manifest.id
                );
            }
        }
    }
}

/// The end of `run`: the rollback's outcome, or the lock lost while the deploy ran.
fn render_run(
    gate: &Gate,
    report: RunReport,
    rollback: &cli::RollbackArgs,
    out: &Output,
) -> Result<u8, GateError> {
    let final_code = report.exit_code();
    let manifest = &report.backup.manifest;
    let d = match report.end {
        RunEnd::NotStarted(e) => {
            // The backup stands; the operator still gets the way back.
            restore::print_runbook(gate, manifest, out);
            return Err(e);
        }
        RunEnd::Deployed(d) => d,
    };
    let code = d.code;
    let Some(why) = &d.lock_lost else {
        if let Some(r) = &d.rollback {
            restore::print_rollback(r, code);
        }
        return Ok(final_code);
    };
    // The lease was lost: say so loudly; no deployment record, no rollback (another run may
    // hold the lock and be backing up or deploying now); exit 9 when the command succeeded,
    // else its own code.
    let id = manifest.id.to_string();
    restore::print_runbook(gate, manifest, out);
    eprintln!(
        "pre-deploy: LOCK LOST: the lock of environment {} was lost while the deploy command ran \
         ({why}); another run may have deployed at the same time. The deployment on backup {id} \
         was NOT recorded; check what ran (deploy logs, `pre-deploy list`).",
        gate.environment()
    );
    if code != 0 && rollback.rollback_on_failure {
        eprintln!(
            "pre-deploy: ROLLBACK SKIPPED: the deploy command failed (exit {code}), but without \
             the lock a rollback could overwrite what another run is doing; roll back by hand \
             with the commands above once no other run is deploying"
        );
    }
    if out.json {
        crate::progress::print_result(&serde_json::json!({
            "ok": false,
            "exit_code": final_code,
            "refused": false,
            "deploy_ran": true,
            "deploy_exit_code": code,
            "lock_lost": true,
            "lock_lost_reason": why,
            "deployment_recorded": false,
            "rollback_skipped": code != 0 && rollback.rollback_on_failure,
            "backup_id": id,
        }));
    }
    eprintln!("pre-deploy: exiting {final_code}: the lock was lost while the deploy command ran");
    Ok(final_code)
}

pub(crate) fn backup_core_kind(kind: &str) -> deploy_gate::BackupKind {
    match kind {
        "scheduled" => deploy_gate::BackupKind::Scheduled,
        "pre-deploy" => deploy_gate::BackupKind::PreDeploy,
        _ => deploy_gate::BackupKind::Manual,
    }
}
