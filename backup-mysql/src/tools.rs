//! Finding the dump tool that fits the server: `mariadb-dump` for MariaDB, `mysqldump` for
//! MySQL, from a configured directory or `PATH`, with its version.

use std::path::{Path, PathBuf};

use backup_core::{Error, Result};

/// Which server family a source runs, read from `VERSION()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// MariaDB (`VERSION()` contains `MariaDB`).
    MariaDb,
    /// Oracle MySQL (or a compatible server such as Percona).
    MySql,
}

impl Flavour {
    /// The flavour of a server from its `VERSION()` text.
    pub fn of_version(version: &str) -> Flavour {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        }
    }

    /// The name for messages and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::MariaDb => "MariaDB",
            Flavour::MySql => "MySQL",
        }
    }

    /// The dump tool's executable name.
    pub fn dump_tool(self) -> &'static str {
        match self {
            Flavour::MariaDb => "mariadb-dump",
            Flavour::MySql => "mysqldump",
        }
    }

    /// The command-line client that replays a dump.
    pub fn client_tool(self) -> &'static str {
        match self {
            Flavour::MariaDb => "mariadb",
            Flavour::MySql => "mysql",
        }
    }

    /// The Debian package that installs the dump tool.
    pub fn package(self) -> &'static str {
        match self {
            Flavour::MariaDb => "mariadb-client",
            Flavour::MySql => "mysql-client",
        }
    }
}

/// The dump tool chosen for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlTools {
    /// The dump executable.
    pub dump: PathBuf,
    /// Its `--version` line, e.g. `mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, …`.
    pub version: String,
}

/// The dump tool for `flavour`: in `bin_dir` when given, else the first on `PATH`.
///
/// # Errors
///
/// [`Error::SourceUnavailable`] naming the tool and its Debian package when it is missing or
/// does not run.
pub async fn find_tools(
    flavour: Flavour,
    bin_dir: Option<&Path>,
    source_name: &str,
) -> Result<MysqlTools> {
    let tool = flavour.dump_tool();
    let unavailable = |message: String| Error::SourceUnavailable {
        source_name: source_name.to_owned(),
        message,
    };
    let dump = match bin_dir {
        Some(dir) => Some(dir.join(tool)).filter(|p| p.is_file()),
        None => on_path(tool),
    };
    let where_ = bin_dir.map_or_else(|| "on PATH".to_owned(), |d| format!("in {}", d.display()));
    let Some(dump) = dump else {
        return Err(unavailable(format!(
            "{tool} (for this {} server) is not installed {where_}: install the Debian package {} (apt-get install {})",
            flavour.name(),
            flavour.package(),
            flavour.package()
        )));
    };
    let out = tokio::process::Command::new(&dump)
        .arg("--version")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| unavailable(format!("cannot run {}: {e}", dump.display())))?;
    if !out.status.success() {
        return Err(unavailable(format!(
            "{} --version failed ({}): reinstall {}",
            dump.display(),
            out.status,
            flavour.package()
        )));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(MysqlTools { dump, version })
}

/// The command-line client for `flavour` (`mariadb`, `mysql`): in `bin_dir` when given, else
/// the first on `PATH`.
///
/// # Errors
///
/// [`Error::SourceUnavailable`] naming the tool and its Debian package when it is missing.
pub fn find_client(flavour: Flavour, bin_dir: Option<&Path>, source_name: &str) -> Result<PathBuf> {
    let tool = flavour.client_tool();
    let found = match bin_dir {
        Some(dir) => Some(dir.join(tool)).filter(|p| p.is_file()),
        None => on_path(tool),
    };
    found.ok_or_else(|| Error::SourceUnavailable {
        source_name: source_name.to_owned(),
        message: format!(
            "the {tool} client (to replay the dump into this {} server) is not installed {}: install the Debian package {}",
            flavour.name(),
            bin_dir.map_or_else(|| "on PATH".to_owned(), |d| format!("in {}", d.display())),
            flavour.package()
        ),
    })
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flavour_comes_from_the_version() {
        assert_eq!(
            Flavour::of_version("10.11.19-MariaDB-0+deb12u1-log"),
            Flavour::MariaDb
        );
        assert_eq!(Flavour::of_version("8.0.36"), Flavour::MySql);
    }

    #[tokio::test]
    async fn a_missing_tool_names_its_package() {
        let dir = tempfile::tempdir().expect("dir");
        let e = find_tools(Flavour::MariaDb, Some(dir.path()), "db")
            .await
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("mariadb-dump") && e.contains("mariadb-client"),
            "{e}"
        );
    }
}
