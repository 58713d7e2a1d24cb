//! Level 4 for pg_dump archives: restore into a scratch database and compare, exactly, the row
//! counts and schema fingerprint recorded at dump time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::restorer::{DEADLOCK_RETRY, retry_with_one_job};
use crate::{
    PgInspector, PgRestorer, PgSourceConfig, PgTools, RestoreOptions, ScratchDatabase,
    cleanup_leftovers, find_tools, parse_major,
};
use backup_core::{
    ArtifactMeta, Finding, FindingStatus, Result, SourceManifest, Store, VerificationLevel,
    VerificationReport,
};

use super::archive::toc_check;
use super::compare::{Privileges, recorded_listing, restored_findings};
use crate::DumpArchive;
use backup_verify::{StagedArchive, finding};

/// `pg_restore -j` of a test restore into the source's own server.
pub const MAX_JOBS_ON_SOURCE: u32 = 2;

/// Where test restores go.
#[derive(Debug, Clone, Default)]
pub struct RestoreTargets {
    /// Per source name: the source's own server (credentials included), used by default.
    pub by_source: BTreeMap<String, PgSourceConfig>,
    /// A dedicated scratch server for every source (`--verify-restore-url`).
    pub override_target: Option<PgSourceConfig>,
    /// `pg_restore -j`.
    pub jobs: u32,
    /// Where the decompressed archive is staged (it must be a seekable file for `-j`).
    pub temp_dir: Option<PathBuf>,
    /// Restore into a throwaway cluster started on this machine for each archive
    /// ([`LocalCluster`](crate::LocalCluster)) instead of a server named above.
    pub local_cluster: bool,
    /// The default: a throwaway local cluster when this machine has the server binaries of the
    /// backup's major version and every extension the backup needs, else the source's own
    /// server (the record says why). Ignored with `override_target` or `local_cluster`.
    pub prefer_local: bool,
}

/// The server one test restore goes into, and why.
pub(crate) struct Scratch<'a> {
    /// Its connection settings.
    pub target: &'a PgSourceConfig,
    /// A server that hosts nothing else (a local cluster, `--verify-restore-url`): it gets
    /// `[verify] jobs` in full; the source's own server at most [`MAX_JOBS_ON_SOURCE`].
    pub dedicated: bool,
    /// With a local cluster chosen by default: the source's own server, used instead when the
    /// cluster cannot install an extension the backup needs.
    pub fallback: Option<&'a PgSourceConfig>,
    /// Why the source's own server hosts the test restore although the default prefers a
    /// local cluster.
    pub why_source: Option<String>,
    /// The archive, staged while the server was chosen.
    pub staged: Staged,
}

impl RestoreTargets {
    /// The server a source's archive is restored into, if any.
    pub fn target_for(&self, source: &str) -> Option<&PgSourceConfig> {
        self.override_target
            .as_ref()
            .or_else(|| self.by_source.get(source))
    }
}

/// Levels 1–2 of one pg_dump archive, from a single read of the store: hashed and decompressed
/// into a seekable temp file for `pg_restore -j`.
pub(crate) struct Staged {
    archive: StagedArchive,
    took: Duration,
}

/// Stages `dump` (see [`Staged`]) under `temp_dir`.
///
/// # Errors
///
/// When the temp file cannot be written or the store fails (damage is a finding).
pub(crate) async fn stage(
    store: &dyn Store,
    source: &SourceManifest,
    dump: &DumpArchive<'_>,
    temp_dir: Option<&std::path::Path>,
) -> Result<Staged> {
    let started = Instant::now();
    let archive = dump.stage(store, source, temp_dir).await?;
    Ok(Staged {
        archive,
        took: started.elapsed(),
    })
}

