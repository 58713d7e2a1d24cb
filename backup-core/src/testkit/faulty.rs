use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::store::{ByteStream, ObjectInfo, Store, StoreCapabilities, WriteMode};

/// Which operations of a [`FaultyStore`] fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail the Nth write (1-based), counting `put_stream` and `put_bytes` together.
    pub fail_nth_write: Option<usize>,
    /// Fail a `put_stream` once this many bytes went through it (a full disk, a dropped link).
    pub fail_put_after_bytes: Option<u64>,
    /// Fail any write whose key ends with `manifest.json`.
    pub fail_manifest_write: bool,
    /// Fail every operation, as if the store were unreachable.
    pub unreachable: bool,
}

impl FaultPlan {
    /// Fail the Nth write (1-based).
    pub fn fail_nth_write(n: usize) -> Self {
        FaultPlan {
            fail_nth_write: Some(n),
            ..Self::default()
        }
    }

    /// Fail a streaming put after `bytes` bytes.
    pub fn fail_put_after_bytes(bytes: u64) -> Self {
        FaultPlan {
            fail_put_after_bytes: Some(bytes),
            ..Self::default()
        }
    }

    /// Fail the manifest write.
    pub fn fail_manifest_write() -> Self {
        FaultPlan {
            fail_manifest_write: true,
            ..Self::default()
        }
    }
}

/// A store that wraps another and fails on purpose, following a [`FaultPlan`].
///
/// Failures happen the way real ones do: a failed streaming put has consumed part of its input
/// and leaves nothing behind in the inner store.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Mutex<FaultPlan>,
    writes: AtomicUsize,
    injected: AtomicU64,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, plan: FaultPlan) -> Self {
        FaultyStore {
            inner,
            plan: Mutex::new(plan),
            writes: AtomicUsize::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// The wrapped store, to inspect what really got written.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Changes the plan (e.g. heal the store).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    /// How many faults were injected so far.
    pub fn faults_injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn plan(&self) -> FaultPlan {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fault(&self, op: &'static str, key: &str, what: &str) -> Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        Error::store(op, key, format!("injected fault: {what}"))
    }

    fn check_write(&self, key: &str) -> Result<()> {
        let plan = self.plan();
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if plan.unreachable {
            return Err(self.fault("put", key, "the store is unreachable"));
        }
        if plan.fail_nth_write == Some(n) {
            return Err(self.fault("put", key, &format!("write #{n} failed")));
        }
        if plan.fail_manifest_write && key.ends_with("manifest.json") {
            return Err(self.fault("put", key, "the manifest write failed"));
        }
        Ok(())
    }

    fn check_read(&self, op: &'static str, key: &str) -> Result<()> {
        if self.plan().unreachable {
            return Err(self.fault(op, key, "the store is unreachable"));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }

    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64> {
        if let Err(e) = self.check_write(key) {
            // Consume a little, like a real upload that breaks after starting.
            let mut data = data;
            let _ = data.next().await;
            return Err(e);
        }
        let Some(limit) = self.plan().fail_put_after_bytes else {
            return self.inner.put_stream(key, data).await;
        };
        self.injected.fetch_add(1, Ordering::SeqCst);
        let mut seen = 0u64;
        let limited = data.map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > limit {
                Err(std::io::Error::other(format!(
                    "injected fault: no space left after {limit} bytes"
                )))
            } else {
                Ok(chunk)
            }
        });
        self.inner.put_stream(key, Box::pin(limited)).await
    }

    async fn put_bytes(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<()> {
        self.check_write(key)?;
        self.inner.put_bytes(key, data, mode).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.check_read("get", key)?;
        self.inner.get(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        self.check_read("head", key)?;
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.check_read("list", prefix)?;
        self.inner.list(prefix).await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        self.check_read("list", prefix)?;
        self.inner.list_dirs(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check_read("delete", key)?;
        self.inner.delete(key).await
    }
}
