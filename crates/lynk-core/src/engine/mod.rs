//! The lock engine behind the public face ([`LockClient`](crate::LockClient),
//! [`Lock`](crate::Lock), [`LockGuard`](crate::LockGuard)): one [`Engine`]
//! per client owns the backend, the clock, the settings, the per-name
//! [`slots`] and every lease; it is the one place that spawns tasks.
//!
//! - [`writes`]: every write the protocol makes, and how a failed or
//!   unanswered write is resolved;
//! - [`acquirer`], [`keeper`], [`release`]: the tasks, which use the engine
//!   and nothing of the public face;
//! - [`calls`]: store calls with time limits; [`token_floor`]: the highest
//!   token seen per name; [`lease`]: one held lease; [`handle`]: the owned
//!   lease a waiter is granted; [`payload`]: a held lease's payload replaced
//!   by a heartbeat that carries it; [`shutdown`].

mod acquirer;
mod calls;
mod handle;
mod keeper;
mod lease;
mod payload;
mod poll;
mod release;
mod shutdown;
mod slots;
mod token_floor;
mod transact;
mod wake_listener;
mod writes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub(crate) use calls::unless_panicked;
pub(crate) use handle::LeaseHandle;
pub(crate) use lease::LeaseShared;
pub use shutdown::ShutdownReport;
pub(crate) use slots::{AcquireSpec, Grant};

use crate::metrics::Metrics;
use crate::wake::{WakeLimiter, WakeLimits, WakeListener, WakeSender, WakeTransport};
use crate::{ClientConfig, Clock, FencingToken, LockBackend, LockError, LockRecord, LostReason};
use keeper::KeeperCommand;
use slots::{AcquirerStart, Enqueued, Slots, Waiter};
use token_floor::TokenFloor;
use writes::OwnWrites;

/// The most [`Engine::jitter`] stretches a gap by (exclusive): 20 %.
pub(crate) const MAX_JITTER: f64 = 1.2;

