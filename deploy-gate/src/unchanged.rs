//! A run on sources nobody touched: [`Backups::unchanged_backup`] finds the newest backup that
//! still describes every source exactly (each snapshotter proves it, see
//! [`backup_core::Snapshotter::unchanged_since`]) and already passed the run's verification,
//! so the run records its deployment against that backup instead of taking a new one.
//!
//! The reuse is refused, and a new backup taken, as soon as anything differs: another set of
//! sources (names, kinds, locations), other encryption settings, an expired backup, a
//! verification that did not reach the level the run requires, or any source whose proof
//! fails. The search reads the newest few backups of the environment only, so it costs a few
//! store reads and one query per source.

use backup_core::encryption::ManifestEncryption;
use backup_core::{BackupKind, ChangeProof, Manifest, StoreExt, VerificationRecord, hidden_stats};

use crate::backups::{BackupOutcome, Backups};

/// Backups of the environment looked at, newest first.
const CANDIDATES: usize = 5;

/// A backup a run may use instead of a new one.
#[derive(Debug, Clone)]
pub struct Unchanged {
    /// The backup, with its passing verification.
    pub outcome: BackupOutcome,
    /// What was proven, for the operator.
    pub proof: String,
}

impl Backups<'_> {
    /// The newest backup of the environment that every source provably still matches and that
    /// passed verification to the level new backups require, or why there is none.
    pub async fn unchanged_backup(&self) -> std::result::Result<Unchanged, String> {
        // No store read when some source could never prove itself unchanged.
        if let Some(s) = self
            .setup
            .snapshotters
            .iter()
            .find(|s| !s.can_prove_unchanged())
        {
            return Err(format!(
                "source {}: {}",
                s.source_name(),
                ChangeProof::no_proof_reason(s.kind())
            ));
        }
        let store = self.scope.store.as_ref();
        let ids = store
            .list_backup_ids()
            .await
            .map_err(|e| format!("the backups cannot be listed ({e})"))?;
        let mut why_not = "no earlier backup of this environment".to_owned();
        let mut looked = 0;
        for id in ids.iter().rev() {
            let Ok(manifest) = store.read_manifest(id).await else {
                continue;
            };
            if manifest.environment != self.scope.environment || manifest.kind == BackupKind::Safety
            {
                continue;
            }
            looked += 1;
            if looked > CANDIDATES {
                break;
            }
            match self.reusable(&manifest).await {
                Ok(outcome) => {
                    return Ok(Unchanged {
                        proof: format!(
                            "no source changed since backup {id}, verified to level {}",
                            outcome
                                .verification
                                .level_reached
                                .map_or("none", |l| l.as_str())
                        ),
                        outcome,
                    });
                }
                // The newest backup's reason is the one worth telling.
                Err(why) if looked == 1 => why_not = format!("backup {id}: {why}"),
                Err(_) => {}
            }
        }
        Err(why_not)
    }

    /// `manifest` as the outcome of this run's backup, or why it cannot be.
    async fn reusable(&self, manifest: &Manifest) -> std::result::Result<BackupOutcome, String> {
        let snapshotters = &self.setup.snapshotters;
        if manifest.sources.len() != snapshotters.len() {
            return Err("it holds other sources than the configured ones".into());
        }
        if manifest
            .expires_at
            .is_some_and(|t| t <= self.scope.clock.now())
        {
            return Err("it has expired".into());
        }
        let recipients = self.setup.pipeline.parsed_recipients().ok().flatten();
        let wanted = recipients.map(|r| r.fingerprints());
        if ManifestEncryption::of(manifest).map(|e| e.recipients) != wanted {
            return Err("it was encrypted otherwise than [encryption] now says".into());
        }
        if manifest
            .sources
            .iter()
            .any(|s| hidden_stats::is_hidden(s) != self.setup.pipeline.hide_table_names)
        {
            return Err("hide_table_names differs".into());
        }
        let verification = self.passing_verification(manifest).await?;
        for snapshotter in snapshotters {
            let Some(source) = manifest.sources.iter().find(|s| {
                s.name == *snapshotter.source_name()
                    && s.kind == snapshotter.kind()
                    && s.location == snapshotter.location()
            }) else {
                return Err(format!(
                    "it has no {} source {} at {}",
                    snapshotter.kind(),
                    snapshotter.source_name(),
                    snapshotter.location()
                ));
            };
            match snapshotter.unchanged_since(source).await {
                Ok(ChangeProof::Unchanged) => {}
                Ok(ChangeProof::Changed(why)) => {
                    return Err(format!("source {}: {why}", source.name));
                }
                Err(e) => {
                    return Err(format!("source {}: no proof ({e})", source.name));
                }
            }
        }
        Ok(BackupOutcome {
            manifest: manifest.clone(),
            verification,
            preflight: Vec::new(),
            snapshot_seconds: 0.0,
        })
    }

    /// The newest verification record of `manifest`, when it passed at the level new backups
    /// are verified to (and at least the required one).
    async fn passing_verification(
        &self,
        manifest: &Manifest,
    ) -> std::result::Result<VerificationRecord, String> {
        let records = self
            .scope
            .store
            .read_verifications(&manifest.id)
            .await
            .map_err(|e| format!("its verification records cannot be read ({e})"))?;
        let Some(last) = records.into_iter().next_back() else {
            return Err("it was never verified".into());
        };
        let wanted = self.setup.verify_level.max(self.setup.verify_required);
        match last.level_reached {
            Some(level) if last.passed && level >= wanted => Ok(last),
            Some(level) if last.passed => Err(format!(
                "its last verification reached level {level}, this run requires {wanted}"
            )),
            _ => Err("its last verification did not pass".into()),
        }
    }
}
