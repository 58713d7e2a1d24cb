//! Backups already in the store: list, resolve `last`, show with a runbook, re-verify.

use backup_core::{BackupId, Manifest, StoreExt, VerificationLevel, VerificationRecord};
use serde::Serialize;

use crate::error::{GateError, Result};
use crate::gate::Gate;
use crate::runbook::{Runbook, runbook};

/// One backup as listed.
#[derive(Debug, Clone, Serialize)]
pub struct BackupListing {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its latest verification, if any.
    pub last_verification: Option<VerificationRecord>,
}

/// Everything about one backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupDetails {
    /// Its manifest.
    pub manifest: Manifest,
    /// Every verification, oldest first.
    pub verifications: Vec<VerificationRecord>,
    /// How to roll back to it.
    pub runbook: Runbook,
}

impl Gate {
    /// Every readable backup of this gate's environment, newest first.
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when the store cannot be listed.
    pub async fn list(&self) -> Result<Vec<BackupListing>> {
        let store_err = |source| GateError::Store {
            context: format!("cannot list {}", self.store.name()),
            source,
        };
        let ids = self.store.list_backup_ids().await.map_err(store_err)?;
        let mut out = Vec::new();
        for id in ids.into_iter().rev() {
            let manifest = match self.store.read_manifest(&id).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("skipping backup {id}: {e}");
                    continue;
                }
            };
            if manifest.environment != self.environment {
                continue;
            }
            let last_verification = self
                .store
                .read_verifications(&id)
                .await
                .map_err(|source| GateError::Store {
                    context: format!("cannot read the verifications of {id}"),
                    source,
                })?
                .pop();
            out.push(BackupListing {
                manifest,
                last_verification,
            });
        }
        Ok(out)
    }

    /// Resolves `last` (the newest backup of this environment) or an id.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] when there is no such backup.
    pub async fn resolve(&self, selector: &str) -> Result<Manifest> {
        if selector == "last" || selector == "latest" {
            let ids = self
                .store
                .list_backup_ids()
                .await
                .map_err(|source| GateError::Store {
                    context: format!("cannot list {}", self.store.name()),
                    source,
                })?;
            for id in ids.into_iter().rev() {
                match self.store.read_manifest(&id).await {
                    Ok(m) if m.environment == self.environment => return Ok(m),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("skipping backup {id}: {e}"),
                }
            }
            return Err(GateError::usage(format!(
                "there is no backup of environment {:?} in {}",
                self.environment,
                self.store.name()
            )));
        }
        let id: BackupId = selector
            .parse()
            .map_err(|e: backup_core::Error| GateError::usage(e.to_string()))?;
        self.store.read_manifest(&id).await.map_err(|e| match e {
            backup_core::Error::NotFound { .. } => {
                GateError::usage(format!("there is no backup {id} in {}", self.store.name()))
            }
            source => GateError::Store {
                context: format!("cannot read backup {id}"),
                source,
            },
        })
    }

    /// One backup in full, with the commands to roll back to it.
    ///
    /// # Errors
    ///
    /// As [`Gate::resolve`].
    pub async fn show(&self, selector: &str) -> Result<BackupDetails> {
        let manifest = self.resolve(selector).await?;
        let verifications =
            self.store
                .read_verifications(&manifest.id)
                .await
                .map_err(|source| GateError::Store {
                    context: format!("cannot read the verifications of {}", manifest.id),
                    source,
                })?;
        let runbook = runbook(&manifest, self.store_url.as_ref());
        Ok(BackupDetails {
            manifest,
            verifications,
            runbook,
        })
    }

    /// Re-verifies stored backups (`last`, an id, or every backup with `all`), appending a record
    /// to each. Returns every record; the error, if any, comes after all were checked.
    ///
    /// # Errors
    ///
    /// [`GateError::Verification`] (4) when any backup failed; usage errors as [`Gate::resolve`].
    pub async fn verify_stored(
        &self,
        selector: Option<&str>,
        all: bool,
        level: VerificationLevel,
    ) -> Result<Vec<VerificationRecord>> {
        let manifests = if all {
            self.list().await?.into_iter().map(|l| l.manifest).collect()
        } else {
            vec![self.resolve(selector.unwrap_or("last")).await?]
        };
        let mut records = Vec::new();
        let mut failures = Vec::new();
        for m in &manifests {
            match self.verify_manifest(m, level).await {
                Ok(r) => records.push(r),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !failures.is_empty() {
            return Err(GateError::Verification {
                id: if manifests.len() == 1 {
                    manifests[0].id.to_string()
                } else {
                    format!("{} backups", failures.len())
                },
                summary: failures.join("\n"),
            });
        }
        Ok(records)
    }
}
