//! A parallel dump: `pg_dump --format=directory --jobs=N` into a private temp directory, each
//! file streamed through the pipeline into the store as soon as pg_dump closes it (inotify) and
//! then deleted. Memory stays flat; the temp directory holds only the files being written or
//! uploaded (at most the largest tables being dumped at once, uncompressed).

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use backup_core::disk::{remove_stale_temp, temp_prefix};
use backup_core::process::spawn_to_files;
use backup_core::{ArtifactMeta, ArtifactSpec, Error, Result, SnapshotContext, SourceName};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use inotify::{Inotify, WatchMask};
use tokio::process::Command;

use crate::dump_archive::{DIR_FORMAT, TOC_FILE, dir_artifact_name};

/// The temp directory of a dump is `predeploy-pgdump-<pid>-…` (under `TMPDIR`), so one left by
/// a run killed before it could remove it is recognised and removed by the next dump.
const TEMP_PREFIX: &str = "predeploy-pgdump-";

/// Runs `cmd` (pg_dump with its connection and snapshot, `--format=directory` and `--jobs`
/// already given; `--file` is added here) and stores each file it writes as an artifact of
/// `source` ([`DIR_FORMAT`]), at most `uploads` at once. Returns them, `toc.dat` first.
///
/// # Errors
///
/// [`Error::SnapshotFailed`] when pg_dump fails (its own words) or the temp directory cannot
/// be watched; the store's error when an upload fails. Either way pg_dump is stopped.
pub(crate) async fn dump_directory(
    ctx: SnapshotContext<'_>,
    source: &SourceName,
    mut cmd: Command,
    uploads: usize,
) -> Result<Vec<ArtifactMeta>> {
    let failed = |message: String| Error::SnapshotFailed {
        source_name: source.to_string(),
        message,
    };
    let root = std::env::temp_dir();
    remove_stale_temp(&root, TEMP_PREFIX);
    let temp = tempfile::Builder::new()
        .prefix(&temp_prefix(TEMP_PREFIX))
        .tempdir_in(&root)
        .map_err(|e| failed(format!("cannot create a temp directory for the dump: {e}")))?;
    // pg_dump takes an existing directory when it is empty; watching it before pg_dump starts
    // means no file can close unseen.
    let dir = temp.path().join("dump");
    std::fs::create_dir(&dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let watch = |e: std::io::Error| failed(format!("cannot watch {}: {e}", dir.display()));
    let inotify = Inotify::init().map_err(watch)?;
    inotify
        .watches()
        .add(&dir, WatchMask::CLOSE_WRITE)
        .map_err(watch)?;
    let mut closed = inotify.into_event_stream([0u8; 4096]).map_err(watch)?;

    cmd.arg(format!("--file={}", dir.display()));
    let mut dump = Box::pin(
        spawn_to_files("pg_dump", cmd).map_err(|e| failed(format!("cannot start pg_dump: {e}")))?,
    );
    let mut queued: VecDeque<String> = VecDeque::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    let mut stored = Vec::new();
    let mut exited = false;
    loop {
        while running.len() < uploads.max(1)
            && let Some(name) = queued.pop_front()
        {
            running.push(store_file(ctx, source, &dir, name));
        }
        if exited && running.is_empty() {
            break;
        }
        tokio::select! {
            ended = &mut dump, if !exited => {
                ended.map_err(|e| failed(e.to_string()))?;
                exited = true;
                // Every file is closed now: take any whose event was not read (or was lost
                // to a full event queue).
                for name in files_in(&dir).map_err(|e| failed(e.to_string()))? {
                    if seen.insert(name.clone()) {
                        queued.push_back(name);
                    }
                }
            }
            Some(event) = closed.next(), if !exited => {
                let event = event.map_err(watch)?;
                if let Some(name) = event.name.and_then(|n| n.to_str().map(str::to_owned))
                    && seen.insert(name.clone())
                {
                    queued.push_back(name);
                }
            }
            Some(meta) = running.next() => stored.push(meta?),
        }
    }
    stored.sort_by_key(|a: &ArtifactMeta| (a.name != dir_artifact_name(TOC_FILE), a.name.clone()));
    if stored.first().map(|a| a.name.as_str()) != Some(&dir_artifact_name(TOC_FILE)) {
        return Err(failed(
            "pg_dump exited successfully but wrote no toc.dat: the dump is incomplete".into(),
        ));
    }
    Ok(stored)
}

/// Streams the closed file `name` of `dir` into the store, then deletes it.
async fn store_file(
    ctx: SnapshotContext<'_>,
    source: &SourceName,
    dir: &Path,
    name: String,
) -> Result<ArtifactMeta> {
    let path: PathBuf = dir.join(&name);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let stored_name = dir_artifact_name(&name);
    let spec = ArtifactSpec {
        source,
        file: &stored_name,
        format: DIR_FORMAT,
    };
    let meta = ctx.write_artifact(spec, file).await?;
    // Stored: the local copy only takes space now.
    if let Err(e) = tokio::fs::remove_file(&path).await {
        tracing::debug!("could not remove {}: {e}", path.display());
    }
    Ok(meta)
}

/// The names of the files in `dir`.
fn files_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file()
            && let Some(name) = entry.file_name().to_str()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
