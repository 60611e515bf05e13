//! The lock client: the factory bound to one store, as the original's
//! `LockFactory`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::keeper::{self, KeeperCommand};
use crate::lease::LeaseShared;
use crate::metrics::Metrics;
use crate::release;
use crate::slot::SlotState;
use crate::{
    ClientConfig, Clock, Lock, LockBackend, LockError, LockRecord, LostReason, MetricsSnapshot,
    ReleaseMode, SystemClock,
};

/// A lock client bound to one store (one table): it creates [`Lock`]
/// handles, runs the heartbeats of every lock it holds in one background
/// task, and queues its own waiters so only one of them polls the store.
///
/// Cloning is cheap and shares everything. This is the original lynk's
/// `LockFactory`; [`LockFactory`](crate::LockFactory) is an alias.
///
/// The client is generic over the store and the clock through trait objects:
/// `LockBackend` calls are boxed futures anyway (`async_trait`), so erasing
/// the types costs nothing per call and keeps every type signature short.
///
/// # Example
///
/// ```
/// use lynk_core::LockClient;
/// # use lynk_core::{BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest};
/// # #[derive(Debug, Default)] struct MyBackend(std::sync::Mutex<Option<LockRecord>>);
/// # #[async_trait::async_trait] impl LockBackend for MyBackend {
/// #   async fn read(&self, _: &str) -> Result<Option<LockRecord>, BackendError> { Ok(self.0.lock().unwrap().clone()) }
/// #   async fn write(&self, r: WriteRequest) -> Result<LockRecord, WriteError> {
/// #     let mut s = self.0.lock().unwrap();
/// #     if !r.condition.holds_for(s.as_ref()) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
/// #     let rec = r.record_over(s.as_ref()); *s = Some(rec.clone()); Ok(rec) }
/// #   async fn delete(&self, _: &str, v: &Version) -> Result<(), WriteError> {
/// #     let mut s = self.0.lock().unwrap();
/// #     if s.as_ref().map(|r| &r.version) != Some(v) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
/// #     *s = None; Ok(()) }
/// #   fn capabilities(&self) -> Capabilities { Capabilities::minimal() }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lynk_core::LockError> {
/// let client = LockClient::builder(MyBackend::default()).build()?;
/// let lock = client.create_lock("my lock"); // no I/O
/// let guard = lock.acquire().await?;
/// println!("holding with fencing token {}", guard.fencing_token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockClient {
    pub(crate) inner: Arc<ClientInner>,
}

impl fmt::Debug for LockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockClient")
            .field("backend", &self.inner.backend)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct ClientInner {
    pub(crate) backend: Arc<dyn LockBackend>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: ClientConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) runtime: tokio::runtime::Handle,
    slots: Mutex<HashMap<String, SlotState>>,
    keeper: mpsc::UnboundedSender<KeeperCommand>,
    closed: AtomicBool,
    next_id: AtomicU64,
    rng: Mutex<StdRng>,
}

/// Builds a [`LockClient`].
#[derive(Debug)]
#[must_use = "call .build() to get the client"]
pub struct LockClientBuilder {
    backend: Arc<dyn LockBackend>,
    clock: Arc<dyn Clock>,
    config: ClientConfig,
}

impl LockClientBuilder {
    /// Uses `clock` instead of [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses a shared clock.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The `hostIdentifier` written into records (default: the host name).
    pub fn host_identifier(mut self, host: impl Into<String>) -> Self {
        self.config.host_identifier = host.into();
        self
    }

    /// The lease of locks created without one (default 20 s).
    pub fn default_lease(mut self, lease: Duration) -> Self {
        self.config.default_lease = lease;
        self
    }

    /// How often waiters poll a held lock (default 1 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// The drift allowance (default 0.01); see [`ClientConfig`].
    pub fn drift_allowance(mut self, fraction: f64) -> Self {
        self.config.drift_allowance = fraction;
        self
    }

    /// Extra unavailability after an abandoned lease (default zero).
    pub fn lock_delay(mut self, delay: Duration) -> Self {
        self.config.lock_delay = delay;
        self
    }

    /// What release does to the record (default: keep it, marked released).
    pub fn release_mode(mut self, mode: ReleaseMode) -> Self {
        self.config.release_mode = mode;
        self
    }

    /// Seeds the jitter of polls and backoffs, for reproducible simulations.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config.jitter_seed = Some(seed);
        self
    }

    /// Validates the configuration and starts the client's heartbeat task.
    ///
    /// Must be called inside a tokio runtime; the client spawns its tasks on
    /// that runtime.
    pub fn build(self) -> Result<LockClient, LockError> {
        self.config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            LockError::invalid(
                "runtime",
                "LockClient::build must be called inside a tokio runtime; use lynk_core::blocking::LockFactory from non-async code",
            )
        })?;
        let rng = match self.config.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(ClientInner {
            backend: self.backend,
            clock: self.clock,
            config: self.config,
            metrics,
            runtime: runtime.clone(),
            slots: Mutex::new(HashMap::new()),
            keeper: tx,
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            rng: Mutex::new(rng),
        });
        runtime.spawn(
            keeper::run(Arc::downgrade(&inner), rx).instrument(tracing::debug_span!("lynk.keeper")),
        );
        Ok(LockClient { inner })
    }
}

