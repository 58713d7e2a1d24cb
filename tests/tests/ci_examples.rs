//! The ready-made CI files in `examples/` run as written: the `run:` steps of the GitHub
//! Actions workflow and the `script:` lines of the GitLab CI jobs, run with bash against a real
//! PostgreSQL and a moto S3 server, back up into the S3 store, refuse a commit no backup
//! protects, deploy, and (`pre-deploy run`) record the deployment.
//!
//! What is substituted, and only that:
//! - the install steps (the GitHub step named `Install …`, GitLab's `before_script`) are not
//!   run: this workspace's `pre-deploy` is put first on `PATH`, and this machine already has
//!   the PostgreSQL client tools;
//! - the checkout (`actions/checkout`, GitLab's own) is a clone of a repository the test makes,
//!   holding a `deploy.sh` that notes the commit it deployed;
//! - the secrets: `DATABASE_URL` is the harness's database, `AWS_ACCESS_KEY_ID` /
//!   `AWS_SECRET_ACCESS_KEY` are moto's test keys (GitLab: given to every job, as the project's
//!   masked CI/CD variables would be; the file does not name them);
//! - the S3 service: the bucket of `PREDEPLOY_STORE` is a fresh moto bucket (the prefix stays),
//!   `AWS_REGION` is moto's, and `AWS_ENDPOINT_URL` + `AWS_ALLOW_HTTP=true` point the client at
//!   moto instead of AWS;
//! - the CI's own variables: `GITHUB_SHA` / `CI_COMMIT_SHA` are the clone's `HEAD`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use predeploy_tests::cli::git;
use predeploy_tests::{MotoServer, Output, PgServer, S3Server, pre_deploy, run};
use serde_yaml_ng::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(examples().join(name)).expect("example file");
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

