//! `pre-deploy run -- CMD`: the deploy command runs only after a verified backup, sees the
//! backup in its environment, and its exit code becomes ours; a refusal never runs it.

use std::path::Path;
use std::process::Command;

use predeploy_tests::{PgServer, fixtures, pre_deploy, run, unused_port};

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .status()
        .expect("git runs")
        .success();
    assert!(ok, "git {args:?}");
}

fn deploy_script(dir: &Path, exit: i32) -> String {
    let script = dir.join("deploy.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$PREDEPLOY_BACKUP_ID $PREDEPLOY_STORE\" > deployed.txt\nexit {exit}\n"),
    )
    .expect("write");
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).expect("meta").permissions(),
        0o755,
    );
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .expect("chmod");
    script.display().to_string()
}

#[test]
fn run_backs_up_then_deploys_with_the_backup_in_its_environment() {
    let server = PgServer::shared();
    let db = server.create_database("gate");
    fixtures::load_varied(server, &db);
    let work = tempfile::tempdir().expect("workdir");
    git(work.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(work.path().join("app.txt"), "v1").expect("write");
    git(work.path(), &["add", "app.txt"]);
    git(work.path(), &["commit", "-q", "-m", "release"]);
    git(work.path(), &["tag", "v1.0.0"]);
    let script = deploy_script(work.path(), 0);

    let out = run(pre_deploy()
        .args(["run", "--", &script])
        .env("DATABASE_URL", server.url(&db))
        .current_dir(work.path()));
    out.assert_success();

    // The default store is ./.pre-deploy; the deploy saw the id and the store.
    let deployed =
        std::fs::read_to_string(work.path().join("deployed.txt")).expect("the deploy ran");
    let (id, store) = deployed.trim().split_once(' ').expect("two words");
    assert!(store.ends_with("/.pre-deploy"), "{store}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            work.path()
                .join(format!(".pre-deploy/backups/{id}/manifest.json")),
        )
        .expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["kind"], "pre-deploy");
    let head = Command::new("git")
        .arg("-C")
        .arg(work.path())
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("git");
    assert_eq!(
        manifest["deploy"]["commit"],
        String::from_utf8_lossy(&head.stdout).trim()
    );
    assert_eq!(manifest["deploy"]["branch"], "main");
    assert_eq!(manifest["deploy"]["tag"], "v1.0.0");
    assert_eq!(
        manifest["deploy"]["dirty"], false,
        "the local ./.pre-deploy store does not make the tree dirty"
    );

    // .last-deployment-backup, for scripts of the old shell approach.
    let last =
        std::fs::read_to_string(work.path().join(".last-deployment-backup")).expect("written");
    assert!(last.contains(&format!("BACKUP_ID={id}\n")), "{last}");
    let dump_line = last
        .lines()
        .find(|l| l.starts_with("BACKUP_FILE_DB_DUMP="))
        .expect("dump location");
    let dump_path = dump_line.trim_start_matches("BACKUP_FILE_DB_DUMP=");
    assert!(Path::new(dump_path).is_file(), "{dump_path} exists");
    assert!(last.contains("GIT_BRANCH=main"), "{last}");
    assert!(!last.contains(server.password()), "no secret in the file");

    // show prints the rollback commands for this backup.
    let show = run(pre_deploy().args(["show", "last"]).current_dir(work.path()));
    show.assert_success();
    assert!(show.stdout.contains("git checkout "), "{}", show.stdout);
    assert!(
        show.stdout.contains("pg_restore --exit-on-error"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains(dump_path), "{}", show.stdout);
}

#[test]
fn the_runbook_ends_every_run_also_when_the_deploy_command_cannot_start() {
    let server = PgServer::shared();
    let db = server.create_database("nostart");
    let work = tempfile::tempdir().expect("workdir");
    let out = run(pre_deploy()
        .args([
            "run",
            "--verify-level",
            "checksum",
            "--",
            "./no-such-deploy-script",
        ])
        .env("DATABASE_URL", server.url(&db))
        .current_dir(work.path()));
    out.assert_code(2);
    out.assert_stderr_contains("cannot start the deploy command");
    out.assert_stderr_contains("to roll back to backup");
    out.assert_stderr_contains("pg_restore --exit-on-error");

    // With --json the run's result carries the same runbook.
    let out = run(pre_deploy()
        .args(["run", "--json", "--verify-level", "checksum", "--", "true"])
        .env("DATABASE_URL", server.url(&db))
        .current_dir(work.path()));
    out.assert_success();
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("--json result");
    let steps = json["runbook"]["steps"].as_array().expect("runbook steps");
    assert!(
        steps
            .iter()
            .any(|s| s.to_string().contains("pre-deploy restore")),
        "{json}"
    );
}

#[test]
fn the_deploy_commands_own_exit_code_is_returned() {
    let server = PgServer::shared();
    let db = server.create_database("code");
    let work = tempfile::tempdir().expect("workdir");
    let script = deploy_script(work.path(), 42);
    let out = run(pre_deploy()
        .args(["run", "--verify-level", "checksum", "--", &script])
        .env("DATABASE_URL", server.url(&db))
        .current_dir(work.path()));
    out.assert_code(42);
    assert!(work.path().join("deployed.txt").exists());
    out.assert_stderr_contains("the deploy command exited with status 42");
    assert!(
        !out.stderr.contains("REFUSED"),
        "a failing deploy is not a refusal: {}",
        out.stderr
    );
}

#[test]
fn a_refused_gate_never_runs_the_deploy_command() {
    let work = tempfile::tempdir().expect("workdir");
    let script = deploy_script(work.path(), 0);
    let out = run(pre_deploy()
        .args(["run", "--json", "--", &script])
        .env(
            "DATABASE_URL",
            format!("postgres://postgres:pw@127.0.0.1:{}/app", unused_port()),
        )
        .current_dir(work.path()));
    out.assert_code(5);
    assert!(
        !work.path().join("deployed.txt").exists(),
        "the deploy command did not run"
    );
    assert!(!work.path().join(".last-deployment-backup").exists());
    let last_line = out.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last_line.contains("REFUSED (exit 5): the deploy command did not run"),
        "{}",
        out.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json result");
    assert_eq!(json["refused"], true);
    assert_eq!(json["deploy_ran"], false);
    assert_eq!(json["exit_code"], 5);
}

#[test]
fn no_source_configured_is_a_usage_error() {
    let work = tempfile::tempdir().expect("workdir");
    let out = run(pre_deploy()
        .args(["run", "--", "true"])
        .current_dir(work.path()));
    out.assert_code(2);
    out.assert_stderr_contains("DATABASE_URL");
}
