//! # backup-objectstore
//!
//! [`ObjectStoreStore`]: the pre-deploy [`Store`](backup_core::Store) over the `object_store`
//! crate: a local directory, or an S3-compatible bucket (AWS S3, MinIO, Garage, …; see
//! [`S3Settings`]). The backend changes, the store's promises do not.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")] async fn main() -> backup_core::Result<()> {
//! use backup_core::{Store, StoreExt, WriteMode};
//! use backup_objectstore::{ObjectStoreStore, StoreUrl};
//!
//! let dir = std::env::temp_dir().join(format!("pd-doc-{}", std::process::id()));
//! let store = ObjectStoreStore::open(&StoreUrl::parse(dir.to_str().unwrap())?, true)?;
//! store.put_bytes("hello.txt", "hi".into(), WriteMode::CreateOnly).await?;
//! assert_eq!(store.get_all("hello.txt").await?, b"hi");
//! # std::fs::remove_dir_all(dir).ok(); Ok(()) }
//! ```

pub mod aws_profile;
pub mod bucket;
mod error;
mod s3;
mod store;
mod url;

pub use backup_core::lock::{
    BLOB_COLLECTOR_DIR, BLOB_USERS_DIR, DEFAULT_TTL as DEFAULT_LOCK_TTL, Holder, LOCKS_DIR, Lease,
    LockAttempt, LockError, LockGuard, RETENTION_LOCKS_DIR, StoreLock, renewal_margin,
};
pub use backup_core::{error_chain, probe_store};
pub use bucket::{BucketLocation, BucketRestorer, BucketSnapshotter, BucketSource};
pub use s3::{DEFAULT_REGION, S3Settings};
pub use store::{ObjectStoreStore, SHA256_METADATA};
pub use url::StoreUrl;
