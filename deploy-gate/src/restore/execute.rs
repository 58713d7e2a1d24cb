//! [`Restores::restore`]: carrying out a plan through its backend, with the gate's safety net.

use async_trait::async_trait;
use backup_core::progress::{Stage, StageKind};
use backup_core::{
    BackupKind, DeployInfo, DynSnapshotter, RestoreContext, SafetyNet, VerificationLevel,
};

use super::plan::restore_error;
use super::{RestoreOutcome, RestorePlan, RestoreRequest, Restores, step};
use crate::backups::{BackupRequest, BackupSetup, Backups};
use crate::error::Result;
use crate::scope::Scope;

impl Restores<'_> {
    /// Carries out a plan (see the module docs for the contract).
    ///
    /// # Errors
    ///
    /// - [`crate::GateError::Usage`] (2): no consent (see [`RestoreRequest::check_consent`]);
    /// - [`crate::GateError::Preflight`] (5): other sessions without `terminate_connections`,
    ///   an extension the target cannot install;
    /// - [`crate::GateError::Verification`] (4): the backup is damaged; the target is
    ///   untouched;
    /// - [`crate::GateError::Restore`] (8): anything else, with the target's state.
    pub async fn restore(
        &self,
        plan: RestorePlan,
        request: &RestoreRequest,
    ) -> Result<RestoreOutcome> {
        request.check_connections(&plan)?;
        request.check_consent(&plan)?;
        // The caller holds the run lock: `pre-deploy restore` takes it, and `run
        // --rollback-on-failure` restores under the lock its run already holds.
        let net = GateSafetyNet {
            backups: self.backups,
            restoring: plan.backup_id.clone(),
        };
        let ctx = RestoreContext {
            store: self.scope().store.as_ref(),
            safety: &net,
            terminate_connections: request.terminate_connections,
            temp_dir: request.temp_dir.as_deref(),
            jobs: request.jobs.max(1),
            handle_signals: self.scope().handle_signals,
        };
        let stage = Stage::start(StageKind::Restore, plan.backup_id.clone(), None);
        let executed = plan.planned.execute(ctx).await;
        stage.finish(&executed);
        let (done, safety_backup) = executed.map_err(restore_error)?;
        Ok(RestoreOutcome {
            plan,
            safety_backup,
            done,
        })
    }
}

/// The safety backup of a restore target: a backup of kind `safety` in this gate's store and
/// environment, verified to level 3.
struct GateSafetyNet<'g> {
    backups: Backups<'g>,
    /// The backup being restored (recorded in the safety backup).
    restoring: String,
}

#[async_trait]
impl SafetyNet for GateSafetyNet<'_> {
    async fn safety_backup(
        &self,
        snapshotter: DynSnapshotter,
    ) -> std::result::Result<String, String> {
        // The restore handles signals around the whole safety backup.
        let scope = Scope {
            handle_signals: false,
            ..self.backups.scope.clone()
        };
        let setup = BackupSetup {
            pipeline: self.backups.setup.pipeline.clone(),
            ..BackupSetup::new(vec![snapshotter], self.backups.setup.verifiers.clone())
        };
        let backups = Backups {
            scope: &scope,
            setup: &setup,
        };
        let mut deploy = DeployInfo::default();
        deploy.extra.insert(
            "safety_before_restore_of".into(),
            serde_json::Value::String(self.restoring.clone()),
        );
        let outcome = backups
            .backup(&BackupRequest {
                kind: BackupKind::Safety,
                deploy,
            })
            .await
            .map_err(|e| e.to_string())?;
        step(&format!(
            "safety backup {} verified to level {}",
            outcome.manifest.id,
            outcome
                .verification
                .level_reached
                .unwrap_or(VerificationLevel::Archive)
        ));
        Ok(outcome.manifest.id.to_string())
    }
}
