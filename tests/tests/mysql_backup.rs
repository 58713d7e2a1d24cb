//! MySQL/MariaDB sources against a real MariaDB server: a backup that verifies to level 4 with
//! exact row counts, an independent restore of the dump that equals the source, and every
//! failure class with its exit code.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use predeploy_tests::mysql::{FakeMariaDbDump, MariaDbServer, fake_dump_dir, table_hashes};
use predeploy_tests::{Output, pre_deploy, run, unused_port};

const VARIED: &str = include_str!("../fixtures/mysql_varied.sql");

fn varied_database(server: &MariaDbServer) -> String {
    let db = server.create_database("varied");
    server.sql_script(&db, VARIED.as_bytes());
    db
}

fn backup(store: &Path, url: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = pre_deploy();
    cmd.args(["backup", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// The committed backups' manifests.
fn manifests(store: &Path) -> Vec<serde_json::Value> {
    let Ok(dirs) = std::fs::read_dir(store.join("backups")) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read(d.path().join("manifest.json")).ok())
        .map(|b| serde_json::from_slice(&b).expect("manifest JSON"))
        .collect()
}

fn only_manifest(store: &Path) -> serde_json::Value {
    let mut all = manifests(store);
    assert_eq!(all.len(), 1, "one committed backup");
    all.remove(0)
}

fn dump_path(store: &Path, manifest: &serde_json::Value) -> PathBuf {
    store.join(
        manifest["sources"][0]["artifacts"][0]["key"]
            .as_str()
            .expect("artifact key"),
    )
}

fn decompressed_dump(store: &Path, manifest: &serde_json::Value) -> Vec<u8> {
    let file = std::fs::File::open(dump_path(store, manifest)).expect("open the dump");
    let mut out = Vec::new();
    zstd::Decoder::new(file)
        .expect("zstd")
        .read_to_end(&mut out)
        .expect("decompress the dump");
    out
}

/// `table → rows` of a database.
fn counts(server: &MariaDbServer, db: &str) -> Vec<(String, u64)> {
    let tables = server.sql(
        db,
        "SELECT table_name FROM information_schema.TABLES WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
    );
    tables
        .lines()
        .map(|t| {
            let n = server.sql(
                db,
                &format!("SELECT COUNT(*) FROM `{}`", t.replace('`', "``")),
            );
            (t.to_owned(), n.trim().parse().expect("a count"))
        })
        .collect()
}

fn manifest_counts(manifest: &serde_json::Value) -> Vec<(String, u64)> {
    manifest["sources"][0]["stats"]["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_owned(),
                t["rows"].as_u64().expect("rows"),
            )
        })
        .collect()
}

/// `SHOW CREATE TABLE` of every table, views, triggers, routines and events, with the database
/// name taken out.
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

#[test]
fn a_mariadb_backup_verifies_to_level_4_with_the_exact_counts_and_restores_to_the_same_data() {
    let server = MariaDbServer::shared();
    let db = varied_database(server);
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &server.url(&db), &[]);
    out.assert_success();
    assert!(
        out.stderr.contains("verified") && out.stderr.contains("to level 4 (restore)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(server.password()) && !out.stdout.contains(server.password()));

    let manifest = only_manifest(store.path());
    let source = &manifest["sources"][0];
    assert_eq!(source["kind"], "mysql");
    assert!(
        source["server_version"]
            .as_str()
            .expect("version")
            .starts_with("MariaDB ")
    );
    assert!(
        source["tool_version"]
            .as_str()
            .expect("tool")
            .contains("mariadb-dump")
    );
    assert_eq!(source["flavour"], "MariaDB");
    assert_eq!(source["counts"], "dump-snapshot", "{source:#}");
    assert!(
        source["gtid"].is_string() && source["binlog_file"].is_string(),
        "{source:#}"
    );
    assert!(!source.to_string().contains(server.password()));
    assert_eq!(manifest_counts(&manifest), counts(server, &db));
    assert!(manifest_counts(&manifest).contains(&("orders".to_owned(), 2001)));

    // The level-3 and level-4 findings are in the verification record.
    let id = manifest["id"].as_str().expect("id");
    let verify_dir = store.path().join("backups").join(id).join("verify");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(&verify_dir)
                .expect("verification records")
                .flatten()
                .next()
                .expect("a record")
                .path(),
        )
        .expect("read the record"),
    )
    .expect("record JSON");
    for check in [
        "mysql-dump-complete",
        "mysql-dump-tables",
        "mysql-restore",
        "row-counts",
        "schema-fingerprint",
    ] {
        let f = predeploy_tests::cli::finding(&record, check);
        assert_eq!(f["status"], "passed", "{f:#}");
    }

    // Restored independently with the mariadb client into a new database: same content and
    // schema.
    let sql = decompressed_dump(store.path(), &manifest);
    assert!(
        String::from_utf8_lossy(&sql)
            .trim_end()
            .ends_with("-- Dump completed")
    );
    let copy = server.create_database("copy");
    server.sql_script(&copy, &sql);
    assert_eq!(table_hashes(server, &copy), table_hashes(server, &db));
    assert_eq!(schema(server, &copy), schema(server, &db));
    let emoji = server.sql(&copy, "SELECT name FROM customers WHERE id = 4");
    assert_eq!(emoji.trim(), "中文 名前 🚀🎉");
}

