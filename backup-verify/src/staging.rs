//! Staging: an artifact decompressed into a seekable temp file (as a parallel restore needs),
//! from the one read that also checks levels 1–2, capped at the recorded raw size.

use backup_core::{
    ArtifactMeta, Finding, FindingStatus, Result, SourceManifest, Store, VerificationLevel,
};

use crate::artifact::{Consumer, read_pass};
use crate::findings::{finding, pass_findings};

/// Why `a` cannot be staged for a test restore under `temp_dir` (default: the system temp
/// dir), if it cannot: the decompressed archive must fit with room to spare.
pub fn staging_space_problem(
    a: &ArtifactMeta,
    temp_dir: Option<&std::path::Path>,
) -> Option<String> {
    staging_space_problem_for(a.raw_size, temp_dir)
}

/// Like [`staging_space_problem`], for an archive of several artifacts (a directory-format
/// dump) holding `raw_size` bytes in all.
pub fn staging_space_problem_for(
    raw_size: u64,
    temp_dir: Option<&std::path::Path>,
) -> Option<String> {
    let dir = temp_dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let free = backup_core::disk::free_bytes(&dir)?;
    // 64 MiB to spare: staging must not leave the temp file system (often tmpfs) full.
    let needed = raw_size.saturating_add(64 * 1024 * 1024);
    (free < needed).then(|| {
        format!(
            "not enough space to stage the archive for a test restore: {needed} bytes needed, {free} free under {} (set [verify] temp_dir)",
            dir.display()
        )
    })
}

/// A stored archive decompressed into a seekable temp file (as a parallel restore needs), from the
/// single read that also checks levels 1–2. The file is removed when this value is dropped.
#[derive(Debug)]
pub struct StagedArchive {
    file: Staging,
    /// The level 1–2 findings of the read (checksum, size, decompression, staging).
    pub findings: Vec<Finding>,
    /// Whether the artifact is missing or damaged, or could not be staged: do not restore it.
    pub damaged: bool,
}

impl StagedArchive {
    /// The decompressed archive: a file, or for [`stage_archive_dir`] a directory.
    pub fn path(&self) -> &std::path::Path {
        match &self.file {
            Staging::File(f) => f.path(),
            Staging::Dir(d) => d.path(),
        }
    }
}

/// What a [`StagedArchive`] removes when dropped.
#[derive(Debug)]
enum Staging {
    File(tempfile::NamedTempFile),
    Dir(tempfile::TempDir),
}

/// Reads `a` from the store once, checking its sha256, size and zstd frames, into a temp file
/// under `temp_dir` (default: the system temp dir). Staged files of dead runs are removed first.
///
/// # Errors
///
/// When the temp file cannot be created or the store fails to deliver the bytes; corruption is
/// reported in [`StagedArchive::findings`] / [`StagedArchive::damaged`].
pub async fn stage_archive(
    store: &dyn Store,
    source: &SourceManifest,
    a: &ArtifactMeta,
    temp_dir: Option<&std::path::Path>,
) -> Result<StagedArchive> {
    let temp_dir = temp_dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    remove_stale_staging(&temp_dir);
    let staged = tempfile::Builder::new()
        .prefix(&backup_core::disk::temp_prefix(STAGING_PREFIX))
        .tempfile_in(&temp_dir)
        .map_err(|e| backup_core::Error::io("cannot create a temp file for the restore", e))?;
    let std_file = staged
        .reopen()
        .map_err(|e| backup_core::Error::io("temp file", e))?;
    let (findings, damaged) = stage_into(store, source, a, std_file).await?;
    Ok(StagedArchive {
        file: Staging::File(staged),
        findings,
        damaged,
    })
}

