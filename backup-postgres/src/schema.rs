//! [`SchemaListing`]: what a restore of a pg_dump archive must reproduce, one line per object,
//! read from the catalogs; its digest is the `v2:` schema fingerprint.
//!
//! The listing leaves out exactly what pg_dump does not dump and what PostgreSQL generates anew
//! on a restore (OIDs, dropped columns, foreign keys a partition inherits from its parent, clone
//! triggers of partitions, objects of extensions), so a faithful restore compares equal; it
//! includes what a faithful restore must bring back: view and rule bodies, column order, defaults,
//! constraints, indexes, triggers, policies, sequences' definitions, comments, and every other
//! user object by identity. Three sections are kept apart:
//!
//! - **structure**: hashed into [`SchemaListing::fingerprint`] and compared exactly;
//! - **privileges** (owners and grants): hashed into [`SchemaListing::privileges_fingerprint`],
//!   compared only when the restore kept owners and privileges;
//! - **sequence values**: read while pg_dump runs, not in its snapshot (sequences are not
//!   transactional), so a restore must bring each one back at least where it was when listed.

use std::collections::BTreeMap;

use backup_core::Sha256;

/// Prefix of fingerprints computed from a [`SchemaListing`].
pub const FINGERPRINT_V2: &str = "v2:";

/// One line of a [`SchemaListing`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaEntry {
    /// What the object is: `table`, `column`, `constraint`, `index`, `view`, `owner`, `acl`…
    pub kind: String,
    /// Its identity, schema-qualified and quoted as SQL would (`public.orders.orders_pkey`).
    pub object: String,
    /// What must be equal after a restore (a definition, rendered by the server).
    pub definition: String,
}

/// Which part of the listing an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Compared exactly, part of the schema fingerprint.
    Structure,
    /// Owners and grants.
    Privileges,
    /// A sequence's value: may only grow between the listing and the dump.
    SequenceValue,
}

impl SchemaEntry {
    /// The section this entry belongs to.
    pub fn section(&self) -> Section {
        match self.kind.as_str() {
            "owner" | "acl" | "default-acl" => Section::Privileges,
            SEQUENCE_VALUE => Section::SequenceValue,
            _ => Section::Structure,
        }
    }

    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}",
            escape(&self.kind),
            escape(&self.object),
            escape(&self.definition)
        )
    }
}

/// Kind of the entries holding a sequence's value (`last_value` or `unset`).
pub const SEQUENCE_VALUE: &str = "sequence-value";

/// The listing of one database's schema, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaListing {
    entries: Vec<SchemaEntry>,
}

impl SchemaListing {
    /// A listing of these entries (sorted and deduplicated here).
    pub fn new(mut entries: Vec<SchemaEntry>) -> Self {
        entries.sort();
        entries.dedup();
        SchemaListing { entries }
    }

    /// This listing with its sequence values replaced by `values` (read at another moment).
    #[must_use]
    pub fn with_sequence_values(self, values: Vec<SchemaEntry>) -> Self {
        let mut entries: Vec<SchemaEntry> = self
            .entries
            .into_iter()
            .filter(|e| e.section() != Section::SequenceValue)
            .collect();
        entries.extend(values);
        SchemaListing::new(entries)
    }

    /// Every entry, sorted by kind, object and definition.
    pub fn entries(&self) -> &[SchemaEntry] {
        &self.entries
    }

    fn digest(&self, section: Section) -> String {
        let mut h = Sha256::new();
        for e in self.entries.iter().filter(|e| e.section() == section) {
            h.update(e.line().as_bytes());
            h.update(b"\n");
        }
        format!("{FINGERPRINT_V2}{}", h.finish())
    }

    /// The `v2:` fingerprint of the structure (everything but privileges and sequence values).
    pub fn fingerprint(&self) -> String {
        self.digest(Section::Structure)
    }

    /// The `v2:` fingerprint of owners and grants.
    pub fn privileges_fingerprint(&self) -> String {
        self.digest(Section::Privileges)
    }

    /// The roles named as owners or in grants, sorted.
    pub fn roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.section() == Section::Privileges)
            .flat_map(|e| roles_in(&e.definition))
            .collect();
        roles.sort();
        roles.dedup();
        roles
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

    /// Parses [`to_text`](Self::to_text)'s output.
    ///
    /// # Errors
    ///
    /// A message naming the first malformed line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(LISTING_HEADER) {
            return Err("not a pre-deploy schema listing (unknown header)".to_owned());
        }
        let mut entries = Vec::new();
        for (n, line) in lines.enumerate() {
            let mut parts = line.split('\t');
            let (Some(kind), Some(object), Some(definition), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("line {} is malformed", n + 2));
            };
            entries.push(SchemaEntry {
                kind: unescape(kind),
                object: unescape(object),
                definition: unescape(definition),
            });
        }
        Ok(SchemaListing::new(entries))
    }

    /// What differs between `self` (the backup's record) and `restored`, in `section`, one
    /// message per object, naming it and both sides. Sequence values compare as "restored at
    /// least the recorded value".
    pub fn differences(&self, restored: &SchemaListing, section: Section) -> Vec<String> {
        let index = |l: &SchemaListing| -> BTreeMap<(String, String), String> {
            l.entries
                .iter()
                .filter(|e| e.section() == section)
                .map(|e| ((e.kind.clone(), e.object.clone()), e.definition.clone()))
                .collect()
        };
        let want = index(self);
        let got = index(restored);
        let mut out = Vec::new();
        for ((kind, object), definition) in &want {
            match got.get(&(kind.clone(), object.clone())) {
                None => out.push(format!(
                    "{kind} {object} is in the backup ({}) but not in the restored database",
                    shorten(definition)
                )),
                Some(d) if d == definition => {}
                Some(d)
                    if section == Section::SequenceValue && sequence_not_behind(definition, d) => {}
                Some(d) => out.push(format!(
                    "{kind} {object} differs: the backup has {}, the restored database has {}",
                    shorten(definition),
                    shorten(d)
                )),
            }
        }
        for ((kind, object), definition) in &got {
            if !want.contains_key(&(kind.clone(), object.clone())) {
                out.push(format!(
                    "{kind} {object} is in the restored database ({}) but not in the backup",
                    shorten(definition)
                ));
            }
        }
        out
    }
}

