//! `pre-deploy restore` of directory and bucket sources: a safety snapshot of what is there
//! first, every object checked against its digest, a damaged backup refused before the target is
//! touched, and consent required.

use std::collections::BTreeMap;
use std::path::Path;

use predeploy_tests::{GarageServer, Output, S3Server, pre_deploy, run};

fn write(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    }
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under").display().to_string();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn cli(store: &str, source: &str, args: &[&str]) -> Output {
    run(pre_deploy()
        .args(["--store", store, "--source", source, "--json"])
        .args(args))
}

/// [`cli`] with the S3 server's credentials in the `AWS_*` variables.
fn cli_with_s3(store: &str, source: &str, server: &dyn S3Server, args: &[&str]) -> Output {
    run(pre_deploy()
        .args(["--store", store, "--source", source, "--json"])
        .args(args)
        .envs(server.env()))
}

fn id_of(out: &Output) -> String {
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["id"].as_str().expect("id").to_owned()
}

fn kinds(store: &str) -> Vec<String> {
    let out = run(pre_deploy().args(["--store", store, "--json", "list"]));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A directory changed after its backup is put back: the backed-up files have their backed-up
/// bytes again, a file created later is left alone, and the changed state is kept in a safety
/// snapshot that restores it in turn.
#[test]
fn a_directory_restore_puts_files_back_after_a_safety_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    write(
        &files,
        &[
            ("a.txt", b"alpha"),
            ("deep/er/b.bin", &[0u8, 1, 2, 255]),
            ("naïve café.txt", b"unicode"),
            ("empty", b""),
        ],
    );
    let backed_up = tree(&files);
    let store = dir.path().join("store").display().to_string();
    let source = format!("files=file://{}", files.display());
    let first = cli(&store, &source, &["backup"]);
    first.assert_success();
    let id = id_of(&first);

    write(
        &files,
        &[("a.txt", b"ALPHA changed"), ("later.txt", b"new")],
    );
    std::fs::remove_file(files.join("deep/er/b.bin")).expect("rm");
    let changed = tree(&files);

    // Without consent and without a terminal: refused, nothing changed.
    let out = cli(&store, &source, &["restore", &id]);
    out.assert_code(2);
    out.assert_stderr_contains("--yes");
    assert_eq!(tree(&files), changed);

    // A dry run prints the plan and changes nothing.
    let out = cli(&store, &source, &["restore", &id, "--dry-run"]);
    out.assert_success();
    out.assert_stderr_contains("safety snapshot of the 4 object(s)");
    assert_eq!(tree(&files), changed);

    let out = cli(&store, &source, &["restore", &id, "--yes"]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["restore"]["report"]["extra_in_target"], 1, "{v}");
    let after = tree(&files);
    for (name, data) in &backed_up {
        assert_eq!(after.get(name), Some(data), "{name} is back as backed up");
    }
    assert_eq!(
        after.get("later.txt").map(Vec::as_slice),
        Some(&b"new"[..]),
        "left alone"
    );

    let safety = v["restore"]["safety_backup"]
        .as_str()
        .expect("a safety snapshot")
        .to_owned();
    assert!(kinds(&store).contains(&"safety".to_owned()));
    // The safety snapshot holds the changed state: restoring it brings the change back.
    cli(&store, &source, &["restore", &safety, "--yes"]).assert_success();
    assert_eq!(
        tree(&files).get("a.txt").map(Vec::as_slice),
        Some(&b"ALPHA changed"[..])
    );
}

/// A blob damaged in the store: the restore is refused with exit 4 before anything is written,
/// and no safety snapshot is taken.
#[test]
fn a_damaged_bucket_backup_is_refused_before_the_target_is_touched() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    write(
        &files,
        &[
            ("one.txt", b"the first file"),
            ("two.txt", b"the second file"),
        ],
    );
    let store_dir = dir.path().join("store");
    let store = store_dir.display().to_string();
    let source = format!("files=file://{}", files.display());
    let first = cli(&store, &source, &["backup"]);
    first.assert_success();
    let id = id_of(&first);
    write(&files, &[("one.txt", b"changed")]);
    let changed = tree(&files);

    let digest = backup_core::Digest::of(b"the second file");
    let blob = store_dir.join(backup_core::layout::blob_key(&digest));
    std::fs::write(&blob, b"the second filE").expect("damage");

    let out = cli(&store, &source, &["restore", &id, "--yes"]);
    out.assert_code(4);
    out.assert_stderr_contains(&digest.hex());
    out.assert_stderr_contains("untouched");
    assert_eq!(tree(&files), changed, "the target is untouched");
    assert!(
        !kinds(&store).contains(&"safety".to_owned()),
        "no safety snapshot was taken"
    );
}

