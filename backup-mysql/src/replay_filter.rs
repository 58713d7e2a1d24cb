//! [`ReplayFilter`]: rewrites, in a dump being replayed into a work database, the statements
//! that would act outside that database or start work in it.
//!
//! `mysqldump`/`mariadb-dump` name the dumped database in one kind of statement: around a stored
//! routine whose collation differs from the database's default it writes
//! `ALTER DATABASE \`app\` CHARACTER SET … COLLATE … ;` and, after the routine, the same
//! statement with the original collation. Replayed into a scratch or restore database, those
//! statements would change the *source* database's default character set, for the time
//! between the two (and for good when the replay is killed in between). The filter drops the
//! name, so the statement applies to the database the client is connected to, which is the
//! work database.
//!
//! For a level-4 scratch copy it also creates enabled events disabled (`… PRESERVE ENABLE …` →
//! `… PRESERVE DISABLE …`), so a copy that exists only to be compared never runs the
//! application's scheduled jobs; it remembers their names so the comparison can read them as
//! enabled (see [`crate::read_listing`]).
//!
//! Only whole lines that start like those statements are looked at: a line is held while its
//! start can still match (at most [`HOLD_CAP`] bytes), everything else passes through as it
//! came, so memory stays bounded whatever the dump holds. Data lines (`INSERT INTO …`) can not
//! match: they start otherwise, and the dump tools escape newlines inside values.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// The longest line start held back while it may still be a statement to rewrite.
pub const HOLD_CAP: usize = 16 * 1024;

const ALTER_DATABASE: &[u8] = b"ALTER DATABASE ";
const CREATE_EVENT: &[u8] = b"/*!50106 CREATE*/";

/// The line-rewriting state of a replay (see the module docs).
#[derive(Debug, Default)]
pub struct ReplayFilter {
    /// Bytes of the current line, held while they may start a statement to rewrite.
    held: Vec<u8>,
    /// The current line can no longer match: pass its bytes through up to its end.
    passing: bool,
    /// Create enabled events disabled (level-4 scratch copies).
    disable_events: bool,
    /// The events created disabled here that the dump had enabled.
    disabled: Vec<String>,
}

impl ReplayFilter {
    /// A filter for a restore: only the database-naming statements are rewritten.
    pub fn for_restore() -> Self {
        ReplayFilter::default()
    }

    /// A filter for a level-4 scratch copy: events are also created disabled.
    pub fn for_scratch() -> Self {
        ReplayFilter {
            disable_events: true,
            ..ReplayFilter::default()
        }
    }

    /// The events this filter created disabled although the dump had them enabled.
    pub fn disabled_events(&self) -> &[String] {
        &self.disabled
    }

    /// Filters `input`, appending what to write to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let newline = input.iter().position(|&b| b == b'\n');
            let take = newline.map_or(input.len(), |i| i + 1);
            let (now, rest) = input.split_at(take);
            input = rest;
            if self.passing {
                out.extend_from_slice(now);
            } else {
                self.held.extend_from_slice(now);
                if newline.is_none() {
                    if !may_match(&self.held) || self.held.len() > HOLD_CAP {
                        out.append(&mut self.held);
                        self.passing = true;
                    }
                    continue;
                }
                let line = std::mem::take(&mut self.held);
                self.rewrite(line, out);
            }
            if newline.is_some() {
                self.passing = false;
            }
        }
    }

    /// Writes what is still held (a last line without a newline).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.held);
        if self.passing {
            out.extend_from_slice(&line);
        } else {
            self.rewrite(line, out);
        }
        self.passing = false;
    }

    fn rewrite(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        if let Some(rest) = alter_database_rest(&line) {
            out.extend_from_slice(b"ALTER DATABASE");
            out.extend_from_slice(rest);
            return;
        }
        if self.disable_events
            && let Some((name, at)) = enabled_event(&line)
        {
            out.extend_from_slice(&line[..at]);
            out.extend_from_slice(b" PRESERVE DISABLE ");
            out.extend_from_slice(&line[at + b" PRESERVE ENABLE ".len()..]);
            self.disabled.push(name);
            return;
        }
        out.extend_from_slice(&line);
    }
}

/// Whether a line starting with `held` may still be one to rewrite.
fn may_match(held: &[u8]) -> bool {
    [ALTER_DATABASE, CREATE_EVENT].iter().any(|p| {
        if held.len() < p.len() {
            p.starts_with(held)
        } else {
            held.starts_with(p)
        }
    })
}

/// For `ALTER DATABASE \`name\` CHARACTER SET x COLLATE y ;` (or `;;`), the part after the name.
fn alter_database_rest(line: &[u8]) -> Option<&[u8]> {
    let after = line.strip_prefix(ALTER_DATABASE)?;
    let (_, rest) = backquoted(after)?;
    let trimmed = rest.trim_ascii_end();
    let is_charset = rest.starts_with(b" CHARACTER SET ")
        && rest.windows(9).any(|w| w == b" COLLATE ")
        && trimmed.ends_with(b";");
    is_charset.then_some(rest)
}

/// For an event created enabled, its name and where ` PRESERVE ENABLE ` starts.
fn enabled_event(line: &[u8]) -> Option<(String, usize)> {
    let marker = b"/*!50106 EVENT ";
    let start = line.strip_prefix(CREATE_EVENT)?;
    let at = start.windows(marker.len()).position(|w| w == marker)?;
    let (name, _) = backquoted(&start[at + marker.len()..])?;
    let token = b" PRESERVE ENABLE ";
    let pos = line.windows(token.len()).position(|w| w == token)?;
    Some((name, pos))
}

