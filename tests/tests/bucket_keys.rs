//! Every key S3 can hold (issue 18, item 5): keys with a TAB, a newline, empty segments
//! (`a//b`), `.` and `..` segments, a trailing `/`, a leading `/`, `%2F`, backslashes, unicode
//! and emoji, a 200-byte name, 20-deep prefixes, an empty and a multipart-sized object, each
//! with a content type, user metadata and other headers, on moto and on Garage:
//!
//! - `backup` succeeds (exit 0, verified), and the next backup reuses every object;
//! - `restore --to` another bucket gives the same keys, bytes and metadata, object by object;
//! - `restore --to` a directory writes every key a file system can hold and names each one it
//!   cannot (exit 8), without losing the rest (of `dup` and `dup/inner`, one is a file).
//!
//! The objects are written and read back with boto3 (from the moto venv `scripts/setup.sh`
//! installs), AWS's own client, so what reaches the server is checked by a client other than
//! the one under test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{Digest, Manifest};
use backup_objectstore::bucket::bucket_stat;
use predeploy_tests::{GarageServer, MotoServer, Output, S3Server, pre_deploy, run};
use serde_json::{Value, json};

/// boto3 helper: `put` uploads the objects described on stdin (JSON list) under `prefix`;
/// `dump` prints every object under `prefix` (key relative to it) with its size, sha256 and
/// headers, as read back with GET (objects under `many/`: size and ETag as listed, which is
/// the MD5 of single-part uploads).
const BOTO: &str = r#"
import hashlib, json, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
from urllib.parse import unquote_plus

cmd, endpoint, region, bucket, prefix = sys.argv[1:6]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, region_name=region,
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                  request_checksum_calculation="when_required",
                  response_checksum_validation="when_required"))

def body(spec):
    key = spec["key"].encode()
    size = spec.get("size", len(key))
    unit = key + b"|"
    return (unit * (size // len(unit) + 1))[:size]

def put(spec):
    extra = spec.get("headers", {})
    s3.put_object(Bucket=bucket, Key=prefix + spec["key"], Body=body(spec), **extra)

if cmd == "put":
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, json.load(sys.stdin)))
elif cmd == "dump":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, EncodingType="url"):
        for o in page.get("Contents", []):
            key = unquote_plus(o["Key"])
            if key.startswith(prefix + "many/"):
                out[key[len(prefix):]] = {"size": o["Size"], "ETag": o["ETag"]}
                continue
            r = s3.get_object(Bucket=bucket, Key=key)
            data = r["Body"].read()
            out[key[len(prefix):]] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "ContentType": r.get("ContentType"),
                "Metadata": r.get("Metadata"),
                "CacheControl": r.get("CacheControl"),
                "ContentDisposition": r.get("ContentDisposition"),
                "ContentLanguage": r.get("ContentLanguage"),
            }
    json.dump(out, sys.stdout)
else:
    raise SystemExit("unknown command " + cmd)
"#;

/// The Python of the moto venv, which has boto3.
fn python() -> PathBuf {
    MotoServer::binary().with_file_name("python3")
}

