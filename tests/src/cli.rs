//! Running the `pre-deploy` binary of this workspace as a user would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable naming a prebuilt `pre-deploy` binary to use instead of building one.
pub const BIN_OVERRIDE_ENV: &str = "PREDEPLOY_TEST_BIN";

/// A [`Command`] for the `pre-deploy` binary of this workspace.
///
/// The binary is built once per test process (`$CARGO build -q -p bins --bin pre-deploy
/// --features test-hooks`, with
/// `CARGO` from the environment or `cargo`), in the profile and target dir of the running test
/// or benchmark (found from [`std::env::current_exe`], `target/[TRIPLE/]PROFILE/deps/EXE`).
/// Set `PREDEPLOY_TEST_BIN` to the path of a prebuilt binary to skip the build.
///
/// The command's environment has no `DATABASE_URL`, no `PREDEPLOY_*` and no `PG*` variables
/// inherited from the machine; everything else is inherited. The working directory is the
/// caller's business ([`Command::current_dir`]).
///
/// # Panics
/// When the build fails.
#[must_use]
pub fn pre_deploy() -> Command {
    let mut cmd = Command::new(binary());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text == "DATABASE_URL"
            || key_text == "NO_COLOR"
            || key_text.starts_with("GITHUB_")
            || key_text.starts_with("PREDEPLOY_")
            || key_text.starts_with("PG")
        {
            cmd.env_remove(&key);
        }
    }
    // Every run takes a new backup, as the tests expect, unless a test of the reuse of an
    // unchanged database's backup removes this (tests/tests/unchanged.rs).
    cmd.env("PREDEPLOY_FRESH", "1");
    cmd
}

/// The path of the `pre-deploy` binary, built on first use (see [`pre_deploy`]).
///
/// # Panics
/// When the build fails.
#[must_use]
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build)
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    /// The exit code.
    pub code: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// Panics with both streams unless the exit code is `code`.
    ///
    /// # Panics
    /// When the exit code differs.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panics with both streams unless the command succeeded (exit code 0).
    ///
    /// # Panics
    /// When the exit code is not 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Panics, showing stderr, unless stderr contains `needle`.
    ///
    /// # Panics
    /// When `needle` is not in stderr.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Stdout parsed as JSON (the `--json` result).
    ///
    /// # Panics
    /// When stdout is not JSON.
    #[track_caller]
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Asserts that a `--json` backup or run succeeded, reached level 4 (a test restore) and that
/// its row counts passed.
///
/// # Panics
/// When it did not.
#[track_caller]
pub fn assert_level_4(out: &Output) {
    out.assert_success();
    let v = out.json();
    let record = &v["verification"];
    assert_eq!(record["level_reached"], "restore", "{v:#}");
    assert_eq!(
        finding(record, "row-counts")["status"],
        "passed",
        "{record:#}"
    );
}

/// The finding of `check` (`row-counts`, `schema-fingerprint`, …) in a verification record.
///
/// # Panics
/// When the record has no such finding.
#[track_caller]
#[must_use]
pub fn finding<'a>(record: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    record["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {record:#}"))
}

/// Runs `cmd` to completion (stdin from `/dev/null` unless set), capturing stdout and stderr.
///
/// # Panics
/// When the command cannot be started, or is killed by a signal (the message names the signal
/// and shows both streams).
pub fn run(cmd: &mut Command) -> Output {
    use std::os::unix::process::ExitStatusExt as _;
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(code) => Output {
            code,
            stdout,
            stderr,
        },
        None => panic!(
            "{:?} was killed by signal {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            cmd.get_program(),
            out.status.signal()
        ),
    }
}

fn build() -> PathBuf {
    if let Some(path) = std::env::var_os(BIN_OVERRIDE_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{BIN_OVERRIDE_ENV}={} is not a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("path of the running test executable");
    let deps = exe
        .parent()
        .expect("the test executable is in target/PROFILE/deps");
    let profile_dir = deps.parent().expect("target/PROFILE");
    let profile = profile_dir
        .file_name()
        .expect("a profile dir name")
        .to_string_lossy()
        .into_owned();
    let above = profile_dir.parent().expect("the dir above target/PROFILE");
    // target/PROFILE or target/TRIPLE/PROFILE (cross builds, `--target`)
    let (target_dir, triple) =
        if above.join("CACHEDIR.TAG").exists() || above.join(".rustc_info.json").exists() {
            (above.to_path_buf(), None)
        } else {
            let target = above.parent().expect("target dir above target/TRIPLE");
            (
                target.to_path_buf(),
                above.file_name().map(|t| t.to_string_lossy().into_owned()),
            )
        };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "-q",
            "-p",
            "bins",
            "--bin",
            "pre-deploy",
            // Test builds honour PREDEPLOY_TEST_PAUSE_AT (restore tests kill at exact steps).
            "--features",
            "test-hooks",
            "--target-dir",
        ])
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(triple) = &triple {
        cmd.args(["--target", triple]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
    assert!(
        out.status.success(),
        "building pre-deploy failed ({}): {cmd:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bin = target_dir;
    if let Some(triple) = triple {
        bin.push(triple);
    }
    bin.push(&profile);
    bin.push("pre-deploy");
    assert!(
        bin.is_file(),
        "cargo built pre-deploy, but {} is missing",
        bin.display()
    );
    bin
}

/// The commands of the runbook step "Or without pre-deploy…" in a `show --json` document (or
/// a `run --json` result), one per line: a script for `sh -e`.
///
/// # Panics
///
/// When the document has no such step.
#[must_use]
pub fn raw_runbook(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("a JSON document");
    let steps = v["runbook"]["steps"].as_array().expect("runbook steps");
    let step = steps
        .iter()
        .find(|s| {
            s["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Or without pre-deploy"))
        })
        .unwrap_or_else(|| panic!("no raw step in {steps:?}"));
    step["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c.as_str().expect("a command").to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `git -C DIR ARGS` and returns its trimmed stdout.
///
/// # Panics
///
/// When git fails (its stderr in the message).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Commits in `dir` as a fixed test author (`git add` what should go in first) and returns
/// the commit's SHA.
pub fn git_commit(dir: &Path, extra: &[&str], message: &str) -> String {
    let mut args = vec![
        "-c",
        "user.email=ci@example.com",
        "-c",
        "user.name=CI",
        "commit",
        "-q",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-m", message]);
    git(dir, &args);
    git(dir, &["rev-parse", "HEAD"])
}
