//! The restore seam: a backend's [`Restorer`] plans putting one stored source back into a
//! target (preflight only, nothing written), and the [`PlannedRestore`] carries the plan out
//! with a safety net — the gate's safety backup of the target first, a new copy restored and
//! compared before it replaces the target, and the old state kept or put back on failure.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::manifest::{Manifest, SourceManifest};
use crate::snapshot::DynSnapshotter;
use crate::store::Store;

/// What a failed restore left the target as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetState {
    /// The failure came before the swap: the target was never changed.
    Untouched,
    /// The failure came after the swap, which was undone: the target is as it was before.
    SwappedBack,
    /// Undoing the swap failed too: the message names what to check by hand.
    Unknown,
    /// A bucket or directory restore failed part-way: the target holds part of the backup's
    /// objects; the message names the safety snapshot holding its previous state.
    PartlyRestored,
}

impl std::fmt::Display for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetState::Untouched => "the target database is untouched",
            TargetState::SwappedBack => {
                "the target database was swapped back and is as it was before the restore"
            }
            TargetState::Unknown => "the target database could NOT be swapped back",
            TargetState::PartlyRestored => {
                "the target holds part of the backup's objects (its previous state is in the safety snapshot)"
            }
        })
    }
}

/// Why a restore did not happen or did not complete. Each maps onto one exit code of the
/// command line (2, 4, 5, 8).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The request cannot be carried out as given (exit 2): a bad target, no archive.
    #[error("{0}")]
    Usage(String),
    /// The backup is damaged (exit 4); nothing was restored and the target is untouched.
    #[error("backup {id} is damaged: {summary}")]
    Damaged {
        /// The backup.
        id: String,
        /// What is wrong with it.
        summary: String,
    },
    /// The target cannot take the restore (exit 5): unreachable, missing tools or extensions,
    /// sessions, space. Nothing was changed.
    #[error(transparent)]
    Preflight(Error),
    /// The restore failed (exit 8); `target` says what state the target is in.
    #[error("{message}")]
    Failed {
        /// What failed.
        message: String,
        /// The state the failure left the target in.
        target: TargetState,
    },
}

impl RestoreError {
    /// A failure before anything was changed.
    pub fn untouched(message: impl Into<String>) -> Self {
        RestoreError::Failed {
            message: message.into(),
            target: TargetState::Untouched,
        }
    }
}

/// What a planner is given: the stored source and where to put it back.
#[derive(Debug, Clone, Copy)]
pub struct RestoreSetup<'a> {
    /// The backup.
    pub manifest: &'a Manifest,
    /// The source of it to restore.
    pub source: &'a SourceManifest,
    /// The target's URL (may hold a password: never print it whole).
    pub target_url: &'a str,
    /// Now (for the names of kept copies).
    pub now: Timestamp,
    /// End other sessions on the target for the swap (else their presence refuses).
    pub terminate_connections: bool,
    /// Where artifacts are staged on this machine (default: the system temp dir).
    pub temp_dir: Option<&'a Path>,
}

/// What a restore will do, as shown to the operator before consent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    /// The target, without credentials.
    pub target: String,
    /// What the target is (`PostgreSQL`), for "into … (PostgreSQL 15.4)".
    pub product: String,
    /// The target server's version, when it is a server.
    pub server_version: String,
    /// Whether the target exists now (if not, no safety backup is taken and nothing is kept).
    pub target_exists: bool,
    /// Other sessions connected to the target now.
    pub connections: u64,
    /// What the operator types to confirm (the database name).
    pub confirm_name: String,
    /// The steps, in order, as printed.
    pub steps: Vec<String>,
    /// Things the operator should know (truncated names, unchecked free space, …).
    pub notes: Vec<String>,
    /// Backend details shown in JSON (e.g. the work names of a database swap).
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// What a finished restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreDone {
    /// One line for the operator: what was restored and how it was checked.
    pub summary: String,
    /// Things the operator should know afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Backend details shown in JSON (e.g. the objects written by a bucket restore).
    #[serde(flatten)]
    pub details: Map<String, Value>,
    /// The name the previous state is kept under (none when the target did not exist).
    pub kept_as: Option<String>,
    /// The command that removes the kept state once the operator is satisfied.
    pub drop_command: Option<String>,
    /// Sessions terminated for the swap.
    pub terminated: u64,
    /// Tables restored.
    pub tables: usize,
    /// Rows restored.
    pub rows: u64,
}

/// The safety net the gate provides to a restore: a verified backup of the target (kind
/// `safety`) taken before the target is changed.
#[async_trait]
pub trait SafetyNet: Send + Sync {
    /// Backs up the target through `snapshotter`; returns the backup's id.
    ///
    /// # Errors
    ///
    /// Why the safety backup failed (the restore then stops, the target untouched).
    async fn safety_backup(&self, snapshotter: DynSnapshotter) -> Result<String, String>;
}

/// What a planned restore is carried out with.
#[derive(Clone, Copy)]
pub struct RestoreContext<'a> {
    /// The store holding the backup.
    pub store: &'a dyn Store,
    /// The gate's safety backup of the target.
    pub safety: &'a dyn SafetyNet,
    /// End other sessions on the target for the swap.
    pub terminate_connections: bool,
    /// Where artifacts are staged on this machine.
    pub temp_dir: Option<&'a Path>,
    /// Parallel jobs of the restore tool.
    pub jobs: u32,
    /// Whether SIGINT/SIGTERM stop the restore cleanly (the command line) or are left to the
    /// caller (a library user).
    pub handle_signals: bool,
}

impl Debug for RestoreContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreContext")
            .field("store", &self.store.name())
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// Puts stored sources of one backend back.
#[async_trait]
pub trait Restorer: Send + Sync + Debug {
    /// Plans restoring `setup.source` into `setup.target_url` and runs its preflight (target
    /// reachable, tools, versions, sessions, space); writes nothing.
    ///
    /// # Errors
    ///
    /// [`RestoreError::Usage`] for a target this backend cannot take,
    /// [`RestoreError::Preflight`] when the target cannot take the restore.
    async fn plan(&self, setup: RestoreSetup<'_>) -> Result<Arc<dyn PlannedRestore>, RestoreError>;
}

/// A restore planned by a [`Restorer`], ready to be carried out once consented.
#[async_trait]
pub trait PlannedRestore: Send + Sync + Debug {
    /// What it will do.
    fn summary(&self) -> &RestoreSummary;

    /// Carries the plan out: verify the backup, take the safety backup of the target through
    /// `ctx.safety` (when the target exists), restore into a new copy, compare it with the
    /// backup, put it in place, check it, and undo on failure. Returns what was done and the
    /// id of the safety backup.
    ///
    /// # Errors
    ///
    /// [`RestoreError::Damaged`] (the backup), [`RestoreError::Preflight`] (the target),
    /// [`RestoreError::Failed`] with the state the target is in.
    async fn execute(
        &self,
        ctx: RestoreContext<'_>,
    ) -> Result<(RestoreDone, Option<String>), RestoreError>;
}
