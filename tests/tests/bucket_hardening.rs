//! Hardening of directory and bucket sources (issue 14, items 1, 6 and 7), through the binary
//! and the library as a user or an embedder meets them:
//!
//! - a directory snapshot never reads through a symbolic link (a planted link to a file outside
//!   the source must not bring that file into the store);
//! - a directory restore never writes through a link already in the target (files must not land
//!   outside it); links where files go are replaced, links where directories go are refused by
//!   name;
//! - the temp files of a killed directory restore are never taken by a snapshot, and the next
//!   restore removes them;
//! - an index line of a damaged or hostile store has a length limit, with an error naming the
//!   backup;
//! - a streamed upload of 5 TiB (S3's largest object) fits in S3's 10,000 parts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_core::{Digest, Store, StoreCapabilities};
use backup_objectstore::ObjectStoreStore;
use bytes::Bytes;
use futures::StreamExt;
use predeploy_tests::{Output, pre_deploy, run};

fn write(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    }
}

fn cli(store: &str, source: &str, args: &[&str]) -> Output {
    run(pre_deploy()
        .args(["--store", store, "--source", source, "--json"])
        .args(args))
}

fn id_of(out: &Output) -> String {
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["id"].as_str().expect("id").to_owned()
}

fn manifest(store: &Path, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(store.join(format!("backups/{id}/manifest.json")))
        .expect("manifest");
    serde_json::from_str(&text).expect("json")
}

/// Every file name below `dir` (relative, `/`-separated), links included, not followed.
fn names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("under").display().to_string());
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn blob_exists(store: &Path, data: &[u8]) -> bool {
    store
        .join(backup_core::layout::blob_key(&Digest::of(data)))
        .exists()
}

/// Links in a source directory, to a file and a directory outside it and to a file inside it,
/// are skipped (none is read), named in a manifest note; the regular files are backed up.
#[test]
fn a_directory_snapshot_never_reads_through_a_link() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    let outside = dir.path().join("outside");
    write(
        &files,
        &[("plain.txt", b"plain"), ("sub/inner.txt", b"inner")],
    );
    write(
        &outside,
        &[
            ("shadow", b"root:$6$secret-hash:19000:0:99999:7:::"),
            ("keys/id_ed25519", b"PRIVATE KEY"),
        ],
    );
    std::os::unix::fs::symlink(outside.join("shadow"), files.join("shadow")).expect("symlink");
    std::os::unix::fs::symlink(outside.join("keys"), files.join("sub/keys")).expect("symlink");
    std::os::unix::fs::symlink("plain.txt", files.join("also-plain")).expect("symlink");

    let store_dir = dir.path().join("store");
    let store = store_dir.display().to_string();
    let source = format!("files=file://{}", files.display());
    let out = cli(&store, &source, &["backup"]);
    out.assert_success();
    let id = id_of(&out);

    assert!(
        !blob_exists(&store_dir, b"root:$6$secret-hash:19000:0:99999:7:::"),
        "the file behind a link was read into the store"
    );
    assert!(!blob_exists(&store_dir, b"PRIVATE KEY"));
    assert!(blob_exists(&store_dir, b"plain") && blob_exists(&store_dir, b"inner"));
    let m = manifest(&store_dir, &id);
    let src = &m["sources"][0];
    assert_eq!(src["stats"]["object_counts"]["objects"], 2, "{src}");
    let notes = src["notes"].to_string();
    assert!(notes.contains("3 symbolic link(s) were skipped"), "{notes}");
    for link in ["shadow", "sub/keys", "also-plain"] {
        assert!(
            notes.contains(&format!("\\\"{link}\\\"")),
            "{link}: {notes}"
        );
    }
}

