//! `pre-deploy doctor` against real stores: what each probe finds, and exit 5 when the store
//! is unusable. `run` uses the same probes in preflight.

use predeploy_tests::s3::all_servers;
use predeploy_tests::{GarageServer, MotoServer, PgServer, S3Server, pre_deploy, run};

fn doctor_json(
    store: &str,
    env: &[(&'static str, String)],
    extra: &[&str],
) -> (i32, serde_json::Value) {
    let work = tempfile::tempdir().expect("workdir");
    let out = run(pre_deploy()
        .args(["--store", store, "--json"])
        .args(extra)
        .arg("doctor")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(work.path()));
    let v = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json prints JSON ({e}): {}\n{}",
            out.stdout, out.stderr
        )
    });
    (out.code, v)
}

fn probe<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["report"]["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no probe {name}: {report}"))
}

/// moto honours create-only writes, Garage does not: doctor tells them apart and says what the
/// tool does about it; every other probe passes on both, and a PostgreSQL source is probed too.
#[test]
fn doctor_tells_the_servers_apart_and_passes_on_both() {
    let pg = PgServer::shared();
    let db = pg.create_database("doctor");
    for (server, honoured) in [
        (MotoServer::shared() as &dyn S3Server, true),
        (GarageServer::shared() as &dyn S3Server, false),
    ] {
        let bucket = server.create_bucket("doctor");
        let source = format!("db={}", pg.url(&db));
        let (code, report) = doctor_json(
            &server.url(&bucket, "app"),
            &server.env(),
            &["--source", &source],
        );
        assert_eq!(code, 0, "{}: {report}", server.kind());
        assert_eq!(report["ok"], true);
        let create_only = probe(&report, "create-only writes");
        if honoured {
            assert_eq!(
                create_only["status"],
                "ok",
                "{}: {create_only}",
                server.kind()
            );
        } else {
            assert_eq!(
                create_only["status"],
                "warn",
                "{}: {create_only}",
                server.kind()
            );
            assert!(
                create_only["action"]
                    .as_str()
                    .is_some_and(|a| a.contains("lock does not depend on it")),
                "{create_only}"
            );
        }
        for name in [
            "write",
            "read",
            "list",
            "delete",
            "multipart upload",
            "clock skew",
            "lock",
        ] {
            assert_eq!(
                probe(&report, name)["status"],
                "ok",
                "{}: {name}: {report}",
                server.kind()
            );
        }
        let pre = probe(&report, "preflight");
        assert_eq!(pre["status"], "ok", "{pre}");
        assert!(
            pre["found"]
                .as_str()
                .is_some_and(|f| f.contains("postgres")),
            "{pre}"
        );
        assert!(
            !report.to_string().contains(server.secret_key()),
            "no secret in the report"
        );
    }
}

/// A missing bucket and wrong credentials fail the write probe with exit 5 and say what to do;
/// `run` refuses in preflight with the same exit code, and the deploy command does not run.
#[test]
fn doctor_and_run_refuse_an_unusable_store_with_exit_5() {
    for server in all_servers() {
        let (code, report) = doctor_json(
            &server.url("no-such-bucket-here", "app"),
            &server.env(),
            &[],
        );
        assert_eq!(code, 5, "{}: {report}", server.kind());
        let write = probe(&report, "write");
        assert_eq!(write["status"], "fail");
        assert!(
            write["found"]
                .as_str()
                .is_some_and(|f| f.contains("bucket does not exist")),
            "{}: {write}",
            server.kind()
        );
    }
    let garage = GarageServer::shared();
    let bucket = garage.create_bucket("wrongkey");
    let env = vec![
        ("AWS_ACCESS_KEY_ID", garage.access_key().to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "definitely-wrong-secret".to_owned(),
        ),
    ];
    let (code, report) = doctor_json(&garage.url(&bucket, ""), &env, &[]);
    assert_eq!(code, 5, "{report}");
    assert!(
        !report.to_string().contains("definitely-wrong-secret"),
        "{report}"
    );

    let pg = PgServer::shared();
    let db = pg.create_database("doctorrun");
    let work = tempfile::tempdir().expect("workdir");
    let marker = work.path().join("deployed");
    let out = run(pre_deploy()
        .args([
            "--store",
            &garage.url(&bucket, ""),
            "--source",
            &format!("db={}", pg.url(&db)),
        ])
        .args(["run", "--", "touch", &marker.display().to_string()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(work.path()));
    out.assert_code(5);
    out.assert_stderr_contains("REFUSED (exit 5)");
    assert!(
        !out.stderr.contains("definitely-wrong-secret"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists(), "the deploy command did not run");
}
