//! [`MysqlSchemaListing`]: what a restore of a dump must reproduce, one line per object, read
//! from `information_schema`; its digest is the `v1:` schema fingerprint of MySQL/MariaDB
//! sources.
//!
//! The listing holds the database's default character set and collation; every table (type,
//! engine, collation, options, comment); every column in order (type, nullability, default,
//! character set, collation, extra such as `auto_increment` or `VIRTUAL GENERATED`,
//! generation expression, comment); indexes (uniqueness, type, columns in order with prefix
//! lengths); foreign keys (columns, referenced table and columns, rules); check constraints;
//! views (body, check option, security); routines (type, parameters, return type, body,
//! characteristics, `sql_mode`); triggers (table, timing, event, order, body, `sql_mode`) and
//! events (schedule, body, status). The database's own name is replaced by `<db>` wherever it
//! appears (view bodies qualify their tables with it), so a copy under another name compares
//! equal. Definers are left out (a restore by another user may set them differently), and so
//! are `AUTO_INCREMENT` counters, statistics and creation times. Tables whose name starts with
//! [`MARKER_PREFIX`] are pre-deploy's own labels and are left out too.

use std::collections::BTreeMap;

use backup_core::Sha256;
use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Row, Value};

/// Prefix of fingerprints computed from a [`MysqlSchemaListing`].
pub const FINGERPRINT_V1: &str = "v1:";

/// The first line of a stored listing.
const LISTING_HEADER: &str = "# pre-deploy mysql schema listing v1";

/// Tables named with this prefix are pre-deploy's labels of its work databases, never data.
pub const MARKER_PREFIX: &str = "__predeploy_";

/// Stands for the database's own name in the listing.
const DB_PLACEHOLDER: &str = "<db>";

/// One line of a [`MysqlSchemaListing`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaEntry {
    /// What the object is: `database`, `table`, `column`, `index`, `foreign-key`, `check`,
    /// `view`, `routine`, `parameter`, `trigger`, `event`.
    pub kind: String,
    /// Its identity (`orders`, `orders.total`, `procedure add_order`).
    pub object: String,
    /// What must be equal after a restore.
    pub definition: String,
}

impl SchemaEntry {
    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}",
            escape(&self.kind),
            escape(&self.object),
            escape(&self.definition)
        )
    }
}

/// The listing of one database's schema, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlSchemaListing {
    entries: Vec<SchemaEntry>,
}

impl MysqlSchemaListing {
    /// A listing of these entries (sorted and deduplicated here).
    pub fn new(mut entries: Vec<SchemaEntry>) -> Self {
        entries.sort();
        entries.dedup();
        MysqlSchemaListing { entries }
    }

    /// Every entry, sorted by kind, object and definition.
    pub fn entries(&self) -> &[SchemaEntry] {
        &self.entries
    }

