//! Configuration: the TOML file, environment variables and flags, resolved into [`Settings`].
//! Precedence: flags over environment over config file over defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{PipelineConfig, SourceName, VerificationLevel};
use backup_objectstore::{S3Settings, StoreUrl};
use serde::Deserialize;

use crate::error::{GateError, Result};

/// Default config file, read when present in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "predeploy.toml";
/// Default store, relative to the working directory: paths read `.pre-deploy/backups/<id>/…`.
pub const DEFAULT_STORE: &str = "./.pre-deploy";
/// The default store of earlier versions, still used when it holds backups and the new default
/// does not exist (`./backups/backups/<id>/…`).
pub const LEGACY_DEFAULT_STORE: &str = "./backups";
/// Default environment name.
pub const DEFAULT_ENVIRONMENT: &str = "default";
/// The environment treated as production unless `[env.production] production = false`.
pub const PRODUCTION_ENVIRONMENT: &str = "production";

/// The config file as written (`predeploy.toml`). Unknown keys are errors, so a typo never
/// silently changes what gets backed up.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    /// Where backups live.
    pub store: Option<String>,
    /// The environment name used when `--env` is not given.
    pub environment: Option<String>,
    /// Sources by name to URL (any scheme a registered backend takes). `${VAR}` is expanded.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Backup settings.
    #[serde(default)]
    pub backup: BackupSection,
    /// Verification settings.
    #[serde(default)]
    pub verify: VerifySection,
    /// Bucket and directory source settings.
    #[serde(default)]
    pub buckets: BucketsSection,
    /// Per-environment overrides: `[env.production]` with `store` and `sources`.
    #[serde(default)]
    pub env: BTreeMap<String, EnvSection>,
    /// Retention (`[retention]`, with a table per kind); absent: nothing is ever pruned.
    pub retention: Option<crate::retention::RetentionSection>,
    /// `[s3]`: connection settings for `s3://` stores and sources (`AWS_*` variables override
    /// them). `${VAR}` is expanded in every value, so secrets can stay in the environment.
    #[serde(default)]
    pub s3: S3Settings,
    /// The run lock.
    #[serde(default)]
    pub lock: LockSection,
    /// `[encryption]`: age recipients new backups are encrypted to, and the identity that
    /// decrypts them for verification and restores (see `docs/encryption.md`).
    #[serde(default)]
    pub encryption: EncryptionSection,
    /// `[notify]`: alerts after a command (see [`crate::Notifier`]).
    #[serde(default)]
    pub notify: crate::notify::NotifySection,
    /// `[project.NAME]`: further projects, each written like a whole config file (see
    /// [`crate::targets`]); selected with `--project NAME`.
    #[serde(default)]
    pub project: BTreeMap<String, toml::Value>,
    /// `projects_dir = "DIR"`: one project per `*.toml` file in DIR (relative to this file),
    /// named after the file.
    pub projects_dir: Option<String>,
    /// The sections of the registered backends, each read by its backend (see
    /// `backends.rs`); [`parse_config`] refuses any other key.
    #[serde(flatten)]
    pub backend_sections: BTreeMap<String, toml::Value>,
}

/// `[lock]`: one run at a time per store and environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSection {
    /// Lease length, renewed every third of it (default `60s`): how long a run that was killed
    /// keeps others out.
    pub ttl: Option<String>,
    /// How long to wait for another run's lock (default `0s`: fail at once with exit 6).
    pub wait: Option<String>,
}

/// `[encryption]` (and `[env.NAME.encryption]`, whose keys replace these).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// Public age recipients (`age1…`) every artifact of a new backup is encrypted to; unset
    /// or empty: backups are not encrypted.
    pub recipients: Option<Vec<String>>,
    /// A file of age identities (`AGE-SECRET-KEY-1…`, mode 0600) that decrypts backups for
    /// verification above level 1 and for restores. `PREDEPLOY_AGE_IDENTITY_FILE` overrides it.
    pub identity_file: Option<String>,
    /// Keep table names and per-table row counts out of the manifest's plaintext: they go to
    /// an encrypted stats artifact of each source (see `backup_core::hidden_stats`). Needs
    /// `recipients`.
    pub hide_table_names: Option<bool>,
}

impl EncryptionSection {
    /// `self` with the keys `over` sets replacing its own.
    pub fn overridden_by(&self, over: &EncryptionSection) -> EncryptionSection {
        EncryptionSection {
            recipients: over.recipients.clone().or_else(|| self.recipients.clone()),
            identity_file: over
                .identity_file
                .clone()
                .or_else(|| self.identity_file.clone()),
            hide_table_names: over.hide_table_names.or(self.hide_table_names),
        }
    }
}

/// Encryption at rest, resolved.
#[derive(Debug, Clone, Default)]
pub struct EncryptionSettings {
    /// Public recipients of new backups (also in [`Settings::pipeline`]); empty: off.
    pub recipients: Vec<String>,
    /// `hide_table_names = true` (also in [`Settings::pipeline`]).
    pub hide_table_names: bool,
    /// The identity file, when one is configured (its mode was checked).
    pub identity_file: Option<PathBuf>,
    /// The identities read from it: installed process-wide by [`crate::Gate::from_settings`].
    pub identities: Option<backup_core::encryption::Identities>,
}

/// `[backup]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// zstd level, 1–19 (default: 3; MySQL/MariaDB dumps 1).
    pub zstd_level: Option<i32>,
    /// zstd worker threads (default: number of CPUs).
    pub zstd_workers: Option<u32>,
}

/// A setting written as one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `key = "value"`.
    One(String),
    /// `key = ["a", "b"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[verify]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// `checksum`, `decompress`, `archive` or `restore`. Unset: restore when a scratch server
    /// is usable, else archive.
    pub level: Option<String>,
    /// Server(s) for test restores: one URL, or a list with one URL per kind of database (or
    /// a backend's own words, such as `local` and `source`); default: each backend's own
    /// (see its docs and docs/verification.md).
    pub restore_url: Option<OneOrMany>,
    /// Parallel jobs of the restore tool in test restores (default: number of CPUs).
    pub jobs: Option<u32>,
    /// Directory for the decompressed archive of a test restore (default: the system temp dir).
    pub temp_dir: Option<PathBuf>,
}

