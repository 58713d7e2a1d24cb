//! [`MysqlArchiveVerifier`]: levels 1–3 for the dumps of MySQL/MariaDB sources, from one read
//! of each artifact, and level 4 with [`MysqlRestoreTargets`]: the dump replayed into a
//! scratch database `<db>__predeploy_verify_<short id>`, streamed from the store into the
//! `mariadb`/`mysql` client, then its exact row counts and schema fingerprint compared with the
//! manifest's. The scratch database is dropped on every path (a guard drops it on errors,
//! panics and cancellation), and scratch databases left by killed runs (named with the mark and
//! labelled with a `__predeploy_label` table: host, pid, time) are dropped by the next run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use backup_core::{
    ArtifactMeta, Finding, FindingStatus, Manifest, Result, SourceManifest, Store,
    VerificationLevel, VerificationReport, Verifier,
};
use backup_verify::{Consumer, finding, generic_findings, pass_findings, read_pass};
use tokio::io::AsyncWrite;

use crate::admin::{MysqlAdmin, VERIFY_MARK, replay_dump, work_name};
use crate::compare::restored_findings;
use crate::config::MysqlSourceConfig;
use crate::replay_filter::ReplayFilter;
use crate::scan::{DumpScanner, DumpSummary};
use crate::snapshotter::{COUNTS_DUMP_SNAPSHOT, DUMP_FORMAT, SOURCE_KIND};
use crate::tools::{Flavour, find_client};

/// Where level-4 test restores go.
#[derive(Debug, Clone, Default)]
pub struct MysqlRestoreTargets {
    /// Per source name: the source's own server (credentials included), used by default.
    pub by_source: BTreeMap<String, MysqlSourceConfig>,
    /// A dedicated scratch server for every source (`--verify-restore-url`).
    pub override_target: Option<MysqlSourceConfig>,
}

impl MysqlRestoreTargets {
    /// The server a source's dump is restored into, if any.
    pub fn target_for(&self, source: &str) -> Option<&MysqlSourceConfig> {
        self.override_target
            .as_ref()
            .or_else(|| self.by_source.get(source))
    }
}

/// Problems listed in one finding before "and N more".
const LISTED: usize = 5;

/// Verifies MySQL/MariaDB dumps: sha256 and size (1), zstd frames to the end (2), and a full
/// streaming scan of the SQL (3): the `-- Dump completed` trailer, no statement cut short,
/// and every counted table created with its rows — exactly the counted number when the counts
/// come from the dump's snapshot, at least one row for non-empty tables otherwise. With
/// [`MysqlRestoreTargets`], a dump that passed level 3 also gets level 4 (a test restore into
/// a scratch database, compared with the manifest); see the module docs.
#[derive(Debug, Clone, Default)]
pub struct MysqlArchiveVerifier {
    /// Where the client tools are, overriding discovery on `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Where level-4 test restores go; `None`: levels 1–3 only.
    pub restore: Option<MysqlRestoreTargets>,
}

#[async_trait]
impl Verifier for MysqlArchiveVerifier {
    fn name(&self) -> &str {
        "mysql-archive"
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
            let started = Instant::now();
            let findings = if artifact.format == DUMP_FORMAT && top >= VerificationLevel::Archive {
                verify_dump(store, source, artifact).await?
            } else {
                generic_findings(store, source, artifact, top).await?
            };
            let sound = findings.iter().all(|f| f.status != FindingStatus::Failed);
            report.findings.extend(findings);
            report.add_time(top, started.elapsed());
            if up_to >= VerificationLevel::Restore && artifact.format == DUMP_FORMAT {
                let started = Instant::now();
                let label = format!("{}/{}", source.name, artifact.name);
                let skipped = |why: String| {
                    finding(
                        VerificationLevel::Restore,
                        "mysql-restore",
                        source,
                        artifact,
                        FindingStatus::Skipped,
                        format!("{label}: {why}"),
                    )
                };
                let target = self
                    .restore
                    .as_ref()
                    .and_then(|t| t.target_for(source.name.as_str()));
                match target {
                    _ if !sound => report
                        .findings
                        .push(skipped("not restored: the dump is damaged".into())),
                    None => report.findings.push(skipped(
                        "no scratch server to restore into: configure the source's URL or give --verify-restore-url".into(),
                    )),
                    Some(target) => {
                        let mut target = target.clone();
                        if target.bin_dir.is_none() {
                            target.bin_dir.clone_from(&self.bin_dir);
                        }
                        report.findings.extend(
                            verify_by_restore(store, manifest, source, artifact, &target).await,
                        );
                        report.add_time(VerificationLevel::Restore, started.elapsed());
                    }
                }
            }
        }
        Ok(report)
    }
}

