//! The error type of `backup-core`, shared by every backend through the traits.

use std::fmt;

/// A boxed error from a backend (object_store, a database driver, the OS).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with the structured fields a caller needs to decide and to explain.
///
/// The variants follow the failure classes of the command line's exit codes: callers branch on
/// the variant, never on the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key does not exist in the store.
    #[error("{key} does not exist in the store")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// A create-only write found the key already there; nothing was overwritten.
    #[error("{key} already exists in the store and is never overwritten")]
    AlreadyExists {
        /// The existing key.
        key: String,
    },
    /// The store could not be reached or used at all (checked before anything is written).
    #[error("the store {store} is unusable: {message}")]
    StoreUnavailable {
        /// The store's display name (no secrets).
        store: String,
        /// What the probe found.
        message: String,
    },
    /// A store operation failed.
    #[error("the store failed to {op} {key}")]
    Store {
        /// The operation (`put`, `get`, `list`, `delete`, `head`).
        op: &'static str,
        /// The key it was applied to.
        key: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A source (database, bucket) cannot be reached or is misconfigured: nothing was written.
    #[error("source {source_name}: {message}")]
    SourceUnavailable {
        /// The source's name, e.g. `db`.
        source_name: String,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// Taking the snapshot of a source failed part-way (dump tool died, empty output, ...).
    #[error("source {source_name}: the snapshot failed: {message}")]
    SnapshotFailed {
        /// The source's name.
        source_name: String,
        /// What failed, including the dump tool's last lines of stderr when there are any.
        message: String,
    },
    /// A value does not have the expected form (an id, a digest, a source name, a URL).
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What kind of value.
        what: &'static str,
        /// The offending value (never a secret).
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A stored JSON document (manifest, verification record) does not parse.
    #[error("{key} is not a valid {what}")]
    Format {
        /// The key of the document.
        key: String,
        /// `manifest` or `verification record`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A local I/O error outside the store (a temp file, a pipe).
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a backend error from a store operation.
    pub fn store(op: &'static str, key: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Store {
            op,
            key: key.into(),
            source: source.into(),
        }
    }

    /// Wraps a local I/O error with what was being done.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// A source URL's error, as a backend's snapshotter reports it: an unreachable source
    /// (`via=docker://` naming a stopped container) stays exit 5, named by the source; anything
    /// else is an invalid source.
    pub fn for_source(self, source: &str) -> Self {
        match self {
            Error::SourceUnavailable { message, .. } => Error::SourceUnavailable {
                source_name: source.to_owned(),
                message,
            },
            e => Error::Invalid {
                what: "source",
                value: source.to_owned(),
                reason: e.to_string(),
            },
        }
    }

    /// True when the error says a key does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
