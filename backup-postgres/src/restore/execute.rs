//! Carrying out a planned database restore, with the swap and the swap back.

use std::sync::Arc;

use backup_core::hooks::pause_at;
use backup_core::{FindingStatus, RestoreContext, RestoreDone, RestoreError, TargetState};

use super::{PlannedDatabaseRestore, step};
use crate::DumpArchive;
use crate::inspector::PgInspector;
use crate::restorer::{DEADLOCK_RETRY, PgRestorer, RestoreOptions, retry_with_one_job};
use crate::snapshotter::PgSnapshotter;
use crate::swap::PgAdmin;
use crate::tools::{find_tools, parse_major};
use crate::verify::{
    Privileges, count_differences, restored_findings, toc_extensions, toc_finding,
};

impl PlannedDatabaseRestore {
    /// An admin connection to the target server that knows the restore's work names.
    async fn admin(&self) -> backup_core::Result<PgAdmin> {
        let names = &self.names;
        PgAdmin::connect(
            &self.target_config,
            &self.source_name,
            &[&names.target, &names.restoring, &names.before],
        )
        .await
    }

    /// See [`PlannedRestore::execute`] and the module docs.
    pub(super) async fn run(
        &self,
        ctx: RestoreContext<'_>,
    ) -> Result<(RestoreDone, Option<String>), RestoreError> {
        let plan = self;
        let mut signals = backup_core::hooks::Signals::new(ctx.handle_signals);
        let untouched = RestoreError::untouched;
        let before_swap = signals.run(self.restore_until_swap(ctx)).await;
        let (pending, safety_backup, admin, connected) = match before_swap {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(e),
            Err(signal) => {
                return Err(untouched(format!(
                    "interrupted by {signal} before the swap; the unfinished database {} was dropped",
                    plan.names.restoring
                )));
            }
        };
        // 6. The swap: one transaction, not cancelled half-way (a signal arriving now is seen by
        // the next step, which swaps back).
        step(&format!(
            "swapping names{}",
            if connected > 0 {
                format!(" (terminating {connected} session(s))")
            } else {
                String::new()
            }
        ));
        let terminated = match admin
            .swap(
                &plan.names,
                plan.summary.target_exists,
                ctx.terminate_connections,
            )
            .await
        {
            Ok(n) => n,
            Err(e) => {
                // The error may have come after the server committed (a connection lost at
                // COMMIT): look again before saying anything about the target.
                let committed = match plan.admin().await {
                    Ok(again) => again
                        .database(&plan.names.restoring)
                        .await
                        .map(|found| found.is_none())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match committed {
                    Ok(false) => {
                        let dropped = pending.drop_now().await;
                        return Err(untouched(format!(
                            "{e}{}",
                            match dropped {
                                Ok(()) => format!(
                                    "; the new database {} was dropped",
                                    plan.names.restoring
                                ),
                                Err(d) => format!(
                                    "; the new database {} could not be dropped ({d})",
                                    plan.names.restoring
                                ),
                            }
                        )));
                    }
                    Ok(true) => {
                        step(&format!("the swap was committed despite the error ({e})"));
                        0
                    }
                    Err(unknown) => {
                        pending.keep();
                        return Err(RestoreError::Failed {
                            message: format!(
                                "the swap failed ({e}) and the server cannot tell whether it was committed ({unknown}): if {} exists, the target is untouched (drop it); otherwise {} holds the restored backup and {} the previous data",
                                plan.names.restoring, plan.names.target, plan.names.before
                            ),
                            target: TargetState::Unknown,
                        });
                    }
                }
            }
        };
        pending.keep();
        drop(admin);
        step(&format!(
            "swapped: {} is now the restored backup {}",
            plan.names.target, plan.manifest.id
        ));
        let after_swap = signals.run(self.check_swapped()).await;
        let failure = match after_swap {
            Ok(Ok(counted)) => {
                let (tables, rows) = counted;
                let kept_as = plan
                    .summary
                    .target_exists
                    .then(|| plan.names.before.clone());
                let drop_command = kept_as.as_ref().map(|k| {
                    format!(
                        "psql -d postgres -c 'DROP DATABASE {}'",
                        crate::quote_ident(k).replace('\'', "'\\''")
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
        let admin = plan.admin().await;
        let back = match &admin {
            Ok(admin) => admin
                .swap_back(&plan.names, plan.summary.target_exists)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match back {
            Ok(()) => {
                step(&format!(
                    "swapped back: {} is as it was before",
                    plan.names.target
                ));
                if let Ok(admin) = &admin {
                    match admin.drop_database(&plan.names.restoring).await {
                        Ok(()) => step(&format!(
                            "dropped the restored copy {}",
                            plan.names.restoring
                        )),
                        Err(e) => tracing::warn!(
                            "could not drop the restored copy {}: {e}; drop it by hand",
                            plan.names.restoring
                        ),
                    }
                }
                Err(RestoreError::Failed {
                    message: failure,
                    target: TargetState::SwappedBack,
                })
            }
            Err(e) => Err(RestoreError::Failed {
                message: format!(
                    "{failure}; swapping back failed too ({e}): {} holds the restored backup, {} the previous data",
                    plan.names.target, plan.names.before
                ),
                target: TargetState::Unknown,
            }),
        }
    }

    /// Steps 3–5: everything before the swap. Returns the restored database's guard, the safety
    /// backup, the admin connection and the sessions connected to the target now.
    async fn restore_until_swap(
        &self,
        ctx: RestoreContext<'_>,
    ) -> Result<(crate::PendingDatabase, Option<String>, PgAdmin, u64), RestoreError> {
        let plan = self;
        let untouched = RestoreError::untouched;
        let manifest = &plan.manifest;
        let source = manifest.source(&plan.source_name).ok_or_else(|| {
            RestoreError::Usage(format!(
                "backup {} has no source {}",
                manifest.id, plan.source_name
            ))
        })?;
        let dump = DumpArchive::of(source).ok_or_else(|| {
            RestoreError::Usage(format!(
                "source {} of backup {} has no pg_dump archive",
                source.name, manifest.id
            ))
        })?;
        let artifact = dump.head;

        // 3. Verify the backup (levels 1–3) into a staged file, and the extensions it needs.
        step(&format!(
            "verifying backup {} ({})",
            manifest.id, artifact.key
        ));
        let damaged = |summary: String| RestoreError::Damaged {
            id: manifest.id.to_string(),
            summary: format!("{summary}; nothing was restored and the target is untouched"),
        };
        let staged = dump
            .stage(ctx.store, source, ctx.temp_dir)
            .await
            .map_err(|e| damaged(format!("cannot read the backup: {e}")))?;
        if staged.damaged {
            let failures: Vec<String> = staged
                .findings
                .iter()
                .filter(|f| f.status == FindingStatus::Failed)
                .map(|f| f.message.clone())
                .collect();
            return Err(damaged(if failures.is_empty() {
                format!("{} is missing from the store", artifact.key)
            } else {
                failures.join("; ")
            }));
        }
        let admin = plan.admin().await.map_err(|e| untouched(e.to_string()))?;
        let (_, server_major) = admin
            .inspector()
            .server_version()
            .await
            .map_err(|e| untouched(e.to_string()))?;
        let archive_major = source
            .tool_version
            .as_deref()
            .and_then(parse_major)
            .unwrap_or(0);
        let tools = find_tools(
            archive_major.max(server_major),
            plan.target_config.bin_dir.as_deref(),
            &plan.source_name,
        )
        .await
        .map_err(RestoreError::Preflight)?;
        let (toc, listing) = toc_finding(&tools, staged.path(), source, artifact)
            .await
            .map_err(|e| untouched(e.to_string()))?;
        if toc.status == FindingStatus::Failed {
            return Err(damaged(toc.message));
        }
        let available = admin
            .available_extensions()
            .await
            .map_err(|e| untouched(e.to_string()))?;
        let missing: Vec<String> = toc_extensions(&listing)
            .into_iter()
            .filter(|e| !available.contains(e))
            .collect();
        if !missing.is_empty() {
            return Err(RestoreError::Preflight(
                backup_core::Error::SourceUnavailable {
                    source_name: plan.source_name.clone(),
                    message: format!(
                        "the backup needs extension(s) {} that the target server cannot install; install them there first (nothing was changed)",
                        missing.join(", ")
                    ),
                },
            ));
        }
        step(&format!(
            "backup {} verified to level 3 (archive)",
            manifest.id
        ));
        pause_at("verified").await;

        // 4. Safety backup of the target.
        let safety_backup = if plan.summary.target_exists {
            step(&format!(
                "taking a safety backup of {}",
                plan.summary.target
            ));
            let snapshotter = PgSnapshotter::new(source.name.clone(), plan.target_config.clone());
            let id = ctx
                .safety
                .safety_backup(Arc::new(snapshotter))
                .await
                .map_err(|e| untouched(format!("the safety backup failed: {e}")))?;
            Some(id)
        } else {
            step(&format!(
                "no safety backup needed: database {} does not exist yet",
                plan.names.target
            ));
            None
        };
        pause_at("safety-backup").await;

        // 5. Restore into a new database and compare.
        match admin.cleanup_restore_leftovers(&plan.names).await {
            Ok(dropped) => {
                for d in dropped {
                    step(&format!("dropped {d}, left by a restore that died"));
                }
            }
            Err(e) => tracing::debug!("could not look for leftover restore databases: {e}"),
        }
        let like = admin
            .database(&plan.names.target)
            .await
            .map_err(|e| untouched(e.to_string()))?;
        if admin
            .database(&plan.names.restoring)
            .await
            .map_err(|e| untouched(e.to_string()))?
            .is_some()
        {
            return Err(untouched(format!(
                "database {} already exists: another restore of this backup is running (or drop it by hand)",
                plan.names.restoring
            )));
        }
        step(&format!("creating database {}", plan.names.restoring));
        let comment = format!("restore of {} into {}", manifest.id, plan.names.target);
        let mut pending = admin
            .create_database(&plan.names.restoring, like.as_ref(), &comment)
            .await
            .map_err(|e| untouched(e.to_string()))?;
        pause_at("created").await;
        step(&format!(
            "restoring {} into {} with {}",
            manifest.id, plan.names.restoring, tools.version
        ));
        let mut jobs = ctx.jobs.max(1);
        loop {
            let restored = PgRestorer::new(tools.clone())
                .restore_file(
                    staged.path(),
                    &pending.config(),
                    &RestoreOptions {
                        jobs,
                        without_owners_and_privileges: false,
                        continue_past_errors: false,
                    },
                )
                .await;
            match restored {
                // Start over in a fresh database with one job.
                Err(message) if retry_with_one_job(jobs, &message) => {
                    step(DEADLOCK_RETRY);
                    pending
                        .drop_now()
                        .await
                        .map_err(|e| untouched(e.to_string()))?;
                    pending = admin
                        .create_database(&plan.names.restoring, like.as_ref(), &comment)
                        .await
                        .map_err(|e| untouched(e.to_string()))?;
                    jobs = 1;
                }
                other => {
                    other.map_err(|message| {
                        untouched(format!(
                            "restoring into {}: {message}; the unfinished database is dropped",
                            plan.names.restoring
                        ))
                    })?;
                    break;
                }
            }
        }
        drop(staged);
        pause_at("restored").await;
        step(&format!(
            "comparing {} with the backup's record",
            plan.names.restoring
        ));
        let findings = restored_findings(
            ctx.store,
            &pending.config(),
            source,
            artifact,
            &privileges_compared(source, &plan.summary.server_version),
        )
        .await;
        let failed: Vec<String> = findings
            .iter()
            .filter(|f| f.status == FindingStatus::Failed)
            .map(|f| f.message.clone())
            .collect();
        if !failed.is_empty() {
            return Err(untouched(format!(
                "the restored database does not match the backup: {}",
                failed.join("; ")
            )));
        }
        for f in &findings {
            step(&f.message);
        }
        pause_at("before-swap").await;

        // 6. Swap.
        let connected = if plan.summary.target_exists {
            admin
                .other_connections(&plan.names.target)
                .await
                .map_err(|e| untouched(e.to_string()))?
        } else {
            0
        };
        if connected > 0 && !ctx.terminate_connections {
            return Err(untouched(format!(
                "{connected} session(s) connected to {} meanwhile: pass --terminate-connections to end them for the swap",
                plan.names.target
            )));
        }
        Ok((pending, safety_backup, admin, connected))
    }

    /// Step 7: the swapped-in database, reached by its name, has the backup's row counts.
    async fn check_swapped(&self) -> std::result::Result<(usize, u64), String> {
        let plan = self;
        pause_at("after-swap").await;
        let source = plan
            .manifest
            .source(&plan.source_name)
            .ok_or_else(|| "the source vanished from the manifest".to_owned())?;
        let config = plan.target_config.with_dbname(&plan.names.target);
        let inspector = PgInspector::connect(&config, &plan.source_name)
            .await
            .map_err(|e| format!("cannot reach {} after the swap: {e}", plan.names.target))?;
        let counts = inspector.row_counts().await.map_err(|e| {
            format!(
                "cannot count the rows of {} after the swap: {e}",
                plan.names.target
            )
        })?;
        let differences = count_differences(&source.stats.tables, &counts);
        if !differences.is_empty() {
            return Err(format!(
                "{} differs from the backup after the swap: {}",
                plan.names.target,
                differences.join("; ")
            ));
        }
        step(&format!(
            "checked {}: {} tables, {} rows, as recorded in the backup",
            plan.names.target,
            counts.len(),
            source.stats.total_rows()
        ));
        Ok((counts.len(), source.stats.total_rows()))
    }
}

/// A real restore keeps owners and grants; they are compared with the record when the target
/// runs the source's major version (newer ones render default privileges differently: 17 added
/// MAINTAIN).
fn privileges_compared(source: &backup_core::SourceManifest, target_version: &str) -> Privileges {
    let source_major = source.server_version.as_deref().and_then(parse_major);
    let target_major = parse_major(target_version);
    if source_major.is_some() && source_major == target_major {
        Privileges::Restored
    } else {
        Privileges::NotRestored(format!(
            "the target runs PostgreSQL {}, the backup is of {}; default privileges differ between major versions",
            target_major.unwrap_or(0),
            source_major.unwrap_or(0)
        ))
    }
}