/// `[buckets]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketsSection {
    /// Objects read and stored at once per bucket or directory source (default 8).
    pub concurrency: Option<usize>,
    /// Whether the verification right after a backup also reads and hashes the blobs of
    /// objects taken unchanged from the previous backup (default false: presence and size).
    pub verify_reused: Option<bool>,
}

/// `[env.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    /// Store for this environment.
    pub store: Option<String>,
    /// Sources for this environment (replace the top-level ones).
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Retention for this environment (replaces the top-level `[retention]` as a whole).
    pub retention: Option<crate::retention::RetentionSection>,
    /// Whether this is a production environment (`restore` then needs `--allow-production`).
    /// Default: true for an environment named `production`, false otherwise.
    pub production: Option<bool>,
    /// Alerts for this environment: its keys replace those of the top-level `[notify]`.
    pub notify: Option<crate::notify::NotifySection>,
    /// Encryption for this environment: its keys replace those of the top-level `[encryption]`.
    pub encryption: Option<EncryptionSection>,
}

/// What the command line says (every field optional: unset means "not given").
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--store URL`.
    pub store: Option<String>,
    /// `--source NAME=URL`, repeatable.
    pub sources: Vec<String>,
    /// `--env NAME`.
    pub env: Option<String>,
    /// `--project NAME`: one of the config's projects.
    pub project: Option<String>,
    /// `--verify-level LEVEL`.
    pub verify_level: Option<String>,
    /// `--zstd-level N`.
    pub zstd_level: Option<i32>,
    /// `--verify-restore-url URL`, repeatable (one per kind of database).
    pub verify_restore_url: Vec<String>,
    /// `--wait-lock DURATION`.
    pub wait_lock: Option<String>,
}

pub use backup_core::SourceSpec;

/// Everything resolved, ready to build a [`crate::Gate`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where backups live.
    pub store: StoreUrl,
    /// The environment.
    pub environment: String,
    /// What to back up.
    pub sources: Vec<SourceSpec>,
    /// How far to verify new backups.
    pub verify_level: VerificationLevel,
    /// The level a verification must reach to pass: the same as `verify_level` when one was
    /// chosen; `archive` by default, when `restore` is attempted only if a scratch server works.
    pub verify_required: VerificationLevel,
    /// Servers for test restores, at most one per backend (each may hold a password: never
    /// print it); a backend without one restores into each source's own server.
    pub verify_restore_urls: Vec<String>,
    /// Parallel jobs of the restore tool in test restores.
    pub verify_jobs: u32,
    /// Where test restores stage the decompressed archive.
    pub verify_temp_dir: Option<PathBuf>,
    /// Compression (and encryption: [`PipelineConfig::recipients`]) settings.
    pub pipeline: PipelineConfig,
    /// `[encryption]` (with `[env.NAME.encryption]` over it) and `PREDEPLOY_AGE_IDENTITY_FILE`.
    pub encryption: EncryptionSettings,
    /// The config file's sections of the registered backends, as written.
    pub backend_sections: BTreeMap<String, toml::Value>,
    /// The environment variables the registered backends read, those that are set.
    pub backend_env: BTreeMap<String, String>,
    /// Objects read and stored at once per bucket or directory source (`[buckets]`).
    pub bucket_concurrency: usize,
    /// `[buckets] verify_reused`: read every blob after each backup, not only the new ones.
    pub bucket_verify_reused: bool,
    /// The working directory (git info, `.last-deployment-backup`).
    pub workdir: PathBuf,
    /// Retention, when `[retention]` (or `[env.NAME.retention]`) is configured.
    pub retention: Option<crate::retention::RetentionSettings>,
    /// S3 settings: the config file's `[s3]` overridden by the `AWS_*` variables (an `s3://`
    /// URL's own query overrides both).
    pub s3: S3Settings,
    /// Lease length of the run lock.
    pub lock_ttl: std::time::Duration,
    /// How long to wait for another run's lock.
    pub wait_lock: std::time::Duration,
    /// Whether the environment is production (`[env.NAME] production = true`, or its name is
    /// `production`): restoring into it needs `--allow-production`.
    pub production: bool,
    /// `[notify]` (with `[env.NAME.notify]` over it): where alerts go.
    pub notify: crate::notify::NotifySettings,
    /// The project (`--project` / `PREDEPLOY_PROJECT`), when one was named.
    pub project: Option<String>,
    /// Where each setting came from, by key (`store`, `verify.level`, `s3.region`, …): see
    /// [`Origin`].
    pub origins: BTreeMap<&'static str, Origin>,
}

