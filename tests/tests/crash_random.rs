//! Crash campaign at random instants, with the store on Garage (issue 14 "Campaigns: Crash",
//! issue 19 item 4): `kill -9` of the whole process group (pre-deploy, pg_dump, pg_restore) at
//! seeded random instants of backup (PostgreSQL and a Garage bucket, with the level-4 test
//! restore), verify, prune, restore of the database and restore of the bucket in place, and once
//! between the last upload and the manifest. After every kill: every backup the store lists
//! verifies (no manifest points at missing or damaged data, no earlier backup is damaged), the
//! database and the bucket are each either untouched or restored, and at the end the next runs
//! succeed and the leftovers are collected.
//!
//! The seed is printed; `PREDEPLOY_CRASH_SEED=N` replays a campaign.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use backup_core::testkit::FixedClock;
use backup_core::{Digest, Store, layout};
use backup_objectstore::ObjectStoreStore;
use deploy_gate::Gate;
use object_store::{ObjectStore, ObjectStoreExt, path::Path as ObjPath};
use predeploy_tests::procs::ProcessGroup;
use predeploy_tests::restoring::content;
use predeploy_tests::{GarageServer, PgServer, S3Server, fixtures, pre_deploy, run};

/// Kills at random instants (the pause-point kill comes on top).
const KILLS: usize = 28;

/// splitmix64: small, seeded, good enough to spread instants.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    let seed = std::env::var("PREDEPLOY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("random seed");
            u64::from_le_bytes(b)
        });
    eprintln!("crash campaign seed: {seed} (replay with PREDEPLOY_CRASH_SEED={seed})");
    seed
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Backup,
    Verify,
    Prune,
    RestoreDb,
    RestoreBucket,
}

const OPS: [Op; 5] = [
    Op::Backup,
    Op::Verify,
    Op::Prune,
    Op::RestoreDb,
    Op::RestoreBucket,
];

/// Runs `cmd` in a process group of its own and kills the group after `after` unless it exited
/// first; returns whether it exited by itself.
fn kill_after(cmd: &mut Command, after: Duration) -> bool {
    let (mut child, group) = ProcessGroup::spawn(cmd);
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let finished = rx.recv_timeout(after).is_ok();
    if !finished {
        group.kill();
    }
    waiter.join().expect("waiter").expect("wait");
    finished
}

/// Runs `cmd` until it reports the pause point `point`, then kills its process group.
fn kill_at_pause(cmd: &mut Command, point: &str) {
    let never = tempfile::tempdir().expect("dir");
    cmd.env(
        "PREDEPLOY_TEST_PAUSE_AT",
        format!("{point}:{}", never.path().join("never").display()),
    )
    .stderr(Stdio::piped());
    let (mut child, group) = ProcessGroup::spawn(cmd);
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wanted = format!("test hook: paused at {point}");
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(line) if line.contains(&wanted) => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("never paused at {point}:\n{}", seen.join("\n")),
        }
    }
    group.kill();
    let _ = child.wait();
}

/// The bucket's objects, key → sha256 of the bytes.
fn objects(rt: &tokio::runtime::Runtime, client: &dyn ObjectStore) -> BTreeMap<String, Digest> {
    use futures::TryStreamExt as _;
    rt.block_on(async {
        let listed: Vec<_> = client.list(None).try_collect().await.expect("list");
        let mut out = BTreeMap::new();
        for meta in listed {
            let bytes = client
                .get(&meta.location)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            out.insert(meta.location.to_string(), Digest::of(&bytes));
        }
        out
    })
}

/// The objects the bucket holds when backed up.
fn original_objects() -> BTreeMap<String, Vec<u8>> {
    (0..24)
        .map(|i| {
            let size = if i % 3 == 0 { 256 * 1024 } else { 700 + i * 13 };
            let data: Vec<u8> = (0..size).map(|b| (b * 7 + i * 31) as u8).collect();
            (format!("media/d{}/o{i:02}.bin", i % 4), data)
        })
        .collect()
}

