//! [`Gate::run`]: the whole "no verified backup, no deploy" sequence as one call — lock, back
//! up, verify, retention, run the deploy, record the deployment, roll back on failure — with
//! the lock held throughout and released on every path.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use backup_core::Manifest;
use backup_core::progress::{Stage, StageKind};

use crate::backups::{BackupOutcome, BackupRequest};
use crate::deploy::{DeployExit, last_deployment_lines, write_last_deployment};
use crate::error::{ExitCode, GateError, Result};
use crate::gate::Gate;
use crate::prune::AutoRetention;
use crate::restore::{RestoreRequest, RollbackReport};
use crate::retention::RetentionSettings;

/// What [`Gate::run`] is asked to do besides the deploy itself.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest<'a> {
    /// The backup to take (its kind and the release it protects).
    pub backup: &'a BackupRequest,
    /// The retention rules applied to the new backup's group once it verified (`None`: none).
    pub retention: Option<&'a RetentionSettings>,
    /// Where `.predeploy/last-deployment` is written (`None`: it is not written).
    pub workdir: Option<&'a Path>,
    /// When the deploy fails, restore every source of the new backup (after a safety backup of
    /// the failed state) with these settings; `None`: no rollback.
    pub rollback: Option<Rollback<'a>>,
    /// `--fresh`: always take a new backup. Without it, a run whose sources provably have not
    /// changed since a backup that passed the required verification deploys on that backup
    /// (see [`crate::Backups::unchanged_backup`]).
    pub fresh: bool,
}

/// `--rollback-on-failure`.
#[derive(Debug, Clone, Copy)]
pub struct Rollback<'a> {
    /// What every restore of the rollback starts from: the configured sources (the targets),
    /// the temp dir and jobs, production ([`RestoreRequest::from_settings`] on the command
    /// line); the backup, source and consent are set by the rollback.
    pub restores: &'a RestoreRequest,
    /// End other sessions on the databases for the swap.
    pub terminate_connections: bool,
}

/// What the deploy gets: the variables to pass on and the lock's loss.
pub struct DeployContext {
    /// The new backup.
    pub manifest: Manifest,
    /// `PREDEPLOY_BACKUP_ID`, `PREDEPLOY_STORE`, `PREDEPLOY_ENV`, for the deploy's environment.
    pub env: Vec<(String, String)>,
    /// Resolves, with the reason, when the run's lock is lost while the deploy runs: another
    /// run may deploy too, so stop (the command runner passes a signal on).
    pub lock_lost: Pin<Box<dyn Future<Output = String> + Send>>,
}

impl std::fmt::Debug for DeployContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployContext")
            .field("manifest", &self.manifest.id)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// Moments of a run worth showing as they happen (the command line prints them); every method
/// has an empty default.
pub trait RunEvents: Send + Sync {
    /// The backup verified, the last-deployment file was written and retention ran; the deploy
    /// starts next.
    fn backed_up(
        &self,
        gate: &Gate,
        outcome: &BackupOutcome,
        last_deployment: Option<&Path>,
        retention: &AutoRetention,
    ) {
        let _ = (gate, outcome, last_deployment, retention);
    }

    /// No source changed since an earlier backup: the run deploys on it instead of taking a
    /// new one (`proof` says what was proven); [`RunEvents::backed_up`] follows.
    fn unchanged(&self, gate: &Gate, outcome: &BackupOutcome, proof: &str) {
        let _ = (gate, outcome, proof);
    }

    /// The deploy ended (before any rollback, which follows when `deployed.code != 0`, a
    /// rollback was asked for and the lock was not lost).
    fn deploy_finished(&self, gate: &Gate, manifest: &Manifest, deployed: &Deployed) {
        let _ = (gate, manifest, deployed);
    }
}

