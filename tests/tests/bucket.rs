//! Bucket and directory sources end to end through the `pre-deploy` binary: a directory, and an
//! S3 bucket on moto and on Garage; the second backup of unchanged data uploads nothing; restore
//! by content (bytes, content type, user metadata); damaged and missing blobs fail verification.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use backup_core::{BackupId, Digest, Manifest, Store, StoreExt, layout};
use backup_objectstore::bucket::bucket_stat;
use backup_objectstore::{BucketLocation, BucketRestorer, ObjectStoreStore, S3Settings, StoreUrl};
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, WriteMultipart,
};
use predeploy_tests::{GarageServer, MotoServer, Output, PgServer, S3Server, pre_deploy, run};

/// Files of the directory tests: empty, non-ASCII, spaces, deep, duplicates, and > 10 MiB.
fn sample_files() -> Vec<(String, Vec<u8>)> {
    let big: Vec<u8> = (0..11 * 1024 * 1024 + 3)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        ("empty".into(), Vec::new()),
        ("naïve café/résumé 2026.txt".into(), "crème brûlée".into()),
        ("with space.txt".into(), b"spaces are fine".to_vec()),
        (
            "a/b/c/d/e/f/g/h/deep.json".into(),
            b"{\"deep\":true}".to_vec(),
        ),
        ("copy-1.txt".into(), b"identical content".to_vec()),
        ("copies/copy-2.txt".into(), b"identical content".to_vec()),
        ("日本語/ファイル.txt".into(), "こんにちは".into()),
        ("big.bin".into(), big),
    ]
}

fn write_tree(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, data) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open_store(url: &str, settings: &S3Settings) -> ObjectStoreStore {
    ObjectStoreStore::open_with(&StoreUrl::parse(url).expect("store url"), false, settings)
        .expect("store opens")
}

fn manifest(rt: &tokio::runtime::Runtime, store: &ObjectStoreStore, id: &str) -> Manifest {
    let id: BackupId = id.parse().expect("id");
    rt.block_on(store.read_manifest(&id)).expect("manifest")
}

fn stat(m: &Manifest, source: &str, name: &str) -> u64 {
    let s = m.source(source).expect("source in the manifest");
    bucket_stat(s, name).unwrap_or_else(|| panic!("no {name} in {:?}", s.stats))
}

