//! [`Inventory`]: what the store holds — backups (list, resolve `last`, show with a runbook,
//! check), pins (`pins.rs`) and deployment records (`deployments.rs`).

use backup_core::{
    BackupId, BackupKind, Manifest, StoreExt, VerificationLevel, VerificationRecord,
};
use serde::Serialize;

use crate::error::{GateError, Result};
use crate::runbook::{Runbook, runbook};
use crate::scope::Scope;

/// The backups, pins and deployment records of a [`Scope`]: see [`crate::Gate::inventory`].
#[derive(Debug, Clone, Copy)]
pub struct Inventory<'g> {
    pub(crate) scope: &'g Scope,
}

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
    /// The tables of sources whose table details are encrypted (`[encryption]
    /// hide_table_names`): read back with the identity, or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_tables: Option<HiddenTables>,
}

/// The table details `show` read back from encrypted stats artifacts.
#[derive(Debug, Clone, Serialize)]
pub struct HiddenTables {
    /// Per source: its tables with their exact row counts, when they could be decrypted.
    pub decrypted: std::collections::BTreeMap<String, Vec<backup_core::TableStat>>,
    /// Why they are not shown, when they are not (no identity, or it does not open them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<String>,
}

impl Inventory<'_> {
    /// Every readable backup of this gate's environment, newest first.
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when the store cannot be listed.
    pub async fn list(&self) -> Result<Vec<BackupListing>> {
        let store_err = |source| GateError::Store {
            context: format!("cannot list {}", self.scope.store.name()),
            source,
        };
        let ids = self
            .scope
            .store
            .list_backup_ids()
            .await
            .map_err(store_err)?;
        let mut out = Vec::new();
        for id in ids.into_iter().rev() {
            let manifest = match self.scope.store.read_manifest(&id).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("skipping backup {id}: {e}");
                    continue;
                }
            };
            if manifest.environment != self.scope.environment {
                continue;
            }
            let last_verification = self
                .scope
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
            let ids =
                self.scope
                    .store
                    .list_backup_ids()
                    .await
                    .map_err(|source| GateError::Store {
                        context: format!("cannot list {}", self.scope.store.name()),
                        source,
                    })?;
            for id in ids.into_iter().rev() {
                match self.scope.store.read_manifest(&id).await {
                    Ok(m) if m.environment == self.scope.environment => return Ok(m),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("skipping backup {id}: {e}"),
                }
            }
            return Err(GateError::usage(format!(
                "there is no backup of environment {:?} in {}",
                self.scope.environment,
                self.scope.store.name()
            )));
        }
        let id: BackupId = selector
            .parse()
            .map_err(|e: backup_core::Error| GateError::usage(e.to_string()))?;
        self.scope
            .store
            .read_manifest(&id)
            .await
            .map_err(|e| match e {
                backup_core::Error::NotFound { .. } => GateError::usage(format!(
                    "there is no backup {id} in {}",
                    self.scope.store.name()
                )),
                source => GateError::Store {
                    context: format!("cannot read backup {id}"),
                    source,
                },
            })
    }

    /// Resolves `last` for a restore: the newest backup of the environment that is not a safety
    /// backup (restoring a safety backup needs its id).
    ///
    /// # Errors
    ///
    /// As [`Inventory::resolve`].
    pub async fn resolve_restorable(&self, selector: &str) -> Result<Manifest> {
        if selector != "last" && selector != "latest" {
            return self.resolve(selector).await;
        }
        let ids = self
            .scope
            .store
            .list_backup_ids()
            .await
            .map_err(|source| GateError::Store {
                context: format!("cannot list {}", self.scope.store.name()),
                source,
            })?;
        for id in ids.into_iter().rev() {
            match self.scope.store.read_manifest(&id).await {
                Ok(m)
                    if m.environment == self.scope.environment && m.kind != BackupKind::Safety =>
                {
                    return Ok(m);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping backup {id}: {e}"),
            }
        }
        Err(GateError::usage(format!(
            "there is no backup of environment {:?} to restore in {} (safety backups are restored by id)",
            self.scope.environment,
            self.scope.store.name()
        )))
    }

    /// The commands to roll back to `manifest` (what `show` and the end of `run` print).
    pub fn runbook(&self, manifest: &Manifest) -> Runbook {
        runbook(
            manifest,
            self.scope.store_url.as_ref(),
            &self.scope.environment,
            &self.scope.backends,
        )
    }

    /// One backup in full, with the commands to roll back to it. `last` is the backup that
    /// `restore last` would restore: the newest one that is not a safety backup (after a
    /// restore or a rollback, the operator wants the runbook of the deploy's backup, not of
    /// the safety copy just taken).
    ///
    /// # Errors
    ///
    /// As [`Inventory::resolve`].
    pub async fn show(&self, selector: &str) -> Result<BackupDetails> {
        let manifest = self.resolve_restorable(selector).await?;
        let verifications = self
            .scope
            .store
            .read_verifications(&manifest.id)
            .await
            .map_err(|source| GateError::Store {
                context: format!("cannot read the verifications of {}", manifest.id),
                source,
            })?;
        let runbook = self.runbook(&manifest);
        let hidden_tables = self.hidden_tables(&manifest).await;
        Ok(BackupDetails {
            manifest,
            verifications,
            runbook,
            hidden_tables,
        })
    }

    /// The encrypted table details of `manifest`, decrypted when an identity is installed
    /// (`None` when no source hides them).
    async fn hidden_tables(&self, manifest: &Manifest) -> Option<HiddenTables> {
        use backup_core::hidden_stats::is_hidden;
        if !manifest.sources.iter().any(is_hidden) {
            return None;
        }
        if backup_core::encryption::installed_identities().is_none() {
            return Some(HiddenTables {
                decrypted: Default::default(),
                encrypted: Some(
                    "table names and row counts are encrypted (hide_table_names): give the age identity to show them".into(),
                ),
            });
        }
        Some(
            match backup_verify::reveal_stats(self.scope.store.as_ref(), manifest).await {
                Ok(full) => HiddenTables {
                    decrypted: full
                        .sources
                        .into_iter()
                        .filter(is_hidden)
                        .map(|s| (s.name.to_string(), s.stats.tables))
                        .collect(),
                    encrypted: None,
                },
                Err(why) => HiddenTables {
                    decrypted: Default::default(),
                    encrypted: Some(format!("table names and row counts are encrypted: {why}")),
                },
            },
        )
    }
}