/// No events.
impl RunEvents for () {}

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The verified backup taken for the deploy (or reused, see `unchanged`).
    pub backup: BackupOutcome,
    /// Why no new backup was taken: the sources had not changed since `backup`.
    pub unchanged: Option<String>,
    /// The `.predeploy/last-deployment` file written, if any.
    pub last_deployment_file: Option<PathBuf>,
    /// What retention did after the backup.
    pub retention: AutoRetention,
    /// How the deploy went.
    pub end: RunEnd,
}

/// How the deploy part of a run went.
#[derive(Debug)]
pub enum RunEnd {
    /// The deploy did not start (the lock was lost before it, or it could not be started); the
    /// backup stands.
    NotStarted(GateError),
    /// The deploy ran.
    Deployed(Deployed),
}

/// A deploy that ran.
#[derive(Debug)]
pub struct Deployed {
    /// Its exit code (0: success).
    pub code: i32,
    /// Why the lock counts as lost, when it was lost while the deploy ran (or found lost right
    /// after): another run may have deployed at the same time; nothing was recorded and no
    /// rollback ran.
    pub lock_lost: Option<String>,
    /// Whether the deployment was recorded for retention (a successful deploy under the lock).
    pub recorded: bool,
    /// Why a successful deploy could not be recorded.
    pub record_warning: Option<String>,
    /// The rollback, when the deploy failed and one was asked for (and the lock was held).
    pub rollback: Option<RollbackReport>,
}

impl RunReport {
    /// The process exit code of the run: the deploy's own code; 9 when the lock was lost while
    /// a successful deploy ran; the error's code when the deploy did not start.
    pub fn exit_code(&self) -> u8 {
        match &self.end {
            RunEnd::NotStarted(e) => e.exit_code().code(),
            RunEnd::Deployed(d) if d.lock_lost.is_some() && d.code == 0 => {
                ExitCode::LockLostDuringDeploy.code()
            }
            RunEnd::Deployed(d) => u8::try_from(d.code).unwrap_or(1),
        }
    }
}

impl Gate {
    /// The whole gate: takes the run lock of the environment, backs up and verifies every
    /// source, applies retention, then runs `deploy` — only if the backup verified and the lock
    /// is still held — records a successful deployment, and rolls back a failed one when asked.
    /// The lock is held until the deploy ends and released on every path.
    ///
    /// # Errors
    ///
    /// Before the deploy could start: [`GateError::LockHeld`] (6) when another run holds the
    /// lock, the errors of [`crate::Backups::backup`] (3, 4, 5), and [`GateError::Internal`] when the
    /// last-deployment file cannot be written. Once the backup stands, problems are in the
    /// report ([`RunEnd::NotStarted`]).
    pub async fn run<F, Fut>(
        &self,
        request: &RunRequest<'_>,
        deploy: F,
        events: &dyn RunEvents,
    ) -> Result<RunReport>
    where
        F: FnOnce(DeployContext) -> Fut,
        Fut: Future<Output = Result<DeployExit>>,
    {
        let guard = self
            .scope
            .lock("run", request.backup.deploy.commit.clone())
            .await?;
        let report = self.run_locked(request, &guard, deploy, events).await;
        self.scope.unlock(guard).await;
        report
    }

    async fn run_locked<F, Fut>(
        &self,
        request: &RunRequest<'_>,
        guard: &crate::LockGuard,
        deploy: F,
        events: &dyn RunEvents,
    ) -> Result<RunReport>
    where
        F: FnOnce(DeployContext) -> Fut,
        Fut: Future<Output = Result<DeployExit>>,
    {
        let reuse = match request.fresh {
            true => None,
            false => match self.backups().unchanged_backup().await {
                Ok(found) => Some(found),
                Err(why) => {
                    tracing::info!("taking a new backup: {why}");
                    None
                }
            },
        };
        let (outcome, unchanged) = match reuse {
            Some(found) => {
                events.unchanged(self, &found.outcome, &found.proof);
                (found.outcome, Some(found.proof))
            }
            None => (
                self.backups()
                    .backup_locked(request.backup, Some(guard))
                    .await?,
                None,
            ),
        };
        let last_deployment_file = match request.workdir {
            Some(dir) => {
                let lines = last_deployment_lines(
                    &outcome.manifest,
                    self.store_name(),
                    self.scope.store_url.as_ref(),
                );
                Some(write_last_deployment(dir, &lines)?)
            }
            None => None,
        };
        // A reused backup adds nothing for retention to weigh.
        let retention = match unchanged {
            Some(_) => AutoRetention::default(),
            None => {
                self.pruner()
                    .retain_after_backup(request.retention, &outcome)
                    .await
            }
        };
        events.backed_up(self, &outcome, last_deployment_file.as_deref(), &retention);
        let end = self
            .deploy_under_lock(request, guard, &outcome.manifest, deploy, events)
            .await;
        Ok(RunReport {
            backup: outcome,
            unchanged,
            last_deployment_file,
            retention,
            end,
        })
    }