/// A back-quoted identifier at the start of `s` (doubled back quotes inside) and what follows.
fn backquoted(s: &[u8]) -> Option<(String, &[u8])> {
    let mut rest = s.strip_prefix(b"`")?;
    let mut name = Vec::new();
    loop {
        let end = rest.iter().position(|&b| b == b'`')?;
        name.extend_from_slice(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix(b"`") {
            Some(more) => {
                name.push(b'`');
                rest = more;
            }
            None => return Some((String::from_utf8_lossy(&name).into_owned(), rest)),
        }
    }
}

/// An [`AsyncWrite`] that passes everything through a [`ReplayFilter`] into `inner`.
pub struct FilteredWriter<W> {
    inner: W,
    filter: ReplayFilter,
    pending: Vec<u8>,
    written: usize,
    finished: bool,
}

impl<W: AsyncWrite + Unpin> FilteredWriter<W> {
    /// Filters what is written with `filter` into `inner`.
    pub fn new(inner: W, filter: ReplayFilter) -> Self {
        FilteredWriter {
            inner,
            filter,
            pending: Vec::new(),
            written: 0,
            finished: false,
        }
    }

    /// The filter, to read what it did.
    pub fn filter(&self) -> &ReplayFilter {
        &self.filter
    }

    /// The filter, when writing is done (the inner writer is dropped, which closes it).
    pub fn into_filter(self) -> ReplayFilter {
        self.filter
    }

    /// Writes out what the filter produced and has not been written yet.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for FilteredWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.filter.feed(buf, &mut this.pending);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            ready!(this.poll_pending(cx))?;
            this.filter.finish(&mut this.pending);
            this.finished = true;
        }
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
/*!50003 DROP PROCEDURE IF EXISTS `p` */;
ALTER DATABASE `sh``op` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;
INSERT INTO `t` VALUES (1,'ALTER DATABASE `shop` CHARACTER SET x COLLATE y ;');
DELIMITER ;;
/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `e``1` ON SCHEDULE EVERY 1 HOUR STARTS '2026-12-02 10:24:50' ON COMPLETION NOT PRESERVE ENABLE DO INSERT INTO t VALUES (1)
*/ ;;
/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `off` ON SCHEDULE EVERY 1 DAY STARTS '2026-12-02 10:24:51' ON COMPLETION PRESERVE DISABLE DO DELETE FROM t
*/ ;;
ALTER DATABASE `shop` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci ;;
-- Dump completed";

    fn filtered(filter: &mut ReplayFilter, chunk: usize) -> String {
        let mut out = Vec::new();
        for piece in DUMP.as_bytes().chunks(chunk) {
            filter.feed(piece, &mut out);
        }
        filter.finish(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn alter_database_loses_its_name_whatever_the_chunking() {
        for chunk in [1, 2, 7, 64, 4096] {
            let out = filtered(&mut ReplayFilter::for_restore(), chunk);
            assert!(
                out.contains("\nALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci ;\n"),
                "{chunk}: {out}"
            );
            assert!(out.contains(
                "\nALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci ;;\n"
            ));
            assert!(!out.contains("ALTER DATABASE `sh``op`"));
            // Data is untouched, and so are the events of a restore.
            assert!(out.contains("VALUES (1,'ALTER DATABASE `shop` CHARACTER SET x COLLATE y ;')"));
            assert!(out.contains("NOT PRESERVE ENABLE DO"));
            assert_eq!(out.len(), DUMP.len() - "`sh``op` ".len() - "`shop` ".len());
        }
    }

    #[test]
    fn a_scratch_copy_creates_enabled_events_disabled_and_names_them() {
        for chunk in [1, 5, 4096] {
            let mut f = ReplayFilter::for_scratch();
            let out = filtered(&mut f, chunk);
            assert!(
                out.contains("ON COMPLETION NOT PRESERVE DISABLE DO INSERT"),
                "{out}"
            );
            assert!(out.contains("ON COMPLETION PRESERVE DISABLE DO DELETE"));
            assert_eq!(f.disabled_events(), ["e`1"]);
        }
    }

    #[test]
    fn long_lines_pass_through_with_bounded_holding() {
        let mut f = ReplayFilter::for_scratch();
        let mut long = b"ALTER DATABASE `x` CHARACTER SET a COLLATE b".to_vec();
        long.extend(std::iter::repeat_n(b' ', HOLD_CAP * 2));
        long.extend_from_slice(b";\nnext\n");
        let mut out = Vec::new();
        for piece in long.chunks(1000) {
            f.feed(piece, &mut out);
            assert!(f.held.len() <= HOLD_CAP + 1000);
        }
        f.finish(&mut out);
        assert_eq!(
            out, long,
            "a line longer than the cap is not a dump's statement"
        );
        assert!(!may_match(b"INSERT"));
        assert!(may_match(b"ALTER"));
    }

    #[tokio::test]
    async fn the_writer_filters_into_its_inner_writer() {
        use tokio::io::AsyncWriteExt as _;
        let mut sink: Vec<u8> = Vec::new();
        let mut w = FilteredWriter::new(&mut sink, ReplayFilter::for_scratch());
        for piece in DUMP.as_bytes().chunks(3) {
            w.write_all(piece).await.expect("write");
        }
        w.shutdown().await.expect("shutdown");
        assert_eq!(w.filter().disabled_events(), ["e`1"]);
        drop(w);
        let text = String::from_utf8(sink).expect("utf-8");
        assert!(text.ends_with("-- Dump completed"));
        assert!(!text.contains("`shop` CHARACTER SET utf8mb4"));
    }
}