/// What `check` looks for.
#[derive(Debug, Clone)]
pub struct CheckQuery {
    /// The commit the backup must protect (a full SHA or a prefix of at least 7 characters).
    pub commit: Option<String>,
    /// How old the backup may be.
    pub max_age: Option<jiff::SignedDuration>,
    /// The verification level a passing record must have reached.
    pub level: VerificationLevel,
}

/// The backup that satisfied a `check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// Its manifest.
    pub manifest: Manifest,
    /// The passing verification.
    pub verification: VerificationRecord,
}

impl Inventory<'_> {
    /// Finds the newest backup of this environment matching `query` with a passing verification
    /// at `query.level` or higher. Lets CI split "back up" and "deploy" into separate jobs.
    ///
    /// # Errors
    ///
    /// [`GateError::CheckFailed`] (7) saying what is missing: no backup for the commit, none
    /// recent enough, or none verified far enough (with the reason of the closest one).
    pub async fn check(&self, query: &CheckQuery) -> Result<CheckOutcome> {
        if let Some(c) = &query.commit
            && (c.len() < 7 || !c.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            return Err(GateError::usage(format!(
                "--commit {c:?} must be a commit SHA of at least 7 hex digits"
            )));
        }
        let now = self.scope.clock.now();
        let backups = self.list().await?;
        let total = backups.len();
        let for_commit: Vec<&BackupListing> = backups
            .iter()
            .filter(|b| match (&query.commit, &b.manifest.deploy.commit) {
                (None, _) => true,
                (Some(want), Some(have)) => have.starts_with(want.as_str()),
                (Some(_), None) => false,
            })
            .collect();
        let recent: Vec<&BackupListing> = for_commit
            .iter()
            .copied()
            .filter(|b| {
                query
                    .max_age
                    .is_none_or(|age| now.duration_since(b.manifest.created_at) <= age)
            })
            .collect();
        let describe = || {
            let mut parts = vec![format!("environment {:?}", self.scope.environment)];
            if let Some(c) = &query.commit {
                parts.push(format!("commit {c}"));
            }
            if let Some(a) = query.max_age {
                parts.push(format!("taken within {}s", a.as_secs()));
            }
            parts.join(", ")
        };
        let fail = |message: String| Err(GateError::CheckFailed { message });
        if total == 0 {
            return fail(format!(
                "there is no backup at all in {}",
                self.scope.store.name()
            ));
        }
        if for_commit.is_empty() {
            let newest = &backups[0].manifest;
            return fail(format!(
                "no backup protects {} (the newest, {}, protects commit {})",
                describe(),
                newest.id,
                newest.deploy.commit.as_deref().unwrap_or("unknown")
            ));
        }
        if recent.is_empty() {
            return fail(format!(
                "no backup matches {}: the newest for that commit, {}, was taken at {}",
                describe(),
                for_commit[0].manifest.id,
                for_commit[0].manifest.created_at
            ));
        }
        for b in &recent {
            let records = self
                .scope
                .store
                .read_verifications(&b.manifest.id)
                .await
                .map_err(|source| GateError::Store {
                    context: format!("cannot read the verifications of {}", b.manifest.id),
                    source,
                })?;
            if let Some(r) = records
                .iter()
                .rev()
                .find(|r| r.passed && r.level_reached >= Some(query.level))
            {
                return Ok(CheckOutcome {
                    manifest: b.manifest.clone(),
                    verification: r.clone(),
                });
            }
        }
        let closest = recent[0];
        let why = match &closest.last_verification {
            None => "it was never verified".to_owned(),
            Some(r) if !r.passed => format!(
                "its last verification failed: {}",
                r.report
                    .failures()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Some(r) => format!(
                "it was verified only to level {}{}",
                r.level_reached
                    .map_or_else(|| "none".into(), |l| l.to_string()),
                r.limited_by
                    .as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            ),
        };
        fail(format!(
            "no backup matching {} passed verification at level {}: the newest, {}, does not because {why}",
            describe(),
            query.level,
            closest.manifest.id
        ))
    }
}
