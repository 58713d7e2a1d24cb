//! What the working directory says about the release being deployed.

use std::path::Path;
use std::process::Command;

use backup_core::DeployInfo;

/// Reads git commit, branch, tag and dirty flag of `dir` (when it is a git checkout), the CI
/// run URL from the usual CI variables, and `app_version` when given.
pub fn detect_deploy_info(dir: &Path, app_version: Option<String>) -> DeployInfo {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--verify", "-q", "HEAD"]).filter(|c| !c.is_empty());
    let (branch, tag, dirty) = if commit.is_some() {
        (
            git(&["symbolic-ref", "--short", "-q", "HEAD"]).filter(|b| !b.is_empty()),
            git(&["describe", "--tags", "--exact-match", "HEAD"]).filter(|t| !t.is_empty()),
            // Untracked files (such as a local ./.pre-deploy store) do not make a release dirty.
            git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        )
    } else {
        (None, None, None)
    };
    DeployInfo {
        commit,
        branch,
        tag,
        dirty,
        app_version,
        ci_run_url: ci_run_url(&|k| std::env::var(k).ok().filter(|v| !v.is_empty())),
        extra: serde_json::Map::new(),
    }
}

/// The URL of the CI run, from GitHub Actions, GitLab CI or Jenkins variables.
pub fn ci_run_url(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let (Some(server), Some(repo), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        return Some(format!("{server}/{repo}/actions/runs/{run}"));
    }
    var("CI_JOB_URL").or_else(|| var("BUILD_URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_urls_from_common_providers() {
        let gh = |k: &str| match k {
            "GITHUB_SERVER_URL" => Some("https://github.com".to_owned()),
            "GITHUB_REPOSITORY" => Some("acme/shop".to_owned()),
            "GITHUB_RUN_ID" => Some("42".to_owned()),
            _ => None,
        };
        assert_eq!(
            ci_run_url(&gh).as_deref(),
            Some("https://github.com/acme/shop/actions/runs/42")
        );
        let gl = |k: &str| (k == "CI_JOB_URL").then(|| "https://gitlab/j/1".to_owned());
        assert_eq!(ci_run_url(&gl).as_deref(), Some("https://gitlab/j/1"));
        assert_eq!(ci_run_url(&|_| None), None);
    }

    #[test]
    fn a_plain_directory_has_no_git_info() {
        let dir = tempfile::tempdir().expect("tempdir");
        let info = detect_deploy_info(dir.path(), Some("1.2.3".into()));
        assert_eq!(info.commit, None);
        assert_eq!(info.dirty, None);
        assert_eq!(info.app_version.as_deref(), Some("1.2.3"));
    }
}
