//! Validated identifiers: [`BackupId`] and [`SourceName`].

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The id of one backup: its UTC creation time to the second plus a suffix, e.g.
/// `20261122T031500Z-7f3a9c`. The suffix's first byte is the 1/256-second slot of the creation
/// time and the other two are random, so that backups taken within one second (a backup and
/// the safety backup of a rollback, say) still sort in the order they were created.
///
/// Ids sort by creation time as plain strings, read well in a terminal, and are safe as a path
/// or key segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

const ID_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl BackupId {
    /// A new id for a backup created at `now`: its sub-second slot, then fresh random bytes.
    pub fn new(now: Timestamp) -> Self {
        let nanos = now.subsec_nanosecond().unsigned_abs();
        let mut random = [0u8; 2];
        // The random bytes only separate backups started in the same 1/256 s; if the OS has no
        // randomness to give, the time-derived fallback still makes such a clash unlikely.
        if getrandom::fill(&mut random).is_err() {
            let mixed = nanos ^ std::process::id();
            random.copy_from_slice(&mixed.to_le_bytes()[..2]);
        }
        let slot = (u64::from(nanos) * 256 / 1_000_000_000) as u8;
        Self::from_parts(now, [slot, random[0], random[1]])
    }

    /// The id for `now` with a given suffix (deterministic; for tests and fixtures).
    pub fn from_parts(now: Timestamp, suffix: [u8; 3]) -> Self {
        let time = now.strftime(ID_TIME_FORMAT);
        BackupId(format!("{time}-{}", hex::encode(suffix)))
    }

    /// The creation time encoded in the id (to the second).
    pub fn timestamp(&self) -> Timestamp {
        // Validated at construction, so parsing cannot fail.
        parse_id_time(&self.0[..16]).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses `20261122T031500Z` as a UTC time.
fn parse_id_time(s: &str) -> Option<Timestamp> {
    let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S", s.strip_suffix('Z')?).ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl FromStr for BackupId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Invalid {
            what: "backup id",
            value: s.to_owned(),
            reason: format!("{reason} (expected the form 20261122T031500Z-7f3a9c)"),
        };
        let b = s.as_bytes();
        if b.len() != 23 {
            return Err(invalid("wrong length"));
        }
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if !(digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'Z' && b[16] == b'-') {
            return Err(invalid("the time part is malformed"));
        }
        if !b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        {
            return Err(invalid("the suffix must be 6 lowercase hex digits"));
        }
        if parse_id_time(&s[..16]).is_none() {
            return Err(invalid("the time part is not a valid UTC time"));
        }
        Ok(BackupId(s.to_owned()))
    }
}

impl TryFrom<String> for BackupId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a source within a backup (`db`, `uploads`): lowercase ASCII letters, digits,
/// `-` and `_`, starting with a letter, at most 63 characters. It is used as a key segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceName(String);

impl SourceName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SourceName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
        if ok {
            Ok(SourceName(s.to_owned()))
        } else {
            Err(Error::Invalid {
                what: "source name",
                value: s.to_owned(),
                reason: "use lowercase letters, digits, '-' and '_', starting with a letter".into(),
            })
        }
    }
}

impl TryFrom<String> for SourceName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<SourceName> for String {
    fn from(n: SourceName) -> String {
        n.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_within_one_second_sort_in_creation_order() {
        let t: Timestamp = "2026-11-22T03:15:00Z".parse().expect("time");
        let mut previous = BackupId::new(t);
        for ms in [5i64, 10, 300, 999] {
            let id = BackupId::new(t + jiff::SignedDuration::from_millis(ms));
            assert!(previous < id, "{previous} then {id}");
            assert_eq!(id.timestamp(), t, "still the same second");
            previous = id;
        }
    }

    #[test]
    fn id_reads_and_sorts_by_time() {
        let t: Timestamp = "2026-11-22T03:15:00Z".parse().expect("valid time");
        let id = BackupId::from_parts(t, [0x7f, 0x3a, 0x9c]);
        assert_eq!(id.as_str(), "20261122T031500Z-7f3a9c");
        assert_eq!(id.timestamp(), t);
        let later = BackupId::from_parts(t + jiff::SignedDuration::from_secs(1), [0, 0, 0]);
        assert!(later > id);
    }

    #[test]
    fn malformed_ids_are_rejected_with_the_expected_form() {
        for bad in [
            "",
            "20261122T031500Z",
            "20261122T031500Z-7F3A9C",
            "20261322T031500Z-7f3a9c",
            "../etc/passwd1234567890",
        ] {
            let err = bad.parse::<BackupId>().expect_err(bad).to_string();
            assert!(err.contains("20261122T031500Z-7f3a9c"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn id_round_trips(secs in 0i64..4_000_000_000, suffix in any::<[u8; 3]>()) {
            let t = Timestamp::from_second(secs).expect("in range");
            let id = BackupId::from_parts(t, suffix);
            let parsed: BackupId = id.as_str().parse().expect("own ids parse");
            prop_assert_eq!(&parsed, &id);
            prop_assert_eq!(parsed.timestamp(), t);
            let json = serde_json::to_string(&id).expect("serializes");
            prop_assert_eq!(serde_json::from_str::<BackupId>(&json).expect("deserializes"), id);
        }

        #[test]
        fn source_names_never_contain_path_separators(s in ".{0,70}") {
            if let Ok(n) = s.parse::<SourceName>() {
                prop_assert!(!n.as_str().contains('/') && !n.as_str().contains(".."));
            }
        }
    }
}
