//! A parallel dump (`[postgres] dump_jobs`): pg_dump's directory format, each file stored as it
//! is written, proven by a parallel test restore, restored by `restore` and by the runbook's raw
//! commands to the same data, and refused whole when any file or pg_dump itself fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use predeploy_tests::cli::finding;
use predeploy_tests::encrypted::{Key, Work as EncryptedWork};
use predeploy_tests::fakes::{FakePgDump, PAUSED_MARKER, RESUME_MARKER, tool_dir};
use predeploy_tests::pg::wait_until;
use predeploy_tests::restoring::{content, damage, raw_commands, restore_command, small_database};
use predeploy_tests::{Output, PgServer, assert_same_database, fixtures, pre_deploy, run};

/// A working directory whose `predeploy.toml` asks for `jobs` dump workers, and a temp dir for
/// the run's own temp files (to see that none is left).
struct Work {
    dir: tempfile::TempDir,
    tmp: tempfile::TempDir,
    store: PathBuf,
}

impl Work {
    fn new(jobs: u32) -> Work {
        let dir = tempfile::tempdir().expect("workdir");
        std::fs::write(
            dir.path().join("predeploy.toml"),
            format!("[postgres]\ndump_jobs = {jobs}\n"),
        )
        .expect("config");
        let store = dir.path().join("store");
        Work {
            dir,
            tmp: tempfile::tempdir().expect("tmp"),
            store,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = pre_deploy();
        cmd.args(args)
            .arg("--store")
            .arg(&self.store)
            .env("TMPDIR", self.tmp.path())
            // A run killed with the lock held: the next one takes over its expired lease.
            .env("PREDEPLOY_LOCK_TTL", "3s")
            .env("PREDEPLOY_WAIT_LOCK", "120s")
            .current_dir(self.dir.path());
        cmd
    }

    fn backup(&self, url: &str, extra: &[&str]) -> Output {
        let source = format!("db={url}");
        let mut args = vec!["backup", "--json", "--source", &source];
        args.extend_from_slice(extra);
        run(&mut self.cmd(&args))
    }

    /// What the run left in its temp dir.
    fn temp_left(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp.path())
            .expect("tmp")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// The manifest's artifacts of source `db`: (name, format).
fn artifacts(backup: &serde_json::Value) -> Vec<(String, String)> {
    backup["manifest"]["sources"][0]["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().expect("name").to_owned(),
                a["format"].as_str().expect("format").to_owned(),
            )
        })
        .collect()
}

