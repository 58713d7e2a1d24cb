//! [`BucketVerifier`]: the ladder for bucket and directory sources. Level 1: the index
//! artifact's own checksum, and every blob it references present with the right size and sha256
//! (each blob read and hashed; with [`BucketVerifier::after_backup`], blobs of objects the backup
//! took unchanged from the previous one are checked for presence and size only); level 2: the
//! index decompresses; level 3: the index parses and its totals match the manifest's
//! statistics.
//!
//! Encrypted (sealed blobs, see [`backup_core::sealed_blobs`]): level 1 needs no key. It checks
//! the index's and the plaintext blob list's checksums and that every listed sealed blob is
//! present with its recorded size. Level 2 decrypts the index, checks that the blob list names
//! exactly the index's blobs, and reads every blob through age decryption (each 64 KiB chunk
//! authenticated), checking the plaintext's size and sha256 against the index.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use crate::bucket::{
    IndexEntry, blob_list_artifact, bucket_stat, index_artifact, is_bucket_source, read_blob_list,
    read_index,
};
use async_trait::async_trait;
use backup_core::sealed_blobs::SEALING_FIELD;
use backup_core::{ArtifactMeta, ByteStream};
use backup_core::{
    Digest, Error, Finding, FindingStatus, Manifest, Result, Sha256, SourceManifest, Store,
    VerificationLevel, VerificationReport, Verifier, layout,
};
use futures::StreamExt;

use backup_verify::{Consumer, finding, pass_findings, read_pass};

/// Blobs checked at once, by default.
pub const DEFAULT_VERIFY_CONCURRENCY: usize = 8;
/// Presence checks (HEAD requests) in flight at once: each is a small request, so many more
/// than blob reads; a store of 2,000 reused blobs is checked in a fraction of a second.
const PRESENCE_CONCURRENCY: usize = 32;
/// Digests remembered to avoid re-reading a blob several objects share (bounded memory; past
/// this, shared blobs are simply read again).
const DEDUP_LIMIT: usize = 1_000_000;
/// Failed blob findings reported one by one; the rest are counted in one more finding.
const MAX_BLOB_FINDINGS: usize = 50;

/// Verifies `bucket` and `directory` sources (see the module docs); ignores other sources.
#[derive(Debug, Clone)]
pub struct BucketVerifier {
    /// Blobs read and hashed at once.
    pub concurrency: usize,
    /// Whether blobs of reused index entries ([`IndexEntry::reused`]) are read and hashed too
    /// (the default), or only checked for presence and size.
    pub read_reused: bool,
}

impl Default for BucketVerifier {
    fn default() -> Self {
        BucketVerifier {
            concurrency: DEFAULT_VERIFY_CONCURRENCY,
            read_reused: true,
        }
    }
}

impl BucketVerifier {
    /// The verifier for the check right after a backup: every blob this backup read from the
    /// source is read back and hashed, while blobs of objects taken unchanged from the previous
    /// backup (whose verification passed, having hashed them when they were first stored) are
    /// checked for presence and size. The second backup of an unchanged bucket then reads no
    /// blob; a later `verify` with the default verifier reads them all.
    pub fn after_backup() -> Self {
        BucketVerifier {
            read_reused: false,
            ..BucketVerifier::default()
        }
    }
}

fn missing_blob(key: &str) -> String {
    format!("the blob {key} is missing from the store")
}

fn wrong_size(key: &str, size: u64, expected: u64) -> String {
    format!("the blob {key} is {size} bytes instead of {expected}")
}

/// What a presence check (one `HEAD`, no read) of the blob `key` found: `None` when it is there
/// with `size` bytes.
async fn check_present(store: &dyn Store, key: &str, size: u64) -> Result<Option<String>> {
    Ok(match store.head(key).await? {
        None => Some(missing_blob(key)),
        Some(info) if info.size != size => Some(wrong_size(key, info.size, size)),
        Some(_) => None,
    })
}

/// What a presence check of an entry's blob found.
async fn check_blob_present(store: &dyn Store, entry: &IndexEntry) -> Result<Option<String>> {
    check_present(store, &entry.blob_key(), entry.stored_blob_size()).await
}

