//! `restore`: put a backup back with a safety net, and the rollback of `run
//! --rollback-on-failure`.
//!
//! # Contract
//!
//! 1. **Plan and preflight** ([`Gate::plan_restore`]): resolve the backup and the source, reach the
//!    target server, check versions and client tools, count the sessions on the target (refused
//!    without `--terminate-connections` when there are any), check free space when the data
//!    directory is local. Nothing is written.
//! 2. **Consent**: `confirmed` (typed database name, `--yes`, `PREDEPLOY_CONFIRM_RESTORE=yes`) and,
//!    for a production environment, `allow_production`; otherwise exit 2.
//! 3. **Verify the backup** (levels 1–3, into a staged temp file) and the extensions it needs: a
//!    damaged backup is refused with exit 4 before anything is touched.
//! 4. **Safety backup** of the target (kind `safety`, verified to level 3) when the target exists.
//! 5. **Restore into a new database** `<db>__predeploy_restore_<backup>`, then compare its exact
//!    row counts and schema fingerprint with the manifest.
//! 6. **Swap** in one transaction: `<db>` → `<db>__predeploy_before_<time>`, the new database →
//!    `<db>`. The old database stays until the operator drops it.
//! 7. **Check** the swapped-in database by its name.
//!
//! A failure or SIGINT/SIGTERM before the swap leaves the target untouched and drops the new
//! database; after it, the swap is undone. Both are exit 8 ([`GateError::Restore`], whose
//! [`TargetState`] says which). A `kill -9` cannot run any cleanup: before the swap commits the
//! target is untouched (the labelled new database is dropped by the next restore of the target);
//! after, the verified restored data is in place.

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::{
    BackupKind, DeployInfo, FindingStatus, Manifest, SourceManifest, StoreExt, VerificationLevel,
};
use backup_postgres::{
    DUMP_FORMAT, PgAdmin, PgInspector, PgRestorer, PgSnapshotter, PgSourceConfig, ProcessEnv,
    RestoreOptions, SwapNames, find_tools, parse_major, redact_url,
};
use backup_verify::{
    count_differences, restored_findings, stage_archive, toc_extensions, toc_finding,
};
use serde::Serialize;

use crate::config::{Settings, SourceSpec};
use crate::error::{GateError, Result, TargetState};
use crate::gate::{BackupRequest, Gate};

/// Environment variable that confirms a restore like `--yes`.
pub const CONFIRM_RESTORE_ENV: &str = "PREDEPLOY_CONFIRM_RESTORE";

/// What to restore, where, and with which consent.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// A backup id, or `last` (the newest backup of the environment that is not a safety backup).
    pub backup: String,
    /// The source of the backup to restore (needed when the backup has several).
    pub source: Option<String>,
    /// The target database URL (default: the configured source of the same name).
    pub to: Option<String>,
    /// Terminate other sessions on the target for the swap (else their presence refuses).
    pub terminate_connections: bool,
    /// The operator confirmed (typed the database name, `--yes`, or the environment variable).
    pub confirmed: bool,
    /// `--allow-production`.
    pub allow_production: bool,
    /// Whether the environment is production (from the settings).
    pub production: bool,
    /// The configured sources (their URLs are the default targets).
    pub configured: Vec<SourceSpec>,
    /// PostgreSQL client tools directory, when configured.
    pub pg_bin_dir: Option<PathBuf>,
    /// Where the decompressed archive is staged.
    pub temp_dir: Option<PathBuf>,
    /// `pg_restore -j`.
    pub jobs: u32,
}

impl RestoreRequest {
    /// A request for `backup` with what the settings say (sources, tools, temp dir, jobs,
    /// production). Consent and flags are the caller's to set.
    pub fn from_settings(settings: &Settings, backup: impl Into<String>) -> Self {
        RestoreRequest {
            backup: backup.into(),
            production: settings.production,
            configured: settings.sources.clone(),
            pg_bin_dir: settings.pg_bin_dir.clone(),
            temp_dir: settings.verify_temp_dir.clone(),
            jobs: settings.verify_jobs,
            ..Default::default()
        }
    }

