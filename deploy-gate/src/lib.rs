//! # deploy-gate
//!
//! The orchestration of pre-deploy: resolve [`Settings`] (flags, environment, `predeploy.toml`),
//! build a [`Gate`] from a store, sources and verifiers, and run the flow
//! preflight → snapshot every source → commit the manifest → verify → (deploy).
//! Every refusal is a [`GateError`] with a documented [`ExitCode`].
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")] async fn main() {
//! use std::sync::Arc;
//! use backup_core::testkit::MemoryStore;
//! use deploy_gate::Gate;
//!
//! // A gate over the in-memory store with no sources: listing works, backups refuse.
//! let gate = Gate::new(Arc::new(MemoryStore::new()), "default", vec![], vec![]);
//! assert!(gate.commands().list().await.unwrap().is_empty());
//! # }
//! ```

mod backends;
mod backups;
mod builder;
mod commands;
mod config;
mod deploy;
mod deployments;
mod doctor;
mod error;
mod gate;
mod git;
mod inventory;
mod lock;
mod metrics;
mod notify;

pub use backup_objectstore::{Lease, LockGuard};
pub use doctor::{Doctor, DoctorReport, Probe, ProbeStatus};
pub use lock::BLOB_COLLECTION_WAIT;
mod pins;
mod projects;
mod prune;
mod report;
mod restore;
mod retention;
mod run;
mod runbook;
mod scope;
mod unchanged;

pub use backends::{BackendConfig, default_registry, registry};
pub use backup_core::disk::human_bytes;
pub use backup_core::redact_url;
pub use backups::{BackupOutcome, BackupRequest, BackupSetup, Backups};
pub use builder::GateBuilder;
pub use commands::{BackupReport, Commands};
pub use config::{
    CliOverrides, ConfigFile, DEFAULT_CONFIG_FILE, DEFAULT_ENVIRONMENT, DEFAULT_STORE,
    LEGACY_DEFAULT_STORE, Origin, PRODUCTION_ENVIRONMENT, Settings, SourceSpec, parse_config,
    parse_duration, parse_level,
};
pub use deploy::{
    DeployExit, GROUP_GRACE, LAST_DEPLOYMENT_FILE, artifact_location, last_deployment_lines,
    run_deploy_command, run_deploy_command_watched, write_last_deployment,
};
pub use deployments::{DEPLOYMENT_FORMAT_VERSION, DeploymentRecord, protected_releases};
pub use error::{ExitCode, GateError, Result, TargetState};
pub use gate::Gate;
pub use git::{ci_run_url, detect_deploy_info};
pub use inventory::{BackupDetails, BackupListing, CheckOutcome, CheckQuery, Inventory};
pub use metrics::{METRICS_PREFIX, TargetMetrics, previous_runs, render_metrics};
pub use notify::{
    EmailSection, EmailSettings, NOTIFY_TIMEOUT, Notifier, NotifyEvent, NotifyOn, NotifyOutcome,
    NotifySection, NotifySettings, SmtpTls, redact_endpoint,
};
pub use pins::{PIN_FORMAT_VERSION, PinOutcome, PinRecord, UnpinOutcome};
pub use projects::{Target, targets};
pub use prune::{
    AutoRetention, LEFTOVER_GRACE_DAYS, PruneOptions, PruneReport, Pruner, SkippedRemoval,
};
pub use report::{
    EnvironmentReport, ReportBackup, RetentionForecast, SourceVerification, environment_report,
};
pub use restore::{
    CONFIRM_RESTORE_ENV, PAUSE_POINTS, RestoreOutcome, RestorePlan, RestoreRequest, Restores,
    RollbackReport, RolledBack, pause_at,
};
pub use retention::{
    KeepSection, RetentionSection, RetentionSettings, Share, parse_expire_in, parse_kind,
    parse_span, parse_time_zone,
};
pub use run::{DeployContext, Deployed, Rollback, RunEnd, RunEvents, RunReport, RunRequest};
pub use runbook::{Runbook, RunbookStep, runbook};
pub use scope::{Scope, host_name};
pub use unchanged::Unchanged;

/// The core types callers of this crate see in its results.
pub use backup_core::{
    BackupId, BackupKind, DeployInfo, Finding, FindingStatus, KeepRules, Manifest, RetentionAction,
    RetentionDecision, RetentionPlan, VerificationLevel, VerificationRecord,
};

/// The README's code blocks, compiled as doctests so its examples stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// `docs/embedding.md`'s code blocks, compiled as doctests so its embedding example stays true.
#[doc = include_str!("../../docs/embedding.md")]
#[cfg(doctest)]
pub struct DocsEmbeddingDoctests;