/// The application's repository: one commit with an executable `deploy.sh` that appends the
/// deployed commit to `deployed.log` in its checkout.
fn application(root: &Path) -> PathBuf {
    let repo = root.join("origin");
    std::fs::create_dir(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    let script = repo.join("deploy.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\necho \"deployed $(git rev-parse HEAD)\" >> deployed.log\n",
    )
    .expect("deploy.sh");
    std::fs::write(repo.join(".gitignore"), "deployed.log\n").expect("gitignore");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod");
    git(&repo, &["add", "deploy.sh", ".gitignore"]);
    commit(&repo, "release 1");
    repo
}

fn commit(repo: &Path, message: &str) -> String {
    predeploy_tests::cli::git_commit(repo, &["--allow-empty"], message)
}

/// A fresh checkout of `origin` for one job, as a CI runner makes it; returns it and its HEAD.
fn checkout(origin: &Path, root: &Path, name: &str) -> (PathBuf, String) {
    let dir = root.join(name);
    let out = Command::new("git")
        .args(["clone", "-q"])
        .arg(origin)
        .arg(&dir)
        .output()
        .expect("git clone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = git(&dir, &["rev-parse", "HEAD"]);
    (dir, head)
}

/// The servers and the substituted values of one scenario.
struct Ci {
    server: &'static PgServer,
    moto: &'static MotoServer,
    database: String,
    bucket: String,
}

impl Ci {
    fn new(name: &str) -> Ci {
        let server = PgServer::shared();
        let database = server.create_database(name);
        server.psql(
            &database,
            "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 2000) g",
        );
        let moto = MotoServer::shared();
        let bucket = moto.create_bucket(name);
        Ci {
            server,
            moto,
            database,
            bucket,
        }
    }

    /// The environment of a job: the file's variables as written, with the substitutions of
    /// the module docs. A variable whose value is a GitHub expression (`${{ … }}`) must be one
    /// this test substitutes.
    fn env(&self, jobs: &Jobs, sha: &str) -> Vec<(String, String)> {
        let mut declared = jobs.variables.clone();
        for secret in jobs.settings_secrets {
            declared.insert((*secret).to_owned(), "${{ secret }}".to_owned());
        }
        let mut env = Vec::new();
        for (k, v) in &declared {
            let value = match k.as_str() {
                "PREDEPLOY_STORE" => {
                    let rest = v
                        .strip_prefix("s3://")
                        .unwrap_or_else(|| panic!("an S3 store: {v}"));
                    let prefix = rest.split_once('/').map_or("", |(_, p)| p);
                    format!("s3://{}/{prefix}", self.bucket)
                }
                "AWS_REGION" => self.moto.region().to_owned(),
                "AWS_ACCESS_KEY_ID" => self.moto.access_key().to_owned(),
                "AWS_SECRET_ACCESS_KEY" => self.moto.secret_key().to_owned(),
                "DATABASE_URL" => self.server.url(&self.database),
                _ => {
                    assert!(
                        !v.contains("${{"),
                        "{k}: an expression this test does not substitute"
                    );
                    v.clone()
                }
            };
            env.push((k.clone(), value));
        }
        env.push(("AWS_ENDPOINT_URL".into(), self.moto.endpoint()));
        env.push(("AWS_ALLOW_HTTP".into(), "true".into()));
        env.push((jobs.sha_var.into(), sha.into()));
        env
    }

    /// The store the jobs used, as a `--store` URL for looking at it.
    fn store_url(&self, prefix: &str) -> String {
        self.moto.url(&self.bucket, prefix)
    }

    /// The keys under `prefix` in the bucket (moto answers an unsigned list).
    fn keys(&self, prefix: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sS", "-f"])
            .arg(format!(
                "{}/{}?list-type=2&prefix={prefix}",
                self.moto.endpoint(),
                self.bucket
            ))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }

    /// The backups in the store, as `pre-deploy list --json` shows them.
    fn backups(&self, prefix: &str, environment: &str) -> Vec<serde_json::Value> {
        let mut cmd = pre_deploy();
        cmd.args(["--json", "--env", environment, "--store"])
            .arg(self.store_url(prefix))
            .arg("list")
            .envs(self.moto.env());
        let out = run(&mut cmd);
        out.assert_success();
        out.json()["backups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs one job's commands with bash (`-eo pipefail`, as GitHub's `run:` and GitLab's script
/// do: the first failing command fails the job), in `dir`, with `pre-deploy` first on PATH and
/// the harness's environment (no PG*/PREDEPLOY_*/GITHUB_* of this machine).
fn run_job(commands: &[String], env: &[(String, String)], dir: &Path) -> Output {
    let bin_dir = predeploy_tests::cli::binary()
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let harness = pre_deploy();
    let mut bash = Command::new("bash");
    for (k, v) in harness.get_envs() {
        match v {
            Some(v) => bash.env(k, v),
            None => bash.env_remove(k),
        };
    }
    let path = std::env::var("PATH").unwrap_or_default();
    bash.env("PATH", format!("{}:{path}", bin_dir.display()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-eo", "pipefail", "-c", &commands.join("\n")])
        .current_dir(dir);
    run(&mut bash)
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other)
                            .expect("scalar")
                            .trim()
                            .to_owned(),
                    };
                    (k.as_str().expect("a key").to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// GitHub: the `run:` commands of a job, install steps left out (see the module docs).
fn github_steps(workflow: &Value, job: &str) -> Vec<String> {
    let steps = workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has steps"));
    assert!(
        steps.iter().any(|s| s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/checkout@"))),
        "{job} checks the repository out"
    );
    steps
        .iter()
        .filter(|s| {
            !s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Install "))
        })
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect()
}

/// GitLab: the `script:` lines of a job.
fn gitlab_script(ci: &Value, job: &str) -> Vec<String> {
    ci[job]["script"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has a script"))
        .iter()
        .map(|l| l.as_str().expect("a script line").to_owned())
        .collect()
}

/// What a scenario needs of a CI file: its variables, and each job's commands.
struct Jobs {
    variables: BTreeMap<String, String>,
    /// Secrets the CI's settings give every job (not named in the file).
    settings_secrets: &'static [&'static str],
    sha_var: &'static str,
    one_job: Vec<String>,
    backup: Vec<String>,
    deploy_after_check: Vec<String>,
}

fn github() -> Jobs {
    let w = yaml("github-actions.yml");
    assert_eq!(w["jobs"]["deploy-after-check"]["needs"], "backup");
    for (job, split) in [
        ("deploy", false),
        ("backup", true),
        ("deploy-after-check", true),
    ] {
        let cond = w["jobs"][job]["if"].as_str().expect("an if");
        assert_eq!(cond.contains("== 'true'"), split, "{job}: {cond}");
    }
    Jobs {
        variables: string_map(&w["env"]),
        settings_secrets: &[],
        sha_var: "GITHUB_SHA",
        one_job: github_steps(&w, "deploy"),
        backup: github_steps(&w, "backup"),
        deploy_after_check: github_steps(&w, "deploy-after-check"),
    }
}

fn gitlab() -> Jobs {
    let c = yaml("gitlab-ci.yml");
    assert_eq!(c["deploy-after-check"]["needs"][0], "backup");
    assert!(
        c["default"]["before_script"].is_sequence(),
        "installs in before_script"
    );
    Jobs {
        variables: string_map(&c["variables"]),
        // Masked CI/CD variables of the project, as the file's comment asks.
        settings_secrets: &["DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        sha_var: "CI_COMMIT_SHA",
        one_job: gitlab_script(&c, "deploy"),
        backup: gitlab_script(&c, "backup"),
        deploy_after_check: gitlab_script(&c, "deploy-after-check"),
    }
}

/// The store's prefix and environment as the file names them.
fn store_of(jobs: &Jobs) -> (String, String) {
    let store = &jobs.variables["PREDEPLOY_STORE"];
    let prefix = store
        .trim_start_matches("s3://")
        .split_once('/')
        .map_or(String::new(), |(_, p)| p.to_owned());
    (prefix, jobs.variables["PREDEPLOY_ENV"].clone())
}

/// The one-job form: `pre-deploy run -- ./deploy.sh` backs up into S3, deploys and records the
/// deployment.
fn one_job(jobs: &Jobs, name: &str) {
    assert!(
        jobs.one_job
            .iter()
            .any(|c| c.contains("pre-deploy run -- ./deploy.sh")),
        "{:?}",
        jobs.one_job
    );
    let ci = Ci::new(name);
    let root = tempfile::tempdir().expect("dir");
    let origin = application(root.path());
    let (dir, sha) = checkout(&origin, root.path(), "runner");
    let env = ci.env(jobs, &sha);
    let out = run_job(&jobs.one_job, &env, &dir);
    out.assert_success();
    assert_eq!(
        std::fs::read_to_string(dir.join("deployed.log")).expect("deploy.sh ran"),
        format!("deployed {sha}\n")
    );
    let (prefix, environment) = store_of(jobs);
    let backups = ci.backups(&prefix, &environment);
    assert_eq!(backups.len(), 1, "{backups:?}");
    let b = &backups[0];
    assert_eq!(b["kind"], "pre-deploy");
    assert_eq!(b["commit"], sha.as_str());
    assert_eq!(b["verification"]["passed"], true, "{b:#}");
    let id = b["id"].as_str().expect("id");
    let keys = ci.keys(&prefix);
    assert!(
        keys.iter()
            .any(|k| k == &format!("{prefix}/backups/{id}/manifest.json")),
        "the backup is in the bucket: {keys:?}"
    );
    // The deployment is recorded (retention protects its backup): what `prune` shows.
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{prefix}/deployments/{environment}/"))),
        "a deployment record: {keys:?}"
    );
    let mut prune = pre_deploy();
    prune
        .args(["--json", "--env", &environment, "--store"])
        .arg(ci.store_url(&prefix))
        .args(["prune", "--keep-last", "1"])
        .envs(ci.moto.env());
    let plan = run(&mut prune);
    plan.assert_success();
    let deployments = plan.json()["deployments"].clone();
    assert_eq!(deployments[0]["commit"], sha.as_str(), "{deployments:#}");
    assert_eq!(deployments[0]["backup_id"], id);
}

/// The split form: the backup job, then the deploy job on another runner, which deploys only
/// the commit a verified backup protects.
fn split_jobs(jobs: &Jobs, name: &str) {
    assert!(
        jobs.backup
            .iter()
            .any(|c| c.starts_with("pre-deploy backup"))
    );
    assert!(
        jobs.deploy_after_check
            .iter()
            .any(|c| c.starts_with("pre-deploy check --commit")),
        "{:?}",
        jobs.deploy_after_check
    );
    let ci = Ci::new(name);
    let root = tempfile::tempdir().expect("dir");
    let origin = application(root.path());
    let (backup_dir, sha) = checkout(&origin, root.path(), "backup-runner");
    let (deploy_dir, _) = checkout(&origin, root.path(), "deploy-runner");
    let env = ci.env(jobs, &sha);

    // A new commit nobody backed up: its deploy job is refused (exit 7), deploy.sh never runs.
    let newer = commit(&origin, "release 2");
    let (unprotected_dir, _) = checkout(&origin, root.path(), "unprotected-runner");
    let out = run_job(
        &jobs.deploy_after_check,
        &ci.env(jobs, &newer),
        &unprotected_dir,
    );
    assert_ne!(out.code, 0, "no backup at all yet: refused");
    assert!(!unprotected_dir.join("deployed.log").exists());

    run_job(&jobs.backup, &env, &backup_dir).assert_success();
    run_job(&jobs.deploy_after_check, &env, &deploy_dir).assert_success();
    assert_eq!(
        std::fs::read_to_string(deploy_dir.join("deployed.log")).expect("deploy.sh ran"),
        format!("deployed {sha}\n")
    );
    let out = run_job(
        &jobs.deploy_after_check,
        &ci.env(jobs, &newer),
        &unprotected_dir,
    );
    out.assert_code(7);
    assert!(out.stderr.contains("no backup protects"), "{}", out.stderr);
    assert!(!unprotected_dir.join("deployed.log").exists());

    let (prefix, environment) = store_of(jobs);
    let backups = ci.backups(&prefix, &environment);
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0]["kind"], "pre-deploy");
    assert_eq!(backups[0]["commit"], sha.as_str());
    assert_eq!(backups[0]["verification"]["passed"], true);
    let id = backups[0]["id"].as_str().expect("id");
    assert!(
        ci.keys(&prefix)
            .iter()
            .any(|k| k == &format!("{prefix}/backups/{id}/manifest.json")),
        "the backup is in the bucket"
    );
}

#[test]
fn the_github_actions_workflow_backs_up_to_s3_deploys_and_records_the_deployment() {
    one_job(&github(), "gha-run");
}

#[test]
fn the_github_actions_split_jobs_deploy_only_a_commit_a_verified_backup_protects() {
    split_jobs(&github(), "gha-split");
}

#[test]
fn the_gitlab_ci_job_backs_up_to_s3_deploys_and_records_the_deployment() {
    one_job(&gitlab(), "gitlab-run");
}

#[test]
fn the_gitlab_ci_split_jobs_deploy_only_a_commit_a_verified_backup_protects() {
    split_jobs(&gitlab(), "gitlab-split");
}
