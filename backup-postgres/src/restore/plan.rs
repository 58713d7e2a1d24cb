//! [`DatabaseRestorer`]: restoring a PostgreSQL source into a database, planned with its
//! preflight (writes nothing).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::disk::human_bytes;
use backup_core::{PlannedRestore, RestoreError, RestoreSetup, RestoreSummary, Restorer};

use super::PlannedDatabaseRestore;
use crate::DumpArchive;
use crate::config::{PgSourceConfig, ProcessEnv};
use crate::swap::{PgAdmin, SwapNames};
use crate::tools::{find_tools, parse_major};

/// How many `<db>__predeploy_before_<time>[_n]` names one restore tries.
const MAX_BEFORE_ATTEMPTS: u32 = 20;

/// Restores PostgreSQL sources into databases: a new database restored and compared, then
/// swapped in by name, the old one kept (see [`PlannedDatabaseRestore`]).
#[derive(Debug, Clone, Default)]
pub struct DatabaseRestorer {
    /// Where the client tools are, for targets whose URL names none.
    pub bin_dir: Option<PathBuf>,
}

#[async_trait]
impl Restorer for DatabaseRestorer {
    async fn plan(&self, setup: RestoreSetup<'_>) -> Result<Arc<dyn PlannedRestore>, RestoreError> {
        let (manifest, source) = (setup.manifest, setup.source);
        let mut target_config =
            PgSourceConfig::from_url(setup.target_url, &ProcessEnv).map_err(|e| match e {
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
        let before_suffix = setup.now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut names = SwapNames::new(&target_config.dbname, manifest.id.as_str(), &before_suffix);
        let mut notes = Vec::new();
        if names.truncated {
            notes.push(format!(
                "the database name {:?} is too long for the work names (PostgreSQL identifiers have at most 63 bytes): they use a shortened prefix",
                names.target
            ));
        }
        let preflight = |message: String| {
            RestoreError::Preflight(backup_core::Error::SourceUnavailable {
                source_name: source.name.to_string(),
                message,
            })
        };

        // Preflight: server, versions, tools, the target, sessions, free space.
        let admin = PgAdmin::connect(
            &target_config,
            source.name.as_str(),
            &[&names.target, &names.restoring, &names.before],
        )
        .await
        .map_err(RestoreError::Preflight)?;
        let (server_version, server_major) = admin
            .inspector()
            .server_version()
            .await
            .map_err(RestoreError::Preflight)?;
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
        .map_err(RestoreError::Preflight)?;
        let info = admin
            .database(&names.target)
            .await
            .map_err(RestoreError::Preflight)?;
        // A second restore in the same second (an undo right after a restore) keeps its
        // previous database under the next free name: `…_2`, `…_3`.
        let mut attempt = 1;
        while admin
            .database(&names.before)
            .await
            .map_err(RestoreError::Preflight)?
            .is_some()
        {
            attempt += 1;
            if attempt > MAX_BEFORE_ATTEMPTS {
                return Err(preflight(format!(
                    "databases {} and {MAX_BEFORE_ATTEMPTS} variants of it already exist: drop the ones you no longer need and run again",
                    names.before
                )));
            }
            names = SwapNames::new(
                &target_config.dbname,
                manifest.id.as_str(),
                &format!("{before_suffix}_{attempt}"),
            );
        }
        let connections = if info.is_some() {
            admin
                .other_connections(&names.target)
                .await
                .map_err(RestoreError::Preflight)?
        } else {
            0
        };
        let raw: u64 = DumpArchive::of(source).map_or(0, |d| d.raw_size());
        let needed = info.as_ref().map_or(raw, |i| i.size.max(raw));
        match admin.local_data_directory().await {
            Some(dir) => match backup_core::disk::free_bytes(&dir) {
                Some(free) if free < needed => {
                    return Err(preflight(format!(
                        "not enough free space for the new database: {} needed (the size of the target), {} free under {}",
                        human_bytes(needed),
                        human_bytes(free),
                        dir.display()
                    )));
                }
                Some(free) => notes.push(format!(
                    "free space: {} under the data directory, about {} needed",
                    human_bytes(free),
                    human_bytes(needed)
                )),
                None => notes.push("free space not checked: `df` could not read the data directory".into()),
            },
            None => notes.push(format!(
                "free space not checked (the server's data directory is not readable from here); about {} needed",
                human_bytes(needed)
            )),
        }
        // The archive is staged on this machine first: it must fit there too.
        if let Some(why) = DumpArchive::of(source)
            .and_then(|d| backup_verify::staging_space_problem_for(d.raw_size(), setup.temp_dir))
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
            (Some(_), n) if setup.terminate_connections => steps.push(format!(
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
        let mut details = serde_json::Map::new();
        details.insert(
            "names".into(),
            serde_json::to_value(&names).unwrap_or_default(),
        );
        let summary = RestoreSummary {
            target,
            product: "PostgreSQL".into(),
            server_version,
            target_exists: info.is_some(),
            connections,
            confirm_name: names.target.clone(),
            steps,
            notes,
            details,
        };
        Ok(Arc::new(PlannedDatabaseRestore {
            summary,
            names,
            manifest: manifest.clone(),
            source_name: source.name.to_string(),
            target_config,
        }))
    }
}