fn boto(server: &dyn S3Server, cmd: &str, bucket: &str, prefix: &str, stdin: &str) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(python())
        .args([
            "-c",
            BOTO,
            cmd,
            &server.endpoint(),
            server.region(),
            bucket,
            prefix,
        ])
        .envs(server.env())
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (scripts/setup.sh)", python().display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("boto3 helper");
    assert!(
        out.status.success(),
        "{}: boto3 {cmd} failed: {}",
        server.kind(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every object under `prefix`, by key relative to it.
fn dump(server: &dyn S3Server, bucket: &str, prefix: &str) -> BTreeMap<String, Value> {
    serde_json::from_str(&boto(server, "dump", bucket, prefix, "")).expect("dump is JSON")
}

/// The keys of the test: relative to the source prefix.
fn keys(server: &dyn S3Server) -> Vec<String> {
    let mut keys: Vec<String> = [
        "plain.txt",
        "tab\there.txt",
        "a//b",
        "./x",
        "../y",
        "x/./y",
        "x/../z",
        "trail/",
        "/lead",
        ".",
        "..",
        "cr\rkey",
        "ctl\u{1}key",
        "ünïcödé/😀 emoji.txt",
        "p%2Fq",
        "back\\slash\\name",
        "+ = & % # ? ; , ' \" chars",
        "empty",
        "big\tobject.bin",
        FILE_AND_DIR[0],
        FILE_AND_DIR[1],
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    keys.push("n".repeat(200));
    keys.push(format!("long/{}", "é".repeat(128)));
    keys.push(format!(
        "{}/deep.txt",
        (1..=20)
            .map(|i| format!("d{i}"))
            .collect::<Vec<_>>()
            .join("/")
    ));
    // moto's server routes no request whose key has a newline (404); AWS and Garage store it.
    if server.kind() != "moto" {
        keys.push("new\nline".into());
    }
    // More than one listing page (1,000 keys), the odd keys on both sides of its end.
    keys.extend((0..1000).map(|i| format!("many/{i:04}")));
    keys
}

/// A key and another under it as a prefix: a directory can hold one of them, not both.
const FILE_AND_DIR: [&str; 2] = ["dup", "dup/inner"];

/// Whether a key can be a file under a directory: what the test expects, written
/// independently of the code under test.
fn file_system_can_hold(key: &str) -> bool {
    !key.is_empty()
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.len() <= 255)
}

/// The size of the test object `key`.
fn size_of(key: &str) -> usize {
    match key {
        "empty" => 0,
        "big\tobject.bin" => 12 * 1024 * 1024 + 5,
        _ => key.len() * 3,
    }
}

/// The bytes of the test object `key` (as the boto3 helper makes them).
fn body(key: &str, size: usize) -> Vec<u8> {
    let unit = format!("{key}|");
    unit.bytes().cycle().take(size).collect()
}

fn object_specs(keys: &[String]) -> Value {
    let specs: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            json!({
                "key": key,
                "size": size_of(key),
                "headers": {
                    "ContentType": format!("application/x-test-{i}"),
                    "Metadata": {"origin": format!("object {i}"), "team": "uploads"},
                    "CacheControl": "max-age=60",
                    "ContentDisposition": format!("attachment; filename=\"f{i}.bin\""),
                    "ContentLanguage": "de-CH",
                },
            })
        })
        .collect();
    Value::Array(specs)
}

