//! The measured commands: the baselines of `shared/docs/BENCHMARKS.md` and the tool, for the
//! backup section and the verification section.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use benches::{display, sh_quote};

use crate::Res;

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
    /// Level 4 by hand: `zstd -dc DUMP > f && createdb S && pg_restore -j2 --exit-on-error
    /// --no-owner --no-privileges -d S f && psql -c 'select count(*) …' S`, then `dropdb S` (also
    /// on failure) and `rm f`.
    ShellRestore,
    /// `pre-deploy verify ID --level restore --source db=URL`: the tool's level 4.
    ToolVerifyRestore,
    /// Levels 1–3 by hand: `sha256sum DUMP && zstd -t DUMP && zstd -dc DUMP | pg_restore -l >
    /// /dev/null && zstd -dc DUMP | pg_restore -f /dev/null`.
    ShellArchive,
    /// `pre-deploy verify ID --level archive`: the tool's levels 1–3.
    ToolVerifyArchive,
}

/// The two sections of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// `pre-deploy backup` against the backup baselines.
    Backup,
    /// `pre-deploy verify` against the shell equivalents.
    Verify,
}

impl Section {
    /// The name used by `--only` and in the report.
    pub fn key(self) -> &'static str {
        match self {
            Section::Backup => "backup",
            Section::Verify => "verify",
        }
    }
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

/// The order in which every round of the verification section runs its commands. Each pair
/// (tool, shell) alternates from round to round, and each test restore follows a run that does
/// not touch the server (levels 1–3), so neither restore inherits the other's server work.
pub const VERIFY_ROUND_ORDER: [Kind; 4] = [
    Kind::ToolVerifyRestore,
    Kind::ShellArchive,
    Kind::ShellRestore,
    Kind::ToolVerifyArchive,
];

/// The name of the scratch database of the shell level-4 baseline. Deliberately not the tool's
/// `predeploy_scratch_` prefix: the tool drops unlabelled databases with that prefix as
/// leftovers.
pub const SHELL_SCRATCH_DB: &str = "bench_verify_scratch";

/// The tables whose rows the shell level-4 baseline counts (the mixed dataset's).
pub const COUNTED_TABLES: [&str; 2] = ["events", "docs"];

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
            Kind::ShellRestore => "shell_restore",
            Kind::ToolVerifyRestore => "tool_verify_restore",
            Kind::ShellArchive => "shell_archive",
            Kind::ToolVerifyArchive => "tool_verify_archive",
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
            Kind::ShellRestore => {
                "shell level 4 (zstd -dc > f; createdb; pg_restore -j2; count(*); dropdb)"
            }
            Kind::ToolVerifyRestore => "**tool** verify --level restore",
            Kind::ShellArchive => {
                "shell levels 1–3 (sha256sum; zstd -t; zstd -dc | pg_restore -l; zstd -dc | \
                 pg_restore -f /dev/null)"
            }
            Kind::ToolVerifyArchive => "**tool** verify --level archive",
        }
    }

    /// Whether this is a run of pre-deploy.
    pub fn is_tool(self) -> bool {
        matches!(
            self,
            Kind::ToolChecksum
                | Kind::ToolDefault
                | Kind::ToolVerifyRestore
                | Kind::ToolVerifyArchive
        )
    }

    /// Whether the command is a shell pipeline or script (its `%M` is the largest of the shell
    /// and every stage, so it is not reported).
    pub fn is_pipeline(self) -> bool {
        matches!(
            self,
            Kind::Seed | Kind::ShellRef | Kind::ShellRestore | Kind::ShellArchive
        )
    }

    /// Whether the command writes an output file whose size is reported.
    pub fn has_output(self) -> bool {
        self.section() == Section::Backup && !matches!(self, Kind::Floor)
    }

    /// The section the command belongs to.
    pub fn section(self) -> Section {
        match self {
            Kind::ShellRestore
            | Kind::ToolVerifyRestore
            | Kind::ShellArchive
            | Kind::ToolVerifyArchive => Section::Verify,
            _ => Section::Backup,
        }
    }

    /// For a verification command: the command it is compared with (tool ↔ shell equivalent).
    pub fn verify_counterpart(self) -> Option<Kind> {
        match self {
            Kind::ShellRestore => Some(Kind::ToolVerifyRestore),
            Kind::ToolVerifyRestore => Some(Kind::ShellRestore),
            Kind::ShellArchive => Some(Kind::ToolVerifyArchive),
            Kind::ToolVerifyArchive => Some(Kind::ShellArchive),
            _ => None,
        }
    }

    /// For a tool verification command: the `--level` it asks for.
    pub fn verify_level(self) -> Option<&'static str> {
        match self {
            Kind::ToolVerifyRestore => Some("restore"),
            Kind::ToolVerifyArchive => Some("archive"),
            _ => None,
        }
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
    /// What the verification commands work on (None: backup section only).
    pub verify: Option<VerifyInputs<'a>>,
}

