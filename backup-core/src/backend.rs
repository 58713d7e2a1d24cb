//! The backend seam: a [`Backend`] is one kind of source (a PostgreSQL database, a bucket, a
//! directory, …) and knows how to recognise its URLs and build its parts; a [`Registry`] maps
//! a source URL to its backend, so the gate composes sources it knows nothing about.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::{Backend, BackendVerifiers, DynSnapshotter, Registry, Result, SourceName,
//!     SourceSpec};
//!
//! #[derive(Debug)]
//! struct Notes;
//!
//! impl Backend for Notes {
//!     fn name(&self) -> &'static str { "notes" }
//!     fn schemes(&self) -> &'static [&'static str] { &["notes://"] }
//!     fn kinds(&self) -> &'static [&'static str] { &["notes"] }
//!     fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter> {
//!         unimplemented!("build the snapshotter of {}", spec.name)
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register(Arc::new(Notes));
//! assert_eq!(registry.for_url("notes://today").map(|b| b.name()), Some("notes"));
//! let unknown = registry.for_url("ftp://x").is_none();
//! assert!(unknown);
//! assert!(registry.unknown_url_message("ftp://x").contains("notes://"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::id::SourceName;
use crate::manifest::SourceManifest;
use crate::restore::Restorer;
use crate::runbook::{RunbookContext, RunbookStep};
use crate::snapshot::DynSnapshotter;
use crate::verify::DynVerifier;

/// One source to back up: its name in the backup and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// Its name in the backup.
    pub name: SourceName,
    /// Its URL (may hold a password: never print it whole): `postgres://…`,
    /// `s3://bucket/prefix`, `file:///dir` or an absolute directory path.
    pub url: String,
}

/// The verifiers a backend adds to a gate.
#[derive(Debug, Clone, Default)]
pub struct BackendVerifiers {
    /// Run right after a backup.
    pub after_backup: Vec<DynVerifier>,
    /// Run by `verify` on stored backups (may read more than `after_backup`); empty: the same
    /// as `after_backup`.
    pub reverify: Vec<DynVerifier>,
}

/// What a command line configures a backend from (see [`Backend::configured`]).
#[derive(Debug, Clone, Copy)]
pub struct BackendSettings<'a> {
    /// The backend's own section of the config file ([`Backend::section`]), as JSON.
    pub section: Option<&'a serde_json::Value>,
    /// The values of the environment variables it reads ([`Backend::env_vars`]) that are set.
    pub env: &'a BTreeMap<String, String>,
    /// Where its test restores go, when given: a value it takes
    /// ([`Backend::takes_restore_url`]).
    pub verify_restore_url: Option<&'a str>,
    /// Parallel jobs of a test restore.
    pub verify_jobs: u32,
    /// Where test restores stage their dumps (default: the system temp dir).
    pub verify_temp_dir: Option<&'a Path>,
}

impl BackendSettings<'_> {
    /// A backend's tool directory: its environment variable `env` when set, else `bin_dir` of
    /// its section.
    pub fn tool_dir(&self, env: &str) -> Option<PathBuf> {
        self.env.get(env).map(PathBuf::from).or_else(|| {
            let dir = self.section?.get("bin_dir")?.as_str()?;
            Some(PathBuf::from(dir))
        })
    }
}

/// A backend's config-file section as its own type (for [`Backend::section_problem`] and
/// [`Backend::configured`]).
///
/// # Errors
///
/// What is wrong with it (an unknown field, a value of the wrong type).
pub fn parse_section<T: serde::de::DeserializeOwned>(
    section: &serde_json::Value,
) -> std::result::Result<T, String> {
    T::deserialize(section).map_err(|e| e.to_string())
}