/// What checking one blob found: `None` when it is as indexed. A sealed blob is decrypted on
/// the way; what decryption finds is a finding, a failing store an error.
async fn check_blob(store: &dyn Store, entry: &IndexEntry) -> Result<Option<String>> {
    let key = entry.blob_key();
    let stream = match store.get(&key).await {
        Ok(s) => s,
        Err(Error::NotFound { .. }) => return Ok(Some(missing_blob(&key))),
        Err(e) => return Err(e),
    };
    // Store errors are told apart from decryption errors, which arrive in the same stream.
    let store_error: std::sync::Arc<Mutex<Option<String>>> = Default::default();
    let stored = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let raw: ByteStream = {
        let (store_error, stored) = (store_error.clone(), stored.clone());
        Box::pin(stream.inspect(move |item| match item {
            Ok(chunk) => {
                stored.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                if let Ok(mut slot) = store_error.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            }
        }))
    };
    let failed_store = |e: &std::io::Error| -> Option<Error> {
        let stored = store_error.lock().ok().and_then(|mut s| s.take())?;
        Some(Error::store("get", &key, format!("{stored} ({e})")))
    };
    let mut plain = if entry.is_sealed() {
        match backup_core::encryption::decrypt_stream(raw).await {
            Ok(p) => p,
            Err(e) => {
                return match failed_store(&e) {
                    Some(err) => Err(err),
                    None => Ok(Some(format!("the blob {key} cannot be decrypted: {e}"))),
                };
            }
        }
    } else {
        raw
    };
    let mut hasher = Sha256::new();
    while let Some(chunk) = plain.next().await {
        match chunk {
            Ok(chunk) => hasher.update(&chunk),
            Err(e) => {
                if let Some(err) = failed_store(&e) {
                    return Err(err);
                }
                if !entry.is_sealed() {
                    return Err(Error::store("get", &key, e));
                }
                return Ok(Some(format!("the blob {key} is corrupted: {e}")));
            }
        }
    }
    let size = hasher.len();
    let digest = hasher.finish();
    let stored = stored.load(std::sync::atomic::Ordering::Relaxed);
    Ok(if size != entry.size {
        Some(wrong_size(&key, size, entry.size))
    } else if entry.is_sealed() && stored != entry.stored_blob_size() {
        Some(format!(
            "the sealed blob {key} is {stored} bytes instead of {}",
            entry.stored_blob_size()
        ))
    } else if digest != entry.sha256 {
        Some(format!(
            "the blob {key} is corrupted: sha256 is {digest} instead of {}",
            entry.sha256
        ))
    } else {
        None
    })
}

/// How one index entry's blob was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Read and hashed.
    Read,
    /// Checked for presence and size (a reused entry, after a backup).
    Present,
    /// Already checked for an earlier entry with the same digest.
    Skipped,
}

fn blob_finding(
    source: &SourceManifest,
    level: VerificationLevel,
    check: &str,
    artifact: Option<String>,
    status: FindingStatus,
    message: String,
) -> Finding {
    Finding {
        level,
        check: check.to_owned(),
        source: Some(source.name.to_string()),
        artifact,
        status,
        message,
    }
}

/// The `Ok` items of `stream`; the first error is kept in `first_error` and the stream read on,
/// so a list that cannot be read to the end still gets its readable part checked.
fn oks<'a, T: 'a, E: std::fmt::Display + 'a>(
    stream: impl futures::Stream<Item = std::result::Result<T, E>> + 'a,
    first_error: &'a mut Option<String>,
) -> impl futures::Stream<Item = T> + 'a {
    stream.filter_map(move |item| {
        let keep = match item {
            Ok(item) => Some(item),
            Err(e) => {
                first_error.get_or_insert(e.to_string());
                None
            }
        };
        std::future::ready(keep)
    })
}

/// Damaged or missing blobs: the first [`MAX_BLOB_FINDINGS`] reported one by one, the rest
/// counted in one more finding.
#[derive(Default)]
struct BlobProblems {
    shown: Vec<(Option<String>, String)>,
    count: u64,
}

