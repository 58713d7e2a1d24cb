//! Bucket and directory sources under `[encryption]`: sealed blobs under keyed names, an
//! encrypted index, a plaintext blob list; deduplication with the identity, a key of its own
//! without; verification without a key (level 1) and through it (level 2 decrypts every blob);
//! restore, the runbook's raw commands, rotation, and two stores naming one file differently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use predeploy_tests::encrypted::{Key, Work, contains, files, hex_of};
use predeploy_tests::{GarageServer, S3Server, run};

/// Files with contents an observer could guess, and a name that says what they are.
fn sample(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 7)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let files: BTreeMap<String, Vec<u8>> = [
        ("zqpatients.csv", b"id,name\n1,zqsecretpatient\n".to_vec()),
        ("copy.csv", b"id,name\n1,zqsecretpatient\n".to_vec()),
        ("empty", Vec::new()),
        ("naïve/deep/zqpayroll.txt", b"zqsalary 100000".to_vec()),
        ("big.bin", big),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (rel, data) in &files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }
    files
}

/// The sha256 of every regular file under `dir`, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    files(dir)
        .into_iter()
        .map(|(p, b)| {
            let rel = p.strip_prefix(dir).expect("under dir");
            (rel.to_string_lossy().into_owned(), sha256_hex(&b))
        })
        .collect()
}

/// The sha256 of every file of `files`, by relative path (to compare with [`tree`]).
fn digests(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(k, v)| (k.clone(), sha256_hex(v)))
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex_of(&sha2::Sha256::digest(data))
}

/// A bucket statistic of the newest backup's only source (`objects`, `uploaded`, `reused`…).
fn stat(manifest: &serde_json::Value, name: &str) -> u64 {
    let stats = &manifest["sources"][0]["stats"];
    stats["object_counts"][name]
        .as_u64()
        .or_else(|| stats[name].as_u64())
        .or_else(|| stats["extra"][name].as_u64())
        .unwrap_or_else(|| panic!("no {name} in {stats:#}"))
}

