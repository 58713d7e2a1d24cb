//! Small artifacts read whole (a stored schema listing), with a cap, and the row-count
//! comparison every database backend's level 4 makes.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use backup_core::{ArtifactMeta, Manifest, Store, TableStat};
use tokio::io::AsyncWrite;

use crate::artifact::{Consumer, read_pass};

/// Reads `artifact` whole (decompressed) as UTF-8 text, refusing one larger than `max_bytes` (a
/// damaged or hostile store must not exhaust memory), one whose stored bytes do not match their
/// checksum, and one missing from the store.
///
/// # Errors
///
/// A message naming the artifact and saying why it could not be read.
pub async fn read_small_text(
    store: &dyn Store,
    artifact: &ArtifactMeta,
    max_bytes: usize,
) -> Result<String, String> {
    let mut buffer = CappedBuffer {
        bytes: Vec::new(),
        max: max_bytes,
    };
    let pass = read_pass(store, artifact, true, Consumer::Writer(&mut buffer))
        .await
        .map_err(|e| format!("cannot read {}: {e}", artifact.name))?;
    if pass.missing {
        return Err(format!("{} is missing from the store", artifact.name));
    }
    if pass.consumer_stopped {
        return Err(format!(
            "{} is larger than {max_bytes} bytes",
            artifact.name
        ));
    }
    if pass.decompress_error.is_some() || pass.sha256.as_ref() != Some(&artifact.sha256) {
        return Err(format!("{} is damaged", artifact.name));
    }
    String::from_utf8(buffer.bytes).map_err(|_| format!("{} is not UTF-8", artifact.name))
}

/// `manifest` with the table details of every source whose details are hidden
/// (`[encryption] hide_table_names`) read back from its encrypted stats artifact (see
/// [`backup_core::hidden_stats`]); sources without hidden details are left as they are. Needs
/// the identity (installed with [`backup_core::encryption::install_identities`]).
///
/// # Errors
///
/// Why a source's stats artifact could not be read (missing, damaged, no identity that opens
/// it, not a stats document), naming the source and the artifact.
pub async fn reveal_stats(store: &dyn Store, manifest: &Manifest) -> Result<Manifest, String> {
    use backup_core::hidden_stats;
    let mut revealed = manifest.clone();
    for source in revealed.sources.iter_mut() {
        if !hidden_stats::is_hidden(source) {
            continue;
        }
        let Some(artifact) = hidden_stats::stats_artifact(source).cloned() else {
            return Err(format!(
                "source {}: its table statistics are marked encrypted but the manifest lists no {} artifact",
                source.name,
                hidden_stats::STATS_FILE
            ));
        };
        let text = read_small_text(store, &artifact, hidden_stats::MAX_STATS_BYTES)
            .await
            .map_err(|e| format!("source {}: {e}", source.name))?;
        hidden_stats::reveal(source, &text)?;
    }
    Ok(revealed)
}

/// Every table whose restored count differs from the recorded one, named (by `name`) with both
/// counts, then the tables the restored copy has that the record does not.
pub fn count_differences(
    recorded: &[TableStat],
    restored: &[TableStat],
    name: impl Fn(&TableStat) -> String,
) -> Vec<String> {
    let got: BTreeMap<String, u64> = restored.iter().map(|t| (name(t), t.rows)).collect();
    let want: BTreeMap<String, u64> = recorded.iter().map(|t| (name(t), t.rows)).collect();
    let mut out = Vec::new();
    for (table, rows) in &want {
        match got.get(table) {
            None => out.push(format!(
                "table {table} is missing from the restored copy (the backup recorded {rows} rows)"
            )),
            Some(n) if n != rows => out.push(format!(
                "table {table} has {n} rows in the restored copy, the backup recorded {rows}"
            )),
            Some(_) => {}
        }
    }
    for table in got.keys().filter(|k| !want.contains_key(*k)) {
        out.push(format!(
            "table {table} is in the restored copy but not in the backup's record"
        ));
    }
    out
}

/// An in-memory writer that refuses to grow past `max` bytes.
struct CappedBuffer {
    bytes: Vec<u8>,
    max: usize,
}

impl AsyncWrite for CappedBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.bytes.len() + buf.len() > self.max {
            return Poll::Ready(Err(std::io::Error::other("artifact too large")));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, rows: u64) -> TableStat {
        TableStat {
            schema: "public".into(),
            name: name.into(),
            rows,
        }
    }

    #[test]
    fn differences_name_each_table_with_both_counts() {
        let d = count_differences(
            &[t("a", 1), t("b", 2), t("c", 3)],
            &[t("a", 1), t("b", 5), t("d", 0)],
            |t| format!("{}.{}", t.schema, t.name),
        );
        assert_eq!(
            d,
            vec![
                "table public.b has 5 rows in the restored copy, the backup recorded 2".to_owned(),
                "table public.c is missing from the restored copy (the backup recorded 3 rows)"
                    .to_owned(),
                "table public.d is in the restored copy but not in the backup's record".to_owned(),
            ]
        );
        assert!(count_differences(&[t("a", 1)], &[t("a", 1)], |t| t.name.clone()).is_empty());
    }
}
