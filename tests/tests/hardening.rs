//! Trust nothing the store says, and leak nothing a user typed (issue 14): a tampered manifest
//! cannot choose where a restore writes, cannot crash `list`, and mistyped or unusual URLs never
//! echo their secrets.

use std::path::Path;
use std::time::Duration;

use predeploy_tests::{pre_deploy, run};

/// A directory with two files, backed up into a local store; returns the backup id.
fn directory_backup(dir: &Path, store: &Path) -> String {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("a.txt"), b"alpha").expect("write");
    std::fs::write(files.join("b.txt"), b"beta").expect("write");
    let out = run(pre_deploy()
        .args(["backup", "--json", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("files=file://{}", files.display())));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["id"].as_str().expect("id").to_owned()
}

/// Rewrites the stored manifest of `id` with `change`.
fn tamper(store: &Path, id: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let path = store.join("backups").join(id).join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json");
    change(&mut m);
    std::fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
}

#[test]
fn a_restore_never_writes_to_a_location_read_from_the_store() {
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("store");
    let id = directory_backup(dir.path(), &store);
    let elsewhere = dir.path().join("chosen-by-the-store");
    tamper(&store, &id, |m| {
        m["sources"][0]["location"] = format!("file://{}", elsewhere.display()).into();
    });
    // No configured source of that name, no --to: the stored location is not a target.
    let out = run(pre_deploy()
        .args(["restore", "last", "--source", "files", "--yes", "--store"])
        .arg(&store));
    out.assert_code(2);
    out.assert_stderr_contains("not configured here: give the target with --to");
    assert!(!elsewhere.exists(), "nothing was written there");
}

#[test]
fn list_shows_a_manifest_with_a_non_ascii_commit() {
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("store");
    let id = directory_backup(dir.path(), &store);
    tamper(&store, &id, |m| {
        // Byte 12 falls inside a character: a byte slice there panics.
        m["deploy"]["commit"] = format!("a{}", "é".repeat(12)).into();
    });
    let out = run(pre_deploy().args(["list", "--store"]).arg(&store));
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("a{} ", "é".repeat(11))),
        "{}",
        out.stdout
    );
}

#[test]
fn secrets_in_mistyped_or_unusual_urls_are_never_echoed() {
    let dir = tempfile::tempdir().expect("dir");
    for source in [
        // `:` instead of `=`: parsed as a URL of scheme `db`.
        "db:postgres://app:hunter2@127.0.0.1/app",
        // A key passphrase next to a certificate that cannot be read.
        "db=postgres://app@127.0.0.1/app?sslcert=/nonexistent/c.crt&sslkey=/nonexistent/c.key&sslpassword=hunter2",
        "db=postgres://app@127.0.0.1/app?x_secret=hunter2",
    ] {
        let out = run(pre_deploy()
            .args(["backup", "--store"])
            .arg(dir.path().join("store"))
            .args(["--source", source]));
        assert!(
            out.code != 0,
            "{source} is refused: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(
            !out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"),
            "{source}: the secret is echoed:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn an_artifact_that_decompresses_past_its_recorded_size_is_not_staged_whole() {
    let server = predeploy_tests::PgServer::shared();
    let db = predeploy_tests::restoring::small_database(server, "bomb");
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("store");
    let out = run(pre_deploy()
        .args(["backup", "--json", "--verify-level", "checksum", "--store"])
        .arg(&store)
        .arg("--source")
        .arg(format!("db={}", server.url(&db))));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let id = v["id"].as_str().expect("id").to_owned();

    // 256 MiB of zeros in a few hundred KiB of zstd, with the manifest's digest and stored size
    // rewritten to match (what a hostile store can do), the recorded raw size left as it was.
    let dump = predeploy_tests::dump_path(&store, &id);
    let bomb = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 268435456 /dev/zero | zstd -q -19 -c > '{}'",
            dump.display()
        ))
        .status()
        .expect("zstd");
    assert!(bomb.success());
    let bytes = std::fs::read(&dump).expect("bomb");
    let digest = backup_core::Digest::of(&bytes);
    tamper(&store, &id, |m| {
        for a in m["sources"][0]["artifacts"]
            .as_array_mut()
            .expect("artifacts")
        {
            if a["name"] == "dump.pgc.zst" {
                a["sha256"] = digest.to_string().into();
                a["stored_size"] = bytes.len().into();
            }
        }
    });
    let temp = dir.path().join("tmp");
    std::fs::create_dir_all(&temp).expect("tmp");
    let out = run(pre_deploy()
        .args(["verify", "last", "--level", "restore", "--store"])
        .arg(&store)
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .env("TMPDIR", &temp));
    out.assert_code(4);
    out.assert_stderr_contains("decompresses to more than the");
}

