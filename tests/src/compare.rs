//! Comparing databases by content: per-table checksums, large objects, sequence positions and a
//! normalized schema dump. A restore is right when all of them match the source.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::pg::{PgServer, SUPERUSER};

/// Key of the [`table_checksums`] entry that covers every large object.
pub const LARGE_OBJECTS_KEY: &str = "<large objects>";

/// Session settings that make the text rendering of rows independent of the server's defaults.
const RENDER_SETTINGS: &str = "set timezone = 'UTC';\n\
    set datestyle = 'ISO, YMD';\n\
    set intervalstyle = 'postgres';\n\
    set extra_float_digits = 1;\n\
    set bytea_output = 'hex';\n\
    set lc_monetary = 'C';\n\
    set statement_timeout = 0;\n";

/// Row count and content checksum of one table (or of all large objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSum {
    /// Number of rows (of large objects for [`LARGE_OBJECTS_KEY`]).
    pub rows: i64,
    /// Hex md5 over the rows, independent of their physical order.
    pub md5: String,
}

/// Position of one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqValue {
    /// `last_value` of the sequence.
    pub last_value: i64,
    /// `is_called`: whether `nextval` returns `last_value + increment` (true) or `last_value`.
    pub is_called: bool,
}

/// Per-table content checksums of every user table of `db`, keyed by `"schema.table"` (names
/// unquoted, as they are in the catalog).
///
/// Covers ordinary tables, partitions, partitioned tables (all rows of their partitions) and
/// populated materialized views, in every schema except `pg_*` and `information_schema`.
/// `md5` is `md5(string_agg(md5(row::text), '' order by md5(row::text) collate "C"))` with the
/// rows rendered under fixed settings (UTC, ISO dates, hex bytea), so it does not depend on
/// physical row order, and stays small for big tables; an empty table gets `md5('')`.
/// Ordinary tables are read with `ONLY` (rows of inheritance children count for the child).
///
/// Also one entry [`LARGE_OBJECTS_KEY`] (`"<large objects>"`): the number of large objects and
/// an md5 over `oid:md5(data)` of each, ordered by oid (present also when there are none).
///
/// # Panics
/// When a query fails.
#[must_use]
pub fn table_checksums(server: &PgServer, db: &str) -> BTreeMap<String, TableSum> {
    let listing = server.psql(
        db,
        "select encode(convert_to(n.nspname || '.' || c.relname, 'UTF8'), 'hex'), \
                encode(convert_to(format('%I.%I', n.nspname, c.relname), 'UTF8'), 'hex'), \
                c.relkind \
         from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p', 'm') and (c.relkind <> 'm' or c.relispopulated) \
           and n.nspname !~ '^pg_' and n.nspname <> 'information_schema' \
         order by 1",
    );
    let mut keys = Vec::new();
    let mut script = String::from(RENDER_SETTINGS);
    for (i, line) in listing.lines().enumerate() {
        let fields: Vec<&str> = line.split('|').collect();
        let [key, quoted, kind] = fields[..] else {
            panic!("unexpected table listing line {line:?}");
        };
        keys.push(unhex(key));
        let only = if kind == "p" { "" } else { "only " };
        let _ = writeln!(
            script,
            "select {i}, count(*), coalesce(md5(string_agg(h, '' order by h collate \"C\")), md5('')) \
             from (select md5(t::text) as h from {only}{} t) s;",
            unhex(quoted)
        );
    }
    let lo_index = keys.len();
    keys.push(LARGE_OBJECTS_KEY.to_owned());
    let _ = writeln!(
        script,
        "select {lo_index}, count(*), coalesce(md5(string_agg(m.oid::text || ':' || \
         md5(pg_catalog.lo_get(m.oid)), E'\\n' order by m.oid)), md5('')) \
         from pg_catalog.pg_largeobject_metadata m;"
    );
    let out = server.psql(db, &script);
    let mut sums = BTreeMap::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        let [index, rows, md5] = fields[..] else {
            panic!("unexpected checksum line {line:?}");
        };
        let index: usize = index.parse().expect("table index");
        let rows = rows.parse().expect("row count");
        sums.insert(
            keys[index].clone(),
            TableSum {
                rows,
                md5: md5.to_owned(),
            },
        );
    }
    assert_eq!(
        sums.len(),
        keys.len(),
        "a checksum per table and one for the large objects"
    );
    sums
}

/// `last_value` and `is_called` of every sequence of `db` (including those behind `serial` and
/// identity columns), keyed by `"schema.sequence"`. Sequence positions are data: a schema-only
/// dump does not show them, so round-trip tests compare these as well.
///
/// # Panics
/// When a query fails.
#[must_use]
pub fn sequence_values(server: &PgServer, db: &str) -> BTreeMap<String, SeqValue> {
    let listing = server.psql(
        db,
        "select encode(convert_to(n.nspname || '.' || c.relname, 'UTF8'), 'hex'), \
                encode(convert_to(format('%I.%I', n.nspname, c.relname), 'UTF8'), 'hex') \
         from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
         where c.relkind = 'S' and n.nspname !~ '^pg_' and n.nspname <> 'information_schema' \
         order by 1",
    );
    let mut keys = Vec::new();
    let mut script = String::new();
    for (i, line) in listing.lines().enumerate() {
        let Some((key, quoted)) = line.split_once('|') else {
            panic!("unexpected sequence listing line {line:?}");
        };
        keys.push(unhex(key));
        let _ = writeln!(
            script,
            "select {i}, last_value, is_called from {};",
            unhex(quoted)
        );
    }
    let mut values = BTreeMap::new();
    if keys.is_empty() {
        return values;
    }
    for line in server.psql(db, &script).lines() {
        let fields: Vec<&str> = line.split('|').collect();
        let [index, last_value, is_called] = fields[..] else {
            panic!("unexpected sequence line {line:?}");
        };
        let index: usize = index.parse().expect("sequence index");
        values.insert(
            keys[index].clone(),
            SeqValue {
                last_value: last_value.parse().expect("last_value"),
                is_called: is_called == "t",
            },
        );
    }
    values
}

