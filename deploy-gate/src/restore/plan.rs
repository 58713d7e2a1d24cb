//! [`Gate::plan_restore`]: the plan and its preflight (writes nothing).

use backup_core::{Manifest, SourceManifest};
use backup_postgres::{
    DUMP_FORMAT, PgAdmin, PgSourceConfig, ProcessEnv, SwapNames, find_tools, parse_major,
    redact_url,
};

use super::{RestorePlan, RestoreRequest, pick_source};
use crate::error::{GateError, Result};
use crate::gate::Gate;

impl Gate {
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
        // Dispatch on the source's kind: buckets and directories plug in here with a plan of
        // their own (`restore` dispatches on `RestorePlan::kind` the same way).
        match source.kind.as_str() {
            "postgres" => self.plan_postgres_restore(&manifest, source, request).await,
            other => Err(GateError::usage(format!(
                "source {} of backup {} is of kind {other:?}: restoring it is not supported yet (only postgres sources are)",
                source.name, manifest.id
            ))),
        }
    }

    /// [`plan_restore`](Self::plan_restore) for a PostgreSQL source.
    async fn plan_postgres_restore(
        &self,
        manifest: &Manifest,
        source: &SourceManifest,
        request: &RestoreRequest,
    ) -> Result<RestorePlan> {
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
            Some(dir) => match backup_core::disk::free_bytes(&dir) {
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
        // The archive is staged on this machine first: it must fit there too.
        if let Some(why) = source
            .artifacts
            .iter()
            .find(|a| a.format == DUMP_FORMAT)
            .and_then(|a| backup_verify::staging_space_problem(a, request.temp_dir.as_deref()))
        {
            return Err(preflight(why));
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
}
