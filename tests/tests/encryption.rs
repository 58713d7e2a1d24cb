//! Encryption at rest (issue 16) against real servers: a PostgreSQL and a MariaDB backup
//! encrypted to age recipients, verified to level 4 through the key and restored; without a
//! key verification stops at level 1 and says why; a wrong key, a flipped byte and an identity
//! file others can read are refused with their exit codes; `verify --recovery-key` proves an
//! offline key and records which; the runbook's raw `age` commands restore; the secret key
//! appears in no output, no stored file and no process's argument list.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use predeploy_tests::cli::assert_level_4;
use predeploy_tests::encrypted::{Key, Work, contains, files};
use predeploy_tests::leaks::in_some_argv;
use predeploy_tests::mysql::MariaDbServer;
use predeploy_tests::restoring::{content, damage, small_database};
use predeploy_tests::{Output, PgServer, run};

/// Runs `cmd` while a thread samples every process's argv for `needle`; returns the output and
/// whether it was ever seen.
fn run_watching_argv(cmd: &mut Command, needle: &str) -> (Output, bool, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, samples, seen, needle) = (
            stop.clone(),
            samples.clone(),
            seen.clone(),
            needle.to_owned(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if in_some_argv(&needle) {
                    seen.store(true, Ordering::Relaxed);
                }
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = run(cmd);
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    (
        out,
        seen.load(Ordering::Relaxed),
        samples.load(Ordering::Relaxed),
    )
}

/// The stored artifacts of the newest backup, by key.
fn artifact_paths(work: &Work) -> Vec<PathBuf> {
    let manifest = work.manifest();
    manifest["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .flat_map(|s| s["artifacts"].as_array().cloned().unwrap_or_default())
        .map(|a| work.store().join(a["key"].as_str().expect("key")))
        .collect()
}

/// The raw commands of the runbook step "Or without pre-deploy" of `show last --json`.
fn raw_runbook(work: &Work) -> String {
    let out = work.run(&["show", "last", "--json"]);
    out.assert_success();
    predeploy_tests::cli::raw_runbook(&out.stdout)
}

#[test]
fn a_postgres_backup_is_encrypted_verified_to_level_4_through_the_key_and_restored() {
    let server = PgServer::shared();
    let db = small_database(server, "agert");
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let recovery = Key::new(keys.path(), "recovery.txt");
    let work = Work::new(&server.url(&db), &[&key, &recovery], Some(&key));
    let backed_up = content(server, &db);

    let (out, seen, samples) = run_watching_argv(
        work.cmd(&["-v", "-v", "backup", "--json"])
            .env("PREDEPLOY_LOG", "trace"),
        &key.secret,
    );
    assert_level_4(&out);
    assert!(samples > 10, "argv was sampled during the backup");
    assert!(!seen, "the secret key appeared in some process's argv");

    // The manifest is plaintext, says what can open the backup, and names no key.
    let manifest = work.manifest();
    assert_eq!(manifest["encryption"]["scheme"], "age", "{manifest:#}");
    assert_eq!(
        manifest["encryption"]["recipients"],
        serde_json::json!([key.fingerprint(), recovery.fingerprint()]),
        "{manifest:#}"
    );
    let artifacts = artifact_paths(&work);
    assert!(!artifacts.is_empty());
    for path in &artifacts {
        assert!(
            path.to_string_lossy().ends_with(".zst.age"),
            "{}",
            path.display()
        );
        let bytes = std::fs::read(path).expect("artifact");
        assert!(
            bytes.starts_with(b"age-encryption.org/v1"),
            "{} is an age file",
            path.display()
        );
        assert!(
            !contains(&bytes, "item 250"),
            "no plaintext row in {}",
            path.display()
        );
    }

    // `list` and `show` work with the manifest alone; `show` and `config` name the keys by
    // fingerprint.
    work.run(&["list"]).assert_success();
    let shown = run(work
        .cmd(&["show", "last"])
        .env("PREDEPLOY_AGE_IDENTITY_FILE", "/nonexistent/age-key.txt"));
    // A configured identity file that cannot be read is a configuration error (exit 2).
    shown.assert_code(2);
    let shown = work.run(&["show", "last"]);
    shown.assert_success();
    assert!(
        shown.stdout.contains("encrypted   age to") && shown.stdout.contains(&key.fingerprint()),
        "{}",
        shown.stdout
    );
    let config = work.run(&["config"]);
    config.assert_success();
    assert!(
        config.stdout.contains(&recovery.fingerprint()),
        "{}",
        config.stdout
    );
    assert!(!config.stdout.contains(&recovery.recipient) && !config.stdout.contains(&key.secret));

    // Restore through the key, after a bad "deploy".
    damage(server, &db);
    let restored = work.run(&["restore", "last", "--yes"]);
    restored.assert_success();
    assert_eq!(content(server, &db), backed_up, "the backup's data is back");

    // No secret anywhere: outputs, stored files (manifests, records, artifacts), the work dir.
    for text in [&out.stdout, &out.stderr, &restored.stdout, &restored.stderr] {
        assert!(!text.contains(&key.secret) && !text.contains(&recovery.secret));
    }
    for (path, bytes) in files(&work.store()).into_iter().chain(files(work.path())) {
        for secret in [&key.secret, &recovery.secret] {
            assert!(!contains(&bytes, secret), "a key is in {}", path.display());
        }
    }
}

#[test]
fn a_failed_deploy_is_rolled_back_through_encryption() {
    rolled_back_through_encryption("agerbk", false);
}

#[test]
fn a_failed_deploy_is_rolled_back_with_hidden_table_names() {
    rolled_back_through_encryption("agerbkhide", true);
}

/// `run --rollback-on-failure` of a deploy that deletes rows and fails puts the data back, and
/// the safety backup of the failed state is encrypted (and hides its tables) too.
fn rolled_back_through_encryption(prefix: &str, hide_table_names: bool) {
    let server = PgServer::shared();
    let db = small_database(server, prefix);
    let before = content(server, &db);
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let work = Work::new(&server.url(&db), &[&key], Some(&key));
    if hide_table_names {
        let config = work.path().join("predeploy.toml");
        let mut toml = std::fs::read_to_string(&config).expect("config");
        toml.push_str("hide_table_names = true\n");
        std::fs::write(&config, toml).expect("config");
    }
    let bad = format!(
        "{} -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d {db} -c 'DELETE FROM notes' && exit 3",
        server.bin_dir().join("psql").display(),
        server.socket_dir().display(),
        server.port()
    );
    let out = work.run(&[
        "run",
        "--verify-level",
        "archive",
        "--rollback-on-failure",
        "--",
        "sh",
        "-c",
        &bad,
    ]);
    out.assert_code(3);
    out.assert_stderr_contains("rollback done");
    assert_eq!(content(server, &db), before, "the data is back");
    // The safety backup of the failed state is encrypted too.
    let list = work.run(&["list", "--json"]);
    list.assert_success();
    let backups = list.json()["backups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(backups.len(), 2, "{backups:?}");
    for b in &backups {
        let shown = work.run(&["show", b["id"].as_str().expect("id"), "--json"]);
        shown.assert_success();
        let b = shown.json();
        let source = &b["manifest"]["sources"][0];
        assert_eq!(
            source["stats_encrypted"].as_bool().unwrap_or(false),
            hide_table_names,
            "{b:#}"
        );
        if hide_table_names {
            assert!(source["stats"].get("tables").is_none(), "{b:#}");
        }
    }
    for path in files(&work.store().join("backups")) {
        if path.0.to_string_lossy().contains("/data/") {
            assert!(
                path.1.starts_with(b"age-encryption.org/v1"),
                "{}",
                path.0.display()
            );
        }
    }
}

#[test]
fn without_an_identity_verification_stops_at_level_1_says_why_and_a_restore_is_refused() {
    let server = PgServer::shared();
    let db = small_database(server, "agenokey");
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let work = Work::new(&server.url(&db), &[&key], None);

    // The backup is taken and encrypted, but it cannot be verified past level 1 here: exit 4.
    let out = work.run(&["backup", "--json"]);
    out.assert_code(4);
    out.assert_stderr_contains("no age identity");
    // Level 1 alone, asked for explicitly, passes.
    let out = work.run(&["verify", "last", "--level", "checksum"]);
    out.assert_success();
    let out = work.run(&["verify", "last", "--level", "archive", "--json"]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("no age identity") || out.stdout.contains("no age identity"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );

    // A restore without a usable key is refused before the target is touched.
    damage(server, &db);
    let changed = content(server, &db);
    let out = work.run(&["restore", "last", "--yes"]);
    out.assert_code(4);
    out.assert_stderr_contains("no age identity");
    assert_eq!(content(server, &db), changed, "the target is untouched");

    // A key that is not a recipient: refused, named by fingerprint.
    let other = Key::new(keys.path(), "other.txt");
    let out = run(work
        .cmd(&["verify", "last"])
        .env("PREDEPLOY_AGE_IDENTITY_FILE", &other.file));
    out.assert_code(4);
    out.assert_stderr_contains("none of the identities");
    let out = run(work
        .cmd(&["restore", "last", "--yes"])
        .env("PREDEPLOY_AGE_IDENTITY_FILE", &other.file));
    out.assert_code(4);
    assert_eq!(content(server, &db), changed, "the target is untouched");

    // The right key through the variable opens it.
    let out = run(work
        .cmd(&["verify", "last", "--level", "archive"])
        .env("PREDEPLOY_AGE_IDENTITY_FILE", &key.file));
    out.assert_success();

    // An identity file group or others can read is a configuration error.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other.file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    let out = run(work
        .cmd(&["verify", "last"])
        .env("PREDEPLOY_AGE_IDENTITY_FILE", &other.file));
    out.assert_code(2);
    out.assert_stderr_contains("chmod 600");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(&other.secret));
    }
}

#[test]
fn a_flipped_byte_in_the_ciphertext_is_caught_at_level_1() {
    let server = PgServer::shared();
    let db = small_database(server, "ageflip");
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let work = Work::new(&server.url(&db), &[&key], Some(&key));
    work.run(&["backup", "--verify-level", "archive"])
        .assert_success();
    let dump = artifact_paths(&work)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("dump"))
        .expect("the dump");
    let mut bytes = std::fs::read(&dump).expect("dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, bytes).expect("write");
    let out = work.run(&["verify", "last", "--level", "checksum"]);
    out.assert_code(4);
    out.assert_stderr_contains("corrupted");
}

#[test]
fn verify_recovery_key_proves_an_offline_key_and_records_which() {
    let server = PgServer::shared();
    let db = small_database(server, "agercv");
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let recovery = Key::new(keys.path(), "recovery.txt");
    let work = Work::new(&server.url(&db), &[&key, &recovery], Some(&key));
    work.run(&["backup", "--verify-level", "archive"])
        .assert_success();

    let out = work.run(&[
        "verify",
        "last",
        "--level",
        "restore",
        "--json",
        "--recovery-key",
        &recovery.file.display().to_string(),
    ]);
    out.assert_success();
    let record = &out.json()["verifications"][0];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    assert_eq!(
        record["decrypted_with"],
        serde_json::json!([recovery.fingerprint()]),
        "{record:#}"
    );
    let text = work.run(&[
        "verify",
        "last",
        "--level",
        "archive",
        "--recovery-key",
        &recovery.file.display().to_string(),
    ]);
    text.assert_success();
    assert!(
        text.stdout.contains(&recovery.fingerprint()),
        "{}",
        text.stdout
    );

    // A key that is not a recipient proves nothing: exit 4, even though the configured key
    // would open the backup.
    let stranger = Key::new(keys.path(), "stranger.txt");
    let out = work.run(&[
        "verify",
        "last",
        "--level",
        "archive",
        "--recovery-key",
        &stranger.file.display().to_string(),
    ]);
    out.assert_code(4);
    out.assert_stderr_contains("none of the identities");
}

#[test]
fn the_runbook_raw_age_commands_restore_the_backup_when_run_by_bash() {
    let server = PgServer::shared();
    let db = small_database(server, "agebook");
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let work = Work::new(&server.url(&db), &[&key], Some(&key));
    work.run(&["backup", "--verify-level", "archive"])
        .assert_success();
    let backed_up = content(server, &db);
    damage(server, &db);

    let raw = raw_runbook(&work);
    assert!(raw.contains("age -d -i"), "{raw}");
    assert!(!raw.contains(&key.secret));
    let path = format!(
        "{}:{}",
        server.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Without the variable, the commands stop before changing anything.
    let out = run(Command::new("bash")
        .args(["-e", "-c", &raw])
        .env("PATH", &path)
        .env_remove("PREDEPLOY_AGE_IDENTITY_FILE")
        .env("PGHOST", server.socket_dir())
        .env("PGPORT", server.port().to_string())
        .env("PGUSER", "postgres"));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("PREDEPLOY_AGE_IDENTITY_FILE"),
        "{}",
        out.stderr
    );

    let out = run(Command::new("bash")
        .args(["-e", "-c", &raw])
        .env("PATH", &path)
        .env("PREDEPLOY_AGE_IDENTITY_FILE", &key.file)
        .env("PGHOST", server.socket_dir())
        .env("PGPORT", server.port().to_string())
        .env("PGUSER", "postgres"));
    out.assert_success();
    assert_eq!(
        content(server, &db),
        backed_up,
        "the raw commands restored it"
    );
}

#[test]
fn a_mariadb_backup_is_encrypted_verified_to_level_4_and_restored_through_the_key() {
    let server = MariaDbServer::shared();
    let db = server.create_database("agemy");
    server.sql(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40)); \
         INSERT INTO t VALUES (1, 'secret row one'), (2, 'secret row two'), (3, 'three');",
    );
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let work = Work::new(&server.url(&db), &[&key], Some(&key));
    let (out, seen, _) = run_watching_argv(&mut work.cmd(&["backup", "--json"]), &key.secret);
    assert_level_4(&out);
    assert!(!seen, "the secret key appeared in some process's argv");
    let manifest = work.manifest();
    assert_eq!(
        manifest["encryption"]["recipients"],
        serde_json::json!([key.fingerprint()])
    );
    for path in artifact_paths(&work) {
        let bytes = std::fs::read(&path).expect("artifact");
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(!contains(&bytes, "secret row one"));
    }
    let backed_up = predeploy_tests::mysql::table_hashes(server, &db);

    // `restore` decrypts with the configured key.
    server.sql(&db, "DELETE FROM t WHERE id = 1");
    assert_ne!(predeploy_tests::mysql::table_hashes(server, &db), backed_up);
    work.run(&["restore", "last", "--yes"]).assert_success();
    assert_eq!(
        predeploy_tests::mysql::table_hashes(server, &db),
        backed_up,
        "restored through the key"
    );

    // The runbook's raw commands decrypt with the age CLI.
    server.sql(&db, "UPDATE t SET v = 'changed'");
    let raw = raw_runbook(&work);
    assert!(raw.contains("age -d -i"), "{raw}");
    assert!(!raw.contains(&key.secret) && !raw.contains(server.password()));
    let home = tempfile::tempdir().expect("home");
    std::fs::write(
        home.path().join(".my.cnf"),
        format!("[client]\npassword=\"{}\"\n", server.password()),
    )
    .expect("write .my.cnf");
    let out = run(Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &raw])
        .env("HOME", home.path())
        .env("PREDEPLOY_AGE_IDENTITY_FILE", &key.file));
    out.assert_success();
    assert_eq!(
        predeploy_tests::mysql::table_hashes(server, &db),
        backed_up,
        "the raw commands restored it"
    );
    // They saved the state before the restore first; leave nothing behind in /tmp.
    for line in raw.lines() {
        if let Some(file) = line.split_whitespace().find_map(|w| {
            w.strip_prefix("'--result-file=")
                .or(w.strip_prefix("--result-file="))
        }) {
            let _ = std::fs::remove_file(file.trim_end_matches('\''));
        }
    }

    // An empty variable is no setting: the config file's identity is used.
    let out = run(work
        .cmd(&["verify", "last", "--level", "archive"])
        .env("PREDEPLOY_AGE_IDENTITY_FILE", ""));
    out.assert_success();
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(&key.secret));
    }
}