/// Links already in a restore target: a link where a file goes is replaced by the file (what it
/// pointed to is untouched); a link where a directory goes is never written through: that
/// object is refused by name (exit 8), every other object is restored.
#[test]
fn a_directory_restore_never_writes_through_a_link_in_the_target() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    write(
        &files,
        &[
            ("top.txt", b"backed-up top"),
            ("sub/file.txt", b"backed-up sub file"),
            ("other/ok.txt", b"fine"),
        ],
    );
    let store = dir.path().join("store").display().to_string();
    let source = format!("files=file://{}", files.display());
    cli(&store, &source, &["backup"]).assert_success();

    // Someone who can write the target plants links to places only root may write.
    let target = dir.path().join("target");
    let victim_dir = dir.path().join("victim-dir");
    let victim_file = dir.path().join("victim-file");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::create_dir_all(&victim_dir).expect("mkdir");
    std::fs::write(&victim_file, b"must stay").expect("write");
    std::os::unix::fs::symlink(&victim_dir, target.join("sub")).expect("symlink");
    std::os::unix::fs::symlink(&victim_file, target.join("top.txt")).expect("symlink");

    let out = cli(
        &store,
        &source,
        &[
            "restore",
            "last",
            "--source",
            "files",
            "--to",
            &format!("file://{}", target.display()),
            "--yes",
        ],
    );
    out.assert_code(8);
    out.assert_stderr_contains("\"sub/file.txt\" (");
    out.assert_stderr_contains("symbolic link");
    assert!(
        names(&victim_dir).is_empty(),
        "a file was written through the link: {:?}",
        names(&victim_dir)
    );
    assert_eq!(std::fs::read(&victim_file).expect("victim"), b"must stay");
    let top = target.join("top.txt");
    assert!(
        !std::fs::symlink_metadata(&top)
            .expect("top")
            .file_type()
            .is_symlink(),
        "the link was replaced by the file"
    );
    assert_eq!(std::fs::read(&top).expect("top"), b"backed-up top");
    assert_eq!(
        std::fs::read(target.join("other/ok.txt")).expect("ok"),
        b"fine"
    );
    assert!(
        std::fs::symlink_metadata(target.join("sub"))
            .expect("sub")
            .file_type()
            .is_symlink(),
        "the directory link is left as it was"
    );
}

/// The start time of process `pid` (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect(")") + 1..];
    after
        .split_whitespace()
        .nth(19)
        .expect("field 22")
        .parse()
        .expect("number")
}

fn restore_temps(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".pd-restore"))
        .collect()
}

/// A directory restore killed (SIGKILL) while it writes a large file leaves its temp file in
/// the target. The next snapshot of that directory does not take it, and the next restore
/// removes it, while a temp file of a restore still running (this test process stands in for
/// one) is left alone.
#[test]
fn temp_files_of_a_killed_restore_are_skipped_and_removed() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    let big: Vec<u8> = (0..96 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&files, &[("small.txt", b"small"), ("deep/big.bin", &big)]);
    drop(big);
    let store = dir.path().join("store").display().to_string();
    let source = format!("files=file://{}", files.display());
    cli(&store, &source, &["backup"]).assert_success();

    // Restore into a new directory and kill the restore once its temp file appears.
    let target = dir.path().join("target");
    let mut child = pre_deploy()
        .args(["--store", &store, "--source", &source, "--json"])
        .args([
            "restore",
            "last",
            "--source",
            "files",
            "--to",
            &format!("file://{}", target.display()),
            "--yes",
        ])
        // Its lease, which nothing releases after a SIGKILL, expires soon.
        .env("PREDEPLOY_LOCK_TTL", "5s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if target.exists() && !restore_temps(&target).is_empty() {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the restore ended before it was killed"
        );
        assert!(Instant::now() < deadline, "no temp file appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let left = restore_temps(&target);
    assert!(!left.is_empty());
    assert!(
        left.iter()
            .all(|n| n.contains(&format!(".{}-", child.id()))),
        "the temp files name their process: {left:?}"
    );

    // A temp file of a restore that is still running: this process, with its own start time.
    let me = std::process::id();
    let live = format!(
        ".small.txt.{me}-{}.00112233aabbccdd.pd-restore",
        start_time(me)
    );
    std::fs::write(target.join(&live), b"partial").expect("write");
    // A file of the same shape whose process is long gone (pid reused or not).
    let dead = ".small.txt.4294967000-1.0123456789abcdef.pd-restore";
    std::fs::write(target.join(dead), b"partial").expect("write");

    // A snapshot of the target takes none of them.
    let store2_dir = dir.path().join("store2");
    let store2 = store2_dir.display().to_string();
    let target_source = format!("files=file://{}", target.display());
    let out = cli(&store2, &target_source, &["backup"]);
    out.assert_success();
    let m = manifest(&store2_dir, &id_of(&out));
    let src = &m["sources"][0];
    let notes = src["notes"].to_string();
    assert!(
        notes.contains(&format!("{} temp file(s)", left.len() + 2)),
        "{notes}"
    );
    assert!(
        !blob_exists(&store2_dir, b"partial"),
        "a partial temp file was backed up"
    );

    // The next restore (once the killed run's lease expired) removes the leftovers of dead
    // processes, keeps the live one, and restores everything.
    let out = cli(
        &store,
        &source,
        &[
            "--wait-lock",
            "1m",
            "restore",
            "last",
            "--source",
            "files",
            "--to",
            &format!("file://{}", target.display()),
            "--yes",
        ],
    );
    out.assert_success();
    assert_eq!(restore_temps(&target), vec![live.clone()]);
    assert!(
        out.stdout
            .contains(&format!("removed {} temp file(s)", left.len() + 1)),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(target.join("small.txt")).expect("small"),
        b"small"
    );
    assert_eq!(
        std::fs::metadata(target.join("deep/big.bin"))
            .expect("big")
            .len(),
        96 * 1024 * 1024
    );
}

