//! [`Commands`]: every command of the command line as one library call that takes the locks it
//! needs, releases them on every path, and returns a report value. The binary parses, calls
//! one of these and renders; an embedder calls the same. `run` is [`Gate::run`].

use backup_core::{VerificationLevel, VerificationRecord};

use crate::backups::{BackupOutcome, BackupRequest};
use crate::doctor::DoctorReport;
use crate::error::Result;
use crate::gate::Gate;
use crate::inventory::{BackupDetails, BackupListing, CheckOutcome, CheckQuery};
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
}

impl Commands<'_> {
    /// `backup`: under the run lock, back up and verify every source, then apply `retention`
    /// to the new backup's group.
    ///
    /// # Errors
    ///
    /// As [`crate::Scope::lock`] and [`crate::Backups::backup`].
    pub async fn backup(
        &self,
        request: &BackupRequest,
        retention: Option<&RetentionSettings>,
    ) -> Result<BackupReport> {
        let (g, s) = (self.gate, self.gate.scope());
        let guard = s.lock("backup", request.deploy.commit.clone()).await?;
        let report = async {
            let outcome = g.backups().backup_locked(request, Some(&guard)).await?;
            let retention = g.pruner().retain_after_backup(retention, &outcome).await;
            Ok(BackupReport { outcome, retention })
        }
        .await;
        s.unlock(guard).await;
        report
    }

    /// `verify [ID | --all]`: re-verifies stored backups (up to `level`, default the
    /// configured one) under the retention lock of their environment, so no prune removes one
    /// half-way.
    ///
    /// # Errors
    ///
    /// As [`crate::Backups::verify_stored`]; [`crate::GateError::LockHeld`] when a prune holds the lock.
    pub async fn verify(
        &self,
        selector: &str,
        all: bool,
        level: Option<VerificationLevel>,
    ) -> Result<Vec<VerificationRecord>> {
        let (g, s) = (self.gate, self.gate.scope());
        let environment = match all {
            true => s.environment().to_owned(),
            false => g.inventory().resolve(selector).await?.environment,
        };
        let guard = s
            .lock_retention(&environment, "verify", s.wait_lock())
            .await?;
        s.holding(guard, g.backups().verify_stored(Some(selector), all, level))
            .await
    }

    /// `prune`: the retention plan; with `options.apply`, under the run lock and the retention
    /// lock, removes what it says, then leftovers of dead runs and unreferenced blobs.
    ///
    /// # Errors
    ///
    /// As [`crate::Pruner::prune`]; a plan over budget is in the report ([`PruneReport::refusal`]).
    pub async fn prune(
        &self,
        retention: Option<&RetentionSettings>,
        options: &PruneOptions,
    ) -> Result<PruneReport> {
        let (g, s) = (self.gate, self.gate.scope());
        let body = async {
            let mut report = g.pruner().prune(retention, options).await?;
            if options.apply && !report.refused {
                g.pruner().collect_leftovers(&mut report).await;
            }
            if !report.refused {
                g.pruner().collect_blobs(&mut report, options.apply).await;
            }
            Ok(report)
        };
        // A dry run only reads.
        if !options.apply {
            return body.await;
        }
        let run_guard = s.lock("prune", None).await?;
        let retention_guard = match s
            .lock_retention(s.environment(), "prune", s.wait_lock())
            .await
        {
            Ok(guard) => guard,
            Err(e) => {
                s.unlock(run_guard).await;
                return Err(e);
            }
        };
        let report = s.holding(retention_guard, body).await;
        s.unlock(run_guard).await;
        report
    }

    /// `pin ID`: under the retention lock of the backup's environment (a prune deciding
    /// meanwhile could otherwise remove the backup right after its pin was written).
    ///
    /// # Errors
    ///
    /// As [`crate::Inventory::pin`] and [`crate::Scope::lock_retention`].
    pub async fn pin(&self, selector: &str, note: Option<String>) -> Result<PinOutcome> {
        let (g, s) = (self.gate, self.gate.scope());
        let manifest = g.inventory().resolve(selector).await?;
        let guard = s
            .lock_retention(&manifest.environment, "pin", s.wait_lock())
            .await?;
        s.holding(guard, g.inventory().pin(manifest.id.as_str(), note))
            .await
    }

    /// `unpin ID`: like `pin`; a pin whose backup is gone races with nothing and needs no lock.
    ///
    /// # Errors
    ///
    /// As [`crate::Inventory::unpin`] and [`crate::Scope::lock_retention`].
    pub async fn unpin(&self, selector: &str) -> Result<UnpinOutcome> {
        let (g, s) = (self.gate, self.gate.scope());
        match g.inventory().resolve(selector).await {
            Ok(m) => {
                let guard = s
                    .lock_retention(&m.environment, "unpin", s.wait_lock())
                    .await?;
                s.holding(guard, g.inventory().unpin(selector)).await
            }
            Err(_) => g.inventory().unpin(selector).await,
        }
    }

    /// `restore` of any source, once planned and consented: under the run lock (one restore,
    /// backup or run per store and environment at a time).
    ///
    /// # Errors
    ///
    /// As [`crate::Restores::restore`] and [`crate::Scope::lock`].
    pub async fn restore(
        &self,
        plan: RestorePlan,
        request: &RestoreRequest,
    ) -> Result<RestoreOutcome> {
        let (g, s) = (self.gate, self.gate.scope());
        let guard = s.lock("restore", None).await?;
        s.holding(guard, g.restores().restore(plan, request)).await
    }

    /// `list`: every readable backup of the environment, newest first (reads only).
    ///
    /// # Errors
    ///
    /// As [`crate::Inventory::list`].
    pub async fn list(&self) -> Result<Vec<BackupListing>> {
        self.gate.inventory().list().await
    }

    /// `show ID|last`: one backup with its verifications and runbook (reads only).
    ///
    /// # Errors
    ///
    /// As [`crate::Inventory::show`].
    pub async fn show(&self, selector: &str) -> Result<BackupDetails> {
        self.gate.inventory().show(selector).await
    }

    /// `check`: the newest backup matching `query` with a passing verification (reads only).
    ///
    /// # Errors
    ///
    /// As [`crate::Inventory::check`] (exit 7 when none matches).
    pub async fn check(&self, query: &CheckQuery) -> Result<CheckOutcome> {
        self.gate.inventory().check(query).await
    }

    /// `restore`'s first half: the plan and its preflight, for the operator to confirm (writes
    /// nothing, takes no lock).
    ///
    /// # Errors
    ///
    /// As [`crate::Restores::plan_restore`].
    pub async fn plan_restore(&self, request: &RestoreRequest) -> Result<RestorePlan> {
        self.gate.restores().plan_restore(request).await
    }

    /// `doctor`: every probe of the store and the sources (writes only under `.probe/`).
    pub async fn doctor(&self) -> DoctorReport {
        self.gate.doctor().run().await
    }
}
