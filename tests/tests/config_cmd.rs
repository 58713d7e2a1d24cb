//! `pre-deploy config` (where each value came from, secrets redacted), `completions` and `man`
//! (issue 15, item 4).

use predeploy_tests::{pre_deploy, run};

#[test]
fn config_attributes_each_value_to_its_flag_variable_or_file_and_hides_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("predeploy.toml"),
        "environment = \"staging\"\n[sources]\ndb = \"postgres://app:hunter2@db.example/app\"\n\
         [s3]\nregion = \"eu-west-1\"\nsecret_access_key = \"filesecret42\"\n",
    )
    .expect("config");
    let out = run(pre_deploy()
        .current_dir(dir.path())
        .env("PREDEPLOY_WAIT_LOCK", "5s")
        .env("AWS_SECRET_ACCESS_KEY", "envsecret42")
        .args(["--store", "/srv/backups", "config", "--json"]));
    out.assert_success();
    for secret in ["hunter2", "filesecret42", "envsecret42"] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} leaked:\n{}",
            out.stdout
        );
    }
    let v = out.json();
    assert_eq!(v["store"]["from"], "flag", "{v:#}");
    assert_eq!(v["store"]["flag"], "--store");
    assert_eq!(v["store"]["value"], "file:///srv/backups");
    assert_eq!(v["lock.wait"]["from"], "env");
    assert_eq!(v["lock.wait"]["variable"], "PREDEPLOY_WAIT_LOCK");
    assert_eq!(v["lock.wait"]["value"], "5s");
    let config_file = dir.path().join("predeploy.toml");
    for key in ["environment", "sources", "s3.region"] {
        assert_eq!(v[key]["from"], "file", "{key}: {v:#}");
        assert_eq!(
            v[key]["path"].as_str(),
            config_file.to_str(),
            "{key}: {v:#}"
        );
    }
    assert_eq!(v["environment"]["value"], "staging");
    assert_eq!(
        v["sources"]["value"]["db"],
        "postgres://app:***@db.example/app"
    );
    assert_eq!(
        v["s3.secret_access_key"]["from"], "env",
        "the variable beats the file"
    );
    assert_eq!(v["s3.secret_access_key"]["value"], "(set)");
    assert_eq!(v["lock.ttl"]["from"], "default");

    let text = run(pre_deploy()
        .current_dir(dir.path())
        .env("AWS_SECRET_ACCESS_KEY", "envsecret42")
        .arg("config"));
    text.assert_success();
    assert!(!text.stdout.contains("hunter2") && !text.stdout.contains("envsecret42"));
    assert!(
        text.stdout.lines().any(|l| l.starts_with("environment")
            && l.contains("staging")
            && l.contains(&format!("(file {})", config_file.display()))),
        "{}",
        text.stdout
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_clap_definition() {
    let bash = run(pre_deploy().args(["completions", "bash"]));
    bash.assert_success();
    assert!(bash.stdout.contains("restore"), "{}", bash.stdout);
    assert!(bash.stdout.contains("--verify-restore-url"));
    for shell in ["zsh", "fish"] {
        let out = run(pre_deploy().args(["completions", shell]));
        out.assert_success();
        assert!(out.stdout.contains("metrics-file"), "{shell}");
    }
    let man = run(pre_deploy().arg("man"));
    man.assert_success();
    let page = &man.stdout;
    assert!(
        page.starts_with(".TH pre-deploy 1"),
        "{}",
        &page[..page.len().min(400)]
    );
    for cmd in [
        "run",
        "backup",
        "list",
        "show",
        "verify",
        "check",
        "status",
        "prune",
        "pin",
        "unpin",
        "doctor",
        "restore",
        "report",
        "config",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("pre\\-deploy\\-{cmd}(1)")),
            "{cmd} missing from the man page"
        );
    }
}