/// Every regular file under `dir`, by relative path.
fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn backup(store: &str, sources: &[String], env: &[(&'static str, String)]) -> Output {
    let mut cmd = pre_deploy();
    cmd.args(["backup", "--json", "--store", store]);
    for s in sources {
        cmd.arg("--source").arg(s);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    run(&mut cmd)
}

#[test]
fn a_directory_is_backed_up_reused_restored_and_damage_is_caught() {
    let src = tempfile::tempdir().expect("src");
    let files = sample_files();
    write_tree(src.path(), &files);
    let store_dir = tempfile::tempdir().expect("store");
    let store_url = store_dir.path().display().to_string();
    let source = format!("files=file://{}", src.path().display());
    let rt = runtime();

    let first = backup(&store_url, std::slice::from_ref(&source), &[]);
    first.assert_success();
    let first_id = json(&first)["id"].as_str().expect("id").to_owned();
    let store = open_store(&store_url, &S3Settings::default());
    let m1 = manifest(&rt, &store, &first_id);
    let n = files.len() as u64;
    assert_eq!(m1.source("files").expect("files").kind, "directory");
    assert_eq!(stat(&m1, "files", "objects"), n);
    assert_eq!(
        stat(&m1, "files", "bytes"),
        files.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
    );
    assert_eq!(stat(&m1, "files", "reused"), 0);
    assert_eq!(
        stat(&m1, "files", "uploaded") + stat(&m1, "files", "deduplicated"),
        n
    );
    let blobs = rt.block_on(store.list(layout::BLOBS_DIR)).expect("blobs");
    assert_eq!(blobs.len() as u64, n - 1, "the two copies share one blob");

    // Unchanged: the second backup reads and uploads nothing.
    let second = backup(&store_url, std::slice::from_ref(&source), &[]);
    second.assert_success();
    let second_id = json(&second)["id"].as_str().expect("id").to_owned();
    let m2 = manifest(&rt, &store, &second_id);
    assert_eq!(stat(&m2, "files", "reused"), n);
    assert_eq!(stat(&m2, "files", "uploaded"), 0);
    assert_eq!(stat(&m2, "files", "deduplicated"), 0);
    // ... and its verification reads nothing back either: the blobs of reused objects were
    // hashed by the first backup's verification; now they are checked for presence and size.
    let findings = json(&second)["verification"]["findings"].to_string();
    assert!(
        findings.contains("0 blobs read") && findings.contains("presence and size only"),
        "{findings}"
    );

    // Restore into another directory: the same files, byte for byte.
    let dst = tempfile::tempdir().expect("dst");
    let report = rt
        .block_on(BucketRestorer::new(S3Settings::default()).restore(
            &store,
            m2.source("files").expect("files"),
            &BucketLocation::Directory(dst.path().to_path_buf()),
        ))
        .expect("restored");
    assert_eq!((report.objects, report.written), (n, n));
    assert_eq!(read_tree(dst.path()), read_tree(src.path()));

    run(pre_deploy().args(["verify", &second_id, "--store", &store_url])).assert_success();

    // The next backup reuses every object; the presence check right after it finds a deleted
    // blob: the backup is refused (exit 4), naming the object and the blob.
    let deep = Digest::of(b"{\"deep\":true}");
    let deep_blob = store_dir.path().join(layout::blob_key(&deep));
    let kept = std::fs::read(&deep_blob).expect("blob on disk");
    std::fs::remove_file(&deep_blob).expect("delete");
    let third = backup(&store_url, std::slice::from_ref(&source), &[]);
    third.assert_code(4);
    third.assert_stderr_contains(&deep.hex());
    third.assert_stderr_contains("deep.json");
    third.assert_stderr_contains("missing");
    std::fs::write(&deep_blob, &kept).expect("put back");

    // One flipped byte in a blob: verification fails (exit 4) naming the object and the blob.
    let digest = Digest::of(b"spaces are fine");
    let blob = store_dir.path().join(layout::blob_key(&digest));
    let mut bytes = std::fs::read(&blob).expect("blob on disk");
    bytes[3] ^= 0x20;
    std::fs::write(&blob, &bytes).expect("damage");
    let out = run(pre_deploy().args(["verify", &second_id, "--store", &store_url]));
    out.assert_code(4);
    out.assert_stderr_contains(&digest.hex());
    out.assert_stderr_contains("with space.txt");
    out.assert_stderr_contains("corrupted");

    // A deleted blob: exit 4 too, saying it is missing.
    bytes[3] ^= 0x20;
    std::fs::write(&blob, &bytes).expect("repair");
    let deep = Digest::of(b"{\"deep\":true}");
    std::fs::remove_file(store_dir.path().join(layout::blob_key(&deep))).expect("delete");
    let out = run(pre_deploy().args(["verify", &first_id, "--store", &store_url]));
    out.assert_code(4);
    out.assert_stderr_contains(&deep.hex());
    out.assert_stderr_contains("missing");
}

/// Uploads an object to an S3 source bucket with a content type and user metadata; objects over
/// 10 MiB go up as a multipart upload of 5 MiB parts.
async fn put_object(client: &Arc<dyn ObjectStore>, key: &str, data: &[u8], meta: &str) {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "application/x-test".into());
    attributes.insert(Attribute::Metadata("origin".into()), meta.to_owned().into());
    let path = ObjPath::parse(key).expect("key");
    if data.len() > 10 * 1024 * 1024 {
        let upload = client
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .expect("multipart");
        let mut w = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
        w.write(data);
        w.finish().await.expect("multipart finish");
    } else {
        client
            .put_opts(
                &path,
                PutPayload::from(data.to_vec()),
                PutOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .expect("put");
    }
}

fn bucket_round_trip(server: &dyn S3Server, store_on_s3: bool) {
    let rt = runtime();
    let settings = server.settings();
    let source_bucket = server.create_bucket(&format!("src-{}", server.kind()));
    let client = settings.build(&source_bucket, "app").expect("client");
    let files = sample_files();
    rt.block_on(async {
        for (key, data) in &files {
            put_object(
                &client,
                key,
                data,
                &format!("from {key}").replace(|c: char| !c.is_ascii(), "?"),
            )
            .await;
        }
        // Outside the prefix: not part of the source.
        let outside = settings.build(&source_bucket, "").expect("client");
        outside
            .put(
                &ObjPath::parse("other/x").expect("key"),
                PutPayload::from_static(b"x"),
            )
            .await
            .expect("put");
    });
    let etag = rt
        .block_on(client.head(&ObjPath::parse("big.bin").expect("key")))
        .expect("head")
        .e_tag
        .unwrap_or_default();
    assert!(
        etag.trim_matches('"').contains('-'),
        "{}: a multipart ETag: {etag}",
        server.kind()
    );

    let store_dir = tempfile::tempdir().expect("store");
    let store_url = if store_on_s3 {
        let b = server.create_bucket(&format!("store-{}", server.kind()));
        server.url(&b, "backups")
    } else {
        store_dir.path().display().to_string()
    };
    let source = format!("uploads={}", server.url(&source_bucket, "app"));
    let env = server.env();
    let first = backup(&store_url, std::slice::from_ref(&source), &env);
    first.assert_success();
    let store = open_store(&store_url, &settings);
    let m1 = manifest(&rt, &store, json(&first)["id"].as_str().expect("id"));
    let n = files.len() as u64;
    assert_eq!(m1.source("uploads").expect("uploads").kind, "bucket");
    assert_eq!(stat(&m1, "uploads", "objects"), n, "{}", server.kind());
    assert!(
        !m1.source("uploads")
            .expect("uploads")
            .location
            .contains(server.secret_key()),
        "no secret in the manifest"
    );

    let second = backup(&store_url, std::slice::from_ref(&source), &env);
    second.assert_success();
    let second_id = json(&second)["id"].as_str().expect("id").to_owned();
    let m2 = manifest(&rt, &store, &second_id);
    assert_eq!(
        (
            stat(&m2, "uploads", "reused"),
            stat(&m2, "uploads", "uploaded")
        ),
        (n, 0),
        "{}: an unchanged bucket uploads nothing",
        server.kind()
    );

    // Restore into another bucket: bytes, content type and user metadata.
    let target_bucket = server.create_bucket(&format!("dst-{}", server.kind()));
    let target_url = server.url(&target_bucket, "restored");
    let report = rt
        .block_on(BucketRestorer::new(settings.clone()).restore(
            &store,
            m2.source("uploads").expect("uploads"),
            &BucketLocation::parse(&target_url).expect("target"),
        ))
        .expect("restored");
    assert_eq!(report.written, n);
    let target = settings.build(&target_bucket, "restored").expect("client");
    rt.block_on(async {
        for (key, data) in &files {
            let got = target
                .get_opts(&ObjPath::parse(key).expect("key"), GetOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{}: {key} restored: {e}", server.kind()));
            let attrs = got.attributes.clone();
            let bytes = got.bytes().await.expect("bytes");
            assert_eq!(&bytes[..], &data[..], "{}: {key}", server.kind());
            assert_eq!(
                attrs
                    .get(&Attribute::ContentType)
                    .map(|v| v.as_ref().to_owned()),
                Some("application/x-test".to_owned()),
                "{}: content type of {key}",
                server.kind()
            );
            assert_eq!(
                attrs
                    .get(&Attribute::Metadata("origin".into()))
                    .map(|v| v.as_ref().to_owned()),
                Some(format!("from {key}").replace(|c: char| !c.is_ascii(), "?")),
                "{}: metadata of {key}",
                server.kind()
            );
        }
    });

    run(pre_deploy()
        .args(["verify", &second_id, "--store", &store_url])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str()))))
    .assert_success();

    // A damaged blob in the store fails verification, naming it.
    let digest = Digest::of(b"spaces are fine");
    let key = layout::blob_key(&digest);
    rt.block_on(store.put_bytes(
        &key,
        "spaces are FINE".into(),
        backup_core::WriteMode::Overwrite,
    ))
    .expect("damage");
    let out = run(pre_deploy()
        .args(["verify", &second_id, "--store", &store_url])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str()))));
    out.assert_code(4);
    out.assert_stderr_contains(&digest.hex());
}

