//! Test data: the "varied" database and the benchmark datasets.

use std::path::PathBuf;

use crate::pg::PgServer;

/// SQL that builds the "varied" database used by round-trip tests (run it with
/// [`PgServer::psql`] or [`load_varied`]). Deterministic: two loads give the same
/// [`table_checksums`](crate::compare::table_checksums).
///
/// It has the schemas `public`, `billing` and `ünïcødé`; enum, composite and domain types;
/// jsonb, bytea (including 4 KiB holding every byte value), int and text arrays, numeric with
/// large precision, timestamptz, uuid, interval and float columns; non-ASCII tables and columns
/// (`ünïcødé.Bestellungen`, `größe`, `public.商品`); a 100 KiB large object with oid
/// [`VARIED_LARGE_OBJECT_OID`]; a range-partitioned table with rows in every partition; views, a
/// materialized view, plpgsql functions, an audit trigger, sequences (one advanced with
/// `setval`, one set with `is_called = false`), foreign keys, check constraints, indexes,
/// comments, NULLs and empty strings; no extensions.
pub const VARIED_SCHEMA_SQL: &str = include_str!("../fixtures/varied_schema.sql");

/// The oid of the large object created by [`VARIED_SCHEMA_SQL`].
pub const VARIED_LARGE_OBJECT_OID: u32 = 424_242;

/// Size in bytes of the large object created by [`VARIED_SCHEMA_SQL`].
pub const VARIED_LARGE_OBJECT_BYTES: i64 = 102_400;

/// Row count of every table of the varied database, keyed like
/// [`table_checksums`](crate::compare::table_checksums) (without the large objects entry).
pub const VARIED_ROW_COUNTS: &[(&str, i64)] = &[
    ("billing.audit_log", 510),
    ("billing.invoices", 500),
    ("public.binaries", 5),
    ("public.customers", 1000),
    ("public.measurements", 900),
    ("public.measurements_2024_h1", 360),
    ("public.measurements_2024_h2", 360),
    ("public.measurements_other", 180),
    ("public.orders", 2000),
    ("public.status_counts", 5),
    ("public.tickets", 20),
    ("public.types_galore", 200),
    ("public.商品", 50),
    ("ünïcødé.Bestellungen", 300),
];

/// Loads [`VARIED_SCHEMA_SQL`] into `db` of `server`.
///
/// # Panics
/// When the SQL fails.
pub fn load_varied(server: &PgServer, db: &str) {
    server.psql(db, VARIED_SCHEMA_SQL);
}

/// SQL that builds the "fidelity" database: objects a restore must bring back that
/// [`VARIED_SCHEMA_SQL`] covers thinly. Objects owned by a non-superuser role with grants, column
/// grants and default privileges; forced row-level security with policies; partitioned tables
/// (two levels) with foreign keys to and from them; table inheritance; unlogged tables;
/// deferrable and circular foreign keys; a `NOT VALID` check; identifiers needing quotes; a
/// collation, an exclusion constraint and a statistics object; values over 1 MB in a column and
/// in large objects (with a comment and a grant); a rule, an event trigger, a publication, a text
/// search configuration; the contrib extensions pgcrypto and hstore. Its roles
/// (`predeploy_fx_*`) are created when missing.
pub const FIDELITY_SCHEMA_SQL: &str = include_str!("../fixtures/fidelity_schema.sql");

/// Loads [`FIDELITY_SCHEMA_SQL`] into `db` of `server` (PostgreSQL 15 with contrib).
///
/// # Panics
/// When the SQL fails.
pub fn load_fidelity(server: &PgServer, db: &str) {
    server.psql(db, FIDELITY_SCHEMA_SQL);
}

/// The D2 ("mixed") dataset script, `../shared/data/mixed_dataset.sql` relative to the workspace
/// root; `None` when it is not there. Run it with
/// [`PgServer::psql_file`] and `-v rows=N`; it needs the `pgcrypto` extension (contrib).
#[must_use]
pub fn mixed_dataset_sql() -> Option<PathBuf> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mixed_dataset.sql");
    path.canonicalize().ok().filter(|p| p.is_file())
}
