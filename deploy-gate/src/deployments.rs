//! Deployment records: after a deploy command succeeds, `run` appends
//! `deployments/<env>/<timestamp>.json` naming the commit and the backup it ran on. Retention
//! protects the backups of the current and the previous deployment.

use backup_core::{
    BackupId, DeployInfo, DeployedRelease, DeploymentRole, MAX_DOCUMENT_SIZE, Manifest, StoreExt,
    ToolInfo, WriteMode, layout,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{GateError, Result};
use crate::inventory::Inventory;

/// The format of deployment records this version writes.
pub const DEPLOYMENT_FORMAT_VERSION: u32 = 1;

/// One successful deploy, as recorded in the store (append-only, never rewritten).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// [`DEPLOYMENT_FORMAT_VERSION`] when written by this version.
    pub format_version: u32,
    /// The environment deployed to.
    pub environment: String,
    /// When the deploy command finished successfully.
    pub deployed_at: Timestamp,
    /// The backup taken right before it.
    pub backup_id: BackupId,
    /// The deployed commit, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The deployed branch, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The deployed tag, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The host the deploy ran on.
    pub host: String,
    /// The tool that wrote the record.
    pub tool: ToolInfo,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Inventory<'_> {
    /// Records that the deploy protected by `manifest` succeeded: appends
    /// `deployments/<env>/<now>.json` (create-only).
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when the record cannot be written. Callers that already deployed
    /// should report it as a warning: the deploy itself succeeded.
    pub async fn record_deployment(&self, manifest: &Manifest) -> Result<DeploymentRecord> {
        self.record_deployment_of(manifest, &manifest.deploy).await
    }

    /// Records that release `deploy` was deployed protected by backup `manifest` (a backup taken
    /// for an earlier release, when the sources had not changed since; see
    /// [`crate::Backups::unchanged_backup`]).
    ///
    /// # Errors
    ///
    /// As [`Inventory::record_deployment`].
    pub async fn record_deployment_of(
        &self,
        manifest: &Manifest,
        deploy: &DeployInfo,
    ) -> Result<DeploymentRecord> {
        let record = DeploymentRecord {
            format_version: DEPLOYMENT_FORMAT_VERSION,
            environment: self.scope.environment.clone(),
            deployed_at: self.scope.clock.now(),
            backup_id: manifest.id.clone(),
            commit: deploy.commit.clone(),
            branch: deploy.branch.clone(),
            tag: deploy.tag.clone(),
            host: self.scope.host.clone(),
            tool: ToolInfo::current(),
            extra: Map::new(),
        };
        let key = layout::deployment_key(&self.scope.environment, record.deployed_at);
        let store_err = |source| GateError::Store {
            context: format!("cannot record the deployment in {key}"),
            source,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| GateError::Internal {
            message: format!("cannot serialize the deployment record: {e}"),
        })?;
        self.scope
            .store
            .put_bytes(&key, json.into(), WriteMode::CreateOnly)
            .await
            .map_err(store_err)?;
        tracing::debug!("recorded the deployment in {key}");
        Ok(record)
    }

    /// Every readable deployment record of this gate's environment, newest first. Unreadable
    /// records are skipped with a warning.
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when the store cannot be listed or read.
    pub async fn deployments(&self) -> Result<Vec<DeploymentRecord>> {
        let prefix = layout::deployments_prefix(&self.scope.environment);
        let store_err = |source| GateError::Store {
            context: format!("cannot read the deployment records under {prefix}"),
            source,
        };
        let mut out = Vec::new();
        for obj in self.scope.store.list(&prefix).await.map_err(store_err)? {
            let bytes = self
                .scope
                .store
                .get_small(&obj.key, MAX_DOCUMENT_SIZE)
                .await
                .map_err(store_err)?;
            match serde_json::from_slice::<DeploymentRecord>(&bytes) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!("skipping the unreadable deployment record {}: {e}", obj.key)
                }
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.deployed_at));
        Ok(out)
    }
}

/// The deployments whose backups retention protects, from records newest first: the current
/// one (the newest record) and the previous one (the newest record of another commit; the next
/// record when commits are unknown).
pub fn protected_releases(records: &[DeploymentRecord]) -> Vec<DeployedRelease> {
    let Some(current) = records.first() else {
        return Vec::new();
    };
    let release = |r: &DeploymentRecord, role| DeployedRelease {
        environment: r.environment.clone(),
        role,
        commit: r.commit.clone(),
        backup_id: Some(r.backup_id.clone()),
    };
    let mut out = vec![release(current, DeploymentRole::Current)];
    let previous = records[1..]
        .iter()
        .find(|r| current.commit.is_none() || r.commit != current.commit);
    if let Some(previous) = previous {
        out.push(release(previous, DeploymentRole::Previous));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: &str, commit: Option<&str>, suffix: u8) -> DeploymentRecord {
        let at: Timestamp = at.parse().expect("time");
        DeploymentRecord {
            format_version: 1,
            environment: "prod".into(),
            deployed_at: at,
            backup_id: BackupId::from_parts(at, [0, 0, suffix]),
            commit: commit.map(str::to_owned),
            branch: None,
            tag: None,
            host: "h".into(),
            tool: ToolInfo::current(),
            extra: Map::new(),
        }
    }

    #[test]
    fn current_and_previous_are_the_two_newest_commits() {
        assert!(protected_releases(&[]).is_empty());
        let records = vec![
            record("2026-11-05T00:00:00Z", Some("c"), 5),
            record("2026-11-04T00:00:00Z", Some("c"), 4), // a redeploy of the same commit
            record("2026-11-03T00:00:00Z", Some("b"), 3),
            record("2026-11-02T00:00:00Z", Some("a"), 2),
        ];
        let p = protected_releases(&records);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].role, DeploymentRole::Current);
        assert_eq!(p[0].backup_id, Some(records[0].backup_id.clone()));
        assert_eq!(p[1].role, DeploymentRole::Previous);
        assert_eq!(p[1].commit.as_deref(), Some("b"));

        let unknown = vec![
            record("2026-11-05T00:00:00Z", None, 5),
            record("2026-11-04T00:00:00Z", None, 4),
        ];
        let p = protected_releases(&unknown);
        assert_eq!(p[1].backup_id, Some(unknown[1].backup_id.clone()));
    }

    #[test]
    fn records_round_trip_and_keep_unknown_fields() {
        let mut r = record("2026-11-05T00:00:00Z", Some("c"), 5);
        r.extra.insert("from_the_future".into(), Value::Bool(true));
        let json = serde_json::to_string(&r).expect("serializes");
        let back: DeploymentRecord = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, r);
    }
}
