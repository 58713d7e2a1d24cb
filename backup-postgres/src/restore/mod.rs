//! Restoring a PostgreSQL source into a database, with a safety net.
//!
//! # Contract
//!
//! 1. **Plan and preflight** ([`DatabaseRestorer`]): reach the target server, check versions
//!    and client tools, count the sessions on the target, check free space when the data
//!    directory is local and on this machine for the staged archive. Nothing is written.
//! 2. **Verify the backup** (levels 1–3, into a staged temp file) and the extensions it needs: a
//!    damaged backup is refused ([`RestoreError::Damaged`]) before anything is touched.
//! 3. **Safety backup** of the target through the gate's [`SafetyNet`](backup_core::SafetyNet)
//!    when the target exists.
//! 4. **Restore into a new database** `<db>__predeploy_restore_<backup>`, then compare its exact
//!    row counts and schema with the backup's record.
//! 5. **Swap** in one transaction: `<db>` → `<db>__predeploy_before_<time>`, the new database →
//!    `<db>`. The old database stays until the operator drops it.
//! 6. **Check** the swapped-in database by its name.
//!
//! A failure or SIGINT/SIGTERM before the swap leaves the target untouched and drops the new
//! database; after it, the swap is undone ([`TargetState`](backup_core::TargetState) says
//! which). A `kill -9` cannot run any cleanup: before the swap commits the target is untouched
//! (the new database is dropped by the next restore of the target); after, the verified
//! restored data is in place.

mod execute;
mod plan;

use async_trait::async_trait;
use backup_core::{
    Manifest, PlannedRestore, RestoreContext, RestoreDone, RestoreError, RestoreSummary,
};

use crate::config::PgSourceConfig;
use crate::swap::SwapNames;

pub use plan::DatabaseRestorer;

/// A database restore planned by [`DatabaseRestorer`].
#[derive(Debug, Clone)]
pub struct PlannedDatabaseRestore {
    summary: RestoreSummary,
    names: SwapNames,
    manifest: Manifest,
    source_name: String,
    target_config: PgSourceConfig,
}

impl PlannedDatabaseRestore {
    /// The work names: the new database, the name the old one is kept under.
    pub fn names(&self) -> &SwapNames {
        &self.names
    }
}

#[async_trait]
impl PlannedRestore for PlannedDatabaseRestore {
    fn summary(&self) -> &RestoreSummary {
        &self.summary
    }

    async fn execute(
        &self,
        ctx: RestoreContext<'_>,
    ) -> Result<(RestoreDone, Option<String>), RestoreError> {
        self.run(ctx).await
    }
}

/// Prints one step of a restore (stderr, through the log).
fn step(message: &str) {
    tracing::info!("restore: {message}");
}
