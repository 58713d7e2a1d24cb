//! The store's key layout. Every key the tool writes is built here, so the layout is in one place:
//!
//! ```text
//! backups/<id>/manifest.json              commit marker, written last, never rewritten
//! backups/<id>/data/<source>/<file>       artifacts
//! backups/<id>/verify/<timestamp>.json    verification records, append-only
//! ```
//!
//! Keys are relative to the store's own prefix and never contain secrets.

use jiff::Timestamp;

use crate::id::{BackupId, SourceName};

/// The directory holding every backup.
pub const BACKUPS_DIR: &str = "backups/";

/// `backups/<id>/`: everything belonging to one backup.
pub fn backup_prefix(id: &BackupId) -> String {
    format!("{BACKUPS_DIR}{id}/")
}

/// `backups/<id>/manifest.json`.
pub fn manifest_key(id: &BackupId) -> String {
    format!("{BACKUPS_DIR}{id}/manifest.json")
}

/// `backups/<id>/data/<source>/<file>`.
pub fn artifact_key(id: &BackupId, source: &SourceName, file: &str) -> String {
    format!("{BACKUPS_DIR}{id}/data/{source}/{file}")
}

/// `backups/<id>/verify/`.
pub fn verification_prefix(id: &BackupId) -> String {
    format!("{BACKUPS_DIR}{id}/verify/")
}

/// `backups/<id>/verify/<UTC time with microseconds>.json`; sorts by time.
pub fn verification_key(id: &BackupId, at: Timestamp) -> String {
    format!(
        "{}{}.json",
        verification_prefix(id),
        at.strftime("%Y%m%dT%H%M%S%.6fZ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let t: Timestamp = "2026-11-22T03:15:00.25Z".parse().expect("time");
        let id = BackupId::from_parts(t, [0x7f, 0x3a, 0x9c]);
        let db: SourceName = "db".parse().expect("name");
        assert_eq!(
            manifest_key(&id),
            "backups/20261122T031500Z-7f3a9c/manifest.json"
        );
        assert_eq!(
            artifact_key(&id, &db, "dump.pgc.zst"),
            "backups/20261122T031500Z-7f3a9c/data/db/dump.pgc.zst"
        );
        assert_eq!(
            verification_key(&id, t),
            "backups/20261122T031500Z-7f3a9c/verify/20261122T031500.250000Z.json"
        );
    }
}
