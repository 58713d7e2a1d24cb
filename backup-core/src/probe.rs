//! The store self-test run in preflight: can we write, read back, list, delete, and stream
//! an upload?

use crate::{Error, Result, Store, StoreExt, WriteMode};
use bytes::Bytes;

/// Writes, reads back, lists and deletes a small probe object under `.probe/`, then streams
/// one up the way artifacts go (a multipart upload on S3) and deletes it.
///
/// # Errors
///
/// [`Error::StoreUnavailable`] naming the step that failed.
pub async fn probe_store(store: &dyn Store) -> Result<()> {
    let unusable = |message: String| Error::StoreUnavailable {
        store: store.name().to_owned(),
        message,
    };
    let unavailable =
        |step: &str, e: Error| unusable(format!("{step} failed: {}", error_chain(&e)));
    let delete = |key: String| async move {
        store
            .delete(&key)
            .await
            .map_err(|e| unavailable("deleting the probe object", e))
    };
    let key = format!(
        ".probe/{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    );
    let payload = Bytes::from_static(b"pre-deploy store probe");
    store
        .put_bytes(&key, payload.clone(), WriteMode::Overwrite)
        .await
        .map_err(|e| unavailable("writing a probe object", e))?;
    let back = store
        .get_all(&key)
        .await
        .map_err(|e| unavailable("reading the probe object back", e))?;
    if back != payload {
        return Err(unusable(
            "the probe object read back different bytes than were written".into(),
        ));
    }
    store
        .list(".probe/")
        .await
        .map_err(|e| unavailable("listing", e))?;
    delete(key.clone()).await?;
    // Artifacts stream up as multipart uploads: a store that allows small writes but refuses
    // multipart ones (a policy without the multipart actions) must fail here, not mid-backup.
    let streamed = format!("{key}-stream");
    let data: crate::ByteStream = Box::pin(futures::stream::iter([Ok::<_, std::io::Error>(
        payload.clone(),
    )]));
    let written = store
        .put_stream(&streamed, data)
        .await
        .map_err(|e| unavailable("a streaming (multipart) upload", e))?;
    delete(streamed).await?;
    if written != payload.len() as u64 {
        return Err(unusable(format!(
            "a streaming upload of {} bytes reported {written}",
            payload.len()
        )));
    }
    Ok(())
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // object_store repeats a cause's text in its wrapper: print each text once.
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}
