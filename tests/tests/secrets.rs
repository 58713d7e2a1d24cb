//! Secrets campaign (issue 14): during a whole `run` (backup, level-4 test restore, deploy
//! command, runbook) with the password in the source URL (`DATABASE_URL`) and tracing at its most
//! verbose, the password appears in no process's argument list (pg_dump, pg_dumpall, pg_restore,
//! psql get it through their environment), no output, no file of the store or the working
//! directory, and not in what `show` prints.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use predeploy_tests::leaks::{files, in_some_argv};
use predeploy_tests::{PgServer, fixtures, pre_deploy, run};

#[test]
fn the_password_leaks_nowhere_during_a_whole_run() {
    let server = PgServer::shared();
    let db = server.create_database("secret");
    fixtures::load_varied(server, &db);
    let password = server.password().to_owned();
    assert!(
        password.len() >= 8,
        "the harness server has a real password"
    );
    let url = server.url_with("postgres", &password, &db);
    let work = tempfile::tempdir().expect("work");
    let store = work.path().join("store");

    // Watch every process's argv while the run goes on.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, samples, seen, password) = (
            stop.clone(),
            samples.clone(),
            seen.clone(),
            password.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if in_some_argv(&password) {
                    seen.store(true, Ordering::Relaxed);
                }
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = run(pre_deploy()
        .current_dir(work.path())
        .args(["-v", "-v", "--json", "--store"])
        .arg(&store)
        // Through the environment, as a deploy script should: then no process's argv has it.
        .env("DATABASE_URL", &url)
        .args(["run", "--", "sh", "-c", "echo deploying"])
        .env("PREDEPLOY_LOG", "trace")
        .stdin(Stdio::null()));
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    out.assert_success();
    assert!(
        samples.load(Ordering::Relaxed) > 20,
        "argv was sampled during the run"
    );
    assert!(
        !seen.load(Ordering::Relaxed),
        "the password appeared in some process's argv"
    );
    assert!(
        out.stderr.lines().count() > 20,
        "trace logging was on: {}",
        out.stderr
    );
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains(&password), "the password is in {name}");
    }
    for (path, bytes) in files(&store).into_iter().chain(files(work.path())) {
        let hit = bytes
            .windows(password.len())
            .any(|w| w == password.as_bytes());
        assert!(!hit, "the password is in {}", path.display());
    }
    let shown = run(pre_deploy().args(["show", "last", "--store"]).arg(&store));
    shown.assert_success();
    assert!(!shown.stdout.contains(&password) && !shown.stderr.contains(&password));
}
