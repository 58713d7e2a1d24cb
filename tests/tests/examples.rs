//! The ready-made cron file and systemd units in `examples/` run as written: their commands,
//! with the paths of this machine substituted, back up, re-verify and check a real database,
//! and the cron lines print nothing when all is well (cron mails any output).

use std::path::{Path, PathBuf};

use predeploy_tests::{PgServer, pre_deploy};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The commands of the cron file, in order (the sixth field on: after the schedule and user).
fn cron_commands() -> Vec<String> {
    let text = std::fs::read_to_string(examples().join("cron/pre-deploy")).expect("cron file");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().skip(6).collect::<Vec<_>>().join(" "))
        .collect()
}

/// `ExecStart=` of each service, in the order backup, verify, status.
fn unit_commands() -> Vec<String> {
    ["backup", "verify", "status"]
        .iter()
        .map(|name| {
            let path = examples().join(format!("systemd/pre-deploy-{name}.service"));
            let text = std::fs::read_to_string(&path).expect("unit");
            let timer = examples().join(format!("systemd/pre-deploy-{name}.timer"));
            assert!(timer.is_file(), "{} has its timer", path.display());
            text.lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or_else(|| panic!("{} has ExecStart", path.display()))
                .to_owned()
        })
        .collect()
}

/// Runs `command` through `sh`, as cron and systemd would, with this machine's binary, config
/// and working directory, in the harness's environment (PG*/PREDEPLOY_* cleared).
fn run_here(command: &str, config: &Path, workdir: &Path) -> std::process::Output {
    let binary = predeploy_tests::cli::binary().display().to_string();
    let command = command
        .replace("/usr/local/bin/pre-deploy", &binary)
        .replace(" && pre-deploy ", &format!(" && {binary} "))
        .replace(
            "/etc/pre-deploy/predeploy.toml",
            &config.display().to_string(),
        )
        .replace("/var/lib/pre-deploy", &workdir.display().to_string());
    let harness = pre_deploy();
    let mut sh = std::process::Command::new("sh");
    for (k, v) in harness.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.args(["-c", &command])
        .current_dir(workdir)
        .output()
        .expect("sh runs")
}

fn platform(server: &PgServer, dir: &Path) -> PathBuf {
    let db = server.create_database("cron");
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g",
    );
    let config = dir.join("predeploy.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{}\"\n[project.app.env.production.sources]\ndb = \"{}\"\n",
            dir.join("store").display(),
            server.url(&db)
        ),
    )
    .expect("config");
    config
}

#[test]
fn the_cron_file_backs_up_verifies_and_checks_and_is_silent_when_all_is_well() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let config = platform(server, dir.path());
    let commands = cron_commands();
    assert_eq!(commands.len(), 3, "{commands:?}");
    for command in &commands {
        let out = run_here(command, &config, dir.path());
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{command}: {stdout}{stderr}");
        assert_eq!(
            format!("{stdout}{stderr}"),
            "",
            "{command}: silent when all is well"
        );
    }
    // The backup is there, scheduled, in the project's own store.
    assert!(dir.path().join("store/app/backups").is_dir());
}

#[test]
fn the_systemd_units_run_the_same_jobs_and_status_fails_without_a_backup() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let config = platform(server, dir.path());
    let [backup, verify, status] = &unit_commands()[..] else {
        panic!("three units");
    };
    // Before any backup the freshness check fails: the monitor would fire.
    let out = run_here(status, &config, dir.path());
    assert_ne!(out.status.code(), Some(0), "no backup yet");
    for command in [backup, verify, status] {
        let out = run_here(command, &config, dir.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
