//! The network between a simulated host and the store: whole-host pauses,
//! crashes and partitions, and what the host's client has seen of the
//! store's fencing tokens.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lynk_core::{
    BackendError, BackendErrorKind, Capabilities, Condition, LockBackend, LockRecord, QueueRequest,
    TokenUpdate, Version, WriteError, WriteRequest,
};

use super::signal::Signal;

/// A partition of one host from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Partition {
    /// No partition.
    Healed,
    /// Every call fails before reaching the store (a refused connection).
    Fail,
    /// Every call hangs until the partition heals; a call its caller gave
    /// up on meanwhile never reaches the store.
    Hang,
    /// Every call hangs until the partition heals and is then delivered to
    /// the store, whether its caller still waits or not (bytes held in the
    /// network and delivered late).
    HangDeliverLate,
}

/// The state of one host (shared by its incarnations): paused or not, and
/// partitioned or not.
#[derive(Debug)]
pub(super) struct HostLink {
    paused: Signal<bool>,
    partition: Signal<Partition>,
    /// Calls failed or held by a partition.
    pub(super) partitioned_calls: AtomicU64,
    /// Transactions (`write_all`) the store applied for this host.
    pub(super) transactions: AtomicU64,
}

impl HostLink {
    pub(super) fn new() -> Self {
        HostLink {
            paused: Signal::new(false),
            partition: Signal::new(Partition::Healed),
            partitioned_calls: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
        }
    }

    /// Pauses the whole host; `false` if it was paused already.
    pub(super) fn pause(&self) -> bool {
        self.paused.set_if_not(true)
    }

    pub(super) fn resume(&self) {
        self.paused.set(false);
    }

    pub(super) fn set_partition(&self, p: Partition) {
        self.partition.set(p);
    }

    /// Waits until the host is not paused.
    pub(super) async fn awake(&self) {
        self.paused.wait_for(|p| !p).await;
    }

    /// Waits until no partition cuts the host off.
    async fn healed(&self) {
        self.partition.wait_for(|p| p == Partition::Healed).await;
    }
}

/// Every wall-clock token start of a run: (record key, `initial`) → the
/// highest token of that record its client had seen when it sent the write.
pub(super) type Origins = Arc<Mutex<std::collections::BTreeMap<(String, u64), Option<u64>>>>;

/// What one client (one host incarnation) has seen of the store's tokens:
/// per record key, the highest in any record handed to it, and for each
/// acquisition write that could restart the token, the highest seen when it
/// was sent.
#[derive(Debug, Default)]
pub(super) struct SeenTokens {
    highest: Mutex<HashMap<String, u64>>,
    /// (key, `initial`) of each acquisition write → highest token of that
    /// key seen at its send.
    initials: Mutex<HashMap<(String, u64), Option<u64>>>,
    /// The same, for every client of the run (shared).
    pub(super) origins: Origins,
}

impl SeenTokens {
    /// A client's view, recording its wall-clock starts in `origins` too.
    pub(super) fn sharing(origins: Origins) -> Self {
        SeenTokens {
            origins,
            ..SeenTokens::default()
        }
    }

    fn observe(&self, record: Option<&LockRecord>) {
        if let Some(r) = record {
            if let Some(t) = r.fencing_token {
                let mut h = self.highest.lock().unwrap_or_else(|e| e.into_inner());
                let top = h.entry(r.key.clone()).or_insert(t.get());
                *top = (*top).max(t.get());
            }
        }
    }

    fn sent(&self, request: &WriteRequest) {
        // A semaphore's write always carries its claim's token as `initial`
        // (the record's token + 1, computed by the client); the store uses
        // it as a start only when the record has no token, which in a run
        // is only when the write creates the record.
        let semaphore = request
            .payload
            .as_ref()
            .is_some_and(|p| p.starts_with(b"lynk-semaphore"));
        if semaphore && !matches!(request.condition, Condition::Absent) {
            return;
        }
        if let TokenUpdate::Next { initial } = request.token {
            let seen = self
                .highest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&request.key)
                .copied();
            let key = (request.key.clone(), initial);
            self.origins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_insert(seen);
            self.initials
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, seen);
        }
    }

    /// If `token` is the wall-clock start of one of this client's writes
    /// (the record had no token), the highest token the client had seen when
    /// it sent that write.
    pub(super) fn restart_of(&self, name: &str, token: u64) -> Option<Option<u64>> {
        self.initials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(name.to_owned(), token))
            .copied()
    }

    /// If `token` descends (by `+ 1` per acquisition) from a wall-clock start
    /// sent by any client of the run, that start's "highest token seen". A
    /// start applied late (a write held before the store) can recreate a
    /// deleted record below a token handed out meanwhile, and the tokens
    /// after it descend from it: the same documented clock dependence.
    pub(super) fn lineage_of(&self, name: &str, token: u64) -> Option<Option<u64>> {
        const ACQUISITIONS_PER_LINEAGE: u64 = 100_000;
        let origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        let ((_, start), &seen) = origins
            .range((name.to_owned(), 0)..=(name.to_owned(), token))
            .next_back()?;
        (token - start < ACQUISITIONS_PER_LINEAGE).then_some(seen)
    }
}

