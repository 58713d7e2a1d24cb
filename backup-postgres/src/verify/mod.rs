//! The verification ladder for PostgreSQL sources: level 3 reads each pg_dump archive whole with
//! `pg_restore` and checks its table of contents (and the globals dump's trailer); level 4
//! restores it into a scratch database and compares exact row counts, the schema listing,
//! sequences and privileges. Levels 1–2 come from `backup-verify`'s generic pass, in the same
//! read of the store.

mod archive;
mod compare;
mod local;
mod restore;

pub use archive::ArchiveVerifier;
pub use compare::{Privileges, count_differences, recorded_listing, restored_findings};
pub use restore::{MAX_JOBS_ON_SOURCE, RestoreTargets, toc_extensions, toc_finding};
