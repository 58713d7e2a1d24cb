//! [`MysqlBackend`]: MySQL and MariaDB as a [`Backend`] of the gate — `mysql://` and
//! `mariadb://` sources, their snapshotter, and the level-3 verifier.

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::{Backend, BackendVerifiers, DynSnapshotter, Error, Result, SourceSpec};

use crate::config::MysqlSourceConfig;
use crate::snapshotter::{MysqlSnapshotter, SOURCE_KIND};
use crate::verifier::MysqlArchiveVerifier;

/// The environment variable that names the directory of the dump tools (overrides `PATH`).
pub const BIN_DIR_ENV: &str = "PREDEPLOY_MYSQL_BINDIR";

/// `[mysql]` of the config file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSection {
    /// Directory with mariadb-dump/mysqldump, overriding discovery on `PATH`.
    pub bin_dir: Option<PathBuf>,
}

/// MySQL and MariaDB sources (one kind, `mysql`; the manifest records the flavour).
/// No restorer yet: a restore of this kind is refused with a message saying so.
#[derive(Debug, Clone, Default)]
pub struct MysqlBackend {
    /// Where the dump tools are, overriding discovery on `PATH`.
    pub bin_dir: Option<PathBuf>,
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

    fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter> {
        let mut cfg = MysqlSourceConfig::from_url(&spec.url).map_err(|e| Error::Invalid {
            what: "source",
            value: spec.name.to_string(),
            reason: e.to_string(),
        })?;
        if cfg.bin_dir.is_none() {
            cfg.bin_dir.clone_from(&self.bin_dir);
        }
        Ok(Arc::new(MysqlSnapshotter::new(spec.name.clone(), cfg)))
    }

    fn verifiers(&self, _sources: &[SourceSpec]) -> Result<BackendVerifiers> {
        Ok(BackendVerifiers {
            after_backup: vec![Arc::new(MysqlArchiveVerifier)],
            reverify: vec![],
        })
    }
}
