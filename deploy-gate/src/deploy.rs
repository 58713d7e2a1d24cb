//! Running the deploy command after a verified backup, and the `.last-deployment-backup` file
//! that scripts written for the old shell approach read.

use std::future::Future;
use std::io::IsTerminal as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, pthread_sigmask};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};

use backup_core::Manifest;
use backup_objectstore::StoreUrl;

use crate::error::{GateError, Result};

/// Name of the file written in the working directory after a successful gate.
pub const LAST_DEPLOYMENT_FILE: &str = ".last-deployment-backup";

/// Where an artifact can be fetched from without this tool: a path for a local store, an
/// `s3://` URL otherwise.
pub fn artifact_location(store: Option<&StoreUrl>, key: &str) -> String {
    match store {
        Some(StoreUrl::Local(dir)) => {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            dir.join(key).display().to_string()
        }
        Some(StoreUrl::S3 { bucket, prefix, .. }) if prefix.is_empty() => {
            format!("s3://{bucket}/{key}")
        }
        Some(StoreUrl::S3 { bucket, prefix, .. }) => format!("s3://{bucket}/{prefix}/{key}"),
        None => key.to_owned(),
    }
}

/// The KEY=VALUE lines of `.last-deployment-backup`.
pub fn last_deployment_lines(
    manifest: &Manifest,
    store_name: &str,
    store: Option<&StoreUrl>,
) -> Vec<(String, String)> {
    let mut lines = vec![
        (
            "BACKUP_TIMESTAMP".to_owned(),
            manifest.finished_at.to_string(),
        ),
        ("BACKUP_ID".to_owned(), manifest.id.to_string()),
        ("BACKUP_STORE".to_owned(), store_name.to_owned()),
        (
            "BACKUP_ENVIRONMENT".to_owned(),
            manifest.environment.clone(),
        ),
    ];
    let mut named = std::collections::BTreeSet::new();
    for (source, artifact) in manifest.artifacts() {
        // The files of a directory (`dump.d/…` of a parallel dump) are named once, by the
        // directory.
        let (name, location) = match artifact.name.split_once('/') {
            Some((dir, _)) => {
                let at = artifact
                    .key
                    .find(&format!("/{dir}/"))
                    .map(|i| i + dir.len() + 2);
                (
                    dir,
                    at.map_or(artifact.key.as_str(), |end| &artifact.key[..end]),
                )
            }
            None => (artifact.name.as_str(), artifact.key.as_str()),
        };
        let stem = name.split('.').next().unwrap_or(name);
        let key = format!(
            "BACKUP_FILE_{}_{}",
            env_key(source.name.as_str()),
            env_key(stem)
        );
        if named.insert(key.clone()) {
            lines.push((key, artifact_location(store, location)));
        }
    }
    lines.push((
        "GIT_COMMIT".to_owned(),
        manifest.deploy.commit.clone().unwrap_or_default(),
    ));
    lines.push((
        "GIT_BRANCH".to_owned(),
        manifest.deploy.branch.clone().unwrap_or_default(),
    ));
    lines
}