/// A 16 MiB tmpfs, unmounted when dropped (the tests run as root, as CI does).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().expect("dir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (tests run as root here)"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_test_restore_that_cannot_be_staged_says_so_instead_of_filling_the_disk() {
    let server = predeploy_tests::PgServer::shared();
    let db = predeploy_tests::restoring::small_database(server, "space");
    let small = SmallDisk::mount();
    let store = tempfile::tempdir().expect("store");
    let backup = |extra: &[&str]| {
        run(pre_deploy()
            .args(["backup", "--json", "--store"])
            .arg(store.path())
            .arg("--source")
            .arg(format!("db={}", server.url(&db)))
            .args(extra)
            .env("TMPDIR", small.dir.path()))
    };
    // The default stops at level 3 and says why; levels 1-3 still ran.
    let out = backup(&[]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["verification"]["level_reached"], "archive", "{v:#}");
    let text = v["verification"].to_string();
    assert!(
        text.contains("not enough space to stage the archive"),
        "{text}"
    );
    // Asked for level 4 explicitly: refused.
    let out = backup(&["--verify-level", "restore"]);
    out.assert_code(4);
    out.assert_stderr_contains("not enough space to stage the archive");
    // A restore checks the same before it asks for consent or touches anything.
    let out = run(predeploy_tests::restoring::restore_command(
        store.path(),
        &server.url(&db),
        &["last", "--yes"],
    )
    .env("TMPDIR", small.dir.path()));
    out.assert_code(5);
    out.assert_stderr_contains("not enough space to stage the archive");
}

#[test]
fn a_full_store_disk_refuses_the_deploy_and_keeps_the_earlier_backup() {
    let server = predeploy_tests::PgServer::shared();
    let db = predeploy_tests::restoring::small_database(server, "full");
    let disk = SmallDisk::mount();
    let store = disk.dir.path().join("store");
    let work = tempfile::tempdir().expect("work");
    let marker = work.path().join("deployed");
    let gate = |extra: &[&str]| {
        run(pre_deploy()
            .current_dir(work.path())
            .args(["--store"])
            .arg(&store)
            .arg("--source")
            .arg(format!("db={}", server.url(&db)))
            .args(["run", "--verify-level", "archive"])
            .args(extra)
            .arg("--")
            .arg("touch")
            .arg(&marker))
    };
    gate(&[]).assert_success();
    std::fs::remove_file(&marker).expect("the first deploy ran");
    // 24 MiB that do not compress: more than the 16 MiB file system holds.
    server.psql(
        &db,
        "CREATE TABLE noise AS SELECT g, decode(string_agg(md5(g::text || x::text), ''), 'hex') AS b
         FROM generate_series(1, 3000) g, generate_series(1, 512) x GROUP BY g",
    );
    let out = gate(&[]);
    out.assert_code(3);
    out.assert_stderr_contains("did not run");
    assert!(!marker.exists(), "the deploy command did not run");
    let listed = run(pre_deploy().args(["list", "--json", "--store"]).arg(&store));
    listed.assert_success();
    assert_eq!(
        listed.json()["backups"].as_array().map(Vec::len),
        Some(1),
        "no manifest for the broken backup: {}",
        listed.stdout
    );
    run(pre_deploy()
        .args(["verify", "last", "--level", "decompress", "--store"])
        .arg(&store))
    .assert_success();
}

#[test]
fn a_source_server_that_stops_mid_dump_refuses_the_deploy_and_records_nothing() {
    let mut server = predeploy_tests::PgServer::start();
    let db = server.create_database("gone");
    server.psql(
        &db,
        "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 40) AS t FROM generate_series(1, 150000) g",
    );
    let store = tempfile::tempdir().expect("store");
    let work = tempfile::tempdir().expect("work");
    let marker = work.path().join("deployed");
    let mut cmd = pre_deploy();
    cmd.current_dir(work.path())
        .args(["--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .args(["run", "--verify-level", "archive", "--", "touch"])
        .arg(&marker)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("run");
    // Stop the server (immediate: connections cut) once pg_dump is copying table data.
    let copying = predeploy_tests::pg::wait_until(Duration::from_secs(60), || {
        server
            .try_psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY public.big %'",
            )
            .is_ok_and(|n| n.trim() != "0")
    });
    assert!(copying, "pg_dump started copying");
    server.stop();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("did not run"), "{stderr}");
    assert!(!marker.exists(), "the deploy command did not run");
    assert!(
        !store.path().join("backups").exists()
            || std::fs::read_dir(store.path().join("backups"))
                .expect("backups")
                .flatten()
                .all(|e| !e.path().join("manifest.json").exists()),
        "no manifest for the broken backup"
    );
    server.restart();
    let again = run(pre_deploy()
        .current_dir(work.path())
        .args(["--store"])
        .arg(store.path())
        .arg("--source")
        .arg(format!("db={}", server.url(&db)))
        .args(["backup", "--verify-level", "archive"]));
    again.assert_success();
}
