//! [`GateError`]: every way the gate can refuse, each with its documented exit code.

use backup_core::Error as CoreError;

/// The exit codes of the `pre-deploy` command line (the contract scripts rely on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success: the backup is verified (and the deploy command, if any, succeeded).
    Success = 0,
    /// Unexpected internal error.
    Internal = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Refused: a backup could not be taken or stored.
    BackupFailed = 3,
    /// Refused: verification failed.
    VerificationFailed = 4,
    /// Refused: a source or the store is unreachable or misconfigured (preflight).
    Preflight = 5,
    /// Refused: the lock is held by another run.
    LockHeld = 6,
    /// `check`: no verified backup matches.
    CheckFailed = 7,
    /// `restore`: the restore failed; the message says whether the target is untouched or was
    /// swapped back.
    RestoreFailed = 8,
    /// `run`: the deploy command ran and exited 0, but the run's lock was lost while it ran
    /// (another run may have deployed at the same time); the deployment was not recorded.
    LockLostDuringDeploy = 9,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// True for the codes that mean "the gate refused and the deploy command did not run".
    pub fn is_refusal(self) -> bool {
        (3..=7).contains(&self.code())
    }
}

/// Why the gate did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// Bad command line or configuration (exit 2).
    #[error("{message}")]
    Usage {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Preflight found an unreachable or misconfigured source or store (exit 5).
    #[error("preflight failed: {source}")]
    Preflight {
        /// The underlying problem.
        #[source]
        source: CoreError,
    },
    /// The backup could not be taken or stored (exit 3). Nothing was committed.
    #[error("the backup failed: {source}")]
    Backup {
        /// The underlying problem.
        #[source]
        source: CoreError,
    },
    /// The backup was interrupted by a signal (exit 3). Nothing was committed.
    #[error("the backup was interrupted by {signal}; nothing was committed")]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
    },
    /// Verification was interrupted by a signal (exit 4: the backup is not verified by this
    /// run). Its scratch database was dropped; the backup itself stays.
    #[error(
        "verification of backup {id} was interrupted by {signal}; the backup stays, but this run did not verify it"
    )]
    VerificationInterrupted {
        /// The backup.
        id: String,
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
    },
    /// Verification found a problem (exit 4).
    #[error("verification of backup {id} failed: {summary}")]
    Verification {
        /// The backup.
        id: String,
        /// The failed findings, one per line.
        summary: String,
    },
    /// A stored backup could not be read or verified (exit 4 when verifying, else 1).
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The underlying problem.
        #[source]
        source: CoreError,
    },
    /// Another run holds the lock of this store and environment, or ours was lost (exit 6).
    #[error("{message}")]
    LockHeld {
        /// Who holds it and what to do.
        message: String,
    },
    /// `check` found no backup matching the conditions with a passing verification (exit 7).
    #[error("check failed: {message}")]
    CheckFailed {
        /// What is missing.
        message: String,
    },
    /// A restore failed (exit 8). `target` says what state the target database is in.
    #[error("the restore failed: {message}; {target}")]
    Restore {
        /// What failed.
        message: String,
        /// The state the failure left the target in.
        target: TargetState,
    },
    /// Something that should not happen (exit 1).
    #[error("internal error: {message}")]
    Internal {
        /// Details.
        message: String,
    },
}

/// A setup error of the crates below the gate (opening a store, parsing a URL or an id), with
/// the exit code it would have on the command line: 2 for an invalid value, 5 for an
/// unreachable source or store, 1 otherwise.
impl From<CoreError> for GateError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { .. } => GateError::usage(e.to_string()),
            CoreError::SourceUnavailable { .. } | CoreError::StoreUnavailable { .. } => {
                GateError::Preflight { source: e }
            }
            other => GateError::Store {
                context: "setting up the gate".into(),
                source: other,
            },
        }
    }
}

impl GateError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            GateError::Usage { .. } => ExitCode::Usage,
            GateError::Preflight { .. } => ExitCode::Preflight,
            GateError::Backup { .. } | GateError::Interrupted { .. } => ExitCode::BackupFailed,
            GateError::Verification { .. } | GateError::VerificationInterrupted { .. } => {
                ExitCode::VerificationFailed
            }
            GateError::CheckFailed { .. } => ExitCode::CheckFailed,
            GateError::LockHeld { .. } => ExitCode::LockHeld,
            GateError::Store { source, .. } => match source {
                CoreError::StoreUnavailable { .. } | CoreError::SourceUnavailable { .. } => {
                    ExitCode::Preflight
                }
                CoreError::NotFound { .. } | CoreError::Invalid { .. } => ExitCode::Usage,
                _ => ExitCode::Internal,
            },
            GateError::Restore { .. } => ExitCode::RestoreFailed,
            GateError::Internal { .. } => ExitCode::Internal,
        }
    }

    /// What to do next, when there is something useful to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            GateError::Preflight {
                source: CoreError::StoreUnavailable { .. },
                ..
            } => Some(
                "check that the store location exists, is writable, and has free space (pre-deploy --store …)",
            ),
            GateError::Preflight { .. } => Some(
                "fix the source's URL, credentials or client tools, then run again; nothing was written",
            ),
            GateError::Backup { .. } | GateError::Interrupted { .. } => Some(
                "no backup was recorded and earlier backups are untouched; fix the cause above and run again",
            ),
            GateError::Verification { .. } | GateError::VerificationInterrupted { .. } => Some(
                "do not deploy on this backup: fix what the message names, then run `pre-deploy verify` again or take a new backup",
            ),
            GateError::Restore {
                target: TargetState::Untouched,
                ..
            } => {
                Some("nothing was changed: fix the cause above and run `pre-deploy restore` again")
            }
            GateError::Restore {
                target: TargetState::SwappedBack,
                ..
            } => Some(
                "the target was put back as it was before the restore; fix the cause above and run `pre-deploy restore` again",
            ),
            GateError::Restore {
                target: TargetState::Unknown,
                ..
            } => Some(
                "check the databases named above by hand (psql -l); the safety backup holds the state from before the restore",
            ),
            _ => None,
        }
    }

    /// For a failed restore, the state of the target database.
    pub fn target_state(&self) -> Option<TargetState> {
        match self {
            GateError::Restore { target, .. } => Some(*target),
            _ => None,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        GateError::Usage {
            message: message.into(),
        }
    }
}

pub use backup_core::TargetState;

/// `Result` with [`GateError`].
pub type Result<T, E = GateError> = std::result::Result<T, E>;
