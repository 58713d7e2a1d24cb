//! `restore`: put a backup back with a safety net, and the rollback of `run
//! --rollback-on-failure`.
//!
//! # Contract
//!
//! 1. **Plan and preflight** ([`Gate::plan_restore`]): resolve the backup and the source, reach the
//!    target server, check versions and client tools, count the sessions on the target (refused
//!    without `--terminate-connections` when there are any), check free space when the data
//!    directory is local. Nothing is written.
//! 2. **Consent**: `confirmed` (typed database name, `--yes`, `PREDEPLOY_CONFIRM_RESTORE=yes`) and,
//!    for a production environment, `allow_production`; otherwise exit 2.
//! 3. **Verify the backup** (levels 1–3, into a staged temp file) and the extensions it needs: a
//!    damaged backup is refused with exit 4 before anything is touched.
//! 4. **Safety backup** of the target (kind `safety`, verified to level 3) when the target exists.
//! 5. **Restore into a new database** `<db>__predeploy_restore_<backup>`, then compare its exact
//!    row counts and schema fingerprint with the manifest.
//! 6. **Swap** in one transaction: `<db>` → `<db>__predeploy_before_<time>`, the new database →
//!    `<db>`. The old database stays until the operator drops it.
//! 7. **Check** the swapped-in database by its name.
//!
//! A failure or SIGINT/SIGTERM before the swap leaves the target untouched and drops the new
//! database; after it, the swap is undone. Both are exit 8 ([`GateError::Restore`], whose
//! [`TargetState`] says which). A `kill -9` cannot run any cleanup: before the swap commits the
//! target is untouched (the labelled new database is dropped by the next restore of the target);
//! after, the verified restored data is in place.

mod bucket;
mod execute;
mod plan;
mod rollback;

use std::path::PathBuf;

use backup_core::{BackupKind, Manifest, SourceManifest, StoreExt};
use backup_postgres::{PgSourceConfig, SwapNames};
use serde::Serialize;

use crate::config::{Settings, SourceSpec};
use crate::error::{GateError, Result};
use crate::gate::Gate;

pub use bucket::{BucketRestoreOutcome, BucketRestorePlan, is_bucket_restore};
pub use rollback::{RollbackReport, RolledBack};

/// Environment variable that confirms a restore like `--yes`.
pub const CONFIRM_RESTORE_ENV: &str = "PREDEPLOY_CONFIRM_RESTORE";

/// What to restore, where, and with which consent.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// A backup id, or `last` (the newest backup of the environment that is not a safety backup).
    pub backup: String,
    /// The source of the backup to restore (needed when the backup has several).
    pub source: Option<String>,
    /// The target database URL (default: the configured source of the same name).
    pub to: Option<String>,
    /// Terminate other sessions on the target for the swap (else their presence refuses).
    pub terminate_connections: bool,
    /// The operator confirmed (typed the database name, `--yes`, or the environment variable).
    pub confirmed: bool,
    /// `--allow-production`.
    pub allow_production: bool,
    /// Whether the environment is production (from the settings).
    pub production: bool,
    /// The configured sources (their URLs are the default targets).
    pub configured: Vec<SourceSpec>,
    /// PostgreSQL client tools directory, when configured.
    pub pg_bin_dir: Option<PathBuf>,
    /// Where the decompressed archive is staged.
    pub temp_dir: Option<PathBuf>,
    /// `pg_restore -j`.
    pub jobs: u32,
}

impl RestoreRequest {
    /// A request for `backup` with what the settings say (sources, tools, temp dir, jobs,
    /// production). Consent and flags are the caller's to set.
    pub fn from_settings(settings: &Settings, backup: impl Into<String>) -> Self {
        RestoreRequest {
            backup: backup.into(),
            production: settings.production,
            configured: settings.sources.clone(),
            pg_bin_dir: settings.pg_bin_dir.clone(),
            temp_dir: settings.verify_temp_dir.clone(),
            jobs: settings.verify_jobs,
            ..Default::default()
        }
    }

