//! Client-tool directories for failure tests: the real PostgreSQL tools, except for a
//! `pg_dump` replaced by a script that misbehaves in a chosen way (dies mid-stream, writes
//! nothing, reports an old version, logs its arguments). Pointed to with `PREDEPLOY_PG_BINDIR`.

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
    /// Runs the real pg_dump, passes on its first 64 KiB, then hangs (to interrupt a backup).
    Stalls,
    /// Runs the real pg_dump, but first appends its argv and `PGPASSWORD` presence to `args.log`.
    LogsArguments,
}

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
        FakePgDump::Stalls => format!("{version}\n{real} \"$@\" | head -c 65536\nexec sleep 60\n"),
        FakePgDump::EmptyOutput => format!("{version}\nexit 0\n"),
        FakePgDump::TooOld => "echo 'pg_dump (PostgreSQL) 9.6.24'\nexit 0\n".to_owned(),
        FakePgDump::LogsArguments => format!(
            "{version}\necho \"argv: $*\" >> {log}\nif [ -n \"$PGPASSWORD\" ]; then echo 'PGPASSWORD set' >> {log}; fi\nexec {real} \"$@\"\n"
        ),
    };
    let script = dir.path().join("pg_dump");
    std::fs::write(&script, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}
