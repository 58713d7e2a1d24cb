//! [`ArchiveVerifier`]: the ladder for the artifacts of PostgreSQL sources (levels 1–3 in one
//! read of each, and level 4 with [`RestoreTargets`]).

use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::{DUMP_FORMAT, GLOBALS_FORMAT, SOURCE_KIND, find_tools, parse_major};
use async_trait::async_trait;
use backup_core::{
    ArtifactMeta, Finding, FindingStatus, Manifest, Result, SourceManifest, Store,
    VerificationLevel, VerificationReport, Verifier,
};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::process::Command;

use backup_verify::{
    Consumer, finding, generic_findings, pass_findings, read_pass, staging_space_problem,
    stream_prefix,
};

use super::local::start_scratch_cluster;
use super::restore::{RestoreTargets, verify_dump_by_restore};

/// The last line pg_dumpall writes; its absence means the globals dump was cut short.
const GLOBALS_TRAILER: &str = "PostgreSQL database cluster dump complete";

/// Verifies each artifact by re-reading it from the store: sha256 and size (1), zstd frames to
/// the end (2), and for pg_dump archives `pg_restore --list` plus a full read by pg_restore (3);
/// for globals, the dump's closing trailer (3). With [`RestoreTargets`], pg_dump archives also
/// get level 4: a test restore into a scratch database, compared with the manifest.
#[derive(Debug, Clone, Default)]
pub struct ArchiveVerifier {
    /// Where to find pg_restore, overriding discovery.
    pub pg_bin_dir: Option<PathBuf>,
    /// Where level-4 test restores go; `None`: levels 1–3 only.
    pub restore: Option<RestoreTargets>,
}

impl ArchiveVerifier {
    /// A verifier using discovered PostgreSQL tools, or those in `pg_bin_dir`.
    pub fn new(pg_bin_dir: Option<PathBuf>) -> Self {
        ArchiveVerifier {
            pg_bin_dir,
            restore: None,
        }
    }

    /// Enables level 4 with these restore targets.
    pub fn with_restore(mut self, targets: RestoreTargets) -> Self {
        self.restore = Some(targets);
        self
    }
}

#[async_trait]
impl Verifier for ArchiveVerifier {
    fn name(&self) -> &str {
        "archive"
    }

    fn claims(&self, source: &SourceManifest) -> bool {
        source.kind == SOURCE_KIND
    }

    fn max_level(&self) -> VerificationLevel {
        if self.restore.is_some() {
            VerificationLevel::Restore
        } else {
            VerificationLevel::Archive
        }
    }

    async fn verify(
        &self,
        store: &dyn Store,
        manifest: &Manifest,
        up_to: VerificationLevel,
    ) -> Result<VerificationReport> {
        let mut report = VerificationReport::default();
        let top = up_to.min(VerificationLevel::Archive);
        for (source, artifact) in manifest.artifacts() {
            if !self.claims(source) {
                continue;
            }
            if up_to >= VerificationLevel::Restore && artifact.format == DUMP_FORMAT {
                let skipped = |why: String| {
                    finding(
                        VerificationLevel::Restore,
                        "pg-restore",
                        source,
                        artifact,
                        FindingStatus::Skipped,
                        format!("{}/{}: {why}", source.name, artifact.name),
                    )
                };
                match self.restore.as_ref() {
                    Some(targets) if targets.local_cluster => match staging_space_problem(artifact, targets.temp_dir.as_deref()) {
                        Some(why) => report.findings.push(skipped(why)),
                        None => match start_scratch_cluster(store, source, self.pg_bin_dir.as_deref(), targets.temp_dir.as_deref()).await {
                            Ok(cluster) => {
                                let target = cluster.config();
                                verify_dump_by_restore(store, source, artifact, &target, targets, self.pg_bin_dir.as_deref(), &mut report).await?;
                                drop(cluster);
                                continue;
                            }
                            Err(why) => report.findings.push(skipped(format!("no local scratch server: {why}"))),
                        },
                    },
                    Some(targets) => match targets.target_for(source.name.as_str()) {
                        // Not level 4, and still levels 1–3 below.
                        Some(target) => match staging_space_problem(artifact, targets.temp_dir.as_deref()) {
                            Some(why) => report.findings.push(skipped(why)),
                            None => {
                                verify_dump_by_restore(store, source, artifact, target, targets, self.pg_bin_dir.as_deref(), &mut report).await?;
                                continue;
                            }
                        },
                        None => report.findings.push(skipped("no scratch server to restore into: configure the source's URL or give --verify-restore-url".into())),
                    },
                    None => report.findings.push(skipped("no scratch server to restore into: configure the source's URL or give --verify-restore-url".into())),
                }
            }
            let started = Instant::now();
            let findings = match artifact.format.as_str() {
                DUMP_FORMAT if top >= VerificationLevel::Archive => {
                    self.verify_dump(store, source, artifact).await?
                }
                GLOBALS_FORMAT if top >= VerificationLevel::Archive => {
                    verify_globals(store, source, artifact).await?
                }
                _ => generic_findings(store, source, artifact, top).await?,
            };
            report.findings.extend(findings);
            report.add_time(top, started.elapsed());
        }
        Ok(report)
    }
}