    /// Refuses a production environment without `allow_production`.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] (exit 2) naming `--allow-production`.
    pub fn check_production(&self, plan: &RestorePlan) -> Result<()> {
        if self.production && !self.allow_production {
            return Err(GateError::usage(format!(
                "environment {:?} is production: restoring into it needs --allow-production (nothing was changed)",
                plan.environment
            )));
        }
        Ok(())
    }

    /// Refuses when other sessions are connected to the target and `terminate_connections` is
    /// not set (a database in use cannot be renamed).
    ///
    /// # Errors
    ///
    /// [`GateError::Preflight`] (exit 5) naming how many sessions and `--terminate-connections`.
    pub fn check_connections(&self, plan: &RestorePlan) -> Result<()> {
        if plan.target_exists && plan.connections > 0 && !self.terminate_connections {
            return Err(GateError::Preflight {
                source: backup_core::Error::SourceUnavailable {
                    source_name: plan.source.clone(),
                    message: format!(
                        "{} other session(s) are connected to database {}: a database in use cannot be renamed; stop them, or pass --terminate-connections to end them for the swap (nothing was changed)",
                        plan.connections, plan.names.target
                    ),
                },
            });
        }
        Ok(())
    }

    /// The refusal for missing consent, if any (checked again by [`Gate::restore`]).
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] (exit 2) naming `--allow-production` for a production environment
    /// without it, or `--yes` / `PREDEPLOY_CONFIRM_RESTORE=yes` when not confirmed.
    pub fn check_consent(&self, plan: &RestorePlan) -> Result<()> {
        self.check_production(plan)?;
        if !self.confirmed {
            return Err(GateError::usage(format!(
                "the restore of {} into {} was not confirmed: type the database name at the prompt, or pass --yes, or set {CONFIRM_RESTORE_ENV}=yes (nothing was changed)",
                plan.backup_id, plan.target
            )));
        }
        Ok(())
    }
}

/// What a restore will do, found by its preflight.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The backup.
    pub backup_id: String,
    /// Its kind.
    pub backup_kind: BackupKind,
    /// The environment.
    pub environment: String,
    /// The source of the backup being restored.
    pub source: String,
    /// The source's kind (`postgres`).
    pub kind: String,
    /// The target, without credentials.
    pub target: String,
    /// The target server's version.
    pub server_version: String,
    /// The names used: new database, kept old database.
    pub names: SwapNames,
    /// Whether the target database exists now (if not, no safety backup is taken and nothing is
    /// kept).
    pub target_exists: bool,
    /// Other sessions connected to the target now.
    pub connections: u64,
    /// Whether the environment is production.
    pub production: bool,
    /// The steps, in order, as printed.
    pub steps: Vec<String>,
    /// Things the operator should know (truncated names, unchecked free space, …).
    pub notes: Vec<String>,
    #[serde(skip)]
    manifest: Manifest,
    #[serde(skip)]
    target_config: PgSourceConfig,
}

/// What a finished restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The plan it followed.
    pub plan: RestorePlan,
    /// The safety backup of the target taken first (none when the target did not exist).
    pub safety_backup: Option<String>,
    /// The name the previous database is kept under (none when the target did not exist).
    pub kept_as: Option<String>,
    /// The statement that drops the kept database once the operator is satisfied.
    pub drop_command: Option<String>,
    /// Sessions terminated for the swap.
    pub terminated: u64,
    /// Tables and rows restored.
    pub tables: usize,
    /// Rows restored.
    pub rows: u64,
}

/// Named points where a test build pauses (see [`pause_at`]).
pub const PAUSE_POINTS: &[&str] = &[
    "verified",
    "safety-backup",
    "created",
    "restored",
    "before-swap",
    "after-swap",
];

