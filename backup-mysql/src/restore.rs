//! Restoring a MySQL/MariaDB source into a database, with a safety net.
//!
//! # Contract
//!
//! 1. **Plan and preflight** ([`MysqlRestorer`]): reach the target server, find the client
//!    tool, see whether the target database exists and who is connected to it. Nothing is
//!    written.
//! 2. **Verify the backup** (levels 1–3: checksum, decompression, the dump complete with every
//!    counted row): a damaged backup is refused ([`RestoreError::Damaged`]) before anything is
//!    touched.
//! 3. **Safety backup** of the target through the gate's [`backup_core::SafetyNet`] when it
//!    exists.
//! 4. **Restore into a new database** `<db>__predeploy_restore_<backup>` (streamed from the
//!    store into the `mariadb`/`mysql` client), then compare its exact row counts and schema
//!    with the backup's record.
//! 5. **Swap**: one atomic `RENAME TABLE` moves the target's tables to
//!    `<db>__predeploy_before_<time>` and the restored ones into the target; triggers, views,
//!    routines and events are recreated around it (see [`crate::swap`] for what is and is not
//!    atomic). The kept database stays until the operator drops it.
//! 6. **Check** the target by its name: row counts and schema fingerprint.
//!
//! A failure or SIGINT/SIGTERM before the swap leaves the target untouched and drops the new
//! database; after it, the swap is undone ([`TargetState`] says which). A `kill -9` before the
//! swap leaves the target untouched (the new database is dropped by the next restore of the
//! target); during the few statements of the swap it can leave the restored tables in place
//! without some of their triggers, views, routines or events (they are in the backup).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::hooks::pause_at;
use backup_core::{
    FindingStatus, Manifest, PlannedRestore, RestoreContext, RestoreDone, RestoreError,
    RestoreSetup, RestoreSummary, Restorer, SourceManifest, TargetState,
};

use crate::admin::{BEFORE_MARK, MysqlAdmin, RESTORE_MARK, replay_dump, work_name};
use crate::compare::{count_differences, first_few, restored_findings};
use crate::config::MysqlSourceConfig;
use crate::inspector::{MysqlInspector, quote_ident};
use crate::replay_filter::ReplayFilter;
use crate::snapshotter::{DUMP_FORMAT, MysqlSnapshotter};
use crate::swap::{DatabaseObjects, MysqlSwap};
use crate::tools::{Flavour, find_client};
use crate::verifier::{charset_of, verify_dump};

/// How many `<db>__predeploy_before_<time>[_n]` names one restore tries.
const MAX_BEFORE_ATTEMPTS: u32 = 20;

/// Restores MySQL/MariaDB sources into databases: a new database restored and compared, then
/// its tables swapped in with one `RENAME TABLE`, the previous ones kept (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MysqlRestorer {
    /// Where the client tools are, for targets whose URL names none.
    pub bin_dir: Option<PathBuf>,
}

/// The names one restore uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MysqlSwapNames {
    /// The database being restored.
    pub target: String,
    /// Where the backup is restored first.
    pub restoring: String,
    /// Where the target's previous tables are kept.
    pub before: String,
}

/// A restore planned by [`MysqlRestorer`].
#[derive(Debug, Clone)]
pub struct PlannedMysqlRestore {
    summary: RestoreSummary,
    names: MysqlSwapNames,
    manifest: Manifest,
    source_name: String,
    target_config: MysqlSourceConfig,
    client: PathBuf,
}

fn step(message: &str) {
    tracing::info!("restore: {message}");
}

