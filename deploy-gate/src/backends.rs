//! The kinds of source this build knows: the one place where the gate names its backends.
//! Each backend reads its own config section, environment variables and test-restore server
//! ([`backup_core::Backend::configured`]); everything else reaches them through [`Registry`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use backup_core::{BackendSettings, DynBackend, Registry};
use backup_mysql::MysqlBackend;
use backup_objectstore::S3Settings;
use backup_objectstore::bucket::BucketBackend;
use backup_postgres::PostgresBackend;

/// What the backends of the command line are configured from: the parts of
/// [`crate::Settings`] they read (see [`crate::Settings::backend_config`]).
#[derive(Debug, Clone, Copy)]
pub struct BackendConfig<'a> {
    /// The config file's backend sections ([`backup_core::Backend::section`]), by name.
    pub sections: &'a BTreeMap<String, toml::Value>,
    /// The values of the backends' environment variables that are set.
    pub env: &'a BTreeMap<String, String>,
    /// Where test restores go (`--verify-restore-url`, at most one per backend), when not
    /// each backend's default.
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

/// The database backends: each reads its own config section, environment variables and
/// test-restore server ([`backup_core::Backend::configured`]).
fn database_backends() -> [DynBackend; 2] {
    [
        Arc::new(PostgresBackend {
            verify_jobs: 2,
            ..PostgresBackend::default()
        }),
        Arc::new(MysqlBackend::default()),
    ]
}

/// The environment variables the registered backends read.
pub fn env_vars() -> Vec<&'static str> {
    default_registry()
        .backends()
        .iter()
        .flat_map(|b| b.env_vars().iter().copied())
        .collect()
}

/// Why the config file's top-level `key` is not acceptable, if it is not: an unknown key, or a
/// backend section its backend refuses.
pub(crate) fn section_problem(key: &str, value: &toml::Value) -> Option<String> {
    let registry = default_registry();
    let Some(backend) = registry
        .backends()
        .iter()
        .find(|b| b.section() == Some(key))
    else {
        return Some(format!(
            "unknown field `{key}`: not a setting or a section this version knows"
        ));
    };
    let problem = match serde_json::to_value(value) {
        Ok(json) => backend.section_problem(&json),
        Err(e) => Some(e.to_string()),
    };
    problem.map(|p| format!("[{key}]: {p}"))
}

/// The backend whose test restores go to `url`, among `registry`'s.
fn restore_url_backend<'r>(registry: &'r Registry, url: &str) -> Option<&'r DynBackend> {
    registry
        .backends()
        .iter()
        .find(|b| b.takes_restore_url(url))
}