/// A hostile store rewrites a directory backup's index (and the manifest's checksum of it) with
/// a line of 2 MiB. Verification and restore refuse it with an error naming the backup and the
/// line, instead of reading it into memory.
#[test]
fn an_index_line_over_the_limit_is_refused_naming_the_backup() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    write(&files, &[("a.txt", b"alpha")]);
    let store_dir = dir.path().join("store");
    let store = store_dir.display().to_string();
    let source = format!("files=file://{}", files.display());
    let out = cli(&store, &source, &["backup"]);
    out.assert_success();
    let id = id_of(&out);

    // A valid entry, referencing a blob that is there, with a key of 2 MiB.
    let long_key = "k".repeat(2 * 1024 * 1024);
    let line = serde_json::json!({
        "key": long_key,
        "size": 5,
        "sha256": Digest::of(b"alpha").to_string(),
        "last_modified": "2026-01-01T00:00:00Z",
    })
    .to_string();
    let index = format!(
        "{}\n",
        serde_json::json!({
            "key": "a.txt",
            "size": 5,
            "sha256": Digest::of(b"alpha").to_string(),
            "last_modified": "2026-01-01T00:00:00Z",
        })
    ) + &line
        + "\n";
    let manifest_path = store_dir.join(format!("backups/{id}/manifest.json"));
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("read"))
            .expect("json");
    let artifact = &mut m["sources"][0]["artifacts"][0];
    let key = artifact["key"].as_str().expect("key").to_owned();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stats = rt.block_on(async {
        let local = ObjectStoreStore::local(&store_dir).expect("store");
        local.delete(&key).await.expect("delete");
        backup_core::pipeline::write_artifact(
            &local,
            &key,
            "files",
            index.as_bytes(),
            &backup_core::PipelineConfig::default(),
        )
        .await
        .expect("written")
    });
    artifact["sha256"] = serde_json::Value::String(stats.sha256.to_string());
    artifact["stored_size"] = stats.stored_size.into();
    artifact["raw_size"] = stats.raw_size.into();
    m["sources"][0]["stats"]["object_counts"]["objects"] = 2.into();
    m["sources"][0]["stats"]["object_counts"]["bytes"] = 10.into();
    std::fs::write(&manifest_path, serde_json::to_vec(&m).expect("json")).expect("write");

    let out = run(pre_deploy().args(["--store", &store, "verify", "last"]));
    out.assert_code(4);
    out.assert_stderr_contains(&format!("backup {id}"));
    out.assert_stderr_contains("line 2 of the bucket index is longer than 1048576 bytes");

    let target = dir.path().join("target");
    let out = cli(
        &store,
        &source,
        &[
            "restore",
            "last",
            "--source",
            "files",
            "--to",
            &format!("file://{}", target.display()),
            "--yes",
        ],
    );
    // Refused naming the line, before the target is touched: level 1 fails an index that
    // cannot be read to the end.
    assert_eq!(out.code, 4, "{}\n{}", out.stdout, out.stderr);
    let written = std::fs::read_dir(&target).map_or(0, |d| d.count());
    assert_eq!(written, 0, "nothing was written to the target");
    assert!(
        out.stdout.contains("longer than 1048576 bytes")
            || out.stderr.contains("longer than 1048576 bytes"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// A multipart upload that records the size of each part and keeps no bytes.
#[derive(Debug, Default, Clone)]
struct PartLog(Arc<Mutex<Vec<u64>>>);

#[derive(Debug)]
struct CountingUpload(PartLog);

#[async_trait::async_trait]
impl object_store::MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        self.0
            .0
            .lock()
            .expect("lock")
            .push(data.content_length() as u64);
        Box::pin(futures::future::ready(Ok(())))
    }

    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        Ok(object_store::PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        Ok(())
    }
}