impl ArchiveVerifier {
    async fn verify_dump(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        a: &ArtifactMeta,
    ) -> Result<Vec<Finding>> {
        use FindingStatus::*;
        use VerificationLevel::*;
        let label = format!("{}/{}", source.name, a.name);
        let min_major = source
            .tool_version
            .as_deref()
            .and_then(parse_major)
            .unwrap_or(0);
        let tools = find_tools(min_major, self.pg_bin_dir.as_deref(), source.name.as_str()).await?;

        // Full read: pg_restore writes the whole archive as SQL to /dev/null.
        let mut child = Command::new(tools.pg_restore())
            .args(["--file=/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| backup_core::Error::io("cannot start pg_restore", e))?;
        let mut stdin = child.stdin.take().ok_or_else(|| {
            backup_core::Error::io("pg_restore", std::io::Error::other("no stdin"))
        })?;
        let (pass, output) = tokio::join!(
            async {
                let r = read_pass(store, a, true, Consumer::Writer(&mut stdin)).await;
                drop(stdin);
                r
            },
            child.wait_with_output()
        );
        let pass = pass?;
        let output = output.map_err(|e| backup_core::Error::io("waiting for pg_restore", e))?;
        let mut findings = pass_findings(&pass, source, a, Archive);
        if pass.missing {
            return Ok(findings);
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let (status, message) = if pass.decompress_error.is_some() {
            (
                Failed,
                format!(
                    "{label}: pg_restore could not read the archive because it does not decompress"
                ),
            )
        } else if output.status.success() && stderr.is_empty() {
            (
                Passed,
                format!(
                    "{label}: pg_restore read the whole archive ({} bytes)",
                    pass.raw_size
                ),
            )
        } else {
            (
                Failed,
                format!(
                    "{label}: pg_restore could not read the whole archive ({}): {}",
                    output.status,
                    tail(&stderr)
                ),
            )
        };
        findings.push(finding(
            Archive,
            "pg-restore-read",
            source,
            a,
            status,
            message,
        ));

        // Table of contents: every table counted at backup time has its data in the archive.
        if status == Passed {
            findings.push(toc_finding(store, source, a, &tools.pg_restore()).await?);
        }
        Ok(findings)
    }
}

async fn toc_finding(
    store: &dyn Store,
    source: &SourceManifest,
    a: &ArtifactMeta,
    pg_restore: &std::path::Path,
) -> Result<Finding> {
    use FindingStatus::*;
    let label = format!("{}/{}", source.name, a.name);
    let mut child = Command::new(pg_restore)
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| backup_core::Error::io("cannot start pg_restore --list", e))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| backup_core::Error::io("pg_restore", std::io::Error::other("no stdin")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| backup_core::Error::io("pg_restore", std::io::Error::other("no stdout")))?;
    let (fed, listing) = tokio::join!(
        async {
            let r = stream_prefix(store, a, &mut stdin).await;
            drop(stdin);
            r
        },
        async {
            let mut s = String::new();
            let r = stdout.read_to_string(&mut s).await;
            r.map(|_| s)
        }
    );
    fed?;
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| backup_core::Error::io("pg_restore --list", e))?;
    let listing = listing.map_err(|e| backup_core::Error::io("reading pg_restore --list", e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Ok(finding(
            VerificationLevel::Archive,
            "pg-restore-toc",
            source,
            a,
            Failed,
            format!("{label}: pg_restore --list failed: {}", tail(stderr.trim())),
        ));
    }
    Ok(toc_check(&listing, source, a))
}

/// Checks a `pg_restore --list` listing against the tables counted at backup time.
pub(crate) fn toc_check(listing: &str, source: &SourceManifest, a: &ArtifactMeta) -> Finding {
    use FindingStatus::*;
    let label = format!("{}/{}", source.name, a.name);
    let missing: Vec<String> = source
        .stats
        .tables
        .iter()
        .filter(|t| !listing.contains(&format!(" TABLE DATA {} {} ", t.schema, t.name)))
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    if missing.is_empty() {
        finding(
            VerificationLevel::Archive,
            "pg-restore-toc",
            source,
            a,
            Passed,
            format!(
                "{label}: the table of contents holds the data of all {} tables counted at backup time",
                source.stats.tables.len()
            ),
        )
    } else {
        finding(
            VerificationLevel::Archive,
            "pg-restore-toc",
            source,
            a,
            Failed,
            format!(
                "{label}: the table of contents has no data for {} of the tables counted at backup time: {}",
                missing.len(),
                missing
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }
}

async fn verify_globals(
    store: &dyn Store,
    source: &SourceManifest,
    a: &ArtifactMeta,
) -> Result<Vec<Finding>> {
    let mut tail_writer = TailWriter::default();
    let pass = read_pass(store, a, true, Consumer::Writer(&mut tail_writer)).await?;
    let mut findings = pass_findings(&pass, source, a, VerificationLevel::Archive);
    if !pass.missing {
        let label = format!("{}/{}", source.name, a.name);
        let complete = String::from_utf8_lossy(&tail_writer.tail).contains(GLOBALS_TRAILER);
        let (status, message) = if complete && pass.decompress_error.is_none() {
            (
                FindingStatus::Passed,
                format!("{label}: the globals dump is complete"),
            )
        } else {
            (
                FindingStatus::Failed,
                format!("{label}: the globals dump is cut short (no closing trailer)"),
            )
        };
        findings.push(finding(
            VerificationLevel::Archive,
            "globals-trailer",
            source,
            a,
            status,
            message,
        ));
    }
    Ok(findings)
}

/// Last lines of a tool's stderr.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

/// Keeps the last bytes written to it.
#[derive(Default)]
struct TailWriter {
    tail: Vec<u8>,
}

impl AsyncWrite for TailWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.tail.extend_from_slice(buf);
        if this.tail.len() > 512 {
            let cut = this.tail.len() - 512;
            this.tail.drain(..cut);
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