/// `pg_dump --schema-only` (owners and privileges kept) of `db` as plain text, made by this
/// server's `pg_dump`, with the lines that differ between runs and databases removed: `\restrict`
/// / `\unrestrict` (random key), `-- Dumped from ...` / `-- Dumped by ...`, and comment lines
/// naming the database.
///
/// # Panics
/// When pg_dump fails.
#[must_use]
pub fn schema_dump(server: &PgServer, db: &str) -> String {
    schema_dump_with(server.bin_dir(), server, db)
}

/// [`schema_dump`] made with the `pg_dump` of `pg_dump_bin_dir` (to compare servers of two major
/// versions with the same, newer, `pg_dump`).
///
/// # Panics
/// When pg_dump fails.
#[must_use]
pub fn schema_dump_with(pg_dump_bin_dir: &Path, server: &PgServer, db: &str) -> String {
    let mut cmd = std::process::Command::new(pg_dump_bin_dir.join("pg_dump"));
    crate::pg::clear_pg_env(&mut cmd);
    cmd.env("PGCLIENTENCODING", "UTF8")
        .env("LC_MESSAGES", "C")
        .args(["--schema-only", "--no-password"])
        .arg("-h")
        .arg(server.socket_dir())
        .arg("-p")
        .arg(server.port().to_string())
        .args(["-U", SUPERUSER, "-d", db]);
    let out = cmd.output().expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump --schema-only of {db} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    normalize_dump(&String::from_utf8_lossy(&out.stdout), db)
}

/// Removes the lines of a plain dump that differ between runs and databases.
#[must_use]
pub fn normalize_dump(dump: &str, db: &str) -> String {
    let mut out = String::with_capacity(dump.len());
    for line in dump.lines() {
        let volatile = line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict")
            || line.starts_with("-- Dumped from database version")
            || line.starts_with("-- Dumped by pg_dump version")
            || (line.starts_with("--") && line.contains(db));
        if !volatile {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Asserts that two databases hold the same content: table checksums (including large
/// objects), sequence positions and, when both servers have the same major version, schema
/// dumps. The message shows what differs.
///
/// Schema dumps of two major versions are not compared: the server renders view definitions
/// differently (PG 15 qualifies columns, PG 18 does not), and this machine's PG 15 build stores a
/// `pg_attver=N` attribute option on every column that a PG 18 `pg_dump` prints and PG 15's
/// does not. Compare such schemas with [`schema_dump_with`] and a normalization of your own.
///
/// # Panics
/// When they differ, or a query fails.
pub fn assert_same_database(a: &PgServer, a_db: &str, b: &PgServer, b_db: &str) {
    let (sums_a, sums_b) = (table_checksums(a, a_db), table_checksums(b, b_db));
    if sums_a != sums_b {
        let mut msg = String::new();
        for key in sums_a
            .keys()
            .chain(sums_b.keys().filter(|k| !sums_a.contains_key(*k)))
        {
            let (x, y) = (sums_a.get(key), sums_b.get(key));
            if x != y {
                let _ = writeln!(msg, "  {key}: {x:?} vs {y:?}");
            }
        }
        panic!("table contents of {a_db} and {b_db} differ:\n{msg}");
    }
    let (seq_a, seq_b) = (sequence_values(a, a_db), sequence_values(b, b_db));
    assert_eq!(
        seq_a, seq_b,
        "sequence positions of {a_db} and {b_db} differ"
    );
    if a.major_version() != b.major_version() {
        return;
    }
    let (dump_a, dump_b) = (schema_dump(a, a_db), schema_dump(b, b_db));
    if let Some(diff) = first_difference(&dump_a, &dump_b) {
        panic!("schema dumps of {a_db} and {b_db} differ:\n{diff}");
    }
}

/// `None` when equal, else the first differing line of each with a little context.
#[must_use]
pub fn first_difference(a: &str, b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = la.iter().zip(&lb).take_while(|(x, y)| x == y).count();
    let from = i.saturating_sub(3);
    let show = |lines: &[&str]| {
        let end = (i + 4).min(lines.len());
        lines.get(from..end).unwrap_or_default().join("\n")
    };
    Some(format!(
        "at line {} (of {} vs {}):\n--- first\n{}\n--- second\n{}",
        i + 1,
        la.len(),
        lb.len(),
        show(&la),
        show(&lb)
    ))
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from encode()"))
        .collect();
    String::from_utf8(bytes).expect("UTF-8 names")
}