/// The outcome of [`LockClient::shutdown`]: which locks were released and
/// which could not be.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Names of locks released cleanly.
    pub released: Vec<String>,
    /// Names of locks whose release failed, with the error. Their leases
    /// expire on their own.
    pub failed: Vec<(String, LockError)>,
}

impl ShutdownReport {
    /// `true` if every held lock was released.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty()
    }
}

impl LockClient {
    /// Starts building a client over `backend`.
    pub fn builder(backend: impl LockBackend) -> LockClientBuilder {
        LockClientBuilder {
            backend: Arc::new(backend),
            clock: Arc::new(SystemClock),
            config: ClientConfig::default(),
        }
    }

    /// Starts building a client over a shared backend.
    pub fn builder_shared(backend: Arc<dyn LockBackend>) -> LockClientBuilder {
        LockClientBuilder {
            backend,
            clock: Arc::new(SystemClock),
            config: ClientConfig::default(),
        }
    }

    /// A client over `backend` with the default settings.
    pub fn new(backend: impl LockBackend) -> Result<Self, LockError> {
        Self::builder(backend).build()
    }

    /// A handle to the lock called `name`, with the client's default lease.
    /// Does no I/O; the name is checked when the lock is acquired.
    pub fn create_lock(&self, name: impl Into<String>) -> Lock {
        Lock::new(self.clone(), name.into(), self.inner.config.default_lease)
    }

    /// Reads the stored record of lock `name` (who holds it, the payload, the
    /// fencing token). One strongly consistent read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn describe(&self, name: &str) -> Result<Option<LockRecord>, LockError> {
        crate::config::validate_name(name)?;
        self.inner
            .backend
            .read(name)
            .await
            .map_err(|e| LockError::from_backend(name, "read", e))
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The client's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// A copy of the client's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Names of the locks this client holds now.
    pub fn held_locks(&self) -> Vec<String> {
        let slots = self.inner.slots();
        let mut names: Vec<String> = slots
            .iter()
            .filter(|(_, s)| s.holder.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Releases every lock this client holds, fails every waiting acquire
    /// with [`LockError::ShutDown`], stops the heartbeat task, and reports
    /// per lock what happened. Guards of released locks see their lost-lease
    /// signal fire with [`LostReason::ClientShutDown`] before the release is
    /// written, so work still running under them is told to stop.
    ///
    /// Later acquires on any clone of this client fail with `ShutDown`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped, some releases may not have
    /// been sent (their leases then expire on their own).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.closed.store(true, Ordering::Release);
        let holders: Vec<Arc<LeaseShared>> = {
            let mut slots = self.inner.slots();
            let mut holders = Vec::new();
            for state in slots.values_mut() {
                for w in state.waiters.drain(..) {
                    let _ = w.tx.send(Err(LockError::ShutDown));
                }
                if let Some(h) = &state.holder {
                    holders.push(h.clone());
                }
            }
            holders
        };
        let releases = holders.into_iter().map(|lease| {
            let inner = self.inner.clone();
            async move {
                lease.mark_lost(LostReason::ClientShutDown);
                let name = lease.name.clone();
                (name, release::release_record(&inner, lease, false).await)
            }
        });
        let mut report = ShutdownReport::default();
        for (name, result) in futures::future::join_all(releases).await {
            match result {
                Ok(()) => report.released.push(name),
                Err(e) => report.failed.push((name, e)),
            }
        }
        let _ = self.inner.keeper.send(KeeperCommand::Shutdown);
        report
    }
}

impl ClientInner {
    pub(crate) fn slots(&self) -> MutexGuard<'_, HashMap<String, SlotState>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `base` stretched by a random 0–20 %, so pollers spread out.
    pub(crate) fn jitter(&self, base: Duration) -> Duration {
        let factor: f64 = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gen_range(1.0..1.2);
        base.mul_f64(factor)
    }

    /// Starts heartbeating `lease`.
    pub(crate) fn register(&self, lease: Arc<LeaseShared>) {
        let _ = self.keeper.send(KeeperCommand::Register(lease));
    }

    /// Starts an acquirer for `name` if its queue needs one. Call with the
    /// slots locked, after changing the slot.
    pub(crate) fn ensure_acquirer(
        self: &Arc<Self>,
        slots: &mut HashMap<String, SlotState>,
        name: &str,
    ) {
        let Some(state) = slots.get_mut(name) else {
            return;
        };
        state.prune();
        if state.holder.is_none() && !state.waiters.is_empty() && !state.acquirer_running {
            state.acquirer_running = true;
            let seed = std::mem::take(&mut state.ambiguous);
            let inner = self.clone();
            let name = name.to_owned();
            let span = tracing::debug_span!("lynk.acquire", lock = %name);
            self.runtime
                .spawn(crate::acquirer::run(inner, name, seed).instrument(span));
        } else if state.is_idle() {
            slots.remove(name);
        }
    }

    /// The lease was lost: clear it as the local holder and let the queue poll.
    pub(crate) fn on_lost(self: &Arc<Self>, lease: &Arc<LeaseShared>) {
        let mut slots = self.slots();
        if let Some(state) = slots.get_mut(&lease.name) {
            if state.holder.as_ref().is_some_and(|h| h.id == lease.id) {
                state.holder = None;
            }
        }
        self.ensure_acquirer(&mut slots, &lease.name);
    }
}
