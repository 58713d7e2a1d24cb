//! Discovery of the PostgreSQL client tools (`pg_dump`, `pg_dumpall`, `pg_restore`).
//!
//! pg_dump refuses servers newer than itself, and an older pg_restore cannot read a newer
//! archive, so the version matters: we pick the newest installed tool set whose major version is
//! at least the one required.

use std::path::{Path, PathBuf};

use backup_core::{Error, Result};

/// One installed set of client tools (one `bin` directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTools {
    /// The directory holding the tools.
    pub bin_dir: PathBuf,
    /// Major version (15, 18, …).
    pub major: u32,
    /// Full version line, e.g. `pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)`.
    pub version: String,
}

impl PgTools {
    /// Path of `pg_dump`.
    pub fn pg_dump(&self) -> PathBuf {
        self.bin_dir.join("pg_dump")
    }
    /// Path of `pg_dumpall`.
    pub fn pg_dumpall(&self) -> PathBuf {
        self.bin_dir.join("pg_dumpall")
    }
    /// Path of `pg_restore`.
    pub fn pg_restore(&self) -> PathBuf {
        self.bin_dir.join("pg_restore")
    }
}

/// Parses the major version from `pg_dump --version` output or a server version string
/// (`15.19`, `18.1 (Debian …)`, `9.6.24`, `pg_dump (PostgreSQL) 16beta1`).
pub fn parse_major(version: &str) -> Option<u32> {
    let start = version.find(|c: char| c.is_ascii_digit())?;
    let digits: String = version[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let major: u32 = digits.parse().ok()?;
    if major == 9 {
        // 9.x releases had two-part majors; anything that old is below every requirement here.
        return Some(9);
    }
    Some(major)
}

/// Where tool sets are looked for, in order, unless a directory is given explicitly.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for pattern_root in ["/usr/lib/postgresql", "/usr/local/pgsql", "/opt/postgresql"] {
        if let Ok(entries) = std::fs::read_dir(pattern_root) {
            for e in entries.flatten() {
                dirs.push(e.path().join("bin"));
            }
        }
    }
    for root in ["/usr", "/opt"] {
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("pgsql-") {
                    dirs.push(e.path().join("bin"));
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// Runs `<dir>/pg_dump --version` and reads the result.
async fn probe(dir: &Path) -> Option<PgTools> {
    let exe = dir.join("pg_dump");
    if !exe.is_file() {
        return None;
    }
    let out = tokio::process::Command::new(&exe)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = parse_major(&version)?;
    // Resolve symlinks (Debian's /usr/bin/pg_dump is a wrapper) only for de-duplication.
    Some(PgTools {
        bin_dir: dir.to_path_buf(),
        major,
        version,
    })
}

/// Every tool set found, newest major first. With `explicit`, only that directory is used.
///
/// The answer is cached for the life of the process (per `explicit` directory): probing runs
/// each candidate's `--version`, and one backup asks several times (preflight, snapshot, verify).
pub async fn installed_tools(explicit: Option<&Path>) -> Vec<PgTools> {
    static CACHE: std::sync::Mutex<Vec<(Option<PathBuf>, Vec<PgTools>)>> =
        std::sync::Mutex::new(Vec::new());
    let key = explicit.map(Path::to_path_buf);
    if let Some((_, hit)) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.iter().find(|(k, _)| *k == key).cloned())
    {
        return hit;
    }
    let found = probe_all(explicit).await;
    if let Ok(mut c) = CACHE.lock() {
        c.push((key, found.clone()));
    }
    found
}

async fn probe_all(explicit: Option<&Path>) -> Vec<PgTools> {
    let dirs = match explicit {
        Some(d) => vec![d.to_path_buf()],
        None => candidate_dirs(),
    };
    let mut found: Vec<PgTools> = Vec::new();
    for dir in dirs {
        if let Some(t) = probe(&dir).await
            && !found
                .iter()
                .any(|f| f.version == t.version && f.major == t.major)
        {
            found.push(t);
        }
    }
    found.sort_by_key(|t| std::cmp::Reverse(t.major));
    found
}

/// Picks the newest tool set with a major version ≥ `min_major`.
///
/// # Errors
///
/// [`Error::SourceUnavailable`] for `source_name` saying which version is needed, what was found,
/// and how to install it.
pub async fn find_tools(
    min_major: u32,
    explicit: Option<&Path>,
    source_name: &str,
) -> Result<PgTools> {
    let all = installed_tools(explicit).await;
    select_tools(&all, min_major, explicit, source_name)
}

/// The pure part of [`find_tools`].
///
/// # Errors
///
/// As [`find_tools`].
pub fn select_tools(
    all: &[PgTools],
    min_major: u32,
    explicit: Option<&Path>,
    source_name: &str,
) -> Result<PgTools> {
    if let Some(t) = all.iter().find(|t| t.major >= min_major) {
        return Ok(t.clone());
    }
    let found = if all.is_empty() {
        "none was found".to_owned()
    } else {
        let list: Vec<String> = all
            .iter()
            .map(|t| format!("{} in {}", t.version, t.bin_dir.display()))
            .collect();
        format!("found only {}", list.join(", "))
    };
    let where_ = match explicit {
        Some(d) => format!(" in PREDEPLOY_PG_BINDIR={}", d.display()),
        None => String::new(),
    };
    Err(Error::SourceUnavailable {
        source_name: source_name.to_owned(),
        message: format!(
            "pg_dump {min_major} or newer is needed for this server{where_}, but {found}. \
             Install the PostgreSQL {min_major} client tools (Debian/Ubuntu: apt-get install postgresql-client-{min_major}) \
             or set PREDEPLOY_PG_BINDIR to the directory holding pg_dump {min_major}+"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_parse_from_tool_and_server_strings() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("18.1"), Some(18));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 16beta1"), Some(16));
        assert_eq!(parse_major("9.6.24"), Some(9));
        assert_eq!(parse_major("no digits"), None);
    }

    #[test]
    fn picks_the_newest_sufficient_and_explains_a_miss() {
        let t = |major: u32| PgTools {
            bin_dir: format!("/usr/lib/postgresql/{major}/bin").into(),
            major,
            version: format!("pg_dump (PostgreSQL) {major}.1"),
        };
        let all = vec![t(18), t(15)];
        assert_eq!(select_tools(&all, 15, None, "db").expect("found").major, 18);
        assert_eq!(select_tools(&all, 16, None, "db").expect("found").major, 18);
        let err = select_tools(&[t(15)], 18, None, "db")
            .expect_err("too old")
            .to_string();
        assert!(err.contains("pg_dump 18 or newer"), "{err}");
        assert!(
            err.contains("found only pg_dump (PostgreSQL) 15.1"),
            "{err}"
        );
        assert!(err.contains("postgresql-client-18"), "{err}");
    }
}