    /// The part of a run after the backup stands: the deploy (only with the lock), its record,
    /// and the rollback of a failed one.
    async fn deploy_under_lock<F, Fut>(
        &self,
        request: &RunRequest<'_>,
        guard: &crate::LockGuard,
        manifest: &Manifest,
        deploy: F,
        events: &dyn RunEvents,
    ) -> RunEnd
    where
        F: FnOnce(DeployContext) -> Fut,
        Fut: Future<Output = Result<DeployExit>>,
    {
        // Verification and retention can take long: never start the deploy without the lock
        // (exit 6: the deploy did not run; the backup stands).
        if let Err(e) = self.scope.check_lock(guard).await {
            return RunEnd::NotStarted(e);
        }
        let context = DeployContext {
            env: vec![
                ("PREDEPLOY_BACKUP_ID".to_owned(), manifest.id.to_string()),
                ("PREDEPLOY_STORE".to_owned(), self.store_name().to_owned()),
                ("PREDEPLOY_ENV".to_owned(), self.environment().to_owned()),
            ],
            manifest: manifest.clone(),
            lock_lost: Box::pin(guard.lost()),
        };
        let stage = Stage::start(StageKind::Deploy, manifest.id.to_string(), None);
        let exit = match deploy(context).await {
            Ok(exit) => exit,
            Err(e) => {
                stage.fail(&e);
                return RunEnd::NotStarted(e);
            }
        };
        match exit.code {
            0 => stage.succeed(),
            code => stage.fail(format!("the deploy command exited with status {code}")),
        }
        // Lost while the deploy ran, or found lost now: another run may have deployed at the
        // same time, so this deployment is not recorded as if the lock had been held throughout.
        let lock_lost = match exit.lock_lost {
            Some(why) => Some(why),
            None => match self.scope.check_lock(guard).await {
                Ok(()) => None,
                Err(e @ GateError::LockHeld { .. }) => Some(e.to_string()),
                Err(e) => {
                    tracing::warn!("could not check the lock after the deploy: {e}");
                    guard.lost_reason()
                }
            },
        };
        let mut deployed = Deployed {
            code: exit.code,
            lock_lost,
            recorded: false,
            record_warning: None,
            rollback: None,
        };
        if deployed.code == 0 && deployed.lock_lost.is_none() {
            match self
                .inventory()
                .record_deployment_of(manifest, &request.backup.deploy)
                .await
            {
                Ok(_) => deployed.recorded = true,
                Err(e) => deployed.record_warning = Some(e.to_string()),
            }
        }
        events.deploy_finished(self, manifest, &deployed);
        // Without the lock a rollback could overwrite what another run is doing.
        if let (Some(rollback), true, None) = (
            request.rollback,
            deployed.code != 0,
            deployed.lock_lost.as_ref(),
        ) {
            tracing::debug!(
                "the deploy failed (exit {}): rolling back to backup {}",
                deployed.code,
                manifest.id
            );
            deployed.rollback = Some(
                self.restores()
                    .rollback(manifest, rollback.restores, rollback.terminate_connections)
                    .await,
            );
        }
        RunEnd::Deployed(deployed)
    }
}
