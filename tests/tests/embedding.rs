//! The library as another Rust tool embeds it: a gate built from code (no config file) over a
//! real PostgreSQL, the deploy as a closure, and a kind of source registered from outside the
//! product's crates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::{
    ArtifactSpec, Backend, DynSnapshotter, PreflightReport, SnapshotContext, Snapshotter,
    SourceManifest, SourceName, SourceSpec, VerificationLevel,
};
use backup_objectstore::ObjectStoreStore;
use deploy_gate::{BackupKind, BackupRequest, DeployExit, Gate, GateError, RunEnd, RunRequest};
use predeploy_tests::pg::PgServer;
use predeploy_tests::restoring::small_database;

fn request() -> BackupRequest {
    BackupRequest {
        kind: BackupKind::PreDeploy,
        deploy: deploy_gate::DeployInfo {
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            ..Default::default()
        },
    }
}

fn run_request(backup: &BackupRequest) -> RunRequest<'_> {
    RunRequest {
        backup,
        retention: None,
        workdir: None,
        rollback: None,
        fresh: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_built_from_code_restores_before_the_deploy_closure_runs() {
    let server = PgServer::shared();
    let db = small_database(server, "embed");
    let dir = tempfile::tempdir().expect("store");
    let gate = Gate::builder(ObjectStoreStore::local(dir.path()).expect("store"))
        .environment("staging")
        .source("db", server.url(&db))
        .expect("source")
        .build()
        .expect("gate");
    let backup = request();
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let report = gate
        .run(
            &run_request(&backup),
            |ctx| {
                let seen = seen.clone();
                async move {
                    seen.lock().expect("env").extend(ctx.env.clone());
                    Ok(DeployExit::with_code(0))
                }
            },
            &(),
        )
        .await
        .expect("run");
    assert_eq!(report.exit_code(), 0);
    // "Verified" means restored: the builder's default is level 4, reached.
    assert_eq!(
        report.backup.verification.level_reached,
        Some(VerificationLevel::Restore),
        "{:?}",
        report.backup.verification.limited_by
    );
    let id = report.backup.manifest.id.to_string();
    let env = seen.lock().expect("env").clone();
    assert!(
        env.contains(&("PREDEPLOY_BACKUP_ID".into(), id.clone())),
        "{env:?}"
    );
    assert!(
        env.contains(&("PREDEPLOY_ENV".into(), "staging".into())),
        "{env:?}"
    );
    let RunEnd::Deployed(d) = &report.end else {
        panic!("the deploy ran: {:?}", report.end);
    };
    assert!(d.recorded, "a successful deploy is recorded for retention");
    // The lock was released: the next run takes it.
    let failed = gate
        .run(
            &run_request(&backup),
            |_| async { Ok(DeployExit::with_code(3)) },
            &(),
        )
        .await
        .expect("second run");
    assert_eq!(failed.exit_code(), 3, "a failed deploy's own code");
    let RunEnd::Deployed(d) = &failed.end else {
        panic!("the deploy ran");
    };
    assert!(!d.recorded, "a failed deploy is not recorded");
    let listed: Vec<String> = gate
        .commands()
        .list()
        .await
        .expect("list")
        .iter()
        .map(|b| b.manifest.id.to_string())
        .collect();
    assert_eq!(listed.len(), 2, "one backup per run: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_refuses_the_run_and_the_deploy_never_starts() {
    let server = PgServer::shared();
    let db = small_database(server, "embedlock");
    let dir = tempfile::tempdir().expect("store");
    let build = || {
        Gate::builder(ObjectStoreStore::local(dir.path()).expect("store"))
            .source("db", server.url(&db))
            .expect("source")
            .build()
            .expect("gate")
    };
    let (holder, gate) = (build(), build());
    let guard = holder.scope().lock("run", None).await.expect("lock");
    let ran = AtomicBool::new(false);
    let backup = request();
    let refused = gate
        .run(
            &run_request(&backup),
            |_| async {
                ran.store(true, Ordering::SeqCst);
                Ok(DeployExit::with_code(0))
            },
            &(),
        )
        .await
        .expect_err("the lock is held");
    assert!(matches!(refused, GateError::LockHeld { .. }), "{refused}");
    assert_eq!(refused.exit_code().code(), 6);
    assert!(!ran.load(Ordering::SeqCst), "the deploy did not run");
    holder.scope().unlock(guard).await;
    assert!(
        gate.commands().list().await.expect("list").is_empty(),
        "no backup was taken"
    );
}

/// A kind of source the product does not know: one local file (`onefile:///path`).
#[derive(Debug)]
struct OneFileBackend;

#[derive(Debug)]
struct OneFile {
    name: SourceName,
    path: std::path::PathBuf,
}

impl Backend for OneFileBackend {
    fn name(&self) -> &'static str {
        "one file"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["onefile://"]
    }
    fn kinds(&self) -> &'static [&'static str] {
        &["onefile"]
    }
    fn snapshotter(&self, spec: &SourceSpec) -> backup_core::Result<DynSnapshotter> {
        let path = spec.url.trim_start_matches("onefile://").into();
        Ok(Arc::new(OneFile {
            name: spec.name.clone(),
            path,
        }))
    }
}

