//! `--metrics-file`: the node_exporter textfile, written after `backup`, `run`, `verify` and
//! `status`. The values come from the store (see `deploy_gate::render_metrics`), so the file
//! covers every configured project/environment whichever one this run was for.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use deploy_gate::{CliOverrides, Gate, GateError, Settings, Target, TargetMetrics};

use crate::cli::{Cli, Command};

/// The exit code of each target a `--all` walk or `status` covered (see [`record`]).
static WALKED: Mutex<Vec<(Target, u8)>> = Mutex::new(Vec::new());

/// Notes the outcome of one target of a walk, for the metrics of this run.
pub(crate) fn record(target: &Target, code: u8) {
    if let Ok(mut w) = WALKED.lock() {
        w.push((target.clone(), code));
    }
}

/// What is needed to write the file after the command.
pub(crate) struct MetricsRequest {
    path: PathBuf,
    base: CliOverrides,
}

impl MetricsRequest {
    /// `None` unless `--metrics-file` (or `PREDEPLOY_METRICS_FILE`) is given and the command is
    /// one that writes metrics.
    pub(crate) fn from_cli(cli: &Cli) -> Option<MetricsRequest> {
        let path = cli.global.metrics_file.clone()?;
        let backup = match &cli.command {
            Command::Run { backup, .. } | Command::Backup { backup, .. } => Some(backup),
            Command::Verify { .. } | Command::Status { .. } => None,
            _ => return None,
        };
        Some(MetricsRequest {
            path,
            base: crate::overrides(cli, backup),
        })
    }

    /// Writes the file for a run that ended with `code`; a failure to write is a warning (the
    /// command's own exit code stands).
    pub(crate) async fn write(self, code: u8) {
        let text = self.render(code).await;
        if let Err(e) = write_atomically(&self.path, text.as_bytes()) {
            eprintln!(
                "pre-deploy: warning: cannot write the metrics file {}: {e}",
                self.path.display()
            );
        }
    }

    async fn render(&self, code: u8) -> String {
        let workdir = std::env::current_dir().unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        // Every configured target, not only those this command line selects.
        let unfiltered = |k: &str| {
            if k == "PREDEPLOY_PROJECT" || k == "PREDEPLOY_ENV" {
                None
            } else {
                env(k)
            }
        };
        let mut all = CliOverrides {
            project: None,
            env: None,
            ..self.base.clone()
        };
        let mut targets = deploy_gate::targets(&all, &unfiltered, &workdir).unwrap_or_default();
        let mut ran: Vec<(Target, u8)> = WALKED.lock().map(|w| w.clone()).unwrap_or_default();
        if ran.is_empty() {
            // A single-target command: the target its settings name.
            let settings = Settings::resolve(&self.base, &env, &workdir);
            let target = Target {
                project: settings
                    .as_ref()
                    .ok()
                    .and_then(|s| s.project.clone())
                    .or_else(|| {
                        self.base
                            .project
                            .clone()
                            .or_else(|| env("PREDEPLOY_PROJECT"))
                    }),
                environment: settings.map(|s| s.environment).unwrap_or_else(|_| {
                    self.base
                        .env
                        .clone()
                        .or_else(|| env("PREDEPLOY_ENV"))
                        .unwrap_or_else(|| deploy_gate::DEFAULT_ENVIRONMENT.to_owned())
                }),
            };
            ran.push((target, code));
        }
        let previous = std::fs::read_to_string(&self.path)
            .map(|t| deploy_gate::previous_runs(&t))
            .unwrap_or_default();
        // Targets of earlier runs stay in the file, even those only a command line named.
        let earlier = previous.keys().map(|(project, environment)| Target {
            project: project.clone(),
            environment: environment.clone(),
        });
        for t in ran.iter().map(|(t, _)| t.clone()).chain(earlier) {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        let mut metrics = Vec::new();
        for t in targets {
            all.project.clone_from(&t.project);
            all.env = Some(t.environment.clone());
            let backups = match list(&all, &env, &workdir).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!("metrics: cannot list {}: {e}", t.label());
                    Vec::new()
                }
            };
            let last_exit_code = ran
                .iter()
                .find(|(r, _)| *r == t)
                .map(|(_, c)| *c)
                .or_else(|| {
                    previous
                        .get(&(t.project.clone(), t.environment.clone()))
                        .copied()
                });
            metrics.push(TargetMetrics {
                project: t.project,
                environment: t.environment,
                backups,
                last_exit_code,
            });
        }
        deploy_gate::render_metrics(&metrics)
    }
}

async fn list(
    overrides: &CliOverrides,
    env: &dyn Fn(&str) -> Option<String>,
    workdir: &Path,
) -> Result<Vec<deploy_gate::BackupListing>, GateError> {
    let settings = Settings::resolve(overrides, env, workdir)?;
    let gate = Gate::from_settings(&settings, false)?;
    gate.commands().list().await
}

/// Writes `bytes` to `path` so a reader sees the old file or the new one, never a part: a
/// temporary file in the same directory (a hidden `.NAME.PID.tmp`, not named `*.prom`, so the
/// collector skips it), fsync, rename over `path`, fsync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path needs a file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
