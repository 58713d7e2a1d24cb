//! The timing loop and statistics of commands that need neither interleaving with other
//! commands nor a memory figure, left to hyperfine (Debian package `hyperfine`) and read back
//! from its JSON export.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{Res, redact, sh_quote};

/// One command for hyperfine.
#[derive(Debug, Clone)]
pub struct Bench {
    /// Its name in the export (`--command-name`).
    pub name: String,
    /// argv, program first (run without a shell: `-N`).
    pub argv: Vec<OsString>,
    /// Run before each of its runs, warm-ups included (`--prepare`), e.g. `rm -rf STORE`.
    pub prepare: Option<String>,
}

/// hyperfine's figures for one command (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The command's name.
    pub name: String,
    /// Median wall time.
    pub median: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Mean wall time.
    pub mean: f64,
    /// Standard deviation.
    pub stddev: f64,
    /// Every counted run's wall time.
    pub times: Vec<f64>,
}

/// Runs `benches` with `hyperfine -N --warmup W --runs R --export-json` in `scratch`, with only
/// the connection settings of `env` (like [`crate::exec::run_timed`]). Commands run one after
/// the other, each `warmup + runs` times; hyperfine fails when any run exits non-zero.
///
/// # Errors
///
/// hyperfine missing or failing (with its stderr), or an export that cannot be read.
pub fn run(
    benches: &[Bench],
    (warmup, runs): (usize, usize),
    env: &[(OsString, OsString)],
    scratch: &Path,
    tag: &str,
) -> Res<(String, Vec<Summary>)> {
    let json = scratch.join(format!("{tag}.hyperfine.json"));
    let mut args: Vec<String> = ["-N", "--style", "basic", "--warmup", &warmup.to_string()]
        .into_iter()
        .chain([
            "--runs",
            &runs.to_string(),
            "--export-json",
            &json.to_string_lossy(),
        ])
        .map(String::from)
        .collect();
    for b in benches {
        // Given once per command, or not at all.
        if benches.iter().any(|b| b.prepare.is_some()) {
            args.extend([
                "--prepare".into(),
                b.prepare.clone().unwrap_or("true".into()),
            ]);
        }
        args.extend(["--command-name".into(), b.name.clone()]);
    }
    args.extend(benches.iter().map(|b| {
        let words: Vec<String> = b
            .argv
            .iter()
            .map(|a| sh_quote(&a.to_string_lossy()))
            .collect();
        words.join(" ")
    }));
    let shown: Vec<String> = args.iter().map(|a| sh_quote(&redact(a))).collect();
    let command_line = format!("hyperfine {}", shown.join(" "));
    let mut cmd = Command::new("hyperfine");
    for (k, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("PG")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(scratch)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start hyperfine (Debian package `hyperfine`): {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = redact(err.trim());
        return Err(format!("hyperfine failed ({}): {command_line}\n{err}", out.status).into());
    }
    let results = parse_export(&fs::read_to_string(&json)?)?;
    fs::remove_file(&json)?;
    Ok((command_line, results))
}

/// The summaries of a `--export-json` file.
///
/// # Errors
///
/// Not JSON, or a result without its figures.
pub fn parse_export(text: &str) -> Res<Vec<Summary>> {
    let json: Value = serde_json::from_str(text)?;
    let results = json["results"]
        .as_array()
        .ok_or("hyperfine's export has no \"results\"")?;
    results
        .iter()
        .map(|r| {
            let f = |k: &str| {
                r[k].as_f64()
                    .ok_or_else(|| format!("hyperfine's export: no {k:?} in {r}"))
            };
            Ok(Summary {
                name: r["command"].as_str().unwrap_or_default().to_owned(),
                median: f("median")?,
                min: f("min")?,
                max: f("max")?,
                mean: f("mean")?,
                stddev: f("stddev").unwrap_or(0.0),
                times: r["times"]
                    .as_array()
                    .map(|t| t.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

impl Summary {
    /// report.json form.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name, "median": self.median, "min": self.min, "max": self.max,
            "mean": self.mean, "stddev": self.stddev, "times": self.times,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_export() {
        let text = r#"{"results": [
            {"command": "floor", "mean": 0.2, "stddev": 0.01, "median": 0.19, "user": 0.1,
             "system": 0.05, "min": 0.18, "max": 0.25, "times": [0.18, 0.19, 0.25],
             "exit_codes": [0, 0, 0]},
            {"command": "tool", "mean": 0.4, "stddev": null, "median": 0.4, "min": 0.4,
             "max": 0.4, "times": [0.4]}]}"#;
        let s = parse_export(text).expect("valid");
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[0].median, s[0].min, s[0].max),
            ("floor", 0.19, 0.18, 0.25)
        );
        assert_eq!(s[0].times, vec![0.18, 0.19, 0.25]);
        assert_eq!(s[1].stddev, 0.0);
        assert!(parse_export(r#"{"results": [{"command": "x"}]}"#).is_err());
        assert!(parse_export("nope").is_err());
    }

    #[test]
    fn runs_hyperfine() {
        assert!(
            crate::about::on_path("hyperfine"),
            "hyperfine is not installed: run scripts/setup.sh"
        );
        let dir = tempfile::tempdir().expect("temp dir for the test");
        let store = dir.path().join("store");
        let bench = |name: &str, argv: &[&str], prepare: Option<String>| Bench {
            name: name.into(),
            argv: argv.iter().map(OsString::from).collect(),
            prepare,
        };
        // `mkdir` fails when its directory exists: the prepare step must remove it each run.
        let mkdir = ["mkdir", &store.to_string_lossy()].map(str::to_owned);
        let rm = format!("rm -rf {}", sh_quote(&store.to_string_lossy()));
        let benches = [
            bench("sleep", &["sleep", "0.01"], None),
            bench("mkdir", &[&mkdir[0], &mkdir[1]], Some(rm)),
        ];
        let (line, results) = run(&benches, (1, 3), &[], dir.path(), "t").expect("hyperfine runs");
        assert!(line.starts_with("hyperfine -N "), "{line}");
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["sleep", "mkdir"]);
        assert!(results.iter().all(|r| r.times.len() == 3));
        assert!(results[0].median >= 0.009, "{results:?}");
        let failing = [bench("false", &["false"], None)];
        assert!(run(&failing, (0, 1), &[], dir.path(), "f").is_err());
    }
}
