//! S3 stores reached the way AWS tools reach them (issue 13, item 4): a named profile of the
//! shared credentials and config files; and backup objects written with server-side
//! encryption and a storage class. Against moto.

use std::path::Path;

use predeploy_tests::pg::PgServer;
use predeploy_tests::{MotoServer, Output, S3Server, pre_deploy, run};

fn source(server: &PgServer) -> String {
    let db = server.create_database("s3cred");
    server.psql(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, note text); \
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 200) g;",
    );
    server.url(&db)
}

/// `pre-deploy backup` into `store` with only `env` (no `AWS_*` from this process).
fn backup(work: &Path, store: &str, source_url: &str, env: &[(&str, String)]) -> Output {
    let mut cmd = pre_deploy();
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(work)
        .env("HOME", work)
        .args([
            "backup",
            "--json",
            "--verify-level",
            "decompress",
            "--store",
            store,
        ])
        .arg("--source")
        .arg(format!("db={source_url}"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// `ServerSideEncryption StorageClass` of `key`, from a signed HEAD (boto3 of moto's venv).
fn head(moto: &MotoServer, bucket: &str, key: &str) -> String {
    let out = std::process::Command::new(MotoServer::binary().with_file_name("python"))
        .args([
            "-c",
            "import boto3, sys; s3 = boto3.client('s3', endpoint_url=sys.argv[1], \
             aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], \
             region_name='us-east-1'); h = s3.head_object(Bucket=sys.argv[4], Key=sys.argv[5]); \
             print(h.get('ServerSideEncryption'), h.get('StorageClass'))",
        ])
        .args([
            &moto.endpoint(),
            moto.access_key(),
            moto.secret_key(),
            bucket,
            key,
        ])
        .output()
        .expect("python of moto's venv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every key of a bucket, from moto's listing.
fn keys(moto: &MotoServer, bucket: &str) -> Vec<String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f"])
        .arg(format!("{}/{bucket}?list-type=2", moto.endpoint()))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
        .collect()
}

/// Writes AWS shared files under `dir` with one profile `name` that reaches `moto` (keys,
/// region, endpoint; the `default` profile has wrong keys) and returns the variables that point
/// at them, with `AWS_PROFILE` set to `profile`.
fn profile_files(
    dir: &Path,
    name: &str,
    moto: &MotoServer,
) -> impl Fn(&str) -> Vec<(&'static str, String)> {
    let aws = dir.join("aws");
    std::fs::create_dir_all(&aws).expect("aws dir");
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[{name}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            moto.access_key(),
            moto.secret_key()
        ),
    )
    .expect("credentials");
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile {name}]\nregion = {}\nendpoint_url = {}\n",
            moto.region(),
            moto.endpoint()
        ),
    )
    .expect("config");
    move |profile: &str| {
        vec![
            ("AWS_PROFILE", profile.to_owned()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                aws.join("credentials").display().to_string(),
            ),
            ("AWS_CONFIG_FILE", aws.join("config").display().to_string()),
        ]
    }
}

#[test]
fn a_named_profile_gives_the_keys_region_and_endpoint() {
    let moto = MotoServer::shared();
    let pg = PgServer::shared();
    let bucket = moto.create_bucket("profile");
    let work = tempfile::tempdir().expect("work");
    let files = profile_files(work.path(), "backups", moto);
    // No endpoint, region or key anywhere but in the profile.
    let store = format!("s3://{bucket}/nightly?allow_http=true");
    let out = backup(work.path(), &store, &source(pg), &files("backups"));
    out.assert_success();
    assert!(
        keys(moto, &bucket)
            .iter()
            .any(|k| k.starts_with("nightly/backups/") && k.ends_with("/manifest.json")),
        "the backup is in the bucket the profile reaches"
    );
    assert!(!out.stderr.contains(moto.secret_key()), "{}", out.stderr);

    // A profile that does not exist is a configuration error naming it.
    let out = backup(work.path(), &store, &source(pg), &files("nightly-typo"));
    out.assert_code(2);
    out.assert_stderr_contains("\"nightly-typo\" is in neither");
}

#[test]
fn backup_objects_get_the_server_side_encryption_and_storage_class_asked_for() {
    let moto = MotoServer::shared();
    let pg = PgServer::shared();
    let bucket = moto.create_bucket("sse");
    let work = tempfile::tempdir().expect("work");
    let store = format!(
        "{}&sse=AES256&storage_class=STANDARD_IA",
        moto.url(&bucket, "enc")
    );
    let out = backup(work.path(), &store, &source(pg), &moto.env());
    out.assert_success();
    let stored = keys(moto, &bucket);
    let data: Vec<&String> = stored.iter().filter(|k| k.contains("/data/")).collect();
    assert!(!data.is_empty(), "{stored:?}");
    for key in data
        .iter()
        .copied()
        .chain(stored.iter().filter(|k| k.ends_with("manifest.json")))
    {
        assert_eq!(head(moto, &bucket, key), "AES256 STANDARD_IA", "{key}");
    }
    // A class whose objects cannot be read back is refused before anything is written.
    let bucket = moto.create_bucket("glacier");
    let store = format!("{}&storage_class=DEEP_ARCHIVE", moto.url(&bucket, "x"));
    let out = backup(work.path(), &store, &source(pg), &moto.env());
    out.assert_code(2);
    out.assert_stderr_contains("cannot be read without a restore request");
    assert!(keys(moto, &bucket).is_empty());
}

#[test]
fn a_bucket_source_takes_its_region_and_endpoint_from_the_profile_too() {
    let moto = MotoServer::shared();
    let bucket = moto.create_bucket("profsrc");
    for (key, body) in [("uploads/a.txt", "alpha"), ("uploads/b.txt", "beta")] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", "--data-binary", body])
            .arg(format!("{}/{bucket}/{key}", moto.endpoint()))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let work = tempfile::tempdir().expect("work");
    let env = profile_files(work.path(), "files", moto)("files");
    let store = work.path().join("store");
    let out = backup(
        work.path(),
        &store.display().to_string(),
        &format!("s3://{bucket}/uploads?allow_http=true"),
        &env,
    );
    out.assert_success();
    let backups = store.join("backups");
    let dir = std::fs::read_dir(&backups)
        .expect("backups")
        .flatten()
        .next()
        .expect("a backup");
    let manifest: backup_core::Manifest =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let source = manifest.source("db").expect("the bucket source");
    assert_eq!(
        backup_objectstore::bucket::bucket_stat(source, "objects"),
        Some(2),
        "{:?}",
        source.stats
    );
}