/// Where a resolved setting came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum Origin {
    /// A command-line flag (`--store`).
    Flag {
        /// The flag.
        flag: &'static str,
    },
    /// An environment variable.
    Env {
        /// Its name.
        variable: String,
    },
    /// The config file.
    File {
        /// Its path.
        path: PathBuf,
    },
    /// The built-in default.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag { flag } => write!(f, "flag {flag}"),
            Origin::Env { variable } => write!(f, "env {variable}"),
            Origin::File { path } => write!(f, "file {}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The origin of the first candidate that is set (flags, then variables, then the file).
fn first_origin(candidates: &[(bool, &dyn Fn() -> Origin)]) -> Origin {
    candidates
        .iter()
        .find(|(set, _)| *set)
        .map_or(Origin::Default, |(_, o)| o())
}

/// Reads an environment variable; injectable for tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Settings {
    /// What the backends are configured from (see [`crate::registry`]).
    pub fn backend_config(&self) -> crate::backends::BackendConfig<'_> {
        crate::backends::BackendConfig {
            sections: &self.backend_sections,
            env: &self.backend_env,
            verify_restore_urls: &self.verify_restore_urls,
            verify_jobs: self.verify_jobs,
            verify_temp_dir: self.verify_temp_dir.as_deref(),
            s3: &self.s3,
            bucket_concurrency: self.bucket_concurrency,
            bucket_verify_reused: self.bucket_verify_reused,
        }
    }

    /// Resolves flags, environment and config file.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for an unreadable or invalid config file, a malformed flag, an unknown
    /// verification level, or a store URL that does not parse.
    pub fn resolve(cli: &CliOverrides, env: EnvLookup<'_>, workdir: &Path) -> Result<Settings> {
        let (file, file_path) = load_config(cli, env, workdir)?;
        let from_file = || Origin::File {
            path: file_path.clone().unwrap_or_default(),
        };
        let from_env = |v: &str| Origin::Env {
            variable: v.to_owned(),
        };
        let flag = |flag: &'static str| Origin::Flag { flag };
        let mut origins = BTreeMap::new();
        let project = cli.project.clone().or_else(|| env("PREDEPLOY_PROJECT"));
        origins.insert(
            "project",
            first_origin(&[
                (cli.project.is_some(), &|| flag("--project")),
                (project.is_some(), &|| from_env("PREDEPLOY_PROJECT")),
            ]),
        );
        origins.insert(
            "environment",
            first_origin(&[
                (cli.env.is_some(), &|| flag("--env")),
                (env("PREDEPLOY_ENV").is_some(), &|| {
                    from_env("PREDEPLOY_ENV")
                }),
                (file.environment.is_some(), &from_file),
            ]),
        );
        let environment = cli
            .env
            .clone()
            .or_else(|| env("PREDEPLOY_ENV"))
            .or_else(|| file.environment.clone())
            .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned());
        let env_section = file.env.get(&environment).cloned().unwrap_or_default();
        let production = env_section
            .production
            .unwrap_or(environment == PRODUCTION_ENVIRONMENT);

        origins.insert(
            "store",
            first_origin(&[
                (cli.store.is_some(), &|| flag("--store")),
                (env("PREDEPLOY_STORE").is_some(), &|| {
                    from_env("PREDEPLOY_STORE")
                }),
                (
                    env_section.store.is_some() || file.store.is_some(),
                    &from_file,
                ),
            ]),
        );
        let store_raw = cli
            .store
            .clone()
            .or_else(|| env("PREDEPLOY_STORE"))
            .or(env_section.store)
            .or(file.store.clone())
            .unwrap_or_else(|| default_store(workdir));
        let store_raw = expand_vars(&store_raw, env)?;
        let store =
            match StoreUrl::parse(&store_raw).map_err(|e| GateError::usage(e.to_string()))? {
                StoreUrl::Local(p) if p.is_relative() => StoreUrl::Local(workdir.join(p)),
                other => other,
            };

        let sources_in_file = !file.sources.is_empty() || !env_section.sources.is_empty();
        origins.insert(
            "sources",
            first_origin(&[
                (!cli.sources.is_empty(), &|| flag("--source")),
                (sources_in_file, &from_file),
                (env("DATABASE_URL").is_some(), &|| from_env("DATABASE_URL")),
            ]),
        );
        let sources = if !cli.sources.is_empty() {
            cli.sources
                .iter()
                .map(|s| parse_source_flag(s))
                .collect::<Result<Vec<_>>>()?
        } else {
            let table = if env_section.sources.is_empty() {
                &file.sources
            } else {
                &env_section.sources
            };
            let mut specs = Vec::new();
            for (name, url) in table {
                specs.push(source_spec(name, &expand_vars(url, env)?)?);
            }
            if specs.is_empty()
                && let Some(url) = env("DATABASE_URL")
            {
                specs.push(source_spec("db", &url)?);
            }
            specs
        };
        let mut seen = std::collections::BTreeSet::new();
        for s in &sources {
            if !seen.insert(s.name.clone()) {
                return Err(GateError::usage(format!(
                    "source {} is given twice",
                    s.name
                )));
            }
        }

        origins.insert(
            "verify.level",
            first_origin(&[
                (cli.verify_level.is_some(), &|| flag("--verify-level")),
                (env("PREDEPLOY_VERIFY_LEVEL").is_some(), &|| {
                    from_env("PREDEPLOY_VERIFY_LEVEL")
                }),
                (file.verify.level.is_some(), &from_file),
            ]),
        );
        origins.insert(
            "verify.restore_url",
            first_origin(&[
                (!cli.verify_restore_url.is_empty(), &|| {
                    flag("--verify-restore-url")
                }),
                (env("PREDEPLOY_VERIFY_RESTORE_URL").is_some(), &|| {
                    from_env("PREDEPLOY_VERIFY_RESTORE_URL")
                }),
                (file.verify.restore_url.is_some(), &from_file),
            ]),
        );
        for (key, set) in [
            ("verify.jobs", file.verify.jobs.is_some()),
            ("verify.temp_dir", file.verify.temp_dir.is_some()),
            (
                "retention",
                env_section.retention.is_some() || file.retention.is_some(),
            ),
        ] {
            origins.insert(key, first_origin(&[(set, &from_file)]));
        }
        origins.insert(
            "backup.zstd_level",
            first_origin(&[
                (cli.zstd_level.is_some(), &|| flag("--zstd-level")),
                (file.backup.zstd_level.is_some(), &from_file),
            ]),
        );
        origins.insert(
            "lock.ttl",
            first_origin(&[
                (env("PREDEPLOY_LOCK_TTL").is_some(), &|| {
                    from_env("PREDEPLOY_LOCK_TTL")
                }),
                (file.lock.ttl.is_some(), &from_file),
            ]),
        );
        origins.insert(
            "lock.wait",
            first_origin(&[
                (cli.wait_lock.is_some(), &|| flag("--wait-lock")),
                (env("PREDEPLOY_WAIT_LOCK").is_some(), &|| {
                    from_env("PREDEPLOY_WAIT_LOCK")
                }),
                (file.lock.wait.is_some(), &from_file),
            ]),
        );
        for (key, vars, in_file) in [
            (
                "s3.endpoint",
                &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"][..],
                file.s3.endpoint.is_some(),
            ),
            (
                "s3.region",
                &["AWS_REGION", "AWS_DEFAULT_REGION"][..],
                file.s3.region.is_some(),
            ),
            (
                "s3.access_key_id",
                &["AWS_ACCESS_KEY_ID"][..],
                file.s3.access_key_id.is_some(),
            ),
            (
                "s3.secret_access_key",
                &["AWS_SECRET_ACCESS_KEY"][..],
                file.s3.secret_access_key.is_some(),
            ),
            (
                "s3.session_token",
                &["AWS_SESSION_TOKEN"][..],
                file.s3.session_token.is_some(),
            ),
        ] {
            let var = vars.iter().find(|v| env(v).is_some());
            origins.insert(
                key,
                match var {
                    Some(v) => from_env(v),
                    None => first_origin(&[(in_file, &from_file)]),
                },
            );
        }
        let level_raw = cli
            .verify_level
            .clone()
            .or_else(|| env("PREDEPLOY_VERIFY_LEVEL"))
            .or(file.verify.level.clone());
        let (verify_level, verify_required) = match level_raw {
            Some(raw) => {
                let level = parse_level(&raw)?;
                (level, level)
            }
            None => (VerificationLevel::Restore, VerificationLevel::Archive),
        };
        let verify_restore_urls = if cli.verify_restore_url.is_empty() {
            env("PREDEPLOY_VERIFY_RESTORE_URL")
                .map(|u| vec![u])
                .or_else(|| file.verify.restore_url.clone().map(OneOrMany::into_vec))
                .unwrap_or_default()
        } else {
            cli.verify_restore_url.clone()
        };
        let verify_restore_urls = verify_restore_urls
            .iter()
            .map(|u| expand_vars(u, env))
            .collect::<Result<Vec<_>>>()?;
        if let Some(problem) = crate::backends::restore_urls_problem(&verify_restore_urls) {
            return Err(GateError::usage(format!(
                "--verify-restore-url / [verify] restore_url: {problem}"
            )));
        }

        let mut pipeline = PipelineConfig::default();
        if let Some(l) = cli.zstd_level.or(file.backup.zstd_level) {
            pipeline.zstd_level = Some(l);
        }
        if let Some(w) = file.backup.zstd_workers {
            pipeline.zstd_workers = w;
        }
        let encryption_section = match &env_section.encryption {
            Some(over) => file.encryption.overridden_by(over),
            None => file.encryption.clone(),
        };
        let encryption = encryption_settings(&encryption_section, env, workdir)?;
        origins.insert(
            "encryption.recipients",
            first_origin(&[(!encryption.recipients.is_empty(), &from_file)]),
        );
        origins.insert(
            "encryption.identity_file",
            first_origin(&[
                (
                    env(backup_core::encryption::IDENTITY_FILE_VAR).is_some(),
                    &|| from_env(backup_core::encryption::IDENTITY_FILE_VAR),
                ),
                (encryption_section.identity_file.is_some(), &from_file),
            ]),
        );
        origins.insert(
            "encryption.hide_table_names",
            first_origin(&[(encryption_section.hide_table_names.is_some(), &from_file)]),
        );
        pipeline.recipients = encryption.recipients.clone();
        pipeline.hide_table_names = encryption.hide_table_names;
        pipeline
            .validate()
            .map_err(|e| GateError::usage(format!("[encryption] {e}")))?;

        let bucket_concurrency = file
            .buckets
            .concurrency
            .unwrap_or(backup_objectstore::bucket::DEFAULT_CONCURRENCY);
        if bucket_concurrency == 0 {
            return Err(GateError::usage("[buckets] concurrency must be at least 1"));
        }
        let s3 = s3_settings(&file.s3, env)?;
        let lock_duration = |what: &str, raw: Option<String>, default: std::time::Duration| {
            raw.map(|r| {
                parse_duration(what, &r).and_then(|d| {
                    std::time::Duration::try_from(d).map_err(|_| {
                        GateError::usage(format!("{what} = {r:?} must not be negative"))
                    })
                })
            })
            .transpose()
            .map(|d| d.unwrap_or(default))
        };
        let lock_ttl = lock_duration(
            "[lock] ttl",
            env("PREDEPLOY_LOCK_TTL").or(file.lock.ttl.clone()),
            backup_objectstore::DEFAULT_LOCK_TTL,
        )?;
        if lock_ttl < std::time::Duration::from_secs(3) {
            return Err(GateError::usage(
                "[lock] ttl must be at least 3s (the lease is renewed every third of it)",
            ));
        }
        let wait_lock = lock_duration(
            "--wait-lock",
            cli.wait_lock
                .clone()
                .or_else(|| env("PREDEPLOY_WAIT_LOCK"))
                .or(file.lock.wait.clone()),
            std::time::Duration::ZERO,
        )?;

        let notify_section = match &env_section.notify {
            Some(over) => file.notify.overridden_by(over),
            None => file.notify.clone(),
        };
        let notify =
            crate::notify::NotifySettings::from_section(&notify_section, &|s| expand_vars(s, env))?;

        Ok(Settings {
            encryption,
            notify,
            s3,
            lock_ttl,
            wait_lock,
            store,
            environment,
            sources,
            verify_level,
            pipeline,
            bucket_concurrency,
            bucket_verify_reused: file.buckets.verify_reused.unwrap_or(false),
            backend_env: crate::backends::env_vars()
                .into_iter()
                .filter_map(|k| env(k).map(|v| (k.to_owned(), v)))
                .collect(),
            backend_sections: file.backend_sections.clone(),
            verify_required,
            verify_restore_urls,
            verify_jobs: file.verify.jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(2, |n| u32::try_from(n.get()).unwrap_or(2))
            }),
            verify_temp_dir: file.verify.temp_dir.clone(),
            workdir: workdir.to_path_buf(),
            retention: env_section
                .retention
                .as_ref()
                .or(file.retention.as_ref())
                .map(crate::retention::RetentionSettings::from_section)
                .transpose()?,
            production,
            project,
            origins,
        })
    }

    /// Fails with a usage error saying how to name a source when none is configured.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] when there is no source.
    pub fn require_sources(&self) -> Result<()> {
        if self.sources.is_empty() {
            return Err(GateError::usage(format!(
                "nothing to back up: give --source NAME=URL (e.g. --source {}), \
                 set DATABASE_URL, or add a [sources] table to predeploy.toml",
                crate::backends::EXAMPLE_SOURCE
            )));
        }
        Ok(())
    }
}

