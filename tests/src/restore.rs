//! Restoring a stored artifact the way an operator would without pre-deploy: `zstd -d`, then
//! plain `pg_restore` into a fresh database. Used to check backups independently of the tool.

use std::path::Path;

use crate::pg::PgServer;

/// Decompresses the zstd artifact `dump` and restores it with `pg_restore --exit-on-error -j 2`
/// into a new database named after `prefix`; returns the database name.
///
/// # Panics
/// When `zstd` or `pg_restore` fails, with their output.
pub fn restore_artifact(server: &PgServer, dump: &Path, prefix: &str) -> String {
    let raw = tempfile::NamedTempFile::new().expect("temp file");
    let status = std::process::Command::new("zstd")
        .args(["-q", "-d", "-f", "-o"])
        .arg(raw.path())
        .arg(dump)
        .status()
        .expect("zstd runs");
    assert!(status.success(), "{} is a valid zstd file", dump.display());
    let db = server.create_database(prefix);
    let out = server
        .client_command("pg_restore")
        // One job: parallel jobs of PostgreSQL 15's pg_restore can deadlock each other attaching
        // the indexes of nested partitions, which this independent check must not trip on.
        .args(["--exit-on-error", "-h"])
        .arg(server.socket_dir())
        .args([
            "-p",
            &server.port().to_string(),
            "-U",
            "postgres",
            "-d",
            &db,
        ])
        .arg(raw.path())
        .output()
        .expect("pg_restore runs");
    assert!(
        out.status.success(),
        "pg_restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

/// The stored dump of source `db` in backup `id` of a local store.
#[must_use]
pub fn dump_path(store: &Path, id: &str) -> std::path::PathBuf {
    store.join(format!("backups/{id}/data/db/dump.pgc.zst"))
}
