//! MySQL/MariaDB level 4 and restores against a real MariaDB server: a test restore into a
//! scratch database that is always dropped, a damaged restore refused with exit 4 naming the
//! table, `pre-deploy restore` bringing a changed database back identical (content hashes and
//! schema compared independently of the tool), a failed restore or a failed check leaving the
//! target as it was, and `run --rollback-on-failure` undoing a failed migration, with the backup
//! in an S3 store.

use std::path::Path;
use std::time::Instant;

use predeploy_tests::mysql::{MariaDbServer, client_tool, table_hashes};
use predeploy_tests::restoring::{Paused, backups, restore_command};
use predeploy_tests::{MotoServer, Output, S3Server, pre_deploy, run};

const VARIED: &str = include_str!("../fixtures/mysql_varied.sql");

fn varied_database(server: &MariaDbServer, prefix: &str) -> String {
    let db = server.create_database(prefix);
    server.sql_script(&db, VARIED.as_bytes());
    db
}

fn backup(store: &Path, url: &str, level: &str, tools: Option<&Path>) -> Output {
    let mut cmd = pre_deploy();
    cmd.args(["backup", "--json", "--verify-level", level, "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"));
    if let Some(dir) = tools {
        cmd.env("PREDEPLOY_MYSQL_BINDIR", dir);
    }
    run(&mut cmd)
}

/// Databases of the server whose name contains `part`.
fn databases_containing(server: &MariaDbServer, part: &str) -> Vec<String> {
    server
        .sql(
            "",
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1",
        )
        .lines()
        .filter(|d| d.contains(part))
        .map(str::to_owned)
        .collect()
}