impl BlobProblems {
    /// Counts one problem; `describe` (the blob's key, the message) is only called for those
    /// reported one by one.
    fn add(&mut self, describe: impl FnOnce() -> (Option<String>, String)) {
        self.count += 1;
        if self.shown.len() < MAX_BLOB_FINDINGS {
            self.shown.push(describe());
        }
    }

    /// Adds the findings to `report`: one per problem shown, then `more` after the number of
    /// the others.
    fn report(
        self,
        source: &SourceManifest,
        level: VerificationLevel,
        more: &str,
        report: &mut VerificationReport,
    ) {
        let name = source.name.to_string();
        for (blob, problem) in self.shown {
            report.findings.push(blob_finding(
                source,
                level,
                "blob",
                blob,
                FindingStatus::Failed,
                format!("{name}: {problem}"),
            ));
        }
        if self.count > MAX_BLOB_FINDINGS as u64 {
            report.findings.push(blob_finding(
                source,
                level,
                "blob",
                None,
                FindingStatus::Failed,
                format!(
                    "{name}: {} more {more} not listed",
                    self.count - MAX_BLOB_FINDINGS as u64
                ),
            ));
        }
    }
}

impl BucketVerifier {
    async fn verify_source(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        up_to: VerificationLevel,
        report: &mut VerificationReport,
    ) -> Result<()> {
        use FindingStatus::*;
        use VerificationLevel::*;
        let name = source.name.to_string();
        let Some(artifact) = index_artifact(source) else {
            report.findings.push(blob_finding(
                source,
                Checksum,
                "bucket-index",
                None,
                Failed,
                format!("{name}: the manifest lists no bucket index for this source"),
            ));
            return Ok(());
        };
        let started = Instant::now();
        let pass = read_pass(store, artifact, up_to >= Decompress, Consumer::Discard).await?;
        let index_findings = pass_findings(&pass, source, artifact, up_to.min(Decompress));
        let index_ok = index_findings.iter().all(|f| f.status == Passed);
        report.findings.extend(index_findings);
        if !index_ok {
            return Ok(()); // the blobs of a damaged index cannot be trusted to be the right ones
        }
        let sealed = source.extra.contains_key(SEALING_FIELD);
        // Where blob problems are reported: level 1 for plain blobs (read and hashed); level 2
        // for sealed ones (decrypted), whose level 1 is the blob list's presence check.
        let blob_level = if sealed { Decompress } else { Checksum };
        if sealed {
            let Some(list) = blob_list_artifact(source) else {
                report.findings.push(blob_finding(
                    source,
                    Checksum,
                    "blob-list",
                    None,
                    Failed,
                    format!("{name}: the manifest lists no blob list for this encrypted source"),
                ));
                return Ok(());
            };
            let list_pass = read_pass(store, list, false, Consumer::Discard).await?;
            let list_findings = pass_findings(&list_pass, source, list, Checksum);
            let list_ok = list_findings.iter().all(|f| f.status == Passed);
            report.findings.extend(list_findings);
            if !list_ok {
                return Ok(());
            }
            if up_to < Decompress {
                self.check_listed_blobs(store, source, list, report).await?;
                report.add_time(Checksum, started.elapsed());
                return Ok(());
            }
            if let Some(problem) = list_disagrees(store, artifact, list).await? {
                report.findings.push(blob_finding(
                    source,
                    Decompress,
                    "blob-list",
                    Some(list.key.clone()),
                    Failed,
                    format!("{name}: {problem}"),
                ));
                return Ok(());
            }
        }

        let seen: Mutex<HashSet<Digest>> = Mutex::new(HashSet::new());
        // Blob reads stay at `concurrency` while presence checks run wider.
        let reads = tokio::sync::Semaphore::new(self.concurrency.max(1));
        let in_flight = if self.read_reused {
            self.concurrency
        } else {
            self.concurrency.max(PRESENCE_CONCURRENCY)
        };
        let mut entries = read_index(store, artifact).await?;
        let mut parse_error = None;
        let mut objects = 0u64;
        let mut bytes = 0u64;
        let mut checked = 0u64;
        let mut present_only = 0u64;
        let mut problems = BlobProblems::default();
        {
            let listed = oks(&mut entries, &mut parse_error)
                .map(|entry| {
                    objects += 1;
                    bytes += entry.size;
                    let blob_id = if entry.is_sealed() {
                        Digest::of(entry.blob_key().as_bytes())
                    } else {
                        entry.sha256
                    };
                    let first = seen
                        .lock()
                        .map(|mut s| s.len() >= DEDUP_LIMIT || s.insert(blob_id))
                        .unwrap_or(true);
                    let (read_reused, reads) = (self.read_reused, &reads);
                    async move {
                        if !first {
                            return Ok((entry, None, Check::Skipped));
                        }
                        if entry.reused && !read_reused {
                            let problem = check_blob_present(store, &entry).await?;
                            return Ok((entry, problem, Check::Present));
                        }
                        let _permit = reads
                            .acquire()
                            .await
                            .map_err(|e| Error::store("get", layout::BLOBS_DIR, e))?;
                        let problem = check_blob(store, &entry).await?;
                        Ok::<_, Error>((entry, problem, Check::Read))
                    }
                })
                .buffer_unordered(in_flight);
            futures::pin_mut!(listed);
            while let Some(item) = listed.next().await {
                let (entry, problem, how) = item?;
                checked += u64::from(how == Check::Read);
                present_only += u64::from(how == Check::Present);
                if let Some(problem) = problem {
                    problems.add(|| {
                        (
                            Some(entry.blob_key()),
                            format!("object {:?}: {problem}", entry.key),
                        )
                    });
                }
            }
        }
        let failed = problems.count;
        problems.report(source, blob_level, "damaged or missing blobs", report);
        // An index that cannot be read to the end leaves blobs unchecked: level 1 has not
        // proven the backup, and a restore must not start on it.
        if let Some(e) = &parse_error {
            report.findings.push(blob_finding(
                source,
                blob_level,
                "blobs",
                Some(artifact.key.clone()),
                Failed,
                format!("{name}: the index could not be read to the end ({e}), so not every blob was checked"),
            ));
        }
        if failed == 0 && parse_error.is_none() {
            report.findings.push(blob_finding(
                source,
                blob_level,
                "blobs",
                Some(artifact.key.clone()),
                Passed,
                if sealed {
                    format!(
                        "{name}: all {objects} objects' sealed blobs present; {checked} blobs read, decrypted and their plaintext's size and sha256 checked ({bytes} bytes), {present_only} of objects unchanged since the previous verified backup checked for presence and size only"
                    )
                } else if present_only == 0 {
                    format!(
                        "{name}: all {objects} objects' blobs present with the indexed size and sha256 ({checked} blobs read, {bytes} bytes)"
                    )
                } else {
                    format!(
                        "{name}: all {objects} objects' blobs present with the indexed size; {checked} blobs read and their sha256 checked, {present_only} of objects unchanged since the previous verified backup checked for presence and size only (`pre-deploy verify` reads every blob)"
                    )
                },
            ));
        }
        report.add_time(blob_level, started.elapsed());

        if up_to >= Archive {
            let want_objects = bucket_stat(source, "objects");
            let want_bytes = bucket_stat(source, "bytes");
            let (status, message) = if let Some(e) = parse_error {
                (
                    Failed,
                    format!("{name}: the bucket index does not parse: {e}"),
                )
            } else if want_objects != Some(objects) || want_bytes != Some(bytes) {
                (
                    Failed,
                    format!(
                        "{name}: the index holds {objects} objects ({bytes} bytes) but the manifest records {} objects ({} bytes)",
                        want_objects.map_or("no".into(), |n| n.to_string()),
                        want_bytes.map_or("no".into(), |n| n.to_string())
                    ),
                )
            } else {
                (
                    Passed,
                    format!(
                        "{name}: the index parses: {objects} objects, {bytes} bytes, as recorded"
                    ),
                )
            };
            report.findings.push(finding(
                Archive,
                "bucket-index",
                source,
                artifact,
                status,
                message,
            ));
        }
        Ok(())
    }
}