/// The engine of one client.
pub(crate) struct Engine {
    pub(crate) backend: Arc<dyn LockBackend>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: ClientConfig,
    pub(crate) metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    slots: Slots,
    keeper: mpsc::UnboundedSender<KeeperCommand>,
    closed: AtomicBool,
    next_id: AtomicU64,
    rng: Mutex<StdRng>,
    /// Every lease not yet released, so a shutdown can release (or wait for)
    /// each one and report it.
    leases: Mutex<HashMap<u64, Arc<LeaseShared>>>,
    /// The acquirer and release tasks, so a shutdown can wait for them.
    tasks: TaskTracker,
    token_floor: TokenFloor,
    /// Sends wake-ups to queued waiters that listen.
    wake_sender: Arc<dyn WakeTransport>,
    /// Limits the polls wake-ups trigger, per lock.
    wake_limiter: WakeLimiter,
    /// This client's own listener, if it listens: the address it advertises
    /// and the scope of its datagrams.
    wake_address: Option<String>,
    /// Stops the wake-up listener when the engine goes.
    wake_stop: CancellationToken,
    /// [`ClientConfig::holder_detail`], made once (it asks the OS for the
    /// process id).
    pub(crate) holder_detail: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.wake_stop.cancel();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts an engine on the current tokio runtime, with its heartbeat task.
    pub(crate) fn start(
        backend: Arc<dyn LockBackend>,
        clock: Arc<dyn Clock>,
        config: ClientConfig,
        transport: Option<(Arc<dyn WakeTransport>, String)>,
    ) -> Result<Arc<Engine>, LockError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            LockError::invalid(
                "runtime",
                "LockClient::build must be called inside a tokio runtime; use lynk_core::blocking::LockFactory from non-async code",
            )
        })?;
        let rng = match config.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let listener = match &config.wake_ups {
            Some(w) => Some(
                WakeListener::bind(w.listen, w.advertise)
                    .map_err(|e| LockError::invalid("wake-ups", e.to_string()))?,
            ),
            None => None,
        };
        let limiter = WakeLimiter::new(clock.clone(), WakeLimits::per_poll(config.poll_interval))
            .map_err(|e| LockError::invalid("wake-ups", e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine {
            wake_address: match (&listener, &transport) {
                (Some(l), _) => Some(l.advertise().to_string()),
                (None, Some((_, address))) => Some(address.clone()),
                (None, None) => None,
            },
            wake_sender: match transport {
                Some((t, _)) => t,
                None => Arc::new(WakeSender::new()),
            },
            wake_limiter: limiter,
            wake_stop: CancellationToken::new(),
            holder_detail: config.holder_detail(),
            backend,
            clock,
            config,
            metrics: Arc::default(),
            runtime: runtime.clone(),
            slots: Slots::default(),
            keeper: tx,
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            rng: Mutex::new(rng),
            leases: Mutex::default(),
            tasks: TaskTracker::new(),
            token_floor: TokenFloor::default(),
        });
        let span = tracing::debug_span!("lynk.keeper");
        runtime.spawn(keeper::run(Arc::downgrade(&engine), rx).instrument(span));
        if let Some(listener) = listener {
            let span = tracing::debug_span!("lynk.wake_listener", address = %listener.local_addr());
            let stop = engine.wake_stop.clone();
            let task = wake_listener::listen(Arc::downgrade(&engine), listener, stop);
            runtime.spawn(task.instrument(span));
        }
        Ok(engine)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `base` stretched by a random 0–20 %, so pollers spread out.
    pub(crate) fn jitter(&self, base: Duration) -> Duration {
        let factor: f64 = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gen_range(1.0..MAX_JITTER);
        base.mul_f64(factor)
    }

    /// Spawns an engine task (an acquirer, a release) that a shutdown waits for.
    pub(crate) fn spawn_tracked<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn_on(task, &self.runtime)
    }

    /// Spawns a task a shutdown does not wait for (a leader observer's
    /// poller, which ends when its last observer goes).
    pub(crate) fn spawn_untracked<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }

    /// Completes at `deadline` on the client's clock, for a caller's own
    /// wait (an acquire's time limit): `true` then, or `false` at once if
    /// the client's runtime is gone or going (its heartbeat task gone, or
    /// its timers refusing new ones). The clock's sleep is made and polled
    /// inside the client's runtime, so a caller on another runtime (one
    /// without timers, say) or on no tokio runtime at all can wait with any
    /// [`Clock`], timed in its own task (no task hop between the deadline
    /// and the caller).
    pub(crate) fn caller_deadline(
        &self,
        deadline: Instant,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let runtime = self.runtime.clone();
        let clock = self.clock.clone();
        let alive = !self.keeper.is_closed();
        let mut sleep = None;
        std::future::poll_fn(move |cx| {
            if !alive {
                return std::task::Poll::Ready(false);
            }
            let _runtime = runtime.enter();
            let sleep = sleep.get_or_insert_with(|| clock.sleep_until(deadline));
            // A runtime shutting down (its owner dropped it a moment ago,
            // with `shutdown_background`) refuses new timers by panicking
            // before it registers anything: that is the same "gone".
            let poll = std::panic::AssertUnwindSafe(|| sleep.as_mut().poll(cx));
            match std::panic::catch_unwind(poll) {
                Ok(poll) => poll.map(|()| true),
                Err(_) => std::task::Poll::Ready(false),
            }
        })
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

    fn leases_map(&self) -> MutexGuard<'_, HashMap<u64, Arc<LeaseShared>>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a lease whose release finished. Once a shutdown began, leases
    /// are kept until it has reported them.
    pub(crate) fn forget_lease(&self, id: u64) {
        if !self.is_closed() {
            self.leases_map().remove(&id);
        }
    }

    /// Queues a waiter for `name` with `spec`; the receiver gets its grant.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        name: &str,
        spec: AcquireSpec,
        try_once: bool,
    ) -> Result<oneshot::Receiver<Grant>, LockError> {
        if self.is_closed() {
            return Err(LockError::ShutDown);
        }
        let (waiter, rx) = Waiter::new(self.next_id(), spec, try_once);
        if let Enqueued::Queued(start) = self.slots.enqueue(name, waiter) {
            self.start_acquirer(start);
        }
        Ok(rx)
    }

    /// Spawns the acquirer a slot transition asked for.
    fn start_acquirer(self: &Arc<Self>, start: Option<AcquirerStart>) {
        let Some(AcquirerStart { name, seed }) = start else {
            return;
        };
        let span = tracing::debug_span!("lynk.acquire", lock = %name);
        drop(self.spawn_tracked(acquirer::run(self.clone(), name, seed).instrument(span)));
    }

    /// The last holder and store error seen while waiting for `name`.
    pub(crate) fn wait_info(&self, name: &str) -> (Option<String>, Option<crate::BackendError>) {
        self.slots.wait_info(name, self.clock.now())
    }

    /// Names of the locks held now.
    pub(crate) fn held_names(&self) -> Vec<String> {
        self.slots.held_names()
    }

    /// One bounded, strongly consistent read of `name`'s record.
    pub(crate) async fn describe(&self, name: &str) -> Result<Option<LockRecord>, LockError> {
        let limit = self.config.call_timeout_for(self.config.default_lease);
        self.read_by(name, self.clock.now() + limit)
            .await
            .map_err(|e| LockError::from_backend(name, "read", e))
    }

    /// The address this client advertises for wake-ups, if it listens.
    pub(crate) fn wake_address(&self) -> Option<String> {
        self.wake_address.clone()
    }

    /// Sends a wake-up to the queued waiter `to` of `name`, if it listens;
    /// fire and forget (a wake-up only makes a waiter poll sooner). The
    /// datagram carries this client's scope: clients of one table share it.
    pub(crate) fn send_wake(&self, name: &str, to: &crate::QueueEntry) {
        let Some(address) = &to.wake else {
            return;
        };
        let scope = self
            .config
            .wake_ups
            .as_ref()
            .map_or("", |w| w.scope.as_str());
        self.wake_sender.send(address, scope, name);
    }

    /// A waiter of `name` stopped waiting: if this process waits for nothing
    /// else there, its acquirer stops and leaves the store's queue now.
    pub(crate) fn nudge_acquirer(&self, name: &str) {
        if self.slots.has_no_live_waiter(name) {
            if let Some(signal) = self.slots.wake_signal(name) {
                signal.notify_one();
            }
        }
    }

    /// A wake-up for `name` arrived (scope already checked): if this client
    /// waits for that lock and the limiter allows, its acquirer polls now.
    pub(crate) fn on_wake(&self, name: &str) {
        let Some(signal) = self.slots.wake_signal(name) else {
            return; // not waiting for it: forged, late or for another client
        };
        if self.wake_limiter.allow(name) {
            crate::metrics::Metrics::inc(&self.metrics.wakeups);
            signal.notify_one();
        }
    }

    /// Writes the release marker over `name`'s record if it still carries
    /// `version`: the release of a lease this client does not hold (a
    /// detached guard's, or an operator's). One bounded write.
    pub(crate) async fn release_version(
        &self,
        name: &str,
        version: &crate::Version,
    ) -> Result<LockRecord, crate::WriteError> {
        let limit = self.config.call_timeout_for(self.config.default_lease);
        let out = self.release_request(name, version, None);
        self.write_by(out.request, out.sent + limit).await
    }

    /// Gives a lease just installed as the slot's holder to `waiter` and
    /// starts its heartbeats; or, when the client was shut down meanwhile or
    /// the lease's token cannot be trusted to increase, releases it at once
    /// and tells the waiter why.
    /// A lease this client won for a caller directly (a transaction):
    /// heartbeated by the keeper, owned by the returned handle.
    pub(crate) fn adopt(self: &Arc<Self>, lease: Arc<LeaseShared>) -> LeaseHandle {
        let _ = self.keeper.send(KeeperCommand::Register(lease.clone()));
        LeaseHandle::new(self.clone(), lease)
    }

    fn deliver(self: &Arc<Self>, lease: Arc<LeaseShared>, waiter: Option<Waiter>) {
        let refusal = if self.is_closed() {
            Some((LostReason::ClientShutDown, LockError::ShutDown))
        } else if lease.token.get() == u64::MAX {
            let error = LockError::TokenExhausted {
                name: lease.name.clone(),
            };
            Some((LostReason::TokenExhausted, error))
        } else {
            None
        };
        if let Some((reason, error)) = refusal {
            tracing::warn!(lock = %lease.name, %error, "releasing a lock just acquired");
            lease.mark_lost(reason);
            drop(LeaseHandle::new(self.clone(), lease)); // releases in the background
            if let Some(w) = waiter {
                w.answer(Err(error));
            }
            return;
        }
        let _ = self.keeper.send(KeeperCommand::Register(lease.clone()));
        let handle = LeaseHandle::new(self.clone(), lease);
        match waiter {
            Some(w) => w.answer(Ok(Some(handle))),
            // Nobody to take it: dropping the handle releases or hands over.
            None => drop(handle),
        }
    }

    /// `lease` no longer holds its name (released, lost, detached): clears
    /// it as the holder, requeues a popped waiter, remembers acquisition
    /// writes of unknown outcome, and lets the queue poll.
    pub(crate) fn clear_holder(
        self: &Arc<Self>,
        lease: &LeaseShared,
        requeue: Option<Waiter>,
        ambiguous: &OwnWrites,
    ) {
        let start = self
            .slots
            .clear_holder(&lease.name, lease.id, requeue, ambiguous);
        self.start_acquirer(start);
    }

    /// Stops renewing `lease` and forgets it without releasing the record.
    pub(crate) fn detach(self: &Arc<Self>, lease: &Arc<LeaseShared>) {
        if let lease::ReleaseStart::Started { .. } = lease.begin_release(None) {
            lease.finish_release(Ok(()));
            self.clear_holder(lease, None, &OwnWrites::default());
            self.forget_lease(lease.id);
        }
    }
}