/// The inputs of the verification commands: a backup the tool took of the dataset earlier in
/// the run.
#[derive(Debug, Clone, Copy)]
pub struct VerifyInputs<'a> {
    /// The tool's store holding the backup.
    pub store: &'a Path,
    /// The backup's id.
    pub id: &'a str,
    /// Its database artifact, `STORE/backups/ID/data/db/dump.pgc.zst`.
    pub dump: &'a Path,
    /// Where the shell level-4 baseline decompresses the archive (`tmp.pgc`).
    pub staging: &'a Path,
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
    /// for the tool; ignored by the verification commands, which write nothing that stays).
    pub fn build(&self, kind: Kind, out: &Path) -> Res<Built> {
        if kind.section() == Section::Verify {
            let v = self
                .verify
                .ok_or_else(|| format!("{}: no backup to verify", kind.key()))?;
            return Ok(self.build_verify(kind, &v));
        }
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
                return Ok(Built {
                    argv: argv.into_iter().map(OsString::from).collect(),
                    output: None,
                });
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
            Kind::ShellRestore
            | Kind::ToolVerifyRestore
            | Kind::ShellArchive
            | Kind::ToolVerifyArchive => {
                return Err(format!("{} is not a backup command", kind.key()).into());
            }
        }
        Ok(Built {
            argv: argv.into_iter().map(OsString::from).collect(),
            output,
        })
    }

    /// The argv of a verification command.
    fn build_verify(&self, kind: Kind, v: &VerifyInputs<'_>) -> Built {
        let bin = |name: &str| sh_quote(&self.bin_dir.join(name).to_string_lossy());
        let conn = self.conn().join(" ");
        let dump = sh_quote(&v.dump.to_string_lossy());
        let mut argv: Vec<String> = Vec::new();
        match kind {
            Kind::ToolVerifyRestore | Kind::ToolVerifyArchive => {
                argv.push(self.tool.to_string_lossy().into_owned());
                argv.extend([
                    "verify".into(),
                    v.id.into(),
                    "--level".into(),
                    kind.verify_level().unwrap_or("restore").into(),
                    "--store".into(),
                    v.store.to_string_lossy().into_owned(),
                ]);
                if kind == Kind::ToolVerifyRestore {
                    argv.extend(["--source".into(), format!("db={}", self.url)]);
                }
                argv.push("--json".into());
            }
            Kind::ShellRestore => {
                // The brief's command line, plus: `psql -X -A -t` (no psqlrc; bare numbers, which
                // the runner compares with the source's counts) and a `dropdb` that also runs
                // when a step failed, keeping the first failure's exit status.
                let f = sh_quote(&v.staging.to_string_lossy());
                let s = SHELL_SCRATCH_DB;
                let counts: Vec<String> = COUNTED_TABLES
                    .iter()
                    .map(|t| format!("-c 'select count(*) from {t}'"))
                    .collect();
                let script = format!(
                    "rc=0; zstd -q -dc {dump} > {f} && {createdb} {conn} {s} && \
                     {pg_restore} {conn} -j2 --exit-on-error --no-owner --no-privileges -d {s} {f} && \
                     {psql} -X -A -t {conn} {counts} -d {s} || rc=$?; \
                     if ! {dropdb} {conn} --if-exists {s}; then [ $rc -ne 0 ] || rc=1; fi; \
                     rm -f {f}; exit $rc",
                    createdb = bin("createdb"),
                    pg_restore = bin("pg_restore"),
                    psql = bin("psql"),
                    dropdb = bin("dropdb"),
                    counts = counts.join(" "),
                );
                argv.extend(["bash".into(), "-c".into(), script]);
            }
            Kind::ShellArchive => {
                // No pipefail for `pg_restore -l`: it stops reading once it has the table of
                // contents, so zstd dies of SIGPIPE on any archive larger than a pipe buffer.
                // The full read that follows does get pipefail.
                let pg_restore = bin("pg_restore");
                let script = format!(
                    "sha256sum {dump} && zstd -q -t {dump} && \
                     zstd -q -dc {dump} | {pg_restore} -l > /dev/null && \
                     set -o pipefail && zstd -q -dc {dump} | {pg_restore} -f /dev/null"
                );
                argv.extend(["bash".into(), "-c".into(), script]);
            }
            _ => {}
        }
        Built {
            argv: argv.into_iter().map(OsString::from).collect(),
            output: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_commands() {
        let t = Target {
            bin_dir: Path::new("/pg/bin"),
            port: 5433,
            db: "d2",
            url: "postgres://postgres:secret@127.0.0.1:5433/d2",
            tool: Path::new("/x/pre-deploy"),
            verify: None,
        };
        let build = |kind: Kind, out: &str| t.build(kind, Path::new(out)).expect("builds");
        let floor = build(Kind::Floor, "/tmp/unused");
        assert!(floor.output.is_none());
        assert_eq!(
            display(&floor.argv),
            "/pg/bin/pg_dump -Fc -Z0 --no-sync -f /dev/null -h 127.0.0.1 -p 5433 -U postgres -d d2"
        );
        let seed = build(Kind::Seed, "/tmp/o/seed.sql.gz");
        let script = seed.argv[4].to_string_lossy().into_owned();
        assert!(script.ends_with("| gzip -9 > /tmp/o/seed.sql.gz && gzip -t /tmp/o/seed.sql.gz"));
        let tool = build(Kind::ToolChecksum, "/tmp/o/store");
        let shown = display(&tool.argv);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("--verify-level checksum --json"), "{shown}");
        let tool = build(Kind::ToolDefault, "/tmp/o/store");
        assert!(!display(&tool.argv).contains("--verify-level"));
        assert!(t.build(Kind::ShellRestore, Path::new("/x")).is_err());
    }

    #[test]
    fn builds_verify_commands() {
        let t = Target {
            bin_dir: Path::new("/pg/bin"),
            port: 5433,
            db: "d2",
            url: "postgres://postgres:secret@127.0.0.1:5433/d2",
            tool: Path::new("/x/pre-deploy"),
            verify: Some(VerifyInputs {
                store: Path::new("/w/store"),
                id: "ID1",
                dump: Path::new("/w/store/backups/ID1/data/db/dump.pgc.zst"),
                staging: Path::new("/w/tmp.pgc"),
            }),
        };
        let build = |kind: Kind| t.build(kind, Path::new("/unused")).expect("builds");
        let restore = build(Kind::ToolVerifyRestore);
        assert!(restore.output.is_none());
        assert_eq!(
            display(&restore.argv),
            "/x/pre-deploy verify ID1 --level restore --store /w/store \
             --source 'db=postgres://postgres:***@127.0.0.1:5433/d2' --json"
        );
        let archive = display(&build(Kind::ToolVerifyArchive).argv);
        assert_eq!(
            archive,
            "/x/pre-deploy verify ID1 --level archive --store /w/store --json"
        );
        let shell = build(Kind::ShellRestore);
        assert_eq!(shell.argv[0], "bash");
        let script = shell.argv[2].to_string_lossy().into_owned();
        assert!(
            script.starts_with(
                "rc=0; zstd -q -dc /w/store/backups/ID1/data/db/dump.pgc.zst > /w/tmp.pgc && \
                 /pg/bin/createdb -h 127.0.0.1 -p 5433 -U postgres bench_verify_scratch && \
                 /pg/bin/pg_restore -h 127.0.0.1 -p 5433 -U postgres -j2 --exit-on-error \
                 --no-owner --no-privileges -d bench_verify_scratch /w/tmp.pgc && "
            ),
            "{script}"
        );
        assert!(
            script.contains("-c 'select count(*) from events' -c 'select count(*) from docs'"),
            "{script}"
        );
        assert!(
            script.ends_with(
                "|| rc=$?; if ! /pg/bin/dropdb -h 127.0.0.1 -p 5433 -U postgres --if-exists \
                 bench_verify_scratch; then [ $rc -ne 0 ] || rc=1; fi; rm -f /w/tmp.pgc; exit $rc"
            ),
            "{script}"
        );
        let shell = build(Kind::ShellArchive);
        assert_eq!(
            shell.argv[2].to_string_lossy(),
            "sha256sum /w/store/backups/ID1/data/db/dump.pgc.zst && zstd -q -t \
             /w/store/backups/ID1/data/db/dump.pgc.zst && zstd -q -dc \
             /w/store/backups/ID1/data/db/dump.pgc.zst | /pg/bin/pg_restore -l > /dev/null && \
             set -o pipefail && zstd -q -dc /w/store/backups/ID1/data/db/dump.pgc.zst | \
             /pg/bin/pg_restore -f /dev/null"
        );
        assert!(t.build(Kind::Floor, Path::new("/x")).is_ok());
    }

    #[test]
    fn verify_pairs() {
        for k in VERIFY_ROUND_ORDER {
            assert_eq!(k.section(), Section::Verify);
            let other = k.verify_counterpart().expect("paired");
            assert_eq!(other.verify_counterpart(), Some(k));
            assert_ne!(k.is_tool(), other.is_tool());
            assert!(!k.has_output());
        }
        for k in ROUND_ORDER {
            assert_eq!(k.section(), Section::Backup);
            assert!(k.verify_counterpart().is_none());
        }
    }
}
