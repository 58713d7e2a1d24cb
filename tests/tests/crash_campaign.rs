//! Crash campaign (issues 14 and 19): `kill -9` of the whole process group (pre-deploy, pg_dump,
//! pg_restore) at spread-out instants of a backup with its level-4 test restore, and of a
//! restore. After every kill: every backup the store lists still verifies (no manifest points at
//! missing or damaged data, no earlier backup is damaged), the source database is untouched or
//! wholly restored (never renamed away), and the next run succeeds and collects the leftovers.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use predeploy_tests::procs::ProcessGroup;
use predeploy_tests::restoring::{backups, content, restore_command};
use predeploy_tests::{PgServer, fixtures, pre_deploy, run};

/// How many instants each campaign kills at.
const KILLS: u32 = 12;

/// A backup command with a short lock ttl, so the lease a killed run leaves behind expires
/// quickly and the next run takes it over.
fn backup_command(store: &Path, url: &str) -> std::process::Command {
    let mut cmd = pre_deploy();
    cmd.args(["backup", "--store"])
        .arg(store)
        .arg("--source")
        .arg(format!("db={url}"))
        .env("PREDEPLOY_LOCK_TTL", "3s")
        .env("PREDEPLOY_WAIT_LOCK", "60s")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs `cmd` in its own process group and kills the group after `after`; returns whether it
/// finished by itself before that.
fn kill_after(cmd: &mut std::process::Command, after: Duration) -> bool {
    let (mut child, group) = ProcessGroup::spawn(cmd);
    let started = Instant::now();
    while started.elapsed() < after {
        if child.try_wait().expect("wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    group.kill();
    let _ = child.wait();
    false
}

/// Every listed backup verifies to level 2 (`verify --all`): exit 0.
fn assert_store_consistent(store: &Path, what: &str) {
    let out = run(pre_deploy()
        .args(["verify", "--all", "--level", "decompress", "--store"])
        .arg(store));
    assert_eq!(
        out.code, 0,
        "after {what}: every listed backup verifies\n{}{}",
        out.stdout, out.stderr
    );
}

fn scratch_databases(server: &PgServer) -> String {
    server
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'predeploy_scratch_%'",
        )
        .trim()
        .to_owned()
}

#[test]
fn backups_killed_at_spread_out_instants_leave_the_store_consistent() {
    let server = PgServer::start();
    let db = server.create_database("crash");
    fixtures::load_varied(&server, &db);
    server.psql(
        &db,
        "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS a, repeat(md5(g::text), 8) AS b FROM generate_series(1, 150000) g",
    );
    let original = content(&server, &db);
    let store = tempfile::tempdir().expect("store");
    let url = server.url(&db);

    // One uninterrupted run sets the time scale, and gives an earlier backup to protect.
    let started = Instant::now();
    run(backup_command(store.path(), &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()))
    .assert_success();
    let full = started.elapsed();

    let mut finished = 0;
    for i in 0..KILLS {
        // Spread over the whole run, from its first moments to its last (with level 4).
        let at = full
            .mul_f64(f64::from(i) / f64::from(KILLS - 1))
            .max(Duration::from_millis(10));
        if kill_after(&mut backup_command(store.path(), &url), at) {
            finished += 1;
        }
        assert_store_consistent(store.path(), &format!("a backup killed after {at:?}"));
        assert_eq!(content(&server, &db), original, "the source is untouched");
    }
    // The next run succeeds, drops the scratch databases of the killed ones, and every backup the
    // store lists (the first and the finished ones, none of the killed) still verifies.
    run(backup_command(store.path(), &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()))
    .assert_success();
    assert_eq!(
        scratch_databases(&server),
        "0",
        "leftover scratch databases dropped"
    );
    // A run killed after its manifest was committed (during its verification) leaves a whole,
    // unverified backup: listed, and verified above like every other.
    let listed = backups(store.path(), "default");
    assert!(
        listed.len() >= 2 + finished,
        "every run that finished made a backup: {listed:?}"
    );
    assert_store_consistent(store.path(), "the campaign");
    eprintln!(
        "killed {} backups, {finished} finished first",
        KILLS - finished as u32
    );
}

#[test]
fn restores_killed_at_spread_out_instants_leave_the_database_whole() {
    let server = PgServer::start();
    let db = server.create_database("crashr");
    fixtures::load_varied(&server, &db);
    let store = tempfile::tempdir().expect("store");
    let url = server.url(&db);
    run(backup_command(store.path(), &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()))
    .assert_success();
    let backed_up = content(&server, &db);
    server.psql(
        &db,
        "UPDATE public.orders SET note = 'damaged' WHERE id % 2 = 0",
    );
    let changed = content(&server, &db);

    let started = Instant::now();
    let mut probe = restore_command(store.path(), &url, &["last", "--yes"]);
    let (mut child, _group) =
        ProcessGroup::spawn(probe.stdout(Stdio::null()).stderr(Stdio::null()));
    assert!(child.wait().expect("restore").success());
    let full = started.elapsed();
    server.psql(
        &db,
        "UPDATE public.orders SET note = 'damaged' WHERE id % 2 = 0",
    );

    for i in 0..KILLS {
        let at = full
            .mul_f64(f64::from(i) / f64::from(KILLS - 1))
            .max(Duration::from_millis(10));
        let mut cmd = restore_command(store.path(), &url, &["last", "--yes"]);
        kill_after(cmd.stdout(Stdio::null()).stderr(Stdio::null()), at);
        // The database is there under its name, either as it was or as the backup has it.
        let now = content(&server, &db);
        assert!(
            now == changed || now == backed_up,
            "after a restore killed at {at:?} the database is either untouched or restored"
        );
        if now == backed_up {
            server.psql(
                &db,
                "UPDATE public.orders SET note = 'damaged' WHERE id % 2 = 0",
            );
        }
        assert_store_consistent(store.path(), &format!("a restore killed after {at:?}"));
    }
    // The next restore succeeds (it cleans up what the killed ones left).
    let out = run(&mut restore_command(store.path(), &url, &["last", "--yes"]));
    out.assert_success();
    assert_eq!(content(&server, &db), backed_up);
}

/// The files of `dir` (relative path → bytes), temp files of restores included.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn write_files(dir: &Path, version: u8) {
    for i in 0..200 {
        let path = dir.join(format!("d{}/f{i}.bin", i % 10));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, vec![version.wrapping_add(i as u8); 96 * 1024]).expect("write");
    }
}