/// What the "failed deploy" does to the bucket: one object overwritten, one deleted, one added.
fn damage_bucket(rt: &tokio::runtime::Runtime, client: &dyn ObjectStore) {
    rt.block_on(async {
        client
            .put(
                &ObjPath::from("media/d0/o00.bin"),
                b"BROKEN".to_vec().into(),
            )
            .await
            .expect("put");
        client
            .delete(&ObjPath::from("media/d1/o01.bin"))
            .await
            .expect("delete");
        client
            .put(
                &ObjPath::from("media/added-later.bin"),
                b"new".to_vec().into(),
            )
            .await
            .expect("put");
    });
}

fn reset_bucket(rt: &tokio::runtime::Runtime, client: &dyn ObjectStore) {
    rt.block_on(async {
        for (key, data) in original_objects() {
            client
                .put(&ObjPath::from(key), data.into())
                .await
                .expect("put");
        }
        let _ = client.delete(&ObjPath::from("media/added-later.bin")).await;
    });
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

/// Backup ids listed in the store (any kind).
fn listed(cli: &dyn Fn(&[&str]) -> Command) -> Vec<String> {
    let out = run(&mut cli(&["list", "--json"]));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("list --json");
    v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Backup directories of the store that have no manifest (what killed uploads leave).
async fn incomplete_dirs(store: &ObjectStoreStore) -> Vec<String> {
    let mut out = Vec::new();
    for dir in store
        .list_dirs(layout::BACKUPS_DIR)
        .await
        .expect("list dirs")
    {
        let Ok(id) = dir.parse() else { continue };
        if store
            .head(&layout::manifest_key(&id))
            .await
            .expect("head")
            .is_none()
        {
            out.push(dir);
        }
    }
    out
}

#[test]
fn kills_at_random_instants_against_garage_lose_nothing() {
    let mut rng = Rng(seed());
    let garage = GarageServer::shared();
    let server = PgServer::start();
    let db = server.create_database("crashrand");
    fixtures::load_varied(&server, &db);
    server.psql(
        &db,
        "CREATE TABLE crash_marker (id int);
         CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS a, repeat(md5(g::text), 4) AS b FROM generate_series(1, 40000) g",
    );
    let original = content(&server, &db);
    let damage_db = || server.psql(&db, "INSERT INTO crash_marker VALUES (1)");
    let reset_db = || server.psql(&db, "DELETE FROM crash_marker");
    reset_db();
    let mut damaged_db = None;

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let source_bucket = garage.create_bucket("crash-src");
    let store_bucket = garage.create_bucket("crash-store");
    let client = garage.settings().build(&source_bucket, "").expect("client");
    reset_bucket(&rt, client.as_ref());
    let backed_up_objects = objects(&rt, client.as_ref());
    let with_added_later = || {
        let mut want = backed_up_objects.clone();
        want.insert("media/added-later.bin".into(), Digest::of(b"new"));
        want
    };
    assert_eq!(
        backed_up_objects,
        original_objects()
            .iter()
            .map(|(k, v)| (k.clone(), Digest::of(v)))
            .collect()
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let store_url = garage.url(&store_bucket, "backups");
    // The global options after the command: `restore --source NAME` picks a source, and a
    // `--source` after the command replaces those given before it.
    let cli = |args: &[&str]| {
        let mut cmd = pre_deploy();
        cmd.args(args)
            .args(["--store", &store_url])
            .args(["--source", &format!("db={}", server.url(&db))])
            .args([
                "--source",
                &format!("uploads={}", garage.url(&source_bucket, "")),
            ])
            .envs(garage.env())
            .env("TMPDIR", tmp.path())
            .env("PREDEPLOY_LOCK_TTL", "3s")
            .env("PREDEPLOY_WAIT_LOCK", "60s")
            .stdin(Stdio::null());
        cmd
    };
    let quiet = |mut cmd: Command| {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    };
    // Every listed backup verifies to level 2 (blobs and artifacts present, sizes, digests,
    // frames): no manifest points at missing or damaged data.
    let assert_store_consistent = |what: &str| {
        let out = run(pre_deploy()
            .args([
                "--store",
                &store_url,
                "verify",
                "--all",
                "--level",
                "decompress",
            ])
            .envs(garage.env())
            // A killed run's lease expires after its 3 s ttl.
            .env("PREDEPLOY_WAIT_LOCK", "60s"));
        assert_eq!(
            out.code, 0,
            "after {what}: every listed backup verifies\n{}{}",
            out.stdout, out.stderr
        );
    };

    // The reference backup every restore puts back, pinned so prune keeps it.
    let out = run(&mut cli(&["backup", "--json"]));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let reference = v["id"].as_str().expect("id").to_owned();
    run(&mut cli(&["pin", &reference])).assert_success();

    let command = |op: Op| -> Command {
        match op {
            Op::Backup => cli(&["backup"]),
            Op::Verify => cli(&["verify", &reference, "--level", "restore"]),
            Op::Prune => cli(&["prune", "--yes", "--force", "--keep-last", "2"]),
            Op::RestoreDb => cli(&["restore", &reference, "--source", "db", "--yes"]),
            Op::RestoreBucket => cli(&["restore", &reference, "--source", "uploads", "--yes"]),
        }
    };
    let prepare = |op: Op| match op {
        Op::RestoreDb => {
            damage_db();
        }
        Op::RestoreBucket => damage_bucket(&rt, client.as_ref()),
        _ => {}
    };

    // Each operation's uninterrupted duration sets its time scale.
    let mut full = BTreeMap::new();
    for op in OPS {
        prepare(op);
        if op == Op::RestoreDb {
            damaged_db = Some(content(&server, &db));
        }
        let started = Instant::now();
        let out = run(&mut command(op));
        out.assert_success();
        full.insert(op, started.elapsed());
    }
    assert_eq!(
        content(&server, &db),
        original,
        "a restore puts the database back"
    );
    assert_eq!(
        objects(&rt, client.as_ref()),
        with_added_later(),
        "a restore puts the bucket back, leaving an object added later alone"
    );
    reset_bucket(&rt, client.as_ref());
    let damaged_db = damaged_db.expect("damaged state");
    eprintln!("uninterrupted durations: {full:?}");

    // Between the last upload and the manifest: the backup must not exist.
    let before = listed(&cli);
    kill_at_pause(&mut quiet(command(Op::Backup)), "before-manifest");
    assert_eq!(
        listed(&cli),
        before,
        "a backup killed before its manifest is not listed"
    );
    assert_store_consistent("a backup killed between its last upload and its manifest");
    let store = ObjectStoreStore::s3(&store_bucket, "backups", &garage.settings()).expect("store");
    let incomplete = rt.block_on(incomplete_dirs(&store));
    assert!(
        !incomplete.is_empty(),
        "the kill came after the uploads: their directory is there without a manifest"
    );

    // Every operation gets at least four kills; the rest are drawn at random, then shuffled.
    let mut schedule: Vec<Op> = OPS.iter().flat_map(|op| [*op; 4]).collect();
    while schedule.len() < KILLS {
        schedule.push(OPS[rng.below(OPS.len())]);
    }
    for i in (1..schedule.len()).rev() {
        schedule.swap(i, rng.below(i + 1));
    }
    let mut outcomes: BTreeMap<Op, (u32, u32)> = BTreeMap::new();
    for (i, op) in schedule.iter().copied().enumerate() {
        prepare(op);
        // Anywhere in the operation, from its first moments to just past its usual end.
        let at = full[&op]
            .mul_f64(rng.unit() * 1.05)
            .max(Duration::from_millis(5));
        let finished = kill_after(&mut quiet(command(op)), at);
        let entry = outcomes.entry(op).or_default();
        if finished {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
        let what = format!("kill #{i}: {op:?} after {at:?}");
        eprintln!("{what}{}", if finished { " (it had finished)" } else { "" });
        assert_store_consistent(&what);
        // Never renamed away, never half-restored: as it was, or as the backup has it.
        let now = content(&server, &db);
        assert!(
            now == original || (op == Op::RestoreDb && now == damaged_db),
            "after {what} the database is neither untouched nor restored"
        );
        reset_db();
        let now = objects(&rt, client.as_ref());
        for (key, digest) in &now {
            let was = match key.as_str() {
                "media/d0/o00.bin" if op == Op::RestoreBucket => Some(Digest::of(b"BROKEN")),
                "media/added-later.bin" if op == Op::RestoreBucket => Some(Digest::of(b"new")),
                _ => None,
            };
            assert!(
                backed_up_objects.get(key) == Some(digest) || was.as_ref() == Some(digest),
                "after {what}: {key} is neither its old nor its backed-up content"
            );
        }
        for key in backed_up_objects.keys() {
            assert!(
                now.contains_key(key) || (op == Op::RestoreBucket && key == "media/d1/o01.bin"),
                "after {what}: {key} is gone"
            );
        }
        reset_bucket(&rt, client.as_ref());
    }

    // The next runs succeed: a backup (dropping the scratch databases and staged archives the
    // killed ones left), and both restores, which put everything back.
    run(&mut command(Op::Backup)).assert_success();
    assert_eq!(
        scratch_databases(&server),
        "0",
        "leftover scratch databases dropped"
    );
    let staged: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("predeploy-verify-"))
        .collect();
    assert!(
        staged.is_empty(),
        "staged archives of killed runs removed: {staged:?}"
    );
    damage_db();
    damage_bucket(&rt, client.as_ref());
    run(&mut command(Op::RestoreDb)).assert_success();
    run(&mut command(Op::RestoreBucket)).assert_success();
    assert_eq!(content(&server, &db), original);
    assert_eq!(objects(&rt, client.as_ref()), with_added_later());
    run(&mut cli(&["verify", &reference, "--level", "restore"])).assert_success();
    assert_store_consistent("the campaign");

    // Past the grace period, prune collects the directories killed uploads left.
    let incomplete = rt.block_on(incomplete_dirs(&store));
    let later = Gate::new(Arc::new(store), "default", vec![], vec![]).with_clock(Arc::new(
        FixedClock::new("2099-01-01T00:00:00Z".parse().expect("time")),
    ));
    let store = ObjectStoreStore::s3(&store_bucket, "backups", &garage.settings()).expect("store");
    // Keeps every backup (none is removed); only the leftovers go.
    let options = deploy_gate::PruneOptions {
        rules: Some(deploy_gate::KeepRules {
            last: Some(1000),
            ..deploy_gate::KeepRules::default()
        }),
        apply: true,
        ..deploy_gate::PruneOptions::default()
    };
    let mut report = rt
        .block_on(later.pruner().prune(None, &options))
        .expect("prune");
    assert!(report.removed.is_empty(), "{report:?}");
    rt.block_on(later.pruner().collect_leftovers(&mut report));
    assert_eq!(rt.block_on(incomplete_dirs(&store)), Vec::<String>::new());
    assert!(
        report.leftovers_removed.len() >= incomplete.len(),
        "{report:?}"
    );
    assert_store_consistent("collecting the leftovers");

    let killed: u32 = outcomes.values().map(|o| o.0).sum();
    eprintln!(
        "killed {killed} runs at random instants plus 1 before a manifest, {} had finished first; per operation (killed, finished): {outcomes:?}; {} incomplete backup directories collected; nothing lost",
        KILLS as u32 - killed,
        incomplete.len()
    );
    assert!(
        killed >= 20,
        "at least 20 runs were killed mid-way: {outcomes:?}"
    );
}
