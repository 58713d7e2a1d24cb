//! [`PgSnapshotter`]: a consistent, streamed backup of one PostgreSQL database.

use async_trait::async_trait;
use backup_core::{
    ArtifactMeta, ArtifactSpec, ChangeProof, Error, PreflightReport, Result, SnapshotContext,
    Snapshotter, SourceManifest, SourceName,
};
use tokio::process::Command;

use crate::command::{CLEARED_ENV, connection_env, dump_args, globals_args, parallel_dump_args};
use crate::config::{PgSourceConfig, ProcessEnv};
use crate::inspector::PgInspector;
use crate::parallel_dump::dump_directory;
use crate::tools::{PgTools, find_tools};
use crate::unchanged::CHANGE_MARK_FIELD;
use backup_core::process::spawn_checked;

/// File name of the database dump within the source's directory.
pub const DUMP_FILE: &str = "dump.pgc.zst";
/// The kind recorded in the manifest for PostgreSQL sources.
pub const SOURCE_KIND: &str = "postgres";
/// File name of the cluster globals (roles, tablespaces).
pub const GLOBALS_FILE: &str = "globals.sql.zst";
/// Format name of a pg_dump custom-format archive.
pub const DUMP_FORMAT: &str = "pg_dump-custom";
/// Format name of `pg_dumpall --globals-only` SQL.
pub const GLOBALS_FORMAT: &str = "pg_dumpall-globals-sql";
/// File name of the schema listing read in the dump's snapshot (what a restore must reproduce).
pub const SCHEMA_FILE: &str = "schema.txt.zst";
/// Format name of a [`SchemaListing`](crate::SchemaListing) text.
pub const SCHEMA_FORMAT: &str = "pg-schema-listing-v2";

/// Backs up one PostgreSQL database: `pg_dump` custom format in the snapshot exported by our
/// own connection (so the recorded row counts and schema fingerprint describe exactly the
/// dumped data), plus the cluster's roles when the user may read them. With
/// [`PgSnapshotter::with_dump_jobs`] above 1, a parallel dump in directory format instead (see
/// [`crate::DumpArchive`]), in the same snapshot.
#[derive(Debug, Clone)]
pub struct PgSnapshotter {
    name: SourceName,
    config: PgSourceConfig,
    dump_jobs: u32,
}

impl PgSnapshotter {
    /// A snapshotter for `config`'s database, recorded under `name`.
    pub fn new(name: SourceName, config: PgSourceConfig) -> Self {
        PgSnapshotter {
            name,
            config,
            dump_jobs: 1,
        }
    }

    /// Dumps with `jobs` parallel pg_dump workers (`pg_dump --format=directory --jobs`), each
    /// table's file stored as soon as it is written; 1 (the default): one custom-format stream.
    /// Worth it for databases with several large tables and a server with cores to spare.
    #[must_use]
    pub fn with_dump_jobs(mut self, jobs: u32) -> Self {
        self.dump_jobs = jobs.max(1);
        self
    }

    /// A snapshotter from a `postgres://` URL, honouring the `PG*` variables.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a malformed URL.
    pub fn from_url(name: SourceName, url: &str) -> Result<Self> {
        Ok(Self::new(name, PgSourceConfig::from_url(url, &ProcessEnv)?))
    }

    /// The connection settings.
    pub fn config(&self) -> &PgSourceConfig {
        &self.config
    }

    fn tool_command(&self, exe: std::path::PathBuf) -> Result<Command> {
        let mut cmd = Command::new(exe);
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(connection_env(&self.config)?);
        Ok(cmd)
    }

    fn spawn_error(&self, tool: &str, e: &std::io::Error) -> Error {
        Error::SnapshotFailed {
            source_name: self.name.to_string(),
            message: format!("cannot start {tool}: {e}"),
        }
    }

    async fn tools_for(&self, inspector: &PgInspector) -> Result<(String, PgTools)> {
        let (version, major) = inspector.server_version().await?;
        let tools = find_tools(major, self.config.bin_dir.as_deref(), self.name.as_str()).await?;
        Ok((version, tools))
    }