fn env_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Quotes a value for a shell `source` when it needs it.
fn shell_value(v: &str) -> String {
    let safe = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=,".contains(c));
    if safe && !v.is_empty() {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// Writes `.last-deployment-backup` in `dir` atomically (temp file, then rename).
///
/// # Errors
///
/// [`GateError::Internal`] when the file cannot be written.
pub fn write_last_deployment(dir: &Path, lines: &[(String, String)]) -> Result<PathBuf> {
    let mut text = String::from(
        "# Written by pre-deploy after a verified backup. KEY=VALUE lines; safe to `source`.\n",
    );
    for (k, v) in lines {
        text.push_str(&format!("{k}={}\n", shell_value(v)));
    }
    let path = dir.join(LAST_DEPLOYMENT_FILE);
    let tmp = dir.join(format!("{LAST_DEPLOYMENT_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| GateError::Internal {
            message: format!("cannot write {}: {e}", path.display()),
        })?;
    Ok(path)
}

/// How a deploy command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployExit {
    /// Its exit code (128 + N when killed by signal N).
    pub code: i32,
    /// Why the run's lock counts as lost, when that happened while the command ran.
    pub lock_lost: Option<String>,
    /// The signal pre-deploy received and passed on to the command's process group, if any.
    pub forwarded: Option<&'static str>,
}

impl DeployExit {
    /// A deploy that ended with `code` on its own (0: success).
    pub fn with_code(code: i32) -> Self {
        DeployExit {
            code,
            lock_lost: None,
            forwarded: None,
        }
    }
}

/// After a signal was passed on and the deploy command itself exited, how long the rest of its
/// process group (children it started) gets to exit before it is killed (SIGKILL).
pub const GROUP_GRACE: Duration = Duration::from_secs(10);

/// Runs the deploy command with the backup's id and store in its environment, inheriting
/// stdin/stdout/stderr. Returns its exit code (128 + N when killed by signal N). See
/// [`run_deploy_command_watched`].
///
/// # Errors
///
/// [`GateError::Usage`] when the command cannot be started (not found, not executable).
pub async fn run_deploy_command(
    command: &[String],
    env: &[(String, String)],
    dir: &Path,
) -> Result<i32> {
    run_deploy_command_watched(command, env, dir, std::future::pending())
        .await
        .map(|e| e.code)
}

/// Runs the deploy command as [`run_deploy_command`] does, watching `lock_lost` (e.g.
/// `LockGuard::lost`) meanwhile.
///
/// The command runs in a **process group of its own**. SIGTERM and SIGINT that pre-deploy
/// receives are passed on to that whole group (the command and everything it started), and
/// pre-deploy waits for the command to exit, then up to [`GROUP_GRACE`] for the rest of the
/// group (killing what is left after that), so a caller holding a lock releases it only once
/// the deploy has stopped. When stdin is a terminal and pre-deploy is in its foreground, the
/// command's group gets the terminal (it can prompt, and Ctrl-C reaches it as before) until it
/// exits.
///
/// When `lock_lost` resolves while the command runs, it says so at once on stderr and lets the
/// command finish (stopping a deploy half-way could do more harm than the overlap); the result
/// carries the reason.
///
/// # Errors
///
/// [`GateError::Usage`] when the command cannot be started (not found, not executable).
pub async fn run_deploy_command_watched(
    command: &[String],
    env: &[(String, String)],
    dir: &Path,
    lock_lost: impl Future<Output = String>,
) -> Result<DeployExit> {
    use std::os::unix::process::ExitStatusExt;
    use tokio::signal::unix::{SignalKind, signal};
    let (program, args) = command
        .split_first()
        .ok_or_else(|| GateError::usage("no deploy command was given after --"))?;
    let terminal = Terminal::foreground();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            GateError::usage(format!("cannot start the deploy command {program:?}: {e}"))
        })?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    if let (Some(t), Some(g)) = (&terminal, group) {
        t.give_to(g);
    }
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut lock_lost = std::pin::pin!(lock_lost);
    let mut lost: Option<String> = None;
    let mut forwarded: Option<&'static str> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(()) = recv(&mut int) => {
                forward(group, Signal::SIGINT);
                forwarded = Some("SIGINT");
            }
            Some(()) = recv(&mut term) => {
                forward(group, Signal::SIGTERM);
                forwarded = Some("SIGTERM");
            }
            why = &mut lock_lost, if lost.is_none() => {
                // Not `eprintln!`: it panics on a closed stderr, and the deploy is half-way.
                let _ = writeln!(
                    std::io::stderr(),
                    "pre-deploy: LOCK LOST while the deploy command runs: {why}. Another run may \
                     now hold the lock and deploy at the same time. The deploy command is left to \
                     finish (stopping it half-way could do more harm); its deployment will not be \
                     recorded, and pre-deploy exits {} if it succeeds.",
                    crate::ExitCode::LockLostDuringDeploy.code()
                );
                lost = Some(why);
            }
        }
    };
    if let Some(t) = &terminal {
        t.take_back();
    }
    let status = status.map_err(|e| GateError::Internal {
        message: format!("waiting for the deploy command: {e}"),
    })?;
    if let (Some(signal), Some(g)) = (forwarded, group) {
        wait_for_group(g, signal).await;
    }
    Ok(DeployExit {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        lock_lost: lost,
        forwarded,
    })
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Passes `signal` on to the deploy command's process group.
fn forward(group: Option<Pid>, signal: Signal) {
    if let Some(g) = group {
        tracing::warn!("passing {signal} on to the deploy command (process group {g})");
        if let Err(e) = killpg(g, signal) {
            tracing::warn!("could not pass {signal} on to process group {g}: {e}");
        }
    }
}

