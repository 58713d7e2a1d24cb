//! Mapping `object_store` errors onto the core error type.

use backup_core::Error;

/// Folds an `object_store` error into the core error, keeping not-found and already-exists
/// distinguishable for callers.
pub(crate) fn map_error(op: &'static str, key: &str, e: object_store::Error) -> Error {
    match e {
        // A write or list that finds nothing means the bucket itself is missing.
        object_store::Error::NotFound { source, .. } if op != "get" && op != "head" => {
            Error::store(
                op,
                key,
                format!("the bucket does not exist or is not accessible ({source})"),
            )
        }
        object_store::Error::NotFound { .. } => Error::NotFound { key: key.into() },
        object_store::Error::AlreadyExists { .. } => Error::AlreadyExists { key: key.into() },
        other => Error::store(op, key, other),
    }
}