/// Levels 1–4 for one pg_dump archive, staged by [`stage`].
pub(crate) async fn verify_dump_by_restore(
    store: &dyn Store,
    source: &SourceManifest,
    dump: &DumpArchive<'_>,
    scratch: Scratch<'_>,
    targets: &RestoreTargets,
    pg_bin_dir: Option<&std::path::Path>,
    report: &mut VerificationReport,
) -> Result<()> {
    use FindingStatus::*;
    use VerificationLevel::*;
    let a = dump.head;
    let label = format!("{}/{}", source.name, a.name);
    let skip4 = |message: String| finding(Restore, "pg-restore", source, a, Skipped, message);

    let Scratch {
        mut target,
        mut dedicated,
        fallback,
        mut why_source,
        staged,
    } = scratch;

    // 1–2: hashed, decompressed into a seekable temp file.
    report.add_time(Decompress, staged.took);
    let staged = staged.archive;
    report.findings.extend(staged.findings.iter().cloned());
    if staged.damaged {
        report.findings.push(skip4(format!(
            "{label}: not restored: the artifact is damaged"
        )));
        return Ok(());
    }

    // 3: the table of contents, from the file.
    let started = Instant::now();
    let archive_major = source
        .tool_version
        .as_deref()
        .and_then(parse_major)
        .unwrap_or(0);
    let toc_tools = find_tools(archive_major, pg_bin_dir, source.name.as_str()).await?;
    let (toc, listing) = toc_finding(&toc_tools, staged.path(), source, a).await?;
    let toc_ok = toc.status == Passed;
    report.findings.push(toc);
    report.add_time(Archive, started.elapsed());
    if !toc_ok {
        report.findings.push(skip4(format!(
            "{label}: not restored: the archive's table of contents is incomplete"
        )));
        return Ok(());
    }

    // 4: restore into a scratch database and compare.
    let started = Instant::now();
    let mut admin = PgInspector::connect(target, source.name.as_str()).await;
    // A local cluster chosen by default must be able to install what the backup needs;
    // otherwise the source's own server (which has it) hosts the test restore.
    if let (Some(source_server), Ok(local)) = (fallback, &admin) {
        let needed = toc_extensions(&listing);
        let available = local.available_extensions().await.unwrap_or_default();
        let missing: Vec<&str> = needed
            .iter()
            .filter(|e| !available.contains(*e))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            why_source = Some(format!(
                "this machine's PostgreSQL server cannot install extension(s) {}",
                missing.join(", ")
            ));
            target = source_server;
            dedicated = false;
            admin = PgInspector::connect(target, source.name.as_str()).await;
        }
    }
    let server_major = match &admin {
        Ok(i) => i.server_version().await.map(|(_, m)| m).unwrap_or(0),
        Err(_) => 0,
    };
    let tools = find_tools(
        archive_major.max(server_major),
        pg_bin_dir,
        source.name.as_str(),
    )
    .await?;
    let on_source = why_source
        .as_deref()
        .map(|why| format!(" (the source's own server: {why})"))
        .unwrap_or_default();
    if let Err(e) = admin {
        report
            .findings
            .push(skip4(format!("{label}: no scratch server: {e}")));
        return Ok(());
    }
    if let Err(e) = cleanup_leftovers(target).await {
        tracing::debug!("could not look for leftover scratch databases: {e}");
    }
    // A test restore must not fill the server's disk: when its data directory is on this
    // machine, the scratch database (about twice the raw dump, with indexes) must fit.
    if let Ok(admin) = &admin
        && let Some(dir) = admin.local_data_directory().await
        && let Some(free) = backup_core::disk::free_bytes(&dir)
    {
        let needed = dump.raw_size().saturating_mul(2);
        if free < needed {
            report.findings.push(skip4(format!(
                "{label}: not restored: about {needed} bytes needed for the scratch database, {free} free under {} on {}",
                dir.display(),
                target.location()
            )));
            return Ok(());
        }
    }
    let mut scratch = match ScratchDatabase::create(target, source.name.as_str()).await {
        Ok(s) => s,
        Err(e) => {
            report.findings.push(skip4(format!("{label}: {e}")));
            return Ok(());
        }
    };
    let privileges = match &admin {
        Ok(admin) => privileges_plan(store, admin, source, server_major).await,
        Err(_) => Privileges::NotRestored("no scratch server".to_owned()),
    };
    // On the source's own server (production, by default) a test restore takes at most two
    // backends; a dedicated scratch server (`--verify-restore-url`) gets `[verify] jobs`.
    let jobs = if dedicated {
        targets.jobs.max(1)
    } else {
        targets.jobs.clamp(1, MAX_JOBS_ON_SOURCE)
    };
    let mut options = RestoreOptions {
        jobs,
        without_owners_and_privileges: privileges != Privileges::Restored,
        continue_past_errors: true,
    };
    let mut restored = PgRestorer::new(tools.clone())
        .restore_file(staged.path(), &scratch.config(), &options)
        .await;
    // Start over in a fresh scratch database with one job rather than refuse a good backup.
    if matches!(&restored, Err(m) if retry_with_one_job(options.jobs, m)) {
        tracing::warn!("{label}: {DEADLOCK_RETRY}");
        if let Err(e) = scratch.drop_now().await {
            tracing::warn!("{e}");
        }
        scratch = match ScratchDatabase::create(target, source.name.as_str()).await {
            Ok(s) => s,
            Err(e) => {
                report.findings.push(skip4(format!("{label}: {e}")));
                return Ok(());
            }
        };
        options.jobs = 1;
        restored = PgRestorer::new(tools.clone())
            .restore_file(staged.path(), &scratch.config(), &options)
            .await;
    }
    match restored {
        Err(message) => {
            report.findings.push(finding(
                Restore,
                "pg-restore",
                source,
                a,
                Failed,
                format!(
                    "{label}: the test restore into {} on {}{on_source} failed: {message}",
                    scratch.name(),
                    target.location()
                ),
            ));
        }
        Ok(()) => {
            let how = if options.without_owners_and_privileges {
                "without owners and privileges"
            } else {
                "with owners and privileges"
            };
            report.findings.push(finding(
                Restore,
                "pg-restore",
                source,
                a,
                Passed,
                format!(
                    "{label}: restored into scratch database {} on {}{on_source} with {} ({how})",
                    scratch.name(),
                    target.location(),
                    tools.version
                ),
            ));
            report
                .findings
                .extend(restored_findings(store, &scratch.config(), source, a, &privileges).await);
        }
    }
    if let Err(e) = scratch.drop_now().await {
        tracing::warn!("{e}");
    }
    report.add_time(Restore, started.elapsed());
    Ok(())
}

