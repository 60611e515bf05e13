//! Deterministic simulation: several clients with drifting clocks contend for
//! one lock through a faulty store, pause, crash and restart, while an oracle
//! resource checks fencing tokens and a checker verifies the recorded history.
//!
//! A run is a pure function of its [`SimConfig`] (seed included): it builds a
//! paused single-threaded tokio runtime, so a failing seed replays exactly.
//!
//! ```
//! use lynk_testkit::sim::{run, SimConfig};
//! let report = run(&SimConfig { seed: 7, ..SimConfig::default() });
//! assert!(report.violations.is_empty(), "{report}");
//! ```
//!
//! What the checker verifies (see `docs/testing.md`):
//!
//! 1. **mutual exclusion** by the holders' own lease accounting: an
//!    acquisition's holding interval runs from `acquire` returning to the
//!    earliest of its release, its lost-lease signal and its safe deadline
//!    (converted to real time through its clock's drift); no two intervals
//!    overlap;
//! 2. **fencing**: acquisition tokens strictly increase, and every write the
//!    oracle accepted carries a token no lower than the one before it;
//! 3. **timely loss**: every lost-lease signal fired before that lease's safe
//!    deadline;
//! 4. **liveness** (when enabled): after a release, crash or pause, a waiting
//!    client acquires within `(lease × (1 + drift) + 2 × poll × 1.2) / slowest
//!    rate + lock_delay`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lynk_core::{
    BackendError, Capabilities, Clock, LeaseWatch, LockBackend, LockClient, LockError, LockGuard,
    LockRecord, Version, WriteError, WriteRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::{FaultyBackend, MemoryBackend, RandomFaults, TestClock};

/// The knobs of one simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Everything random derives from it.
    pub seed: u64,
    /// Number of simulated hosts.
    pub clients: usize,
    /// Simulated (virtual) duration of the run.
    pub duration: Duration,
    /// Lease of every acquisition.
    pub lease: Duration,
    /// Each host's clock runs at a rate drawn from `[1 − b, 1 + b]`.
    pub drift_bound: f64,
    /// The clients' drift allowance (`ClientConfig::drift_allowance`).
    pub drift_allowance: f64,
    /// The clients' lock delay.
    pub lock_delay: Duration,
    /// Store faults (the seed field is replaced per host).
    pub faults: RandomFaults,
    /// Probability that a holder pauses (stops, store unreachable) for 1.2 to
    /// 3 leases, then writes without checking its lease.
    pub pause_probability: f64,
    /// Probability that a holder crashes (never releases) and restarts.
    pub crash_probability: f64,
    /// Whether the oracle refuses writes with a lower token than it has seen.
    /// Switched off only by the negative control.
    pub fencing: bool,
    /// Whether to check liveness (meaningful without store faults).
    pub check_liveness: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            clients: 4,
            duration: Duration::from_secs(600),
            lease: Duration::from_secs(10),
            drift_bound: 0.004,
            drift_allowance: 0.01,
            lock_delay: Duration::ZERO,
            faults: RandomFaults {
                seed: 0,
                fail_before: 0.05,
                lose_response: 0.05,
                delay: 0.05,
                max_delay: Duration::from_millis(500),
                ops: Vec::new(),
            },
            pause_probability: 0.15,
            crash_probability: 0.1,
            fencing: true,
            check_liveness: false,
        }
    }
}

/// What a run did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed, to replay.
    pub seed: u64,
    /// Requests the store served.
    pub operations: u64,
    /// Locks granted.
    pub acquisitions: u64,
    /// Faults injected into store calls.
    pub faults: u64,
    /// Holders that paused.
    pub pauses: u64,
    /// Holders that crashed.
    pub crashes: u64,
    /// Lost-lease signals.
    pub lost_signals: u64,
    /// Oracle writes accepted.
    pub accepted_writes: u64,
    /// Oracle writes refused for a stale token.
    pub rejected_writes: u64,
    /// Acquires that failed with an error (retried; not a violation).
    pub acquire_errors: u64,
    /// Every violation found, described.
    pub violations: Vec<String>,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} store operations, {} acquisitions, {} faults, {} pauses, {} crashes, {} lost signals, {} writes accepted, {} stale writes refused, {} acquire errors, {} violations",
            self.seed,
            self.operations,
            self.acquisitions,
            self.faults,
            self.pauses,
            self.crashes,
            self.lost_signals,
            self.accepted_writes,
            self.rejected_writes,
            self.acquire_errors,
            self.violations.len()
        )?;
        for v in &self.violations {
            write!(f, "\n  violation: {v}")?;
        }
        Ok(())
    }
}

