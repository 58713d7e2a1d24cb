//! Shared parts of the benchmark runners (`bench-backup`, `bench-s3`): timing commands under
//! GNU time, the throwaway PostgreSQL with its dataset loaders, and password redaction.

pub mod exec;
pub mod pg;

use std::path::{Path, PathBuf};

/// Errors are reported, not handled: any failure aborts the benchmark.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The options both runners take.
#[derive(Debug, Clone)]
pub struct CommonArgs {
    /// `--quick`: tiny datasets, fewer rounds.
    pub quick: bool,
    /// `--only SECTION`, unchecked (each runner knows its sections).
    pub only: Option<String>,
    /// `--tool PATH` (default: `<target dir>/release/pre-deploy`).
    pub tool: PathBuf,
    /// `--out-dir DIR` (default: the `benches/` directory).
    pub out_dir: PathBuf,
    /// `--rounds N` (default 5; quick 2), at least 1.
    pub rounds: usize,
    /// `--warmup N` (default 1).
    pub warmup: usize,
    /// The arguments as given, for the report.
    pub args: Vec<String>,
}

/// Parses `--quick`, `--only`, `--tool`, `--out-dir`, `--rounds`, `--warmup` and `-h`/`--help`
/// (which prints `usage`: then `None`); any other flag goes to `extra`, which says whether it
/// knew it.
///
/// # Errors
///
/// An unknown argument, a missing or malformed value, or `--rounds 0`.
pub fn parse_common(usage: &str, mut extra: impl FnMut(&str) -> bool) -> Res<Option<CommonArgs>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benches = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| benches.parent().unwrap_or(benches).join("target"));
    let mut o = CommonArgs {
        quick: false,
        only: None,
        tool: target_dir.join("release").join("pre-deploy"),
        out_dir: benches.to_path_buf(),
        rounds: 0,
        warmup: 1,
        args: args.clone(),
    };
    let mut rounds = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--only" => o.only = Some(value("--only")?),
            "--tool" => o.tool = value("--tool")?.into(),
            "--out-dir" => o.out_dir = value("--out-dir")?.into(),
            "--rounds" => rounds = Some(value("--rounds")?.parse::<usize>()?),
            "--warmup" => o.warmup = value("--warmup")?.parse()?,
            "-h" | "--help" => {
                print!("{usage}");
                return Ok(None);
            }
            other if extra(other) => {}
            other => return Err(format!("unknown argument {other:?}\n\n{usage}").into()),
        }
    }
    o.rounds = rounds.unwrap_or(if o.quick { 2 } else { 5 });
    if o.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    Ok(Some(o))
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

#[cfg(test)]
mod tests {
    use super::*;

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
