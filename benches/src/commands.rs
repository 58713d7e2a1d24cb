//! The measured commands: the baselines of `shared/docs/BENCHMARKS.md` and the tool.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One measured command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `pg_dump -Fc -Z0 --no-sync -f /dev/null DB`: nothing built on pg_dump can be faster
    /// (`--no-sync` because PG 15's pg_dump fsyncs its output and fails on `/dev/null`).
    Floor,
    /// `pg_dump DB | gzip -9 > f && gzip -t f`: what hand-written scripts do.
    Seed,
    /// `pg_dump -Fc -f f DB`.
    PgDumpDefault,
    /// `pg_dump -Fc -Z0 DB | zstd -3 | tee f | sha256sum`: the tool's work as a shell pipeline.
    ShellRef,
    /// `pre-deploy backup … --verify-level checksum`: the tool, primary figure.
    ToolChecksum,
    /// `pre-deploy backup …` with its default verify level.
    ToolDefault,
}

/// The order in which every round runs the commands: baselines and the tool alternate.
pub const ROUND_ORDER: [Kind; 6] = [
    Kind::Floor,
    Kind::ToolChecksum,
    Kind::Seed,
    Kind::ToolDefault,
    Kind::PgDumpDefault,
    Kind::ShellRef,
];

impl Kind {
    /// Short stable key used in file names and report.json.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::Seed => "seed",
            Kind::PgDumpDefault => "pg_dump_default",
            Kind::ShellRef => "shell_ref",
            Kind::ToolChecksum => "tool_checksum",
            Kind::ToolDefault => "tool_default",
        }
    }

    /// Human label for the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Floor => "floor (pg_dump -Fc -Z0 → /dev/null)",
            Kind::Seed => "seed pattern (pg_dump | gzip -9; gzip -t)",
            Kind::PgDumpDefault => "pg_dump default (-Fc)",
            Kind::ShellRef => "shell reference (pg_dump -Z0 | zstd -3 | tee | sha256sum)",
            Kind::ToolChecksum => "**tool** (--verify-level checksum)",
            Kind::ToolDefault => "tool (default verify level)",
        }
    }

    /// Whether this is a run of pre-deploy.
    pub fn is_tool(self) -> bool {
        matches!(self, Kind::ToolChecksum | Kind::ToolDefault)
    }

    /// Whether the command is a shell pipeline (its `%M` is the largest of the shell and every
    /// stage, so it is not reported).
    pub fn is_pipeline(self) -> bool {
        matches!(self, Kind::Seed | Kind::ShellRef)
    }

    /// Whether the command writes an output file whose size is reported.
    pub fn has_output(self) -> bool {
        !matches!(self, Kind::Floor)
    }
}

/// Everything needed to build the command lines against one database.
pub struct Target<'a> {
    /// PostgreSQL client binaries (`pg_dump`, …).
    pub bin_dir: &'a Path,
    /// Server port.
    pub port: u16,
    /// Database name.
    pub db: &'a str,
    /// Connection URL with the password, for the tool.
    pub url: &'a str,
    /// The pre-deploy binary.
    pub tool: &'a Path,
}

/// A command ready to run, plus where its output lands.
pub struct Built {
    /// argv, program first.
    pub argv: Vec<OsString>,
    /// The output file or store directory (None for the floor).
    pub output: Option<PathBuf>,
}

impl Target<'_> {
    fn pg_dump(&self) -> PathBuf {
        self.bin_dir.join("pg_dump")
    }

    fn conn(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// The argv for `kind`, writing its output at `out` (a file, or a fresh store directory
    /// for the tool).
    pub fn build(&self, kind: Kind, out: &Path) -> Built {
        let pg_dump = self.pg_dump().to_string_lossy().into_owned();
        let conn = self.conn();
        let mut argv: Vec<String> = Vec::new();
        let output = Some(out.to_path_buf());
        match kind {
            Kind::Floor => {
                argv.push(pg_dump);
                // --no-sync: PG 15's pg_dump fsyncs its output file, which fails on /dev/null.
                argv.extend(["-Fc", "-Z0", "--no-sync", "-f", "/dev/null"].map(String::from));
                argv.extend(conn);
                argv.extend(["-d".into(), self.db.into()]);
                return Built {
                    argv: argv.into_iter().map(OsString::from).collect(),
                    output: None,
                };
            }
            Kind::PgDumpDefault => {
                argv.push(pg_dump);
                argv.extend([
                    "-Fc".into(),
                    "-f".into(),
                    out.to_string_lossy().into_owned(),
                ]);
                argv.extend(conn);
                argv.extend(["-d".into(), self.db.into()]);
            }
            Kind::Seed => {
                let f = sh_quote(&out.to_string_lossy());
                let script = format!(
                    "{} {} -d {} | gzip -9 > {f} && gzip -t {f}",
                    sh_quote(&pg_dump),
                    conn.join(" "),
                    sh_quote(self.db)
                );
                argv.extend([
                    "bash".into(),
                    "-o".into(),
                    "pipefail".into(),
                    "-c".into(),
                    script,
                ]);
            }
            Kind::ShellRef => {
                let f = sh_quote(&out.to_string_lossy());
                let script = format!(
                    "{} -Fc -Z0 {} -d {} | zstd -3 | tee {f} | sha256sum",
                    sh_quote(&pg_dump),
                    conn.join(" "),
                    sh_quote(self.db)
                );
                argv.extend([
                    "bash".into(),
                    "-o".into(),
                    "pipefail".into(),
                    "-c".into(),
                    script,
                ]);
            }
            Kind::ToolChecksum | Kind::ToolDefault => {
                argv.push(self.tool.to_string_lossy().into_owned());
                argv.extend([
                    "backup".into(),
                    "--source".into(),
                    format!("db={}", self.url),
                    "--store".into(),
                    out.to_string_lossy().into_owned(),
                ]);
                if kind == Kind::ToolChecksum {
                    argv.extend(["--verify-level".into(), "checksum".into()]);
                }
                argv.push("--json".into());
            }
        }
        Built {
            argv: argv.into_iter().map(OsString::from).collect(),
            output,
        }
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

/// A command line for the report: quoted, password redacted.
pub fn display(argv: &[OsString]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|a| sh_quote(&crate::redact(&a.to_string_lossy())))
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/usr/bin/pg_dump"), "/usr/bin/pg_dump");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn builds_commands() {
        let t = Target {
            bin_dir: Path::new("/pg/bin"),
            port: 5433,
            db: "d2",
            url: "postgres://postgres:secret@127.0.0.1:5433/d2",
            tool: Path::new("/x/pre-deploy"),
        };
        let floor = t.build(Kind::Floor, Path::new("/tmp/unused"));
        assert!(floor.output.is_none());
        assert_eq!(
            display(&floor.argv),
            "/pg/bin/pg_dump -Fc -Z0 --no-sync -f /dev/null -h 127.0.0.1 -p 5433 -U postgres -d d2"
        );
        let seed = t.build(Kind::Seed, Path::new("/tmp/o/seed.sql.gz"));
        let script = seed.argv[4].to_string_lossy().into_owned();
        assert!(script.ends_with("| gzip -9 > /tmp/o/seed.sql.gz && gzip -t /tmp/o/seed.sql.gz"));
        let tool = t.build(Kind::ToolChecksum, Path::new("/tmp/o/store"));
        let shown = display(&tool.argv);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("--verify-level checksum --json"), "{shown}");
        let tool = t.build(Kind::ToolDefault, Path::new("/tmp/o/store"));
        assert!(!display(&tool.argv).contains("--verify-level"));
    }
}