    /// Refuses a production environment without `allow_production`.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] (exit 2) naming `--allow-production`.
    pub fn check_production(&self, plan: &RestorePlan) -> Result<()> {
        if self.production && !self.allow_production {
            return Err(GateError::usage(format!(
                "environment {:?} is production: restoring into it needs --allow-production (nothing was changed)",
                plan.environment
            )));
        }
        Ok(())
    }

    /// Refuses when other sessions are connected to the target and `terminate_connections` is
    /// not set (a database in use cannot be renamed).
    ///
    /// # Errors
    ///
    /// [`GateError::Preflight`] (exit 5) naming how many sessions and `--terminate-connections`.
    pub fn check_connections(&self, plan: &RestorePlan) -> Result<()> {
        if plan.target_exists && plan.connections > 0 && !self.terminate_connections {
            return Err(GateError::Preflight {
                source: backup_core::Error::SourceUnavailable {
                    source_name: plan.source.clone(),
                    message: format!(
                        "{} other session(s) are connected to database {}: a database in use cannot be renamed; stop them, or pass --terminate-connections to end them for the swap (nothing was changed)",
                        plan.connections, plan.names.target
                    ),
                },
            });
        }
        Ok(())
    }

    /// The refusal for missing consent, if any (checked again by [`Gate::restore`]).
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] (exit 2) naming `--allow-production` for a production environment
    /// without it, or `--yes` / `PREDEPLOY_CONFIRM_RESTORE=yes` when not confirmed.
    pub fn check_consent(&self, plan: &RestorePlan) -> Result<()> {
        self.check_production(plan)?;
        if !self.confirmed {
            return Err(GateError::usage(format!(
                "the restore of {} into {} was not confirmed: type the database name at the prompt, or pass --yes, or set {CONFIRM_RESTORE_ENV}=yes (nothing was changed)",
                plan.backup_id, plan.target
            )));
        }
        Ok(())
    }
}

/// What a restore will do, found by its preflight.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The backup.
    pub backup_id: String,
    /// Its kind.
    pub backup_kind: BackupKind,
    /// The environment.
    pub environment: String,
    /// The source of the backup being restored.
    pub source: String,
    /// The source's kind (`postgres`).
    pub kind: String,
    /// The target, without credentials.
    pub target: String,
    /// The target server's version.
    pub server_version: String,
    /// The names used: new database, kept old database.
    pub names: SwapNames,
    /// Whether the target database exists now (if not, no safety backup is taken and nothing is
    /// kept).
    pub target_exists: bool,
    /// Other sessions connected to the target now.
    pub connections: u64,
    /// Whether the environment is production.
    pub production: bool,
    /// The steps, in order, as printed.
    pub steps: Vec<String>,
    /// Things the operator should know (truncated names, unchecked free space, …).
    pub notes: Vec<String>,
    #[serde(skip)]
    manifest: Manifest,
    #[serde(skip)]
    target_config: PgSourceConfig,
}

/// What a finished restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The plan it followed.
    pub plan: RestorePlan,
    /// The safety backup of the target taken first (none when the target did not exist).
    pub safety_backup: Option<String>,
    /// The name the previous database is kept under (none when the target did not exist).
    pub kept_as: Option<String>,
    /// The statement that drops the kept database once the operator is satisfied.
    pub drop_command: Option<String>,
    /// Sessions terminated for the swap.
    pub terminated: u64,
    /// Tables and rows restored.
    pub tables: usize,
    /// Rows restored.
    pub rows: u64,
}

pub use backup_core::hooks::{PAUSE_POINTS, pause_at};

impl Gate {
    /// Resolves `last` for a restore: the newest backup of the environment that is not a safety
    /// backup (restoring a safety backup needs its id).
    ///
    /// # Errors
    ///
    /// As [`Gate::resolve`].
    pub async fn resolve_restorable(&self, selector: &str) -> Result<Manifest> {
        if selector != "last" && selector != "latest" {
            return self.resolve(selector).await;
        }
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
                Ok(m) if m.environment == self.environment && m.kind != BackupKind::Safety => {
                    return Ok(m);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping backup {id}: {e}"),
            }
        }
        Err(GateError::usage(format!(
            "there is no backup of environment {:?} to restore in {} (safety backups are restored by id)",
            self.environment,
            self.store.name()
        )))
    }
}