/// Runs one simulation on the in-memory store, on a fresh paused runtime
/// (simulated time, exactly replayable), and checks its history.
pub fn run(config: &SimConfig) -> SimReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"));
    runtime.block_on(simulate_on(config.clone(), Arc::new(MemoryBackend::new())))
}

/// Runs one simulation against `store` on the current runtime and checks its
/// history. On a runtime with real time (e.g. against a real server through a
/// [`FaultProxy`](crate::proxy::FaultProxy)) choose a short lease and
/// duration; the store's faults then come from wherever they are injected,
/// and [`SimConfig::faults`] adds more on top.
pub async fn simulate_on(config: SimConfig, store: Arc<dyn LockBackend>) -> SimReport {
    simulate(config, store).await
}

const LOCK: &str = "sim-lock";

/// One acquisition's record.
struct Holding {
    client: usize,
    token: u64,
    waiting_since: Instant,
    acquired: Instant,
    released_at: Option<Instant>,
    lost_at: Option<Instant>,
    watch: LeaseWatch,
    clock: TestClock,
}

impl Holding {
    fn end(&self) -> Instant {
        let safe = self.clock.to_real(self.watch.safe_deadline());
        [self.released_at, self.lost_at, Some(safe)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(safe)
    }
}

#[derive(Default)]
struct History {
    holdings: Vec<Holding>,
    /// Instants the lock became free or abandoned: a release, a crash, a pause.
    freed: Vec<Instant>,
    /// Waits still unanswered at the end: (client, since).
    open_waits: Vec<(usize, Instant)>,
    accepted: Vec<(Instant, usize, u64)>,
    rejected: u64,
    highest: Option<u64>,
    lost_late: Vec<String>,
    lost_signals: u64,
    acquire_errors: u64,
    pauses: u64,
    crashes: u64,
    zombies: Vec<LockGuard>,
    rates: Vec<f64>,
}

struct World {
    config: SimConfig,
    store: Counting,
    real: TestClock,
    end: Instant,
    history: Mutex<History>,
    faults: Mutex<Vec<FaultyBackend<Counting>>>,
}

/// The shared store, counting requests.
#[derive(Clone, Debug)]
struct Counting {
    inner: Arc<dyn LockBackend>,
    requests: Arc<AtomicU64>,
}

#[async_trait]
impl LockBackend for Counting {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.read(key).await
    }
    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.write(request).await
    }
    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key, expected).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

impl World {
    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oracle resource: accepts a write only with a token no lower than
    /// any it accepted before (unless fencing is off).
    fn write(&self, client: usize, token: u64) -> bool {
        let now = self.real.now();
        let mut h = self.history();
        if self.config.fencing && h.highest.is_some_and(|top| token < top) {
            h.rejected += 1;
            return false;
        }
        h.highest = Some(h.highest.map_or(token, |t| t.max(token)));
        h.accepted.push((now, client, token));
        true
    }
}

/// Makes store calls hang while the host is paused or crashed.
#[derive(Debug)]
struct Gated {
    inner: FaultyBackend<Counting>,
    open: watch::Receiver<bool>,
}