    /// Dumps the roles and tablespaces. Returns the artifact, or a note saying why there is none.
    async fn dump_globals(
        &self,
        ctx: SnapshotContext<'_>,
        tools: &PgTools,
        superuser: bool,
    ) -> Result<(Option<ArtifactMeta>, Vec<String>)> {
        let mut notes = Vec::new();
        if !superuser {
            notes.push(
                "roles were dumped without their passwords: the backup user is not a superuser"
                    .to_owned(),
            );
        }
        let mut cmd = self.tool_command(tools.pg_dumpall())?;
        cmd.args(globals_args(&self.config.dbname, superuser));
        let reader =
            spawn_checked("pg_dumpall", cmd).map_err(|e| self.spawn_error("pg_dumpall", &e))?;
        let spec = ArtifactSpec {
            source: &self.name,
            file: GLOBALS_FILE,
            format: GLOBALS_FORMAT,
        };
        match ctx.write_artifact(spec, reader).await {
            Ok(meta) => Ok((Some(meta), notes)),
            // A role that may not read the catalogs of roles still gets its database backed up;
            // the manifest says what is missing. A superuser's failure is a real failure.
            Err(Error::SnapshotFailed { message, .. }) if !superuser => {
                notes.push(format!("roles and tablespaces were not dumped: {message}"));
                Ok((None, notes))
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Snapshotter for PgSnapshotter {
    fn source_name(&self) -> &SourceName {
        &self.name
    }

    fn kind(&self) -> &'static str {
        SOURCE_KIND
    }

    fn location(&self) -> String {
        self.config.location()
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let inspector = PgInspector::connect(&self.config, self.name.as_str()).await?;
        let (server_version, tools) = self.tools_for(&inspector).await?;
        let unreadable = inspector.unreadable_tables().await?;
        if !unreadable.is_empty() {
            return Err(Error::SourceUnavailable {
                source_name: self.name.to_string(),
                message: format!(
                    "user {:?} cannot read {}; grant SELECT on them (or the pg_read_all_data role) or back up as a user who can",
                    self.config.user,
                    unreadable.join(", ")
                ),
            });
        }
        let (superuser, size) = inspector.privileges_and_size().await?;
        let mut notes = Vec::new();
        if !superuser {
            notes.push("not a superuser: roles will be dumped without passwords".to_owned());
        }
        Ok(PreflightReport {
            server_version: Some(server_version),
            tool: Some(format!("{} ({})", tools.version, tools.bin_dir.display())),
            estimated_bytes: Some(size),
            notes,
        })
    }

    fn can_prove_unchanged(&self) -> bool {
        true
    }

    async fn unchanged_since(&self, previous: &SourceManifest) -> Result<ChangeProof> {
        let inspector = PgInspector::connect(&self.config, self.name.as_str()).await?;
        inspector.unchanged_since(previous).await
    }

    async fn snapshot(&self, ctx: SnapshotContext<'_>) -> Result<SourceManifest> {
        let inspector = PgInspector::connect(&self.config, self.name.as_str()).await?;
        let (server_version, tools) = self.tools_for(&inspector).await?;
        let (superuser, _) = inspector.privileges_and_size().await?;

        // Where the cluster's history stands before the snapshot, and again after everything
        // was read: equal, the backup is exactly the state at that position (see `unchanged`).
        let mark_before = inspector.change_mark().await?;
        // Our transaction exports the snapshot pg_dump will use, and stays open until pg_dump
        // is done, so the counts below and the dump see exactly the same data.
        let snapshot_id = inspector.export_snapshot().await?;
        // Sequences are not in the snapshot: read them before pg_dump starts, so the values
        // recorded are a lower bound of the ones it dumps (level 4 checks "at or past").
        let sequences = inspector.sequence_values().await?;
        let mut cmd = self.tool_command(tools.pg_dump())?;
        let (dump, stats) = if self.dump_jobs > 1 {
            cmd.args(parallel_dump_args(
                tools.major,
                Some(&snapshot_id),
                self.dump_jobs,
            ));
            // As many uploads as workers: each compresses one file at a time.
            let jobs = self.dump_jobs as usize;
            tokio::join!(
                dump_directory(ctx, &self.name, cmd, jobs),
                inspector.stats()
            )
        } else {
            cmd.args(dump_args(tools.major, Some(&snapshot_id)));
            let reader =
                spawn_checked("pg_dump", cmd).map_err(|e| self.spawn_error("pg_dump", &e))?;
            let spec = ArtifactSpec {
                source: &self.name,
                file: DUMP_FILE,
                format: DUMP_FORMAT,
            };
            let (dump, stats) = tokio::join!(ctx.write_artifact(spec, reader), inspector.stats());
            (dump.map(|d| vec![d]), stats)
        };
        let ended = inspector.end_snapshot().await;
        let dump = dump?;
        let (stats, listing) = stats?;
        let listing = listing.with_sequence_values(sequences);
        ended?;

        // The listing behind the fingerprint, so a failed comparison can name what differs.
        let spec = ArtifactSpec {
            source: &self.name,
            file: SCHEMA_FILE,
            format: SCHEMA_FORMAT,
        };
        let schema = ctx
            .write_artifact(spec, std::io::Cursor::new(listing.to_text().into_bytes()))
            .await?;
        let (globals, notes) = self.dump_globals(ctx, &tools, superuser).await?;
        let mut extra = serde_json::Map::new();
        match (mark_before, inspector.change_mark().await?) {
            (Ok(before), Ok(after)) if before == after => {
                if let Ok(mark) = serde_json::to_value(&before) {
                    extra.insert(CHANGE_MARK_FIELD.into(), mark);
                }
            }
            (Ok(before), Ok(after)) => tracing::info!(
                "source {}: the next run cannot reuse this backup: {}",
                self.name,
                before
                    .difference(&after)
                    .unwrap_or_default()
                    .replace("(something was written)", "while it was taken")
            ),
            (Err(why), _) | (_, Err(why)) => tracing::info!(
                "source {}: the next run cannot reuse this backup: {why}",
                self.name
            ),
        }
        let mut artifacts = dump;
        artifacts.push(schema);
        artifacts.extend(globals);
        Ok(SourceManifest {
            name: self.name.clone(),
            kind: self.kind().to_owned(),
            location: self.location(),
            server_version: Some(server_version),
            tool_version: Some(tools.version.clone()),
            artifacts,
            stats,
            notes,
            extra,
        })
    }
}