#[async_trait]
impl Restorer for MysqlRestorer {
    async fn plan(&self, setup: RestoreSetup<'_>) -> Result<Arc<dyn PlannedRestore>, RestoreError> {
        let (manifest, source) = (setup.manifest, setup.source);
        let mut target_config =
            MysqlSourceConfig::from_url(setup.target_url).map_err(|e| match e {
                // `via=docker://` naming a stopped container: exit 5, named by the source.
                backup_core::Error::SourceUnavailable { message, .. } => {
                    RestoreError::Preflight(backup_core::Error::SourceUnavailable {
                        source_name: source.name.to_string(),
                        message,
                    })
                }
                e => RestoreError::Usage(format!("--to: {e}")),
            })?;
        if target_config.bin_dir.is_none() {
            target_config.bin_dir.clone_from(&self.bin_dir);
        }
        if !source.artifacts.iter().any(|a| a.format == DUMP_FORMAT) {
            return Err(RestoreError::Usage(format!(
                "source {} of backup {} has no SQL dump",
                source.name, manifest.id
            )));
        }
        let target = target_config.database.clone();
        let (restoring, t1) = work_name(&target, RESTORE_MARK, manifest.id.as_str());
        let before_suffix = setup.now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let (before, t2) = work_name(&target, BEFORE_MARK, &before_suffix);
        let mut names = MysqlSwapNames {
            target: target.clone(),
            restoring,
            before,
        };
        let mut notes = Vec::new();
        if t1 || t2 {
            notes.push(format!(
                "the database name {target:?} is too long for the work names (at most 64 characters): they use a shortened prefix"
            ));
        }
        let preflight = |message: String| {
            RestoreError::Preflight(backup_core::Error::SourceUnavailable {
                source_name: source.name.to_string(),
                message,
            })
        };
        let mut admin = MysqlAdmin::connect(&target_config, source.name.as_str())
            .await
            .map_err(RestoreError::Preflight)?;
        let version = admin
            .server_version()
            .await
            .map_err(RestoreError::Preflight)?;
        let flavour = Flavour::of_version(&version);
        let client = find_client(
            flavour,
            target_config.bin_dir.as_deref(),
            source.name.as_str(),
        )
        .map_err(RestoreError::Preflight)?;
        let exists = admin
            .database_exists(&names.target)
            .await
            .map_err(RestoreError::Preflight)?;
        // A second restore in the same second (an undo right after a restore) keeps its
        // previous tables under the next free name: `…_2`, `…_3`.
        let mut attempt = 1;
        while admin
            .database_exists(&names.before)
            .await
            .map_err(RestoreError::Preflight)?
        {
            attempt += 1;
            if attempt > MAX_BEFORE_ATTEMPTS {
                return Err(preflight(format!(
                    "databases {} and {MAX_BEFORE_ATTEMPTS} variants of it already exist: drop the ones you no longer need and run again",
                    names.before
                )));
            }
            names.before = work_name(&target, BEFORE_MARK, &format!("{before_suffix}_{attempt}")).0;
        }
        let connections = if exists {
            admin
                .sessions_on(&names.target)
                .await
                .map_err(RestoreError::Preflight)?
                .len() as u64
        } else {
            0
        };
        let size = if exists {
            admin.database_size(&names.target).await.unwrap_or(0)
        } else {
            0
        };
        admin.close().await;
        let raw: u64 = source
            .artifacts
            .iter()
            .filter(|a| a.format == DUMP_FORMAT)
            .map(|a| a.raw_size)
            .sum();
        notes.push(format!(
            "free space not checked: the new database needs about {} on the server (the target holds {})",
            backup_core::disk::human_bytes(raw),
            backup_core::disk::human_bytes(size)
        ));
        let location = target_config.location();
        let mut steps = vec![
            format!(
                "verify backup {} (checksums, the dump complete with every counted row)",
                manifest.id
            ),
            if exists {
                format!("take a safety backup (kind safety) of {location} and verify it to level 3")
            } else {
                format!(
                    "no safety backup: database {} does not exist on the target yet",
                    names.target
                )
            },
            format!(
                "create database {} and replay the dump into it with {}",
                names.restoring,
                client.display()
            ),
            format!(
                "compare its exact row counts and schema fingerprint with the backup's ({} tables, {} rows)",
                source.stats.tables.len(),
                source.stats.total_rows()
            ),
        ];
        if exists && connections > 0 {
            if setup.terminate_connections {
                steps.push(format!(
                    "terminate the {connections} session(s) connected to {}",
                    names.target
                ));
            } else {
                notes.push(format!(
                    "{connections} other session(s) are connected to {}: the restore refuses unless --terminate-connections is given",
                    names.target
                ));
            }
        }
        steps.push(if exists {
            format!(
                "move every table in one RENAME TABLE: {t}.* -> {b}.*, {r}.* -> {t}.*; recreate triggers, views, routines and events in {t}",
                t = names.target,
                b = names.before,
                r = names.restoring
            )
        } else {
            format!(
                "create database {t} and move every table of {r} into it in one RENAME TABLE; recreate triggers, views, routines and events",
                t = names.target,
                r = names.restoring
            )
        });
        steps.push(format!(
            "check {} by its name; on any failure after the swap, swap back",
            names.target
        ));
        if exists {
            steps.push(format!(
                "keep the previous tables in {} until you drop it",
                names.before
            ));
        }
        let mut details = serde_json::Map::new();
        details.insert(
            "names".into(),
            serde_json::to_value(&names).unwrap_or_default(),
        );
        let summary = RestoreSummary {
            target: location,
            product: flavour.name().into(),
            server_version: version,
            target_exists: exists,
            connections,
            confirm_name: names.target.clone(),
            steps,
            notes,
            details,
        };
        Ok(Arc::new(PlannedMysqlRestore {
            summary,
            names,
            manifest: manifest.clone(),
            source_name: source.name.to_string(),
            target_config,
            client,
        }))
    }
}