/// Every number and every string in a JSON document.
fn json_leaves(v: &serde_json::Value, numbers: &mut Vec<u64>, strings: &mut Vec<String>) {
    match v {
        serde_json::Value::Number(n) => numbers.extend(n.as_u64()),
        serde_json::Value::String(s) => strings.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_leaves(x, numbers, strings)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
            strings.push(k.clone());
            json_leaves(x, numbers, strings);
        }),
        _ => {}
    }
}

/// The manifest file of the newest backup, read raw from the store directory.
fn raw_manifest(work: &Work) -> (PathBuf, String) {
    let id = work.manifest()["id"].as_str().expect("id").to_owned();
    let (path, bytes) = files(&work.store())
        .into_iter()
        .find(|(p, _)| {
            p.to_string_lossy().contains(&id) && p.file_name().is_some_and(|n| n == "manifest.json")
        })
        .expect("the manifest file");
    (path, String::from_utf8(bytes).expect("utf-8"))
}

#[test]
fn hide_table_names_keeps_names_and_counts_out_of_the_plaintext_and_verifies_to_level_4() {
    const NAMES: [&str; 3] = ["zqpatient_records", "zqsalary_bands", "zqledger"];
    let server = PgServer::shared();
    let db = server.create_database("agehide");
    server.psql(
        &db,
        "CREATE SCHEMA zqledger;
         CREATE TABLE zqledger.zqpatient_records (id int PRIMARY KEY, note text);
         INSERT INTO zqledger.zqpatient_records SELECT g, 'record ' || g FROM generate_series(1, 1237) g;
         CREATE TABLE zqsalary_bands (id int PRIMARY KEY, band int);
         INSERT INTO zqsalary_bands SELECT g, g % 7 FROM generate_series(1, 4211) g;",
    );
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    // No identity in the configuration: commands get it through the variable, or go without.
    let work = Work::new(&server.url(&db), &[&key], None);
    let config = work.path().join("predeploy.toml");
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str("hide_table_names = true\n");
    std::fs::write(&config, toml).expect("config");
    let with_key =
        |args: &[&str]| run(work.cmd(args).env("PREDEPLOY_AGE_IDENTITY_FILE", &key.file));
    let backed_up = content(server, &db);

    let out = with_key(&["backup", "--json", "--verify-level", "restore"]);
    assert_level_4(&out);

    // The manifest as stored: no table name, no per-table count; the number of tables, their
    // total rows and a stats artifact instead.
    let (path, text) = raw_manifest(&work);
    for name in NAMES {
        assert!(
            !text.contains(name),
            "{name} in {}:\n{text}",
            path.display()
        );
    }
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    let (mut numbers, mut strings) = (Vec::new(), Vec::new());
    json_leaves(&manifest, &mut numbers, &mut strings);
    for count in [1237, 4211] {
        assert!(!numbers.contains(&count), "row count {count} in {text}");
    }
    let source = &manifest["sources"][0];
    assert_eq!(source["stats_encrypted"], true, "{text}");
    assert_eq!(source["stats"]["counted_tables"], 2, "{text}");
    assert_eq!(source["stats"]["counted_rows"], 1237 + 4211, "{text}");
    assert!(source["stats"].get("tables").is_none(), "{text}");
    let stats = source["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .find(|a| a["name"] == "stats.json.zst")
        .expect("a stats artifact");
    assert!(
        stats["key"].as_str().expect("key").ends_with(".age"),
        "{stats}"
    );
    // Nothing else in the store names a table either (records, the artifacts' ciphertext).
    for (path, bytes) in files(&work.store()) {
        for name in NAMES {
            assert!(!contains(&bytes, name), "{name} in {}", path.display());
        }
    }

    // `list` and `show` work without a key; `show` says the details are encrypted.
    work.run(&["list"]).assert_success();
    let shown = work.run(&["show", "last"]);
    shown.assert_success();
    assert!(
        shown.stdout.contains("2 tables, 5448 rows")
            && shown
                .stdout
                .contains("table names and row counts are encrypted"),
        "{}",
        shown.stdout
    );
    for name in NAMES {
        assert!(!shown.stdout.contains(name), "{}", shown.stdout);
    }
    // With the key, `show` decrypts them.
    let shown = with_key(&["show", "last"]);
    shown.assert_success();
    assert!(
        shown
            .stdout
            .contains("zqledger.zqpatient_records  1237 rows")
            && shown.stdout.contains("public.zqsalary_bands  4211 rows"),
        "{}",
        shown.stdout
    );

    // Without a key verification stops at level 1 and says why.
    work.run(&["verify", "last", "--level", "checksum"])
        .assert_success();
    let out = work.run(&["verify", "last", "--level", "restore"]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("no age identity") || out.stdout.contains("no age identity"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // With it, to level 4 again: the counts compared are those of the encrypted artifact.
    let out = with_key(&["verify", "last", "--level", "restore", "--json"]);
    out.assert_success();
    let record = &out.json()["verifications"][0];
    assert_eq!(record["level_reached"], "restore", "{record:#}");
    for check in ["row-counts", "pg-restore-toc"] {
        assert_eq!(
            predeploy_tests::cli::finding(record, check)["status"],
            "passed",
            "{record:#}"
        );
    }

    // A damaged stats artifact fails verification (level 1, its checksum).
    let stats_path = work.store().join(stats["key"].as_str().expect("key"));
    let mut bytes = std::fs::read(&stats_path).expect("stats artifact");
    let original = bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&stats_path, &bytes).expect("damage");
    with_key(&["verify", "last", "--level", "archive"]).assert_code(4);
    std::fs::write(&stats_path, &original).expect("repair");

    // Restore through the key, after a bad "deploy".
    server.psql(
        &db,
        "DELETE FROM zqsalary_bands WHERE id > 4000; UPDATE zqledger.zqpatient_records SET note = 'x';",
    );
    with_key(&["restore", "last", "--yes"]).assert_success();
    assert_eq!(content(server, &db), backed_up, "the backup's data is back");
}

#[test]
fn hide_table_names_with_mariadb_hides_names_in_counts_and_notes_and_restores() {
    const NAMES: [&str; 2] = ["zqmy_invoices", "zqmy_audit_trail"];
    let server = MariaDbServer::shared();
    let db = server.create_database("agehidemy");
    server.sql(
        &db,
        "CREATE TABLE zqmy_invoices (id INT PRIMARY KEY, v VARCHAR(40)); \
         INSERT INTO zqmy_invoices VALUES (1, 'one'), (2, 'two'), (3, 'three'); \
         CREATE TABLE zqmy_audit_trail (id INT PRIMARY KEY) ENGINE=MyISAM; \
         INSERT INTO zqmy_audit_trail VALUES (1), (2), (3), (4), (5), (6), (7);",
    );
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let work = Work::new(&server.url(&db), &[&key], Some(&key));
    let config = work.path().join("predeploy.toml");
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str("hide_table_names = true\n");
    std::fs::write(&config, toml).expect("config");

    let out = work.run(&["backup", "--json", "--verify-level", "restore"]);
    assert_level_4(&out);
    let (path, text) = raw_manifest(&work);
    for name in NAMES {
        assert!(
            !text.contains(name),
            "{name} in {}:\n{text}",
            path.display()
        );
    }
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    let source = &manifest["sources"][0];
    assert_eq!(source["stats_encrypted"], true, "{text}");
    assert_eq!(source["stats"]["counted_tables"], 2, "{text}");
    assert_eq!(source["stats"]["counted_rows"], 10, "{text}");
    // The note naming the MyISAM table keeps its sense, not the name.
    assert!(
        source["notes"].as_array().expect("notes").iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.starts_with("tables without transactions ([hidden])"))),
        "{text}"
    );
    for (path, bytes) in files(&work.store()) {
        for name in NAMES {
            assert!(!contains(&bytes, name), "{name} in {}", path.display());
        }
    }
    // With the key (configured here), `show` has the details back.
    let shown = work.run(&["show", "last"]);
    shown.assert_success();
    assert!(
        shown.stdout.contains("zqmy_audit_trail  7 rows"),
        "{}",
        shown.stdout
    );

    let backed_up = predeploy_tests::mysql::table_hashes(server, &db);
    server.sql(&db, "DELETE FROM zqmy_invoices WHERE id = 1");
    work.run(&["restore", "last", "--yes"]).assert_success();
    assert_eq!(
        predeploy_tests::mysql::table_hashes(server, &db),
        backed_up,
        "restored through the key"
    );
}