impl BucketVerifier {
    /// Level 1 of sealed blobs, without a key: every blob the plaintext list names is present
    /// with its recorded size.
    async fn check_listed_blobs(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        list: &ArtifactMeta,
        report: &mut VerificationReport,
    ) -> Result<()> {
        use FindingStatus::*;
        use VerificationLevel::*;
        let name = source.name.to_string();
        let mut lines = read_blob_list(store, list).await?;
        let mut read_error = None;
        let mut blobs = 0u64;
        let mut problems = BlobProblems::default();
        {
            let checks = oks(&mut lines, &mut read_error)
                .map(|(key, size)| async move {
                    let problem = check_present(store, &key, size).await?;
                    Ok::<_, Error>(problem)
                })
                .buffer_unordered(PRESENCE_CONCURRENCY);
            futures::pin_mut!(checks);
            while let Some(problem) = checks.next().await {
                blobs += 1;
                if let Some(problem) = problem? {
                    problems.add(|| (None, problem));
                }
            }
        }
        let failed = problems.count;
        problems.report(source, Checksum, "missing or wrongly sized blobs", report);
        let (status, message) = match read_error {
            Some(e) => (
                Failed,
                format!(
                    "{name}: the blob list could not be read to the end ({e}), so not every blob was checked"
                ),
            ),
            None if failed == 0 => (
                Passed,
                format!(
                    "{name}: all {blobs} sealed blobs present with their recorded size (level 2 decrypts them and checks their contents)"
                ),
            ),
            None => return Ok(()),
        };
        report.findings.push(blob_finding(
            source,
            Checksum,
            "blobs",
            Some(list.key.clone()),
            status,
            message,
        ));
        Ok(())
    }
}