pub(crate) async fn verify_dump(
    store: &dyn Store,
    source: &SourceManifest,
    a: &ArtifactMeta,
) -> Result<Vec<Finding>> {
    use FindingStatus::{Failed, Passed};
    let mut sink = ScanSink(DumpScanner::new());
    let pass = read_pass(store, a, true, Consumer::Writer(&mut sink)).await?;
    let mut findings = pass_findings(&pass, source, a, VerificationLevel::Archive);
    if pass.missing {
        return Ok(findings);
    }
    let label = format!("{}/{}", source.name, a.name);
    let summary = sink.0.finish();
    let (status, message) = if pass.decompress_error.is_some() {
        (
            Failed,
            format!("{label}: the dump cannot be read because it does not decompress"),
        )
    } else if summary.cut_in_statement {
        (
            Failed,
            format!("{label}: the dump ends inside an INSERT statement: it is truncated"),
        )
    } else if !summary.trailer {
        (
            Failed,
            format!(
                "{label}: the dump lacks its closing \"-- Dump completed\" line: it is truncated"
            ),
        )
    } else {
        (
            Passed,
            format!(
                "{label}: the dump is complete ({} bytes of SQL)",
                summary.bytes
            ),
        )
    };
    findings.push(finding(
        VerificationLevel::Archive,
        "mysql-dump-complete",
        source,
        a,
        status,
        message,
    ));
    if pass.decompress_error.is_none() {
        let exact =
            source.extra.get("counts").and_then(|v| v.as_str()) == Some(COUNTS_DUMP_SNAPSHOT);
        let problems = table_problems(source, &summary, exact);
        let (status, message) = if problems.is_empty() {
            let how = if exact {
                "exactly the counted rows"
            } else {
                "data where rows were counted"
            };
            (
                Passed,
                format!(
                    "{label}: all {} tables are in the dump with {how}",
                    source.stats.tables.len()
                ),
            )
        } else {
            let more = problems.len().saturating_sub(LISTED);
            let mut text = problems
                .into_iter()
                .take(LISTED)
                .collect::<Vec<_>>()
                .join("; ");
            if more > 0 {
                text.push_str(&format!("; and {more} more"));
            }
            (Failed, format!("{label}: {text}"))
        };
        findings.push(finding(
            VerificationLevel::Archive,
            "mysql-dump-tables",
            source,
            a,
            status,
            message,
        ));
    }
    Ok(findings)
}

