//! Buckets and directories as backup sources: [`BucketSnapshotter`] stores every object of an
//! S3 prefix or a local directory as a content-addressed blob (`blobs/sha256/…`, shared between
//! backups) and writes an index artifact (`index.jsonl.zst`, one JSON line per object);
//! [`BucketRestorer`] puts them back; [`BucketVerifier`] checks the index and every blob it
//! references; [`plan_blob_gc`] finds blobs no backup references.
//!
//! An unchanged object costs nothing on the next backup: when its ETag, size and modification
//! time match the previous backup's index, its digest is reused without reading or writing it.

mod backend;
mod blob;
mod client;
mod gc;
mod index;
mod location;
mod nofollow;
mod restore;
mod restore_plan;
mod runbook;
mod snapshot;
mod source;
mod verify;

pub use backend::BucketBackend;
pub use blob::MEMORY_SPOOL_LIMIT;
pub use gc::{BlobGcPlan, DEFAULT_BLOB_GRACE_HOURS, apply_blob_gc, plan_blob_gc};
pub use index::{
    BLOB_LIST_FILE, BLOB_LIST_FORMAT, BlobListStream, INDEX_FILE, INDEX_FORMAT, IndexEntry,
    IndexStream, MAX_INDEX_LINE, blob_list_artifact, index_artifact, is_bucket_source,
    read_blob_list, read_index,
};
pub use location::BucketLocation;
pub use restore::{BucketRestorer, RestoreReport};
pub use restore_plan::{ObjectRestorer, PlannedObjectRestore};
pub use snapshot::{BucketSnapshotter, DEFAULT_CONCURRENCY, NOT_ATOMIC_NOTE, bucket_stat};
pub use source::{BucketSource, FetchedObject, ListedObject};
pub use verify::{BucketVerifier, DEFAULT_VERIFY_CONCURRENCY};

#[cfg(test)]
mod tests;