#[test]
fn a_bucket_on_moto_round_trips_with_a_local_store() {
    bucket_round_trip(MotoServer::shared(), false);
}

#[test]
fn a_bucket_on_moto_round_trips_with_an_s3_store() {
    bucket_round_trip(MotoServer::shared(), true);
}

#[test]
fn a_bucket_on_garage_round_trips_with_a_local_store() {
    bucket_round_trip(GarageServer::shared(), false);
}

#[test]
fn a_bucket_on_garage_round_trips_with_an_s3_store() {
    bucket_round_trip(GarageServer::shared(), true);
}

#[test]
fn a_database_and_a_directory_share_one_backup_and_one_manifest() {
    let server = PgServer::shared();
    let db = server.create_database("bucketpg");
    server.psql(
        &db,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10);",
    );
    let src = tempfile::tempdir().expect("src");
    write_tree(src.path(), &sample_files()[..3]);
    let store_dir = tempfile::tempdir().expect("store");
    let store_url = store_dir.path().display().to_string();
    let out = backup(
        &store_url,
        &[
            format!("db={}", server.url(&db)),
            format!("files=file://{}", src.path().display()),
        ],
        &[],
    );
    out.assert_success();
    let id = json(&out)["id"].as_str().expect("id").to_owned();
    let rt = runtime();
    let store = open_store(&store_url, &S3Settings::default());
    let ids = rt.block_on(store.list_backup_ids()).expect("ids");
    assert_eq!(ids.len(), 1, "one backup");
    let m = manifest(&rt, &store, &id);
    let kinds: Vec<(&str, &str)> = m
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(kinds, [("db", "postgres"), ("files", "directory")]);
    assert_eq!(stat(&m, "files", "objects"), 3);
    assert_eq!(m.source("db").expect("db").stats.total_rows(), 10);
}

