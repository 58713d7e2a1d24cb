//! [`MysqlArchiveVerifier`]: levels 1–3 for the dumps of MySQL/MariaDB sources, from one read
//! of each artifact.

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

use crate::scan::{DumpScanner, DumpSummary};
use crate::snapshotter::{COUNTS_DUMP_SNAPSHOT, DUMP_FORMAT, SOURCE_KIND};

/// Problems listed in one finding before "and N more".
const LISTED: usize = 5;

/// Verifies MySQL/MariaDB dumps: sha256 and size (1), zstd frames to the end (2), and a full
/// streaming scan of the SQL (3): the `-- Dump completed` trailer, no statement cut short,
/// and every counted table created with its rows — exactly the counted number when the counts
/// come from the dump's snapshot, at least one row for non-empty tables otherwise.
#[derive(Debug, Clone, Default)]
pub struct MysqlArchiveVerifier;

#[async_trait]
impl Verifier for MysqlArchiveVerifier {
    fn name(&self) -> &str {
        "mysql-archive"
    }

    fn claims(&self, source: &SourceManifest) -> bool {
        source.kind == SOURCE_KIND
    }

    fn max_level(&self) -> VerificationLevel {
        VerificationLevel::Archive
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
            report.findings.extend(findings);
            report.add_time(top, started.elapsed());
        }
        Ok(report)
    }
}

async fn verify_dump(
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
