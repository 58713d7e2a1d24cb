//! What a level-4 test restore of a MySQL/MariaDB dump must never do: act on the source
//! database (the dump tools write `ALTER DATABASE <source>` around routines whose collation
//! differs from the database's) or run the application's scheduled events in the scratch copy.
//! Against a MariaDB server of its own, with the general query log and the event scheduler on.

use predeploy_tests::mysql::MariaDbServer;
use predeploy_tests::{pre_deploy, run};

const SETUP: &str = "
CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(20));
INSERT INTO t VALUES (1, 'one'), (2, 'two');
-- A routine created while the database's default collation was another one: the dump brackets
-- it with ALTER DATABASE statements naming this database.
ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci;
CREATE PROCEDURE p() SELECT COUNT(*) FROM t;
ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
-- An enabled event that records, every second, in which database it ran.
CREATE EVENT tick ON SCHEDULE EVERY 1 SECOND DO INSERT INTO side_effects.hits VALUES (DATABASE());
";

#[test]
fn a_test_restore_never_alters_the_source_database_nor_runs_its_events() {
    let server = MariaDbServer::start();
    server.sql(
        "",
        "CREATE DATABASE side_effects; \
         CREATE TABLE side_effects.hits (db VARCHAR(64)); \
         SET GLOBAL event_scheduler = ON; \
         SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = ON",
    );
    let db = server.create_database("app");
    server.sql_script(&db, SETUP.as_bytes());
    let charset = |db: &str| {
        server.sql(
            "",
            &format!(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"
            ),
        )
    };
    let before = charset(&db);
    assert_eq!(before.trim(), "utf8mb4\tutf8mb4_general_ci");

    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work dir");
    let mut cmd = pre_deploy();
    cmd.current_dir(work.path())
        .args(["backup", "--verify-level", "restore", "--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)));
    let out = run(&mut cmd);
    out.assert_success();
    assert!(
        out.stderr.contains("to level 4 (restore)"),
        "{}",
        out.stderr
    );

    // The dump does bracket the routine with statements naming the source database...
    let dump = std::fs::read_dir(store.path().join("backups"))
        .expect("backups")
        .flatten()
        .next()
        .expect("a backup")
        .path();
    let artifact = std::fs::read_dir(dump.join("data/db"))
        .expect("data")
        .flatten()
        .find(|f| f.file_name().to_string_lossy().ends_with(".zst"))
        .expect("the dump");
    let sql = zstd::decode_all(std::fs::File::open(artifact.path()).expect("open")).expect("zstd");
    let sql = String::from_utf8_lossy(&sql);
    assert!(
        sql.contains(&format!("ALTER DATABASE `{db}` CHARACTER SET latin1")),
        "the dump tool no longer writes the statement this test is about"
    );
    // ...and the test restore ran none of them against it.
    let altered = server.sql(
        "",
        &format!(
            "SELECT COUNT(*) FROM mysql.general_log \
             WHERE CONVERT(argument USING utf8mb4) LIKE 'ALTER DATABASE `{db}`%'"
        ),
    );
    assert_eq!(
        altered.trim(),
        "0",
        "the test restore altered the source database"
    );
    assert_eq!(charset(&db), before);

    // The scratch copy's events never ran; the source's did (the scheduler is on).
    let ran = server.sql("", "SELECT DISTINCT db FROM side_effects.hits ORDER BY db");
    assert!(
        !ran.contains("__predeploy_verify_"),
        "an event ran in the scratch copy: {ran}"
    );
    server.sql("", "SET GLOBAL general_log = OFF");
}
