//! Several projects in one config, walked by one cron line: `backup --all`, `verify --all` and
//! `status`, against a real PostgreSQL. One project's failure does not stop the others, the
//! summary and the exit code say which failed.

use std::path::Path;

use predeploy_tests::{PgServer, pre_deploy, run, unused_port};

/// A database with a table of `rows` rows.
fn database(server: &PgServer, prefix: &str, rows: u32) -> String {
    let db = server.create_database(prefix);
    server.psql(
        &db,
        &format!("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, {rows}) g"),
    );
    db
}

/// The platform: `shop` (production and staging) inline, `blog` from projects.d, and `broken`,
/// whose server does not exist.
fn platform(dir: &Path, server: &PgServer) {
    let shop = database(server, "shopprod", 30);
    let shop_staging = database(server, "shopstg", 20);
    let blog = database(server, "blog", 10);
    let store = dir.join("store");
    std::fs::write(
        dir.join("predeploy.toml"),
        format!(
            r#"store = "{store}"
projects_dir = "projects.d"

[verify]
level = "restore"

[project.shop.env.production.sources]
db = "{shop}"
[project.shop.env.staging.sources]
db = "{shop_staging}"

[project.broken.sources]
db = "postgres://nobody@127.0.0.1:{port}/gone?connect_timeout=2"
"#,
            store = store.display(),
            shop = server.url(&shop),
            shop_staging = server.url(&shop_staging),
            port = unused_port(),
        ),
    )
    .expect("config");
    std::fs::create_dir(dir.join("projects.d")).expect("projects.d");
    std::fs::write(
        dir.join("projects.d/blog.toml"),
        format!("[sources]\ndb = \"{}\"\n", server.url(&blog)),
    )
    .expect("blog");
}

fn tool(dir: &Path) -> std::process::Command {
    let mut cmd = pre_deploy();
    cmd.current_dir(dir);
    cmd
}

/// `(project, environment) → result` of a `--json` summary.
fn result<'a>(v: &'a serde_json::Value, project: &str, env: &str) -> &'a serde_json::Value {
    v["results"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|x| x["project"] == project && x["environment"] == env)
        })
        .unwrap_or_else(|| panic!("no result for {project}/{env}: {v:#}"))
}

#[test]
fn backup_all_backs_up_every_project_and_environment_and_one_failure_stops_none() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    platform(dir.path(), server);

    let out = run(tool(dir.path()).args(["backup", "--all", "--json"]));
    out.assert_code(5);
    let v = out.json();
    assert_eq!(v["ok"], false, "{v:#}");
    assert_eq!(v["exit_code"], 5, "the first failure's code: {v:#}");
    let broken = result(&v, "broken", "default");
    assert_eq!(broken["ok"], false);
    assert_eq!(broken["exit_code"], 5);
    assert!(
        broken["error"].as_str().unwrap_or("").contains("db"),
        "names the source: {broken}"
    );
    for (project, env) in [
        ("shop", "production"),
        ("shop", "staging"),
        ("blog", "default"),
    ] {
        let r = result(&v, project, env);
        assert_eq!(r["ok"], true, "{project}/{env}: {r}");
        assert_eq!(r["level_reached"], "restore", "{project}/{env}: {r}");
    }

    // Each project lives under the top-level store, in its own directory, each environment in
    // its own group; the backups are scheduled ones.
    let listed =
        run(tool(dir.path()).args(["list", "--json", "--project", "shop", "--env", "production"]));
    listed.assert_success();
    let list = listed.json();
    let ids: Vec<&str> = list["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [result(&v, "shop", "production")["id"]
            .as_str()
            .unwrap_or("")]
    );
    assert_eq!(list["backups"][0]["kind"], "scheduled", "{list:#}");
    assert!(dir.path().join("store/shop").is_dir(), "shop's own store");
    assert!(dir.path().join("store/blog").is_dir(), "blog's own store");

    // The text summary names the failed pair.
    let out = run(tool(dir.path()).args(["backup", "--all", "--project", "broken"]));
    out.assert_code(5);
    out.assert_stderr_contains("0 of 1 passed");
    out.assert_stderr_contains("FAILED  broken/default  exit 5");
}

#[test]
fn status_fails_for_a_stale_or_missing_project_and_verify_all_walks_them_all() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    platform(dir.path(), server);
    run(tool(dir.path()).args(["backup", "--all", "--project", "shop"])).assert_success();
    run(tool(dir.path()).args(["backup", "--all", "--project", "blog"])).assert_success();

    // `broken` has never stored a backup: status fails naming it (its store does not even
    // exist: exit 5); the others are fine.
    let out = run(tool(dir.path()).args(["status", "--max-age", "26h", "--json"]));
    out.assert_code(5);
    let v = out.json();
    let broken = result(&v, "broken", "default");
    assert_eq!(broken["ok"], false, "{v:#}");
    assert!(
        broken["error"]
            .as_str()
            .unwrap_or("")
            .contains("no backup has been stored there"),
        "{broken}"
    );
    assert_eq!(result(&v, "shop", "production")["ok"], true, "{v:#}");
    assert_eq!(result(&v, "blog", "default")["ok"], true, "{v:#}");

    let out = run(tool(dir.path()).args(["status", "--project", "shop"]));
    out.assert_success();
    assert!(
        out.stdout.contains("ok      shop/production") && out.stdout.contains("shop/staging"),
        "{}",
        out.stdout
    );
    // shop's backups are older than a second: blog's backup with its test restore, and the
    // status runs above, came after them.
    let out = run(tool(dir.path()).args(["status", "--project", "shop", "--max-age", "1s"]));
    out.assert_code(7);
    assert!(
        out.stdout.contains("FAILED  shop/production"),
        "{}",
        out.stdout
    );

    let out = run(tool(dir.path()).args(["verify", "--all", "--project", "shop", "--json"]));
    out.assert_success();
    let v = out.json();
    for env in ["production", "staging"] {
        let r = result(&v, "shop", env);
        let records = r["verifications"].as_array().expect("records");
        assert_eq!(records.len(), 1, "{r}");
        assert_eq!(records[0]["passed"], true, "{r}");
        assert_eq!(records[0]["level_reached"], "restore", "{r}");
    }
}
