//! What the reports say about the machine and the programs, and the programs a runner needs.

use std::ffi::OsStr;
use std::fs;
use std::process::{Command, Stdio};

use crate::Res;

/// The first line of the stdout of `program args…`, or `unknown`.
pub fn version(program: impl AsRef<OsStr>, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            text.lines().next().map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// nproc, CPU (with its `avx512f` and `sha_ni` flags), memory and OS.
pub fn machine() -> Vec<(String, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |text: &str, key: &str| -> Option<String> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        Some(line.split_once(':')?.1.trim().to_owned())
    };
    let flags = field(&cpuinfo, "flags").unwrap_or_default();
    let has = |f: &str| {
        if flags.split_whitespace().any(|x| x == f) {
            "yes"
        } else {
            "no"
        }
    };
    let mem_kib: u64 = field(
        &fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        "MemTotal",
    )
    .and_then(|v| v.split_whitespace().next()?.parse().ok())
    .unwrap_or(0);
    let os = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or("unknown".into(), |v| v.trim_matches('"').to_string());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    vec![
        ("nproc".into(), version("nproc", &[])),
        (
            "CPU".into(),
            format!(
                "{} (avx512f: {}, sha_ni: {})",
                field(&cpuinfo, "model name").unwrap_or("unknown".into()),
                has("avx512f"),
                has("sha_ni")
            ),
        ),
        (
            "memory".into(),
            format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
        ),
        ("OS".into(), format!("{os}, kernel {}", kernel.trim())),
    ]
}

/// `git REV` of the workspace, with ` (with uncommitted changes)` when the tree is dirty.
pub fn workspace() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let rev = version("git", &["-C", dir, "rev-parse", "--short", "HEAD"]);
    let dirty = version("git", &["-C", dir, "status", "--porcelain"]) != "unknown";
    format!(
        "git {rev}{}",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    )
}

/// Whether `program` is a file in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Each `(program, Debian package)` must be on `PATH` (or, for an absolute path, exist).
///
/// # Errors
///
/// The first one missing, with its package.
pub fn require(programs: &[(&str, &str)]) -> Res<()> {
    for (program, package) in programs {
        let found = if program.starts_with('/') {
            std::path::Path::new(program).is_file()
        } else {
            on_path(program)
        };
        if !found {
            return Err(format!("`{program}` is missing (Debian package `{package}`)").into());
        }
    }
    Ok(())
}