/// `[encryption]` resolved: recipients, and the identity file (the variable over the file's
/// key, relative to `workdir`) read with its mode checked.
fn encryption_settings(
    section: &EncryptionSection,
    env: EnvLookup<'_>,
    workdir: &Path,
) -> Result<EncryptionSettings> {
    let recipients = section.recipients.clone().unwrap_or_default();
    if section.hide_table_names == Some(true) && recipients.is_empty() {
        return Err(GateError::usage(
            "[encryption] hide_table_names = true needs [encryption] recipients: without \
             encryption the dump itself holds the table names (set recipients, or remove the key)",
        ));
    }
    let identity_file = match env(backup_core::encryption::IDENTITY_FILE_VAR) {
        Some(v) if !v.is_empty() => Some(v),
        _ => section
            .identity_file
            .as_deref()
            .map(|s| expand_vars(s, env))
            .transpose()?,
    }
    .map(|p| workdir.join(p));
    let identities = identity_file
        .as_deref()
        .map(backup_core::encryption::Identities::from_file)
        .transpose()
        .map_err(|e| GateError::usage(e.to_string()))?;
    Ok(EncryptionSettings {
        recipients,
        hide_table_names: section.hide_table_names == Some(true),
        identity_file,
        identities,
    })
}

/// [`DEFAULT_STORE`], or [`LEGACY_DEFAULT_STORE`] when that one holds backups of an earlier
/// version and the new one does not exist yet (so an upgrade never loses sight of them).
fn default_store(workdir: &Path) -> String {
    let legacy = workdir.join(LEGACY_DEFAULT_STORE).join("backups");
    if legacy.is_dir() && !workdir.join(DEFAULT_STORE).exists() {
        tracing::warn!(
            "using the store ./backups of an earlier version (the default is now ./.pre-deploy): \
             pass --store ./backups to keep it, or move it with `mv backups .pre-deploy`"
        );
        return LEGACY_DEFAULT_STORE.to_owned();
    }
    DEFAULT_STORE.to_owned()
}