impl Gate {
    /// Resolves `last` for a restore: the newest backup of the environment that is not a safety
    /// backup (restoring a safety backup needs its id).
    ///
    /// # Errors
    ///
    /// As [`Gate::resolve`].
    pub async fn resolve_restorable(&self, selector: &str) -> Result<Manifest> {
        if selector != "last" && selector != "latest" {
            return self.resolve(selector).await;
        }
        let ids = self
            .store
            .list_backup_ids()
            .await
            .map_err(|source| GateError::Store {
                context: format!("cannot list {}", self.store.name()),
                source,
            })?;
        for id in ids.into_iter().rev() {
            match self.store.read_manifest(&id).await {
                Ok(m) if m.environment == self.environment && m.kind != BackupKind::Safety => {
                    return Ok(m);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping backup {id}: {e}"),
            }
        }
        Err(GateError::usage(format!(
            "there is no backup of environment {:?} to restore in {} (safety backups are restored by id)",
            self.environment,
            self.store.name()
        )))
    }

    /// Plans a restore and runs its preflight; writes nothing.
    ///
    /// # Errors
    ///
    /// - [`GateError::Usage`] (2): no such backup or source, a source kind that cannot be restored
    ///   yet, no target URL;
    /// - [`GateError::Preflight`] (5): the target server is unreachable, client tools are missing,
    ///   sessions are connected without `terminate_connections`, not enough free space.
    pub async fn plan_restore(&self, request: &RestoreRequest) -> Result<RestorePlan> {
        let manifest = self.resolve_restorable(&request.backup).await?;
        let source = pick_source(&manifest, request.source.as_deref())?;
        match source.kind.as_str() {
            "postgres" => {}
            // Buckets and directories plug in here (dispatch on the manifest source's kind).
            other => {
                return Err(GateError::usage(format!(
                    "source {} of backup {} is of kind {other:?}: restoring it is not supported yet (only postgres sources are)",
                    source.name, manifest.id
                )));
            }
        }
        let url = match (
            &request.to,
            request.configured.iter().find(|s| s.name == source.name),
        ) {
            (Some(url), _) => url.clone(),
            (None, Some(spec)) => spec.url.clone(),
            (None, None) => {
                return Err(GateError::usage(format!(
                    "source {} of backup {} is not configured here: give the target with --to postgres://…",
                    source.name, manifest.id
                )));
            }
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(GateError::usage(format!(
                "the restore target of source {} must be a postgres:// URL (got {})",
                source.name,
                redact_url(&url)
            )));
        }
        let mut target_config = PgSourceConfig::from_url(&url, &ProcessEnv)
            .map_err(|e| GateError::usage(format!("--to: {e}")))?;
        if target_config.bin_dir.is_none() {
            target_config.bin_dir.clone_from(&request.pg_bin_dir);
        }
        let before_suffix = self.clock.now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let names = SwapNames::new(&target_config.dbname, manifest.id.as_str(), &before_suffix);
        let mut notes = Vec::new();
        if names.truncated {
            notes.push(format!(
                "the database name {:?} is too long for the work names (PostgreSQL identifiers have at most 63 bytes): they use a shortened prefix",
                names.target
            ));
        }
        let preflight = |message: String| GateError::Preflight {
            source: backup_core::Error::SourceUnavailable {
                source_name: source.name.to_string(),
                message,
            },
        };

        // Preflight: server, versions, tools, the target, sessions, free space.
        let admin = PgAdmin::connect(
            &target_config,
            source.name.as_str(),
            &[&names.target, &names.restoring, &names.before],
        )
        .await
        .map_err(|source| GateError::Preflight { source })?;
        let (server_version, server_major) = admin
            .inspector()
            .server_version()
            .await
            .map_err(|source| GateError::Preflight { source })?;
        let archive_major = source
            .tool_version
            .as_deref()
            .and_then(parse_major)
            .unwrap_or(0);
        let source_major = source
            .server_version
            .as_deref()
            .and_then(parse_major)
            .unwrap_or(0);
        if source_major > server_major {
            notes.push(format!(
                "the backup comes from PostgreSQL {source_major} and the target runs {server_major}: the restore may fail (the target stays untouched if it does)"
            ));
        }
        find_tools(
            archive_major.max(server_major),
            target_config.bin_dir.as_deref(),
            source.name.as_str(),
        )
        .await
        .map_err(|source| GateError::Preflight { source })?;
        let info = admin
            .database(&names.target)
            .await
            .map_err(|source| GateError::Preflight { source })?;
        if admin
            .database(&names.before)
            .await
            .map_err(|source| GateError::Preflight { source })?
            .is_some()
        {
            return Err(preflight(format!(
                "database {} already exists (a restore in the same second?): wait a second and run again",
                names.before
            )));
        }
        let connections = if info.is_some() {
            admin
                .other_connections(&names.target)
                .await
                .map_err(|source| GateError::Preflight { source })?
        } else {
            0
        };
        let raw: u64 = source
            .artifacts
            .iter()
            .filter(|a| a.format == DUMP_FORMAT)
            .map(|a| a.raw_size)
            .sum();
        let needed = info.as_ref().map_or(raw, |i| i.size.max(raw));
        match admin.local_data_directory().await {
            Some(dir) => match free_bytes(&dir) {
                Some(free) if free < needed => {
                    return Err(preflight(format!(
                        "not enough free space for the new database: {} needed (the size of the target), {} free under {}",
                        crate::human_bytes(needed),
                        crate::human_bytes(free),
                        dir.display()
                    )));
                }
                Some(free) => notes.push(format!(
                    "free space: {} under the data directory, about {} needed",
                    crate::human_bytes(free),
                    crate::human_bytes(needed)
                )),
                None => notes.push("free space not checked: `df` could not read the data directory".into()),
            },
            None => notes.push(format!(
                "free space not checked (the server's data directory is not readable from here); about {} needed",
                crate::human_bytes(needed)
            )),
        }
        let target = target_config.location();
        let mut steps = vec![
            format!(
                "verify backup {} (checksums, archive, extensions it needs)",
                manifest.id
            ),
            match &info {
                Some(_) => format!(
                    "take a safety backup (kind safety) of {target} and verify it to level 3"
                ),
                None => format!(
                    "no safety backup: database {} does not exist on the target yet",
                    names.target
                ),
            },
            format!(
                "create database {} and restore the backup into it",
                names.restoring
            ),
            format!(
                "compare its exact row counts and schema fingerprint with the backup's ({} tables, {} rows)",
                source.stats.tables.len(),
                source.stats.total_rows()
            ),
        ];
        match (&info, connections) {
            (Some(_), 0) => {}
            (Some(_), n) if request.terminate_connections => steps.push(format!(
                "terminate the {n} session(s) connected to {}",
                names.target
            )),
            (Some(_), n) => notes.push(format!(
                "{n} other session(s) are connected to {}: the restore refuses unless --terminate-connections is given",
                names.target
            )),
            (None, _) => {}
        }
        steps.push(match &info {
            Some(_) => format!(
                "swap names in one transaction: {} -> {}, {} -> {}",
                names.target, names.before, names.restoring, names.target
            ),
            None => format!("rename {} -> {}", names.restoring, names.target),
        });
        steps.push(format!(
            "check {} by its name; on any failure after the swap, swap back",
            names.target
        ));
        if info.is_some() {
            steps.push(format!(
                "keep the previous database as {} until you drop it",
                names.before
            ));
        }
        Ok(RestorePlan {
            backup_id: manifest.id.to_string(),
            backup_kind: manifest.kind,
            environment: self.environment.clone(),
            source: source.name.to_string(),
            kind: source.kind.clone(),
            target,
            server_version,
            names,
            target_exists: info.is_some(),
            connections,
            production: request.production,
            steps,
            notes,
            manifest: manifest.clone(),
            target_config,
        })
    }

    /// Carries out a plan (see the module docs for the contract).
    ///
    /// # Errors
    ///
    /// - [`GateError::Usage`] (2): no consent (see [`RestoreRequest::check_consent`]);
    /// - [`GateError::Preflight`] (5): other sessions without `terminate_connections`, an
    ///   extension the target cannot install;
    /// - [`GateError::Verification`] (4): the backup is damaged; the target is untouched;
    /// - [`GateError::Restore`] (8): anything else, with the target's state.
    pub async fn restore(
        &self,
        plan: RestorePlan,
        request: &RestoreRequest,
    ) -> Result<RestoreOutcome> {
        request.check_connections(&plan)?;
        request.check_consent(&plan)?;
        // LOCK: take the store lock for this environment here (Gate lock API), held until the
        // restore returns, so a backup or another restore cannot run alongside.
        let mut signals = Signals::new(self.handle_signals);
        let untouched = |message: String| GateError::Restore {
            message,
            target: TargetState::Untouched,
        };
        let before_swap = signals.run(self.restore_until_swap(&plan, request)).await;
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
                plan.target_exists,
                request.terminate_connections,
            )
            .await
        {
            Ok(n) => n,
            Err(e) => {
                let dropped = pending.drop_now().await;
                return Err(untouched(format!(
                    "{e}{}",
                    match dropped {
                        Ok(()) =>
                            format!("; the new database {} was dropped", plan.names.restoring),
                        Err(d) => format!(
                            "; the new database {} could not be dropped ({d})",
                            plan.names.restoring
                        ),
                    }
                )));
            }
        };
        pending.keep();
        drop(admin);
        step(&format!(
            "swapped: {} is now the restored backup {}",
            plan.names.target, plan.backup_id
        ));
        let after_swap = signals.run(self.check_swapped(&plan)).await;
        let failure = match after_swap {
            Ok(Ok(counted)) => {
                let (tables, rows) = counted;
                let kept_as = plan.target_exists.then(|| plan.names.before.clone());
                let drop_command = kept_as.as_ref().map(|k| {
                    format!(
                        "psql -d postgres -c 'DROP DATABASE {}'",
                        backup_postgres::quote_ident(k).replace('\'', "'\\''")
                    )
                });
                return Ok(RestoreOutcome {
                    plan,
                    safety_backup,
                    kept_as,
                    drop_command,
                    terminated,
                    tables,
                    rows,
                });
            }
            Ok(Err(message)) => message,
            Err(signal) => format!("interrupted by {signal} after the swap"),
        };
        step(&format!("{failure}: swapping back"));
        let admin = PgAdmin::connect(
            &plan.target_config,
            &plan.source,
            &[
                &plan.names.target,
                &plan.names.restoring,
                &plan.names.before,
            ],
        )
        .await;
        let back = match &admin {
            Ok(admin) => admin
                .swap_back(&plan.names, plan.target_exists)
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
                Err(GateError::Restore {
                    message: failure,
                    target: TargetState::SwappedBack,
                })
            }
            Err(e) => Err(GateError::Restore {
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
        plan: &RestorePlan,
        request: &RestoreRequest,
    ) -> Result<(
        backup_postgres::PendingDatabase,
        Option<String>,
        PgAdmin,
        u64,
    )> {
        let untouched = |message: String| GateError::Restore {
            message,
            target: TargetState::Untouched,
        };
        let manifest = &plan.manifest;
        let source = pick_source(manifest, Some(&plan.source))?;
        let artifact = source
            .artifacts
            .iter()
            .find(|a| a.format == DUMP_FORMAT)
            .ok_or_else(|| {
                GateError::usage(format!(
                    "source {} of backup {} has no pg_dump archive",
                    source.name, manifest.id
                ))
            })?;

        // 3. Verify the backup (levels 1–3) into a staged file, and the extensions it needs.
        step(&format!(
            "verifying backup {} ({})",
            manifest.id, artifact.key
        ));
        let damaged = |summary: String| GateError::Verification {
            id: manifest.id.to_string(),
            summary: format!("{summary}; nothing was restored and the target is untouched"),
        };
        let staged = stage_archive(
            self.store.as_ref(),
            source,
            artifact,
            request.temp_dir.as_deref(),
        )
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
        let admin = PgAdmin::connect(
            &plan.target_config,
            &plan.source,
            &[
                &plan.names.target,
                &plan.names.restoring,
                &plan.names.before,
            ],
        )
        .await
        .map_err(|e| untouched(e.to_string()))?;
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
            &plan.source,
        )
        .await
        .map_err(|source| GateError::Preflight { source })?;
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
            return Err(GateError::Preflight {
                source: backup_core::Error::SourceUnavailable {
                    source_name: plan.source.clone(),
                    message: format!(
                        "the backup needs extension(s) {} that the target server cannot install; install them there first (nothing was changed)",
                        missing.join(", ")
                    ),
                },
            });
        }
        step(&format!(
            "backup {} verified to level 3 (archive)",
            manifest.id
        ));
        pause_at("verified").await;

        // 4. Safety backup of the target.
        let safety_backup = if plan.target_exists {
            step(&format!("taking a safety backup of {}", plan.target));
            let outcome = self
                .safety_backup(plan, source)
                .await
                .map_err(|e| untouched(format!("the safety backup failed: {e}")))?;
            step(&format!(
                "safety backup {} verified to level {}",
                outcome.0, outcome.1
            ));
            Some(outcome.0)
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
        let pending = admin
            .create_database(
                &plan.names.restoring,
                like.as_ref(),
                &format!("restore of {} into {}", manifest.id, plan.names.target),
            )
            .await
            .map_err(|e| untouched(e.to_string()))?;
        pause_at("created").await;
        step(&format!(
            "restoring {} into {} with {}",
            manifest.id, plan.names.restoring, tools.version
        ));
        PgRestorer::new(tools.clone())
            .restore_file(
                staged.path(),
                &pending.config(),
                &RestoreOptions {
                    jobs: request.jobs.max(1),
                    without_owners_and_privileges: false,
                },
            )
            .await
            .map_err(|message| {
                untouched(format!(
                    "restoring into {}: {message}; the unfinished database is dropped",
                    plan.names.restoring
                ))
            })?;
        drop(staged);
        pause_at("restored").await;
        step(&format!(
            "comparing {} with the backup's record",
            plan.names.restoring
        ));
        let findings = restored_findings(&pending.config(), source, artifact).await;
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
        let connected = if plan.target_exists {
            admin
                .other_connections(&plan.names.target)
                .await
                .map_err(|e| untouched(e.to_string()))?
        } else {
            0
        };
        if connected > 0 && !request.terminate_connections {
            return Err(untouched(format!(
                "{connected} session(s) connected to {} meanwhile: pass --terminate-connections to end them for the swap",
                plan.names.target
            )));
        }
        Ok((pending, safety_backup, admin, connected))
    }

    /// Step 7: the swapped-in database, reached by its name, has the backup's row counts.
    async fn check_swapped(&self, plan: &RestorePlan) -> std::result::Result<(usize, u64), String> {
        pause_at("after-swap").await;
        let source = plan
            .manifest
            .source(&plan.source)
            .ok_or_else(|| "the source vanished from the manifest".to_owned())?;
        let config = plan.target_config.with_dbname(&plan.names.target);
        let inspector = PgInspector::connect(&config, &plan.source)
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

    /// A backup of kind `safety` of the restore target, verified to level 3. Returns its id and
    /// the level reached.
    async fn safety_backup(
        &self,
        plan: &RestorePlan,
        source: &SourceManifest,
    ) -> Result<(String, VerificationLevel)> {
        let snapshotter = PgSnapshotter::new(source.name.clone(), plan.target_config.clone());
        let mut gate = Gate::new(
            self.store.clone(),
            self.environment.clone(),
            vec![Arc::new(snapshotter)],
            self.verifiers.clone(),
        )
        .with_verify_level(VerificationLevel::Archive)
        .with_pipeline(self.pipeline.clone())
        .with_clock(self.clock.clone());
        gate.store_url.clone_from(&self.store_url);
        let mut deploy = DeployInfo::default();
        deploy.extra.insert(
            "safety_before_restore_of".into(),
            serde_json::Value::String(plan.backup_id.clone()),
        );
        let outcome = gate
            .backup(&BackupRequest {
                kind: BackupKind::Safety,
                deploy,
            })
            .await?;
        Ok((
            outcome.manifest.id.to_string(),
            outcome
                .verification
                .level_reached
                .unwrap_or(VerificationLevel::Archive),
        ))
    }
}

/// The source of `manifest` to restore: `name`, or the only one.
fn pick_source<'m>(manifest: &'m Manifest, name: Option<&str>) -> Result<&'m SourceManifest> {
    match name {
        Some(n) => manifest.source(n).ok_or_else(|| {
            GateError::usage(format!(
                "backup {} has no source {n:?} (it has: {})",
                manifest.id,
                source_names(manifest)
            ))
        }),
        None => match manifest.sources.as_slice() {
            [only] => Ok(only),
            [] => Err(GateError::usage(format!(
                "backup {} has no sources",
                manifest.id
            ))),
            _ => Err(GateError::usage(format!(
                "backup {} has several sources ({}): choose one with --source NAME",
                manifest.id,
                source_names(manifest)
            ))),
        },
    }
}

