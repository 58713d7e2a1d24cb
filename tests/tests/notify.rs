//! Alerts (`[notify]`) against real local receivers: an HTTP server in this process (webhook,
//! Slack, healthchecks pings) and an SMTP sink (PyPI `aiosmtpd`, installed by
//! `scripts/setup.sh`). A failed backup alerts with its exit code and message and no secret;
//! `on` chooses failures or every outcome; a receiver that fails leaves the exit code alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use predeploy_tests::{PgServer, pre_deploy, run, unused_port};

/// The secret of the unreachable source's URL: it must appear in no alert and no warning.
const SOURCE_SECRET: &str = "src-Secret-4711";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

/// An HTTP server on loopback that records every request and answers `status` to each.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || serve(stream, status, &seen));
            }
        });
        Receiver { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    fn to(&self, path_prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .collect()
    }
}

/// Reads requests from one connection (keep-alive: several in a row) until it closes.
fn serve(stream: TcpStream, status: u16, seen: &Mutex<Vec<Request>>) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "content-type" => v.trim().clone_into(&mut content_type),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock().expect("lock").push(Request {
            method,
            path,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let reason = if status == 200 { "OK" } else { "Error" };
        let answer = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 2\r\n\r\nok");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// An `aiosmtpd` sink writing each message it receives to a directory.
struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let venv = std::env::var_os("PREDEPLOY_SMTP_VENV")
            .map_or_else(|| PathBuf::from("/opt/pre-deploy/smtp"), PathBuf::from);
        let python = venv.join("bin/python");
        let installed = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "aiosmtpd is not installed in {}: run scripts/setup.sh",
            venv.display()
        );
        let dir = tempfile::tempdir().expect("dir");
        let port = unused_port();
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "smtp_sink.DirHandler"])
            .arg(dir.path())
            .env("PYTHONPATH", &scripts)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let sink = SmtpSink { port, dir, child };
        let up = predeploy_tests::pg::wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "aiosmtpd did not listen on {port}");
        sink
    }

    /// The messages received, in order.
    fn messages(&self) -> Vec<String> {
        let mut paths: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("sink dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("message"))
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A source nobody listens on: the backup fails its preflight (exit 5).
fn unreachable_source() -> String {
    format!(
        "postgres://app:{SOURCE_SECRET}@127.0.0.1:{}/gone?connect_timeout=2",
        unused_port()
    )
}

/// A working dir with `predeploy.toml`: a store in it, one source `db`, and `notify` appended.
fn workdir(source: &str, notify: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("predeploy.toml"),
        format!(
            "store = \"{store}\"\n\n[sources]\ndb = \"{source}\"\n\n[verify]\nlevel = \"archive\"\n\n{notify}\n",
            store = dir.path().join("store").display(),
        ),
    )
    .expect("config");
    dir
}

fn backup(dir: &Path) -> predeploy_tests::Output {
    let mut cmd = pre_deploy();
    cmd.current_dir(dir).arg("backup");
    run(&mut cmd)
}

fn json(r: &Request) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

fn database(server: &PgServer) -> String {
    let db = server.create_database("notify");
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g",
    );
    server.url(&db)
}

#[test]
fn a_failed_backup_posts_the_webhook_and_slack_without_the_secret() {
    let hooks = Receiver::start(200);
    let dir = workdir(
        &unreachable_source(),
        &format!(
            "[notify]\nwebhook = \"{}\"\nslack = \"{}\"\n",
            hooks.url("/hook/secret-hook-path"),
            hooks.url("/services/T000/B000/slacksecret"),
        ),
    );
    let out = backup(dir.path());
    out.assert_code(5);

    let posted = hooks.to("/hook/");
    assert_eq!(posted.len(), 1, "{posted:#?}");
    let r = &posted[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.content_type, "application/json");
    let v = json(r);
    assert_eq!(v["outcome"], "failure", "{v:#}");
    assert_eq!(v["exit_code"], 5, "{v:#}");
    assert_eq!(v["command"], "backup", "{v:#}");
    assert_eq!(v["environment"], "default", "{v:#}");
    assert!(v["project"].is_null(), "{v:#}");
    assert!(v["backup_id"].is_null(), "{v:#}");
    let message = v["message"].as_str().expect("message");
    assert!(
        message.contains("db"),
        "the message names the source: {message}"
    );
    assert!(v["hint"].is_string(), "{v:#}");
    assert!(v["host"].as_str().is_some_and(|h| !h.is_empty()), "{v:#}");
    assert!(v["version"].is_string(), "{v:#}");
    assert!(v["duration_seconds"].is_number(), "{v:#}");

    let slack = hooks.to("/services/");
    assert_eq!(slack.len(), 1, "{slack:#?}");
    let s = json(&slack[0]);
    let text = s["text"].as_str().expect("slack text");
    assert!(text.contains("backup FAILED (exit 5)"), "{text}");
    assert!(s["blocks"].is_array(), "{s:#}");

    for r in hooks.requests() {
        assert!(!r.body.contains(SOURCE_SECRET), "secret in {r:#?}");
    }
    assert!(!out.stderr.contains(SOURCE_SECRET), "{}", out.stderr);
}