/// Why these test-restore URLs cannot be used, if they cannot: a URL no backend restores into,
/// or two for one backend. The message shows schemes only (URLs may hold passwords).
pub(crate) fn restore_urls_problem(urls: &[String]) -> Option<String> {
    let registry = default_registry();
    let mut seen: Vec<&str> = Vec::new();
    for url in urls {
        let scheme = url.split_once("://").map_or(url.as_str(), |(s, _)| s);
        match restore_url_backend(&registry, url).map(|b| b.name()) {
            None => {
                let forms: Vec<&str> = registry
                    .backends()
                    .iter()
                    .flat_map(|b| b.restore_url_forms().iter().copied())
                    .collect();
                return Some(format!(
                    "a {scheme}:// URL is not a server for test restores: give {}",
                    forms.join(", ")
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

/// The backends of the command line, configured from `config`: the database backends, then
/// buckets and directories.
pub fn registry(config: &BackendConfig<'_>) -> Registry {
    let mut registry = Registry::new();
    for backend in database_backends() {
        let section = backend
            .section()
            .and_then(|name| config.sections.get(name))
            .and_then(|v| serde_json::to_value(v).ok());
        let settings = BackendSettings {
            section: section.as_ref(),
            env: config.env,
            verify_restore_url: config
                .verify_restore_urls
                .iter()
                .find(|u| backend.takes_restore_url(u))
                .map(String::as_str),
            verify_jobs: config.verify_jobs,
            verify_temp_dir: config.verify_temp_dir,
        };
        registry.register(backend.configured(&settings).unwrap_or(backend));
    }
    registry.with(Arc::new(BucketBackend {
        s3: config.s3.clone(),
        concurrency: config.bucket_concurrency,
        verify_reused: config.bucket_verify_reused,
    }))
}

/// The backends with their defaults (tools discovered on `PATH`, test restores into a local
/// cluster when possible, else each source's own server with two jobs, S3 settings from
/// `AWS_*`): what [`crate::Gate::builder`] starts from.
pub fn default_registry() -> Registry {
    database_backends()
        .into_iter()
        .fold(Registry::new(), Registry::with)
        .with(Arc::new(BucketBackend::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> toml::Value {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn each_backend_checks_its_own_section() {
        let typo = section_problem("postgres", &toml("bin_dr = \"/x\"")).expect("a problem");
        assert!(
            typo.starts_with("[postgres]: ") && typo.contains("bin_dr"),
            "{typo}"
        );
        let jobs = section_problem("postgres", &toml("dump_jobs = \"two\"")).expect("a problem");
        assert!(jobs.starts_with("[postgres]: "), "{jobs}");
        let wrong = section_problem("mysql", &toml("bin_dir = 3")).expect("a problem");
        assert!(wrong.starts_with("[mysql]: "), "{wrong}");
        assert_eq!(
            section_problem("mysql", &toml("bin_dir = \"/opt/my\"")),
            None
        );
        let unknown = section_problem("postgress", &toml("")).expect("a problem");
        assert!(unknown.contains("unknown field `postgress`"), "{unknown}");
    }

    #[test]
    fn test_restore_urls_go_to_the_backend_that_takes_them() {
        let urls = |u: &[&str]| u.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            restore_urls_problem(&urls(&["local", "mariadb://u@h/d"])),
            None
        );
        let two = restore_urls_problem(&urls(&["source", "postgres://u:pw@h/d"])).expect("two");
        assert!(
            two.contains("two servers for PostgreSQL") && !two.contains("pw"),
            "{two}"
        );
        let none = restore_urls_problem(&urls(&["s3://b/p"])).expect("not a server");
        assert!(
            none.contains("s3://") && none.contains("mysql://…"),
            "{none}"
        );
    }

    #[test]
    fn the_registry_hands_each_backend_its_section_env_and_restore_url() {
        let sections = BTreeMap::from([
            (
                "postgres".to_owned(),
                toml("bin_dir = \"/pg/bin\"\ndump_jobs = 4"),
            ),
            ("mysql".to_owned(), toml("bin_dir = \"/my/bin\"")),
        ]);
        let env = BTreeMap::from([(backup_mysql::BIN_DIR_ENV.to_owned(), "/env/my".to_owned())]);
        let urls = ["mysql://u@h/scratch".to_owned(), "local".to_owned()];
        let s3 = S3Settings::default();
        let registry = registry(&BackendConfig {
            sections: &sections,
            env: &env,
            verify_restore_urls: &urls,
            verify_jobs: 3,
            verify_temp_dir: None,
            s3: &s3,
            bucket_concurrency: 4,
            bucket_verify_reused: false,
        });
        let shown: Vec<String> = registry
            .backends()
            .iter()
            .map(|b| format!("{b:?}"))
            .collect();
        let pg = &shown[0];
        assert!(
            pg.contains("\"/pg/bin\"") && pg.contains("Some(\"local\")"),
            "{pg}"
        );
        assert!(pg.contains("verify_jobs: 3"), "{pg}");
        assert!(pg.contains("dump_jobs: 4"), "{pg}");
        let my = &shown[1];
        assert!(
            my.contains("\"/env/my\"") && my.contains("mysql://u@h/scratch"),
            "{my}"
        );
        assert!(!my.contains("/my/bin"), "the environment wins: {my}");
        assert_eq!(env_vars().len(), 2);
    }
}
