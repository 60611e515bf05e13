//! Deterministic simulation: hosts with drifting clocks and wrong wall
//! clocks, each running several lock handles over one client, contend for
//! one lock through a faulty store; they pause, crash and restart, and are
//! cut off from the store, while an oracle resource checks fencing tokens
//! and a checker verifies the recorded history.
//!
//! [`SimConfig::primitive`] runs the same world through leader election, a
//! counting semaphore or multi-locks over a pool of names instead of one
//! lock, with checks per primitive (see `docs/simulation.md`).
//!
//! A run is a pure function of its [`SimConfig`] (seed included): it builds a
//! paused single-threaded tokio runtime, so a failing seed replays exactly.
//!
//! ```
//! use lynk_testkit::sim::{run, SimConfig};
//! use std::time::Duration;
//! let report = run(&SimConfig { seed: 7, duration: Duration::from_secs(120), ..SimConfig::default() });
//! assert!(report.violations.is_empty(), "{report}");
//! assert!(report.acquisitions > 0, "{report}");
//! ```
//!
//! What is simulated, and what the checker verifies, is described in
//! `docs/simulation.md`. In short, the checker verifies:
//!
//! 1. **mutual exclusion** by the holders' own lease accounting: an
//!    acquisition's holding interval runs from `acquire` returning to the
//!    earliest of its release, its lost-lease signal and its safe deadline
//!    (converted to real time through its host's drift); no two intervals
//!    overlap;
//! 2. **fencing**: acquisition tokens strictly increase in acquisition
//!    order (except a restart from the wall clock by a client that never saw
//!    the higher token, the documented clock dependence, which is counted),
//!    and the oracle never accepts a lower token after a higher one;
//! 3. **timely loss**: every lost-lease signal fired before that lease's safe
//!    deadline;
//! 4. **grants as asked**: every guard carries the lease and payload its
//!    waiter asked for;
//! 5. **liveness** (when enabled): once the lock is free or abandoned, a
//!    waiter on a healthy host acquires within `(lease × (1 + drift) + 2.4 ×
//!    poll) / slowest rate + lock_delay`.

mod check;
mod config;
mod host;
mod net;
mod report;
mod signal;
mod wakes;
mod worker;
mod world;

use std::sync::Arc;

use lynk_core::LockBackend;

pub use config::{SimConfig, SimPrimitive};
pub use report::{SimReport, SimTotals};
pub use wakes::WakeFaults;

use crate::{CountingBackend, MemoryBackend};
use world::World;

/// The one lock every handle contends for (also the election's name).
const LOCK: &str = "sim-lock";

/// The names a run contends for: the lock's (mutex, election), the
/// semaphore's, or a multi-lock's pool.
fn names(config: &SimConfig) -> Vec<String> {
    match config.primitive {
        SimPrimitive::Mutex | SimPrimitive::Election => vec![LOCK.to_owned()],
        SimPrimitive::Semaphore { .. } => vec!["sim-semaphore".to_owned()],
        SimPrimitive::MultiLock { pool, .. } => {
            (0..pool.max(1)).map(|i| format!("sim-lock-{i}")).collect()
        }
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
    let store = CountingBackend::new(store);
    let world = Arc::new(World::new(config, store));
    let hosts: Vec<_> = (0..world.config.clients)
        .map(|i| tokio::spawn(host::run(world.clone(), i)))
        .collect();
    for h in hosts {
        if let Err(e) = h.await {
            world.problem(format!("a host task failed: {e}"));
        }
    }
    check::check(&world)
}