/// Whether the test restore can keep owners and privileges, so that they are proven too: the
/// scratch server must have every role the backup names, a superuser to give objects to them, and
/// the source's major version (a newer one renders default privileges differently).
async fn privileges_plan(
    store: &dyn Store,
    admin: &PgInspector,
    source: &SourceManifest,
    server_major: u32,
) -> Privileges {
    let not = |why: String| Privileges::NotRestored(why);
    let listing = match recorded_listing(store, source).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return not(
                "the backup records no schema listing (taken by an older version)".to_owned(),
            );
        }
        Err(e) => return not(e),
    };
    let source_major = source
        .server_version
        .as_deref()
        .and_then(parse_major)
        .unwrap_or(0);
    if source_major != server_major {
        return not(format!(
            "the scratch server runs PostgreSQL {server_major}, the backup is of {source_major}"
        ));
    }
    match admin.privileges_and_size().await {
        Ok((true, _)) => {}
        Ok((false, _)) => return not("the scratch server's user is not a superuser".to_owned()),
        Err(e) => return not(e.to_string()),
    }
    match admin.missing_roles(&listing.roles()).await {
        Ok(missing) if missing.is_empty() => Privileges::Restored,
        Ok(missing) => not(format!(
            "the scratch server lacks the role(s) {}",
            missing.join(", ")
        )),
        Err(e) => not(e.to_string()),
    }
}

/// Level 3 for a staged archive: `pg_restore --list` with `tools`, checked against the tables the
/// manifest records. Returns the finding and the listing (empty when pg_restore failed).
///
/// # Errors
///
/// When pg_restore cannot be started.
pub async fn toc_finding(
    tools: &PgTools,
    archive: &std::path::Path,
    source: &SourceManifest,
    a: &ArtifactMeta,
) -> Result<(Finding, String)> {
    let label = format!("{}/{}", source.name, a.name);
    let listing = tokio::process::Command::new(tools.pg_restore())
        .arg("--list")
        .arg(archive)
        .output()
        .await
        .map_err(|e| backup_core::Error::io("cannot start pg_restore --list", e))?;
    if listing.status.success() {
        let text = String::from_utf8_lossy(&listing.stdout).into_owned();
        Ok((toc_check(&text, source, a), text))
    } else {
        Ok((
            finding(
                VerificationLevel::Archive,
                "pg-restore-toc",
                source,
                a,
                FindingStatus::Failed,
                format!(
                    "{label}: pg_restore --list failed: {}",
                    String::from_utf8_lossy(&listing.stderr).trim()
                ),
            ),
            String::new(),
        ))
    }
}

/// The extensions a `pg_restore --list` listing creates (`… EXTENSION - pgcrypto …`).
pub fn toc_extensions(listing: &str) -> Vec<String> {
    let mut out: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip(3);
            (words.next() == Some("EXTENSION") && words.next() == Some("-"))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_read_from_the_listing() {
        let listing = "; Archive created at 2026-11-22\n;     dbname: app\n2; 3079 16385 EXTENSION - pgcrypto \n3; 0 0 COMMENT - EXTENSION pgcrypto \n215; 1259 16400 TABLE public t postgres\n";
        assert_eq!(toc_extensions(listing), vec!["pgcrypto".to_owned()]);
    }

    #[test]
    fn extensions_are_listed_once_sorted_and_only_from_their_own_entries() {
        let listing = "; 1; 3079 EXTENSION - commented_out\n\
            10; 3079 16390 EXTENSION - postgis \n\
            11; 0 0 COMMENT - EXTENSION postgis \n\
            12; 3079 16385 EXTENSION - hstore \n\
            13; 3079 16386 EXTENSION - hstore \n\
            14; 1259 16400 TABLE public EXTENSION app\n\
            15; 1259 16401 TABLE - hstore_like app\n";
        assert_eq!(
            toc_extensions(listing),
            vec!["hstore".to_owned(), "postgis".to_owned()]
        );
        assert!(toc_extensions("").is_empty());
    }

    #[test]
    fn a_dedicated_scratch_server_wins_over_the_source_s_own() {
        let config =
            |url: &str| PgSourceConfig::from_url(url, &|_: &str| None::<String>).expect("config");
        let mut targets = RestoreTargets::default();
        assert!(targets.target_for("db").is_none());
        targets
            .by_source
            .insert("db".into(), config("postgres://app@prod.example/app"));
        assert_eq!(
            targets.target_for("db").map(PgSourceConfig::location),
            Some(config("postgres://app@prod.example/app").location())
        );
        assert!(targets.target_for("other").is_none());
        targets.override_target = Some(config("postgres://scratch@scratch.example/postgres"));
        for name in ["db", "other"] {
            assert_eq!(
                targets.target_for(name).map(PgSourceConfig::location),
                Some(config("postgres://scratch@scratch.example/postgres").location())
            );
        }
    }
}