#[test]
fn a_failed_backup_sends_an_email_with_the_subject() {
    let sink = SmtpSink::start();
    let dir = workdir(
        &unreachable_source(),
        &format!(
            "[notify.email]\nsmtp = \"smtp://127.0.0.1:{}?tls=none\"\nfrom = \"pre-deploy@example.com\"\nto = [\"ops@example.com\", \"dba@example.com\"]\n",
            sink.port
        ),
    );
    backup(dir.path()).assert_code(5);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let m = &messages[0];
    assert!(
        m.contains("Subject: pre-deploy: default backup FAILED (exit 5)"),
        "{m}"
    );
    assert!(
        m.contains("X-Envelope-To: ops@example.com, dba@example.com"),
        "{m}"
    );
    assert!(m.contains("From: pre-deploy@example.com"), "{m}");
    assert!(m.contains("exit code  5"), "{m}");
    assert!(!m.contains(SOURCE_SECRET), "{m}");
}

#[test]
fn on_failure_is_silent_on_success_and_on_always_reports_the_backup() {
    let server = PgServer::shared();
    let hooks = Receiver::start(200);
    let url = database(server);

    let quiet = workdir(
        &url,
        &format!("[notify]\nwebhook = \"{}\"\n", hooks.url("/quiet")),
    );
    backup(quiet.path()).assert_success();
    assert!(hooks.to("/quiet").is_empty(), "{:#?}", hooks.requests());

    let loud = workdir(
        &url,
        &format!(
            "[notify]\non = \"always\"\nwebhook = \"{}\"\n",
            hooks.url("/loud")
        ),
    );
    let mut cmd = pre_deploy();
    cmd.current_dir(loud.path()).args(["--json", "backup"]);
    let out = run(&mut cmd);
    out.assert_success();
    let id = out.json()["id"].as_str().expect("id").to_owned();
    let posted = hooks.to("/loud");
    assert_eq!(posted.len(), 1, "{posted:#?}");
    let v = json(&posted[0]);
    assert_eq!(v["outcome"], "success", "{v:#}");
    assert_eq!(v["exit_code"], 0, "{v:#}");
    assert_eq!(v["backup_id"], id.as_str(), "{v:#}");
    assert!(v["stored_bytes"].as_u64().is_some_and(|b| b > 0), "{v:#}");
    assert!(v["message"].is_null(), "{v:#}");
}

#[test]
fn healthchecks_pings_start_then_success_or_fail() {
    let server = PgServer::shared();
    let hc = Receiver::start(200);

    let good = workdir(
        &database(server),
        &format!("[notify]\nping = \"{}\"\n", hc.url("/ok-uuid")),
    );
    backup(good.path()).assert_success();
    let paths: Vec<String> = hc.to("/ok-uuid").into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/ok-uuid/start", "/ok-uuid"]);

    let bad = workdir(
        &unreachable_source(),
        &format!("[notify]\nping = \"{}\"\n", hc.url("/bad-uuid")),
    );
    backup(bad.path()).assert_code(5);
    let pings = hc.to("/bad-uuid");
    let paths: Vec<&str> = pings.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/bad-uuid/start", "/bad-uuid/fail"]);
    let fail = &pings[1];
    assert!(fail.body.contains("FAILED (exit 5)"), "{}", fail.body);
    assert!(!fail.body.contains(SOURCE_SECRET), "{}", fail.body);
}

