//! `--metrics-file` (issue 15, item 3): the node_exporter textfile after `backup`, against a
//! real PostgreSQL. The values come from the store, so a failed run keeps the last success, and
//! a run for another environment keeps this one's metrics.

use std::collections::BTreeMap;
use std::path::Path;

use predeploy_tests::{PgServer, pre_deploy, run, unused_port};

/// The samples of an exposition-format text, `name{labels}` → value; panics on any line that
/// is not a comment, a blank or `name{labels} value`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line:?}"));
        let name = series.split('{').next().unwrap_or("");
        assert!(
            name.starts_with("predeploy_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "name: {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("labels: {line:?}"));
            for pair in inner.split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                assert!(
                    !k.is_empty() && v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "label: {line:?}"
                );
            }
        }
        assert!(
            out.insert(series.to_owned(), value).is_none(),
            "twice: {line:?}"
        );
    }
    out
}

fn now() -> f64 {
    jiff::Timestamp::now().as_second() as f64
}

fn tool(dir: &Path, source: &str, env: &str) -> std::process::Command {
    let mut cmd = pre_deploy();
    cmd.current_dir(dir)
        .env(
            "PREDEPLOY_METRICS_FILE",
            dir.join("textfile/predeploy.prom"),
        )
        .args(["--store", "store", "--env", env, "--source"])
        .arg(format!("db={source}"));
    cmd
}

#[test]
fn backup_writes_the_textfile_from_the_store_and_a_failure_keeps_the_last_success() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let textfile = dir.path().join("textfile");
    std::fs::create_dir(&textfile).expect("textfile dir");
    let prom = textfile.join("predeploy.prom");
    let db = server.create_database("metrics");
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g",
    );
    let url = server.url(&db);

    let start = now();
    run(tool(dir.path(), &url, "production").args(["backup", "--verify-level", "restore"]))
        .assert_success();
    let end = now();
    let text = std::fs::read_to_string(&prom).expect("the metrics file exists");
    for family in [
        "last_success_timestamp_seconds",
        "last_verified_timestamp_seconds",
        "backup_duration_seconds",
        "backup_size_bytes",
        "backup_raw_bytes",
        "verification_level",
        "last_run_success",
        "last_exit_code",
    ] {
        assert!(
            text.contains(&format!("# HELP predeploy_{family} "))
                && text.contains(&format!("# TYPE predeploy_{family} gauge")),
            "{family}:\n{text}"
        );
    }
    let m = samples(&text);
    let base = r#"{project="",environment="production"}"#;
    let get = |m: &BTreeMap<String, f64>, name: &str, labels: &str| {
        *m.get(&format!("predeploy_{name}{labels}"))
            .unwrap_or_else(|| panic!("no {name}{labels} in\n{m:#?}"))
    };
    let shown = run(tool(dir.path(), &url, "production").args(["show", "last", "--json"]));
    shown.assert_success();
    let manifest = &shown.json()["manifest"];
    let stored: u64 = manifest["sources"][0]["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["stored_size"].as_u64().expect("stored_size"))
        .sum();
    let with_source = r#"{project="",environment="production",source="db"}"#;
    assert_eq!(get(&m, "backup_size_bytes", with_source), stored as f64);
    assert!(get(&m, "backup_raw_bytes", with_source) > 0.0);
    assert_eq!(get(&m, "verification_level", base), 4.0);
    assert_eq!(get(&m, "last_run_success", base), 1.0);
    assert_eq!(get(&m, "last_exit_code", base), 0.0);
    let success = get(&m, "last_success_timestamp_seconds", base);
    assert!(
        (start - 1.0..=end + 1.0).contains(&success),
        "{start} <= {success} <= {end}"
    );
    let verified = get(&m, "last_verified_timestamp_seconds", base);
    assert!((success..=end + 1.0).contains(&verified), "{verified}");

    // An unreachable source: exit 5, recorded as the last run; the last success stays.
    let gone = format!(
        "postgres://nobody@127.0.0.1:{}/gone?connect_timeout=2",
        unused_port()
    );
    run(tool(dir.path(), &gone, "production").arg("backup")).assert_code(5);
    let m = samples(&std::fs::read_to_string(&prom).expect("metrics"));
    assert_eq!(get(&m, "last_run_success", base), 0.0);
    assert_eq!(get(&m, "last_exit_code", base), 5.0);
    assert_eq!(get(&m, "last_success_timestamp_seconds", base), success);
    assert_eq!(get(&m, "verification_level", base), 4.0);

    // A run for another environment keeps production's metrics.
    run(tool(dir.path(), &gone, "staging").arg("backup")).assert_code(5);
    let m = samples(&std::fs::read_to_string(&prom).expect("metrics"));
    assert_eq!(get(&m, "last_success_timestamp_seconds", base), success);
    assert_eq!(get(&m, "last_exit_code", base), 5.0);
    let staging = r#"{project="",environment="staging"}"#;
    assert_eq!(get(&m, "last_exit_code", staging), 5.0);
    assert!(
        !m.contains_key(&format!(
            "predeploy_last_success_timestamp_seconds{staging}"
        )),
        "staging never succeeded"
    );

    // `verify` and `status` write the file too: the run for production passes again.
    run(tool(dir.path(), &url, "production").args(["verify", "last", "--level", "archive"]))
        .assert_success();
    let m = samples(&std::fs::read_to_string(&prom).expect("metrics"));
    assert_eq!(get(&m, "last_run_success", base), 1.0);
    assert!(get(&m, "last_verified_timestamp_seconds", base) > verified - 1.0);
    assert_eq!(
        get(&m, "verification_level", base),
        3.0,
        "the newest verification counts"
    );
    run(tool(dir.path(), &gone, "production").args(["status", "--max-age", "1h"])).assert_success();
    let m = samples(&std::fs::read_to_string(&prom).expect("metrics"));
    assert_eq!(get(&m, "last_exit_code", base), 0.0);
    assert_eq!(get(&m, "last_exit_code", staging), 5.0, "kept");

    let left: Vec<String> = std::fs::read_dir(&textfile)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["predeploy.prom"], "no temporary file is left");
}
