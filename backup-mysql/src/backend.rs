//! [`MysqlBackend`]: MySQL and MariaDB as a [`Backend`] of the gate — `mysql://` and
//! `mariadb://` sources, their snapshotter, and the level-3 verifier.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use backup_core::runbook::{RunbookContext, RunbookStep};
use backup_core::{
    Backend, BackendSettings, BackendVerifiers, DynBackend, DynSnapshotter, Error, Restorer,
    Result, SourceManifest, SourceSpec, parse_section,
};

use crate::config::MysqlSourceConfig;
use crate::restore::MysqlRestorer;
use crate::snapshotter::{MysqlSnapshotter, SOURCE_KIND};
use crate::verifier::{MysqlArchiveVerifier, MysqlRestoreTargets};

/// The environment variable that names the directory of the dump tools (overrides `PATH`).
pub const BIN_DIR_ENV: &str = "PREDEPLOY_MYSQL_BINDIR";

/// `[mysql]` of the config file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSection {
    /// Directory with mariadb-dump/mysqldump, overriding discovery on `PATH`.
    pub bin_dir: Option<PathBuf>,
}

/// MySQL and MariaDB sources (one kind, `mysql`; the manifest records the flavour): their
/// snapshotter, the verifier of levels 3–4, the restorer and the runbook.
#[derive(Debug, Clone, Default)]
pub struct MysqlBackend {
    /// Where the dump tools and the client are, overriding discovery on `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Where level-4 test restores go: `None`, each source's own server; a `mysql://` or
    /// `mariadb://` URL, that server for every source (a URL of another kind, such as a
    /// PostgreSQL scratch server, is not for this backend and is ignored).
    pub verify_restore_url: Option<String>,
    /// Verify to level 3 only (no test restore), e.g. for an embedder that has no scratch
    /// server.
    pub archive_only: bool,
}

impl MysqlBackend {
    /// Where level-4 test restores of `sources` go.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a malformed URL; [`Error::SourceUnavailable`], named by the
    /// source, for a `via=docker://` container that cannot be reached.
    pub fn restore_targets(&self, sources: &[SourceSpec]) -> Result<MysqlRestoreTargets> {
        let mut by_source = BTreeMap::new();
        for s in sources.iter().filter(|s| self.accepts(&s.url)) {
            let cfg = MysqlSourceConfig::from_url(&s.url).map_err(|e| match e {
                Error::SourceUnavailable { message, .. } => Error::SourceUnavailable {
                    source_name: s.name.to_string(),
                    message,
                },
                e => e,
            })?;
            by_source.insert(s.name.to_string(), cfg);
        }
        let override_target = self
            .verify_restore_url
            .as_deref()
            .filter(|u| self.accepts(u))
            .map(MysqlSourceConfig::from_url)
            .transpose()?;
        Ok(MysqlRestoreTargets {
            by_source,
            override_target,
        })
    }
}

impl Backend for MysqlBackend {
    fn name(&self) -> &'static str {
        "MySQL/MariaDB"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["mysql://", "mariadb://"]
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[SOURCE_KIND]
    }

    fn section(&self) -> Option<&'static str> {
        Some("mysql")
    }

    fn section_problem(&self, section: &serde_json::Value) -> Option<String> {
        parse_section::<MysqlSection>(section).err()
    }

    fn env_vars(&self) -> &'static [&'static str] {
        &[BIN_DIR_ENV]
    }

    fn restore_url_forms(&self) -> &'static [&'static str] {
        &["mysql://…", "mariadb://…"]
    }

    /// The tool directory from [`BIN_DIR_ENV`], else `[mysql] bin_dir`; the test-restore
    /// server as given.
    fn configured(&self, settings: &BackendSettings<'_>) -> Option<DynBackend> {
        Some(Arc::new(MysqlBackend {
            bin_dir: settings.tool_dir(BIN_DIR_ENV),
            verify_restore_url: settings.verify_restore_url.map(str::to_owned),
            archive_only: self.archive_only,
        }))
    }

    fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter> {
        let mut cfg =
            MysqlSourceConfig::from_url(&spec.url).map_err(|e| e.for_source(spec.name.as_str()))?;
        if cfg.bin_dir.is_none() {
            cfg.bin_dir.clone_from(&self.bin_dir);
        }
        Ok(Arc::new(MysqlSnapshotter::new(spec.name.clone(), cfg)))
    }

    fn verifiers(&self, sources: &[SourceSpec]) -> Result<BackendVerifiers> {
        let restore = if self.archive_only {
            None
        } else {
            Some(self.restore_targets(sources)?)
        };
        Ok(BackendVerifiers {
            after_backup: vec![Arc::new(MysqlArchiveVerifier {
                bin_dir: self.bin_dir.clone(),
                restore,
            })],
            reverify: vec![],
        })
    }

    fn restorer(&self) -> Option<Arc<dyn Restorer>> {
        Some(Arc::new(MysqlRestorer {
            bin_dir: self.bin_dir.clone(),
        }))
    }

    fn runbook_steps(&self, source: &SourceManifest, ctx: &RunbookContext<'_>) -> Vec<RunbookStep> {
        crate::runbook::runbook_steps(source, ctx)
    }
}
