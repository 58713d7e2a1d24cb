//! The store's key layout. Every key the tool writes is built here, so the layout is in one place:
//!
//! ```text
//! backups/<id>/manifest.json              commit marker, written last, never rewritten
//! backups/<id>/data/<source>/<file>       artifacts
//! backups/<id>/verify/<timestamp>.json    verification records, append-only
//! pins/<id>.json                          a pin (`pre-deploy pin`): the backup is never pruned
//! deployments/<env>/<timestamp>.json      a successful deploy (`run`): commit and backup, append-only
//! blobs/sha256/<2 hex>/<64 hex>            content-addressed bucket objects, shared by backups
//! blobs/sealed/<2 hex>/<64 hex>            the same, encrypted, named by a keyed hash (see sealed_blobs)
//! keys/blob-names/<recipient set>.age      the secret naming sealed blobs, encrypted to the recipients
//! ```
//!
//! Pins and deployment records live outside `backups/<id>/` because a manifest is never
//! rewritten and a backup's directory is removed as a unit. `<env>` is the environment name when
//! it is a safe key segment (letters, digits, `.`, `_`, `-`, not starting with `.`, at most 64
//! characters), else `hex-` followed by its bytes in hex ([`env_segment`]).
//!
//! Keys are relative to the store's own prefix and never contain secrets.

use jiff::Timestamp;

use crate::digest::Digest;
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

/// The directory holding content-addressed blobs (bucket and directory objects).
pub const BLOBS_DIR: &str = "blobs/sha256/";

/// The directory holding every kind of blob (`blobs/sha256/`, `blobs/sealed/`).
pub const BLOBS_ROOT: &str = "blobs/";

/// The directory holding sealed (encrypted) blobs, named by a keyed hash of their plaintext.
pub const SEALED_BLOBS_DIR: &str = "blobs/sealed/";

/// `blobs/sealed/<first 2 hex>/<64 hex>`: the sealed blob named `name_hex` (64 hex digits of a
/// keyed hash, see [`crate::sealed_blobs`]).
pub fn sealed_blob_key(name_hex: &str) -> String {
    format!("{SEALED_BLOBS_DIR}{}/{name_hex}", &name_hex[..2])
}

/// Whether `key` is a sealed blob's key (`blobs/sealed/<2 hex>/<64 hex>`).
pub fn is_sealed_blob_key(key: &str) -> bool {
    key.strip_prefix(SEALED_BLOBS_DIR)
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(dir, hex)| {
            hex.len() == 64
                && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                && hex.get(..2) == Some(dir)
        })
}

/// `keys/blob-names/<set id>.age`: the secret that names the sealed blobs of the recipient set
/// `set_id`, encrypted to those recipients.
pub fn blob_name_key_key(set_id: &str) -> String {
    format!("keys/blob-names/{set_id}.age")
}

/// `blobs/sha256/<first 2 hex>/<64 hex>`: the blob holding the bytes whose SHA-256 is `digest`.
pub fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{BLOBS_DIR}{}/{hex}", &hex[..2])
}

/// The digest a blob key names, when `key` is one (the inverse of [`blob_key`]).
pub fn blob_digest(key: &str) -> Option<Digest> {
    let rest = key.strip_prefix(BLOBS_DIR)?;
    let (dir, hex) = rest.split_once('/')?;
    let digest: Digest = format!("sha256:{hex}").parse().ok()?;
    (hex.get(..2) == Some(dir)).then_some(digest)
}

/// The directory holding pins.
pub const PINS_DIR: &str = "pins/";

/// `pins/<id>.json`: the pin of backup `id`.
pub fn pin_key(id: &BackupId) -> String {
    format!("{PINS_DIR}{id}.json")
}

/// The backup a pin key names, when `key` is one.
pub fn pin_id(key: &str) -> Option<BackupId> {
    key.strip_prefix(PINS_DIR)?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// The directory holding deployment records.
pub const DEPLOYMENTS_DIR: &str = "deployments/";

/// `deployments/<env>/`: the deployment records of one environment.
pub fn deployments_prefix(environment: &str) -> String {
    format!("{DEPLOYMENTS_DIR}{}/", env_segment(environment))
}

/// `deployments/<env>/<UTC time with microseconds>.json`; sorts by time.
pub fn deployment_key(environment: &str, at: Timestamp) -> String {
    format!(
        "{}{}.json",
        deployments_prefix(environment),
        at.strftime("%Y%m%dT%H%M%S%.6fZ")
    )
}

/// An environment name as one key segment: the name itself when it is safe (ASCII letters,
/// digits, `.`, `_`, `-`, not starting with `.` or `hex-`, 1–64 characters), else `hex-` and
/// the name's bytes in hex, so no name can reach outside its directory.
pub fn env_segment(environment: &str) -> String {
    let safe = !environment.is_empty()
        && environment.len() <= 64
        && !environment.starts_with('.')
        && !environment.starts_with("hex-")
        && environment
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if safe {
        environment.to_owned()
    } else {
        format!("hex-{}", hex::encode(environment.as_bytes()))
    }
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
        assert_eq!(pin_key(&id), "pins/20261122T031500Z-7f3a9c.json");
        let d = Digest::of(b"abc");
        assert_eq!(
            blob_key(&d),
            "blobs/sha256/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(blob_digest(&blob_key(&d)), Some(d));
        assert_eq!(
            blob_digest(
                "blobs/sha256/00/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ),
            None
        );
        assert_eq!(blob_digest("blobs/sha256/ba/x"), None);
        assert_eq!(pin_id(&pin_key(&id)), Some(id));
        assert_eq!(pin_id("pins/README.txt"), None);
        assert_eq!(
            deployment_key("production", t),
            "deployments/production/20261122T031500.250000Z.json"
        );
    }

    #[test]
    fn environment_names_never_escape_their_directory() {
        assert_eq!(env_segment("staging-2"), "staging-2");
        for hostile in ["", ".", "..", "../x", "a/b", "hex-41", "é", &"x".repeat(65)] {
            let seg = env_segment(hostile);
            assert!(seg.starts_with("hex-"), "{hostile:?} -> {seg}");
            assert!(!seg.contains('/') && seg != "." && seg != "..");
        }
        assert_ne!(env_segment("hex-41"), env_segment("A"));
    }
}