#[async_trait]
impl Snapshotter for OneFile {
    fn source_name(&self) -> &SourceName {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "onefile"
    }
    fn location(&self) -> String {
        self.path.display().to_string()
    }
    async fn preflight(&self) -> backup_core::Result<PreflightReport> {
        let meta = tokio::fs::metadata(&self.path).await.map_err(|e| {
            backup_core::Error::SourceUnavailable {
                source_name: self.name.to_string(),
                message: format!("cannot read {}: {e}", self.path.display()),
            }
        })?;
        Ok(PreflightReport {
            estimated_bytes: Some(meta.len()),
            ..Default::default()
        })
    }
    async fn snapshot(&self, ctx: SnapshotContext<'_>) -> backup_core::Result<SourceManifest> {
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| backup_core::Error::io("open", e))?;
        let spec = ArtifactSpec {
            source: &self.name,
            file: "file.zst",
            format: "raw",
        };
        let artifact = ctx.write_artifact(spec, file).await?;
        Ok(SourceManifest {
            name: self.name.clone(),
            kind: self.kind().into(),
            location: self.location(),
            server_version: None,
            tool_version: None,
            artifacts: vec![artifact],
            stats: Default::default(),
            notes: vec![],
            extra: Default::default(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_from_outside_the_product_is_backed_up_and_checked_with_no_change_to_the_gate() {
    let dir = tempfile::tempdir().expect("dirs");
    let file = dir.path().join("settings.json");
    std::fs::write(&file, br#"{"feature": true}"#).expect("file");
    let store_dir = dir.path().join("store");
    let gate = Gate::builder(ObjectStoreStore::local(&store_dir).expect("store"))
        .backend(Arc::new(OneFileBackend))
        .source("settings", format!("onefile://{}", file.display()))
        .expect("source")
        // No verifier knows this format: the generic levels 1–2 are the proof.
        .verify_level(VerificationLevel::Decompress)
        .build()
        .expect("gate");
    let backup = request();
    let report = gate
        .run(
            &run_request(&backup),
            |_| async { Ok(DeployExit::with_code(0)) },
            &(),
        )
        .await
        .expect("run");
    assert_eq!(report.exit_code(), 0);
    let v = &report.backup.verification;
    assert_eq!(v.level_reached, Some(VerificationLevel::Decompress));
    assert!(
        v.report
            .findings
            .iter()
            .any(|f| f.check == "zstd-frames" && f.source.as_deref() == Some("settings")),
        "{:?}",
        v.report.findings
    );
    // The stored bytes are the file's, and damage is caught by the same generic rungs.
    let artifact = &report.backup.manifest.sources[0].artifacts[0];
    assert_eq!(artifact.raw_size, 17);
    let stored = store_dir.join(&artifact.key);
    let mut bytes = std::fs::read(&stored).expect("stored");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, bytes).expect("damage");
    let e = gate
        .backups()
        .verify_stored(Some(report.backup.manifest.id.as_str()), false, None)
        .await
        .expect_err("damaged");
    assert_eq!(e.exit_code().code(), 4, "{e}");
    assert!(e.to_string().contains("settings/file.zst"), "{e}");
}
