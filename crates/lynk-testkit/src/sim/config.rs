//! The knobs of one simulation run.

use std::time::Duration;

use lynk_core::Mutations;

use crate::RandomFaults;

/// Which primitive the handles acquire through. Every primitive runs under
/// the same hosts, faults, pauses, crashes, partitions and clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimPrimitive {
    /// One lock (`LockClient::create_lock`): the original simulation.
    #[default]
    Mutex,
    /// Leader election (`LockClient::election`): handles campaign, lead
    /// (now and then replacing their payload) and resign.
    Election,
    /// A counting semaphore (`LockClient::semaphore`) with this many
    /// permits: at most this many permit holdings may overlap.
    Semaphore {
        /// The permit count every handle asks for.
        permits: u32,
    },
    /// Multi-locks (`LockClient::multi_lock`): each attempt draws a random
    /// subset of 2 to `names` names (1 if `names` is 1) from a pool of
    /// `pool` lock names.
    MultiLock {
        /// The most names one attempt takes.
        names: usize,
        /// How many lock names there are.
        pool: usize,
    },
}

/// The knobs of one simulation run. Every field has a default
/// ([`SimConfig::default`] is the main configuration run in CI); the
/// negative controls change a few.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Everything random derives from it.
    pub seed: u64,
    /// Number of simulated hosts.
    pub clients: usize,
    /// The most lock handles a host runs at once (each host draws 1 to this
    /// many): tasks sharing the host's one `LockClient`, so they queue
    /// locally, hand over to each other and answer `try_acquire` locally.
    pub handles_per_host: usize,
    /// Simulated (virtual) duration of the run.
    pub duration: Duration,
    /// The shortest lease a handle asks for.
    pub lease: Duration,
    /// Handles ask for leases in `[lease, lease × (1 + lease_spread)]`, one
    /// each, so a grant can be checked against what its waiter asked for.
    pub lease_spread: f64,
    /// Each host's clock runs at a rate drawn from `[1 − b, 1 + b]`.
    pub drift_bound: f64,
    /// The clients' drift allowance (`ClientConfig::drift_allowance`).
    pub drift_allowance: f64,
    /// The clients' lock delay.
    pub lock_delay: Duration,
    /// Store faults per host (the seed field is replaced per host).
    pub faults: RandomFaults,
    /// Probability that a holder's whole host pauses right after it
    /// acquired (after one write), for 1.2 to 3 leases; on waking the holder
    /// writes once without checking its lease, as buggy code does.
    pub pause_probability: f64,
    /// Probability that a holder's host crashes right after it acquired
    /// (every handle of it stops, nothing is released) and restarts later.
    pub crash_probability: f64,
    /// Mean time between partitions of one host (`None`: no partitions).
    /// A partition lasts 0.3 to 2.5 leases; during it every store call of
    /// the host fails, or hangs (dropped when the caller gives up, or
    /// delivered to the store when it heals).
    pub partition_every: Option<Duration>,
    /// Mean time between whole-host pauses at random moments (`None`:
    /// none), each 0.2 to 2 leases, besides the holders' pauses.
    pub host_pause_every: Option<Duration>,
    /// Hosts' wall clocks start up to this far ahead of or behind the true
    /// time, and wall steps are up to this large.
    pub max_wall_offset: Duration,
    /// Mean time between steps of one host's wall clock (two in three go
    /// back); `None`: none.
    pub wall_step_every: Option<Duration>,
    /// Probability that a host's clients release with
    /// `ReleaseMode::Delete` (the record, and its token, are deleted).
    pub delete_hosts: f64,
    /// Probability that a host reaches the store through a backend that
    /// never returns the record on a failed condition (minimal capabilities).
    pub no_current_hosts: f64,
    /// Probability that a handle's attempt is a `try_acquire`.
    pub try_acquire_probability: f64,
    /// Probability that a handle's attempt is an `acquire_timeout` of 0.2 to
    /// 2 leases (else it waits until the end of the run).
    pub acquire_timeout_probability: f64,
    /// The clients' `release_timeout` (`None`: the engine's default).
    pub release_timeout: Option<Duration>,
    /// Deliberate engine bugs, for the negative controls only.
    pub mutations: Mutations,
    /// Whether the oracle refuses writes with a lower token than it has seen.
    /// Switched off only by a negative control.
    pub fencing: bool,
    /// Whether to check liveness (meaningful without store faults and
    /// partitions).
    pub check_liveness: bool,
    /// Wake-ups between the clients, over a network with these faults
    /// (`None`: waiters only poll).
    pub wake_ups: Option<super::WakeFaults>,
    /// Whether the store keeps a wait queue (`false`: every host sees a
    /// backend without one, as a custom backend might be).
    pub store_queue: bool,
    /// The primitive the handles acquire through (default: the mutex).
    pub primitive: SimPrimitive,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            clients: 4,
            handles_per_host: 3,
            duration: Duration::from_secs(600),
            lease: Duration::from_secs(10),
            lease_spread: 0.5,
            drift_bound: 0.004,
            drift_allowance: 0.01,
            lock_delay: Duration::ZERO,
            faults: RandomFaults {
                seed: 0,
                fail_before: 0.04,
                lose_response: 0.04,
                delay: 0.03,
                delay_response: 0.04,
                stall: 0.005,
                max_delay: Duration::from_secs(2),
                ops: Vec::new(),
            },
            pause_probability: 0.1,
            crash_probability: 0.07,
            partition_every: Some(Duration::from_secs(150)),
            host_pause_every: Some(Duration::from_secs(200)),
            max_wall_offset: Duration::from_secs(5),
            wall_step_every: Some(Duration::from_secs(150)),
            delete_hosts: 0.5,
            no_current_hosts: 0.5,
            try_acquire_probability: 0.2,
            acquire_timeout_probability: 0.2,
            release_timeout: None,
            mutations: Mutations::default(),
            fencing: true,
            check_liveness: false,
            wake_ups: Some(super::WakeFaults::default()),
            store_queue: true,
            primitive: SimPrimitive::Mutex,
        }
    }
}

impl SimConfig {
    /// The longest lease any handle asks for.
    pub fn max_lease(&self) -> Duration {
        self.lease.mul_f64(1.0 + self.lease_spread.max(0.0))
    }
}