/// `SHOW CREATE TABLE` of every table (with its `AUTO_INCREMENT`), views, triggers, routines
/// and events, with the database name taken out.
fn schema(server: &MariaDbServer, db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in server
        .sql(
            db,
            "SELECT table_name FROM information_schema.TABLES WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
        .lines()
    {
        out.push(server.sql(db, &format!("SHOW CREATE TABLE `{}`", t.replace('`', "``"))));
    }
    for (what, sql) in [
        (
            "views",
            "SELECT table_name, view_definition FROM information_schema.VIEWS WHERE table_schema = DATABASE() ORDER BY 1",
        ),
        (
            "triggers",
            "SELECT trigger_name, event_manipulation, event_object_table, action_statement, action_timing FROM information_schema.TRIGGERS WHERE trigger_schema = DATABASE() ORDER BY 1",
        ),
        (
            "routines",
            "SELECT routine_name, routine_type, routine_definition FROM information_schema.ROUTINES WHERE routine_schema = DATABASE() ORDER BY 1",
        ),
        (
            "events",
            "SELECT event_name, event_definition, interval_value, interval_field, status FROM information_schema.EVENTS WHERE event_schema = DATABASE() ORDER BY 1",
        ),
    ] {
        out.push(format!(
            "{what}:\n{}",
            server.sql(db, sql).replace(&format!("`{db}`."), "")
        ));
    }
    out
}

/// Content and schema: what a restore must bring back.
fn state(
    server: &MariaDbServer,
    db: &str,
) -> (std::collections::BTreeMap<String, String>, Vec<String>) {
    (table_hashes(server, db), schema(server, db))
}

/// A shell command running `sql` on `db` with the real client (credentials in the harness's
/// option file).
fn client_command(server: &MariaDbServer, db: &str, sql: &str) -> String {
    format!(
        "{} --defaults-extra-file={} --database={db} -e \"{sql}\"",
        client_tool("mariadb").display(),
        server.client_cnf().display()
    )
}

/// A tool directory whose `mariadb-dump` is the real one and whose `mariadb` client runs the
/// real client, then `after` (a shell snippet; `$real` is the real client, `"$@"` its options).
fn tools_with_client(after: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("mdbclient")
        .tempdir()
        .expect("tool dir");
    std::os::unix::fs::symlink(client_tool("mariadb-dump"), dir.path().join("mariadb-dump"))
        .expect("link mariadb-dump");
    let script = format!(
        "#!/bin/sh\nreal=\"{}\"\n{after}\n",
        client_tool("mariadb").display()
    );
    let path = dir.path().join("mariadb");
    std::fs::write(&path, script).expect("write the fake client");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn finding_status(record: &serde_json::Value, check: &str) -> String {
    predeploy_tests::cli::finding(record, check)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn level_4_restores_the_varied_fixture_into_a_scratch_database_and_drops_it() {
    let server = MariaDbServer::shared();
    let db = varied_database(server, "lvl4");
    // A scratch database left by a run that was killed (its process is gone) is collected.
    let dead = format!("{db}__predeploy_verify_dead01");
    server.sql(
        "",
        &format!(
            "CREATE DATABASE `{dead}`; CREATE TABLE `{dead}`.__predeploy_label (info TEXT); \
             INSERT INTO `{dead}`.__predeploy_label VALUES ('{{\"owner\":\"pre-deploy\",\"host\":\"{}\",\"pid\":4194000}}')",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .expect("hostname")
                .trim()
        ),
    );
    let before = state(server, &db);
    let store = tempfile::tempdir().expect("store");
    let started = Instant::now();
    let out = backup(store.path(), &server.url(&db), "restore", None);
    let took = started.elapsed();
    out.assert_success();
    eprintln!("backup + levels 1-4 of the varied fixture took {took:?}");
    let json = out.json();
    let record = &json["verification"];
    for check in ["mysql-restore", "row-counts", "schema-fingerprint"] {
        assert_eq!(
            finding_status(record, check),
            "passed",
            "{check}: {record:#}"
        );
    }
    let restored = predeploy_tests::cli::finding(record, "mysql-restore")["message"].to_string();
    assert!(restored.contains("__predeploy_verify_"), "{restored}");
    assert!(
        databases_containing(server, &format!("{db}__predeploy_verify_")).is_empty(),
        "the scratch database and the dead run's leftover are dropped"
    );
    assert_eq!(state(server, &db), before, "the source is untouched");
    assert!(!out.stdout.contains(server.password()) && !out.stderr.contains(server.password()));
    // The manifest records the versioned fingerprint and the listing behind it.
    let source = &json["manifest"]["sources"][0];
    assert!(
        source["stats"]["schema_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("v1:sha256:")),
        "{source:#}"
    );
    assert_eq!(source["stats"]["object_counts"]["views"], 1, "{source:#}");
}

#[test]
fn a_test_restore_that_loses_a_row_or_changes_a_column_fails_level_4_naming_it() {
    let server = MariaDbServer::shared();
    let db = varied_database(server, "lvl4bad");
    for (after, names) in [
        (
            "\"$real\" \"$@\" || exit $?\n\"$real\" \"$@\" -e 'DELETE FROM orders ORDER BY id DESC LIMIT 1'",
            "table orders has 2000 rows in the restored copy, the backup recorded 2001",
        ),
        (
            "\"$real\" \"$@\" || exit $?\n\"$real\" \"$@\" -e 'ALTER TABLE customers MODIFY name VARCHAR(150) NOT NULL'",
            "column customers.name differs: the backup has 2 | varchar(100) | NO",
        ),
    ] {
        let tools = tools_with_client(after);
        let store = tempfile::tempdir().expect("store");
        let out = backup(
            store.path(),
            &server.url(&db),
            "restore",
            Some(tools.path()),
        );
        out.assert_code(4);
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(said.contains(names), "{names}: {said}");
        assert!(
            databases_containing(server, &format!("{db}__predeploy_verify_")).is_empty(),
            "the scratch database is dropped on failure too"
        );
    }
}

/// A backed-up varied database that was then changed the way a bad migration would; returns
/// the store, the database, its state at backup time and its changed state.
#[allow(clippy::type_complexity)]
fn backed_up_then_changed(
    server: &MariaDbServer,
    prefix: &str,
) -> (
    tempfile::TempDir,
    String,
    (std::collections::BTreeMap<String, String>, Vec<String>),
    (std::collections::BTreeMap<String, String>, Vec<String>),
) {
    let db = varied_database(server, prefix);
    let store = tempfile::tempdir().expect("store");
    backup(store.path(), &server.url(&db), "archive", None).assert_success();
    let backed_up = state(server, &db);
    server.sql_script(
        &db,
        b"DELETE FROM audit_log; ALTER TABLE customers ADD COLUMN nickname VARCHAR(20);
          UPDATE customers SET name = 'gone'; DROP VIEW order_totals; DROP TRIGGER orders_audit;
          INSERT INTO orders (customer_id, total, placed_at) SELECT id, 1, NOW(6) FROM customers LIMIT 1;
          CREATE TABLE added_by_migration (id INT PRIMARY KEY);",
    );
    let changed = state(server, &db);
    assert_ne!(changed, backed_up);
    (store, db, backed_up, changed)
}

#[test]
fn restore_brings_a_changed_database_back_identical_and_keeps_the_previous_tables() {
    let server = MariaDbServer::shared();
    let (store, db, backed_up, changed) = backed_up_then_changed(server, "rst");
    let started = Instant::now();
    let out = run(&mut restore_command(
        store.path(),
        &server.url(&db),
        &["last", "--yes"],
    ));
    out.assert_success();
    eprintln!("restore of the varied fixture took {:?}", started.elapsed());
    assert_eq!(
        state(server, &db),
        backed_up,
        "content, schema and AUTO_INCREMENT are back"
    );
    assert!(!out.stderr.contains(server.password()) && !out.stdout.contains(server.password()));
    // The previous tables are kept, with their triggers and views as they were.
    let kept = databases_containing(server, &format!("{db}__predeploy_before_"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    let mut kept_tables = table_hashes(server, &kept[0]);
    assert!(
        kept_tables.remove("__predeploy_label").is_some(),
        "the kept database says what it is"
    );
    assert_eq!(
        kept_tables, changed.0,
        "the kept database holds the changed data"
    );
    assert!(databases_containing(server, &format!("{db}__predeploy_restore_")).is_empty());
    // The changed state is in a verified safety backup.
    let list = backups(store.path(), "default");
    let kinds: Vec<&str> = list.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(kinds, vec!["safety", "manual"], "{list:?}");
    assert_eq!(list[0].2["passed"], true, "{list:?}");
    // Objects the restore recreated work: the trigger fires, the view and the routines run.
    let audited = server.sql(&db, "SELECT COUNT(*) FROM audit_log");
    server.sql(
        &db,
        "INSERT INTO orders (customer_id, total, placed_at) VALUES (1, 5, NOW(6))",
    );
    assert_ne!(server.sql(&db, "SELECT COUNT(*) FROM audit_log"), audited);
    server.sql(
        &db,
        "SELECT * FROM order_totals LIMIT 1; SELECT customer_total(1)",
    );
}

#[test]
fn a_restore_that_fails_before_the_swap_leaves_the_target_as_it_was() {
    let server = MariaDbServer::shared();
    let (store, db, _, changed) = backed_up_then_changed(server, "rstfail");
    // The client replays part of the dump, then fails.
    let tools = tools_with_client("head -c 30000 | \"$real\" \"$@\"\nexit 1");
    let out = run(
        restore_command(store.path(), &server.url(&db), &["last", "--yes"])
            .env("PREDEPLOY_MYSQL_BINDIR", tools.path()),
    );
    out.assert_code(8);
    out.assert_stderr_contains("the target database is untouched");
    assert_eq!(state(server, &db), changed, "the target is as it was");
    assert!(databases_containing(server, &format!("{db}__predeploy_restore_")).is_empty());
    assert!(databases_containing(server, &format!("{db}__predeploy_before_")).is_empty());
}

#[test]
fn a_check_that_fails_after_the_swap_swaps_back() {
    let server = MariaDbServer::shared();
    let (store, db, _, changed) = backed_up_then_changed(server, "rstback");
    let paused = Paused::start(
        restore_command(store.path(), &server.url(&db), &["last", "--yes"]),
        "after-swap",
    );
    // Someone writes into the swapped-in tables before the check: it sees a count that
    // differs from the backup's and swaps back.
    server.sql(&db, "INSERT INTO `empty table ü` VALUES (42, 'x')");
    paused.resume();
    let out = paused.wait();
    out.assert_code(8);
    out.assert_stderr_contains("empty table ü has 1 rows");
    out.assert_stderr_contains("swapped back");
    assert_eq!(state(server, &db), changed, "the target is as it was");
    assert!(databases_containing(server, &format!("{db}__predeploy_restore_")).is_empty());
    assert!(databases_containing(server, &format!("{db}__predeploy_before_")).is_empty());
}

#[test]
fn a_failed_deploy_is_rolled_back_through_the_same_restore() {
    let server = MariaDbServer::shared();
    let db = varied_database(server, "rbk");
    let before = state(server, &db);
    let store = tempfile::tempdir().expect("store");
    let script = format!(
        "{} && exit 3",
        client_command(
            server,
            &db,
            "DELETE FROM audit_log; ALTER TABLE orders ADD COLUMN shipped_note TEXT; DROP PROCEDURE mark_paid"
        )
    );
    let work = tempfile::tempdir().expect("workdir");
    let out = run(pre_deploy()
        .args(["run", "--rollback-on-failure", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .args(["--", "sh", "-c", &script])
        .current_dir(work.path()));
    out.assert_code(3);
    out.assert_stderr_contains("rolling back to backup");
    out.assert_stderr_contains("rollback done; exiting with the deploy command's code 3");
    assert_eq!(state(server, &db), before, "the data and schema are back");
}

#[test]
fn a_laravel_style_migration_that_fails_half_way_is_rolled_back_with_the_backup_in_s3() {
    let server = MariaDbServer::shared();
    let moto = MotoServer::shared();
    let bucket = moto.create_bucket("mysql-seed");
    let store_url = moto.url(&bucket, "app");
    let db = server.create_database("laravel");
    server.sql_script(
        &db,
        "CREATE TABLE migrations (id INT AUTO_INCREMENT PRIMARY KEY, migration VARCHAR(255), batch INT);
         INSERT INTO migrations (migration, batch) VALUES ('2014_10_12_000000_create_users_table', 1);
         CREATE TABLE users (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, name VARCHAR(255),
           email VARCHAR(255) UNIQUE, created_at TIMESTAMP NULL) ENGINE=InnoDB;
         INSERT INTO users (name, email, created_at)
           SELECT CONCAT('user ', seq, ' 🚀'), CONCAT('u', seq, '@example.com'), '2026-01-01 00:00:00'
           FROM seq_1_to_500;"
            .as_bytes(),
    );
    let before = state(server, &db);
    let work = tempfile::tempdir().expect("workdir");
    // The migration alters a table, records itself, then fails half-way.
    let migrate = work.path().join("migrate.sh");
    std::fs::write(
        &migrate,
        format!(
            "#!/bin/sh\nset -e\n{}\n{}\necho 'SQLSTATE[42S02]: Base table or view not found' >&2\nexit 1\n",
            client_command(
                server,
                &db,
                "ALTER TABLE users ADD COLUMN phone VARCHAR(20); UPDATE users SET phone = '555'"
            ),
            client_command(
                server,
                &db,
                "INSERT INTO migrations (migration, batch) VALUES ('2026_12_02_add_phone_to_users', 2)"
            ),
        ),
    )
    .expect("write migrate.sh");
    let mut cmd = pre_deploy();
    cmd.args(["run", "--rollback-on-failure", "--store", &store_url])
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .args(["--", "sh", "./migrate.sh"])
        .current_dir(work.path());
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    out.assert_code(1);
    out.assert_stderr_contains("rollback done; exiting with the deploy command's code 1");
    assert_eq!(state(server, &db), before, "the database is back exactly");
    // The pre-deploy backup and the safety backup of the failed state are in the bucket.
    let mut list = pre_deploy();
    list.args(["list", "--json", "--store", &store_url]);
    for (k, v) in moto.env() {
        list.env(k, v);
    }
    let listed = run(&mut list);
    listed.assert_success();
    let kinds: Vec<String> = listed.json()["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, vec!["safety", "pre-deploy"], "{}", listed.stdout);
}

#[test]
fn the_runbook_raw_commands_restore_the_backup_when_run_by_sh() {
    let server = MariaDbServer::shared();
    let (store, db, backed_up, changed) = backed_up_then_changed(server, "book");
    let out = run(pre_deploy()
        .args(["show", "last", "--json", "--store"])
        .arg(store.path()));
    out.assert_success();
    let v = out.json();
    let id = v["manifest"]["id"].as_str().expect("id").to_owned();
    let steps = v["runbook"]["steps"].as_array().expect("steps");
    let commands_of = |prefix: &str| -> Vec<String> {
        steps
            .iter()
            .find(|s| s["title"].as_str().unwrap_or("").starts_with(prefix))
            .unwrap_or_else(|| panic!("a step {prefix:?}: {steps:?}"))["commands"]
            .as_array()
            .expect("commands")
            .iter()
            .map(|c| c.as_str().expect("text").to_owned())
            .collect()
    };
    let with_tool = commands_of("Restore database db with pre-deploy");
    assert!(
        with_tool[0].starts_with(&format!("pre-deploy restore {id} --source db --store ")),
        "{with_tool:?}"
    );
    let raw = commands_of("Or without pre-deploy").join("\n");
    for part in ["sha256sum -c", "mariadb-dump", "zstd -dc", "| mariadb "] {
        assert!(raw.contains(part), "{part} in {raw}");
    }
    assert!(!raw.contains(server.password()), "{raw}");
    // Run as they are, with the password where the client looks for it.
    let home = tempfile::tempdir().expect("home");
    std::fs::write(
        home.path().join(".my.cnf"),
        format!("[client]\npassword=\"{}\"\n", server.password()),
    )
    .expect("write .my.cnf");
    let out = run(std::process::Command::new("sh")
        .args(["-e", "-c", &raw])
        .env("HOME", home.path()));
    out.assert_success();
    assert_eq!(
        state(server, &db),
        backed_up,
        "the raw commands restored it"
    );
    let before = format!("/tmp/predeploy-{id}-db-before.sql");
    let copy = server.create_database("bookcopy");
    server.sql_script(
        &copy,
        &std::fs::read(&before).expect("the dump of the changed state"),
    );
    assert_eq!(
        table_hashes(server, &copy),
        changed.0,
        "the changed state was saved first"
    );
    let _ = std::fs::remove_file(&before);
}

#[test]
fn a_stored_backup_reverifies_to_level_4() {
    let server = MariaDbServer::shared();
    let db = varied_database(server, "rever");
    let store = tempfile::tempdir().expect("store");
    backup(store.path(), &server.url(&db), "archive", None).assert_success();
    let out = run(pre_deploy()
        .args(["verify", "last", "--json", "--level", "restore", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db))));
    out.assert_success();
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("restored with exactly the 5006 rows"),
        "{said}"
    );
    assert!(databases_containing(server, &format!("{db}__predeploy_verify_")).is_empty());
}

#[test]
fn restoring_into_a_database_that_does_not_exist_creates_it_without_a_safety_backup() {
    let server = MariaDbServer::shared();
    let (store, db, backed_up, _) = backed_up_then_changed(server, "rstnew");
    let fresh = format!("{db}_fresh");
    let out = run(&mut restore_command(
        store.path(),
        &server.url(&db),
        &["last", "--yes", "--to", &server.url(&fresh)],
    ));
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "no safety backup needed: database {fresh} does not exist yet"
    ));
    assert_eq!(state(server, &fresh), backed_up);
    assert!(databases_containing(server, &format!("{fresh}__predeploy_")).is_empty());
}

#[test]
fn sigkill_before_the_swap_leaves_the_target_untouched_and_the_next_restore_cleans_up() {
    let server = MariaDbServer::shared();
    let (store, db, backed_up, changed) = backed_up_then_changed(server, "rstkill");
    let paused = Paused::start(
        restore_command(store.path(), &server.url(&db), &["last", "--yes"]),
        "restored",
    );
    paused.signal("KILL");
    let _ = paused.wait();
    assert_eq!(state(server, &db), changed, "the target is untouched");
    assert_eq!(
        databases_containing(server, &format!("{db}__predeploy_restore_")).len(),
        1,
        "the killed run's new database is left behind"
    );
    let out = run(&mut restore_command(
        store.path(),
        &server.url(&db),
        &["last", "--yes"],
    ));
    out.assert_success();
    out.assert_stderr_contains("left by a restore that died");
    assert_eq!(state(server, &db), backed_up);
    assert!(databases_containing(server, &format!("{db}__predeploy_restore_")).is_empty());
}

#[test]
fn level_4_goes_to_the_configured_restore_server() {
    let server = MariaDbServer::shared();
    let db = varied_database(server, "rurl");
    let store = tempfile::tempdir().expect("store");
    let out = run(pre_deploy()
        .args(["backup", "--json", "--verify-level", "restore", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .arg("--verify-restore-url")
        .arg(server.url("scratchhost")));
    out.assert_success();
    let json = out.json();
    let message = predeploy_tests::cli::finding(&json["verification"], "mysql-restore")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("scratchhost__predeploy_verify_"),
        "{message}"
    );
    assert!(!message.contains(server.password()), "{message}");
    assert!(databases_containing(server, "scratchhost__predeploy_verify_").is_empty());
    let timings = &json["verification"]["timings"];
    eprintln!("level timings of the varied fixture: {timings}");
}

#[test]
fn each_kind_of_database_gets_its_own_test_restore_server() {
    let server = MariaDbServer::shared();
    let db = varied_database(server, "mixed");
    let pg = predeploy_tests::pg::PgServer::shared();
    let pg_db = pg.create_database("mixed");
    pg.psql(
        &pg_db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 50);",
    );
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work dir");
    let out = run(pre_deploy()
        .current_dir(work.path())
        .args(["backup", "--json", "--verify-level", "restore", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("app={}", server.url(&db)))
        .arg("--source")
        .arg(format!("pg={}", pg.url(&pg_db)))
        .args(["--verify-restore-url", "local", "--verify-restore-url"])
        .arg(server.url("mixedscratch")));
    out.assert_success();
    let json = out.json();
    let verification = &json["verification"];
    assert_eq!(verification["level_reached"], "restore", "{verification:#}");
    let mysql = predeploy_tests::cli::finding(verification, "mysql-restore")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(mysql.contains("mixedscratch__predeploy_verify_"), "{mysql}");
    let postgres = predeploy_tests::cli::finding(verification, "pg-restore")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !postgres.contains(&format!(":{}/", pg.port())),
        "the PostgreSQL test restore went to the local cluster, not the source's server: {postgres}"
    );
    // Two servers for one kind of database are refused before anything runs.
    let out = run(pre_deploy()
        .current_dir(work.path())
        .args(["backup", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("app={}", server.url(&db)))
        .arg("--verify-restore-url")
        .arg(server.url("one"))
        .arg("--verify-restore-url")
        .arg(server.url("two")));
    out.assert_code(2);
    out.assert_stderr_contains("two servers for MySQL/MariaDB test restores");
    assert!(!out.stderr.contains(server.password()), "{}", out.stderr);
}

#[test]
fn a_user_who_may_not_create_the_scratch_database_gets_level_3_or_a_refusal_naming_the_privilege() {
    let server = MariaDbServer::shared();
    let db = varied_database(server, "nopriv");
    let user = format!("np_{db}");
    server.sql(
        "",
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'np-pw'; \
             GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS ON *.* TO '{user}'@'%';"
        ),
    );
    let url = server.url_with(&user, "np-pw", &db);
    // The default attempts level 4 and requires level 3: the backup passes, saying why.
    let store = tempfile::tempdir().expect("store");
    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}")));
    out.assert_success();
    let json = out.json();
    let restore = predeploy_tests::cli::finding(&json["verification"], "mysql-restore");
    assert_eq!(restore["status"], "skipped", "{restore:#}");
    let message = restore["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot create a scratch database") && message.contains("CREATE and DROP"),
        "{message}"
    );
    // Level 4 required: refused with exit 4, for the same reason.
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &url, "restore", None);
    out.assert_code(4);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("CREATE and DROP"), "{said}");
    assert!(!said.contains("np-pw"), "{said}");
}

#[test]
fn a_swap_blocked_by_a_session_holding_a_table_fails_in_bounded_time_and_leaves_the_target_as_it_was()
 {
    use std::io::Write as _;
    let server = MariaDbServer::shared();
    let (store, db, _, changed) = backed_up_then_changed(server, "rstlock");
    // A session outside the database (so not counted as connected to it) holds a table in an
    // open transaction: the swap cannot take it.
    let mut holder = server
        .client("")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the holding session");
    let mut stdin = holder.stdin.take().expect("stdin");
    writeln!(stdin, "BEGIN; SELECT COUNT(*) FROM `{db}`.orders;").expect("write");
    stdin.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = run(&mut restore_command(
        store.path(),
        &server.url(&db),
        &["last", "--yes"],
    ));
    drop(stdin);
    let _ = holder.wait();
    out.assert_code(8);
    out.assert_stderr_contains("the swap failed");
    // The server's lock wait ran out: the swap's own bound (30 s), not the server's default
    // of a year, since the test got here.
    out.assert_stderr_contains("Lock wait timeout");
    assert_eq!(state(server, &db), changed, "the target is as it was");
    assert!(databases_containing(server, &format!("{db}__predeploy_restore_")).is_empty());
    assert!(databases_containing(server, &format!("{db}__predeploy_before_")).is_empty());
}