#[async_trait]
impl PlannedRestore for PlannedMysqlRestore {
    fn summary(&self) -> &RestoreSummary {
        &self.summary
    }

    async fn execute(
        &self,
        ctx: RestoreContext<'_>,
    ) -> Result<(RestoreDone, Option<String>), RestoreError> {
        let mut signals = backup_core::hooks::Signals::new(ctx.handle_signals);
        let before_swap = signals.run(self.restore_until_swap(ctx)).await;
        let (pending, safety_backup) = match before_swap {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(e),
            Err(signal) => {
                return Err(RestoreError::untouched(format!(
                    "interrupted by {signal} before the swap; the unfinished database {} was dropped",
                    self.names.restoring
                )));
            }
        };
        // The swap is not cancelled half-way: a signal arriving now is seen by the next step.
        let mut swap = MysqlSwap {
            config: self.target_config.clone(),
            names: self.names.clone(),
            target_existed: self.summary.target_exists,
            old: DatabaseObjects::default(),
            new: DatabaseObjects::default(),
            aside_created: false,
            touched: false,
            renamed: false,
        };
        let terminated = match swap.run(ctx.terminate_connections).await {
            Ok(n) => n,
            Err(e) => {
                let undone = swap.undo().await;
                let dropped = pending.drop_now().await;
                return Err(match undone {
                    Ok(()) => RestoreError::Failed {
                        message: format!(
                            "the swap failed ({e}); {}{}",
                            if swap.renamed {
                                "it was undone"
                            } else {
                                "nothing was moved"
                            },
                            match dropped {
                                Ok(()) => format!(
                                    "; the new database {} was dropped",
                                    self.names.restoring
                                ),
                                Err(d) => format!(
                                    "; the new database {} could not be dropped ({d})",
                                    self.names.restoring
                                ),
                            }
                        ),
                        target: if swap.renamed {
                            TargetState::SwappedBack
                        } else {
                            TargetState::Untouched
                        },
                    },
                    Err(u) => RestoreError::Failed {
                        message: format!(
                            "the swap failed ({e}) and undoing it failed too ({u}): {} may hold the restored tables, {} the previous ones",
                            self.names.target, self.names.before
                        ),
                        target: TargetState::Unknown,
                    },
                });
            }
        };
        step(&format!(
            "swapped: {} now holds backup {}",
            self.names.target, self.manifest.id
        ));
        let after_swap = signals.run(self.check_swapped(ctx)).await;
        let failure = match after_swap {
            Ok(Ok((tables, rows))) => {
                // The restored tables left the new database: drop what remains of it.
                if let Err(e) = pending.drop_now().await {
                    tracing::warn!(
                        "could not drop the emptied database {}: {e}",
                        self.names.restoring
                    );
                }
                let kept_as = self
                    .summary
                    .target_exists
                    .then(|| self.names.before.clone());
                let drop_command = kept_as.as_ref().map(|k| {
                    format!(
                        "mariadb -e {}",
                        backup_core::runbook::shell_quote(&format!(
                            "DROP DATABASE {}",
                            quote_ident(k)
                        ))
                    )
                });
                return Ok((
                    RestoreDone {
                        summary: format!(
                            "{tables} tables, {rows} rows, checked against the backup"
                        ),
                        notes: match safety_backup {
                            Some(_) => Vec::new(),
                            None => {
                                vec!["no safety backup: the database did not exist before".into()]
                            }
                        },
                        details: serde_json::Map::new(),
                        kept_as,
                        drop_command,
                        terminated,
                        tables,
                        rows,
                    },
                    safety_backup,
                ));
            }
            Ok(Err(message)) => message,
            Err(signal) => format!("interrupted by {signal} after the swap"),
        };
        step(&format!("{failure}: swapping back"));
        match swap.undo().await {
            Ok(()) => {
                step(&format!(
                    "swapped back: {} is as it was before",
                    self.names.target
                ));
                if let Err(e) = pending.drop_now().await {
                    tracing::warn!(
                        "could not drop the restored copy {}: {e}",
                        self.names.restoring
                    );
                }
                Err(RestoreError::Failed {
                    message: failure,
                    target: TargetState::SwappedBack,
                })
            }
            Err(e) => {
                pending.keep();
                Err(RestoreError::Failed {
                    message: format!(
                        "{failure}; swapping back failed too ({e}): {} holds the restored backup, {} the previous tables",
                        self.names.target, self.names.before
                    ),
                    target: TargetState::Unknown,
                })
            }
        }
    }
}