/// One kind of source: how its URLs look and how to build its snapshotter and verifiers.
///
/// A backend is registered in a [`Registry`]; nothing else in the gate names it. Artifacts of
/// a backend with no verifier still get the generic levels 1–2 (checksum, decompression).
pub trait Backend: Send + Sync + Debug + 'static {
    /// A short name for messages (`postgres`, `bucket`).
    fn name(&self) -> &'static str;

    /// The URL prefixes it takes, for messages (`postgres://`, `s3://`).
    fn schemes(&self) -> &'static [&'static str];

    /// The source kinds its snapshotters record in manifests (`postgres`, `bucket`,
    /// `directory`): a stored source of one of these kinds is restored by this backend.
    fn kinds(&self) -> &'static [&'static str];

    /// Whether `url` names a source of this backend (default: it starts with a scheme).
    fn accepts(&self, url: &str) -> bool {
        self.schemes().iter().any(|s| url.starts_with(s))
    }

    /// The name of its section in the config file (`[name]`), if it reads one.
    fn section(&self) -> Option<&'static str> {
        None
    }

    /// Why `section` (its config-file section, as JSON) is not acceptable, if it is not.
    fn section_problem(&self, section: &serde_json::Value) -> Option<String> {
        let _ = section;
        None
    }

    /// The environment variables it reads (they reach it through [`BackendSettings::env`]).
    fn env_vars(&self) -> &'static [&'static str] {
        &[]
    }

    /// The forms of test-restore server it takes, for messages (`mysql://…`); empty when its
    /// backups have no test restore to direct.
    fn restore_url_forms(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether its test restores may go to `url` (default: a URL of its own schemes, when it
    /// names any [`restore_url_forms`](Self::restore_url_forms)).
    fn takes_restore_url(&self, url: &str) -> bool {
        !self.restore_url_forms().is_empty() && self.accepts(url)
    }

    /// This backend configured from `settings`; `None`: as it is (the default).
    fn configured(&self, settings: &BackendSettings<'_>) -> Option<DynBackend> {
        let _ = settings;
        None
    }

    /// The snapshotter of one source.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Invalid`] for a malformed URL (the message names the source, never the
    /// password).
    fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter>;

    /// The verifiers for backups of `sources` (this backend's configured sources, e.g. for
    /// test restores into their servers). Default: none (levels 1–2 only).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Invalid`] when a setting the verifiers need is malformed.
    fn verifiers(&self, sources: &[SourceSpec]) -> Result<BackendVerifiers> {
        let _ = sources;
        Ok(BackendVerifiers::default())
    }

    /// What puts its stored sources back (default: none; a restore of its kind is refused
    /// with a message saying so).
    fn restorer(&self) -> Option<Arc<dyn Restorer>> {
        None
    }

    /// The rollback steps for one stored source of this backend: `pre-deploy restore` and,
    /// where one exists, the raw equivalent. Default: the restore command when the backend
    /// has a restorer.
    fn runbook_steps(&self, source: &SourceManifest, ctx: &RunbookContext<'_>) -> Vec<RunbookStep> {
        match self.restorer() {
            Some(_) => vec![RunbookStep {
                title: format!("Restore {} {} with pre-deploy", source.kind, source.name),
                commands: vec![ctx.restore_command(source)],
            }],
            None => Vec::new(),
        }
    }
}

/// A backend behind `Arc<dyn …>`.
pub type DynBackend = Arc<dyn Backend>;

/// The backends a gate knows, looked up by source URL or by the kind a manifest records.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    backends: Vec<DynBackend>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a backend; the first registered that accepts a URL wins.
    pub fn register(&mut self, backend: DynBackend) -> &mut Self {
        self.backends.push(backend);
        self
    }

    /// [`Registry::register`], by value.
    pub fn with(mut self, backend: DynBackend) -> Self {
        self.register(backend);
        self
    }

    /// Every backend, in registration order.
    pub fn backends(&self) -> &[DynBackend] {
        &self.backends
    }

    /// The backend of a source URL.
    pub fn for_url(&self, url: &str) -> Option<&DynBackend> {
        self.backends.iter().find(|b| b.accepts(url))
    }

    /// The backend of a source kind recorded in a manifest.
    pub fn for_kind(&self, kind: &str) -> Option<&DynBackend> {
        self.backends.iter().find(|b| b.kinds().contains(&kind))
    }

    /// The snapshotter of `spec`, from the backend that accepts its URL.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Invalid`] when no backend accepts the URL (the message lists the schemes
    /// this registry knows) or the backend refuses it.
    pub fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter> {
        match self.for_url(&spec.url) {
            Some(b) => b.snapshotter(spec),
            None => Err(crate::Error::Invalid {
                what: "source",
                value: spec.name.to_string(),
                reason: self.unknown_url_message(&spec.url),
            }),
        }
    }

    /// Why `url` names no known kind of source, naming only its scheme (the rest may hold a
    /// password) and every scheme this registry knows.
    pub fn unknown_url_message(&self, url: &str) -> String {
        let scheme = url.split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        let known: Vec<&str> = self
            .backends
            .iter()
            .flat_map(|b| b.schemes().iter().copied())
            .collect();
        let what = match scheme {
            Some(s) => format!("{s}:// sources are not supported by this version yet"),
            None => "not a kind of source URL this version knows".to_owned(),
        };
        format!("{what}; use {}", known.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake(
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );

    impl Backend for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn schemes(&self) -> &'static [&'static str] {
            self.1
        }
        fn kinds(&self) -> &'static [&'static str] {
            self.2
        }
        fn snapshotter(&self, spec: &SourceSpec) -> Result<DynSnapshotter> {
            Err(crate::Error::Invalid {
                what: "source",
                value: spec.name.to_string(),
                reason: format!("built by {}", self.0),
            })
        }
    }

    fn registry() -> Registry {
        Registry::new()
            .with(Arc::new(Fake("first", &["db://"], &["db"])))
            .with(Arc::new(Fake("second", &["db://", "files://"], &["files"])))
    }

    #[test]
    fn urls_and_kinds_find_their_backend_and_the_first_registered_wins() {
        let r = registry();
        assert_eq!(r.for_url("db://x").map(|b| b.name()), Some("first"));
        assert_eq!(r.for_url("files://x").map(|b| b.name()), Some("second"));
        assert_eq!(r.for_kind("files").map(|b| b.name()), Some("second"));
        assert!(r.for_kind("postgres").is_none());
        let spec = SourceSpec {
            name: "db".parse().expect("name"),
            url: "db://x".into(),
        };
        let e = r.snapshotter(&spec).expect_err("fake").to_string();
        assert!(e.contains("built by first"), "{e}");
    }

    #[test]
    fn an_unknown_url_is_named_by_its_scheme_only() {
        let r = registry();
        let spec = SourceSpec {
            name: "cache".parse().expect("name"),
            url: "redis://user:hunter2@h/0".into(),
        };
        let e = r.snapshotter(&spec).expect_err("unknown").to_string();
        assert!(e.contains("redis:// sources are not supported"), "{e}");
        assert!(e.contains("db://, db://, files://"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = r.unknown_url_message("db:postgres://a:hunter2@h/d");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