impl Gated {
    async fn pass(&self) {
        let mut open = self.open.clone();
        // An error means the gate's owner is gone: stay shut forever.
        if open.wait_for(|o| *o).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl LockBackend for Gated {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.pass().await;
        self.inner.read(key).await
    }
    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.pass().await;
        self.inner.write(request).await
    }
    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.pass().await;
        self.inner.delete(key, expected).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

async fn simulate(config: SimConfig, store: Arc<dyn LockBackend>) -> SimReport {
    let real = TestClock::new();
    let world = Arc::new(World {
        end: real.now() + config.duration,
        store: Counting {
            inner: store,
            requests: Arc::default(),
        },
        real,
        history: Mutex::default(),
        faults: Mutex::default(),
        config: config.clone(),
    });
    let nodes: Vec<_> = (0..config.clients)
        .map(|i| tokio::spawn(node(world.clone(), i)))
        .collect();
    for n in nodes {
        if let Err(e) = n.await {
            world
                .history()
                .lost_late
                .push(format!("a host task failed: {e}"));
        }
    }
    check(&world)
}

async fn node(world: Arc<World>, i: usize) {
    let config = &world.config;
    let mut rng = StdRng::seed_from_u64(config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
    let rate = 1.0 + rng.gen_range(-config.drift_bound..=config.drift_bound);
    world.history().rates.push(rate);
    let clock = TestClock::new().with_drift(rate);
    let mut incarnation = 0u64;
    loop {
        let (gate, open) = watch::channel(true);
        let mut faults = config.faults.clone();
        faults.seed = rng.gen();
        let faulty = FaultyBackend::new(world.store.clone())
            .with_clock(Arc::new(world.real.clone()))
            .with_random(faults);
        world
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(faulty.clone());
        let client = match LockClient::builder(Gated {
            inner: faulty,
            open,
        })
        .clock(clock.clone())
        .host_identifier(format!("host-{i}.{incarnation}"))
        .default_lease(config.lease)
        .drift_allowance(config.drift_allowance)
        .lock_delay(config.lock_delay)
        .jitter_seed(rng.gen())
        .build()
        {
            Ok(c) => c,
            Err(e) => {
                world
                    .history()
                    .lost_late
                    .push(format!("bad simulation config: {e}"));
                return;
            }
        };
        // Acquire, hold, release; until a crash ends this incarnation.
        loop {
            let waiting_since = world.real.now();
            if waiting_since >= world.end {
                return;
            }
            let local_end = clock.now() + (world.end - waiting_since).mul_f64(rate);
            let guard = match client
                .create_lock(LOCK)
                .acquire_until(Some(local_end))
                .await
            {
                Ok(g) => g,
                Err(LockError::NotGranted { .. }) => {
                    world.history().open_waits.push((i, waiting_since));
                    return;
                }
                Err(e) => {
                    // An availability problem, not a safety violation: count
                    // it and try again, as an application would.
                    tracing::warn!(host = i, error = %e, "simulated acquire failed");
                    world.history().acquire_errors += 1;
                    clock.sleep(config.lease / 10).await;
                    continue;
                }
            };
            let acquired = world.real.now();
            let token = guard.fencing_token().get();
            let watch = guard.watch();
            let index = {
                let mut h = world.history();
                h.holdings.push(Holding {
                    client: i,
                    token,
                    waiting_since,
                    acquired,
                    released_at: None,
                    lost_at: None,
                    watch: watch.clone(),
                    clock: clock.clone(),
                });
                h.holdings.len() - 1
            };
            spawn_lost_watcher(&world, index, watch.clone(), clock.clone());
            let hold = config.lease.mul_f64(rng.gen_range(0.1..2.0));
            let roll: f64 = rng.gen();
            if roll < config.pause_probability {
                // Pause: write once, then the whole host stops (store calls
                // hang) for longer than the lease; on waking it writes again
                // without checking its lease, as buggy code does.
                if !watch.is_lost() {
                    world.write(i, token);
                }
                let _ = gate.send(false);
                {
                    let mut h = world.history();
                    h.pauses += 1;
                    let now = world.real.now();
                    h.freed.push(now);
                }
                clock
                    .sleep(config.lease.mul_f64(rng.gen_range(1.2..3.0)))
                    .await;
                let _ = gate.send(true);
                world.write(i, token);
                drop(guard);
            } else if roll < config.pause_probability + config.crash_probability {
                // Crash: the host vanishes without releasing, and restarts later.
                let _ = gate.send(false);
                {
                    let mut h = world.history();
                    h.crashes += 1;
                    let now = world.real.now();
                    h.freed.push(now);
                    h.zombies.push(guard);
                }
                std::mem::forget(gate); // stays shut: the old incarnation is gone
                clock
                    .sleep(config.lease.mul_f64(rng.gen_range(0.0..1.0)))
                    .await;
                incarnation += 1;
                break;
            } else {
                let steps = rng.gen_range(1..=3u32);
                for _ in 0..steps {
                    clock.sleep(hold / steps).await;
                    // The holder's own accounting: not lost, before its safe deadline.
                    if watch.is_lost() || clock.now() >= watch.safe_deadline() {
                        break;
                    }
                    world.write(i, token);
                }
                let released_at = world.real.now();
                world.history().holdings[index].released_at = Some(released_at);
                if guard.release().await.is_ok() {
                    let now = world.real.now();
                    world.history().freed.push(now);
                }
            }
            // Think time between acquisitions.
            clock
                .sleep(config.lease.mul_f64(rng.gen_range(0.0..0.5)))
                .await;
        }
    }
}

fn spawn_lost_watcher(world: &Arc<World>, index: usize, watch: LeaseWatch, clock: TestClock) {
    let world = world.clone();
    tokio::spawn(async move {
        watch.lost().await;
        let fired = world.real.now();
        let safe = clock.to_real(watch.safe_deadline());
        let mut h = world.history();
        h.lost_signals += 1;
        if h.holdings[index].lost_at.is_none() {
            h.holdings[index].lost_at = Some(fired);
        }
        if fired >= safe {
            let token = h.holdings[index].token;
            h.lost_late.push(format!(
                "lost-lease signal of token {token} fired {:?} after its safe deadline",
                fired - safe
            ));
        }
    });
}

fn check(world: &World) -> SimReport {
    let config = &world.config;
    let h = world.history();
    let mut violations = h.lost_late.clone();
    let t0 = world.end - config.duration;
    let at = |t: Instant| t.saturating_duration_since(t0);

    // 1. Mutual exclusion by the holders' own accounting.
    let mut order: Vec<&Holding> = h.holdings.iter().collect();
    order.sort_by_key(|x| x.acquired);
    let mut latest: Option<&Holding> = None;
    for x in &order {
        if let Some(prev) = latest {
            if x.acquired < prev.end() {
                violations.push(format!(
                    "overlap: host {} (token {}) acquired at {:?} while host {} (token {}) held until {:?}",
                    x.client, x.token, at(x.acquired), prev.client, prev.token, at(prev.end())
                ));
            }
        }
        if latest.is_none_or(|p| x.end() > p.end()) {
            latest = Some(x);
        }
    }

    // 2. Fencing.
    for w in order.windows(2) {
        if w[1].token <= w[0].token {
            violations.push(format!(
                "token went from {} (host {}) to {} (host {}) at {:?}",
                w[0].token,
                w[0].client,
                w[1].token,
                w[1].client,
                at(w[1].acquired)
            ));
        }
    }
    for w in h.accepted.windows(2) {
        if w[1].2 < w[0].2 {
            violations.push(format!(
                "the resource accepted token {} from host {} at {:?} after token {} from host {}",
                w[1].2,
                w[1].1,
                at(w[1].0),
                w[0].2,
                w[0].1
            ));
        }
    }

    // 4. Liveness.
    if config.check_liveness {
        let slowest = h.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let poll = lynk_core::ClientConfig::default()
            .poll_interval
            .min(config.lease / 4);
        let bound = (config.lease.mul_f64(1.0 + config.drift_allowance) + poll.mul_f64(2.4))
            .div_f64(slowest)
            + config.lock_delay
            + Duration::from_millis(50);
        for &freed in &h.freed {
            let next = order.iter().find(|x| x.acquired > freed);
            let until = next.map_or(world.end, |x| x.acquired);
            // The earliest waiter still waiting at `until`.
            let waiting = order
                .iter()
                .filter(|x| x.acquired >= until)
                .map(|x| x.waiting_since)
                .chain(h.open_waits.iter().map(|(_, s)| *s))
                .min();
            let Some(since) = waiting else { continue };
            let from = since.max(freed);
            if until > from && until - from > bound {
                violations.push(format!(
                    "liveness: lock free at {:?}, a client waiting since {:?}, next acquisition at {:?} (bound {:?})",
                    at(freed), at(since), at(until), bound
                ));
            }
        }
    }

    let faults = world
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|f| f.injected())
        .sum();
    SimReport {
        seed: config.seed,
        operations: world.store.requests.load(Ordering::Relaxed),
        acquisitions: h.holdings.len() as u64,
        faults,
        pauses: h.pauses,
        crashes: h.crashes,
        lost_signals: h.lost_signals,
        accepted_writes: h.accepted.len() as u64,
        rejected_writes: h.rejected,
        acquire_errors: h.acquire_errors,
        violations,
    }
}