#[test]
fn the_password_reaches_the_dump_tool_only_through_a_private_option_file() {
    let server = MariaDbServer::shared();
    let db = varied_database(server);
    let store = tempfile::tempdir().expect("store");
    let tools = fake_dump_dir(FakeMariaDbDump::LogsArguments);
    let out = backup(
        store.path(),
        &server.url(&db),
        &[("PREDEPLOY_MYSQL_BINDIR", tools.path())],
    );
    out.assert_success();
    let log = std::fs::read_to_string(tools.path().join("args.log")).expect("args.log");
    assert!(!log.contains(server.password()), "{log}");
    assert!(log.contains("argv: --defaults-extra-file="), "{log}");
    assert!(
        log.contains("mode: 600") && log.contains("has password"),
        "{log}"
    );
    let file = log
        .lines()
        .find_map(|l| l.strip_prefix("file: "))
        .expect("the option file's path");
    assert!(!Path::new(file).exists(), "the option file is removed");
}

#[test]
fn without_the_reload_privilege_the_counts_are_taken_after_and_the_manifest_says_so() {
    let server = MariaDbServer::shared();
    let db = server.create_database("limited");
    server.sql(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c');",
    );
    let user = format!("lim_{db}");
    server.sql(
        "",
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'limited-pw'; \
             GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{db}`.* TO '{user}'@'%';"
        ),
    );
    let store = tempfile::tempdir().expect("store");
    let out = backup(
        store.path(),
        &server.url_with(&user, "limited-pw", &db),
        &[],
    );
    out.assert_success();
    let doctor = run(pre_deploy()
        .args(["doctor", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url_with(&user, "limited-pw", &db))));
    doctor.assert_success();
    let said = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(said.contains("GRANT RELOAD, PROCESS ON *.*"), "{said}");
    let manifest = only_manifest(store.path());
    let source = &manifest["sources"][0];
    assert_eq!(source["counts"], "after-dump", "{source:#}");
    assert!(
        source.get("gtid").is_none() && source.get("binlog_file").is_none(),
        "{source:#}"
    );
    let notes = source["notes"].to_string();
    assert!(
        notes.contains("RELOAD") && notes.contains("may differ"),
        "{notes}"
    );
    assert_eq!(manifest_counts(&manifest), vec![("t".to_owned(), 3)]);
}

#[test]
fn a_wrong_password_is_refused_with_exit_5_without_printing_it() {
    let server = MariaDbServer::shared();
    let db = server.create_database("wrongpw");
    let store = tempfile::tempdir().expect("store");
    let wrong = "not-the-Password-42";
    let out = backup(store.path(), &server.url_with("predeploy", wrong, &db), &[]);
    out.assert_code(5);
    assert!(out.stderr.contains("Access denied"), "{}", out.stderr);
    assert!(
        !out.stderr.contains(wrong) && !out.stdout.contains(wrong),
        "{}",
        out.stderr
    );
    assert!(manifests(store.path()).is_empty());
}

#[test]
fn a_server_that_is_down_is_refused_with_exit_5() {
    let store = tempfile::tempdir().expect("store");
    let url = format!(
        "mysql://predeploy:secret-pw@127.0.0.1:{}/app",
        unused_port()
    );
    let out = backup(store.path(), &url, &[]);
    out.assert_code(5);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    assert!(!out.stderr.contains("secret-pw"), "{}", out.stderr);
    assert!(manifests(store.path()).is_empty());
}

#[test]
fn a_dump_tool_that_dies_or_stops_short_is_refused_with_exit_3_and_no_manifest() {
    let server = MariaDbServer::shared();
    let db = varied_database(server);
    for (fake, says) in [
        (FakeMariaDbDump::KilledMidStream, "killed by signal 9"),
        (FakeMariaDbDump::CutShort, "-- Dump completed"),
    ] {
        let store = tempfile::tempdir().expect("store");
        let tools = fake_dump_dir(fake);
        let out = backup(
            store.path(),
            &server.url(&db),
            &[("PREDEPLOY_MYSQL_BINDIR", tools.path())],
        );
        out.assert_code(3);
        out.assert_stderr_contains(says);
        assert!(manifests(store.path()).is_empty(), "{fake:?}: no manifest");
    }
}

#[test]
fn a_truncated_artifact_is_caught_by_verify_with_exit_4() {
    let server = MariaDbServer::shared();
    let db = varied_database(server);
    let store = tempfile::tempdir().expect("store");
    backup(store.path(), &server.url(&db), &[]).assert_success();
    let manifest = only_manifest(store.path());
    let id = manifest["id"].as_str().expect("id").to_owned();
    let path = dump_path(store.path(), &manifest);
    let bytes = std::fs::read(&path).expect("read the dump");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let out = run(pre_deploy()
        .args(["verify", &id, "--store"])
        .arg(store.path()));
    out.assert_code(4);
}

#[test]
fn a_dump_cut_short_but_well_compressed_is_caught_at_level_3() {
    use sha2::Digest as _;
    let server = MariaDbServer::shared();
    let db = varied_database(server);
    let store = tempfile::tempdir().expect("store");
    backup(store.path(), &server.url(&db), &[]).assert_success();
    let manifest = only_manifest(store.path());
    let id = manifest["id"].as_str().expect("id").to_owned();
    // Cut the SQL inside the data, re-compress it whole, and make the manifest agree with the
    // new bytes: levels 1 and 2 pass, only reading the dump reveals it.
    let sql = decompressed_dump(store.path(), &manifest);
    let cut = &sql[..sql.len() * 2 / 3];
    let stored = zstd::encode_all(cut, 3).expect("compress");
    std::fs::write(dump_path(store.path(), &manifest), &stored).expect("write");
    let manifest_path = store.path().join("backups").join(&id).join("manifest.json");
    let mut m = manifest.clone();
    let a = &mut m["sources"][0]["artifacts"][0];
    a["stored_size"] = serde_json::json!(stored.len());
    a["raw_size"] = serde_json::json!(cut.len());
    a["sha256"] = serde_json::json!(format!("sha256:{:x}", sha2::Sha256::digest(&stored)));
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).expect("json")).expect("write");
    let out = run(pre_deploy()
        .args(["verify", &id, "--json", "--store"])
        .arg(store.path()));
    out.assert_code(4);
    assert!(
        out.stdout
            .contains("ends inside an INSERT statement: it is truncated"),
        "{}",
        out.stdout
    );
}

#[test]
fn counts_describe_the_dumped_data_while_the_database_is_written() {
    let server = MariaDbServer::shared();
    let db = server.create_database("busy");
    server.sql_script(
        &db,
        b"CREATE TABLE filler (id INT PRIMARY KEY, v CHAR(64));
          INSERT INTO filler SELECT seq, SHA2(seq, 256) FROM seq_1_to_60000;
          CREATE TABLE events (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB;
          DELIMITER //
          CREATE PROCEDURE churn() BEGIN DECLARE i INT DEFAULT 0;
            WHILE i < 200000 DO INSERT INTO events (v) VALUES (i); SET i = i + 1; END WHILE; END//
          DELIMITER ;
",
    );
    // One autocommitted insert after another, all through the backup.
    let mut writer = server
        .client(&db)
        .args(["-e", "CALL churn()"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the writer");
    assert!(
        predeploy_tests::pg::wait_until(std::time::Duration::from_secs(30), || {
            server.sql(&db, "SELECT COUNT(*) FROM events").trim() != "0"
        }),
        "the writer never wrote"
    );
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &server.url(&db), &[]);
    let still_writing = writer.try_wait().expect("writer status").is_none();
    let _ = writer.kill();
    let _ = writer.wait();
    out.assert_success();
    assert!(still_writing, "the writer ran through the whole backup");
    let manifest = only_manifest(store.path());
    assert_eq!(manifest["sources"][0]["counts"], "dump-snapshot");
    // Level 3 compared the dump's rows with the counts exactly (the backup verified); the dump
    // restored elsewhere has the counted rows too.
    let counted = manifest_counts(&manifest);
    let copy = server.create_database("busycopy");
    server.sql_script(&copy, &decompressed_dump(store.path(), &manifest));
    assert_eq!(counts(server, &copy), counted);
    let now = server.sql(&db, "SELECT COUNT(*) FROM events");
    let events = counted
        .iter()
        .find(|(t, _)| t == "events")
        .expect("events")
        .1;
    assert!(
        events > 0 && events < now.trim().parse::<u64>().expect("count"),
        "{events} {now}"
    );
}

#[test]
fn a_missing_dump_tool_is_refused_with_exit_5_naming_the_package() {
    let server = MariaDbServer::shared();
    let db = server.create_database("notool");
    let store = tempfile::tempdir().expect("store");
    let empty = tempfile::tempdir().expect("empty tool dir");
    let out = backup(
        store.path(),
        &server.url(&db),
        &[("PREDEPLOY_MYSQL_BINDIR", empty.path())],
    );
    out.assert_code(5);
    out.assert_stderr_contains("mariadb-dump");
    out.assert_stderr_contains("mariadb-client");
    assert!(manifests(store.path()).is_empty());
}

#[test]
fn a_database_that_does_not_exist_is_refused_with_exit_5_before_anything_is_written() {
    let server = MariaDbServer::shared();
    let store = tempfile::tempdir().expect("store");
    let out = backup(store.path(), &server.url("no_such_db"), &[]);
    out.assert_code(5);
    out.assert_stderr_contains("no_such_db");
    assert!(!out.stderr.contains(server.password()));
    assert!(manifests(store.path()).is_empty());
}

#[test]
fn a_socket_url_and_a_password_from_my_cnf_work() {
    let server = MariaDbServer::shared();
    let db = server.create_database("sock");
    server.sql(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1),(2);",
    );
    let home = tempfile::tempdir().expect("home");
    std::fs::write(
        home.path().join(".my.cnf"),
        format!(
            "[client]\nuser=predeploy\npassword=\"{}\"\n",
            server.password()
        ),
    )
    .expect("write .my.cnf");
    let store = tempfile::tempdir().expect("store");
    let url = format!(
        "mysql://predeploy@localhost/{db}?socket={}",
        server.socket().display()
    );
    let out = run(pre_deploy()
        .env("HOME", home.path())
        .args(["backup", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={url}")));
    out.assert_success();
    let manifest = only_manifest(store.path());
    assert_eq!(manifest_counts(&manifest), vec![("t".to_owned(), 2)]);
    assert!(!manifest.to_string().contains(server.password()));
}

#[test]
fn a_long_running_write_never_stalls_the_application_behind_the_read_lock() {
    // A server of its own: the global read lock it holds off would hold off every other
    // test's backup on a shared one.
    let server = &MariaDbServer::start();
    let db = server.create_database("busy");
    server.sql(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0), (2, 0);",
    );
    let store = tempfile::tempdir().expect("store");
    // Built before the long statement starts (the first use builds the binary).
    let _ = predeploy_tests::cli::binary();
    // A write statement that runs for minutes: FLUSH TABLES WITH READ LOCK waits for it, and
    // every other write of the application would queue behind that wait.
    let mut blocker = server
        .client(&db)
        .args(["-e", "UPDATE t SET v = SLEEP(600) WHERE id = 1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the long statement");
    let running = || {
        server.sql(
            "",
            "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE t SET v = SLEEP%'",
        )
    };
    assert!(
        predeploy_tests::pg::wait_until(std::time::Duration::from_secs(20), || !running()
            .trim()
            .is_empty()),
        "the long statement did not start"
    );
    let out = backup(store.path(), &server.url(&db), &[]);
    let still_running = running();
    for id in still_running.split_whitespace() {
        server.sql("", &format!("KILL {id}"));
    }
    let _ = blocker.kill();
    let _ = blocker.wait();
    assert!(
        !still_running.trim().is_empty(),
        "the long statement ended before the backup did: the test proves nothing"
    );
    out.assert_success();
    let manifest = only_manifest(store.path());
    let source = &manifest["sources"][0];
    assert_eq!(source["counts"], "after-dump", "{source:#}");
    let notes = source["notes"].to_string();
    assert!(
        notes.contains("kept the global read lock from being granted in time"),
        "{notes}"
    );
    assert_eq!(
        manifest_counts(&manifest),
        vec![("t".to_owned(), 2)],
        "the counts still describe the table"
    );
}
