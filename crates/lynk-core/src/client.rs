//! The lock client: the factory bound to one store, as the original's
//! `LockFactory`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::keeper::{self, KeeperCommand};
use crate::lease::{LeaseShared, ReleaseStart};
use crate::metrics::Metrics;
use crate::release;
use crate::slot::{SlotState, Waiter};
use crate::token_floor::TokenFloor;
use crate::{
    ClientConfig, Clock, FencingToken, Lock, LockBackend, LockError, LockGuard, LockRecord,
    LostReason, MetricsSnapshot, ReleaseMode, SystemClock,
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
    /// Every lease this client made whose release has not finished, so a
    /// shutdown can release (or wait for) each one and report it.
    leases: Mutex<HashMap<u64, Arc<LeaseShared>>>,
    /// The acquirer and release tasks, so a shutdown can wait for them.
    tasks: TaskTracker,
    pub(crate) token_floor: TokenFloor,
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
            leases: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            token_floor: TokenFloor::default(),
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
    /// Names of locks whose release failed or was not confirmed before the
    /// shutdown's deadline, with the error. Their leases expire on their own.
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
        let limit = self
            .inner
            .config
            .call_timeout_for(self.inner.config.default_lease);
        self.inner
            .read_by(name, self.inner.clock.now() + limit)
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
    /// Releases already under way (a guard just dropped, a lock granted while
    /// the shutdown runs) are waited for and reported too. Only releases the
    /// store confirmed are reported as released; a release still unanswered
    /// when the shutdown's bound ([`ClientConfig::release_timeout`] plus one
    /// call timeout) passes is reported as failed, and its lease expires on
    /// its own.
    ///
    /// Later acquires on any clone of this client fail with `ShutDown`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the releases run in tasks of their own and complete even
    /// if this future is dropped; only the report is lost.
    pub async fn shutdown(&self) -> ShutdownReport {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        {
            let mut slots = inner.slots();
            for state in slots.values_mut() {
                state.fail_all_waiters(|| LockError::ShutDown);
            }
        }
        let config = &inner.config;
        // Long enough for any acquirer's store call in flight (a derived
        // call timeout is at most 10 s) and then its release.
        let longest_call = config.call_timeout.unwrap_or(Duration::from_secs(10));
        let deadline = inner.clock.now() + longest_call + config.release_timeout;
        let mut seen: HashMap<u64, Arc<LeaseShared>> = HashMap::new();
        inner.tasks.close();
        loop {
            for lease in inner.live_leases() {
                inner.release_for_shutdown(&lease);
                seen.insert(lease.id, lease);
            }
            // Acquirers still in a store call may yet grant (and then
            // release) a lock: wait for every task, then look again.
            let done = tokio::select! {
                biased;
                _ = inner.tasks.wait() => true,
                _ = inner.clock.sleep_until(deadline) => false,
            };
            if !done || inner.live_leases().iter().all(|l| seen.contains_key(&l.id)) {
                break;
            }
        }
        // Leases that appeared at the very end are released too, and
        // reported as not (yet) confirmed.
        for lease in inner.live_leases() {
            inner.release_for_shutdown(&lease);
            seen.entry(lease.id).or_insert(lease);
        }
        let _ = inner.keeper.send(KeeperCommand::Shutdown);
        inner.leases_map().retain(|id, _| !seen.contains_key(id));
        let mut report = ShutdownReport::default();
        let mut leases: Vec<Arc<LeaseShared>> = seen.into_values().collect();
        leases.sort_by_key(|l| l.id);
        for lease in leases {
            match lease.release_outcome_now() {
                Some(Ok(())) => report.released.push(lease.name.clone()),
                Some(Err(e)) => report.failed.push((lease.name.clone(), e)),
                None => report.failed.push((
                    lease.name.clone(),
                    LockError::OutcomeUnknown {
                        name: lease.name.clone(),
                        operation: "release",
                        source: crate::BackendError::new(
                            crate::BackendErrorKind::OutcomeUnknown,
                            "the release was not confirmed before the shutdown's deadline",
                        ),
                    },
                )),
            }
        }
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

    /// Spawns an engine task (an acquirer, a release) that a shutdown waits for.
    pub(crate) fn spawn_tracked<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn_on(task, &self.runtime)
    }

    /// The instant a lease written by a write sent at `sent` is valid from.
    pub(crate) fn lease_start(&self, sent: Instant) -> Instant {
        if self.config.mutations.time_lease_from_response {
            return self.clock.now();
        }
        sent
    }

    /// A new lease for a record this client just wrote (sent at `sent`),
    /// remembered until its release finishes.
    pub(crate) fn new_lease(
        &self,
        record: &LockRecord,
        sent: Instant,
        fallback_token: FencingToken,
        heartbeat: bool,
    ) -> Arc<LeaseShared> {
        let lease = Arc::new(LeaseShared::new(
            self.next_id(),
            record,
            self.lease_start(sent),
            fallback_token,
            heartbeat,
        ));
        self.leases_map().insert(lease.id, lease.clone());
        lease
    }

    /// Starts releasing `lease` in a task of its own for a shutdown (telling
    /// the work under it to stop), unless a release of it already runs.
    fn release_for_shutdown(self: &Arc<Self>, lease: &Arc<LeaseShared>) {
        if let ReleaseStart::Started { .. } = lease.begin_release(Some(LostReason::ClientShutDown))
        {
            let (inner, lease) = (self.clone(), lease.clone());
            drop(self.spawn_tracked(async move {
                let _ = release::run_release(&inner, &lease, false).await;
            }));
        }
    }

    /// Forgets a lease whose release finished. Once a shutdown began, leases
    /// are kept until it has reported them.
    pub(crate) fn forget_lease(&self, id: u64) {
        if !self.is_closed() {
            self.leases_map().remove(&id);
        }
    }

    fn leases_map(&self) -> MutexGuard<'_, HashMap<u64, Arc<LeaseShared>>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live_leases(&self) -> Vec<Arc<LeaseShared>> {
        self.leases_map().values().cloned().collect()
    }

    /// Gives a lease just installed as the slot's holder to `waiter` as a
    /// guard and starts its heartbeats; or, when the client was shut down
    /// meanwhile or the lease's token cannot be trusted to increase, releases
    /// it at once and tells the waiter why.
    pub(crate) fn deliver(self: &Arc<Self>, lease: Arc<LeaseShared>, waiter: Option<Waiter>) {
        let refusal = if self.is_closed() {
            Some((LostReason::ClientShutDown, LockError::ShutDown))
        } else if lease.token.get() == u64::MAX {
            Some((
                LostReason::BackendFailed {
                    error: "the fencing token is exhausted".into(),
                },
                LockError::TokenExhausted {
                    name: lease.name.clone(),
                },
            ))
        } else {
            None
        };
        if let Some((reason, error)) = refusal {
            tracing::warn!(lock = %lease.name, %error, "releasing a lock just acquired");
            lease.mark_lost(reason);
            drop(LockGuard::new(self.clone(), lease)); // releases in the background
            if let Some(w) = waiter {
                drop(w.tx.send(Err(error)));
            }
            return;
        }
        self.register(lease.clone());
        let guard = LockGuard::new(self.clone(), lease);
        match waiter {
            Some(w) => drop(w.tx.send(Ok(Some(guard)))),
            // Nobody to take it: dropping the guard releases or hands over.
            None => drop(guard),
        }
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
            drop(self.spawn_tracked(crate::acquirer::run(inner, name, seed).instrument(span)));
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