#[test]
fn failing_receivers_warn_without_secrets_and_keep_the_exit_code() {
    let server = PgServer::shared();
    let broken = Receiver::start(500);
    let closed = unused_port();
    let notify = format!(
        "[notify]\non = \"always\"\nwebhook = \"{}\"\nslack = \"http://127.0.0.1:{closed}/services/T/B/closedsecret\"\nping = \"{}\"\n\
         [notify.email]\nsmtp = \"smtp://ops:smtp-Secret-99@127.0.0.1:{closed}?tls=none\"\nfrom = \"a@example.com\"\nto = \"b@example.com\"\n",
        broken.url("/hook/hooksecret"),
        broken.url("/pingsecret"),
    );

    // A backup that succeeds still exits 0.
    let dir = workdir(&database(server), &notify);
    let out = backup(dir.path());
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "notify webhook http://127.0.0.1:{}/…",
        broken.port
    ))
    .assert_stderr_contains("HTTP 500")
    .assert_stderr_contains(&format!("notify slack http://127.0.0.1:{closed}/…"))
    .assert_stderr_contains(&format!("notify ping http://127.0.0.1:{}/…", broken.port))
    .assert_stderr_contains(&format!("notify email smtp://127.0.0.1:{closed}: "))
    .assert_stderr_contains("pre-deploy: warning: notify");
    for secret in ["hooksecret", "closedsecret", "pingsecret", "smtp-Secret-99"] {
        assert!(!out.stderr.contains(secret), "{secret} in:\n{}", out.stderr);
        assert!(!out.stdout.contains(secret), "{secret} in:\n{}", out.stdout);
    }
    // The receiver did get them (and answered 500).
    assert_eq!(broken.to("/hook/").len(), 1);

    // A backup that fails keeps its own exit code.
    let dir = workdir(&unreachable_source(), &notify);
    let out = backup(dir.path());
    out.assert_code(5);
    out.assert_stderr_contains("notify webhook");
    for secret in [
        "hooksecret",
        "closedsecret",
        "pingsecret",
        "smtp-Secret-99",
        SOURCE_SECRET,
    ] {
        assert!(!out.stderr.contains(secret), "{secret} in:\n{}", out.stderr);
    }
}

#[test]
fn a_bad_notify_section_is_a_usage_error() {
    let dir = workdir(&unreachable_source(), "[notify]\non = \"sometimes\"\n");
    let out = backup(dir.path());
    out.assert_code(2).assert_stderr_contains("sometimes");
    let dir = workdir(&unreachable_source(), "[notify]\nwebhok = \"http://x\"\n");
    backup(dir.path()).assert_code(2);
}

#[test]
fn backup_all_alerts_once_per_project_with_its_own_settings() {
    let server = PgServer::shared();
    let hooks = Receiver::start(200);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("predeploy.toml"),
        format!(
            r#"store = "{store}"

[verify]
level = "archive"

[notify]
on = "always"
webhook = "{hook}"

[project.good.sources]
db = "{good}"

[project.bad.sources]
db = "{bad}"
[project.bad.notify]
ping = "{ping}"
"#,
            store = dir.path().join("store").display(),
            hook = hooks.url("/all"),
            good = database(server),
            bad = unreachable_source(),
            ping = hooks.url("/bad-ping"),
        ),
    )
    .expect("config");
    let mut cmd = pre_deploy();
    cmd.current_dir(dir.path()).args(["backup", "--all"]);
    let out = run(&mut cmd);
    out.assert_code(5);
    let events: Vec<serde_json::Value> = hooks.to("/all").iter().map(json).collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let of = |p: &str| {
        events
            .iter()
            .find(|e| e["project"] == p)
            .unwrap_or_else(|| panic!("no event for {p}: {events:#?}"))
    };
    assert_eq!(of("good")["outcome"], "success");
    assert!(of("good")["backup_id"].is_string());
    assert_eq!(of("bad")["outcome"], "failure");
    assert_eq!(of("bad")["exit_code"], 5);
    let pings: Vec<String> = hooks.to("/bad-ping").into_iter().map(|r| r.path).collect();
    assert_eq!(pings, ["/bad-ping/start", "/bad-ping/fail"]);
    assert!(!out.stderr.contains(SOURCE_SECRET), "{}", out.stderr);
}

#[test]
fn run_reports_the_deploy_commands_exit_code_and_its_backup() {
    let server = PgServer::shared();
    let hooks = Receiver::start(200);
    let dir = workdir(
        &database(server),
        &format!("[notify]\nwebhook = \"{}\"\n", hooks.url("/run")),
    );
    let mut cmd = pre_deploy();
    cmd.current_dir(dir.path())
        .args(["run", "--", "sh", "-c", "exit 3"]);
    run(&mut cmd).assert_code(3);
    let posted = hooks.to("/run");
    assert_eq!(posted.len(), 1, "{posted:#?}");
    let v = json(&posted[0]);
    assert_eq!(v["command"], "run", "{v:#}");
    assert_eq!(v["outcome"], "failure", "{v:#}");
    assert_eq!(v["exit_code"], 3, "{v:#}");
    assert!(
        v["backup_id"].is_string(),
        "the backup made before the deploy: {v:#}"
    );
}
