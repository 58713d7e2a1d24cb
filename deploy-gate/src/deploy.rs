//! Running the deploy command after a verified backup, and the `.last-deployment-backup` file
//! that scripts written for the old shell approach read.

use std::path::{Path, PathBuf};

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
    for (source, artifact) in manifest.artifacts() {
        let stem = artifact.name.split('.').next().unwrap_or(&artifact.name);
        let key = format!(
            "BACKUP_FILE_{}_{}",
            env_key(source.name.as_str()),
            env_key(stem)
        );
        lines.push((key, artifact_location(store, &artifact.key)));
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

/// Runs the deploy command with the backup's id and store in its environment, inheriting
/// stdin/stdout/stderr. Returns its exit code (128 + N when killed by signal N).
///
/// SIGINT and SIGTERM are not acted on while it runs: the command gets them from the terminal
/// or its process group and decides; we report its exit.
///
/// # Errors
///
/// [`GateError::Usage`] when the command cannot be started (not found, not executable).
pub async fn run_deploy_command(
    command: &[String],
    env: &[(String, String)],
    dir: &Path,
) -> Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| GateError::usage("no deploy command was given after --"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .spawn()
        .map_err(|e| {
            GateError::usage(format!("cannot start the deploy command {program:?}: {e}"))
        })?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(()) = async { match int.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {}
            Some(()) = async { match term.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                let _ = child.start_kill();
            }
        }
    }
    .map_err(|e| GateError::Internal { message: format!("waiting for the deploy command: {e}") })?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
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
