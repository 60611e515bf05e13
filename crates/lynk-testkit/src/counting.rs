//! Counting requests: [`RequestCounts`], and [`CountingBackend`], which
//! counts every call made to any backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use lynk_core::{
    BackendError, Capabilities, LockBackend, LockRecord, QueueRequest, Version, WriteError,
    WriteRequest,
};

use crate::Op;

/// How many requests of each kind a backend has served (a
/// [`MemoryBackend`](crate::MemoryBackend)) or been sent (through a
/// [`CountingBackend`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestCounts {
    /// `read` calls.
    pub reads: u64,
    /// `write` calls (applied or not).
    pub writes: u64,
    /// `delete` calls (applied or not).
    pub deletes: u64,
    /// `write_queue` calls (applied or not).
    pub queue_writes: u64,
}

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.reads + self.writes + self.deletes + self.queue_writes
    }

    /// Requests made since `earlier`.
    pub fn since(&self, earlier: RequestCounts) -> RequestCounts {
        RequestCounts {
            reads: self.reads - earlier.reads,
            writes: self.writes - earlier.writes,
            deletes: self.deletes - earlier.deletes,
            queue_writes: self.queue_writes - earlier.queue_writes,
        }
    }
}

/// The live counters behind a [`RequestCounts`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    deletes: AtomicU64,
    queue_writes: AtomicU64,
}

impl Counters {
    /// Counts one request of kind `op`.
    pub(crate) fn count(&self, op: Op) {
        let counter = match op {
            Op::Read => &self.reads,
            Op::Write => &self.writes,
            Op::Delete => &self.deletes,
            Op::WriteQueue => &self.queue_writes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn get(&self) -> RequestCounts {
        RequestCounts {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            queue_writes: self.queue_writes.load(Ordering::Relaxed),
        }
    }
}

/// Counts every call made to the backend it wraps, by kind, whatever the
/// outcome. Clones share the counts, so keep one to read them while the
/// client owns another.
///
/// ```
/// use std::sync::Arc;
/// use lynk_core::LockClient;
/// use lynk_testkit::{CountingBackend, MemoryBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lynk_core::LockError> {
/// let counted = CountingBackend::new(MemoryBackend::new());
/// let client = LockClient::new(counted.clone())?;
/// client.create_lock("job").acquire().await?.release().await?;
/// assert_eq!(counted.counts().total(), 2); // one write to acquire, one to release
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CountingBackend<B = Arc<dyn LockBackend>> {
    inner: B,
    counters: Arc<Counters>,
}

impl<B: LockBackend> CountingBackend<B> {
    /// Wraps `inner`, with every count at zero.
    pub fn new(inner: B) -> Self {
        CountingBackend {
            inner,
            counters: Arc::default(),
        }
    }

    /// The calls made so far through this wrapper and its clones.
    pub fn counts(&self) -> RequestCounts {
        self.counters.get()
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

#[async_trait]
impl<B: LockBackend> LockBackend for CountingBackend<B> {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.counters.count(Op::Read);
        self.inner.read(key).await
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.counters.count(Op::Write);
        self.inner.write(request).await
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.counters.count(Op::Delete);
        self.inner.delete(key, expected).await
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        self.counters.count(Op::Write);
        self.inner.write_all(requests).await
    }

    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        self.counters.count(Op::WriteQueue);
        self.inner.write_queue(request).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
