//! Free space of local file systems, read before writing something large (a staged archive, a
//! scratch database) so a full disk is a clear refusal instead of a failure half-way.

use std::path::Path;

/// Free bytes (for an unprivileged user) of the file system holding `dir`, from `df -Pk`;
/// `None` when it cannot be read.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// The start of the name of a temp file or directory of this process: `<prefix><pid>-`, which
/// [`remove_stale_temp`] recognises once the process is gone.
pub fn temp_prefix(prefix: &str) -> String {
    format!("{prefix}{}-", std::process::id())
}

/// Removes the entries of `dir` named by [`temp_prefix`] with `prefix` whose process no longer
/// runs: what a run killed before it could remove its own (SIGKILL) left behind.
pub fn remove_stale_temp(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => tracing::info!("removed {} left by an earlier run", path.display()),
                Err(e) => tracing::debug!("could not remove {}: {e}", path.display()),
            }
        }
    }
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_temp_dir_has_a_size_and_a_missing_dir_has_none() {
        assert!(super::free_bytes(&std::env::temp_dir()).is_some_and(|b| b > 0));
        assert!(super::free_bytes(std::path::Path::new("/no/such/dir")).is_none());
    }
}