/// A bucket on Garage restored into another bucket given with --to: same keys, same bytes,
/// content type and user metadata preserved.
#[test]
fn a_bucket_restores_into_another_bucket_with_its_metadata() {
    use object_store::{
        Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, path::Path,
    };
    let garage = GarageServer::shared();
    let src = garage.create_bucket("rsrc");
    let dst = garage.create_bucket("rdst");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = |b: &str| garage.settings().build(b, "").expect("client");
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("img/logo.png", vec![137, 80, 78, 71, 1, 2, 3]),
        ("docs/read me.txt", b"hello".to_vec()),
        ("empty", vec![]),
    ];
    rt.block_on(async {
        let c = client(&src);
        for (key, data) in &objects {
            let mut attrs = Attributes::new();
            attrs.insert(Attribute::ContentType, "application/x-test".into());
            attrs.insert(Attribute::Metadata("owner".into()), "team-a".into());
            c.put_opts(
                &Path::from(*key),
                data.clone().into(),
                PutOptions {
                    attributes: attrs,
                    ..PutOptions::default()
                },
            )
            .await
            .expect("put");
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("store").display().to_string();
    let source = format!("uploads={}", garage.url(&src, ""));
    let with_env = |args: &[&str]| cli_with_s3(&store, &source, garage, args);
    let first = with_env(&["backup"]);
    first.assert_success();
    let id = id_of(&first);
    let out = with_env(&[
        "restore",
        &id,
        "--source",
        "uploads",
        "--to",
        &garage.url(&dst, ""),
        "--yes",
    ]);
    out.assert_success();
    rt.block_on(async {
        let c = client(&dst);
        for (key, data) in &objects {
            let got = c.get(&Path::from(*key)).await.expect("restored object");
            let attrs = got.attributes.clone();
            assert_eq!(got.bytes().await.expect("bytes").to_vec(), *data, "{key}");
            assert_eq!(
                attrs
                    .get(&Attribute::ContentType)
                    .map(|v| v.to_string())
                    .as_deref(),
                Some("application/x-test"),
                "{key}"
            );
            assert_eq!(
                attrs
                    .get(&Attribute::Metadata("owner".into()))
                    .map(|v| v.to_string())
                    .as_deref(),
                Some("team-a"),
                "{key}"
            );
        }
    });
}

/// The runbook of a directory backup in a local store: its raw commands (sha256sum, zstd,
/// python3) put the files back when run by `sh -e`, without pre-deploy.
#[test]
fn the_runbook_raw_commands_restore_a_directory() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    write(
        &files,
        &[
            ("a.txt", b"alpha"),
            ("sub dir/b.bin", &[1u8, 2, 3]),
            ("ünï.txt", b"x"),
        ],
    );
    let backed_up = tree(&files);
    let store = dir.path().join("store").display().to_string();
    let source = format!("files=file://{}", files.display());
    cli(&store, &source, &["backup"]).assert_success();
    write(&files, &[("a.txt", b"broken")]);
    std::fs::remove_file(files.join("sub dir/b.bin")).expect("rm");

    let out = run(pre_deploy().args(["--store", &store, "--json", "show", "last"]));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let steps = v["runbook"]["steps"].as_array().expect("steps");
    assert!(
        steps.iter().any(|s| s["commands"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("pre-deploy restore") && c.contains("--source files"))),
        "{steps:?}"
    );
    let raw = steps
        .iter()
        .find(|s| {
            s["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Or without pre-deploy"))
        })
        .expect("a raw step");
    let script: Vec<&str> = raw["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    let status = std::process::Command::new("sh")
        .args(["-e", "-c", &script.join("\n")])
        .status()
        .expect("sh");
    assert!(status.success(), "the raw commands ran: {script:?}");
    assert_eq!(
        tree(&files),
        backed_up,
        "the raw commands put the files back"
    );
}

/// A bucket on moto, backed up into an S3 store on moto, changed, then restored in place: the
/// backed-up objects are back, an object created later is left alone, and the changed state is
/// in a safety snapshot (in the S3 store) that brings the change back in turn.
#[test]
fn a_bucket_restores_in_place_after_a_safety_snapshot_in_an_s3_store() {
    use object_store::{ObjectStoreExt, path::Path};
    let moto = predeploy_tests::MotoServer::shared();
    let src = moto.create_bucket("inplace");
    let store_bucket = moto.create_bucket("inplace-store");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = moto.settings().build(&src, "").expect("client");
    let put = |key: &str, data: &[u8]| {
        rt.block_on(client.put(&Path::from(key), data.to_vec().into()))
            .expect("put");
    };
    let get = |key: &str| -> Option<Vec<u8>> {
        rt.block_on(async {
            match client.get(&Path::from(key)).await {
                Ok(r) => Some(r.bytes().await.expect("bytes").to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("get {key}: {e}"),
            }
        })
    };
    put("media/a.jpg", b"the original picture");
    put("media/b.jpg", b"another picture");
    put("notes/read me.txt", b"hello");

    let store = moto.url(&store_bucket, "backups");
    let source = format!("uploads={}", moto.url(&src, ""));
    let with_env = |args: &[&str]| cli_with_s3(&store, &source, moto, args);
    let first = with_env(&["backup"]);
    first.assert_success();
    let id = id_of(&first);

    // The failed deploy: one object overwritten, one deleted, one added.
    put("media/a.jpg", b"BROKEN");
    rt.block_on(client.delete(&Path::from("media/b.jpg")))
        .expect("delete");
    put("media/new.jpg", b"added later");

    let out = with_env(&["restore", &id, "--yes"]);
    out.assert_success();
    assert_eq!(
        get("media/a.jpg").as_deref(),
        Some(&b"the original picture"[..])
    );
    assert_eq!(get("media/b.jpg").as_deref(), Some(&b"another picture"[..]));
    assert_eq!(get("notes/read me.txt").as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        get("media/new.jpg").as_deref(),
        Some(&b"added later"[..]),
        "objects the backup lacks are left alone"
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let safety = v["restore"]["safety_backup"]
        .as_str()
        .unwrap_or_else(|| panic!("a safety snapshot: {v}"))
        .to_owned();

    // The safety snapshot holds the broken state.
    with_env(&["restore", &safety, "--yes"]).assert_success();
    assert_eq!(get("media/a.jpg").as_deref(), Some(&b"BROKEN"[..]));
}