/// An object store that only takes multipart uploads, counting their parts.
#[derive(Debug, Default)]
struct CountingStore(PartLog);

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountingStore")
    }
}

fn unsupported() -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: "only multipart uploads".into(),
        implementer: "CountingStore".into(),
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        _: &object_store::path::Path,
        _: object_store::PutPayload,
        _: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        Err(unsupported())
    }

    async fn put_multipart_opts(
        &self,
        _: &object_store::path::Path,
        _: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        Ok(Box::new(CountingUpload(self.0.clone())))
    }

    async fn get_opts(
        &self,
        _: &object_store::path::Path,
        _: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        Err(unsupported())
    }

    fn delete_stream(
        &self,
        _: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        futures::stream::once(async { Err(unsupported()) }).boxed()
    }

    fn list(
        &self,
        _: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        futures::stream::once(async { Err(unsupported()) }).boxed()
    }

    async fn list_with_delimiter(
        &self,
        _: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        Err(unsupported())
    }

    async fn copy_opts(
        &self,
        _: &object_store::path::Path,
        _: &object_store::path::Path,
        _: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        Err(unsupported())
    }
}

/// A dump of 5 TiB (S3's largest object) streamed into the store: at most 10,000 parts, every
/// part but the last between 5 MiB and 5 GiB (S3's limits), and every byte sent. With fixed
/// 10 MiB parts, it took 524,288 parts (S3 refuses the 10,001st: 97.7 GiB).
#[test]
fn a_5_tib_stream_fits_in_s3s_10000_parts() {
    const MIB: u64 = 1024 * 1024;
    const TOTAL: u64 = 5 * 1024 * 1024 * MIB;
    let log = PartLog::default();
    let store = ObjectStoreStore::new(
        Arc::new(CountingStore(log.clone())),
        "counting",
        StoreCapabilities {
            create_only_writes: false,
            durable_writes: true,
            local: false,
        },
    );
    // One 64 MiB buffer, sent again and again without copying.
    let chunk = Bytes::from(vec![0u8; 64 * MIB as usize]);
    let chunks = TOTAL / chunk.len() as u64;
    let stream = futures::stream::iter((0..chunks).map(move |_| Ok(chunk.clone())));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let written = rt
        .block_on(store.put_stream("backups/x/data/db/dump.zst", Box::pin(stream)))
        .expect("stored");
    assert_eq!(written, TOTAL);
    let parts = log.0.lock().expect("lock").clone();
    assert_eq!(parts.iter().sum::<u64>(), TOTAL);
    assert!(parts.len() <= 10_000, "{} parts", parts.len());
    let (last, rest) = parts.split_last().expect("parts");
    assert!(*last <= 5 * 1024 * MIB);
    let bad: BTreeMap<u64, usize> = rest
        .iter()
        .filter(|p| !(5 * MIB..=5 * 1024 * MIB).contains(*p))
        .fold(BTreeMap::new(), |mut m, p| {
            *m.entry(*p).or_default() += 1;
            m
        });
    assert!(bad.is_empty(), "parts outside S3's limits: {bad:?}");
    // Small uploads keep small parts (memory stays low for common sizes).
    assert!(parts[..1_000].iter().all(|p| *p == 10 * MIB));
}
