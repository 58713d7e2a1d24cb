//! The proof that a database has not changed since a backup, so that `run` can reuse that
//! backup (already restore-verified) instead of taking a new one.
//!
//! Every change to data or schema that a dump holds is written to the cluster's write-ahead
//! log first, so the WAL insert position moves with any write, in any database of the cluster,
//! by anyone (including autovacuum, and hint bits on clusters with data checksums). A backup
//! records a [`ChangeMark`]: the cluster's system identifier, the database's OID, the WAL
//! insert position, and a digest of every sequence's value. It records one only when the mark
//! read before the snapshot equals the mark read after the dump, so nothing was written while
//! it ran and the dump is the state at that position. A later mark equal to it proves that
//! nothing was written since.
//!
//! What would escape the WAL is excluded: a database with unlogged tables or sequences gets no
//! mark (writes to them are not logged), sequence increments that are pre-logged (up to 32
//! `nextval` calls write nothing) are caught by the sequence digest, and a standby (whose
//! position moves with its primary's writes, or stays while it lags) gets none either. The proof
//! fails safe: anything that moves the position, even a checkpoint after activity, a restart, or
//! a vacuum, means a new backup.

use serde::{Deserialize, Serialize};

use backup_core::{ChangeProof, Digest, Result, SourceManifest};

use crate::inspector::PgInspector;

/// The field of a PostgreSQL source's manifest entry holding its [`ChangeMark`].
pub const CHANGE_MARK_FIELD: &str = "change_mark";

/// Where a cluster's history stood when a database was read (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMark {
    /// `pg_control_system().system_identifier`: which cluster.
    pub system_identifier: String,
    /// The database's OID (a dropped and recreated database has another).
    pub database_oid: u32,
    /// `pg_current_wal_insert_lsn()`.
    pub wal_insert_lsn: String,
    /// SHA-256 of every sequence's name and value.
    pub sequences: Digest,
}

impl ChangeMark {
    /// The mark recorded in a backup's source entry, if any.
    pub fn of(source: &SourceManifest) -> Option<Self> {
        serde_json::from_value(source.extra.get(CHANGE_MARK_FIELD)?.clone()).ok()
    }

    /// What differs between `self` (recorded) and `now`, for the operator; `None` when equal.
    pub fn difference(&self, now: &ChangeMark) -> Option<String> {
        if self.system_identifier != now.system_identifier {
            Some("the source is another cluster than the one backed up".into())
        } else if self.database_oid != now.database_oid {
            Some("the database was dropped and created again".into())
        } else if self.wal_insert_lsn != now.wal_insert_lsn {
            Some(format!(
                "the cluster's write-ahead log moved from {} to {} (something was written)",
                self.wal_insert_lsn, now.wal_insert_lsn
            ))
        } else if self.sequences != now.sequences {
            Some("a sequence moved".into())
        } else {
            None
        }
    }
}

impl PgInspector {
    /// The database's [`ChangeMark`] now, or why it has none (a standby, unlogged objects, a
    /// role that may not read the cluster's identifier).
    ///
    /// # Errors
    ///
    /// When the connection fails.
    pub async fn change_mark(&self) -> Result<std::result::Result<ChangeMark, String>> {
        let row = self
            .client
            .query_one(
                "SELECT pg_is_in_recovery(),
                        (SELECT oid FROM pg_database WHERE datname = current_database()),
                        (SELECT count(*) FROM pg_class
                         WHERE relpersistence = 'u' AND relkind IN ('r', 'p', 'm', 'S')),
                        CASE WHEN pg_is_in_recovery() THEN NULL
                             ELSE pg_current_wal_insert_lsn()::text END",
                &[],
            )
            .await
            .map_err(|e| self.query_error("reading the write-ahead log position", &e))?;
        let (standby, oid, unlogged, lsn): (bool, u32, i64, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if standby {
            return Ok(Err("the source is a standby".into()));
        }
        if unlogged > 0 {
            return Ok(Err(format!(
                "the database has {unlogged} unlogged table(s) or sequence(s), whose writes leave no trace in the write-ahead log"
            )));
        }
        let system_identifier = match self
            .client
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .await
        {
            Ok(row) => row.get::<_, String>(0),
            Err(e) => {
                let why = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned());
                return Ok(Err(format!(
                    "the cluster's identifier cannot be read ({why}; grant pg_monitor to the backup user)"
                )));
            }
        };
        let mut sequences = backup_core::Sha256::new();
        for entry in self.sequence_values().await? {
            sequences.update(format!("{}\t{}\n", entry.object, entry.definition).as_bytes());
        }
        Ok(Ok(ChangeMark {
            system_identifier,
            database_oid: oid,
            wal_insert_lsn: lsn.unwrap_or_default(),
            sequences: sequences.finish(),
        }))
    }

    /// Whether the database is provably as it was when `previous` was backed up.
    ///
    /// # Errors
    ///
    /// When the connection fails.
    pub async fn unchanged_since(&self, previous: &SourceManifest) -> Result<ChangeProof> {
        let Some(then) = ChangeMark::of(previous) else {
            return Ok(ChangeProof::Changed(
                "that backup recorded no write-ahead log position (see its log, or an earlier version took it)".into(),
            ));
        };
        Ok(match self.change_mark().await? {
            Err(why) => ChangeProof::Changed(why),
            Ok(now) => match then.difference(&now) {
                None => ChangeProof::Unchanged,
                Some(why) => ChangeProof::Changed(why),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_mark_counts() {
        let mark = ChangeMark {
            system_identifier: "7301".into(),
            database_oid: 16384,
            wal_insert_lsn: "0/3000148".into(),
            sequences: Digest::of(b""),
        };
        assert_eq!(mark.difference(&mark.clone()), None);
        let moved = ChangeMark {
            wal_insert_lsn: "0/3000150".into(),
            ..mark.clone()
        };
        assert!(
            mark.difference(&moved)
                .expect("moved")
                .contains("0/3000150")
        );
        let sequence = ChangeMark {
            sequences: Digest::of(b"s\t2\n"),
            ..mark.clone()
        };
        assert!(
            mark.difference(&sequence)
                .expect("moved")
                .contains("sequence")
        );
        let recreated = ChangeMark {
            database_oid: 16385,
            ..mark.clone()
        };
        assert!(mark.difference(&recreated).is_some());
        let other = ChangeMark {
            system_identifier: "7302".into(),
            ..mark.clone()
        };
        assert!(mark.difference(&other).is_some());
    }
}
