//! Output for people and machines (issue 15, item 4), against a real PostgreSQL: the NDJSON event
//! stream, timestamped plain lines off a terminal, progress bars and `NO_COLOR` on a
//! pseudo-terminal, the GitHub Actions job summary and annotation, and one JSON document from
//! every command with `--json`.

use std::collections::BTreeMap;
use std::path::Path;

use predeploy_tests::{PgServer, pre_deploy, run, unused_port};
use serde_json::Value;

fn tool(dir: &Path, url: &str) -> std::process::Command {
    let mut cmd = pre_deploy();
    cmd.current_dir(dir)
        .args(["--store", "store", "--source"])
        .arg(format!("db={url}"));
    cmd
}

fn database(server: &PgServer, prefix: &str) -> String {
    let db = server.create_database(prefix);
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
    );
    db
}

/// Every stdout line as JSON; panics on a line that is not.
fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[test]
fn events_ndjson_streams_every_stage_with_bytes_and_ends_with_the_result() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let db = database(server, "events");
    let out = run(tool(dir.path(), &server.url(&db)).args([
        "--events",
        "ndjson",
        "backup",
        "--verify-level",
        "restore",
    ]));
    out.assert_success();
    let evs = events(&out.stdout);

    // Every stage that starts ends, once, after its start.
    let mut open: BTreeMap<u64, Value> = BTreeMap::new();
    let mut ended: Vec<(Value, Value)> = Vec::new();
    for e in &evs[..evs.len() - 1] {
        let id = e["id"].as_u64().unwrap_or_else(|| panic!("id: {e}"));
        match e["event"].as_str() {
            Some("stage_start") => assert!(open.insert(id, e.clone()).is_none(), "{e}"),
            Some("stage_end") => {
                let start = open
                    .remove(&id)
                    .unwrap_or_else(|| panic!("end before start: {e}"));
                ended.push((start, e.clone()));
            }
            other => panic!("unexpected event {other:?} before the result: {e}"),
        }
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    assert!(open.is_empty(), "stages never ended: {open:?}");
    let stages: Vec<&str> = ended
        .iter()
        .map(|(_, e)| e["stage"].as_str().unwrap_or(""))
        .collect();
    for stage in ["backup", "dump", "verify", "read"] {
        assert!(stages.contains(&stage), "no {stage} stage in {stages:?}");
    }
    assert!(ended.iter().all(|(_, e)| e["ok"] == true), "{ended:?}");

    // The dump of the database moved its bytes at a rate; a read of it knew its size.
    let (_, dump) = ended
        .iter()
        .find(|(_, e)| e["stage"] == "dump" && e["subject"] == "db/dump.pgc.zst")
        .unwrap_or_else(|| panic!("no dump of db/dump.pgc.zst: {stages:?}"));
    assert!(
        dump["bytes"].as_u64().is_some_and(|b| b > 100_000),
        "{dump}"
    );
    assert!(
        dump["bytes_per_second"].as_f64().is_some_and(|r| r > 0.0),
        "{dump}"
    );
    let (read_start, read_end) = ended
        .iter()
        .find(|(s, _)| {
            s["stage"] == "read"
                && s["subject"]
                    .as_str()
                    .is_some_and(|k| k.ends_with("db/dump.pgc.zst"))
        })
        .expect("a read of the dump");
    assert_eq!(
        read_start["total_bytes"], read_end["bytes"],
        "{read_start} {read_end}"
    );

    let result = evs.last().expect("events");
    assert_eq!(result["event"], "result", "{result}");
    assert_eq!(result["result"]["ok"], true, "{result}");
    assert_eq!(result["result"]["verification"]["level_reached"], "restore");
    let id = result["result"]["id"].as_str().expect("id");
    let (_, backup) = ended
        .iter()
        .find(|(_, e)| e["stage"] == "backup")
        .expect("backup");
    assert_eq!(backup["subject"], id);
}

#[test]
fn events_ndjson_of_a_refused_backup_ends_with_the_error_as_result() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("postgres://nobody@127.0.0.1:{}/none", unused_port());
    let out = run(tool(dir.path(), &url).args(["--events", "ndjson", "backup"]));
    out.assert_code(5);
    let evs = events(&out.stdout);
    let result = evs.last().expect("a result line");
    assert_eq!(result["event"], "result", "{}", out.stdout);
    assert_eq!(result["result"]["ok"], false);
    assert_eq!(result["result"]["exit_code"], 5);
    assert!(
        result["result"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1")),
        "{result}"
    );
}