/// Whether the plaintext blob list names exactly the blobs of the (decrypted) index, line for
/// line: blob collection trusts the list, so a list that left out a blob could lose it.
async fn list_disagrees(
    store: &dyn Store,
    index: &ArtifactMeta,
    list: &ArtifactMeta,
) -> Result<Option<String>> {
    let mut entries = read_index(store, index).await?;
    let mut lines = read_blob_list(store, list).await?;
    let mut n = 0u64;
    loop {
        n += 1;
        match (entries.next().await, lines.next().await) {
            (None, None) => return Ok(None),
            (Some(Err(e)), _) => {
                return Ok(Some(format!("the index could not be read to the end: {e}")));
            }
            (_, Some(Err(e))) => {
                return Ok(Some(format!(
                    "the blob list could not be read to the end: {e}"
                )));
            }
            (Some(Ok(entry)), Some(Ok((blob, size)))) => {
                if entry.blob_key() != blob || entry.stored_blob_size() != size {
                    return Ok(Some(format!(
                        "line {n} of the blob list names {blob} ({size} bytes) but the index has {} ({} bytes) for object {:?}",
                        entry.blob_key(),
                        entry.stored_blob_size(),
                        entry.key
                    )));
                }
            }
            (Some(Ok(_)), None) => {
                return Ok(Some(format!(
                    "the blob list ends at line {n} but the index has more objects"
                )));
            }
            (None, Some(Ok(_))) => {
                return Ok(Some(format!(
                    "the blob list has more lines than the index has objects (from line {n})"
                )));
            }
        }
    }
}

#[async_trait]
impl Verifier for BucketVerifier {
    fn name(&self) -> &str {
        "bucket"
    }

    fn max_level(&self) -> VerificationLevel {
        VerificationLevel::Archive
    }

    fn claims(&self, source: &SourceManifest) -> bool {
        is_bucket_source(source)
    }

