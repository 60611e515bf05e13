//! Helpers shared by the engine's test files.
#![allow(dead_code)] // each test file uses a different subset

pub mod monitor;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lynk_core::{FencingToken, LockBackend, LockClient, LockClientBuilder, LockRecord, Version};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

/// A client builder on `clock` with host `host`, default lease `lease` and a
/// fixed jitter seed, so a test replays exactly.
pub fn builder(
    b: impl LockBackend,
    clock: &TestClock,
    host: &str,
    lease: Duration,
    seed: u64,
) -> LockClientBuilder {
    LockClient::builder(b)
        .clock(clock.clone())
        .host_identifier(host)
        .default_lease(lease)
        .jitter_seed(seed)
}

/// A process: a client on `b` with `config`, on `clock`, with host `host`
/// and jitter seed `seed`.
pub fn process_with(
    b: impl LockBackend,
    clock: &TestClock,
    host: &str,
    seed: u64,
    config: lynk_core::ClientConfig,
) -> LockClient {
    LockClient::builder(b)
        .config(config)
        .clock(clock.clone())
        .host_identifier(host)
        .jitter_seed(seed)
        .build()
        .expect("valid config")
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `b` with fault injection whose delays run on `clock`.
pub fn faulty<B: LockBackend>(inner: B, clock: &TestClock) -> FaultyBackend<B> {
    FaultyBackend::new(inner).with_clock(Arc::new(clock.clone()))
}

/// An in-memory store, a test clock, the store behind fault injection, and
/// a client `host` on that (default lease 20 s, jitter seed 7).
pub fn faulty_client(
    host: &str,
) -> (
    MemoryBackend,
    TestClock,
    FaultyBackend<MemoryBackend>,
    LockClient,
) {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    let store = faulty(mem.clone(), &clock);
    let client = builder(store.clone(), &clock, host, Duration::from_secs(20), 7)
        .build()
        .expect("a valid test client");
    (mem, clock, store, client)
}

/// The next write, of any lock, meets `fault`.
pub fn next_write<B: LockBackend>(store: &FaultyBackend<B>, fault: Fault) {
    store.inject(Some(Op::Write), None, fault, Some(1));
}

/// A stored record, as another client (or an operator) would leave it.
pub fn record(key: &str, host: &str, lease: Duration, token: u64, released: bool) -> LockRecord {
    LockRecord {
        key: key.to_owned(),
        version: Version::random(),
        lease_duration: lease,
        host: host.to_owned(),
        fencing_token: Some(FencingToken::new(token)),
        payload: None,
        released,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

/// Lets every ready task run.
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// `fut`, or `None` if `d` passes first on `clock`.
pub async fn within<T>(clock: &TestClock, d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    use lynk_core::Clock;
    tokio::select! {
        biased;
        out = fut => Some(out),
        _ = clock.sleep(d) => None,
    }
}

/// `inner` as a backend without a wait queue (`Capabilities::wait_queue`
/// false), as a custom backend might be: waiters only poll and a release
/// hands over to a local waiter first.
#[derive(Debug, Clone)]
pub struct NoQueue<B>(pub B);

#[lynk_core::async_trait]
impl<B: LockBackend> LockBackend for NoQueue<B> {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, lynk_core::BackendError> {
        self.0.read(key).await
    }
    async fn write(
        &self,
        request: lynk_core::WriteRequest,
    ) -> Result<LockRecord, lynk_core::WriteError> {
        self.0.write(request).await
    }
    async fn delete(&self, key: &str, expected: &Version) -> Result<(), lynk_core::WriteError> {
        self.0.delete(key, expected).await
    }
    fn capabilities(&self) -> lynk_core::Capabilities {
        self.0.capabilities().with_wait_queue(false)
    }
}
