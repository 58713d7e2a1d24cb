//! Concurrency campaign (issue 14 "Campaigns: Concurrency"): six `pre-deploy run`s of one
//! environment started at once (four waiting for the lock, two not), while another environment
//! backs up the same files (so both share content-addressed blobs) and runs `prune --yes`, on one
//! store on moto and on Garage, and on Garage with lock renewals slowed down at random (test hook
//! `PREDEPLOY_TEST_SLOW_RENEWAL_MS`). Each deploy command appends start and end timestamps to
//! one file. Checked: two deploy commands overlap only when one of the runs reports its lease
//! lost during the deploy (exit 9: never without slow renewals); every run either deployed after
//! a verified backup (exit 0) or was refused with exit 6 and its deploy command never ran; every
//! backup of both environments still verifies afterwards (no blob lost).
//!
//! `locks.rs` covers the turn-taking of runs that all wait and the refusal naming the holder;
//! `lock_safety.rs` covers the blob-collection race with an aged blob, the lease lost during a
//! deploy and SIGTERM.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};

use predeploy_tests::{GarageServer, MotoServer, Output, S3Server, pre_deploy, run};

/// Runs of environment `prod` started together.
const RUNS: usize = 6;

fn write_files(dir: &Path) {
    for i in 0..40 {
        let path = dir.join(format!("d{}/f{i}.bin", i % 4));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, vec![i as u8; 32 * 1024 + i * 100]).expect("write");
    }
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().expect("wait");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A deploy command's interval, from the log it appended to.
#[derive(Debug, Default, Clone)]
struct Interval {
    start: Option<u128>,
    end: Option<u128>,
    backup: String,
}

