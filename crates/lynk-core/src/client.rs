//! The lock client: the factory bound to one store, as the original's
//! `LockFactory`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Engine, ShutdownReport};
use crate::{
    ClientConfig, Clock, Lock, LockBackend, LockError, LockRecord, MetricsSnapshot, ReleaseMode,
    SystemClock,
};

/// A lock client bound to one store (one table): it creates [`Lock`]
/// handles, runs the heartbeats of every lock it holds in one background
/// task, and queues its own waiters so only one of them polls the store.
///
/// Cloning is cheap and shares everything. This is the original lynk's
/// `LockFactory`; the blocking [`blocking::LockFactory`](crate::blocking::LockFactory)
/// reads like it.
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
    pub(crate) engine: Arc<Engine>,
    /// Per-name state shared by this client's leader observers and
    /// semaphores.
    pub(crate) registry: Arc<crate::registry::Registry>,
}

impl fmt::Debug for LockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockClient")
            .field("backend", &self.engine.backend)
            .field("config", &self.engine.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LockClient`].
#[derive(Debug)]
#[must_use = "call .build() to get the client"]
pub struct LockClientBuilder {
    backend: Arc<dyn LockBackend>,
    clock: Arc<dyn Clock>,
    config: ClientConfig,
    wake: Option<(Arc<dyn crate::WakeTransport>, String)>,
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

    /// How often waiters poll a held lock once their first quick polls are
    /// done (default 1.5 s); see [`ClientConfig::poll_interval`].
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// A waiter's first poll after a failed attempt (default 100 ms); see
    /// [`ClientConfig::first_poll`].
    pub fn first_poll(mut self, after: Duration) -> Self {
        self.config.first_poll = after;
        self
    }

    /// Sends wake-ups through `transport` instead of UDP, and advertises
    /// `address` (in the transport's terms) in this client's queue entries;
    /// the transport delivers by calling [`LockClient::wake`] on the
    /// receiving client. For simulations and custom networks; most users
    /// want [`wake_ups`](LockClientBuilder::wake_ups).
    pub fn wake_transport(
        mut self,
        transport: Arc<dyn crate::WakeTransport>,
        address: impl Into<String>,
    ) -> Self {
        self.wake = Some((transport, address.into()));
        self
    }

    /// Listen for wake-up datagrams (off by default); see [`WakeUps`](crate::WakeUps).
    pub fn wake_ups(mut self, wake: crate::WakeUps) -> Self {
        self.config.wake_ups = Some(wake);
        self
    }

    /// How long a granted waiter has to confirm (default 5 s); see
    /// [`ClientConfig::grant_timeout`].
    pub fn grant_timeout(mut self, timeout: Duration) -> Self {
        self.config.grant_timeout = timeout;
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

    /// Labels this client's records (after its process id) so people can
    /// tell holders on one host apart; see [`ClientConfig::holder_label`].
    pub fn holder_label(mut self, label: impl Into<String>) -> Self {
        self.config.holder_label = Some(label.into());
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
        let engine = Engine::start(self.backend, self.clock, self.config, self.wake)?;
        Ok(LockClient {
            engine,
            registry: Arc::default(),
        })
    }
}

impl LockClient {
    /// Starts building a client over `backend`.
    pub fn builder(backend: impl LockBackend) -> LockClientBuilder {
        LockClientBuilder {
            backend: Arc::new(backend),
            clock: Arc::new(SystemClock),
            config: ClientConfig::default(),
            wake: None,
        }
    }

    /// Starts building a client over a shared backend.
    pub fn builder_shared(backend: Arc<dyn LockBackend>) -> LockClientBuilder {
        LockClientBuilder {
            backend,
            clock: Arc::new(SystemClock),
            config: ClientConfig::default(),
            wake: None,
        }
    }

    /// A client over `backend` with the default settings.
    pub fn new(backend: impl LockBackend) -> Result<Self, LockError> {
        Self::builder(backend).build()
    }

    /// A handle to the lock called `name`, with the client's default lease.
    /// Does no I/O; the name is checked when the lock is acquired.
    pub fn create_lock(&self, name: impl Into<String>) -> Lock {
        Lock::new(self.clone(), name.into(), self.engine.config.default_lease)
    }

    /// A wake-up for lock `name` arrived (from a custom
    /// [`WakeTransport`](crate::WakeTransport)): if this client waits for
    /// that lock, it polls now instead of at its next poll. Rate-limited per
    /// lock like datagrams (two at once, then one per poll interval);
    /// ignored if it waits for no such lock. It never grants anything.
    pub fn wake(&self, name: &str) {
        self.engine.on_wake(name);
    }

    /// Reads the stored record of lock `name` (who holds it, the payload, the
    /// fencing token). One strongly consistent read, given up after the
    /// call timeout of the default lease.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn describe(&self, name: &str) -> Result<Option<LockRecord>, LockError> {
        crate::config::validate_name(name)?;
        self.engine.describe(name).await
    }

    /// Releases lock `name` if its record still carries `version`, without
    /// holding it: for a lock acquired by a process that
    /// [detached](crate::LockGuard::detach) its guard, or by an operator who
    /// read the version with [`describe`](Self::describe). Writes the same
    /// released record a holder's release writes (the fencing token is kept),
    /// conditioned on `version`, in one request bounded by the call timeout.
    ///
    /// Returns the record written, or [`WriteError::ConditionFailed`](crate::WriteError::ConditionFailed)
    /// with the stored record when it no longer carries `version`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the release applied or not.
    pub async fn release_version(
        &self,
        name: &str,
        version: &crate::Version,
    ) -> Result<LockRecord, crate::WriteError> {
        self.engine.release_version(name, version).await
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.engine.config
    }

    /// The client's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.engine.clock
    }

    /// A copy of the client's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.engine.metrics.snapshot()
    }

    /// Names of the locks this client holds now.
    pub fn held_locks(&self) -> Vec<String> {
        self.engine.held_names()
    }

    /// Releases every lock and semaphore permit this client holds, fails
    /// every waiting acquire
    /// with [`LockError::ShutDown`], stops the heartbeat task, and reports
    /// per lock what happened. Guards of released locks see their lost-lease
    /// signal fire with [`LostReason::ClientShutDown`](crate::LostReason::ClientShutDown)
    /// before the release is written, so work still running under them is
    /// told to stop.
    ///
    /// Releases already under way (a guard just dropped, a lock granted while
    /// the shutdown runs) are waited for and reported too. Only releases the
    /// store confirmed are reported as released; a release still unanswered
    /// when the shutdown's bound (the longest call timeout, at most 10 s by
    /// default, plus [`ClientConfig::release_timeout`]) passes is reported as
    /// failed, and its lease expires on its own.
    ///
    /// Later acquires on any clone of this client fail with `ShutDown`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the releases run in tasks of their own and complete even
    /// if this future is dropped; only the report is lost.
    pub async fn shutdown(&self) -> ShutdownReport {
        let semaphores = self.registry.all::<crate::semaphore::SemaphoreCore>();
        futures::future::join_all(semaphores.iter().map(|(_, core)| core.shutdown())).await;
        self.engine.shutdown().await
    }
}
