//! [`Gate::rollback`]: `run --rollback-on-failure`.

use backup_core::Manifest;
use serde::Serialize;

use super::{RestoreOutcome, RestoreRequest, step};
use crate::config::Settings;
use crate::gate::Gate;

/// What `run --rollback-on-failure` did after a failed deploy.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// Each source's restore, or why it failed.
    pub restores: Vec<std::result::Result<RestoreOutcome, String>>,
}

impl RollbackReport {
    /// Whether every source was restored.
    pub fn succeeded(&self) -> bool {
        !self.restores.is_empty() && self.restores.iter().all(std::result::Result::is_ok)
    }
}

impl Gate {
    /// `run --rollback-on-failure`: restores every PostgreSQL source of `manifest` (the backup
    /// taken for this run) into the database it came from, each after a safety backup of the
    /// failed state, terminating sessions when `terminate_connections`. Consent is implied by the
    /// flag. Never fails: what went wrong is in the report.
    pub async fn rollback(
        &self,
        manifest: &Manifest,
        settings: &Settings,
        terminate_connections: bool,
    ) -> RollbackReport {
        let mut restores = Vec::new();
        for source in &manifest.sources {
            if source.kind != "postgres" {
                restores.push(Err(format!(
                    "source {}: rolling back {} sources is not supported yet",
                    source.name, source.kind
                )));
                continue;
            }
            let mut request = RestoreRequest::from_settings(settings, manifest.id.to_string());
            request.source = Some(source.name.to_string());
            request.confirmed = true;
            request.allow_production = true;
            request.terminate_connections = terminate_connections;
            let result = async {
                let plan = self.plan_restore(&request).await?;
                for line in &plan.steps {
                    step(&format!("plan: {line}"));
                }
                self.restore(plan, &request).await
            }
            .await;
            restores.push(result.map_err(|e| format!("source {}: {e}", source.name)));
        }
        RollbackReport { restores }
    }
}
