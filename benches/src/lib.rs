//! Shared parts of the benchmark runners (`bench-backup`, `bench-s3`, `bench-mysql`): their
//! common arguments, timing commands under GNU time or hyperfine, the throwaway PostgreSQL with
//! its dataset loaders, shell quoting and password redaction.

pub mod about;
pub mod exec;
pub mod hyperfine;
pub mod pg;

use std::num::NonZeroUsize;
use std::path::PathBuf;

/// Errors are reported, not handled: any failure aborts the benchmark.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The options both runners take (`#[command(flatten)]` into each runner's arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Tiny datasets, 1 warm-up + 2 counted rounds; the report files get `quick` in their name
    #[arg(long)]
    pub quick: bool,
    /// The pre-deploy binary [default: $CARGO_TARGET_DIR/release/pre-deploy, else
    /// target/release/pre-deploy]
    #[arg(long, value_name = "PATH", default_value_os_t = default_tool(), hide_default_value = true)]
    pub tool: PathBuf,
    /// Where the report files go [default: the benches/ directory]
    #[arg(long, value_name = "DIR", default_value_os_t = benches_dir(), hide_default_value = true)]
    pub out_dir: PathBuf,
    /// Counted rounds [default: 5; with --quick 2]
    #[arg(long, value_name = "N")]
    rounds: Option<NonZeroUsize>,
    /// Warm-up rounds, not counted
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub warmup: usize,
}

impl CommonArgs {
    /// Counted rounds: `--rounds`, or 5 (quick: 2).
    pub fn rounds(&self) -> usize {
        self.rounds
            .map_or(if self.quick { 2 } else { 5 }, NonZeroUsize::get)
    }

    /// The command line as given, for the report: `BENCH_INVOCATION` (set by `run.sh`), or
    /// `runner ARGS…`.
    pub fn invocation(runner: &str) -> String {
        std::env::var("BENCH_INVOCATION").unwrap_or_else(|_| {
            std::iter::once(runner.to_owned())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

fn benches_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn default_tool() -> PathBuf {
    let benches = benches_dir();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| benches.parent().unwrap_or(&benches).join("target"));
    target_dir.join("release").join("pre-deploy")
}

/// Replace the password of every `scheme://user:password@` in `s` by `***`.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', '?', '#', ' ']).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Median, min and max of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Stats {
    /// Stats of `values`; None when empty.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Quote `s` for bash (single quotes; embedded single quotes escaped).
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:@,+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line for the report: quoted for bash, passwords redacted.
pub fn display(argv: &[std::ffi::OsString]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|a| sh_quote(&redact(&a.to_string_lossy())))
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).expect("non-empty");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Stats::of(&[4.0, 1.0]).expect("non-empty");
        assert_eq!(s.median, 2.5);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/usr/bin/pg_dump"), "/usr/bin/pg_dump");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("db=postgres://postgres:s3cret@127.0.0.1:5432/d2 --store x"),
            "db=postgres://postgres:***@127.0.0.1:5432/d2 --store x"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(redact("a://x:y@h b://p:q@h/"), "a://x:***@h b://p:***@h/");
    }
}