/// The store as one host incarnation reaches it. While the host is paused
/// no call leaves it and no response is taken in (so a paused host's
/// heartbeats neither reach the store nor update its own view); once the
/// incarnation crashed nothing moves at all; a partition fails or holds its
/// calls.
#[derive(Debug)]
pub(super) struct HostNet {
    pub(super) inner: Arc<dyn LockBackend>,
    pub(super) link: Arc<HostLink>,
    /// The incarnation is running (not crashed).
    pub(super) alive: Arc<Signal<bool>>,
    pub(super) seen: Arc<SeenTokens>,
}

impl HostNet {
    /// Waits until the host is awake; never returns once it crashed.
    async fn gate(&self) {
        loop {
            if !self.alive.get() {
                std::future::pending::<()>().await;
            }
            if !self.link.paused.get() {
                return;
            }
            tokio::select! {
                biased;
                _ = self.alive.wait_for(|a| !a) => {}
                _ = self.link.paused.wait_for(|p| !p) => {}
            }
        }
    }

    /// Runs `call` across the network: through the gate, the partition and
    /// back through the gate.
    async fn cross<T, F, Fut>(&self, call: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn LockBackend>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.gate().await;
        let partition = self.link.partition.get();
        let out = match partition {
            Partition::Healed => call(self.inner.clone()).await,
            Partition::Fail => {
                self.link.partitioned_calls.fetch_add(1, Ordering::Relaxed);
                return Err(BackendError::new(
                    BackendErrorKind::Unavailable,
                    "simulated partition: the store is unreachable",
                ));
            }
            Partition::Hang => {
                self.link.partitioned_calls.fetch_add(1, Ordering::Relaxed);
                self.link.healed().await;
                call(self.inner.clone()).await
            }
            Partition::HangDeliverLate => {
                self.link.partitioned_calls.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = tokio::sync::oneshot::channel();
                let (link, inner) = (self.link.clone(), self.inner.clone());
                tokio::spawn(async move {
                    link.healed().await;
                    let _ = tx.send(call(inner).await);
                });
                match rx.await {
                    Ok(out) => out,
                    Err(_) => std::future::pending().await,
                }
            }
        };
        self.gate().await;
        Ok(out)
    }
}

#[async_trait]
impl LockBackend for HostNet {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        let key = key.to_owned();
        let out = self
            .cross(move |b| async move { b.read(&key).await })
            .await?;
        if let Ok(r) = &out {
            self.seen.observe(r.as_ref());
        }
        out
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.seen.sent(&request);
        let out = self
            .cross(move |b| async move { b.write(request).await })
            .await?;
        match &out {
            Ok(r) => self.seen.observe(Some(r)),
            Err(WriteError::ConditionFailed { current }) => self.seen.observe(current.as_ref()),
            Err(_) => {}
        }
        out
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        let (key, expected) = (key.to_owned(), expected.clone());
        let out = self
            .cross(move |b| async move { b.delete(&key, &expected).await })
            .await?;
        if let Err(WriteError::ConditionFailed { current }) = &out {
            self.seen.observe(current.as_ref());
        }
        out
    }

    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        let out = self
            .cross(move |b| async move { b.write_queue(request).await })
            .await?;
        match &out {
            Ok(r) => self.seen.observe(Some(r)),
            Err(WriteError::ConditionFailed { current }) => self.seen.observe(current.as_ref()),
            Err(_) => {}
        }
        out
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        for request in &requests {
            self.seen.sent(request);
        }
        let out = self
            .cross(move |b| async move { b.write_all(requests).await })
            .await?;
        match &out {
            Ok(()) => {
                self.link.transactions.fetch_add(1, Ordering::Relaxed);
            }
            Err(WriteError::ConditionFailed { current }) => self.seen.observe(current.as_ref()),
            Err(_) => {}
        }
        out
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// A store without a wait queue (as a custom backend that does not
/// implement one): waiters poll, releases hand over locally or release.
#[derive(Debug)]
pub(super) struct NoQueue(pub(super) Arc<dyn LockBackend>);

#[async_trait]
impl LockBackend for NoQueue {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.0.read(key).await
    }
    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.0.write(request).await
    }
    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.0.delete(key, expected).await
    }
    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        self.0.write_all(requests).await
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities().with_wait_queue(false)
    }
}

/// A store that never returns the record with a failed condition (as a
/// backend without DynamoDB's `ALL_OLD`): the engine must read it.
#[derive(Debug)]
pub(super) struct NoCurrentOnConflict(pub(super) Arc<dyn LockBackend>);

#[async_trait]
impl LockBackend for NoCurrentOnConflict {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.0.read(key).await
    }
    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        match self.0.write(request).await {
            Err(WriteError::ConditionFailed { .. }) => {
                Err(WriteError::ConditionFailed { current: None })
            }
            other => other,
        }
    }
    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        match self.0.delete(key, expected).await {
            Err(WriteError::ConditionFailed { .. }) => {
                Err(WriteError::ConditionFailed { current: None })
            }
            other => other,
        }
    }
    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        match self.0.write_queue(request).await {
            Err(WriteError::ConditionFailed { .. }) => {
                Err(WriteError::ConditionFailed { current: None })
            }
            other => other,
        }
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::minimal().with_wait_queue(self.0.capabilities().wait_queue)
    }
}