impl PlannedMysqlRestore {
    fn source(&self) -> Result<&SourceManifest, RestoreError> {
        self.manifest.source(&self.source_name).ok_or_else(|| {
            RestoreError::Usage(format!(
                "backup {} has no source {}",
                self.manifest.id, self.source_name
            ))
        })
    }

    /// Steps 2–4: everything before the swap. Returns the new database's guard and the safety
    /// backup.
    async fn restore_until_swap(
        &self,
        ctx: RestoreContext<'_>,
    ) -> Result<(crate::admin::WorkDatabase, Option<String>), RestoreError> {
        let untouched = RestoreError::untouched;
        let manifest = &self.manifest;
        let source = self.source()?;
        let artifact = source
            .artifacts
            .iter()
            .find(|a| a.format == DUMP_FORMAT)
            .ok_or_else(|| {
                RestoreError::Usage(format!("source {} has no SQL dump", source.name))
            })?;

        // 2. Verify the backup (levels 1–3).
        step(&format!(
            "verifying backup {} ({})",
            manifest.id, artifact.key
        ));
        let findings = verify_dump(ctx.store, source, artifact)
            .await
            .map_err(|e| RestoreError::Damaged {
                id: manifest.id.to_string(),
                summary: format!(
                    "cannot read the backup: {e}; nothing was restored and the target is untouched"
                ),
            })?;
        let failed: Vec<String> = findings
            .iter()
            .filter(|f| f.status == FindingStatus::Failed)
            .map(|f| f.message.clone())
            .collect();
        if !failed.is_empty() {
            return Err(RestoreError::Damaged {
                id: manifest.id.to_string(),
                summary: format!(
                    "{}; nothing was restored and the target is untouched",
                    failed.join("; ")
                ),
            });
        }
        step(&format!(
            "backup {} verified to level 3 (archive)",
            manifest.id
        ));
        pause_at("verified").await;

        // 3. Safety backup of the target.
        let safety_backup = if self.summary.target_exists {
            step(&format!(
                "taking a safety backup of {}",
                self.summary.target
            ));
            let snapshotter =
                MysqlSnapshotter::new(source.name.clone(), self.target_config.clone());
            let id = ctx
                .safety
                .safety_backup(Arc::new(snapshotter))
                .await
                .map_err(|e| untouched(format!("the safety backup failed: {e}")))?;
            Some(id)
        } else {
            step(&format!(
                "no safety backup needed: database {} does not exist yet",
                self.names.target
            ));
            None
        };
        pause_at("safety-backup").await;

        // 4. Restore into a new database and compare.
        let mut admin = MysqlAdmin::connect(&self.target_config, &self.source_name)
            .await
            .map_err(|e| untouched(e.to_string()))?;
        match admin
            .cleanup_leftovers(&self.names.target, RESTORE_MARK)
            .await
        {
            Ok(dropped) => {
                for d in dropped {
                    step(&format!("dropped {d}, left by a restore that died"));
                }
            }
            Err(e) => tracing::debug!("could not look for leftover restore databases: {e}"),
        }
        if admin
            .database_exists(&self.names.restoring)
            .await
            .map_err(|e| untouched(e.to_string()))?
        {
            return Err(untouched(format!(
                "database {} already exists: another restore of this backup is running (or drop it by hand)",
                self.names.restoring
            )));
        }
        if let Some(why) = admin.space_problem(artifact.raw_size).await {
            admin.close().await;
            return Err(untouched(format!(
                "not enough space for the restored copy: {why}; free space on the server, then run again"
            )));
        }
        step(&format!("creating database {}", self.names.restoring));
        let purpose = format!("restore of {} into {}", manifest.id, self.names.target);
        let pending = admin
            .create_work_database(&self.names.restoring, charset_of(source).as_ref(), &purpose)
            .await
            .map_err(|e| untouched(e.to_string()))?;
        admin.close().await;
        pause_at("created").await;
        step(&format!(
            "replaying {} into {} with {}",
            artifact.key,
            self.names.restoring,
            self.client.display()
        ));
        if let Err(message) = replay_dump(
            ctx.store,
            artifact,
            &self.client,
            &pending.config(),
            ReplayFilter::for_restore(),
        )
        .await
        {
            let dropped = pending.drop_now().await;
            return Err(untouched(format!(
                "restoring into {}: {message}; {}",
                self.names.restoring,
                match dropped {
                    Ok(()) => "the unfinished database was dropped".to_owned(),
                    Err(e) => format!("the unfinished database could not be dropped ({e})"),
                }
            )));
        }
        pause_at("restored").await;
        step(&format!(
            "comparing {} with the backup's record",
            self.names.restoring
        ));
        let findings = restored_findings(ctx.store, &pending.config(), source, artifact, &[]).await;
        let failed: Vec<String> = findings
            .iter()
            .filter(|f| f.status == FindingStatus::Failed)
            .map(|f| f.message.clone())
            .collect();
        if !failed.is_empty() {
            let _ = pending.drop_now().await;
            return Err(untouched(format!(
                "the restored database does not match the backup: {}; the new database was dropped",
                failed.join("; ")
            )));
        }
        for f in &findings {
            step(&f.message);
        }
        pause_at("before-swap").await;
        Ok((pending, safety_backup))
    }