/// Level 4 of one dump: replayed into a scratch database on `target`'s server, compared, and
/// dropped.
async fn verify_by_restore(
    store: &dyn Store,
    manifest: &Manifest,
    source: &SourceManifest,
    a: &ArtifactMeta,
    target: &MysqlSourceConfig,
) -> Vec<Finding> {
    let label = format!("{}/{}", source.name, a.name);
    let make = |status: FindingStatus, message: String| {
        finding(
            VerificationLevel::Restore,
            "mysql-restore",
            source,
            a,
            status,
            format!("{label}: {message}"),
        )
    };
    let mut admin = match MysqlAdmin::connect(target, source.name.as_str()).await {
        Ok(a) => a,
        Err(e) => {
            return vec![make(
                FindingStatus::Skipped,
                format!("no scratch server: {e}"),
            )];
        }
    };
    let flavour = match admin.server_version().await {
        Ok(v) => Flavour::of_version(&v),
        Err(e) => {
            return vec![make(
                FindingStatus::Skipped,
                format!("no scratch server: {e}"),
            )];
        }
    };
    let client = match find_client(flavour, target.bin_dir.as_deref(), source.name.as_str()) {
        Ok(c) => c,
        Err(e) => return vec![make(FindingStatus::Skipped, e.to_string())],
    };
    if let Err(e) = admin.cleanup_leftovers("", VERIFY_MARK).await {
        tracing::debug!("could not look for leftover scratch databases: {e}");
    }
    let mut suffix = [0u8; 3];
    let _ = getrandom::fill(&mut suffix);
    // A test restore must not fill the server's disk (by default it is the source's own).
    if let Some(why) = admin.space_problem(a.raw_size).await {
        admin.close().await;
        return vec![make(
            FindingStatus::Skipped,
            format!("not restored on {}: {why}", target.location()),
        )];
    }
    let (name, _) = work_name(&target.database, VERIFY_MARK, &hex::encode(suffix));
    let charset = charset_of(source);
    let purpose = format!("level-4 test restore of backup {} ({label})", manifest.id);
    let scratch = match admin
        .create_work_database(&name, charset.as_ref(), &purpose)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            admin.close().await;
            return vec![make(
                FindingStatus::Skipped,
                format!("cannot create a scratch database: {e}"),
            )];
        }
    };
    admin.close().await;
    let mut out = Vec::new();
    let replayed = replay_dump(
        store,
        a,
        &client,
        &scratch.config(),
        ReplayFilter::for_scratch(),
    )
    .await;
    match replayed {
        Err(message) => out.push(make(
            FindingStatus::Failed,
            format!(
                "the test restore into {name} on {} failed: {message}",
                target.location()
            ),
        )),
        Ok(filter) => {
            out.push(make(
                FindingStatus::Passed,
                format!(
                    "restored into scratch database {name} on {} with {}",
                    target.location(),
                    client.display()
                ),
            ));
            let disabled = filter.disabled_events();
            out.extend(restored_findings(store, &scratch.config(), source, a, disabled).await);
        }
    }
    if let Err(e) = scratch.drop_now().await {
        tracing::warn!("{e}");
    }
    out
}

/// The character set and collation the source database had (for the databases restored into).
pub(crate) fn charset_of(source: &SourceManifest) -> Option<(String, String)> {
    let get = |k: &str| {
        source
            .extra
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (get("default_charset"), get("default_collation")) {
        (Some(cs), Some(coll)) if valid(&cs) && valid(&coll) => Some((cs, coll)),
        _ => None,
    }
}

/// What is wrong with the tables of `summary` against the manifest's counts.
fn table_problems(source: &SourceManifest, summary: &DumpSummary, exact: bool) -> Vec<String> {
    let mut out = Vec::new();
    for t in &source.stats.tables {
        let dumped = summary.rows.get(&t.name).copied().unwrap_or(0);
        if !summary.created.contains(&t.name) {
            out.push(format!("table {} is not created by the dump", t.name));
        } else if exact && dumped != t.rows {
            out.push(format!(
                "table {} has {dumped} rows in the dump, {} counted",
                t.name, t.rows
            ));
        } else if !exact && t.rows > 0 && dumped == 0 {
            out.push(format!(
                "table {} has no rows in the dump, {} counted",
                t.name, t.rows
            ));
        }
    }
    out
}

/// Feeds the decompressed dump to the scanner.
struct ScanSink(DumpScanner);

impl AsyncWrite for ScanSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().0.feed(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
