//! [`PostgresBackend`]: PostgreSQL as a [`Backend`] of the gate — `postgres://` and
//! `postgresql://` sources, their snapshotter, and the verifier that reaches level 4.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use backup_core::{
    Backend, BackendSettings, BackendVerifiers, DynBackend, DynSnapshotter, Restorer, Result,
    SourceSpec, parse_section,
};

use crate::config::{PgSourceConfig, ProcessEnv};
use crate::restore::DatabaseRestorer;
use crate::snapshotter::{PgSnapshotter, SOURCE_KIND};
use crate::verify::{ArchiveVerifier, RestoreTargets};

/// The value of `--verify-restore-url` / `[verify] restore_url` that asks for a throwaway local
/// cluster as the scratch server.
pub const LOCAL_SCRATCH: &str = "local";

/// The value of `--verify-restore-url` / `[verify] restore_url` that puts test restores on each
/// source's own server, even when this machine could host a throwaway cluster.
pub const SOURCE_SCRATCH: &str = "source";

/// `[postgres]` of the config file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// Directory with pg_dump/pg_restore, overriding discovery.
    pub bin_dir: Option<PathBuf>,
    /// Parallel pg_dump workers per database (`pg_dump --format=directory --jobs`); 1 (the
    /// default) dumps one custom-format stream.
    pub dump_jobs: Option<u32>,
}

/// The environment variable that names the directory of the client tools (over
/// `[postgres] bin_dir`).
pub const BIN_DIR_ENV: &str = "PREDEPLOY_PG_BINDIR";

/// PostgreSQL sources, with the settings their tools and test restores use.
#[derive(Debug, Clone, Default)]
pub struct PostgresBackend {
    /// Where the client tools are (overrides discovery), for sources whose URL names none.
    pub bin_dir: Option<PathBuf>,
    /// Parallel pg_dump workers per database ([`PgSnapshotter::with_dump_jobs`]); 0 or 1: one
    /// custom-format stream.
    pub dump_jobs: u32,
    /// Where level-4 test restores go: `None` (the default), a throwaway cluster on this
    /// machine when it has the backup's server version and extensions, else each source's own
    /// server; [`LOCAL_SCRATCH`], always a throwaway cluster on this machine;
    /// [`SOURCE_SCRATCH`], each source's own server; a URL, that server for every source.
    pub verify_restore_url: Option<String>,
    /// `pg_restore -j` of test restores.
    pub verify_jobs: u32,
    /// Where archives are staged for test restores (default: the system temp dir).
    pub verify_temp_dir: Option<PathBuf>,
    /// Verify to level 3 only (no test restore), e.g. for an embedder that has no scratch
    /// server.
    pub archive_only: bool,
}

impl PostgresBackend {
    /// The connection settings of a URL (`PG*` variables and `.pgpass` fill the gaps).
    fn config(url: &str) -> Result<PgSourceConfig> {
        PgSourceConfig::from_url(url, &ProcessEnv)
    }

    /// Where level-4 test restores of `sources` go.
    ///
    /// # Errors
    ///
    /// [`backup_core::Error::Invalid`] for a malformed URL.
    pub fn restore_targets(&self, sources: &[SourceSpec]) -> Result<RestoreTargets> {
        let mut by_source = BTreeMap::new();
        for s in sources.iter().filter(|s| self.accepts(&s.url)) {
            by_source.insert(s.name.to_string(), Self::config(&s.url)?);
        }
        let local_cluster = self.verify_restore_url.as_deref() == Some(LOCAL_SCRATCH);
        let prefer_local = self.verify_restore_url.is_none();
        let override_target = match self.verify_restore_url.as_deref() {
            None | Some(LOCAL_SCRATCH | SOURCE_SCRATCH) => None,
            // Another backend's scratch server (e.g. `mysql://…` with only MySQL sources):
            // nothing of ours to restore there.
            Some(u) if by_source.is_empty() && !self.accepts(u) => None,
            Some(u) => Some(Self::config(u)?),
        };
        Ok(RestoreTargets {
            by_source,
            override_target,
            jobs: self.verify_jobs.max(1),
            temp_dir: self.verify_temp_dir.clone(),
            local_cluster,
            prefer_local,
        })
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["postgres://", "postgresql://"]
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[SOURCE_KIND]
    }

    fn section(&self) -> Option<&'static str> {
        Some("postgres")
    }

    fn section_problem(&self, section: &serde_json::Value) -> Option<String> {
        parse_section::<PostgresSection>(section).err()
    }

    fn env_vars(&self) -> &'static [&'static str] {
        &[BIN_DIR_ENV]
    }

    fn restore_url_forms(&self) -> &'static [&'static str] {
        &["postgres://…", "`local`", "`source`"]
    }

    fn takes_restore_url(&self, url: &str) -> bool {
        url == LOCAL_SCRATCH || url == SOURCE_SCRATCH || self.accepts(url)
    }

    /// The tool directory from [`BIN_DIR_ENV`], else `[postgres] bin_dir`; the dump workers
    /// from `[postgres] dump_jobs`; the test-restore settings as given.
    fn configured(&self, settings: &BackendSettings<'_>) -> Option<DynBackend> {
        let section: PostgresSection = settings
            .section
            .and_then(|s| parse_section(s).ok())
            .unwrap_or_default();
        let dump_jobs = section.dump_jobs.unwrap_or(self.dump_jobs);
        Some(Arc::new(PostgresBackend {
            bin_dir: settings.tool_dir(BIN_DIR_ENV),
            dump_jobs,
            verify_restore_url: settings.verify_restore_url.map(str::to_owned),
            verify_jobs: settings.verify_jobs,
            verify_temp_dir: settings.verify_temp_dir.map(PathBuf::from),
            archive_only: self.archive_only,
        }))
    }

    fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter> {
        let mut cfg = Self::config(&spec.url).map_err(|e| e.for_source(spec.name.as_str()))?;
        if cfg.bin_dir.is_none() {
            cfg.bin_dir.clone_from(&self.bin_dir);
        }
        Ok(Arc::new(
            PgSnapshotter::new(spec.name.clone(), cfg).with_dump_jobs(self.dump_jobs),
        ))
    }

    fn verifiers(&self, sources: &[SourceSpec]) -> Result<BackendVerifiers> {
        let mut verifier = ArchiveVerifier::new(self.bin_dir.clone());
        if !self.archive_only {
            verifier = verifier.with_restore(self.restore_targets(sources)?);
        }
        Ok(BackendVerifiers {
            after_backup: vec![Arc::new(verifier)],
            reverify: vec![],
        })
    }

    fn runbook_steps(
        &self,
        source: &backup_core::SourceManifest,
        ctx: &backup_core::runbook::RunbookContext<'_>,
    ) -> Vec<backup_core::runbook::RunbookStep> {
        crate::runbook::runbook_steps(source, ctx)
    }

    fn restorer(&self) -> Option<Arc<dyn Restorer>> {
        Some(Arc::new(DatabaseRestorer {
            bin_dir: self.bin_dir.clone(),
        }))
    }
}