    /// Step 6: the target, reached by its name, has the backup's row counts and schema.
    async fn check_swapped(&self, ctx: RestoreContext<'_>) -> Result<(usize, u64), String> {
        pause_at("after-swap").await;
        let source = self.source().map_err(|e| e.to_string())?;
        let config = self.target_config.with_database(&self.names.target);
        let mut inspector = MysqlInspector::connect(&config, &self.source_name)
            .await
            .map_err(|e| format!("cannot reach {} after the swap: {e}", self.names.target))?;
        let tables = inspector.base_tables().await.map_err(|e| e.to_string())?;
        let counts = inspector.row_counts(&tables).await.map_err(|e| {
            format!(
                "cannot count the rows of {} after the swap: {e}",
                self.names.target
            )
        })?;
        let listing = inspector
            .schema_listing(&[])
            .await
            .map_err(|e| e.to_string())?;
        inspector.close().await;
        let differences = count_differences(&source.stats.tables, &counts);
        if !differences.is_empty() {
            return Err(format!(
                "{} differs from the backup after the swap: {}",
                self.names.target,
                first_few(&differences)
            ));
        }
        if let Some(want) = source.stats.schema_fingerprint.as_deref()
            && listing.fingerprint() != want
        {
            let named = match crate::compare::recorded_listing(ctx.store, source).await {
                Ok(Some(l)) => first_few(&l.differences(&listing)),
                Ok(None) => "the backup has no schema listing".to_owned(),
                Err(e) => e,
            };
            return Err(format!(
                "the schema of {} differs from the backup after the swap: {named}",
                self.names.target
            ));
        }
        step(&format!(
            "checked {}: {} tables, {} rows and the schema as recorded in the backup",
            self.names.target,
            counts.len(),
            source.stats.total_rows()
        ));
        Ok((counts.len(), source.stats.total_rows()))
    }
}
