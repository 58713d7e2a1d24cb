//! [`DumpScanner`]: one streaming pass over a `mysqldump`/`mariadb-dump` SQL dump, in bounded
//! memory — which tables it creates, how many rows its `INSERT INTO` statements hold per table,
//! whether a statement is cut short, and whether it ends with the `-- Dump completed` trailer.
//!
//! The dump tools write one statement per line or, for extended inserts, tuples on following
//! lines; string literals are single-quoted with backslash escapes and never hold a raw newline
//! (`\n` is escaped), BLOBs are hex (`--hex-blob`). The scanner only needs that much syntax:
//! quotes, escapes and parenthesis depth inside `INSERT … VALUES`, and line prefixes elsewhere.

use std::collections::{BTreeMap, BTreeSet};

/// The start of the last line of a complete dump.
pub const TRAILER: &str = "-- Dump completed";

/// Bytes of a line kept to recognise it (a quoted 64-character identifier fits).
const LINE_PREFIX_MAX: usize = 600;
/// Longest table name kept (64 characters of up to 4 bytes, with doubled backticks).
const IDENT_MAX: usize = 600;

const INSERT_START: &[u8] = b"INSERT INTO `";
const CREATE_START: &[u8] = b"CREATE TABLE `";

/// Whether `tail` (the end of a dump) ends with the trailer line.
pub fn has_trailer(tail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(tail);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.starts_with(TRAILER))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Outside an INSERT: lines are recognised by their prefix.
    Line,
    /// Reading the backquoted table name after `INSERT INTO `.
    InsertName { quote_pending: bool },
    /// Between the name and `VALUES` (a column list may come first).
    InsertHead { in_backticks: bool },
    /// Inside the tuples of an INSERT.
    Tuples,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Tables with a `CREATE TABLE`.
    pub created: BTreeSet<String>,
    /// Rows in `INSERT INTO` statements, per table.
    pub rows: BTreeMap<String, u64>,
    /// The dump ends with the `-- Dump completed` line.
    pub trailer: bool,
    /// The dump ends inside an `INSERT` statement.
    pub cut_in_statement: bool,
    /// Bytes scanned.
    pub bytes: u64,
}

/// The streaming scanner; feed it the decompressed dump, then [`DumpScanner::finish`].
#[derive(Debug)]
pub struct DumpScanner {
    mode: Mode,
    line: Vec<u8>,
    line_len: usize,
    last_line: Vec<u8>,
    ident: Vec<u8>,
    window: [u8; 6],
    in_str: bool,
    escape: bool,
    depth: u32,
    rows: u64,
    summary: DumpSummary,
}

impl Default for DumpScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DumpScanner {
    /// A scanner at the start of a dump.
    pub fn new() -> Self {
        DumpScanner {
            mode: Mode::Line,
            line: Vec::new(),
            line_len: 0,
            last_line: Vec::new(),
            ident: Vec::new(),
            window: [0; 6],
            in_str: false,
            escape: false,
            depth: 0,
            rows: 0,
            summary: DumpSummary::default(),
        }
    }

    /// Scans the next bytes of the dump.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.summary.bytes += bytes.len() as u64;
        for &b in bytes {
            self.byte(b);
        }
    }

    fn end_line(&mut self) {
        if self.line_len > 0 {
            if self.line.starts_with(CREATE_START) {
                let name = parse_ident(&self.line[CREATE_START.len()..]);
                self.summary.created.insert(name);
            }
            self.last_line = std::mem::take(&mut self.line);
        }
        self.line.clear();
        self.line_len = 0;
    }

    fn byte(&mut self, b: u8) {
        match self.mode {
            Mode::Line => {
                if b == b'\n' {
                    self.end_line();
                    return;
                }
                if self.line.len() < LINE_PREFIX_MAX {
                    self.line.push(b);
                }
                self.line_len += 1;
                if self.line_len == INSERT_START.len() && self.line == INSERT_START {
                    self.ident.clear();
                    self.mode = Mode::InsertName {
                        quote_pending: false,
                    };
                }
            }
            Mode::InsertName { quote_pending } => {
                if quote_pending {
                    if b == b'`' {
                        self.push_ident(b);
                        self.mode = Mode::InsertName {
                            quote_pending: false,
                        };
                        return;
                    }
                    self.mode = Mode::InsertHead {
                        in_backticks: false,
                    };
                    self.window = [0; 6];
                    self.byte(b);
                } else if b == b'`' {
                    self.mode = Mode::InsertName {
                        quote_pending: true,
                    };
                } else {
                    self.push_ident(b);
                }
            }
            Mode::InsertHead { in_backticks } => {
                if b == b'`' {
                    self.mode = Mode::InsertHead {
                        in_backticks: !in_backticks,
                    };
                    return;
                }
                if in_backticks {
                    return;
                }
                self.window.rotate_left(1);
                self.window[5] = b;
                if &self.window == b"VALUES" {
                    self.mode = Mode::Tuples;
                    self.in_str = false;
                    self.escape = false;
                    self.depth = 0;
                    self.rows = 0;
                }
            }
            Mode::Tuples => self.tuple_byte(b),
        }
    }

    fn push_ident(&mut self, b: u8) {
        if self.ident.len() < IDENT_MAX {
            self.ident.push(b);
        }
    }

    fn tuple_byte(&mut self, b: u8) {
        if self.in_str {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'\'' {
                self.in_str = false;
            }
            return;
        }
        match b {
            b'\'' => self.in_str = true,
            b'(' => {
                if self.depth == 0 {
                    self.rows += 1;
                }
                self.depth += 1;
            }
            b')' => self.depth = self.depth.saturating_sub(1),
            b';' if self.depth == 0 => {
                let name = String::from_utf8_lossy(&self.ident).into_owned();
                *self.summary.rows.entry(name).or_default() += self.rows;
                self.mode = Mode::Line;
                // The statement's line continues to its newline; it is not the trailer.
                self.line = b";".to_vec();
                self.line_len = 1;
            }
            _ => {}
        }
    }

    /// Ends the scan.
    pub fn finish(mut self) -> DumpSummary {
        self.summary.cut_in_statement = self.mode != Mode::Line;
        if self.mode == Mode::Line {
            self.end_line();
        }
        self.summary.trailer =
            self.last_line.starts_with(TRAILER.as_bytes()) && !self.summary.cut_in_statement;
        self.summary
    }
}

