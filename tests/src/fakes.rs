//! Client-tool directories for failure tests: the real PostgreSQL tools, except for a
//! `pg_dump` replaced by a script that misbehaves in a chosen way (dies mid-stream, writes
//! nothing, writes a damaged or incomplete archive, reports an old version, logs its arguments),
//! or a `pg_restore` that tampers with what it restored. Pointed to with `PREDEPLOY_PG_BINDIR`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::TempDir;

use crate::pg::PG15_BIN_DIR;

/// How the replacement `pg_dump` behaves (after answering `--version` like the real one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakePgDump {
    /// Runs the real pg_dump, passes on its first 64 KiB, then dies of SIGKILL.
    KilledMidStream,
    /// Exits 0 having written nothing.
    EmptyOutput,
    /// Claims to be pg_dump 9.6 (older than any server here).
    TooOld,
    /// Runs the real pg_dump, passes on its first 64 KiB, then creates [`STALLED_MARKER`] in the
    /// tool dir and hangs (to interrupt a backup mid-stream).
    Stalls,
    /// Runs the real pg_dump into a file, creates [`PAUSED_MARKER`] in the tool dir, waits until
    /// [`RESUME_MARKER`] exists there, then writes the whole archive: a backup held at a known
    /// point before anything is stored, for as long as the test needs.
    PausesUntilResumed,
    /// Runs the real pg_dump, but first appends its argv and `PGPASSWORD` presence to `args.log`.
    LogsArguments,
    /// Runs the real pg_dump, passes on its first [`CUT_SHORT_BYTES`], then exits 0 as if the
    /// archive were complete: a damaged archive that only reading it to the end reveals.
    CutShort,
    /// Runs the real pg_dump with `--exclude-table-data=TABLE`: a complete, readable archive
    /// whose table of contents lacks the data of a table the backup counted.
    WithoutDataOf(&'static str),
    /// Runs the real pg_dump to its end, then says it failed and exits 1: whatever it wrote
    /// (all the files of a directory-format dump) must not make a backup.
    FailsAtTheEnd,
}

/// The file [`FakePgDump::Stalls`] creates in its tool dir once it has passed on its 64 KiB.
pub const STALLED_MARKER: &str = "stalled";

/// The file [`FakePgDump::PausesUntilResumed`] creates in its tool dir once it has dumped.
pub const PAUSED_MARKER: &str = "paused";

/// The file that lets [`FakePgDump::PausesUntilResumed`] go on.
pub const RESUME_MARKER: &str = "resume";

/// How much of the real archive [`FakePgDump::CutShort`] passes on (past the table of contents
/// of any test database, inside its data).
pub const CUT_SHORT_BYTES: u64 = 1024 * 1024;

/// A temp dir with real `pg_dumpall`, `pg_restore`, `psql` and the chosen fake `pg_dump`.
///
/// # Panics
/// When the directory cannot be prepared.
#[must_use]
pub fn tool_dir(fake: FakePgDump) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgtools")
        .tempdir()
        .expect("temp dir");
    for tool in ["pg_dumpall", "pg_restore", "psql"] {
        std::os::unix::fs::symlink(Path::new(PG15_BIN_DIR).join(tool), dir.path().join(tool))
            .expect("symlink");
    }
    let real = Path::new(PG15_BIN_DIR).join("pg_dump");
    let real = real.display();
    let log = dir.path().join("args.log");
    let log = log.display();
    let version = format!("if [ \"$1\" = --version ]; then exec {real} --version; fi");
    let body = match fake {
        FakePgDump::KilledMidStream => {
            format!("{version}\n{real} \"$@\" | head -c 65536\nkill -9 $$\n")
        }
        FakePgDump::Stalls => format!(
            "{version}\n{real} \"$@\" | head -c 65536\ntouch {stalled}\nexec sleep 60\n",
            stalled = dir.path().join(STALLED_MARKER).display()
        ),
        FakePgDump::EmptyOutput => format!("{version}\nexit 0\n"),
        FakePgDump::TooOld => "echo 'pg_dump (PostgreSQL) 9.6.24'\nexit 0\n".to_owned(),
        FakePgDump::CutShort => {
            format!("{version}\n{real} \"$@\" | head -c {CUT_SHORT_BYTES}\nexit 0\n")
        }
        FakePgDump::FailsAtTheEnd => format!(
            "{version}\n{real} \"$@\" || exit $?\necho 'pg_dump: error: simulated failure after the last file' >&2\nexit 1\n"
        ),
        FakePgDump::WithoutDataOf(table) => {
            format!("{version}\nexec {real} --exclude-table-data={table} \"$@\"\n")
        }
        FakePgDump::PausesUntilResumed => format!(
            "{version}\n{real} \"$@\" > {dump} || exit $?\ntouch {paused}\nwhile [ ! -e {resume} ]; do sleep 0.1; done\nexec cat {dump}\n",
            dump = dir.path().join("dump.partial").display(),
            paused = dir.path().join(PAUSED_MARKER).display(),
            resume = dir.path().join(RESUME_MARKER).display(),
        ),
        FakePgDump::LogsArguments => format!(
            "{version}\necho \"argv: $*\" >> {log}\nif [ -n \"$PGPASSWORD\" ]; then echo 'PGPASSWORD set' >> {log}; fi\nexec {real} \"$@\"\n"
        ),
    };
    write_script(&dir.path().join("pg_dump"), &body);
    dir
}

/// How the replacement `pg_restore` of [`pg_restore_tool_dir`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakePgRestore {
    /// Restores faithfully (`--dbname=…`), then deletes one row of TABLE in the database it
    /// restored into. Every other use (`--version`, `--list`, a read to `--file=`) is the real one.
    DeletesARowOf(&'static str),
}

/// A temp dir with real `pg_dump`, `pg_dumpall` and `psql` and the chosen fake `pg_restore`.
///
/// # Panics
/// When the directory cannot be prepared.
#[must_use]
pub fn pg_restore_tool_dir(fake: FakePgRestore) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgtools")
        .tempdir()
        .expect("temp dir");
    for tool in ["pg_dump", "pg_dumpall", "psql"] {
        std::os::unix::fs::symlink(Path::new(PG15_BIN_DIR).join(tool), dir.path().join(tool))
            .expect("symlink");
    }
    let bin = PG15_BIN_DIR;
    let body = match fake {
        FakePgRestore::DeletesARowOf(table) => format!(
            "db=
for a in \"$@\"; do case \"$a\" in --dbname=*) db=${{a#--dbname=}};; esac; done
if [ -z \"$db\" ]; then exec {bin}/pg_restore \"$@\"; fi
{bin}/pg_restore \"$@\" || exit $?
exec {bin}/psql -X -q -v ON_ERROR_STOP=1 -d \"$db\" \\
  -c 'DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} LIMIT 1)' >/dev/null
"
        ),
    };
    write_script(&dir.path().join("pg_restore"), &body);
    dir
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
