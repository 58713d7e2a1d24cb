//! What a store hands back: manifests, verification records, lock leases, bucket index lines,
//! backup ids, digests and source names. Any bytes give a value or an error, never a panic, and
//! whatever parses serialises again.
#![no_main]

use std::str::FromStr as _;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<backup_core::Manifest>(data) {
        let _ = m.artifacts().count();
        serde_json::to_vec(&m).expect("a parsed manifest serialises");
    }
    if let Ok(r) = serde_json::from_slice::<backup_core::VerificationRecord>(data) {
        serde_json::to_vec(&r).expect("a parsed record serialises");
    }
    if let Ok(l) = serde_json::from_slice::<backup_objectstore::Lease>(data) {
        serde_json::to_vec(&l).expect("a parsed lease serialises");
    }
    if let Ok(e) = serde_json::from_slice::<backup_objectstore::bucket::IndexEntry>(data) {
        let _ = e.to_line();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = backup_core::BackupId::from_str(text);
        let _ = backup_core::SourceName::from_str(text);
        let _ = backup_core::Digest::from_str(text);
        let _ = backup_core::VerificationLevel::from_str(text);
        let _ = backup_postgres::SchemaListing::parse(text);
        let _ = backup_mysql::MysqlSchemaListing::parse(text);
    }
});