#[test]
fn directory_backups_and_restores_killed_at_spread_out_instants_lose_nothing() {
    let work = tempfile::tempdir().expect("work");
    let files = work.path().join("files");
    write_files(&files, 1);
    let backed_up = tree(&files);
    let store = work.path().join("store");
    let source = format!("files=file://{}", files.display());
    let command = |args: &[&str]| {
        let mut cmd = pre_deploy();
        cmd.arg("--store")
            .arg(&store)
            .args(["--source", &source])
            .args(args)
            .env("PREDEPLOY_LOCK_TTL", "3s")
            .env("PREDEPLOY_WAIT_LOCK", "60s")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let started = Instant::now();
    run(command(&["backup"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()))
    .assert_success();
    let full = started.elapsed();
    for i in 0..KILLS {
        let at = full
            .mul_f64(f64::from(i) / f64::from(KILLS - 1))
            .max(Duration::from_millis(10));
        kill_after(&mut command(&["backup"]), at);
        assert_store_consistent(&store, &format!("a directory backup killed after {at:?}"));
        assert_eq!(tree(&files), backed_up, "the source is untouched");
    }

    // Restores of the first backup over changed files, killed at spread-out instants: every file
    // holds either its changed bytes or its backed-up bytes, never a part of either.
    let first = backups(&store, "default")
        .into_iter()
        .rfind(|(_, kind, _)| kind != "safety")
        .expect("a backup")
        .0;
    write_files(&files, 2);
    let changed = tree(&files);
    let started = Instant::now();
    run(command(&["restore", &first, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()))
    .assert_success();
    let full = started.elapsed();
    for i in 0..KILLS {
        write_files(&files, 2);
        let at = full
            .mul_f64(f64::from(i) / f64::from(KILLS - 1))
            .max(Duration::from_millis(10));
        kill_after(&mut command(&["restore", &first, "--yes"]), at);
        for (name, bytes) in tree(&files) {
            if name.ends_with(".pd-restore") {
                continue; // a killed restore's temp file: removed by the next restore
            }
            assert!(
                changed.get(&name) == Some(&bytes) || backed_up.get(&name) == Some(&bytes),
                "{name} after a restore killed at {at:?} is neither its old nor its backed-up content"
            );
        }
        assert_store_consistent(&store, &format!("a directory restore killed after {at:?}"));
    }
    run(command(&["restore", &first, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()))
    .assert_success();
    assert_eq!(
        tree(&files),
        backed_up,
        "the next restore puts everything back, temp files gone"
    );
}
