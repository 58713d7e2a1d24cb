//! The kinds of source this build knows: the one place where the gate names its backends —
//! their config sections, their environment variables, and their construction. Everything
//! else reaches them through [`Registry`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::Backend as _;
use backup_core::Registry;
use backup_mysql::{MysqlBackend, MysqlSection};
use backup_objectstore::S3Settings;
use backup_objectstore::bucket::BucketBackend;
use backup_postgres::{
    BIN_DIR_ENV, LOCAL_SCRATCH, PostgresBackend, PostgresSection, SOURCE_SCRATCH,
};

/// What the backends of the command line are configured from: the parts of
/// [`crate::Settings`] they read (see [`crate::Settings::backend_config`]).
#[derive(Debug, Clone, Copy)]
pub struct BackendConfig<'a> {
    /// The config file's backend sections (`[postgres]`, `[mysql]`), by name.
    pub sections: &'a BTreeMap<String, toml::Value>,
    /// The values of the backends' environment variables that are set.
    pub env: &'a BTreeMap<String, String>,
    /// Where test restores go (`--verify-restore-url`, at most one per backend), when not
    /// the default (a local cluster for PostgreSQL when possible, else each source's own server).
    pub verify_restore_urls: &'a [String],
    /// Parallel jobs of a test restore.
    pub verify_jobs: u32,
    /// Where test restores stage their dumps.
    pub verify_temp_dir: Option<&'a Path>,
    /// S3 settings of bucket sources and targets.
    pub s3: &'a S3Settings,
    /// Concurrent object transfers of bucket sources.
    pub bucket_concurrency: usize,
    /// Whether a bucket backup re-reads the blobs it reuses.
    pub bucket_verify_reused: bool,
}

/// A source flag shown in hints.
pub const EXAMPLE_SOURCE: &str = "db=postgres://app@localhost/app";

/// The environment variables the registered backends read.
pub const ENV_VARS: &[&str] = &[BIN_DIR_ENV, backup_mysql::BIN_DIR_ENV];

/// Why the config file's top-level `key` is not acceptable, if it is not: an unknown key, or a
/// backend section its backend refuses.
pub(crate) fn section_problem(key: &str, value: &toml::Value) -> Option<String> {
    match key {
        "postgres" => postgres_section(value).err(),
        "mysql" => mysql_section(value).err(),
        _ => Some(format!(
            "unknown field `{key}`: not a setting or a section this version knows"
        )),
    }
}

/// `[name]` of the config file as the backend's section type.
fn section<T: serde::de::DeserializeOwned>(name: &str, value: &toml::Value) -> Result<T, String> {
    value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| format!("[{name}]: {}", e.message()))
}

fn postgres_section(value: &toml::Value) -> Result<PostgresSection, String> {
    section("postgres", value)
}

fn mysql_section(value: &toml::Value) -> Result<MysqlSection, String> {
    section("mysql", value)
}

/// Which backend takes a test-restore URL: PostgreSQL (`postgres://`, `postgresql://`,
/// `local`, a throwaway cluster, or `source`, each source's own server) or MySQL/MariaDB (`mysql://`, `mariadb://`).
fn restore_url_backend(url: &str) -> Option<&'static str> {
    if url == LOCAL_SCRATCH || url == SOURCE_SCRATCH || PostgresBackend::default().accepts(url) {
        Some("PostgreSQL")
    } else if MysqlBackend::default().accepts(url) {
        Some("MySQL/MariaDB")
    } else {
        None
    }
}

/// Why these test-restore URLs cannot be used, if they cannot: a URL no backend restores into,
/// or two for one backend. The message shows schemes only (URLs may hold passwords).
pub(crate) fn restore_urls_problem(urls: &[String]) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for url in urls {
        let scheme = url.split_once("://").map_or(url.as_str(), |(s, _)| s);
        match restore_url_backend(url) {
            None => {
                return Some(format!(
                    "a {scheme}:// URL is not a server for test restores: give postgres://…, mysql://…, mariadb://…, `local` or `source`"
                ));
            }
            Some(b) if seen.contains(&b) => {
                return Some(format!(
                    "two servers for {b} test restores: give at most one per kind of database"
                ));
            }
            Some(b) => seen.push(b),
        }
    }
    None
}

/// The test-restore URL of the backend named `backend` among `config`'s.
fn restore_url_for(config: &BackendConfig<'_>, backend: &str) -> Option<String> {
    config
        .verify_restore_urls
        .iter()
        .find(|u| restore_url_backend(u) == Some(backend))
        .cloned()
}

/// A backend's tool directory: its environment variable `env`, else `bin_dir` of its section.
fn tool_dir(
    config: &BackendConfig<'_>,
    env: &str,
    from_section: Option<PathBuf>,
) -> Option<PathBuf> {
    config.env.get(env).map(PathBuf::from).or(from_section)
}

/// The backends of the command line, configured from `config`: PostgreSQL, MySQL/MariaDB,
/// then buckets and directories.
pub fn registry(config: &BackendConfig<'_>) -> Registry {
    let sections = config.sections;
    let bin_dir = tool_dir(
        config,
        BIN_DIR_ENV,
        sections
            .get("postgres")
            .and_then(|v| postgres_section(v).ok())
            .and_then(|s| s.bin_dir),
    );
    let mysql_bin_dir = tool_dir(
        config,
        backup_mysql::BIN_DIR_ENV,
        sections
            .get("mysql")
            .and_then(|v| mysql_section(v).ok())
            .and_then(|s| s.bin_dir),
    );
    Registry::new()
        .with(Arc::new(PostgresBackend {
            bin_dir,
            verify_restore_url: restore_url_for(config, "PostgreSQL"),
            verify_jobs: config.verify_jobs,
            verify_temp_dir: config.verify_temp_dir.map(Path::to_path_buf),
            archive_only: false,
        }))
        .with(Arc::new(MysqlBackend {
            bin_dir: mysql_bin_dir,
            verify_restore_url: restore_url_for(config, "MySQL/MariaDB"),
            archive_only: false,
        }))
        .with(Arc::new(BucketBackend {
            s3: config.s3.clone(),
            concurrency: config.bucket_concurrency,
            verify_reused: config.bucket_verify_reused,
        }))
}

/// The backends with their defaults (tools discovered on `PATH`, test restores into a local
/// cluster when possible, else each source's own server with two jobs, S3 settings from `AWS_*`): what [`crate::Gate::builder`]
/// starts from.
pub fn default_registry() -> Registry {
    Registry::new()
        .with(Arc::new(PostgresBackend {
            verify_jobs: 2,
            ..PostgresBackend::default()
        }))
        .with(Arc::new(MysqlBackend::default()))
        .with(Arc::new(BucketBackend::default()))
}
