//! The store conformance suite: the [`Store`] contract, checked against any implementation.

use bytes::Bytes;

use crate::error::Error;
use crate::store::{Store, StoreExt, WriteMode};

/// Runs every check of the [`Store`] contract against `store`, under `prefix` (so that several
/// runs can share one bucket). Panics with a message naming the broken promise.
pub async fn store_conformance(store: &dyn Store, prefix: &str) {
    let k = |s: &str| format!("{prefix}{s}");
    let caps = store.capabilities();

    // Streaming put, many chunks, read back equal.
    let chunks: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; 100_003])).collect();
    let expected: Vec<u8> = chunks.concat();
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let n = store
        .put_stream(&k("a/big.bin"), Box::pin(stream))
        .await
        .expect("put_stream of a multi-chunk object succeeds");
    assert_eq!(
        n,
        expected.len() as u64,
        "put_stream reports the bytes stored"
    );
    let back = store.get_all(&k("a/big.bin")).await.expect("get after put");
    assert!(back == expected, "the object reads back byte for byte");
    let info = store
        .head(&k("a/big.bin"))
        .await
        .expect("head")
        .expect("head finds the object");
    assert_eq!(info.size, expected.len() as u64, "head reports the size");

    // A stream that fails leaves nothing behind.
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 10_000])),
        Err(std::io::Error::other("source died")),
    ]);
    let err = store
        .put_stream(&k("a/broken.bin"), Box::pin(failing))
        .await
        .expect_err("a put whose input fails must fail");
    drop(err);
    assert!(
        store
            .head(&k("a/broken.bin"))
            .await
            .expect("head")
            .is_none(),
        "a failed put leaves no object"
    );

    // Empty objects exist and read back empty.
    store
        .put_bytes(&k("a/empty"), Bytes::new(), WriteMode::Overwrite)
        .await
        .expect("empty put");
    assert_eq!(
        store.get_all(&k("a/empty")).await.expect("get empty").len(),
        0
    );

    // Create-only never replaces on stores that declare it.
    store
        .put_bytes(
            &k("m/manifest.json"),
            Bytes::from_static(b"one"),
            WriteMode::CreateOnly,
        )
        .await
        .expect("first create-only write");
    let second = store
        .put_bytes(
            &k("m/manifest.json"),
            Bytes::from_static(b"two"),
            WriteMode::CreateOnly,
        )
        .await;
    if caps.create_only_writes {
        assert!(
            matches!(second, Err(Error::AlreadyExists { .. })),
            "a second create-only write must fail with AlreadyExists, got {second:?}"
        );
        assert_eq!(
            store.get_all(&k("m/manifest.json")).await.expect("get"),
            b"one",
            "create-only must not replace the first object"
        );
    }

    // Missing keys.
    let missing = store.get(&k("nope")).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "get of a missing key is NotFound"
    );
    assert!(
        store.head(&k("nope")).await.expect("head").is_none(),
        "head of a missing key is None"
    );

    // Listing: recursive, sorted, prefix-bounded; directories.
    let listed: Vec<String> = store
        .list(&k(""))
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        listed,
        vec![k("a/big.bin"), k("a/empty"), k("m/manifest.json")],
        "list is recursive, sorted, and shows only committed objects"
    );
    let dirs = store.list_dirs(&k("")).await.expect("list_dirs");
    assert_eq!(
        dirs,
        vec!["a".to_owned(), "m".to_owned()],
        "list_dirs gives child directories"
    );

    // Delete is idempotent.
    store.delete(&k("a/empty")).await.expect("delete");
    store
        .delete(&k("a/empty"))
        .await
        .expect("second delete succeeds");
    assert!(
        store.head(&k("a/empty")).await.expect("head").is_none(),
        "deleted"
    );
    assert_eq!(store.delete_prefix(&k("")).await.expect("delete_prefix"), 2);
    assert!(
        store.list(&k("")).await.expect("list").is_empty(),
        "everything removed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::MemoryStore;

    #[tokio::test]
    async fn memory_store_conforms() {
        store_conformance(&MemoryStore::new(), "t/").await;
    }
}