/// Stages the artifacts of an archive that is a directory of files (a pg_dump directory
/// format), each `(file name, artifact)` decompressed into that file of one temp directory,
/// checking levels 1–2 of each in the same read. A name that is not a plain file name (a
/// tampered manifest) is a failed finding, never a path outside the directory.
///
/// # Errors
///
/// As [`stage_archive`].
pub async fn stage_archive_dir(
    store: &dyn Store,
    source: &SourceManifest,
    parts: &[(&str, &ArtifactMeta)],
    temp_dir: Option<&std::path::Path>,
) -> Result<StagedArchive> {
    let temp_dir = temp_dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    remove_stale_staging(&temp_dir);
    let dir = tempfile::Builder::new()
        .prefix(&backup_core::disk::temp_prefix(STAGING_PREFIX))
        .tempdir_in(&temp_dir)
        .map_err(|e| backup_core::Error::io("cannot create a temp directory for the restore", e))?;
    let mut findings = Vec::new();
    let mut damaged = false;
    let mut names = std::collections::BTreeSet::new();
    for (name, a) in parts {
        let problem = if !is_plain_file_name(name) {
            Some("is not a file name an archive holds")
        } else if !names.insert(*name) {
            Some("names a file twice")
        } else {
            None
        };
        if let Some(problem) = problem {
            damaged = true;
            findings.push(finding(
                VerificationLevel::Decompress,
                "staging",
                source,
                a,
                FindingStatus::Failed,
                format!(
                    "{}/{}: {name:?} {problem} (an altered manifest); not staged",
                    source.name, a.name
                ),
            ));
            continue;
        }
        let file = std::fs::File::create_new(dir.path().join(name))
            .map_err(|e| backup_core::Error::io("cannot create a staged file", e))?;
        let (part_findings, part_damaged) = stage_into(store, source, a, file).await?;
        findings.extend(part_findings);
        damaged |= part_damaged;
    }
    Ok(StagedArchive {
        file: Staging::Dir(dir),
        findings,
        damaged,
    })
}

/// Whether `name` is a name of one file in a directory: no separator, not hidden, nothing but
/// letters, digits, `_`, `-` and `.` (a name from a manifest that is safe to write to).
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Reads `a` once into `std_file` (levels 1–2): the findings, and whether it is damaged.
async fn stage_into(
    store: &dyn Store,
    source: &SourceManifest,
    a: &ArtifactMeta,
    std_file: std::fs::File,
) -> Result<(Vec<Finding>, bool)> {
    use FindingStatus::*;
    let label = format!("{}/{}", source.name, a.name);
    // Buffered: each write to a tokio File is a blocking-pool round trip. Capped at the raw
    // size the manifest records: a damaged or hostile artifact that decompresses to more (a
    // zstd bomb) must not fill the disk.
    let file =
        tokio::io::BufWriter::with_capacity(1024 * 1024, tokio::fs::File::from_std(std_file));
    let mut file = CappedWriter {
        inner: file,
        left: a.raw_size,
        exceeded: false,
    };
    let pass = read_pass(store, a, true, Consumer::Writer(&mut file)).await?;
    let exceeded = file.exceeded;
    drop(file);
    let mut findings = pass_findings(&pass, source, a, VerificationLevel::Decompress);
    let damaged =
        pass.missing || findings.iter().any(|f| f.status == Failed) || pass.consumer_stopped;
    if exceeded {
        findings.push(finding(
            VerificationLevel::Decompress,
            "raw-size",
            source,
            a,
            Failed,
            format!(
                "{label}: decompresses to more than the {} bytes recorded; staging stopped there (a damaged or altered artifact)",
                a.raw_size
            ),
        ));
    } else if pass.consumer_stopped {
        findings.push(finding(
            VerificationLevel::Decompress,
            "staging",
            source,
            a,
            Failed,
            format!(
                "{label}: could not write the decompressed archive to a temp file (disk full?)"
            ),
        ));
    }
    Ok((findings, damaged))
}

