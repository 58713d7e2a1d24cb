//! Several projects in one config: `[project.NAME]` tables, or one file per project in
//! `projects_dir`, each written like a whole config file. [`targets`] lists every
//! project/environment pair, what `backup --all`, `verify --all` and `status` walk.
//!
//! A project inherits the top level's settings section by section (`[s3]`, `[verify]`,
//! `[lock]`, the backends' sections, … merged key by key, its own keys winning) and its `[retention]`
//! unless it has its own; it never inherits `[sources]` or `[env.*]` (each project names its own
//! databases). Without a `store` of its own, it lives under the top level's store, in a
//! directory (or prefix) named after it: `<store>/<project>`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::{
    CliOverrides, ConfigFile, DEFAULT_ENVIRONMENT, DEFAULT_STORE, EnvLookup, parse_config,
};
use crate::error::{GateError, Result};

/// Keys of the top level that a project never inherits.
const NOT_INHERITED: &[&str] = &["project", "projects_dir", "sources", "env", "environment"];

/// Tables a project replaces as a whole instead of merging key by key.
const REPLACED_WHOLE: &[&str] = &["retention"];

/// One project/environment pair of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The project (`None`: the top level of the config).
    pub project: Option<String>,
    /// The environment.
    pub environment: String,
}

impl Target {
    /// `project/environment`, or the environment alone for the top level.
    pub fn label(&self) -> String {
        match &self.project {
            Some(p) => format!("{p}/{}", self.environment),
            None => self.environment.clone(),
        }
    }
}

/// The config file as a TOML table and the directory its relative paths start from.
pub(crate) struct RawConfig {
    pub table: toml::Table,
    pub path: PathBuf,
}

impl RawConfig {
    fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The projects it names, in order: `[project.*]` first, then `projects_dir`'s files.
    fn project_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .table
            .get("project")
            .and_then(toml::Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        for (name, _) in self.project_files()? {
            if names.contains(&name) {
                return Err(self.usage(format!(
                    "project {name} is defined twice: as [project.{name}] and as a file in projects_dir"
                )));
            }
            names.push(name);
        }
        Ok(names)
    }

    /// `projects_dir`'s `*.toml` files, by project name.
    fn project_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let Some(dir) = self.table.get("projects_dir") else {
            return Ok(Vec::new());
        };
        let dir = dir
            .as_str()
            .ok_or_else(|| self.usage("projects_dir must be a string (a directory)".into()))?;
        let dir = self.base_dir().join(dir);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| self.usage(format!("cannot read projects_dir {}: {e}", dir.display())))?;
        let mut files: Vec<(String, PathBuf)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter_map(|p| Some((p.file_stem()?.to_str()?.to_owned(), p)))
            .collect();
        files.sort();
        Ok(files)
    }

    /// The project's own table, as written.
    fn project_table(&self, name: &str) -> Result<(toml::Table, PathBuf)> {
        if let Some(t) = self
            .table
            .get("project")
            .and_then(toml::Value::as_table)
            .and_then(|p| p.get(name))
        {
            let t = t
                .as_table()
                .ok_or_else(|| self.usage(format!("[project.{name}] must be a table")))?;
            return Ok((t.clone(), self.path.clone()));
        }
        let known = self.project_names()?;
        let (_, file) = self
            .project_files()?
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| {
                self.usage(format!(
                    "no project {name:?} (configured: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
            })?;
        let text = std::fs::read_to_string(&file)
            .map_err(|e| GateError::usage(format!("cannot read {}: {e}", file.display())))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| GateError::usage(format!("{}: {e}", file.display())))?;
        Ok((table, file))
    }

    /// The config of project `name`: its own table over what it inherits from the top level.
    pub fn project_config(&self, name: &str) -> Result<ConfigFile> {
        let (own, file) = self.project_table(name)?;
        for key in ["project", "projects_dir"] {
            if own.contains_key(key) {
                return Err(GateError::usage(format!(
                    "{}: project {name} has `{key}`: projects do not nest",
                    file.display()
                )));
            }
        }
        let mut merged: toml::Table = self
            .table
            .iter()
            .filter(|(k, _)| !NOT_INHERITED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !own.contains_key("store") {
            let base = self
                .table
                .get("store")
                .and_then(toml::Value::as_str)
                .unwrap_or(DEFAULT_STORE);
            merged.insert("store".into(), toml::Value::String(store_under(base, name)));
        }
        for (key, value) in own {
            match (merged.get_mut(&key), value) {
                (Some(toml::Value::Table(mine)), toml::Value::Table(theirs))
                    if !REPLACED_WHOLE.contains(&key.as_str()) =>
                {
                    mine.extend(theirs);
                }
                (_, value) => {
                    merged.insert(key, value);
                }
            }
        }
        let text = toml::to_string(&merged)
            .map_err(|e| GateError::usage(format!("{}: project {name}: {e}", file.display())))?;
        parse_config(&text)
            .map_err(|e| GateError::usage(format!("{}: project {name}: {e}", file.display())))
    }

    fn usage(&self, message: String) -> GateError {
        GateError::usage(format!("{}: {message}", self.path.display()))
    }
}