/// The source of `manifest` to restore: `name`, or the only one.
fn pick_source<'m>(manifest: &'m Manifest, name: Option<&str>) -> Result<&'m SourceManifest> {
    match name {
        Some(n) => manifest.source(n).ok_or_else(|| {
            GateError::usage(format!(
                "backup {} has no source {n:?} (it has: {})",
                manifest.id,
                source_names(manifest)
            ))
        }),
        None => match manifest.sources.as_slice() {
            [only] => Ok(only),
            [] => Err(GateError::usage(format!(
                "backup {} has no sources",
                manifest.id
            ))),
            _ => Err(GateError::usage(format!(
                "backup {} has several sources ({}): choose one with --source NAME",
                manifest.id,
                source_names(manifest)
            ))),
        },
    }
}

fn source_names(m: &Manifest) -> String {
    m.sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints one step of a restore (stderr, through the log).
fn step(message: &str) {
    tracing::info!("restore: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(target_exists: bool, connections: u64) -> RestorePlan {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "pre-deploy",
            "environment": "production", "created_at": "2026-11-22T03:15:00Z",
            "finished_at": "2026-11-22T03:15:00Z",
            "tool": {"name": "pre-deploy", "version": "0"}, "host": "h", "sources": []}))
        .expect("manifest");
        RestorePlan {
            backup_id: manifest.id.to_string(),
            backup_kind: manifest.kind,
            environment: "production".into(),
            source: "db".into(),
            kind: "postgres".into(),
            target: "postgres://app@db:5432/app".into(),
            server_version: "15".into(),
            names: SwapNames::new("app", manifest.id.as_str(), "20261122T101500Z"),
            target_exists,
            connections,
            production: true,
            steps: vec![],
            notes: vec![],
            manifest,
            target_config: PgSourceConfig::from_url("postgres://app@db/app", &|_: &str| None)
                .expect("config"),
        }
    }

    #[test]
    fn consent_needs_confirmation_and_production_needs_its_flag() {
        let p = plan(true, 0);
        let mut r = RestoreRequest {
            production: true,
            ..Default::default()
        };
        let e = r.check_consent(&p).expect_err("production").to_string();
        assert!(e.contains("--allow-production"), "{e}");
        r.allow_production = true;
        let e = r.check_consent(&p).expect_err("unconfirmed").to_string();
        assert!(
            e.contains("--yes") && e.contains("PREDEPLOY_CONFIRM_RESTORE=yes"),
            "{e}"
        );
        r.confirmed = true;
        r.check_consent(&p).expect("consent");
        assert_eq!(
            RestoreRequest::default()
                .check_consent(&p)
                .expect_err("no")
                .exit_code(),
            crate::ExitCode::Usage
        );
    }

    #[test]
    fn connected_sessions_refuse_unless_terminated() {
        let mut r = RestoreRequest::default();
        let e = r.check_connections(&plan(true, 3)).expect_err("sessions");
        assert_eq!(e.exit_code(), crate::ExitCode::Preflight);
        assert!(e.to_string().contains("3 other session(s)"), "{e}");
        assert!(e.to_string().contains("--terminate-connections"), "{e}");
        r.check_connections(&plan(false, 3))
            .expect("a missing target has no sessions to worry about");
        r.terminate_connections = true;
        r.check_connections(&plan(true, 3)).expect("terminated");
    }

    #[test]
    fn restore_errors_say_what_state_the_target_is_in() {
        let e = GateError::Restore {
            message: "pg_restore failed".into(),
            target: crate::TargetState::SwappedBack,
        };
        assert_eq!(e.exit_code().code(), 8);
        assert!(!e.exit_code().is_refusal());
        assert!(e.to_string().contains("swapped back"), "{e}");
        assert_eq!(e.target_state(), Some(crate::TargetState::SwappedBack));
    }
}