/// The name in a backquoted identifier whose opening backtick is already consumed.
fn parse_ident(rest: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'`' {
            if rest.get(i + 1) == Some(&b'`') {
                out.push(b'`');
                i += 2;
                continue;
            }
            break;
        }
        out.push(rest[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "-- MariaDB dump 10.19\n\
/*!40101 SET NAMES utf8mb4 */;\n\
DROP TABLE IF EXISTS `t`;\n\
CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `s` text\n) ENGINE=InnoDB;\n\
LOCK TABLES `t` WRITE;\n\
INSERT INTO `t` VALUES\n(1,'a(b'),\n(2,'it\\'s; (x)'),\n(3,'x\\\\');\n\
INSERT INTO `t` VALUES (4,NULL);\n\
UNLOCK TABLES;\n\
CREATE TABLE `we``ird` (`x` int) ENGINE=InnoDB;\n\
INSERT INTO `we``ird` (`x`, `VALUES`) VALUES (1,0x00FF);\n\
CREATE TABLE `empty` (`x` int);\n\
-- Dump completed\n";

    fn scan_in_chunks(text: &[u8], chunk: usize) -> DumpSummary {
        let mut s = DumpScanner::new();
        for c in text.chunks(chunk) {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn rows_tables_and_the_trailer_are_found_whatever_the_chunking() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let s = scan_in_chunks(DUMP.as_bytes(), chunk);
            assert_eq!(s.rows.get("t"), Some(&4), "chunk {chunk}");
            assert_eq!(s.rows.get("we`ird"), Some(&1), "chunk {chunk}");
            assert!(s.created.contains("empty") && s.created.contains("we`ird"));
            assert!(s.trailer && !s.cut_in_statement, "chunk {chunk}");
        }
    }

    #[test]
    fn memory_stays_bounded_on_huge_statements_and_lines() {
        let mut s = DumpScanner::new();
        s.feed(b"INSERT INTO `big` VALUES ");
        let tuple = format!("(1,'{}'),", "y".repeat(1000));
        for _ in 0..5000 {
            s.feed(tuple.as_bytes());
            assert!(s.line.len() <= LINE_PREFIX_MAX && s.ident.len() <= IDENT_MAX);
        }
        s.feed(b"(2,'z');\n-- ");
        s.feed("x".repeat(1 << 20).as_bytes());
        assert!(s.line.len() <= LINE_PREFIX_MAX);
        s.feed(b"\n-- Dump completed on 2026-01-01\n");
        let summary = s.finish();
        assert_eq!(summary.rows.get("big"), Some(&5001));
        assert!(summary.trailer);
    }

    #[test]
    fn a_cut_dump_has_no_trailer() {
        let cut = &DUMP.as_bytes()[..DUMP.find("(3,").expect("in dump")];
        let s = scan_in_chunks(cut, 5);
        assert!(!s.trailer && s.cut_in_statement);
        let cut = &DUMP.as_bytes()[..DUMP.len() - 10];
        assert!(!scan_in_chunks(cut, 5).trailer);
        assert!(has_trailer(DUMP.as_bytes()));
        assert!(!has_trailer(cut));
    }
}
