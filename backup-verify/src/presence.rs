//! Presence checks for blobs that need no re-read (objects a backup took unchanged from the
//! previous verified one): each blob must be in the store with its indexed size. Many of them
//! are checked by listing the blob directories their digests fall in (one request per
//! directory, at most 256, instead of one per blob); a few by one `HEAD` each.

use std::collections::{BTreeSet, HashMap};

use backup_core::{Digest, Error, Result, Store, layout};
use futures::StreamExt;

/// Requests in flight at once: each is small, so many more than blob reads.
pub(crate) const PRESENCE_CONCURRENCY: usize = 32;
/// From this many blobs on, the blob directories are listed instead of each blob asked for.
const LIST_FROM: usize = 1024;
/// Blobs remembered for a later check; past this, each is asked for at once (bounded memory:
/// a digest, a size and an object key each).
pub(crate) const PENDING_LIMIT: usize = 200_000;

/// A blob to check: expected size and the object key it was indexed under (for messages).
pub(crate) type Pending = HashMap<Digest, (u64, String)>;

/// One problem found: (object key, blob key, what is wrong).
pub(crate) type Problem = (String, String, String);

fn wrong_size(blob: &str, found: u64, expected: u64) -> String {
    format!("the blob {blob} is {found} bytes instead of {expected}")
}

fn missing(blob: &str) -> String {
    format!("the blob {blob} is missing from the store")
}

/// `None` when the blob of `digest` is in the store with `size` bytes, else what is wrong.
pub(crate) async fn head_check(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
) -> Result<Option<String>> {
    let blob = layout::blob_key(digest);
    Ok(match store.head(&blob).await? {
        None => Some(missing(&blob)),
        Some(info) if info.size != size => Some(wrong_size(&blob, info.size, size)),
        Some(_) => None,
    })
}

/// Checks every pending blob; returns the problems found.
///
/// # Errors
///
/// The store's error when a listing or a `HEAD` fails (not when a blob is missing).
pub(crate) async fn check_pending(store: &dyn Store, mut pending: Pending) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    if pending.len() < LIST_FROM {
        let checks =
            futures::stream::iter(pending.into_iter().map(|(digest, (size, key))| async move {
                let problem = head_check(store, &digest, size).await?;
                Ok::<_, Error>(problem.map(|p| (key, layout::blob_key(&digest), p)))
            }))
            .buffer_unordered(PRESENCE_CONCURRENCY);
        futures::pin_mut!(checks);
        while let Some(found) = checks.next().await {
            problems.extend(found?);
        }
        return Ok(problems);
    }
    let dirs: BTreeSet<String> = pending.keys().map(|d| d.hex()[..2].to_owned()).collect();
    let listings = futures::stream::iter(dirs.into_iter().map(|dir| async move {
        match store.list(&format!("{}{dir}/", layout::BLOBS_DIR)).await {
            Err(Error::NotFound { .. }) => Ok(Vec::new()),
            other => other,
        }
    }))
    .buffer_unordered(PRESENCE_CONCURRENCY);
    futures::pin_mut!(listings);
    while let Some(listed) = listings.next().await {
        for obj in listed? {
            let Some(digest) = layout::blob_digest(&obj.key) else {
                continue;
            };
            if let Some((size, key)) = pending.remove(&digest)
                && obj.size != size
            {
                problems.push((key, obj.key.clone(), wrong_size(&obj.key, obj.size, size)));
            }
        }
    }
    for (digest, (_, key)) in pending {
        let blob = layout::blob_key(&digest);
        let message = missing(&blob);
        problems.push((key, blob, message));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::WriteMode;
    use backup_core::testkit::MemoryStore;
    use bytes::Bytes;

    async fn stored(store: &MemoryStore, n: usize) -> Pending {
        let mut pending = Pending::new();
        for i in 0..n {
            let data = format!("blob number {i}");
            let digest = Digest::of(data.as_bytes());
            store
                .put_bytes(
                    &layout::blob_key(&digest),
                    Bytes::from(data.clone()),
                    WriteMode::Overwrite,
                )
                .await
                .expect("put");
            pending.insert(digest, (data.len() as u64, format!("obj-{i}")));
        }
        pending
    }

    /// Both ways (a few blobs: HEADs; many: listings) find the same problems: a missing blob
    /// and one of the wrong size, named with their object keys.
    #[tokio::test]
    async fn missing_and_resized_blobs_are_found_by_heads_and_by_listings() {
        for n in [10, LIST_FROM + 10] {
            let store = MemoryStore::new();
            let mut pending = stored(&store, n).await;
            assert!(
                check_pending(&store, pending.clone())
                    .await
                    .expect("runs")
                    .is_empty(),
                "{n}"
            );
            let gone = Digest::of(b"never stored");
            pending.insert(gone, (12, "obj-gone".into()));
            let (resized, _) = pending
                .iter()
                .find(|(d, _)| **d != gone)
                .map(|(d, v)| (*d, v.clone()))
                .expect("one");
            pending.get_mut(&resized).expect("there").0 += 1;
            let mut problems = check_pending(&store, pending).await.expect("runs");
            problems.sort();
            assert_eq!(problems.len(), 2, "{n}: {problems:?}");
            assert!(
                problems.iter().any(|(k, b, p)| k == "obj-gone"
                    && *b == layout::blob_key(&gone)
                    && p.contains("missing")),
                "{n}: {problems:?}"
            );
            assert!(
                problems
                    .iter()
                    .any(|(_, b, p)| *b == layout::blob_key(&resized)
                        && p.contains("bytes instead of")),
                "{n}: {problems:?}"
            );
        }
    }
}
