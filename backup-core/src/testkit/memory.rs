use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::store::{ByteStream, ObjectInfo, Store, StoreCapabilities, WriteMode};

/// A [`Store`] in memory, for unit tests of logic. Honours create-only writes.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Bytes, Timestamp)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, Timestamp)>> {
        // A panic in another test thread must not hide this store's contents.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces an object's bytes directly (to simulate corruption in tests).
    pub fn tamper(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut objects = self.lock();
        if let Some((bytes, _)) = objects.get_mut(key) {
            let mut v = bytes.to_vec();
            f(&mut v);
            *bytes = Bytes::from(v);
        }
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &str {
        "memory://"
    }

    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            create_only_writes: true,
            durable_writes: false,
            local: false,
        }
    }

    async fn put_stream(&self, key: &str, mut data: ByteStream) -> Result<u64> {
        let mut buf = Vec::new();
        while let Some(chunk) = data.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| Error::store("put", key, e))?);
        }
        let len = buf.len() as u64;
        self.lock()
            .insert(key.to_owned(), (Bytes::from(buf), Timestamp::now()));
        Ok(len)
    }

    async fn put_bytes(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<()> {
        let mut objects = self.lock();
        if mode == WriteMode::CreateOnly && objects.contains_key(key) {
            return Err(Error::AlreadyExists { key: key.into() });
        }
        objects.insert(key.to_owned(), (data, Timestamp::now()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let bytes = self
            .lock()
            .get(key)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| Error::NotFound { key: key.into() })?;
        // Several chunks, like a real store, so readers are exercised across boundaries.
        let chunks: Vec<std::io::Result<Bytes>> = (0..bytes.len())
            .step_by(64 * 1024)
            .map(|i| Ok(bytes.slice(i..bytes.len().min(i + 64 * 1024))))
            .collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        Ok(self.lock().get(key).map(|(b, t)| ObjectInfo {
            key: key.into(),
            size: b.len() as u64,
            last_modified: *t,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, t))| ObjectInfo {
                key: k.clone(),
                size: b.len() as u64,
                last_modified: *t,
            })
            .collect())
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let mut dirs: Vec<String> = self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(prefix)?;
                rest.split_once('/').map(|(d, _)| d.to_owned())
            })
            .collect();
        dirs.dedup();
        Ok(dirs)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.lock().remove(key);
        Ok(())
    }
}