/// The stored files of the directory archive of backup `id`: `dump.d/<file>.zst`.
fn stored_files(store: &Path, id: &str) -> Vec<PathBuf> {
    let dir = store.join(format!("backups/{id}/data/db/dump.d"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn a_parallel_dump_is_proven_by_a_test_restore_and_restore_brings_the_database_back_identical() {
    let server = PgServer::shared();
    let db = server.create_database("pardump");
    fixtures::load_fidelity(server, &db);
    // A file-level copy of the original, to compare with after the restore replaced `db`.
    let reference = format!("{db}_ref");
    server.psql(
        "postgres",
        &format!("CREATE DATABASE {reference} TEMPLATE {db}"),
    );
    let work = Work::new(2);
    let out = work.backup(&server.url(&db), &[]);
    out.assert_success();
    let v = out.json();
    let record = &v["verification"];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    for check in [
        "schema-fingerprint",
        "row-counts",
        "privileges",
        "sequences",
    ] {
        assert_eq!(
            finding(record, check)["status"],
            "passed",
            "{check}: {record:#}"
        );
    }
    let arts = artifacts(&v);
    assert_eq!(arts[0].0, "dump.d/toc.dat.zst", "{arts:?}");
    let files: Vec<&(String, String)> = arts
        .iter()
        .filter(|(_, f)| f == "pg_dump-directory")
        .collect();
    // The fidelity database has dozens of tables and large objects: a file for each.
    assert!(files.len() > 10, "{arts:?}");
    assert!(
        !arts.iter().any(|(n, _)| n == "dump.pgc.zst"),
        "no custom-format archive besides: {arts:?}"
    );
    assert!(
        work.temp_left().is_empty(),
        "the dump's temp files are gone: {:?}",
        work.temp_left()
    );

    server.psql(
        &db,
        "DELETE FROM public.events WHERE id > 100; DROP VIEW app.account_emails; ALTER TABLE public.cars DROP COLUMN seats",
    );
    let restored = run(
        restore_command(&work.store, &server.url(&db), &["last", "--yes"])
            .current_dir(work.dir.path()),
    );
    restored.assert_success();
    assert_same_database(server, &db, server, &reference);
}

#[test]
fn the_runbooks_raw_commands_restore_a_parallel_dump_when_run_by_sh() {
    let server = PgServer::shared();
    let db = small_database(server, "parbook");
    let work = Work::new(2);
    let out = work.backup(&server.url(&db), &["--verify-level", "archive"]);
    out.assert_success();
    let backed_up = content(server, &db);
    damage(server, &db);

    let shown = run(&mut work.cmd(&["show", "last", "--json"]));
    shown.assert_success();
    let raw = predeploy_tests::cli::raw_runbook(&shown.stdout);
    assert!(raw.contains("dump.d/toc.dat.zst"), "{raw}");
    let out = run(&mut raw_commands(server, &raw));
    out.assert_success();
    assert_eq!(content(server, &db), backed_up, "the backup's data is back");
}

#[test]
fn a_missing_or_altered_file_of_a_parallel_dump_fails_verification_by_name_and_is_not_restored() {
    let server = PgServer::shared();
    let db = small_database(server, "pardamage");
    let work = Work::new(2);
    let out = work.backup(&server.url(&db), &["--verify-level", "archive"]);
    out.assert_success();
    let id = out.json()["id"].as_str().expect("id").to_owned();
    let files = stored_files(&work.store, &id);
    let data: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "toc.dat.zst"))
        .collect();
    assert!(data.len() >= 2, "a file per table: {files:?}");

    // One table's file altered: level 1 names it.
    let altered = data[0];
    let mut bytes = std::fs::read(altered).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(altered, bytes).expect("write");
    let name = format!(
        "db/dump.d/{}",
        altered.file_name().expect("name").to_string_lossy()
    );
    let out = run(&mut work.cmd(&["verify", &id, "--level", "archive"]));
    out.assert_code(4);
    out.assert_stderr_contains(&name);

    // Another one gone: named too, and `restore` refuses before touching the database.
    std::fs::remove_file(data[1]).expect("remove");
    let gone = format!(
        "db/dump.d/{}",
        data[1].file_name().expect("name").to_string_lossy()
    );
    let out = run(&mut work.cmd(&["verify", &id, "--level", "archive"]));
    out.assert_code(4);
    out.assert_stderr_contains(&gone);
    damage(server, &db);
    let changed = content(server, &db);
    let out = run(
        restore_command(&work.store, &server.url(&db), &[&id, "--yes"])
            .current_dir(work.dir.path()),
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    out.assert_stderr_contains("untouched");
    assert_eq!(content(server, &db), changed, "the target is untouched");
}

#[test]
fn a_parallel_dump_whose_pg_dump_fails_leaves_no_backup_no_stored_file_and_no_temp_files() {
    let server = PgServer::shared();
    let db = small_database(server, "parfail");
    let work = Work::new(2);
    let good = work.backup(&server.url(&db), &["--verify-level", "archive"]);
    good.assert_success();
    let good = good.json()["id"].as_str().expect("id").to_owned();

    // pg_dump writes every file (each is stored as it closes), then fails.
    let tools = tool_dir(FakePgDump::FailsAtTheEnd);
    let out = run(work
        .cmd(&["backup", "--source", &format!("db={}", server.url(&db))])
        .env("PREDEPLOY_PG_BINDIR", tools.path()));
    out.assert_code(3);
    out.assert_stderr_contains("simulated failure after the last file");
    let left: Vec<String> = std::fs::read_dir(work.store.join("backups"))
        .expect("backups")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [good.as_str()],
        "nothing of the failed backup is left"
    );
    assert!(
        work.temp_left().is_empty(),
        "the dump's temp files are gone: {:?}",
        work.temp_left()
    );
    run(&mut work.cmd(&["verify", &good, "--level", "archive"])).assert_success();
}

#[test]
fn an_encrypted_parallel_dump_is_proven_through_the_key_and_its_raw_commands_restore_it() {
    let server = PgServer::shared();
    let db = small_database(server, "parage");
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let work = EncryptedWork::new(&server.url(&db), &[&key], Some(&key));
    let config = work.path().join("predeploy.toml");
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str("\n[postgres]\ndump_jobs = 2\n");
    std::fs::write(&config, toml).expect("config");

    let out = work.run(&["backup", "--json"]);
    out.assert_success();
    let v = out.json();
    assert_eq!(v["verification"]["level_reached"], "restore", "{v:#}");
    let keys: Vec<&str> = v["manifest"]["sources"][0]["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter(|a| a["format"] == "pg_dump-directory")
        .map(|a| a["key"].as_str().expect("key"))
        .collect();
    assert!(keys.len() >= 3, "{keys:?}");
    assert!(keys.iter().all(|k| k.ends_with(".zst.age")), "{keys:?}");
    let backed_up = content(server, &db);
    damage(server, &db);

    let shown = work.run(&["show", "last", "--json"]);
    shown.assert_success();
    let raw = predeploy_tests::cli::raw_runbook(&shown.stdout);
    assert!(!raw.contains(&key.secret));
    let out = run(raw_commands(server, &raw).env("PREDEPLOY_AGE_IDENTITY_FILE", &key.file));
    out.assert_success();
    assert_eq!(content(server, &db), backed_up, "the backup's data is back");
}

#[test]
fn the_temp_directory_of_a_killed_parallel_dump_is_removed_by_the_next_one() {
    let server = PgServer::shared();
    let db = small_database(server, "parkill");
    let work = Work::new(2);
    // pg_dump writes its files, then waits: the run is killed with them on disk.
    let tools = tool_dir(FakePgDump::PausesUntilResumed);
    let mut child = work
        .cmd(&["backup", "--source", &format!("db={}", server.url(&db))])
        .env("PREDEPLOY_PG_BINDIR", tools.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pre-deploy starts");
    assert!(
        wait_until(std::time::Duration::from_secs(60), || tools
            .path()
            .join(PAUSED_MARKER)
            .exists()),
        "pg_dump has dumped and waits"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    std::fs::write(tools.path().join(RESUME_MARKER), "").expect("let the fake pg_dump end");
    assert!(
        work.temp_left()
            .iter()
            .any(|n| n.starts_with("predeploy-pgdump-")),
        "the killed run left its dump directory: {:?}",
        work.temp_left()
    );

    work.backup(&server.url(&db), &["--verify-level", "archive"])
        .assert_success();
    assert!(
        work.temp_left().is_empty(),
        "the next dump removed it: {:?}",
        work.temp_left()
    );
}