#[test]
fn off_a_terminal_log_lines_carry_the_time_and_no_colour_and_long_stages_report_as_they_run() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let db = database(server, "plain");
    let log = dir.path().join("stderr.log");
    // The deploy command ends only once pre-deploy reported it as running: the periodic line
    // is then proven without any timing assumption. (`[g]` keeps the pattern from matching the
    // log line that quotes this very command.)
    let deploy = format!(
        "until grep -q 'deploy .*: runnin[g] for' {}; do sleep 0.05; done",
        log.display()
    );
    let status = tool(dir.path(), &server.url(&db))
        .env("PREDEPLOY_PROGRESS_INTERVAL", "200ms")
        .args([
            "-v",
            "run",
            "--verify-level",
            "archive",
            "--",
            "sh",
            "-c",
            &deploy,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .status()
        .expect("run");
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes off a terminal:\n{stderr}"
    );
    let info = stderr
        .lines()
        .find(|l| l.contains("running the deploy command"))
        .unwrap_or_else(|| panic!("no deploy log line:\n{stderr}"));
    assert!(starts_with_time(info), "no timestamp: {info:?}");
    let end = stderr
        .lines()
        .find(|l| l.contains(" deploy ") && l.contains(": done in "))
        .unwrap_or_else(|| panic!("no end line of the deploy stage:\n{stderr}"));
    assert!(starts_with_time(end), "{end:?}");
}

/// `2026-12-02T20:31:59Z …`
fn starts_with_time(line: &str) -> bool {
    let t: Vec<char> = line.chars().take(21).collect();
    t.len() == 21
        && t[4] == '-'
        && t[10] == 'T'
        && t[19] == 'Z'
        && t[20] == ' '
        && t.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 20) || c.is_ascii_digit())
}

/// Runs `pre-deploy ARGS` under a pseudo-terminal (`script` from util-linux) and returns what the
/// terminal showed.
fn on_a_terminal(dir: &Path, args: &str, no_color: bool) -> String {
    let typescript = dir.join("typescript");
    // `script` runs the binary; pre_deploy() gives the cleaned environment it should see.
    let clean = pre_deploy();
    let mut script = std::process::Command::new("script");
    for (k, v) in clean.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    script
        .current_dir(dir)
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} {args}",
            predeploy_tests::cli::binary().display()
        ))
        .arg(&typescript)
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "120");
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let out = script.output().expect("script (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&std::fs::read(&typescript).expect("typescript")).into_owned()
}

/// An SGR (colour) escape sequence: ESC [ digits/semicolons m.
fn has_colour(s: &str) -> bool {
    s.match_indices("\u{1b}[").any(|(i, _)| {
        s[i + 2..]
            .chars()
            .take_while(|c| *c != 'm')
            .all(|c| c.is_ascii_digit() || c == ';')
            && s[i + 2..].contains('m')
            && s[i + 2..].find('m').is_some_and(|m| m > 0 && m < 12)
    })
}

#[test]
fn a_terminal_gets_progress_bars_and_colour_unless_no_color_is_set() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let db = server.create_database("bars");
    // Big enough that the dump is still running when the bar is first drawn (200 ms ticks are
    // forced at start, so even a fast dump draws once).
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 400000) g",
    );
    let args = format!(
        "-v --store store --source db={} --progress bar backup --verify-level decompress",
        server.url(&db)
    );
    let coloured = on_a_terminal(dir.path(), &args, false);
    assert!(
        coloured.contains("dump db/dump.pgc.zst"),
        "no bar:\n{coloured}"
    );
    assert!(coloured.contains("/s"), "no rate in the bar:\n{coloured}");
    assert!(
        has_colour(&coloured),
        "no colour on a terminal:\n{coloured:?}"
    );

    let plain = on_a_terminal(dir.path(), &args, true);
    assert!(plain.contains("dump db/dump.pgc.zst"), "no bar:\n{plain}");
    assert!(!has_colour(&plain), "colour despite NO_COLOR:\n{plain:?}");
}