fn campaign(server: &dyn S3Server, slow_renewals: bool) {
    let bucket = server.create_bucket("race");
    let store = server.url(&bucket, "backups");
    let work = tempfile::tempdir().expect("work");
    let files = work.path().join("files");
    write_files(&files);
    let log = work.path().join("deploys.log");
    let source = format!("files=file://{}", files.display());
    let cli = |env: &str| {
        let mut cmd = pre_deploy();
        cmd.args(["--store", &store, "--env", env, "--source", &source])
            .envs(server.env())
            .env("PREDEPLOY_LOCK_TTL", "3s")
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if slow_renewals {
            // Up to a whole ttl: some renewals land after their lease expired.
            cmd.env("PREDEPLOY_TEST_SLOW_RENEWAL_MS", "3000");
        }
        cmd
    };
    // With slow renewals the deploy outlasts the ttl, so its lease must be renewed meanwhile.
    let deploy = format!(
        "echo \"start $(date +%s%N) $RUN_TAG $PREDEPLOY_BACKUP_ID\" >> '{0}'; sleep {1}; echo \"end $(date +%s%N) $RUN_TAG $PREDEPLOY_BACKUP_ID\" >> '{0}'",
        log.display(),
        if slow_renewals { "5" } else { "1.5" }
    );

    // Environment `other`, meanwhile: backups of the same files and prunes, three rounds.
    let (outs, other) = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let mut codes = Vec::new();
            for _ in 0..3 {
                for extra in [
                    &["backup"][..],
                    &["prune", "--yes", "--force", "--keep-last", "1"][..],
                ] {
                    let out = run(cli("other").args(extra));
                    codes.push((extra[0], out.code, out.stderr));
                }
            }
            codes
        });
        let children: Vec<Child> = (0..RUNS)
            .map(|i| {
                let mut cmd = cli("prod");
                if i < 4 {
                    cmd.args(["--wait-lock", "300s"]);
                }
                cmd.env("RUN_TAG", format!("run{i}"))
                    .args(["run", "--", "sh", "-c", &deploy])
                    .spawn()
                    .expect("pre-deploy starts")
            })
            .collect();
        let outs: Vec<Output> = children.into_iter().map(finish).collect();
        (outs, other.join().expect("the other environment's thread"))
    });

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut intervals: BTreeMap<String, Interval> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 4, "a whole line: {line:?}");
        let at: u128 = words[1].parse().expect("a timestamp");
        let entry = intervals.entry(words[2].to_owned()).or_default();
        entry.backup = words[3].to_owned();
        match words[0] {
            "start" => entry.start = Some(at),
            "end" => entry.end = Some(at),
            other => panic!("unexpected {other:?} in {text}"),
        }
    }

    let mut codes: BTreeMap<i32, u32> = BTreeMap::new();
    for (i, out) in outs.iter().enumerate() {
        *codes.entry(out.code).or_default() += 1;
        let tag = format!("run{i}");
        match out.code {
            0 | 9 => {
                let iv = intervals
                    .get(&tag)
                    .unwrap_or_else(|| panic!("{tag} exited {} without deploying", out.code));
                assert!(iv.start.is_some() && iv.end.is_some(), "{tag}: {iv:?}");
                if out.code == 9 {
                    assert!(
                        slow_renewals,
                        "{tag}: lease lost without slow renewals: {}",
                        out.stderr
                    );
                    out.assert_stderr_contains("lost");
                }
            }
            6 => {
                assert!(
                    !intervals.contains_key(&tag),
                    "{tag} was refused (exit 6) but its deploy command ran: {}",
                    out.stderr
                );
                out.assert_stderr_contains("REFUSED (exit 6): the deploy command did not run");
            }
            code => panic!(
                "{}: {tag} ended with exit {code}, neither deployed nor refused by the lock:\n{}",
                server.kind(),
                out.stderr
            ),
        }
    }
    // Two deploy commands ran at the same time only if one of them was told its lease was lost.
    let lost = |tag: &str| {
        let i: usize = tag[3..].parse().expect("run number");
        outs[i].code == 9
    };
    let all: Vec<(&String, &Interval)> = intervals.iter().collect();
    let mut overlaps = 0;
    for (a, x) in &all {
        for (b, y) in &all {
            let (Some(xs), Some(xe), Some(ys), Some(ye)) = (x.start, x.end, y.start, y.end) else {
                panic!("{}: an unfinished deploy: {intervals:?}", server.kind());
            };
            if a < b && xs < ye && ys < xe {
                overlaps += 1;
                assert!(
                    lost(a) || lost(b),
                    "{}: the deploys of {a} and {b} overlapped and both runs held the lock: {intervals:?}",
                    server.kind()
                );
            }
        }
    }
    // Without slow renewals some run deploys with its lock held throughout (exit 0); with them,
    // every lease may be lost on the way, but some deploy still runs.
    let held_throughout = codes.get(&0).copied().unwrap_or(0);
    assert!(
        held_throughout >= 1 || (slow_renewals && !intervals.is_empty()),
        "{}: at least one run deployed: {codes:?}",
        server.kind()
    );
    if !slow_renewals {
        for (what, code, stderr) in &other {
            assert_eq!(
                *code,
                0,
                "{}: other environment's {what}: {stderr}",
                server.kind()
            );
        }
    }

    // Every backup of both environments verifies, every blob read and hashed; each deployed
    // run's backup is listed as verified.
    for env in ["prod", "other"] {
        let out = run(cli(env).args([
            "verify",
            "--all",
            "--level",
            "checksum",
            "--wait-lock",
            "60s",
        ]));
        assert_eq!(
            out.code,
            0,
            "{}: every backup of {env} verifies\n{}{}",
            server.kind(),
            out.stdout,
            out.stderr
        );
    }
    let out = run(cli("prod").args(["list", "--json"]));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let verified: Vec<&str> = v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter(|b| b["verification"]["passed"] == true)
        .filter_map(|b| b["id"].as_str())
        .collect();
    for (tag, iv) in &intervals {
        assert!(
            verified.contains(&iv.backup.as_str()),
            "{}: {tag} deployed after backup {}, which is not verified: {verified:?}",
            server.kind(),
            iv.backup
        );
    }
    eprintln!(
        "{}{}: {RUNS} runs raced with 3 backups and 3 prunes of another environment: exits {codes:?}; other environment {:?}; {} deploys, {overlaps} overlapping pair(s), each with a run told its lease was lost; every backup verifies",
        server.kind(),
        if slow_renewals {
            " with slow renewals"
        } else {
            ""
        },
        other.iter().map(|(w, c, _)| (*w, *c)).collect::<Vec<_>>(),
        intervals.len()
    );
}

#[test]
fn runs_and_a_prune_of_another_environment_race_on_moto() {
    campaign(MotoServer::shared(), false);
}

#[test]
fn runs_and_a_prune_of_another_environment_race_on_garage() {
    campaign(GarageServer::shared(), false);
}

#[test]
fn runs_race_on_garage_with_slow_lock_renewals() {
    campaign(GarageServer::shared(), true);
}