fn source_names(m: &Manifest) -> String {
    m.sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints one step of a restore (stderr, through the log).
fn step(message: &str) {
    tracing::info!("restore: {message}");
}

/// Free bytes of the filesystem holding `dir` (`df -Pk`), if it can be read.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// SIGINT/SIGTERM, listened to for the whole restore (registered once, so no signal falls
/// between two steps).
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new(enabled: bool) -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        if !enabled {
            return Signals {
                int: None,
                term: None,
            };
        }
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Runs `fut`, or returns the name of the signal that interrupted it (dropping `fut`, whose
    /// guards then clean up).
    async fn run<T>(
        &mut self,
        fut: impl std::future::Future<Output = T>,
    ) -> std::result::Result<T, &'static str> {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            out = fut => Ok(out),
            () = recv(&mut self.int) => Err("SIGINT"),
            () = recv(&mut self.term) => Err("SIGTERM"),
        }
    }
}

/// Test builds only (`test-hooks` feature): with `PREDEPLOY_TEST_PAUSE_AT=<point>:<file>`, print
/// `test hook: paused at <point>` and wait until `<file>` exists, so a test can kill the process
/// or break the server at an exact step. A no-op in normal builds.
#[cfg(feature = "test-hooks")]
pub async fn pause_at(point: &str) {
    let Ok(spec) = std::env::var("PREDEPLOY_TEST_PAUSE_AT") else {
        return;
    };
    let Some((at, file)) = spec.split_once(':') else {
        return;
    };
    if at != point {
        return;
    }
    eprintln!("test hook: paused at {point}");
    while !std::path::Path::new(file).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Test builds only (`test-hooks` feature): see the feature's documentation. A no-op here.
#[cfg(not(feature = "test-hooks"))]
pub async fn pause_at(_point: &str) {}

/// What `run --rollback-on-failure` did after a failed deploy.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// Each source's restore, or why it failed.
    pub restores: Vec<std::result::Result<RestoreOutcome, String>>,
}