/// The `[s3]` section (with `${VAR}` expanded) overridden by the `AWS_*` variables.
fn s3_settings(section: &S3Settings, env: EnvLookup<'_>) -> Result<S3Settings> {
    let expand = |v: &Option<String>| v.as_deref().map(|s| expand_vars(s, env)).transpose();
    let file = S3Settings {
        endpoint: expand(&section.endpoint)?,
        region: expand(&section.region)?,
        access_key_id: expand(&section.access_key_id)?,
        secret_access_key: expand(&section.secret_access_key)?,
        session_token: expand(&section.session_token)?,
        ..section.clone()
    };
    Ok(file.overridden_by(&S3Settings::from_env_with(env)))
}

/// Parses a verification level this version can reach.
///
/// # Errors
///
/// [`GateError::Usage`] for an unknown level.
pub fn parse_level(s: &str) -> Result<VerificationLevel> {
    s.parse()
        .map_err(|e: backup_core::Error| GateError::usage(e.to_string()))
}

/// Parses a duration such as `30m`, `2h`, `7d`, `2w` as an exact length of time (days are 24
/// hours; months and years count back from now). `what` names the option in the error.
///
/// # Errors
///
/// [`GateError::Usage`], as [`crate::parse_span`].
pub fn parse_duration(what: &str, s: &str) -> Result<jiff::SignedDuration> {
    let span = crate::parse_span(what, s)?;
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    span.to_duration(&now)
        .map_err(|e| GateError::usage(format!("{what} = {s:?} is out of range: {e}")))
}

fn load_config(
    cli: &CliOverrides,
    env: EnvLookup<'_>,
    workdir: &Path,
) -> Result<(ConfigFile, Option<PathBuf>)> {
    let project = cli.project.clone().or_else(|| env("PREDEPLOY_PROJECT"));
    let Some(raw) = read_raw_config(cli, env, workdir)? else {
        if let Some(p) = project {
            return Err(GateError::usage(format!(
                "--project {p} needs a config file with [project.{p}] or projects_dir"
            )));
        }
        return Ok((ConfigFile::default(), None));
    };
    let file = match project {
        Some(name) => raw.project_config(&name),
        None => parse_config(&toml::to_string(&raw.table).unwrap_or_default())
            .map_err(|e| GateError::usage(format!("{}: {e}", raw.path.display()))),
    }?;
    Ok((file, Some(raw.path)))
}

/// The config file as a table (`None`: no file, and none was asked for).
pub(crate) fn read_raw_config(
    cli: &CliOverrides,
    env: EnvLookup<'_>,
    workdir: &Path,
) -> Result<Option<crate::projects::RawConfig>> {
    let (path, explicit) = match cli
        .config
        .clone()
        .or_else(|| env("PREDEPLOY_CONFIG").map(PathBuf::from))
    {
        Some(p) => (workdir.join(p), true),
        None => (workdir.join(DEFAULT_CONFIG_FILE), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(None);
        }
        Err(e) => {
            return Err(GateError::usage(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )));
        }
    };
    // Parsed whole first, so its errors name the file's own lines.
    parse_config(&text).map_err(|e| GateError::usage(format!("{}: {e}", path.display())))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| GateError::usage(format!("{}: {e}", path.display())))?;
    Ok(Some(crate::projects::RawConfig { table, path }))
}

/// Parses config file text.
///
/// # Errors
///
/// The TOML error, which names the line and the offending key.
pub fn parse_config(text: &str) -> std::result::Result<ConfigFile, toml::de::Error> {
    let file: ConfigFile = toml::from_str(text)?;
    for (key, value) in &file.backend_sections {
        if let Some(problem) = crate::backends::section_problem(key, value) {
            return Err(<toml::de::Error as serde::de::Error>::custom(problem));
        }
    }
    Ok(file)
}