/// After a forwarded signal: waits until the deploy command's process group is empty, killing
/// what is left after [`GROUP_GRACE`].
async fn wait_for_group(group: Pid, signal: &str) {
    let alive = || killpg(group, None).is_ok();
    let deadline = tokio::time::Instant::now() + GROUP_GRACE;
    while alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive() {
        tracing::warn!(
            "processes the deploy command started are still running {}s after {signal}: killing \
             process group {group}",
            GROUP_GRACE.as_secs()
        );
        let _ = killpg(group, Signal::SIGKILL);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while alive() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The controlling terminal on stdin, when pre-deploy is in its foreground process group.
struct Terminal;

impl Terminal {
    fn foreground() -> Option<Terminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        (tcgetpgrp(&stdin).ok()? == getpgrp()).then_some(Terminal)
    }

    /// Makes `group` the terminal's foreground group, and wakes it in case it already tried to
    /// read the terminal (stopped by SIGTTIN) before it had it.
    fn give_to(&self, group: Pid) {
        if let Err(e) = tcsetpgrp(std::io::stdin(), group) {
            tracing::debug!("could not give the terminal to the deploy command: {e}");
        }
        let _ = killpg(group, Signal::SIGCONT);
    }

    /// Takes the terminal back for pre-deploy's own group. We are a background group by now, so
    /// this thread blocks SIGTTOU around the call (else the kernel would stop us).
    fn take_back(&self) {
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut old = SigSet::empty();
        if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
            if let Err(e) = tcsetpgrp(std::io::stdin(), getpgrp()) {
                tracing::debug!("could not take the terminal back: {e}");
            }
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(shell_value("/var/backups/x.zst"), "/var/backups/x.zst");
        assert_eq!(shell_value("it's here"), "'it'\\''s here'");
        assert_eq!(shell_value(""), "''");
    }

    #[test]
    fn the_files_of_a_directory_archive_are_named_once_by_their_directory() {
        let artifact = |name: &str| {
            serde_json::json!({"name": name, "key": format!("backups/x/data/db/{name}"),
                "format": "pg_dump-directory", "compression": "zstd", "stored_size": 1,
                "raw_size": 2, "sha256": "sha256:".to_owned() + &"ab".repeat(32)})
        };
        let m: backup_core::Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "pre-deploy",
            "environment": "staging", "created_at": "2026-11-22T03:15:00Z",
            "finished_at": "2026-11-22T03:15:00Z",
            "tool": {"name": "pre-deploy", "version": "0"}, "host": "h", "deploy": {},
            "sources": [{"name": "db", "kind": "postgres", "location": "postgres://h/shop",
                "artifacts": [artifact("dump.d/toc.dat.zst"), artifact("dump.d/3001.dat.zst"),
                    artifact("schema.txt.zst")]}]}))
        .expect("manifest");
        let store = StoreUrl::parse("s3://b").expect("store url");
        let lines = last_deployment_lines(&m, "s3://b", Some(&store));
        let files: Vec<&(String, String)> = lines
            .iter()
            .filter(|(k, _)| k.starts_with("BACKUP_FILE_"))
            .collect();
        assert_eq!(
            files,
            [
                &(
                    "BACKUP_FILE_DB_DUMP".to_owned(),
                    "s3://b/backups/x/data/db/dump.d/".to_owned()
                ),
                &(
                    "BACKUP_FILE_DB_SCHEMA".to_owned(),
                    "s3://b/backups/x/data/db/schema.txt.zst".to_owned()
                )
            ]
        );
    }

    #[tokio::test]
    async fn the_deploy_command_exit_code_is_returned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cmd = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "test \"$X\" = y && exit 3".to_owned(),
        ];
        let code = run_deploy_command(&cmd, &[("X".into(), "y".into())], dir.path())
            .await
            .expect("ran");
        assert_eq!(code, 3);
        let missing = run_deploy_command(&["/no/such/cmd".into()], &[], dir.path())
            .await
            .expect_err("missing");
        assert_eq!(missing.exit_code(), crate::ExitCode::Usage);
    }
}
