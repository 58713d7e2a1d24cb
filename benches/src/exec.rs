//! Running one command under `/usr/bin/time -f '%e %M'` and reading back its wall time and
//! peak RSS, optionally sampling the peak RSS of the measured process alone.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::Duration;

use crate::Res;

/// GNU time, which reports wall seconds (`%e`) and max RSS in KiB (`%M`).
pub const GNU_TIME: &str = "/usr/bin/time";

/// The format passed to GNU time.
pub const TIME_FORMAT: &str = "%e %M";

/// How often the own-RSS sampler looks at the measured process.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// What one timed command produced.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Wall-clock seconds as reported by GNU time (`%e`, 10 ms resolution).
    pub wall_s: f64,
    /// Wall-clock seconds around the GNU time process as the runner saw them (finer
    /// resolution, includes GNU time's own start-up; informational).
    pub runner_wall_s: f64,
    /// `%M`: the largest peak RSS of any single process of the measured tree, in KiB (`wait4`
    /// folds the peak of reaped children into their parent's figure).
    pub max_rss_kib: u64,
    /// The last `VmHWM` read from `/proc/<pid>/status` of the direct child of GNU time (the
    /// measured program itself, without its children); only when sampling was asked for.
    pub own_hwm_kib: Option<u64>,
    /// Where the command's stdout went.
    pub stdout: PathBuf,
}

/// Run `argv` under GNU time with `env` added to the environment; stdout and stderr go to files
/// `<scratch>/<tag>.out` / `.err`. A non-zero exit is an error carrying the tail of stderr.
pub fn run_timed(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    scratch: &Path,
    tag: &str,
    sample_own_rss: bool,
) -> Res<Timed> {
    let (program, args) = argv.split_first().ok_or("empty command line")?;
    let time_file = scratch.join(format!("{tag}.time"));
    let stdout = scratch.join(format!("{tag}.out"));
    let stderr = scratch.join(format!("{tag}.err"));
    let mut cmd = Command::new(GNU_TIME);
    cmd.arg("-f")
        .arg(TIME_FORMAT)
        .arg("-o")
        .arg(&time_file)
        .arg("--")
        .arg(program)
        .args(args);
    // Only the connection settings given here reach the measured command.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        // In the scratch dir, so no config file of the caller's directory is picked up.
        .current_dir(scratch)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout)?)
        .stderr(fs::File::create(&stderr)?);
    let started = std::time::Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {GNU_TIME}: {e}"))?;
    let (status, own_hwm_kib) = if sample_own_rss {
        let pid = child.id();
        let mut hwm: Option<u64> = None;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if let Some(k) = child_hwm_kib(pid) {
                hwm = Some(hwm.map_or(k, |h| h.max(k)));
            }
            sleep(SAMPLE_EVERY);
        };
        (status, hwm)
    } else {
        (child.wait()?, None)
    };
    let runner_wall_s = started.elapsed().as_secs_f64();
    let time_text = fs::read_to_string(&time_file).unwrap_or_default();
    if !status.success() {
        return Err(failure_message(argv, status, &time_text, &stderr).into());
    }
    let (wall_s, max_rss_kib) = parse_time_output(&time_text)
        .ok_or_else(|| format!("cannot parse GNU time output {time_text:?} for {tag}"))?;
    Ok(Timed {
        wall_s,
        runner_wall_s,
        max_rss_kib,
        own_hwm_kib,
        stdout,
    })
}

/// Parse the last non-empty line of a GNU time `-o` file written with [`TIME_FORMAT`].
pub fn parse_time_output(text: &str) -> Option<(f64, u64)> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let mut fields = line.split_whitespace();
    let wall = fields.next()?.parse::<f64>().ok()?;
    let rss = fields.next()?.parse::<u64>().ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some((wall, rss))
}

/// `VmHWM` (KiB) of the first child of process `pid`, if it can be read right now.
fn child_hwm_kib(pid: u32) -> Option<u64> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let child: u32 = children.split_whitespace().next()?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{child}/status")).ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM:` figure (KiB) of a `/proc/<pid>/status` text.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn failure_message(
    argv: &[OsString],
    status: ExitStatus,
    time_text: &str,
    stderr: &Path,
) -> String {
    let err = fs::read_to_string(stderr).unwrap_or_default();
    let tail: Vec<&str> = err.lines().rev().take(25).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let shown: Vec<String> = argv
        .iter()
        .map(|a| crate::redact(&a.to_string_lossy()))
        .collect();
    format!(
        "command failed ({status}): {}\n{}stderr (last lines):\n{}",
        shown.join(" "),
        time_text
            .lines()
            .filter(|l| l.starts_with("Command"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        tail.join("\n")
    )
}

/// Run a plain (untimed) command, returning its stdout; a non-zero exit is an error.
pub fn run_plain(mut cmd: Command, what: &str) -> Res<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            crate::redact(String::from_utf8_lossy(&out.stderr).trim())
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_time_output() {
        assert_eq!(parse_time_output("1.23 4567\n"), Some((1.23, 4567)));
        assert_eq!(
            parse_time_output("Command exited with non-zero status 1\n0.01 2000\n"),
            Some((0.01, 2000))
        );
        assert_eq!(parse_time_output("garbage"), None);
        assert_eq!(parse_time_output(""), None);
    }

    #[test]
    fn parses_vm_hwm() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    4064 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(4064));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn times_a_command_and_samples_it() {
        let dir = tempfile::tempdir().expect("temp dir for the test");
        let argv: Vec<OsString> = ["sleep", "0.2"].iter().map(OsString::from).collect();
        let t = run_timed(&argv, &[], dir.path(), "sleep", true).expect("sleep runs");
        assert!(t.wall_s >= 0.15, "{t:?}");
        assert!(t.max_rss_kib > 0);
        assert!(t.own_hwm_kib.is_some_and(|k| k > 0), "{t:?}");
        let argv: Vec<OsString> = ["false"].iter().map(OsString::from).collect();
        assert!(run_timed(&argv, &[], dir.path(), "false", false).is_err());
    }
}