#[test]
fn prune_reports_blobs_and_keeps_young_unreferenced_ones() {
    let src = tempfile::tempdir().expect("src");
    write_tree(src.path(), &sample_files()[1..4]);
    let store_dir = tempfile::tempdir().expect("store");
    let store_url = store_dir.path().display().to_string();
    let source = format!("files=file://{}", src.path().display());
    backup(&store_url, std::slice::from_ref(&source), &[]).assert_success();
    // The second backup sees other content: the first one's blobs become unreferenced once it
    // is pruned, but they are younger than the grace period, so they stay.
    std::fs::write(src.path().join("with space.txt"), b"changed").expect("write");
    backup(&store_url, std::slice::from_ref(&source), &[]).assert_success();

    let dry = run(pre_deploy().args([
        "prune",
        "--kind",
        "manual",
        "--keep-last",
        "1",
        "--json",
        "--store",
        &store_url,
    ]));
    dry.assert_success();
    let v = json(&dry);
    assert_eq!(v["blobs"]["blobs"], 4, "{v}");
    assert_eq!(v["blobs"]["referenced"], 3, "{v}");
    assert_eq!(v["blobs"]["young"], 1, "{v}");
    assert_eq!(v["blobs"]["removable"], 0, "{v}");

    let applied = run(pre_deploy().args([
        "prune",
        "--kind",
        "manual",
        "--keep-last",
        "1",
        "--yes",
        "--store",
        &store_url,
    ]));
    applied.assert_success();
    assert!(
        applied.stdout.contains("blobs: 4 stored"),
        "{}",
        applied.stdout
    );
    let store = open_store(&store_url, &S3Settings::default());
    let rt = runtime();
    assert_eq!(rt.block_on(store.list_backup_ids()).expect("ids").len(), 1);
    let blobs = rt.block_on(store.list(layout::BLOBS_DIR)).expect("blobs");
    assert_eq!(blobs.len(), 4, "young unreferenced blobs stay");
}

/// The store's S3 settings can come without any URL query: from the standard `AWS_*`
/// variables, or from `[s3]` in the config file with the secret in `${VAR}`; the secret is in
/// neither the output nor the manifest.
#[test]
fn s3_settings_come_from_aws_variables_or_the_config_file() {
    let moto = MotoServer::shared();
    let bucket = moto.create_bucket("settings");
    let src = tempfile::tempdir().expect("src");
    write_tree(src.path(), &sample_files()[..3]);
    let source = format!("files=file://{}", src.path().display());

    // 1. AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP and the keys.
    let mut env = moto.env();
    env.extend([
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", moto.region().to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]);
    let from_env = backup(
        &format!("s3://{bucket}/from-env"),
        std::slice::from_ref(&source),
        &env,
    );
    from_env.assert_success();
    assert!(
        !from_env.stdout.contains(moto.secret_key()),
        "{}",
        from_env.stdout
    );
    assert!(
        !from_env.stderr.contains(moto.secret_key()),
        "{}",
        from_env.stderr
    );

    // 2. [s3] in predeploy.toml; only the secret comes from the environment, by name.
    let work = tempfile::tempdir().expect("workdir");
    std::fs::write(
        work.path().join("predeploy.toml"),
        format!(
            "store = \"s3://{bucket}/from-config\"\n\n[s3]\nendpoint = \"{}\"\nregion = \"{}\"\n\
             allow_http = true\naccess_key_id = \"{}\"\nsecret_access_key = \"${{MOTO_SECRET}}\"\n",
            moto.endpoint(),
            moto.region(),
            moto.access_key()
        ),
    )
    .expect("config");
    let from_config = run(pre_deploy()
        .args(["backup", "--json", "--source", &source])
        .env("MOTO_SECRET", moto.secret_key())
        .current_dir(work.path()));
    from_config.assert_success();
    let id = json(&from_config)["id"].as_str().expect("id").to_owned();

    // Both backups are in the bucket, readable with explicit settings; no secret stored.
    let rt = runtime();
    for (prefix, expected) in [
        ("from-env", json(&from_env)["id"].clone()),
        ("from-config", id.into()),
    ] {
        let store = open_store(&moto.url(&bucket, prefix), &moto.settings());
        let ids = rt.block_on(store.list_backup_ids()).expect("ids");
        assert_eq!(ids.len(), 1, "{prefix}: one backup");
        assert_eq!(
            ids[0].to_string(),
            expected.as_str().expect("id"),
            "{prefix}"
        );
        let m = manifest(&rt, &store, &ids[0].to_string());
        let text = serde_json::to_string(&m).expect("manifest json");
        assert!(!text.contains(moto.secret_key()), "{prefix}: {text}");
        assert_eq!(stat(&m, "files", "objects"), 3, "{prefix}");
    }
}