/// First line of a stored listing; names the format so it can evolve.
const LISTING_HEADER: &str = "# pre-deploy schema listing v2";

/// A restored sequence value is fine when it is not behind the recorded one (the dump reads
/// sequences after the listing did, and they only move forward unless someone calls `setval`).
fn sequence_not_behind(recorded: &str, restored: &str) -> bool {
    match (recorded.parse::<i128>(), restored.parse::<i128>()) {
        (Ok(r), Ok(s)) => s >= r,
        (Err(_), _) => recorded == "unset",
        _ => false,
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 160;
    if s.is_empty() {
        return "\"\"".to_owned();
    }
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &s[..end])
}

/// Role names in an owner (`owner=app`) or ACL (`app=arwd/postgres,=r/app`) definition. Names
/// that need it are double-quoted in ACLs, with `""` for a quote, and may hold `,`, `=` or `/`.
fn roles_in(definition: &str) -> Vec<String> {
    if let Some(owner) = definition.strip_prefix("owner=") {
        return vec![owner.to_owned()];
    }
    let mut out = Vec::new();
    let mut chars = definition.chars().peekable();
    let mut name = String::new();
    let mut in_name = true; // a grantee or a grantor is being read
    while let Some(c) = chars.next() {
        match c {
            '"' if in_name => {
                while let Some(q) = chars.next() {
                    if q == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            name.push('"');
                        } else {
                            break;
                        }
                    } else {
                        name.push(q);
                    }
                }
            }
            '=' if in_name => {
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                }
                in_name = false;
            }
            '/' => in_name = true,
            ',' => {
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                }
                in_name = true;
            }
            c if in_name => name.push(c),
            _ => {}
        }
    }
    if !name.is_empty() {
        out.push(name);
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(kind: &str, object: &str, definition: &str) -> SchemaEntry {
        SchemaEntry {
            kind: kind.into(),
            object: object.into(),
            definition: definition.into(),
        }
    }

    #[test]
    fn sections_are_fingerprinted_apart() {
        let a = SchemaListing::new(vec![
            e("table", "public.t", "kind=r"),
            e("owner", "table public.t", "owner=app"),
            e(SEQUENCE_VALUE, "public.s", "5"),
        ]);
        let changed = |kind: &str, definition: &str| {
            let mut l = a.clone();
            for x in l.entries.iter_mut().filter(|x| x.kind == kind) {
                x.definition = definition.into();
            }
            l
        };
        let b = changed("owner", "owner=other");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.privileges_fingerprint(), b.privileges_fingerprint());
        let c = changed(SEQUENCE_VALUE, "7");
        assert_eq!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.privileges_fingerprint(), c.privileges_fingerprint());
        let d = changed("table", "kind=p");
        assert_ne!(a.fingerprint(), d.fingerprint());
        assert!(a.fingerprint().starts_with("v2:sha256:"));
    }

    #[test]
    fn differences_name_both_sides() {
        let backup = SchemaListing::new(vec![
            e("view", "public.v", "SELECT 1"),
            e("index", "public.i", "CREATE INDEX i ON t (a)"),
            e(SEQUENCE_VALUE, "public.s", "10"),
            e(SEQUENCE_VALUE, "public.u", "10"),
        ]);
        let restored = SchemaListing::new(vec![
            e("view", "public.v", "SELECT 2"),
            e("trigger", "public.t.tr", "CREATE TRIGGER tr"),
            e(SEQUENCE_VALUE, "public.s", "12"),
            e(SEQUENCE_VALUE, "public.u", "9"),
        ]);
        assert_eq!(
            backup.differences(&restored, Section::Structure),
            vec![
                "index public.i is in the backup (\"CREATE INDEX i ON t (a)\") but not in the restored database",
                "view public.v differs: the backup has \"SELECT 1\", the restored database has \"SELECT 2\"",
                "trigger public.t.tr is in the restored database (\"CREATE TRIGGER tr\") but not in the backup",
            ]
        );
        assert_eq!(
            backup.differences(&restored, Section::SequenceValue),
            vec![
                "sequence-value public.u differs: the backup has \"10\", the restored database has \"9\""
            ]
        );
    }

    #[test]
    fn roles_are_read_from_owners_and_grants() {
        let l = SchemaListing::new(vec![
            e("owner", "table public.t", "owner=app"),
            e(
                "acl",
                "table public.t",
                "=r/app,reader=r/app,\"odd \"\"x\"\", =/role\"=w/app",
            ),
        ]);
        assert_eq!(l.roles(), vec!["app", "odd \"x\", =/role", "reader"]);
    }

    #[test]
    fn malformed_listings_are_refused() {
        assert!(SchemaListing::parse("").is_err());
        assert!(SchemaListing::parse("# pre-deploy schema listing v2\nonly\ttwo\n").is_err());
    }

    proptest! {
        #[test]
        fn text_round_trips(entries in proptest::collection::vec(("[a-z-]{1,8}", any::<String>(), any::<String>()), 0..20)) {
            let listing = SchemaListing::new(entries.into_iter().map(|(k, o, d)| e(&k, &o, &d)).collect());
            let parsed = SchemaListing::parse(&listing.to_text()).expect("parses");
            prop_assert_eq!(parsed, listing);
        }
    }
}
