//! [`Commands`]: every command of the command line as one library call that takes the locks it
//! needs, releases them on every path, and returns a report value. The binary parses, calls
//! one of these and renders; an embedder calls the same. `run` is [`Gate::run`].

use std::future::Future;

use backup_core::{VerificationLevel, VerificationRecord};

use crate::LockGuard;
use crate::error::Result;
use crate::gate::{BackupOutcome, BackupRequest, Gate};
use crate::pins::{PinOutcome, UnpinOutcome};
use crate::prune::{AutoRetention, PruneOptions, PruneReport};
use crate::restore::{RestoreOutcome, RestorePlan, RestoreRequest};
use crate::retention::RetentionSettings;

/// The commands of a [`Gate`]: see [`Gate::commands`].
#[derive(Debug, Clone, Copy)]
pub struct Commands<'g> {
    gate: &'g Gate,
}

/// What `backup` did: the verified backup, then the retention of its group.
#[derive(Debug)]
pub struct BackupReport {
    /// The backup.
    pub outcome: BackupOutcome,
    /// What retention did after it.
    pub retention: AutoRetention,
}

impl Gate {
    /// The commands of the command line over this gate, each with its locks.
    pub fn commands(&self) -> Commands<'_> {
        Commands { gate: self }
    }

    /// Runs `body` under `guard`, then releases it (whatever `body` returned).
    async fn holding<T>(&self, guard: LockGuard, body: impl Future<Output = T>) -> T {
        let out = body.await;
        self.unlock(guard).await;
        out
    }
}

impl Commands<'_> {
    /// `backup`: under the run lock, back up and verify every source, then apply `retention`
    /// to the new backup's group.
    ///
    /// # Errors
    ///
    /// As [`Gate::lock`] and [`Gate::backup`].
    pub async fn backup(
        &self,
        request: &BackupRequest,
        retention: Option<&RetentionSettings>,
    ) -> Result<BackupReport> {
        let g = self.gate;
        let guard = g.lock("backup", request.deploy.commit.clone()).await?;
        let report = async {
            let outcome = g.backup_locked(request, Some(&guard)).await?;
            let retention = g.retain_after_backup(retention, &outcome).await;
            Ok(BackupReport { outcome, retention })
        }
        .await;
        g.unlock(guard).await;
        report
    }

    /// `verify [ID | --all]`: re-verifies stored backups (up to `level`, default the
    /// configured one) under the retention lock of their environment, so no prune removes one
    /// half-way.
    ///
    /// # Errors
    ///
    /// As [`Gate::verify_stored`]; [`crate::GateError::LockHeld`] when a prune holds the lock.
    pub async fn verify(
        &self,
        selector: &str,
        all: bool,
        level: Option<VerificationLevel>,
    ) -> Result<Vec<VerificationRecord>> {
        let g = self.gate;
        let environment = match all {
            true => g.environment().to_owned(),
            false => g.resolve(selector).await?.environment,
        };
        let guard = g
            .lock_retention(&environment, "verify", g.wait_lock())
            .await?;
        g.holding(guard, g.verify_stored(Some(selector), all, level))
            .await
    }

    /// `prune`: the retention plan; with `options.apply`, under the run lock and the retention
    /// lock, removes what it says, then leftovers of dead runs and unreferenced blobs.
    ///
    /// # Errors
    ///
    /// As [`Gate::prune`]; a plan over budget is in the report ([`PruneReport::refusal`]).
    pub async fn prune(
        &self,
        retention: Option<&RetentionSettings>,
        options: &PruneOptions,
    ) -> Result<PruneReport> {
        let g = self.gate;
        let body = async {
            let mut report = g.prune(retention, options).await?;
            if options.apply && !report.refused {
                g.collect_leftovers(&mut report).await;
            }
            if !report.refused {
                g.collect_blobs(&mut report, options.apply).await;
            }
            Ok(report)
        };
        // A dry run only reads.
        if !options.apply {
            return body.await;
        }
        let run_guard = g.lock("prune", None).await?;
        let retention_guard = match g
            .lock_retention(g.environment(), "prune", g.wait_lock())
            .await
        {
            Ok(guard) => guard,
            Err(e) => {
                g.unlock(run_guard).await;
                return Err(e);
            }
        };
        let report = g.holding(retention_guard, body).await;
        g.unlock(run_guard).await;
        report
    }

    /// `pin ID`: under the retention lock of the backup's environment (a prune deciding
    /// meanwhile could otherwise remove the backup right after its pin was written).
    ///
    /// # Errors
    ///
    /// As [`Gate::pin`] and [`Gate::lock_retention`].
    pub async fn pin(&self, selector: &str, note: Option<String>) -> Result<PinOutcome> {
        let g = self.gate;
        let manifest = g.resolve(selector).await?;
        let guard = g
            .lock_retention(&manifest.environment, "pin", g.wait_lock())
            .await?;
        g.holding(guard, g.pin(manifest.id.as_str(), note)).await
    }

    /// `unpin ID`: like `pin`; a pin whose backup is gone races with nothing and needs no lock.
    ///
    /// # Errors
    ///
    /// As [`Gate::unpin`] and [`Gate::lock_retention`].
    pub async fn unpin(&self, selector: &str) -> Result<UnpinOutcome> {
        let g = self.gate;
        match g.resolve(selector).await {
            Ok(m) => {
                let guard = g
                    .lock_retention(&m.environment, "unpin", g.wait_lock())
                    .await?;
                g.holding(guard, g.unpin(selector)).await
            }
            Err(_) => g.unpin(selector).await,
        }
    }

    /// `restore` of any source, once planned and consented: under the run lock (one restore,
    /// backup or run per store and environment at a time).
    ///
    /// # Errors
    ///
    /// As [`Gate::restore`] and [`Gate::lock`].
    pub async fn restore(
        &self,
        plan: RestorePlan,
        request: &RestoreRequest,
    ) -> Result<RestoreOutcome> {
        let g = self.gate;
        let guard = g.lock("restore", None).await?;
        g.holding(guard, g.restore(plan, request)).await
    }
}