#[test]
fn github_actions_gets_a_job_summary_and_an_error_annotation() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let db = database(server, "gha");
    let summary = dir.path().join("step_summary.md");
    let gha = |cmd: &mut std::process::Command| {
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary);
    };

    let mut ok = tool(dir.path(), &server.url(&db));
    gha(&mut ok);
    let out = run(ok.args(["--json", "backup", "--verify-level", "restore"]));
    out.assert_success();
    let id = out.json()["id"].as_str().expect("id").to_owned();
    let md = std::fs::read_to_string(&summary).expect("summary written");
    assert!(md.contains("### pre-deploy backup: passed"), "{md}");
    assert!(
        md.contains(&format!("`{id}`")) && md.contains("| restore |"),
        "{md}"
    );
    assert!(md.contains("| dump | db/dump.pgc.zst |"), "{md}");
    assert!(!out.stderr.contains("::error"), "{}", out.stderr);

    // A refused backup: the annotation on stderr, the summary appended, the password nowhere.
    let secret = "s3cr3t-never-shown";
    let url = format!("postgres://app:{secret}@127.0.0.1:{}/app", unused_port());
    let mut bad = tool(dir.path(), &url);
    gha(&mut bad);
    let out = run(bad.args(["--json", "backup"]));
    out.assert_code(5);
    let _ = out.json(); // stdout stays one JSON document
    let annotation = out
        .stderr
        .lines()
        .find(|l| l.starts_with("::error title=pre-deploy backup failed (exit 5)::"))
        .unwrap_or_else(|| panic!("no annotation:\n{}", out.stderr));
    assert!(annotation.contains("127.0.0.1"), "{annotation}");
    assert!(!annotation.contains('\n'));
    let md = std::fs::read_to_string(&summary).expect("summary");
    assert!(
        md.contains("### pre-deploy backup: FAILED (exit 5)"),
        "{md}"
    );
    assert!(md.contains("**Error:**"), "{md}");
    assert!(md.contains("passed"), "the first summary was kept: {md}");
    for text in [&md, &out.stderr, &out.stdout] {
        assert!(!text.contains(secret), "password shown:\n{text}");
    }
}

#[test]
fn every_command_prints_one_json_document_with_json() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let db = database(server, "json_all");
    let url = server.url(&db);
    let one = |args: &[&str], code: i32| -> Value {
        let out = run(tool(dir.path(), &url).arg("--json").args(args));
        out.assert_code(code);
        let v = out.json();
        assert!(v.is_object(), "{args:?}: {v}");
        v
    };
    let backup = one(&["backup", "--verify-level", "archive"], 0);
    assert_eq!(backup["ok"], true);
    let id = backup["id"].as_str().expect("id").to_owned();
    for (args, code) in [
        (vec!["list"], 0),
        (vec!["show", id.as_str()], 0),
        (vec!["verify", id.as_str(), "--level", "decompress"], 0),
        (vec!["check"], 0),
        (vec!["status"], 0),
        (vec!["pin", id.as_str()], 0),
        (vec!["unpin", id.as_str()], 0),
        (vec!["prune", "--keep-last", "5"], 0),
        (vec!["doctor"], 0),
        (vec!["config"], 0),
        (vec!["restore", "--dry-run"], 0),
        (vec!["run", "--verify-level", "archive", "--", "true"], 0),
        (vec!["report", "--html", "report.html"], 0),
        // Failures are documents too.
        (vec!["show", "no-such-backup"], 2),
        (vec!["check", "--commit", "0000000"], 7),
    ] {
        let v = one(&args, code);
        if code != 0 {
            assert_eq!(v["ok"], false, "{args:?}: {v}");
            assert_eq!(v["exit_code"], code, "{args:?}: {v}");
        }
    }
}

/// `pre-deploy list | head -1` and friends: when the reader of stdout (or stderr) has gone,
/// the command still finishes with its documented exit code instead of panicking (exit 101).
#[test]
fn a_closed_output_pipe_is_not_a_crash() {
    let server = PgServer::shared();
    let dir = tempfile::tempdir().expect("dir");
    let db = database(server, "pipe");
    let made = tool(dir.path(), &server.url(&db))
        .args(["backup", "--verify-level", "checksum"])
        .output()
        .expect("backup");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for args in [
        &["list"][..],
        &["--json", "list"],
        &["config"],
        &["-v", "verify", "last"],
    ] {
        // Both pipes are closed before the command starts: every write fails with EPIPE.
        let (out_reader, out_writer) = std::io::pipe().expect("pipe");
        let (err_reader, err_writer) = std::io::pipe().expect("pipe");
        drop((out_reader, err_reader));
        let status = tool(dir.path(), &server.url(&db))
            .args(args)
            .stdout(out_writer)
            .stderr(err_writer)
            .status()
            .expect("run");
        assert_eq!(
            status.code(),
            Some(0),
            "pre-deploy {args:?} with closed pipes: {status:?}"
        );
    }
}