fn parse_source_flag(s: &str) -> Result<SourceSpec> {
    let (name, url) = s.split_once('=').ok_or_else(|| {
        GateError::usage(format!(
            "--source needs NAME=URL, e.g. --source {} (got {:?})",
            crate::backends::EXAMPLE_SOURCE,
            backup_core::redact_url(s)
        ))
    })?;
    source_spec(name, url)
}

fn source_spec(name: &str, url: &str) -> Result<SourceSpec> {
    let name: SourceName = name
        .parse()
        .map_err(|e: backup_core::Error| GateError::usage(e.to_string()))?;
    Ok(SourceSpec {
        name,
        url: url.to_owned(),
    })
}

/// Expands `${NAME}` from the environment, so config files need not hold secrets.
fn expand_vars(s: &str, env: EnvLookup<'_>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| GateError::usage("an unclosed ${ in the config file"))?;
        let name = &after[..end];
        let value = env(name).ok_or_else(|| {
            GateError::usage(format!(
                "the config file uses ${{{name}}} but {name} is not set"
            ))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resolve(cli: CliOverrides, vars: &[(&str, &str)], config: Option<&str>) -> Result<Settings> {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(c) = config {
            std::fs::write(dir.path().join(DEFAULT_CONFIG_FILE), c).expect("write");
        }
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Settings::resolve(&cli, &env, dir.path())
    }

    #[test]
    fn s3_section_expands_variables_and_the_environment_overrides_it() {
        let config = "[s3]\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\n\
                      allow_http = true\nsecret_access_key = \"${MINIO_SECRET}\"\n\
                      access_key_id = \"GKfile\"\n[lock]\nttl = \"90s\"\nwait = \"5m\"\n";
        let s = resolve(
            CliOverrides::default(),
            &[("MINIO_SECRET", "s3cr3t"), ("AWS_ACCESS_KEY_ID", "GKenv")],
            Some(config),
        )
        .expect("resolves");
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s.s3.secret_access_key.as_deref(), Some("s3cr3t"));
        assert_eq!(
            s.s3.access_key_id.as_deref(),
            Some("GKenv"),
            "environment over file"
        );
        assert_eq!(s.lock_ttl, std::time::Duration::from_secs(90));
        assert_eq!(s.wait_lock, std::time::Duration::from_secs(300));
        let flag = CliOverrides {
            wait_lock: Some("10s".into()),
            ..CliOverrides::default()
        };
        let s = resolve(flag, &[("MINIO_SECRET", "x")], Some(config)).expect("resolves");
        assert_eq!(
            s.wait_lock,
            std::time::Duration::from_secs(10),
            "flag over file"
        );
        for bad in [
            "[s3]\nendpoint_url = \"x\"\n",
            "[lock]\nttl = \"1s\"\n",
            "[lock]\nwait = \"soon\"\n",
        ] {
            let err = resolve(CliOverrides::default(), &[], Some(bad)).expect_err(bad);
            assert_eq!(err.exit_code(), crate::ExitCode::Usage, "{bad}: {err}");
        }
    }

    #[test]
    fn encryption_is_set_per_environment_and_a_loose_identity_file_is_refused() {
        const A: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        const B: &str = "age1t7rxyev2z3rw82stdlrrepyc39nvn86l5078zqkf5uasdy86jp6svpy7pa";
        let config = format!(
            "[encryption]\nrecipients = [\"{A}\"]\n[env.production.encryption]\nrecipients = [\"{A}\", \"{B}\"]\n"
        );
        let s = resolve(CliOverrides::default(), &[], Some(&config)).expect("resolves");
        assert_eq!(s.pipeline.recipients, [A]);
        assert!(s.encryption.identities.is_none());
        let prod = CliOverrides {
            env: Some("production".into()),
            ..CliOverrides::default()
        };
        let s = resolve(prod, &[], Some(&config)).expect("resolves");
        assert_eq!(
            s.pipeline.recipients,
            [A, B],
            "the environment's keys replace"
        );
        let s = resolve(CliOverrides::default(), &[], None).expect("resolves");
        assert!(!s.pipeline.encrypts(), "off by default");
        assert!(!s.pipeline.hide_table_names, "off by default");

        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("key.txt");
        std::fs::write(
            &key,
            "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0\n",
        )
        .expect("key");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        }
        let key_text = key.display().to_string();
        let vars = [(
            backup_core::encryption::IDENTITY_FILE_VAR,
            key_text.as_str(),
        )];
        let err = resolve(CliOverrides::default(), &vars, Some(&config)).expect_err("refused");
        assert_eq!(err.exit_code(), crate::ExitCode::Usage, "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        for bad in [
            "[encryption]\nrecipients = [\"age1nope\"]\n",
            "[encryption]\nhide_table_names = true\n",
            "[encryption]\nrecipient = []\n",
        ] {
            let err = resolve(CliOverrides::default(), &[], Some(bad)).expect_err(bad);
            assert_eq!(err.exit_code(), crate::ExitCode::Usage, "{bad}: {err}");
        }
    }

    #[test]
    fn hide_table_names_is_set_per_environment_and_needs_recipients() {
        const A: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let config = format!(
            "[encryption]\nrecipients = [\"{A}\"]\n[env.production.encryption]\nhide_table_names = true\n[env.staging.encryption]\nrecipients = []\nhide_table_names = true\n"
        );
        let s = resolve(CliOverrides::default(), &[], Some(&config)).expect("resolves");
        assert!(!s.pipeline.hide_table_names && !s.encryption.hide_table_names);
        let env = |name: &str| CliOverrides {
            env: Some(name.into()),
            ..CliOverrides::default()
        };
        let s = resolve(env("production"), &[], Some(&config)).expect("resolves");
        assert!(
            s.pipeline.hide_table_names,
            "the environment's key replaces"
        );
        assert_eq!(s.pipeline.recipients, [A], "the top-level recipients stay");
        let err = resolve(env("staging"), &[], Some(&config)).expect_err("no recipients");
        assert_eq!(err.exit_code(), crate::ExitCode::Usage, "{err}");
        assert!(
            err.to_string().contains("needs [encryption] recipients"),
            "{err}"
        );
    }

    #[test]
    fn one_test_restore_server_per_kind_of_database() {
        let config = "[verify]\nrestore_url = [\"local\", \"mysql://scratch:pw@10.0.0.9/x\"]\n";
        let s = resolve(CliOverrides::default(), &[], Some(config)).expect("resolves");
        assert_eq!(
            s.verify_restore_urls,
            ["local", "mysql://scratch:pw@10.0.0.9/x"]
        );
        let one = resolve(
            CliOverrides::default(),
            &[],
            Some("[verify]\nrestore_url = \"postgres://s@h/d\"\n"),
        )
        .expect("one URL");
        assert_eq!(one.verify_restore_urls, ["postgres://s@h/d"]);
        let flags = CliOverrides {
            verify_restore_url: vec!["mariadb://a@h/d".into(), "postgres://b@h/d".into()],
            ..CliOverrides::default()
        };
        let s = resolve(flags, &[], Some(config)).expect("flags");
        assert_eq!(
            s.verify_restore_urls,
            ["mariadb://a@h/d", "postgres://b@h/d"]
        );
        for (urls, said) in [
            (
                vec!["local", "postgres://u:hunter2@h/d"],
                "two servers for PostgreSQL",
            ),
            (
                vec!["mysql://u:hunter2@h/d", "mariadb://h/d"],
                "two servers for MySQL/MariaDB",
            ),
            (
                vec!["s3://u:hunter2@bucket"],
                "a s3:// URL is not a server for test restores",
            ),
        ] {
            let flags = CliOverrides {
                verify_restore_url: urls.iter().map(|u| (*u).to_owned()).collect(),
                ..CliOverrides::default()
            };
            let err = resolve(flags, &[], None).expect_err(said).to_string();
            assert!(err.contains(said), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn the_old_default_store_is_still_used_while_it_holds_backups_and_the_new_one_is_absent() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(default_store(dir.path()), DEFAULT_STORE);
        std::fs::create_dir_all(dir.path().join("backups/backups/20260101T000000Z-abcdef"))
            .expect("old store");
        assert_eq!(default_store(dir.path()), LEGACY_DEFAULT_STORE);
        std::fs::create_dir(dir.path().join(".pre-deploy")).expect("new store");
        assert_eq!(default_store(dir.path()), DEFAULT_STORE);
    }

    #[test]
    fn defaults_use_database_url_as_db() {
        let s = resolve(
            CliOverrides::default(),
            &[("DATABASE_URL", "postgres://a@h/d")],
            None,
        )
        .expect("ok");
        assert_eq!(s.sources.len(), 1);
        assert_eq!(s.sources[0].name.as_str(), "db");
        assert_eq!(s.environment, "default");
        assert_eq!(
            s.verify_level,
            VerificationLevel::Restore,
            "restore is attempted by default"
        );
        assert_eq!(
            s.verify_required,
            VerificationLevel::Archive,
            "but only archive is required"
        );
        assert!(matches!(s.store, StoreUrl::Local(ref p) if p.ends_with(".pre-deploy")));
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file = "store = \"/from/file\"\n[sources]\nmain = \"postgres://f@h/d\"\n";
        let s = resolve(
            CliOverrides::default(),
            &[("PREDEPLOY_STORE", "/from/env")],
            Some(file),
        )
        .expect("ok");
        assert_eq!(s.store, StoreUrl::Local("/from/env".into()));
        assert_eq!(s.sources[0].name.as_str(), "main");
        let cli = CliOverrides {
            store: Some("/from/flag".into()),
            sources: vec!["db=postgres://x@h/d".into()],
            ..Default::default()
        };
        let s = resolve(cli, &[("PREDEPLOY_STORE", "/from/env")], Some(file)).expect("ok");
        assert_eq!(s.store, StoreUrl::Local("/from/flag".into()));
        assert_eq!(s.sources[0].name.as_str(), "db");
    }

    #[test]
    fn environment_sections_and_variable_expansion() {
        let file = "[sources]\ndb = \"postgres://a@dev/d\"\n[env.production]\nstore = \"/prod\"\n[env.production.sources]\ndb = \"postgres://a:${PW}@prod/d\"\n";
        let cli = CliOverrides {
            env: Some("production".into()),
            ..Default::default()
        };
        let s = resolve(cli.clone(), &[("PW", "s3cret")], Some(file)).expect("ok");
        assert_eq!(s.store, StoreUrl::Local("/prod".into()));
        assert_eq!(s.sources[0].url, "postgres://a:s3cret@prod/d");
        let err = resolve(cli, &[], Some(file))
            .expect_err("PW unset")
            .to_string();
        assert!(err.contains("${PW}") && err.contains("not set"), "{err}");
    }

    #[test]
    fn malformed_config_is_a_usage_error_naming_the_key() {
        let err = resolve(CliOverrides::default(), &[], Some("stor = \"/x\"\n")).expect_err("typo");
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
        assert!(err.to_string().contains("stor"), "{err}");
        let err = resolve(
            CliOverrides {
                verify_level: Some("full".into()),
                ..Default::default()
            },
            &[],
            None,
        )
        .expect_err("unknown level");
        assert!(
            err.to_string()
                .contains("checksum, decompress, archive or restore"),
            "{err}"
        );
        let s = resolve(
            CliOverrides {
                verify_level: Some("restore".into()),
                ..Default::default()
            },
            &[],
            None,
        )
        .expect("explicit restore");
        assert_eq!(
            (s.verify_level, s.verify_required),
            (VerificationLevel::Restore, VerificationLevel::Restore)
        );
    }

    #[test]
    fn bucket_and_directory_sources_and_concurrency() {
        let file = "[sources]\nuploads = \"s3://app-uploads/u\"\nfiles = \"/var/lib/app/files\"\n\
                    [buckets]\nconcurrency = 3\nverify_reused = true\n";
        let s = resolve(CliOverrides::default(), &[], Some(file)).expect("ok");
        assert_eq!(s.bucket_concurrency, 3);
        assert!(s.bucket_verify_reused);
        let urls: Vec<&str> = s.sources.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(urls, ["/var/lib/app/files", "s3://app-uploads/u"]);
        let s = resolve(
            CliOverrides {
                sources: vec!["docs=file:///srv/docs".into()],
                ..Default::default()
            },
            &[],
            None,
        )
        .expect("ok");
        assert_eq!(s.bucket_concurrency, 8);
        assert!(!s.bucket_verify_reused, "new blobs only, by default");
        assert_eq!(s.sources[0].url, "file:///srv/docs");
        let err = resolve(
            CliOverrides::default(),
            &[],
            Some("[buckets]\nconcurrency = 0\n"),
        )
        .expect_err("zero");
        assert!(err.to_string().contains("concurrency"), "{err}");
    }

    #[test]
    fn production_is_by_name_or_by_key() {
        let env = |name: &str| CliOverrides {
            env: Some(name.into()),
            ..Default::default()
        };
        assert!(
            resolve(env("production"), &[], None)
                .expect("ok")
                .production
        );
        assert!(!resolve(env("staging"), &[], None).expect("ok").production);
        let file = "[env.live]\nproduction = true\n[env.production]\nproduction = false\n";
        assert!(
            resolve(env("live"), &[], Some(file))
                .expect("ok")
                .production
        );
        assert!(
            !resolve(env("production"), &[], Some(file))
                .expect("ok")
                .production
        );
    }

    #[test]
    fn every_setting_says_where_it_came_from() {
        let file = "environment = \"staging\"\n[sources]\ndb = \"postgres://f@h/d\"\n\
                    [verify]\njobs = 2\n[s3]\nregion = \"eu\"\nsecret_access_key = \"x\"\n";
        let cli = CliOverrides {
            store: Some("/from/flag".into()),
            ..Default::default()
        };
        let s = resolve(
            cli,
            &[
                ("PREDEPLOY_WAIT_LOCK", "5s"),
                ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ],
            Some(file),
        )
        .expect("resolves");
        let origin = |k: &str| s.origins.get(k).cloned().expect(k);
        assert_eq!(origin("store"), Origin::Flag { flag: "--store" });
        assert_eq!(
            origin("lock.wait"),
            Origin::Env {
                variable: "PREDEPLOY_WAIT_LOCK".into()
            }
        );
        assert_eq!(
            origin("s3.secret_access_key"),
            Origin::Env {
                variable: "AWS_SECRET_ACCESS_KEY".into()
            },
            "the variable beats the file"
        );
        for key in ["environment", "sources", "verify.jobs", "s3.region"] {
            assert!(
                matches!(origin(key), Origin::File { ref path } if path.ends_with(DEFAULT_CONFIG_FILE)),
                "{key}: {:?}",
                origin(key)
            );
        }
        for key in [
            "verify.level",
            "lock.ttl",
            "retention",
            "project",
            "s3.endpoint",
        ] {
            assert_eq!(origin(key), Origin::Default, "{key}");
        }
        let s = resolve(
            CliOverrides::default(),
            &[
                ("DATABASE_URL", "postgres://a@h/d"),
                ("PREDEPLOY_ENV", "qa"),
            ],
            None,
        )
        .expect("resolves");
        assert_eq!(
            s.origins["sources"].to_string(),
            "env DATABASE_URL",
            "no file: the variable"
        );
        assert_eq!(s.origins["environment"].to_string(), "env PREDEPLOY_ENV");
        assert_eq!(s.origins["store"].to_string(), "default");
    }

    #[test]
    fn durations() {
        let secs = |s: &str| parse_duration("--max-age", s).expect("valid").as_secs();
        assert_eq!(secs("30m"), 1800);
        assert_eq!(secs("7d"), 604_800);
        assert_eq!(secs("2w"), 1_209_600);
        for bad in ["", "m", "soon", "-3h", "0s"] {
            let err = parse_duration("--max-age", bad).expect_err(bad).to_string();
            assert!(err.contains("--max-age"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn config_parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse_config(&text);
        }

        #[test]
        fn source_flags_never_panic(s in "\\PC{0,80}") {
            let _ = parse_source_flag(&s);
        }

        /// What a config file says is what the settings hold: sources (names and URLs),
        /// environment, verification level, jobs and restore server.
        #[test]
        fn a_config_file_round_trips_into_the_settings(
            sources in proptest::collection::btree_map("[a-z][a-z0-9_]{0,10}", ("[a-z]{1,8}", "[a-z]{1,8}", 1u16..65535), 1..4),
            environment in "[a-z][a-z0-9-]{0,10}",
            level in prop::sample::select(vec!["checksum", "decompress", "archive", "restore"]),
            jobs in 1u32..16,
            local in any::<bool>(),
        ) {
            let mut text = format!(
                "environment = \"{environment}\"\n[verify]\nlevel = \"{level}\"\njobs = {jobs}\n"
            );
            if local {
                text.push_str("restore_url = \"local\"\n");
            }
            text.push_str("[sources]\n");
            for (name, (user, db, port)) in &sources {
                text.push_str(&format!("{name} = \"postgres://{user}@127.0.0.1:{port}/{db}\"\n"));
            }
            let settings = resolve(CliOverrides::default(), &[], Some(&text)).expect("resolves");
            prop_assert_eq!(&settings.environment, &environment);
            prop_assert_eq!(Some(settings.verify_level), level.parse().ok());
            prop_assert_eq!(settings.verify_jobs, jobs);
            prop_assert_eq!(settings.verify_restore_urls == ["local"], local);
            let got: Vec<(String, String)> = settings
                .sources
                .iter()
                .map(|s| (s.name.to_string(), s.url.clone()))
                .collect();
            let want: Vec<(String, String)> = sources
                .iter()
                .map(|(n, (u, d, p))| (n.clone(), format!("postgres://{u}@127.0.0.1:{p}/{d}")))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