    async fn verify(
        &self,
        store: &dyn Store,
        manifest: &Manifest,
        up_to: VerificationLevel,
    ) -> Result<VerificationReport> {
        let mut report = VerificationReport::default();
        for source in manifest.sources.iter().filter(|s| is_bucket_source(s)) {
            self.verify_source(store, source, up_to, &mut report)
                .await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BucketLocation, BucketSnapshotter, BucketSource, S3Settings};
    use backup_core::testkit::MemoryStore;
    use backup_core::{
        BackupId, BackupKind, PipelineConfig, SnapshotContext, Snapshotter, Store, ToolInfo,
    };

    async fn snapshot(store: &MemoryStore) -> Manifest {
        let files = [
            ("a", "alpha"),
            ("b/c d", "beta"),
            ("empty", ""),
            ("z", "alpha"),
        ]
        .map(|(rel, data)| (rel.to_owned(), data.to_owned()));
        snapshot_of(store, &files).await
    }

    async fn snapshot_of(store: &MemoryStore, files: &[(String, String)]) -> Manifest {
        let dir = tempfile::tempdir().expect("tempdir");
        for (rel, data) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, data).expect("write");
        }
        let source = BucketSource::open(
            BucketLocation::Directory(dir.path().to_path_buf()),
            &S3Settings::default(),
        )
        .expect("opens");
        let snap = BucketSnapshotter::new("files".parse().expect("name"), source);
        let id = BackupId::new(jiff::Timestamp::now());
        let source = snap
            .snapshot(SnapshotContext {
                store,
                backup_id: &id,
                environment: "default",
                pipeline: &PipelineConfig::default(),
            })
            .await
            .expect("snapshot");
        let now = jiff::Timestamp::now();
        Manifest {
            format_version: 1,
            id,
            kind: BackupKind::Manual,
            environment: "default".into(),
            created_at: now,
            finished_at: now,
            tool: ToolInfo::current(),
            host: "h".into(),
            deploy: Default::default(),
            sources: vec![source],
            expires_at: None,
            extra: Default::default(),
        }
    }

    fn failures(r: &VerificationReport) -> Vec<String> {
        r.failures().map(|f| f.message.clone()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_blob_is_checked_and_damage_is_named() {
        let store = MemoryStore::new();
        let manifest = snapshot(&store).await;
        let v = BucketVerifier::default();
        let r = v
            .verify(&store, &manifest, VerificationLevel::Restore)
            .await
            .expect("runs");
        assert!(r.passed(), "{:?}", failures(&r));
        assert_eq!(r.level_reached(), Some(VerificationLevel::Archive));
        // It claims its sources: the generic levels 1–2 leave them to it.
        assert!(manifest.sources.iter().all(|s| v.claims(s)));

        let alpha = layout::blob_key(&Digest::of(b"alpha"));
        store.tamper(&alpha, |b| b[0] ^= 1);
        let beta = layout::blob_key(&Digest::of(b"beta"));
        store.delete(&beta).await.expect("delete");
        let r = v
            .verify(&store, &manifest, VerificationLevel::Checksum)
            .await
            .expect("runs");
        let msgs = failures(&r);
        assert!(
            msgs.iter()
                .any(|m| m.contains(&alpha) && m.contains("corrupted")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains(&beta) && m.contains("\"b/c d\"") && m.contains("missing")),
            "{msgs:?}"
        );
        assert_eq!(r.level_reached(), None);

        // Totals that disagree with the manifest fail level 3.
        let mut wrong = manifest.clone();
        wrong.sources[0]
            .stats
            .object_counts
            .insert("objects".into(), 5);
        store.tamper(&alpha, |b| b[0] ^= 1);
        store
            .put_bytes(&beta, "beta".into(), backup_core::WriteMode::Overwrite)
            .await
            .expect("restore blob");
        let r = v
            .verify(&store, &wrong, VerificationLevel::Archive)
            .await
            .expect("runs");
        let msgs = failures(&r);
        assert!(
            msgs.len() == 1 && msgs[0].contains("4 objects") && msgs[0].contains("5 objects"),
            "{msgs:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_missing_blobs_are_named_up_to_a_limit_and_the_rest_counted() {
        let store = MemoryStore::new();
        let files: Vec<(String, String)> = (0..MAX_BLOB_FINDINGS + 7)
            .map(|i| (format!("f{i}"), format!("content {i}")))
            .collect();
        let manifest = snapshot_of(&store, &files).await;
        for (_, data) in &files {
            let key = layout::blob_key(&Digest::of(data.as_bytes()));
            store.delete(&key).await.expect("delete");
        }
        let r = BucketVerifier::default()
            .verify(&store, &manifest, VerificationLevel::Checksum)
            .await
            .expect("runs");
        let msgs = failures(&r);
        let named = msgs.iter().filter(|m| m.contains("is missing")).count();
        assert_eq!(named, MAX_BLOB_FINDINGS, "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("7 more damaged or missing blobs not listed")),
            "{msgs:?}"
        );
        assert_eq!(msgs.len(), MAX_BLOB_FINDINGS + 1, "{msgs:?}");
    }
}
