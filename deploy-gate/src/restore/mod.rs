//! `restore`: put a backup back with a safety net, and the rollback of `run
//! --rollback-on-failure`.
//!
//! # Contract
//!
//! 1. **Plan and preflight** ([`Restores::plan_restore`]): resolve the backup and the source, find
//!    the backend of the source's kind ([`backup_core::Backend::restorer`]) and let it reach
//!    the target and check what it needs (tools, versions, sessions, space). Nothing is written.
//! 2. **Consent**: `confirmed` (typed name, `--yes`, `PREDEPLOY_CONFIRM_RESTORE=yes`) and, for a
//!    production environment, `allow_production`; otherwise exit 2. Sessions on the target
//!    refuse without `terminate_connections` (exit 5).
//! 3. **Carry out** ([`Restores::restore`]) through the backend's plan, with the gate's safety net:
//!    the backup is verified first (a damaged one is refused with exit 4 before anything is
//!    touched), the target is backed up (kind `safety`, verified to level 3) when it exists,
//!    and a new copy is restored and compared before it replaces the target. Each backend's
//!    restorer documents its own steps.
//!
//! A failure or SIGINT/SIGTERM before the target is replaced leaves it untouched; after, the
//! change is undone. Both are exit 8 ([`GateError::Restore`], whose [`TargetState`] says
//! which); a bucket or directory restore that fails part-way is
//! [`TargetState::PartlyRestored`], naming the safety snapshot.

mod execute;
mod plan;
mod rollback;

use std::path::PathBuf;

use std::sync::Arc;

use backup_core::{BackupKind, Manifest, PlannedRestore, RestoreSummary, SourceManifest};
use serde::Serialize;

use crate::backups::Backups;
use crate::config::{Settings, SourceSpec};
use crate::error::{GateError, Result};
use crate::inventory::Inventory;
use crate::scope::Scope;

pub use rollback::{RollbackReport, RolledBack};

/// Restores and rollbacks in a [`Scope`], with the safety backups [`Backups`] takes: see
/// [`crate::Gate::restores`].
#[derive(Debug, Clone, Copy)]
pub struct Restores<'g> {
    pub(crate) backups: Backups<'g>,
}

impl<'g> Restores<'g> {
    fn scope(&self) -> &'g Scope {
        self.backups.scope
    }

    fn inventory(&self) -> Inventory<'g> {
        Inventory {
            scope: self.backups.scope,
        }
    }
}

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
    /// Where the decompressed archive is staged.
    pub temp_dir: Option<PathBuf>,
    /// Parallel jobs of the restore tool.
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
        let s = &plan.summary;
        if s.target_exists && s.connections > 0 && !self.terminate_connections {
            return Err(GateError::Preflight {
                source: backup_core::Error::SourceUnavailable {
                    source_name: plan.source.clone(),
                    message: format!(
                        "{} other session(s) are connected to database {}: a database in use cannot be renamed; stop them, or pass --terminate-connections to end them for the swap (nothing was changed)",
                        s.connections, s.confirm_name
                    ),
                },
            });
        }
        Ok(())
    }

    /// The refusal for missing consent, if any (checked again by [`Restores::restore`]).
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] (exit 2) naming `--allow-production` for a production environment
    /// without it, or `--yes` / `PREDEPLOY_CONFIRM_RESTORE=yes` when not confirmed.
    pub fn check_consent(&self, plan: &RestorePlan) -> Result<()> {
        self.check_production(plan)?;
        if !self.confirmed {
            return Err(GateError::usage(format!(
                "the restore of {} into {} was not confirmed: type {:?} at the prompt, or pass --yes, or set {CONFIRM_RESTORE_ENV}=yes (nothing was changed)",
                plan.backup_id, plan.summary.target, plan.summary.confirm_name
            )));
        }
        Ok(())
    }
}

/// What a restore will do, found by its preflight (by the backend of the source's kind).
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
    /// The source's kind, as the manifest records it.
    pub kind: String,
    /// Whether the environment is production.
    pub production: bool,
    /// The target, its state, the steps and notes, as the backend planned them.
    #[serde(flatten)]
    pub summary: RestoreSummary,
    #[serde(skip)]
    planned: Arc<dyn PlannedRestore>,
}

/// What a finished restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The plan it followed.
    pub plan: RestorePlan,
    /// The safety backup of the target taken first (none when the target did not exist or was
    /// empty).
    pub safety_backup: Option<String>,
    /// What the backend did: one line, notes, the name the previous state is kept under and
    /// the command that drops it, sessions terminated, what was restored.
    #[serde(flatten)]
    pub done: backup_core::RestoreDone,
}

pub use backup_core::hooks::{PAUSE_POINTS, pause_at};

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

    /// A plan that cannot be carried out (these tests only check consent and sessions).
    #[derive(Debug)]
    struct NotCarriedOut(RestoreSummary);

    #[async_trait::async_trait]
    impl PlannedRestore for NotCarriedOut {
        fn summary(&self) -> &RestoreSummary {
            &self.0
        }
        async fn execute(
            &self,
            _: backup_core::RestoreContext<'_>,
        ) -> std::result::Result<
            (backup_core::RestoreDone, Option<String>),
            backup_core::RestoreError,
        > {
            unreachable!("not carried out in these tests")
        }
    }

    fn plan(target_exists: bool, connections: u64) -> RestorePlan {
        let summary = RestoreSummary {
            target: "postgres://app@db:5432/app".into(),
            target_exists,
            connections,
            confirm_name: "app".into(),
            ..Default::default()
        };
        RestorePlan {
            backup_id: "20261122T031500Z-7f3a9c".into(),
            backup_kind: BackupKind::PreDeploy,
            environment: "production".into(),
            source: "db".into(),
            kind: "postgres".into(),
            production: true,
            planned: Arc::new(NotCarriedOut(summary.clone())),
            summary,
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
            message: "the restore tool failed".into(),
            target: crate::TargetState::SwappedBack,
        };
        assert_eq!(e.exit_code().code(), 8);
        assert!(!e.exit_code().is_refusal());
        assert!(e.to_string().contains("swapped back"), "{e}");
        assert_eq!(e.target_state(), Some(crate::TargetState::SwappedBack));
    }
}
