//! [`Restores::rollback`]: `run --rollback-on-failure`.

use backup_core::Manifest;
use serde::Serialize;

use super::Restores;
use super::{RestoreRequest, step};

/// One source put back by a rollback.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    /// The source.
    pub source: String,
    /// Where it was restored (no secrets).
    pub target: String,
    /// The backup restored.
    pub backup_id: String,
    /// The safety backup holding the failed state (none when the target was empty or missing).
    pub safety_backup: Option<String>,
}

/// What `run --rollback-on-failure` did after a failed deploy.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// Each source's restore, or why it failed.
    pub restores: Vec<std::result::Result<RolledBack, String>>,
}

impl RollbackReport {
    /// Whether every source was restored.
    pub fn succeeded(&self) -> bool {
        !self.restores.is_empty() && self.restores.iter().all(std::result::Result::is_ok)
    }
}

impl Restores<'_> {
    /// `run --rollback-on-failure`: restores every source of `manifest` (the backup taken for
    /// this run) where it came from (targets, tools and temp dir from `template`, e.g.
    /// [`RestoreRequest::from_settings`]), each through its backend after a safety backup of the
    /// failed state (databases by the name swap, terminating sessions when
    /// `terminate_connections`; buckets and directories by writing their objects back). Consent is implied by the flag. Never fails:
    /// what went wrong is in the report.
    pub async fn rollback(
        &self,
        manifest: &Manifest,
        template: &RestoreRequest,
        terminate_connections: bool,
    ) -> RollbackReport {
        let mut restores = Vec::new();
        for source in &manifest.sources {
            let mut request = template.clone();
            request.backup = manifest.id.to_string();
            request.source = Some(source.name.to_string());
            request.confirmed = true;
            request.allow_production = true;
            request.terminate_connections = terminate_connections;
            let result = async {
                let plan = self.plan_restore(&request).await?;
                for line in &plan.summary.steps {
                    step(&format!("plan: {line}"));
                }
                let o = self.restore(plan, &request).await?;
                Ok::<_, crate::GateError>(RolledBack {
                    source: o.plan.source,
                    target: o.plan.summary.target,
                    backup_id: o.plan.backup_id,
                    safety_backup: o.safety_backup,
                })
            }
            .await;
            restores.push(result.map_err(|e| format!("source {}: {e}", source.name)));
        }
        RollbackReport { restores }
    }
}