impl RollbackReport {
    /// Whether every source was restored.
    pub fn succeeded(&self) -> bool {
        !self.restores.is_empty() && self.restores.iter().all(std::result::Result::is_ok)
    }
}

impl Gate {
    /// `run --rollback-on-failure`: restores every PostgreSQL source of `manifest` (the backup
    /// taken for this run) into the database it came from, each after a safety backup of the
    /// failed state, terminating sessions when `terminate_connections`. Consent is implied by the
    /// flag. Never fails: what went wrong is in the report.
    pub async fn rollback(
        &self,
        manifest: &Manifest,
        settings: &Settings,
        terminate_connections: bool,
    ) -> RollbackReport {
        let mut restores = Vec::new();
        for source in &manifest.sources {
            if source.kind != "postgres" {
                restores.push(Err(format!(
                    "source {}: rolling back {} sources is not supported yet",
                    source.name, source.kind
                )));
                continue;
            }
            let mut request = RestoreRequest::from_settings(settings, manifest.id.to_string());
            request.source = Some(source.name.to_string());
            request.confirmed = true;
            request.allow_production = true;
            request.terminate_connections = terminate_connections;
            let result = async {
                let plan = self.plan_restore(&request).await?;
                for line in &plan.steps {
                    step(&format!("plan: {line}"));
                }
                self.restore(plan, &request).await
            }
            .await;
            restores.push(result.map_err(|e| format!("source {}: {e}", source.name)));
        }
        RollbackReport { restores }
    }
}