    /// The `v1:sha256:…` fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for e in &self.entries {
            h.update(e.line().as_bytes());
            h.update(b"\n");
        }
        format!("{FINGERPRINT_V1}{}", h.finish())
    }

    /// How many objects of each kind (`tables`, `views`, `routines`, `triggers`, `events`),
    /// for the manifest's `object_counts`.
    pub fn object_counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            let key = match e.kind.as_str() {
                "table" => "tables",
                "view" => "views",
                "routine" => "routines",
                "trigger" => "triggers",
                "event" => "events",
                _ => continue,
            };
            *out.entry(key.to_owned()).or_insert(0) += 1;
        }
        out
    }

    /// The database's default character set and collation, as listed.
    pub fn charset(&self) -> Option<(String, String)> {
        let e = self.entries.iter().find(|e| e.kind == "database")?;
        let (cs, coll) = e.definition.split_once(" | ")?;
        Some((cs.to_owned(), coll.to_owned()))
    }

    /// The text stored next to the dump: one entry per line, tab-separated, escaped.
    pub fn to_text(&self) -> String {
        let mut out = String::from(LISTING_HEADER);
        out.push('\n');
        for e in &self.entries {
            out.push_str(&e.line());
            out.push('\n');
        }
        out
    }

    /// Parses [`MysqlSchemaListing::to_text`].
    ///
    /// # Errors
    ///
    /// A message naming the first malformed line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(LISTING_HEADER) {
            return Err("not a pre-deploy MySQL schema listing".to_owned());
        }
        let mut entries = Vec::new();
        for (i, line) in lines.enumerate() {
            let mut parts = line.split('\t');
            let (Some(kind), Some(object), Some(definition), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("line {} is malformed", i + 2));
            };
            entries.push(SchemaEntry {
                kind: unescape(kind),
                object: unescape(object),
                definition: unescape(definition),
            });
        }
        Ok(MysqlSchemaListing::new(entries))
    }

    /// Every object that differs between `self` (the backup's record) and `restored`, named
    /// with both sides, in listing order.
    pub fn differences(&self, restored: &MysqlSchemaListing) -> Vec<String> {
        let index = |l: &MysqlSchemaListing| -> BTreeMap<(String, String), Vec<String>> {
            let mut m: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
            for e in &l.entries {
                m.entry((e.kind.clone(), e.object.clone()))
                    .or_default()
                    .push(e.definition.clone());
            }
            m
        };
        let (want, got) = (index(self), index(restored));
        let mut keys: Vec<&(String, String)> = want.keys().chain(got.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for key @ (kind, object) in keys {
            match (want.get(key), got.get(key)) {
                (Some(w), Some(g)) if w != g => out.push(format!(
                    "{kind} {object} differs: the backup has {}, the restored copy has {}",
                    w.join(" | "),
                    g.join(" | ")
                )),
                (Some(_), None) => out.push(format!(
                    "{kind} {object} is in the backup but missing from the restored copy"
                )),
                (None, Some(_)) => out.push(format!(
                    "{kind} {object} is in the restored copy but not in the backup"
                )),
                _ => {}
            }
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A column value as text (`NULL` for SQL NULL).
fn text(row: &Row, i: usize) -> String {
    match row.as_ref(i) {
        None | Some(Value::NULL) => "NULL".to_owned(),
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Int(n)) => n.to_string(),
        Some(Value::UInt(n)) => n.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

/// The queries of the listing: (kind, SQL with one `?` for the database name, how many
/// leading columns name the object). Rows of one object are joined in order.
const QUERIES: &[(&str, &str, usize)] = &[
    (
        "database",
        "SELECT 'database', DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
         FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        1,
    ),
    (
        "table",
        "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION, CREATE_OPTIONS, TABLE_COMMENT \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW'",
        1,
    ),
    (
        "column",
        "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME), ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, \
         COLUMN_DEFAULT, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, GENERATION_EXPRESSION, \
         COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?",
        1,
    ),
    (
        "index",
        "SELECT CONCAT(TABLE_NAME, '.', INDEX_NAME), NON_UNIQUE, INDEX_TYPE, COLUMN_NAME, \
         SUB_PART, COLLATION, INDEX_COMMENT FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        1,
    ),
    (
        "foreign-key",
        "SELECT CONCAT(k.TABLE_NAME, '.', k.CONSTRAINT_NAME), k.COLUMN_NAME, \
         k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, \
         r.UPDATE_RULE, r.DELETE_RULE FROM information_schema.KEY_COLUMN_USAGE k \
         JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
         ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
         AND r.TABLE_NAME = k.TABLE_NAME \
         WHERE k.TABLE_SCHEMA = ? AND k.REFERENCED_TABLE_NAME IS NOT NULL \
         ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
        1,
    ),
    (
        "view",
        "SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, IS_UPDATABLE, SECURITY_TYPE \
         FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?",
        1,
    ),
    (
        "routine",
        "SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME), DTD_IDENTIFIER, ROUTINE_DEFINITION, \
         IS_DETERMINISTIC, SQL_DATA_ACCESS, SECURITY_TYPE, SQL_MODE, ROUTINE_COMMENT \
         FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
        1,
    ),
    (
        "parameter",
        "SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', SPECIFIC_NAME), ORDINAL_POSITION, PARAMETER_MODE, \
         PARAMETER_NAME, DTD_IDENTIFIER FROM information_schema.PARAMETERS \
         WHERE SPECIFIC_SCHEMA = ? ORDER BY SPECIFIC_NAME, ROUTINE_TYPE, ORDINAL_POSITION",
        1,
    ),
    (
        "trigger",
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, \
         ACTION_ORDER, ACTION_STATEMENT, SQL_MODE FROM information_schema.TRIGGERS \
         WHERE TRIGGER_SCHEMA = ?",
        1,
    ),
];

/// Events; the first parameter is a JSON array of the events to list as `ENABLED` whatever
/// their status (a level-4 scratch copy creates the dump's enabled events disabled).
const EVENTS: &str = "SELECT EVENT_NAME, EVENT_TYPE, INTERVAL_VALUE, INTERVAL_FIELD, \
     EVENT_DEFINITION, IF(JSON_CONTAINS(?, JSON_QUOTE(EVENT_NAME)), 'ENABLED', STATUS), \
     ON_COMPLETION, SQL_MODE, EVENT_COMMENT FROM information_schema.EVENTS \
     WHERE EVENT_SCHEMA = ?";

/// Check constraints (MariaDB 10.2+ and MySQL 8.0.16+ name their table differently, and older
/// servers have none: a failing query lists none, on both sides alike).
const CHECKS: &[&str] = &[
    "SELECT CONCAT(TABLE_NAME, '.', CONSTRAINT_NAME), CHECK_CLAUSE \
     FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?",
    "SELECT CONCAT(t.TABLE_NAME, '.', c.CONSTRAINT_NAME), c.CHECK_CLAUSE \
     FROM information_schema.CHECK_CONSTRAINTS c JOIN information_schema.TABLE_CONSTRAINTS t \
     ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME \
     AND t.CONSTRAINT_TYPE = 'CHECK' WHERE c.CONSTRAINT_SCHEMA = ?",
];

/// Reads the listing of `database` through `conn` (any default database). The events named in
/// `disabled_events` are listed as enabled: a scratch copy creates them disabled on purpose
/// (see [`crate::replay_filter`]).
///
/// # Errors
///
/// The server's error when a query fails.
pub async fn read_listing(
    conn: &mut Conn,
    database: &str,
    disabled_events: &[String],
) -> Result<MysqlSchemaListing, mysql_async::Error> {
    let qualified = format!("`{}`.", database.replace('`', "``"));
    let placeholder = format!("`{DB_PLACEHOLDER}`.");
    let normalise = |s: String| s.replace(&qualified, &placeholder);
    let mut entries = Vec::new();
    let mut add_rows = |kind: &str, rows: Vec<Row>, named_by: usize| {
        let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
        for row in rows {
            let object = (0..named_by)
                .map(|i| text(&row, i))
                .collect::<Vec<_>>()
                .join(".");
            if is_marker(kind, &object) {
                continue;
            }
            let fields: Vec<String> = (named_by..row.len())
                .map(|i| {
                    let v = text(&row, i);
                    if v == database {
                        DB_PLACEHOLDER.to_owned()
                    } else {
                        v
                    }
                })
                .collect();
            let definition = normalise(fields.join(" | "));
            match grouped.last_mut() {
                Some((o, defs)) if *o == object => defs.push(definition),
                _ => grouped.push((object, vec![definition])),
            }
        }
        for (object, defs) in grouped {
            entries.push(SchemaEntry {
                kind: kind.to_owned(),
                object,
                definition: defs.join(" ; "),
            });
        }
    };
    for (kind, sql, named_by) in QUERIES {
        let rows: Vec<Row> = conn.exec(*sql, (database,)).await?;
        add_rows(kind, rows, *named_by);
    }
    let names = serde_json::to_string(disabled_events).unwrap_or_else(|_| "[]".into());
    let rows: Vec<Row> = conn.exec(EVENTS, (names, database)).await?;
    add_rows("event", rows, 1);
    for sql in CHECKS {
        if let Ok(rows) = conn.exec::<Row, _, _>(*sql, (database,)).await {
            add_rows("check", rows, 1);
            break;
        }
    }
    Ok(MysqlSchemaListing::new(entries))
}

/// Whether an object is one of pre-deploy's marker tables (or belongs to one).
fn is_marker(kind: &str, object: &str) -> bool {
    matches!(kind, "table" | "column" | "index") && object.starts_with(MARKER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: &str, object: &str, definition: &str) -> SchemaEntry {
        SchemaEntry {
            kind: kind.into(),
            object: object.into(),
            definition: definition.into(),
        }
    }

    #[test]
    fn the_text_round_trips_and_the_fingerprint_is_versioned() {
        let l = MysqlSchemaListing::new(vec![
            e("view", "v", "select `<db>`.`t`.`a`\tfrom\n`t`"),
            e("table", "t", "BASE TABLE | InnoDB"),
        ]);
        let back = MysqlSchemaListing::parse(&l.to_text()).expect("parses");
        assert_eq!(back, l);
        assert!(l.fingerprint().starts_with("v1:sha256:"));
        assert_eq!(l.object_counts()["tables"], 1);
        assert!(MysqlSchemaListing::parse("junk").is_err());
    }

    #[test]
    fn differences_name_the_object_and_both_sides() {
        let a = MysqlSchemaListing::new(vec![
            e("column", "t.a", "1 | int(11)"),
            e("trigger", "tr", "t | BEFORE"),
        ]);
        let b = MysqlSchemaListing::new(vec![
            e("column", "t.a", "1 | bigint(20)"),
            e("view", "v", "select 1"),
        ]);
        let d = a.differences(&b);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0].contains("column t.a differs")
                && d[0].contains("int(11)")
                && d[0].contains("bigint(20)")
        );
        assert!(d[1].contains("trigger tr is in the backup but missing"));
        assert!(d[2].contains("view v is in the restored copy but not in the backup"));
    }
}