/// A writer that refuses bytes past `left`.
struct CappedWriter<W> {
    inner: W,
    left: u64,
    exceeded: bool,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CappedWriter<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            self.exceeded = true;
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "more bytes than the recorded raw size",
            )));
        }
        let this = &mut *self;
        let written = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &written {
            this.left -= *n as u64;
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Staged archives are named `predeploy-verify-<pid>-…`, so a run killed before it could
/// remove its own (SIGKILL) is recognised and cleaned up by the next one.
const STAGING_PREFIX: &str = "predeploy-verify-";

/// Removes staged archives of processes that no longer exist.
fn remove_stale_staging(dir: &std::path::Path) {
    backup_core::disk::remove_stale_temp(dir, STAGING_PREFIX);
}

#[cfg(test)]
mod tests {
    use backup_core::testkit::MemoryStore;

    use super::*;
    use crate::test_support::{put, source, zstd};
    use FindingStatus::*;

    const KEY: &str = "backups/x/data/db/dump.zst";

    fn checks(staged: &StagedArchive) -> Vec<(String, FindingStatus)> {
        staged
            .findings
            .iter()
            .map(|f| (f.check.clone(), f.status))
            .collect()
    }

    #[tokio::test]
    async fn an_intact_archive_is_staged_whole_into_the_given_dir() {
        let dir = tempfile::tempdir().expect("dir");
        let store = MemoryStore::new();
        let raw = b"an archive's bytes ".repeat(10_000);
        let a = put(&store, KEY, &zstd(&raw), raw.len() as u64, "zstd").await;
        let staged = stage_archive(&store, &source(), &a, Some(dir.path()))
            .await
            .expect("stages");
        assert!(!staged.damaged, "{:?}", staged.findings);
        assert_eq!(
            checks(&staged),
            vec![
                ("sha256".to_owned(), Passed),
                ("zstd-frames".to_owned(), Passed)
            ]
        );
        assert!(staged.path().starts_with(dir.path()));
        assert!(std::fs::read(staged.path()).expect("read") == raw);
        let path = staged.path().to_owned();
        drop(staged);
        assert!(!path.exists(), "the staged file goes with its value");
    }

    #[tokio::test]
    async fn a_directory_archive_is_staged_file_by_file_and_unsafe_names_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let store = MemoryStore::new();
        let toc = b"a table of contents".to_vec();
        let data = b"COPY rows\n".repeat(1_000);
        let a = put(&store, KEY, &zstd(&toc), toc.len() as u64, "zstd").await;
        let b_key = "backups/x/data/db/dump.d/3001.dat.zst";
        let b = put(&store, b_key, &zstd(&data), data.len() as u64, "zstd").await;
        let staged = stage_archive_dir(
            &store,
            &source(),
            &[("toc.dat", &a), ("3001.dat", &b)],
            Some(dir.path()),
        )
        .await
        .expect("stages");
        assert!(!staged.damaged, "{:?}", staged.findings);
        assert!(staged.path().is_dir());
        assert_eq!(
            std::fs::read(staged.path().join("toc.dat")).expect("toc"),
            toc
        );
        assert!(std::fs::read(staged.path().join("3001.dat")).expect("data") == data);
        let path = staged.path().to_owned();
        drop(staged);
        assert!(!path.exists(), "the staged directory goes with its value");

        for hostile in ["../escape", "a/b", ".hidden", ""] {
            let staged = stage_archive_dir(&store, &source(), &[(hostile, &b)], Some(dir.path()))
                .await
                .expect("stages");
            assert!(staged.damaged, "{hostile:?}");
            assert!(
                staged.findings[0].message.contains("not a file name"),
                "{:?}",
                staged.findings
            );
        }
        // The same name twice: the second is refused, not written over the first.
        let twice = [("same", &a), ("same", &b)];
        let staged = stage_archive_dir(&store, &source(), &twice, Some(dir.path()))
            .await
            .expect("stages");
        assert!(staged.damaged);
        assert!(
            staged
                .findings
                .iter()
                .any(|f| f.message.contains("names a file twice")),
            "{:?}",
            staged.findings
        );
        assert!(!dir.path().join("escape").exists());
    }

    #[tokio::test]
    async fn an_archive_that_decompresses_past_its_recorded_size_stops_there() {
        let dir = tempfile::tempdir().expect("dir");
        let store = MemoryStore::new();
        // A bomb: 16 MiB of zeros in a few kilobytes, recorded as 1 MiB.
        let raw = vec![0u8; 16 * 1024 * 1024];
        let a = put(&store, KEY, &zstd(&raw), 1024 * 1024, "zstd").await;
        let staged = stage_archive(&store, &source(), &a, Some(dir.path()))
            .await
            .expect("stages");
        assert!(staged.damaged);
        let raw_size = staged
            .findings
            .iter()
            .find(|f| f.check == "raw-size")
            .expect("a raw-size finding");
        assert_eq!(raw_size.status, Failed);
        assert!(
            raw_size
                .message
                .contains("more than the 1048576 bytes recorded")
        );
        let on_disk = std::fs::metadata(staged.path()).expect("staged").len();
        assert!(on_disk <= 1024 * 1024, "{on_disk} bytes staged");
    }

    #[tokio::test]
    async fn missing_and_corrupted_artifacts_are_damaged() {
        let dir = tempfile::tempdir().expect("dir");
        let store = MemoryStore::new();
        let raw = b"bytes".repeat(100);
        let a = put(&store, KEY, &zstd(&raw), raw.len() as u64, "zstd").await;
        store.tamper(KEY, |b| {
            let last = b.len() - 1;
            b[last] ^= 1;
        });
        let staged = stage_archive(&store, &source(), &a, Some(dir.path()))
            .await
            .expect("stages");
        assert!(staged.damaged);
        assert_eq!(checks(&staged)[0], ("sha256".to_owned(), Failed));

        let mut gone = a.clone();
        gone.key = "backups/x/data/db/gone.zst".into();
        let staged = stage_archive(&store, &source(), &gone, Some(dir.path()))
            .await
            .expect("stages");
        assert!(staged.damaged);
        assert_eq!(checks(&staged), vec![("present".to_owned(), Failed)]);
    }

    #[test]
    fn staging_space_is_refused_when_it_cannot_fit_and_names_the_dir() {
        let dir = tempfile::tempdir().expect("dir");
        let mut a = ArtifactMeta {
            name: "dump.zst".into(),
            key: KEY.into(),
            format: "raw".into(),
            compression: "zstd".into(),
            stored_size: 1,
            raw_size: 1024,
            sha256: backup_core::Digest::of(b""),
            extra: Default::default(),
        };
        assert_eq!(staging_space_problem(&a, Some(dir.path())), None);
        a.raw_size = u64::MAX - 1;
        let why = staging_space_problem(&a, Some(dir.path())).expect("cannot fit");
        assert!(why.contains(&dir.path().display().to_string()), "{why}");
        assert!(why.contains("[verify] temp_dir"), "{why}");
    }

    #[test]
    fn staged_files_of_dead_runs_are_removed_and_no_others() {
        let dir = tempfile::tempdir().expect("dir");
        // A pid that no longer runs: a child that has been waited for.
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let dead = child.id();
        child.wait().expect("wait");
        assert!(!std::path::Path::new(&format!("/proc/{dead}")).exists());
        let name = |pid: u32| format!("{STAGING_PREFIX}{pid}-abc");
        let files = [
            name(dead),
            name(std::process::id()),
            name(1),
            "predeploy-verify-notapid-x".to_owned(),
            "unrelated".to_owned(),
        ];
        for f in &files {
            std::fs::write(dir.path().join(f), b"x").expect("write");
        }
        remove_stale_staging(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = files[1..].to_vec();
        want.sort();
        assert_eq!(left, want);
    }
}
