//! [`ArchiveVerifier`]: the ladder for the artifacts of PostgreSQL sources (levels 1–3 in one
//! read of each, and level 4 with [`RestoreTargets`]).

use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::{DUMP_FORMAT, DumpArchive, GLOBALS_FORMAT, SOURCE_KIND, find_tools, parse_major};
use async_trait::async_trait;
use backup_core::{
    ArtifactMeta, Finding, FindingStatus, Manifest, Result, SourceManifest, Store,
    VerificationLevel, VerificationReport, Verifier,
};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::process::Command;

use backup_verify::{
    Consumer, finding, generic_findings, pass_findings, read_pass, staging_space_problem_for,
    stream_prefix,
};

use super::local::{scratch_server, start_scratch_cluster};
use super::restore::{RestoreTargets, Scratch, stage, verify_dump_by_restore};

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
        // Each source's pg_dump archive, found once (a parallel dump has a file per table).
        let archives: Vec<(&SourceManifest, Option<DumpArchive<'_>>)> = manifest
            .sources
            .iter()
            .map(|s| (s, DumpArchive::of(s)))
            .collect();
        for (source, artifact) in manifest.artifacts() {
            if !self.claims(source) {
                continue;
            }
            let archive = archives
                .iter()
                .find(|(s, _)| std::ptr::eq(*s, source))
                .and_then(|(_, a)| a.as_ref());
            // The other files of a directory archive are checked with its head, as one archive
            // (levels 1–2 of each in the same read); below level 3 each on its own.
            if top >= VerificationLevel::Archive
                && archive.is_some_and(|d| d.is_other_file(artifact))
            {
                continue;
            }
            let dump = archive.filter(|d| std::ptr::eq(d.head, artifact));
            if let (true, Some(dump)) = (up_to >= VerificationLevel::Restore, dump) {
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
                if let Some(why) = self.level_4(store, source, dump, &mut report).await? {
                    report.findings.push(skipped(why));
                } else {
                    continue;
                }
            }
            let started = Instant::now();
            let findings = match (artifact.format.as_str(), dump) {
                (_, Some(dump)) if top >= VerificationLevel::Archive && dump.is_directory() => {
                    self.verify_dump_dir(store, source, dump, top).await?
                }
                (DUMP_FORMAT, _) if top >= VerificationLevel::Archive => {
                    self.verify_dump(store, source, artifact).await?
                }
                (GLOBALS_FORMAT, _) if top >= VerificationLevel::Archive => {
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
    /// Levels 1–4 of one pg_dump archive through a test restore: `None` when done, else why
    /// there is no level 4 (levels 1–3 are then still to do).
    async fn level_4(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        dump: &DumpArchive<'_>,
        report: &mut VerificationReport,
    ) -> Result<Option<String>> {
        let no_scratch = "no scratch server to restore into: configure the source's URL or give --verify-restore-url";
        let Some(targets) = self.restore.as_ref() else {
            return Ok(Some(no_scratch.into()));
        };
        if let Some(why) = staging_space_problem_for(dump.raw_size(), targets.temp_dir.as_deref()) {
            return Ok(Some(why));
        }
        let pg_bin_dir = self.pg_bin_dir.as_deref();
        let temp_dir = targets.temp_dir.as_deref();
        let source_server = targets.target_for(source.name.as_str());
        let by_default = targets.prefer_local && targets.override_target.is_none();
        let (target, why_source, staged) = if targets.local_cluster || by_default {
            // By default only the backup's own major: owners and grants are proven exactly there.
            match scratch_server(source, pg_bin_dir, by_default).await {
                Err(why) if !by_default => {
                    return Ok(Some(format!("no local scratch server: {why}")));
                }
                Err(why) => (source_server, Some(why), None),
                Ok(server) => {
                    // The cluster starts (initdb: about a second) while the archive is staged.
                    let (cluster, staged) = tokio::join!(
                        start_scratch_cluster(store, source, &server, temp_dir),
                        stage(store, source, dump, temp_dir)
                    );
                    let staged = staged?;
                    match cluster {
                        Ok(cluster) => {
                            let target = cluster.config();
                            let scratch = Scratch {
                                target: &target,
                                dedicated: true,
                                fallback: source_server.filter(|_| by_default),
                                why_source: None,
                                staged,
                            };
                            verify_dump_by_restore(
                                store, source, dump, scratch, targets, pg_bin_dir, report,
                            )
                            .await?;
                            drop(cluster);
                            return Ok(None);
                        }
                        Err(why) if !by_default => {
                            return Ok(Some(format!("no local scratch server: {why}")));
                        }
                        Err(why) => (source_server, Some(why), Some(staged)),
                    }
                }
            }
        } else {
            (source_server, None, None)
        };
        let Some(target) = target else {
            return Ok(Some(no_scratch.into()));
        };
        let staged = match staged {
            Some(staged) => staged,
            None => stage(store, source, dump, temp_dir).await?,
        };
        let scratch = Scratch {
            target,
            dedicated: targets.override_target.is_some(),
            fallback: None,
            why_source,
            staged,
        };
        verify_dump_by_restore(store, source, dump, scratch, targets, pg_bin_dir, report).await?;
        Ok(None)
    }

    /// Client tools that read `source`'s archives: at least the major version that wrote them.
    async fn archive_tools(&self, source: &SourceManifest) -> Result<crate::PgTools> {
        let min_major = source
            .tool_version
            .as_deref()
            .and_then(parse_major)
            .unwrap_or(0);
        find_tools(min_major, self.pg_bin_dir.as_deref(), source.name.as_str()).await
    }

    /// Level 3 of a directory-format archive: staged whole (levels 1–2 of each file in the
    /// same read), read to the end by pg_restore, and its table of contents checked. Below
    /// that, or without room to stage it, each file on its own at levels 1–2.
    async fn verify_dump_dir(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        dump: &DumpArchive<'_>,
        top: VerificationLevel,
    ) -> Result<Vec<Finding>> {
        use FindingStatus::*;
        use VerificationLevel::*;
        let a = dump.head;
        let label = format!("{}/{}", source.name, a.name);
        let temp_dir = self.restore.as_ref().and_then(|t| t.temp_dir.as_deref());
        if let Some(why) = staging_space_problem_for(dump.raw_size(), temp_dir) {
            let mut findings = Vec::new();
            for file in dump.artifacts() {
                findings.extend(generic_findings(store, source, file, top.min(Decompress)).await?);
            }
            let why = format!("{label}: not read by pg_restore: {why}");
            findings.push(finding(Archive, "pg-restore-read", source, a, Skipped, why));
            return Ok(findings);
        }
        let staged = dump.stage(store, source, temp_dir).await?;
        let mut findings = staged.findings.clone();
        if staged.damaged {
            return Ok(findings);
        }
        let tools = self.archive_tools(source).await?;
        // Full read: pg_restore writes the whole archive, every file of it, as SQL to /dev/null.
        let output = Command::new(tools.pg_restore())
            .arg("--file=/dev/null")
            .arg(staged.path())
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| backup_core::Error::io("cannot start pg_restore", e))?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !(output.status.success() && stderr.is_empty()) {
            findings.push(finding(
                Archive,
                "pg-restore-read",
                source,
                a,
                Failed,
                format!(
                    "{label}: pg_restore could not read the whole archive ({}): {}",
                    output.status,
                    tail(&stderr)
                ),
            ));
            return Ok(findings);
        }
        findings.push(finding(
            Archive,
            "pg-restore-read",
            source,
            a,
            Passed,
            format!(
                "{label}: pg_restore read the whole archive ({} files, {} bytes)",
                dump.files().len(),
                dump.raw_size()
            ),
        ));
        let (toc, _) = super::restore::toc_finding(&tools, staged.path(), source, a).await?;
        findings.push(toc);
        Ok(findings)
    }

    async fn verify_dump(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        a: &ArtifactMeta,
    ) -> Result<Vec<Finding>> {
        use FindingStatus::*;
        use VerificationLevel::*;
        let label = format!("{}/{}", source.name, a.name);
        let tools = self.archive_tools(source).await?;

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

#[cfg(test)]
mod tests {
    use backup_core::testkit::MemoryStore;
    use backup_core::{
        ArtifactSpec, BackupId, PipelineConfig, SnapshotContext, SourceName, TableStat,
    };
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn source_with(
        store: &MemoryStore,
        file: &str,
        format: &str,
        raw: &[u8],
    ) -> SourceManifest {
        let id: BackupId = "20261122T031500Z-7f3a9c".parse().expect("id");
        let name: SourceName = "db".parse().expect("name");
        let ctx = SnapshotContext {
            store,
            backup_id: &id,
            environment: "default",
            pipeline: &PipelineConfig::default(),
        };
        let spec = ArtifactSpec {
            source: &name,
            file,
            format,
        };
        let artifact = ctx.write_artifact(spec, raw).await.expect("write");
        SourceManifest {
            name,
            kind: SOURCE_KIND.into(),
            location: "-".into(),
            server_version: None,
            tool_version: None,
            artifacts: vec![artifact],
            stats: Default::default(),
            notes: vec![],
            extra: Default::default(),
        }
    }

    fn table(schema: &str, name: &str) -> TableStat {
        TableStat {
            schema: schema.into(),
            name: name.into(),
            rows: 1,
        }
    }

    /// A `pg_restore --list` as PostgreSQL 15 prints it.
    const LISTING: &str = ";\n; Archive created at 2026-11-22 03:15:00 UTC\n;     dbname: app\n;\n\
        215; 1259 16400 TABLE public orders app\n\
        3380; 0 16400 TABLE DATA public orders app\n\
        3381; 0 16410 TABLE DATA sales items app\n\
        3382; 0 16420 SEQUENCE SET public orders_id_seq app\n";

    #[tokio::test]
    async fn the_table_of_contents_must_hold_the_data_of_every_counted_table() {
        let store = MemoryStore::new();
        let mut source = source_with(&store, "dump.pgc.zst", DUMP_FORMAT, b"x").await;
        let a = source.artifacts[0].clone();
        source.stats.tables = vec![table("public", "orders"), table("sales", "items")];
        let found = toc_check(LISTING, &source, &a);
        assert_eq!(found.status, FindingStatus::Passed, "{}", found.message);
        assert!(found.message.contains("all 2 tables"), "{}", found.message);

        // A table whose definition is listed but whose data is not, and one in another schema.
        source.stats.tables = vec![
            table("public", "orders"),
            table("public", "customers"),
            table("public", "items"),
        ];
        let found = toc_check(LISTING, &source, &a);
        assert_eq!(found.status, FindingStatus::Failed);
        assert_eq!(found.level, VerificationLevel::Archive);
        assert!(
            found.message.ends_with(
                "no data for 2 of the tables counted at backup time: public.customers, public.items"
            ),
            "{}",
            found.message
        );

        // Only the definition (TABLE, not TABLE DATA) is not enough.
        source.stats.tables = vec![table("public", "orders")];
        let only_definition = ";\n215; 1259 16400 TABLE public orders app\n";
        assert_eq!(
            toc_check(only_definition, &source, &a).status,
            FindingStatus::Failed
        );
    }

    #[tokio::test]
    async fn a_long_list_of_missing_tables_names_ten() {
        let store = MemoryStore::new();
        let mut source = source_with(&store, "dump.pgc.zst", DUMP_FORMAT, b"x").await;
        let a = source.artifacts[0].clone();
        source.stats.tables = (0..25)
            .map(|i| table("public", &format!("t{i:02}")))
            .collect();
        let found = toc_check("", &source, &a);
        assert!(
            found.message.contains("no data for 25 of the tables"),
            "{}",
            found.message
        );
        assert!(found.message.contains("public.t09"), "{}", found.message);
        assert!(!found.message.contains("public.t10"), "{}", found.message);
    }

    #[tokio::test]
    async fn the_globals_dump_must_end_with_its_trailer() {
        let store = MemoryStore::new();
        let complete = format!("CREATE ROLE app;\n--\n-- {GLOBALS_TRAILER}\n--\n\n");
        let source = source_with(
            &store,
            "globals.sql.zst",
            GLOBALS_FORMAT,
            complete.as_bytes(),
        )
        .await;
        let found = verify_globals(&store, &source, &source.artifacts[0])
            .await
            .expect("runs");
        let checks: Vec<_> = found.iter().map(|f| (f.check.as_str(), f.status)).collect();
        assert_eq!(
            checks,
            vec![
                ("sha256", FindingStatus::Passed),
                ("zstd-frames", FindingStatus::Passed),
                ("globals-trailer", FindingStatus::Passed)
            ]
        );

        // Cut short, with a consistent record (the dump tool died, the pipeline stored what came).
        let cut = "CREATE ROLE app;\nALTER ROLE app WITH NOSUPERUSER";
        let source = source_with(&store, "globals.sql.zst", GLOBALS_FORMAT, cut.as_bytes()).await;
        let found = verify_globals(&store, &source, &source.artifacts[0])
            .await
            .expect("runs");
        assert_eq!(found[0].status, FindingStatus::Passed);
        assert_eq!(found[2].check, "globals-trailer");
        assert_eq!(found[2].status, FindingStatus::Failed);
        assert!(
            found[2].message.contains("cut short"),
            "{}",
            found[2].message
        );

        // The trailer early in a long dump does not count.
        let mut early = complete.clone();
        early.push_str(&"GRANT x TO y;\n".repeat(100));
        let source = source_with(&store, "globals.sql.zst", GLOBALS_FORMAT, early.as_bytes()).await;
        let found = verify_globals(&store, &source, &source.artifacts[0])
            .await
            .expect("runs");
        assert_eq!(found[2].status, FindingStatus::Failed);

        // Missing: one finding, no trailer check.
        store
            .delete(&source.artifacts[0].key)
            .await
            .expect("delete");
        let found = verify_globals(&store, &source, &source.artifacts[0])
            .await
            .expect("runs");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].check, "present");
    }

    #[tokio::test]
    async fn the_tail_writer_keeps_the_last_512_bytes() {
        let mut w = TailWriter::default();
        for i in 0..100u8 {
            w.write_all(&[i; 10]).await.expect("write");
        }
        assert_eq!(w.tail.len(), 512);
        assert_eq!(w.tail[511], 99);
        assert_eq!(w.tail[0], 48, "1000 bytes written, the first 488 dropped");
    }

    #[test]
    fn a_tools_stderr_is_cut_to_its_last_lines() {
        let text = (1..=9)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            tail(&text),
            "line 4 | line 5 | line 6 | line 7 | line 8 | line 9"
        );
        assert_eq!(tail("only"), "only");
        assert_eq!(tail(""), "");
    }

    #[test]
    fn the_verifier_claims_postgres_sources_and_offers_level_four_only_with_targets() {
        let v = ArchiveVerifier::new(None);
        assert_eq!(v.max_level(), VerificationLevel::Archive);
        let v = v.with_restore(RestoreTargets::default());
        assert_eq!(v.max_level(), VerificationLevel::Restore);
        let mut source = SourceManifest {
            name: "db".parse().expect("name"),
            kind: SOURCE_KIND.into(),
            location: "-".into(),
            server_version: None,
            tool_version: None,
            artifacts: vec![],
            stats: Default::default(),
            notes: vec![],
            extra: Default::default(),
        };
        assert!(v.claims(&source));
        source.kind = "mysql".into();
        assert!(!v.claims(&source));
    }
}
