//! Retention end to end: `pre-deploy prune`, `pin`/`unpin` and the automatic retention of `run`
//! and `backup`, against a real local store holding real backups of a real PostgreSQL around a
//! synthetic history (manifests and verification records written through the library, so a
//! month of backups takes milliseconds).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use backup_core::{
    BackupId, BackupKind, DeployInfo, MANIFEST_FORMAT_VERSION, Manifest, StoreExt, ToolInfo,
    VerificationLevel, VerificationRecord, VerificationReport,
};
use backup_objectstore::ObjectStoreStore;
use jiff::{SignedDuration, Timestamp};
use predeploy_tests::{Output, PgServer, pre_deploy, run};

const CONFIG: &str = r#"
store = "./store"

[verify]
level = "archive"

[retention]
failed-grace = "2d"

[retention.pre-deploy]
keep-last = 3

[retention.manual]
keep-within = "30d"
"#;

struct Site {
    work: tempfile::TempDir,
    url: String,
}

impl Site {
    fn new() -> Site {
        let server = PgServer::shared();
        let db = server.create_database("retention");
        server.psql(
            &db,
            "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 500) g",
        );
        let work = tempfile::tempdir().expect("workdir");
        std::fs::write(work.path().join("predeploy.toml"), CONFIG).expect("config");
        Site {
            work,
            url: server.url(&db),
        }
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn store(&self) -> PathBuf {
        self.dir().join("store")
    }

    fn cli(&self, args: &[&str]) -> Output {
        run(pre_deploy()
            .args(args)
            .env("DATABASE_URL", &self.url)
            .current_dir(self.dir()))
    }

    /// Ids of the committed backups (with a manifest), oldest first.
    fn committed(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.store().join("backups"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|d| {
                        self.store()
                            .join("backups")
                            .join(d)
                            .join("manifest.json")
                            .exists()
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// True when nothing of backup `id` is left in the store (no manifest, no data, no records).
    fn gone(&self, id: &str) -> bool {
        !self.store().join("backups").join(id).exists()
    }

    fn manifest(&self, id: &str) -> serde_json::Value {
        let path = self.store().join(format!("backups/{id}/manifest.json"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("json")
    }
}

/// Writes a synthetic committed backup of `kind` in `env`, created `days_ago` days ago, with a
/// verification record saying `verified` (none for `None`).
fn synthetic(
    store: &ObjectStoreStore,
    rt: &tokio::runtime::Runtime,
    days_ago: f64,
    env: &str,
    kind: BackupKind,
    verified: Option<bool>,
    n: u8,
) -> String {
    let at = Timestamp::now() - SignedDuration::from_secs_f64(days_ago * 86_400.0);
    let id = BackupId::from_parts(at, [0xee, kind as u8, n]);
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id.clone(),
        kind,
        environment: env.into(),
        created_at: at,
        finished_at: at,
        tool: ToolInfo::current(),
        host: "synthetic".into(),
        deploy: DeployInfo::default(),
        sources: vec![],
        expires_at: None,
        extra: serde_json::Map::new(),
    };
    rt.block_on(async {
        store.write_manifest(&manifest).await.expect("manifest");
        if let Some(passed) = verified {
            store
                .write_verification(&VerificationRecord {
                    format_version: 1,
                    backup_id: id.clone(),
                    verified_at: at + SignedDuration::from_secs(30),
                    level_requested: VerificationLevel::Archive,
                    level_reached: passed.then_some(VerificationLevel::Archive),
                    passed,
                    limited_by: None,
                    report: VerificationReport::default(),
                    tool: ToolInfo::current(),
                    host: "synthetic".into(),
                    extra: serde_json::Map::new(),
                })
                .await
                .expect("verification record");
        }
    });
    id.to_string()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn prune_keeps_what_it_should_explains_why_and_refuses_mass_deletion() {
    let site = Site::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = ObjectStoreStore::local(&site.store()).expect("local store");
    let pre = BackupKind::PreDeploy;
    // Ten nightly pre-deploy backups, 20 to 11 days ago; a failed one 15 days ago; one never
    // verified an hour ago (maybe still verifying).
    let p: Vec<String> = (0..10)
        .map(|i| {
            synthetic(
                &store,
                &rt,
                20.0 - f64::from(i),
                "default",
                pre,
                Some(true),
                i,
            )
        })
        .collect();
    let failed = synthetic(&store, &rt, 15.5, "default", pre, Some(false), 20);
    let unverified = synthetic(&store, &rt, 1.0 / 24.0, "default", pre, None, 21);
    let m: Vec<String> = [60.0, 45.0, 29.0, 10.0]
        .iter()
        .zip(30u8..)
        .map(|(d, n)| {
            synthetic(
                &store,
                &rt,
                *d,
                "default",
                BackupKind::Manual,
                Some(true),
                n,
            )
        })
        .collect();
    let scheduled: Vec<String> = (0..3)
        .map(|i| {
            synthetic(
                &store,
                &rt,
                50.0 - f64::from(i),
                "default",
                BackupKind::Scheduled,
                Some(true),
                40 + i,
            )
        })
        .collect();
    let staging: Vec<String> = (0..3)
        .map(|i| {
            synthetic(
                &store,
                &rt,
                40.0 - f64::from(i),
                "staging",
                pre,
                Some(true),
                50 + i,
            )
        })
        .collect();
    let all_before = site.committed();
    assert_eq!(all_before.len(), 22);

    // Pin the oldest pre-deploy backup.
    let out = site.cli(&["pin", &p[0], "--note", "before the 2.0 migration"]);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("pinned backup {}", p[0])),
        "{}",
        out.stdout
    );
    assert!(site.store().join(format!("pins/{}.json", p[0])).is_file());

    // A dry run prints the plan with reasons and removes nothing.
    let out = site.cli(&["prune"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("pre-deploy (default): 12 backup(s), keep 5, remove 7"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("manual (default): 4 backup(s), keep 2, remove 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("scheduled (default): 3 backup(s), keep 3, remove 0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("dry run: nothing was removed; run again with --yes to remove 9 backup(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("more than max-delete-share 50%"),
        "{}",
        out.stdout
    );
    assert_eq!(site.committed(), all_before);

    // The same plan as JSON: one decision per backup of the environment, each with its reasons.
    let out = site.cli(&["prune", "--json"]);
    out.assert_success();
    let plan = json(&out);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["over_budget"], true);
    let decisions = plan["decisions"].as_array().expect("decisions");
    assert_eq!(
        decisions.len(),
        19,
        "the staging backups are not this environment's"
    );
    let decision = |id: &str| {
        decisions
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("no decision for {id}"))
    };
    assert_eq!(decision(&p[0])["action"], "keep");
    assert_eq!(decision(&p[0])["protected"], true);
    assert_eq!(decision(&p[0])["reasons"], serde_json::json!(["pinned"]));
    assert_eq!(
        decision(&p[9])["reasons"],
        serde_json::json!(["newest verified backup of the group", "keep-last 1/3"])
    );
    assert_eq!(decision(&p[6])["action"], "remove");
    assert_eq!(
        decision(&p[6])["reasons"],
        serde_json::json!(["no keep rule matched (keep-last 3)"])
    );
    assert_eq!(decision(&failed)["action"], "remove");
    assert!(
        decision(&failed)["reasons"][0]
            .as_str()
            .expect("text")
            .contains("latest verification failed")
    );
    assert_eq!(decision(&unverified)["action"], "keep");
    assert_eq!(
        decision(&m[2])["reasons"],
        serde_json::json!(["keep-within 30d"])
    );
    assert_eq!(decision(&m[0])["action"], "remove");
    assert_eq!(decision(&scheduled[0])["action"], "keep");

    // --yes alone refuses the mass deletion: exit 2, --force named, nothing removed.
    let out = site.cli(&["prune", "--yes"]);
    out.assert_code(2);
    out.assert_stderr_contains("--force");
    out.assert_stderr_contains("remove 7 of the 12 pre-deploy backups");
    assert_eq!(site.committed(), all_before);

    // --yes --force applies it: whole backup directories go; other kinds, other environments,
    // the pinned and the protected stay.
    let out = site.cli(&["prune", "--yes", "--force"]);
    out.assert_success();
    assert!(out.stdout.contains("removed 9 backup(s)"), "{}", out.stdout);
    let removed: BTreeSet<&String> = p[1..7].iter().chain([&failed, &m[0], &m[1]]).collect();
    for id in &removed {
        assert!(site.gone(id), "{id} is removed as a whole");
    }
    let left: BTreeSet<String> = site.committed().into_iter().collect();
    let expected: BTreeSet<String> = all_before
        .iter()
        .filter(|id| !removed.contains(id))
        .cloned()
        .collect();
    assert_eq!(left, expected);
    for id in staging.iter().chain(&scheduled) {
        assert!(left.contains(id));
    }
    assert!(site.store().join(format!("pins/{}.json", p[0])).is_file());

    // Idempotent: another run removes nothing.
    let out = site.cli(&["prune", "--yes"]);
    out.assert_success();
    assert!(out.stdout.contains("removed 0 backup(s)"), "{}", out.stdout);

    // A real deploy: the new backup is verified, then retention of its group runs on its own
    // (keep-last 3 now drops p[7]) and the successful deploy is recorded.
    let out = site.cli(&["run", "--", "true"]);
    out.assert_success();
    out.assert_stderr_contains("retention removed 1 older pre-deploy backup(s)");
    assert!(site.gone(&p[7]));
    let real_1 = site
        .committed()
        .into_iter()
        .filter(|id| !all_before.contains(id))
        .collect::<Vec<_>>();
    assert_eq!(real_1.len(), 1);
    let real_1 = real_1[0].clone();
    let records: Vec<_> = std::fs::read_dir(site.store().join("deployments/default"))
        .expect("deployment records")
        .flatten()
        .collect();
    assert_eq!(records.len(), 1);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(records[0].path()).expect("read"))
            .expect("json");
    assert_eq!(record["backup_id"], real_1.as_str());

    // A real manual backup that should live 400 days: recorded in its manifest.
    let out = site.cli(&[
        "backup",
        "--kind",
        "manual",
        "--expire-in",
        "400d",
        "--json",
    ]);
    out.assert_success();
    let manual_id = json(&out)["id"].as_str().expect("id").to_owned();
    assert_eq!(site.manifest(&manual_id)["kind"], "manual");
    let expires: Timestamp = site.manifest(&manual_id)["expires_at"]
        .as_str()
        .expect("expires_at is set")
        .parse()
        .expect("a time");
    let days = expires.duration_since(Timestamp::now()).as_hours() / 24;
    assert!((399..=400).contains(&days), "{days}");
    assert!(
        !site.gone(&m[2]),
        "29 days before the newest manual backup: kept"
    );

    // A failed deploy still took a verified backup (retention drops p[8]) but records nothing.
    let out = site.cli(&["run", "--", "false"]);
    out.assert_code(1);
    assert!(site.gone(&p[8]));
    assert_eq!(
        std::fs::read_dir(site.store().join("deployments/default"))
            .expect("dir")
            .count(),
        1
    );

    // Unpinned, the oldest backup is fair game; the deployment's backup stays protected.
    let out = site.cli(&["unpin", &p[0]]);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("unpinned backup {}", p[0])),
        "{}",
        out.stdout
    );
    let out = site.cli(&["prune", "--yes", "--kind", "pre-deploy"]);
    out.assert_success();
    assert!(site.gone(&p[0]));
    assert!(!site.gone(&real_1));
    assert!(
        !site.gone(&unverified),
        "never verified, but within the forensic window"
    );

    // Flags replace the rules for the kinds named, and only those kinds are considered.
    let out = site.cli(&["prune", "--json", "--kind", "scheduled", "--keep-last", "2"]);
    out.assert_success();
    let plan = json(&out);
    let decisions = plan["decisions"].as_array().expect("decisions");
    assert_eq!(decisions.len(), 3);
    assert!(decisions.iter().all(|d| d["kind"] == "scheduled"));
    assert_eq!(
        decisions.iter().filter(|d| d["action"] == "remove").count(),
        1
    );

    // The real backup taken before all this pruning still verifies.
    site.cli(&["verify", &real_1, "--level", "archive"])
        .assert_success();
}

#[test]
fn a_retention_config_that_says_nothing_is_a_usage_error_before_any_backup() {
    let site = Site::new();
    for (config, needle) in [
        ("[retention]\nmin-verified = 2\n", "names no kind"),
        ("[retention.pre-deploy]\nkeep-last = 0\n", "keep-last = 0"),
        ("[retention.pre-deploy]\nkeep-lats = 5\n", "keep-lats"),
        ("[retention.nightly]\nkeep-last = 5\n", "nightly"),
    ] {
        let text = format!("store = \"./store\"\n{config}");
        std::fs::write(site.dir().join("predeploy.toml"), text).expect("config");
        let out = site.cli(&["prune", "--yes"]);
        out.assert_code(2);
        assert!(out.stderr.contains(needle), "{config}: {}", out.stderr);
        let out = site.cli(&["backup"]);
        out.assert_code(2);
        assert!(site.committed().is_empty(), "nothing was backed up");
    }
    // Without any retention config, prune needs rules from somewhere.
    std::fs::write(site.dir().join("predeploy.toml"), "store = \"./store\"\n").expect("config");
    let out = site.cli(&["backup", "--expire-in", "soon"]);
    out.assert_code(2);
    out.assert_stderr_contains("--expire-in");
    assert!(!site.store().exists(), "a usage error writes nothing");
    site.cli(&["backup", "--verify-level", "archive"])
        .assert_success();
    let out = site.cli(&["prune"]);
    out.assert_code(2);
    out.assert_stderr_contains("no retention rules");
}