fn cli(server: &dyn S3Server, store: &str, source: &str, args: &[&str]) -> Output {
    run(pre_deploy()
        .args(["--store", store, "--source", source, "--json"])
        .args(args)
        .envs(server.env()))
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

fn stat(out: &Output, name: &str) -> u64 {
    let manifest: Manifest =
        serde_json::from_value(json_of(out)["manifest"].clone()).expect("manifest");
    bucket_stat(manifest.source("files").expect("files"), name)
        .unwrap_or_else(|| panic!("no {name} in the manifest"))
}

/// Every regular file under `dir`, by `/`-separated relative path, with its sha256.
fn files(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("inside")
                    .to_str()
                    .expect("utf-8");
                let data = std::fs::read(&p).expect("read");
                out.insert(rel.to_owned(), Digest::of(&data).hex());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn every_key_round_trips(server: &dyn S3Server) {
    let kind = server.kind();
    let keys = keys(server);
    let src = server.create_bucket(&format!("keys-src-{kind}"));
    let dst = server.create_bucket(&format!("keys-dst-{kind}"));
    boto(
        server,
        "put",
        &src,
        "src/",
        &object_specs(&keys).to_string(),
    );
    let source_objects = dump(server, &src, "src/");
    assert_eq!(
        source_objects.keys().cloned().collect::<Vec<_>>(),
        {
            let mut k = keys.clone();
            k.sort();
            k
        },
        "{kind}: the server holds every test key as written"
    );

    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store").display().to_string();
    let source = format!("files={}", server.url(&src, "src"));

    // Backup: exit 0 means verified.
    let first = cli(server, &store, &source, &["backup"]);
    first.assert_success();
    let n = keys.len() as u64;
    assert_eq!(stat(&first, "objects"), n, "{kind}");
    let id = json_of(&first)["id"].as_str().expect("id").to_owned();

    // The listing and the previous index agree on key order: nothing is read again.
    let second = cli(server, &store, &source, &["backup"]);
    second.assert_success();
    assert_eq!(
        (stat(&second, "reused"), stat(&second, "uploaded")),
        (n, 0),
        "{kind}: an unchanged bucket with odd keys is reused whole"
    );

    // Into another bucket: the same keys, bytes and headers, object by object. Garage reads a
    // path-style `/bucket//key` as `key`, so a key starting with `/` (here `src//lead` less the
    // source prefix) cannot be written at the root of a Garage bucket (by any client): there,
    // restore into a prefix.
    let target_prefix = if kind == "garage" { "restored" } else { "" };
    let out = cli(
        server,
        &store,
        &source,
        &[
            "restore",
            &id,
            "--source",
            "files",
            "--to",
            &server.url(&dst, target_prefix),
            "--yes",
        ],
    );
    out.assert_success();
    let restored = dump(
        server,
        &dst,
        &if target_prefix.is_empty() {
            String::new()
        } else {
            format!("{target_prefix}/")
        },
    );
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        source_objects.keys().collect::<Vec<_>>(),
        "{kind}: the same keys"
    );
    for (key, want) in &source_objects {
        assert_eq!(restored.get(key), Some(want), "{kind}: object {key:?}");
    }
    let many = |m: &BTreeMap<String, Value>| m.keys().filter(|k| k.starts_with("many/")).count();
    assert_eq!(many(&restored), 1000, "{kind}");

    // Into a directory: every key a file system can hold is a file with its bytes; each
    // other key is named, and the restore says it failed (exit 8).
    let dir = work.path().join("restored");
    let out = cli(
        server,
        &store,
        &source,
        &[
            "restore",
            &id,
            "--source",
            "files",
            "--to",
            &format!("file://{}", dir.display()),
            "--yes",
        ],
    );
    out.assert_code(8);
    let (holdable, not_holdable): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| file_system_can_hold(k));
    assert!(not_holdable.len() >= 9, "{not_holdable:?}");
    for key in &not_holdable {
        out.assert_stderr_contains(&format!("{key:?}"));
    }
    let mut on_disk = files(&dir);
    // Of `dup` and `dup/inner`, whichever came second is named, the other is a file.
    let lost: Vec<&str> = FILE_AND_DIR
        .into_iter()
        .filter(|k| out.stderr.contains(&format!("{k:?} (")))
        .collect();
    assert_eq!(lost.len(), 1, "{kind}: {lost:?}\n{}", out.stderr);
    let kept = FILE_AND_DIR
        .into_iter()
        .find(|k| *k != lost[0])
        .expect("the other");
    assert_eq!(
        on_disk.remove(kept).as_deref(),
        source_objects[kept]["sha256"].as_str(),
        "{kind}: {kept}"
    );
    let expected: BTreeMap<String, String> = holdable
        .iter()
        .filter(|k| !FILE_AND_DIR.contains(&k.as_str()))
        .map(|k| {
            let sha = match source_objects[*k]["sha256"].as_str() {
                Some(sha) => sha.to_owned(),
                None => Digest::of(&body(k, size_of(k))).hex(),
            };
            ((*k).clone(), sha)
        })
        .collect();
    assert_eq!(on_disk, expected, "{kind}: the files a directory can hold");
}

#[test]
fn every_key_round_trips_on_moto() {
    every_key_round_trips(MotoServer::shared());
}

#[test]
fn every_key_round_trips_on_garage() {
    every_key_round_trips(GarageServer::shared());
}