/// The store's sealed blobs.
fn sealed_blobs(store: &Path) -> Vec<PathBuf> {
    let dir = store.join("blobs/sealed");
    if !dir.exists() {
        return Vec::new();
    }
    files(&dir).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn a_directory_is_sealed_deduplicated_verified_and_restored_through_the_key() {
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let recovery = Key::new(keys.path(), "recovery.txt");
    let data = tempfile::tempdir().expect("data");
    let original = sample(data.path());
    let work = Work::new(
        &data.path().display().to_string(),
        &[&key, &recovery],
        Some(&key),
    );

    // The default gate: backup, then verification through the key.
    let out = work.run(&["backup"]);
    out.assert_success();
    let manifest = work.manifest();
    let source = &manifest["sources"][0];
    assert!(source["blob_sealing"].is_string(), "{source:#}");
    let artifacts: Vec<&str> = source["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["key"].as_str().expect("key"))
        .collect();
    assert!(
        artifacts.iter().any(|k| k.ends_with("index.jsonl.zst.age"))
            && artifacts.iter().any(|k| k.ends_with("blobs.txt.zst")),
        "{artifacts:?}"
    );
    assert_eq!(stat(&manifest, "objects"), original.len() as u64);

    // What an observer of the store sees: no content, no file name, no plain digest, no key.
    let store = work.store();
    assert!(!store.join("blobs/sha256").exists(), "no plain blob");
    let sealed = sealed_blobs(&store);
    assert_eq!(
        sealed.len(),
        original.len() - 1,
        "one blob per distinct file"
    );
    let plain_digests: Vec<String> = original.values().map(|d| sha256_hex(d)).collect();
    for (path, bytes) in files(&store) {
        let shown = path.display().to_string();
        for needle in [
            "zqsecretpatient",
            "zqpatients",
            "zqpayroll",
            "zqsalary",
            key.secret.as_str(),
        ] {
            assert!(!contains(&bytes, needle), "{needle} in {shown}");
            assert!(!shown.contains(needle), "{needle} in the name {shown}");
        }
        for d in &plain_digests {
            assert!(
                !shown.contains(d) && !contains(&bytes, d),
                "the plain digest {d} in {shown}"
            );
        }
    }
    assert_eq!(
        files(&store.join("keys/blob-names")).len(),
        1,
        "one blob-name key for the recipient set"
    );

    // The second backup of an unchanged directory reuses every object.
    work.run(&["backup"]).assert_success();
    let second = work.manifest();
    assert_eq!(
        (stat(&second, "reused"), stat(&second, "uploaded")),
        (original.len() as u64, 0)
    );
    assert_eq!(sealed_blobs(&store).len(), sealed.len());

    // A changed file is stored again, under the same recipient set's naming: a copy of an
    // existing file is deduplicated.
    std::fs::write(data.path().join("zqpatients.csv"), b"changed").expect("change");
    std::fs::write(data.path().join("again.bin"), &original["big.bin"]).expect("copy");
    work.run(&["backup"]).assert_success();
    let third = work.manifest();
    assert_eq!(stat(&third, "uploaded"), 1, "{third:#}");
    assert_eq!(stat(&third, "deduplicated"), 1, "{third:#}");

    // Every level through the key, and through the offline recovery key.
    work.run(&["verify", "last", "--level", "archive"])
        .assert_success();
    let out = work.run(&[
        "verify",
        "last",
        "--level",
        "archive",
        "--json",
        "--recovery-key",
        &recovery.file.display().to_string(),
    ]);
    out.assert_success();
    assert_eq!(
        out.json()["verifications"][0]["decrypted_with"],
        serde_json::json!([recovery.fingerprint()])
    );

    // Without a key: level 1 (the blob list) passes; more is refused with exit 4.
    let keyless = Work::new(&data.path().display().to_string(), &[&key, &recovery], None);
    std::fs::remove_dir_all(keyless.store()).ok();
    std::os::unix::fs::symlink(work.store(), keyless.store()).expect("same store");
    keyless
        .run(&["verify", "last", "--level", "checksum"])
        .assert_success();
    let out = keyless.run(&["verify", "last", "--level", "archive"]);
    out.assert_code(4);
    out.assert_stderr_contains("no age identity");

    // Restore the second backup (before the change) through the key.
    std::fs::remove_file(data.path().join("again.bin")).expect("rm");
    let second_id = second["id"].as_str().expect("id");
    let out = work.run(&["restore", second_id, "--yes"]);
    out.assert_success();
    assert_eq!(
        tree(data.path()),
        digests(&original),
        "restored through the key"
    );
}

#[test]
fn damage_to_a_sealed_blob_is_caught_and_blob_collection_needs_no_key() {
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let data = tempfile::tempdir().expect("data");
    sample(data.path());
    let work = Work::new(&data.path().display().to_string(), &[&key], Some(&key));
    work.run(&["backup"]).assert_success();

    // The biggest sealed blob is the 5 MiB file.
    let store = work.store();
    let mut sealed = sealed_blobs(&store);
    sealed.sort_by_key(|p| std::fs::metadata(p).expect("meta").len());
    let big = sealed.last().expect("a blob").clone();
    let pristine = std::fs::read(&big).expect("blob");

    // A flipped byte keeps the size: level 1 (presence and size, no key) cannot see it; level 2
    // decrypts and the chunk's authentication fails.
    let mut flipped = pristine.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&big, &flipped).expect("flip");
    work.run(&["verify", "last", "--level", "checksum"])
        .assert_success();
    let out = work.run(&["verify", "last", "--level", "decompress"]);
    out.assert_code(4);
    out.assert_stderr_contains("corrupted");
    let name = big
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    out.assert_stderr_contains(&name);

    // A restore verifies first: refused, the directory untouched.
    std::fs::write(data.path().join("zqpatients.csv"), b"live").expect("change");
    let before = tree(data.path());
    let out = work.run(&["restore", "last", "--yes"]);
    out.assert_code(4);
    assert_eq!(tree(data.path()), before, "the target is untouched");

    // A truncated blob fails level 1, without a key.
    std::fs::write(&big, &pristine[..pristine.len() - 10]).expect("truncate");
    let out = work.run(&["verify", "last", "--level", "checksum"]);
    out.assert_code(4);
    out.assert_stderr_contains("bytes instead of");
    std::fs::write(&big, &pristine).expect("repair");
    work.run(&["verify", "last", "--level", "archive"])
        .assert_success();

    // Blob collection reads the plaintext blob lists, so it needs no key: a second backup of
    // the directory, then prune keeping only the newest, leaves every blob it references.
    work.run(&["backup"]).assert_success();
    let config = work.path().join("predeploy.toml");
    let with_identity = std::fs::read_to_string(&config).expect("config");
    let keyless: String = with_identity
        .lines()
        .filter(|l| !l.starts_with("identity_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, keyless).expect("keyless config");
    let out = work.run(&["prune", "--keep-last", "1", "--yes", "--force"]);
    out.assert_success();
    std::fs::write(&config, with_identity).expect("config");
    work.run(&["verify", "last", "--level", "archive"])
        .assert_success();
    std::fs::write(data.path().join("zqpatients.csv"), b"after").expect("change");
    let out = work.run(&["restore", "last", "--yes"]);
    out.assert_success();
    assert_eq!(tree(data.path()), before, "the newest backup, restored");
}

#[test]
fn two_stores_name_the_same_file_differently_and_rotation_starts_a_new_set() {
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let data = tempfile::tempdir().expect("data");
    let original = sample(data.path());
    let url = data.path().display().to_string();
    let one = Work::new(&url, &[&key], Some(&key));
    let two = Work::new(&url, &[&key], Some(&key));
    one.run(&["backup"]).assert_success();
    two.run(&["backup"]).assert_success();
    let names = |w: &Work| -> Vec<String> {
        sealed_blobs(&w.store())
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect()
    };
    let (a, b) = (names(&one), names(&two));
    assert_eq!(a.len(), b.len());
    assert!(
        a.iter().all(|n| !b.contains(n)),
        "equal files must not be recognisable across stores: {a:?} {b:?}"
    );

    // Rotation: a new recipient set re-seals every object for the new keys.
    let new_key = Key::new(keys.path(), "new.txt");
    let rotated = one.path().join("predeploy.toml");
    let toml = std::fs::read_to_string(&rotated).expect("config");
    std::fs::write(
        &rotated,
        toml.replace(&key.recipient, &new_key.recipient).replace(
            &key.file.display().to_string(),
            &new_key.file.display().to_string(),
        ),
    )
    .expect("rotate");
    one.run(&["backup"]).assert_success();
    let m = one.manifest();
    assert_eq!(
        (stat(&m, "reused"), stat(&m, "uploaded")),
        (0, original.len() as u64 - 1),
        "{m:#}"
    );
    assert_eq!(files(&one.store().join("keys/blob-names")).len(), 2);
    // Only the new key is needed for the new backup.
    let out = one.run(&[
        "verify",
        "last",
        "--level",
        "archive",
        "--recovery-key",
        &new_key.file.display().to_string(),
    ]);
    out.assert_success();
    let out = one.run(&[
        "verify",
        "last",
        "--level",
        "archive",
        "--recovery-key",
        &key.file.display().to_string(),
    ]);
    out.assert_code(4);
    out.assert_stderr_contains("none of the identities");
}

#[test]
fn without_an_identity_a_backup_names_its_blobs_with_its_own_key_and_says_so() {
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let data = tempfile::tempdir().expect("data");
    let original = sample(data.path());
    let with_key = Work::new(&data.path().display().to_string(), &[&key], Some(&key));
    with_key.run(&["backup"]).assert_success();
    let before = sealed_blobs(&with_key.store()).len();

    let keyless = Work::new(&data.path().display().to_string(), &[&key], None);
    std::fs::remove_dir_all(keyless.store()).ok();
    std::os::unix::fs::symlink(with_key.store(), keyless.store()).expect("same store");
    let out = keyless.run(&["backup", "--verify-level", "checksum"]);
    out.assert_success();
    out.assert_stderr_contains("key of its own");
    let m = keyless.manifest();
    assert_eq!(stat(&m, "uploaded"), original.len() as u64 - 1, "{m:#}");
    assert_eq!(sealed_blobs(&with_key.store()).len(), 2 * before);
    // It verifies and restores with the key like any other.
    with_key
        .run(&["verify", "last", "--level", "archive"])
        .assert_success();
}

#[test]
fn an_s3_bucket_round_trips_through_encryption_and_the_runbook_opens_a_directory_with_age() {
    let garage = GarageServer::shared();
    let bucket = garage.create_bucket("sealed-src");
    let keys = tempfile::tempdir().expect("keys");
    let key = Key::new(keys.path(), "key.txt");
    let data = tempfile::tempdir().expect("data");
    let original = sample(data.path());
    // Fill the bucket from the directory through pre-deploy itself: back up the directory,
    // then restore it into the bucket.
    let dir_work = Work::new(&data.path().display().to_string(), &[&key], Some(&key));
    dir_work.run(&["backup"]).assert_success();
    let url = garage.url(&bucket, "app");
    let out = run(dir_work
        .cmd(&["restore", "last", "--to", &url, "--yes"])
        .envs(garage.env()));
    out.assert_success();

    let work = Work::new(&url, &[&key], Some(&key));
    let out = run(work.cmd(&["backup"]).envs(garage.env()));
    out.assert_success();
    let m = work.manifest();
    assert_eq!(stat(&m, "objects"), original.len() as u64);
    assert!(!work.store().join("blobs/sha256").exists());
    run(work
        .cmd(&["verify", "last", "--level", "archive"])
        .envs(garage.env()))
    .assert_success();

    // The directory backup's raw runbook: the age CLI decrypts the index and every blob.
    let target = data.path();
    std::fs::remove_dir_all(target).expect("rm");
    std::fs::create_dir_all(target).expect("mkdir");
    let out = dir_work.run(&["show", "last", "--json"]);
    out.assert_success();
    let raw = predeploy_tests::cli::raw_runbook(&out.stdout);
    assert!(raw.contains("age -d -i"), "{raw}");
    assert!(!raw.contains(&key.secret));
    let out = run(Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &raw])
        .env("PREDEPLOY_AGE_IDENTITY_FILE", &key.file));
    out.assert_success();
    assert_eq!(
        tree(target),
        digests(&original),
        "the raw commands restored it"
    );
}