/// `<base>/<project>` for a path or a store URL (before its `?query`).
fn store_under(base: &str, project: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let joined = format!("{}/{project}", path.trim_end_matches('/'));
    match query {
        Some(q) => format!("{joined}?{q}"),
        None => joined,
    }
}

/// The environments of one config: every `[env.NAME]`, and its default environment when it
/// has top-level `[sources]` (or no environment section at all).
fn environments(file: &ConfigFile) -> Vec<String> {
    let mut envs: BTreeSet<String> = file.env.keys().cloned().collect();
    if !file.sources.is_empty() || envs.is_empty() {
        envs.insert(
            file.environment
                .clone()
                .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned()),
        );
    }
    envs.into_iter().collect()
}

/// Every project/environment pair `--all` covers. `--project`/`PREDEPLOY_PROJECT` and
/// `--env`/`PREDEPLOY_ENV` narrow it; `--source` flags or an explicit environment make it the
/// one pair the command line names.
///
/// # Errors
///
/// [`GateError::Usage`] for an unreadable or invalid config file, an unknown project, or a
/// filter that matches nothing.
pub fn targets(cli: &CliOverrides, env: EnvLookup<'_>, workdir: &Path) -> Result<Vec<Target>> {
    let project = cli.project.clone().or_else(|| env("PREDEPLOY_PROJECT"));
    let environment = cli.env.clone().or_else(|| env("PREDEPLOY_ENV"));
    let raw = crate::config::read_raw_config(cli, env, workdir)?;
    if !cli.sources.is_empty()
        && let Some(e) = environment.clone()
    {
        return Ok(vec![Target {
            project,
            environment: e,
        }]);
    }
    let Some(raw) = raw else {
        // No config file: the command line (and DATABASE_URL) name one environment.
        if project.is_some() {
            return Err(GateError::usage(
                "--project needs a config file with [project.NAME] tables or projects_dir",
            ));
        }
        return Ok(vec![Target {
            project: None,
            environment: environment.unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned()),
        }]);
    };
    let top = parse_config(&toml::to_string(&raw.table).unwrap_or_default())
        .map_err(|e| GateError::usage(format!("{}: {e}", raw.path.display())))?;
    let names = raw.project_names()?;
    let mut all = Vec::new();
    let top_has_own = !top.sources.is_empty() || !top.env.is_empty();
    if names.is_empty() || top_has_own || !cli.sources.is_empty() {
        all.extend(environments(&top).into_iter().map(|e| Target {
            project: None,
            environment: e,
        }));
    }
    for name in names {
        let file = raw.project_config(&name)?;
        all.extend(environments(&file).into_iter().map(|e| Target {
            project: Some(name.clone()),
            environment: e,
        }));
    }
    let chosen: Vec<Target> = all
        .iter()
        .filter(|t| project.is_none() || t.project == project)
        .filter(|t| environment.is_none() || Some(&t.environment) == environment.as_ref())
        .cloned()
        .collect();
    if chosen.is_empty() {
        // An environment named on the command line that has no section of its own.
        if let Some(e) = environment
            && all.iter().any(|t| t.project == project)
        {
            return Ok(vec![Target {
                project,
                environment: e,
            }]);
        }
        return Err(GateError::usage(format!(
            "no configured project/environment matches{}{} (configured: {})",
            project.map(|p| format!(" project {p}")).unwrap_or_default(),
            cli.env
                .as_deref()
                .map(|e| format!(" environment {e}"))
                .unwrap_or_default(),
            all.iter().map(Target::label).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets_of(config: &str, cli: CliOverrides) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("predeploy.toml"), config).expect("write");
        std::fs::create_dir(dir.path().join("projects.d")).expect("mkdir");
        std::fs::write(
            dir.path().join("projects.d/blog.toml"),
            "[sources]\ndb = \"postgres://b@h/blog\"\n[env.staging.sources]\ndb = \"postgres://b@h/blog_staging\"\n",
        )
        .expect("write");
        let none = |_: &str| None;
        Ok(targets(&cli, &none, dir.path())?
            .iter()
            .map(Target::label)
            .collect())
    }

    const PLATFORM: &str = r#"
store = "s3://backups/platform?region=eu"
projects_dir = "projects.d"

[verify]
jobs = 2

[retention]
min-verified = 2
[retention.scheduled]
keep-daily = 7

[project.shop]
[project.shop.env.production.sources]
db = "postgres://s@h/shop"
[project.shop.env.staging.sources]
db = "postgres://s@h/shop_staging"
[project.shop.verify]
temp_dir = "/var/tmp"
"#;

    #[test]
    fn every_project_and_environment_is_a_target() {
        let all = targets_of(PLATFORM, CliOverrides::default()).expect("targets");
        assert_eq!(
            all,
            [
                "shop/production",
                "shop/staging",
                "blog/default",
                "blog/staging"
            ]
        );
    }

    #[test]
    fn project_and_env_narrow_the_targets() {
        let cli = CliOverrides {
            project: Some("shop".into()),
            env: Some("staging".into()),
            ..CliOverrides::default()
        };
        assert_eq!(
            targets_of(PLATFORM, cli).expect("targets"),
            ["shop/staging"]
        );
        let cli = CliOverrides {
            project: Some("nope".into()),
            ..CliOverrides::default()
        };
        let e = targets_of(PLATFORM, cli).expect_err("unknown");
        assert!(e.to_string().contains("shop/production"), "{e}");
    }

    #[test]
    fn a_project_inherits_settings_and_lives_under_the_top_level_store() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("predeploy.toml");
        std::fs::create_dir(dir.path().join("projects.d")).expect("mkdir");
        let raw = RawConfig {
            table: toml::from_str(PLATFORM).expect("toml"),
            path,
        };
        let shop = raw.project_config("shop").expect("shop");
        assert_eq!(
            shop.store.as_deref(),
            Some("s3://backups/platform/shop?region=eu")
        );
        assert_eq!(shop.verify.jobs, Some(2), "inherited key by key");
        assert_eq!(shop.verify.temp_dir, Some(PathBuf::from("/var/tmp")));
        assert!(shop.retention.is_some(), "retention inherited");
        assert!(shop.sources.is_empty(), "sources are never inherited");
        assert_eq!(shop.env.len(), 2);
    }

    #[test]
    fn projects_do_not_nest_and_typos_are_refused() {
        let nested = "[project.a]\nprojects_dir = \"x\"\n";
        let e = targets_of(nested, CliOverrides::default()).expect_err("nested");
        assert!(e.to_string().contains("do not nest"), "{e}");
        let typo = "[project.a]\nsorces = { db = \"postgres://h/d\" }\n";
        let e = targets_of(typo, CliOverrides::default()).expect_err("typo");
        assert!(e.to_string().contains("project a"), "{e}");
    }

    #[test]
    fn the_example_of_docs_operations_md_parses_to_its_projects() {
        let doc = include_str!("../../docs/operations.md");
        let toml_block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("projects.d")).expect("mkdir");
        std::fs::write(
            dir.path().join("projects.d/blog.toml"),
            "[sources]\ndb = \"postgres://b@h/blog\"\n",
        )
        .expect("blog");
        let path = dir.path().join("predeploy.toml");
        std::fs::write(&path, toml_block).expect("write");
        let cli = CliOverrides {
            config: Some(path.clone()),
            ..CliOverrides::default()
        };
        let none = |_: &str| None;
        let all: Vec<String> = targets(&cli, &none, dir.path())
            .expect("targets")
            .iter()
            .map(Target::label)
            .collect();
        assert_eq!(
            all,
            [
                "shop/production",
                "shop/staging",
                "wiki/default",
                "blog/default"
            ]
        );
        let raw = crate::config::read_raw_config(&cli, &none, dir.path())
            .expect("read")
            .expect("a file");
        let shop = raw.project_config("shop").expect("shop");
        assert_eq!(
            shop.store.as_deref(),
            Some("s3://backups/platform/shop?region=eu-west-1")
        );
        assert_eq!(
            raw.project_config("wiki").expect("wiki").store.as_deref(),
            Some("/var/backups/wiki")
        );
    }
}
