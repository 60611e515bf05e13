//! The simulated world: the shared store, the real time line, the oracle
//! resource, and the history the checker reads.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use lynk_core::{Clock, LeaseWatch, LockClient, LockGuard};

use super::net::HostLink;
use super::SimConfig;
use crate::{CountingBackend, FaultyBackend, TestClock};

/// One acquisition, as its holder saw it.
pub(super) struct Holding {
    pub(super) host: usize,
    pub(super) handle: usize,
    pub(super) token: u64,
    /// Real instant `acquire` (or `try_acquire`) returned the guard.
    pub(super) acquired: Instant,
    /// Real instant the holder stopped using it to release it.
    pub(super) released_at: Option<Instant>,
    /// Real instant its lost-lease signal fired.
    pub(super) lost_at: Option<Instant>,
    pub(super) watch: LeaseWatch,
    pub(super) clock: TestClock,
    /// `Some` when the token restarted from the wall clock: the highest
    /// token the client had seen when it sent the write (if any).
    pub(super) restart: Option<Option<u64>>,
    /// `Some` when the token descends from a wall-clock start by any
    /// client: that start's highest token seen at its send.
    pub(super) lineage: Option<Option<u64>>,
}

impl Holding {
    /// When the holder's own accounting says it stopped holding: its
    /// release, its lost signal or its safe deadline (in real time through
    /// its clock's drift), whichever came first.
    pub(super) fn end(&self) -> Instant {
        let safe = self.clock.to_real(self.watch.safe_deadline());
        [self.released_at, self.lost_at, Some(safe)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(safe)
    }
}

/// One blocking wait (`acquire_until` or `acquire_timeout`).
pub(super) struct Wait {
    pub(super) host: usize,
    pub(super) since: Instant,
    /// When it ended (granted, timed out, failed, or its host crashed);
    /// `None` if it was still waiting when the run ended.
    pub(super) until: Option<Instant>,
}

/// Counters of what happened.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) pauses: u64,
    pub(super) crashes: u64,
    pub(super) partitions: u64,
    pub(super) wall_steps: u64,
    pub(super) try_granted: u64,
    pub(super) try_busy: u64,
    pub(super) try_errors: u64,
    pub(super) acquire_timeouts: u64,
    pub(super) acquire_errors: u64,
    pub(super) payload_checks: u64,
    pub(super) lost_signals: u64,
    pub(super) release_errors: u64,
    pub(super) rejected_writes: u64,
}

#[derive(Default)]
pub(super) struct History {
    pub(super) holdings: Vec<Holding>,
    pub(super) waits: Vec<Wait>,
    /// Instants the lock became free or abandoned: a release, or the
    /// holder's host crashing, pausing or being cut off.
    /// (when, by which host, how).
    pub(super) freed: Vec<(Instant, usize, &'static str)>,
    /// Per host, intervals it was paused or partitioned.
    pub(super) unhealthy: Vec<(usize, Instant, Instant)>,
    /// Oracle writes accepted: (when, host, token).
    pub(super) accepted: Vec<(Instant, usize, u64)>,
    pub(super) highest: Option<u64>,
    /// Violations found while running.
    pub(super) problems: Vec<String>,
    pub(super) counts: Counters,
    /// Guards of crashed hosts, kept so nothing releases them.
    pub(super) zombies: Vec<LockGuard>,
    pub(super) rates: Vec<f64>,
}

pub(super) struct World {
    pub(super) config: SimConfig,
    pub(super) store: CountingBackend,
    pub(super) real: TestClock,
    pub(super) start: Instant,
    pub(super) end: Instant,
    history: Mutex<History>,
    pub(super) faults: Mutex<Vec<FaultyBackend<CountingBackend>>>,
    pub(super) clients: Mutex<Vec<LockClient>>,
    pub(super) links: Mutex<Vec<Arc<HostLink>>>,
    /// Every client's wall-clock token starts, with the highest token each
    /// had seen when it sent them.
    pub(super) origins: Arc<Mutex<std::collections::BTreeMap<u64, Option<u64>>>>,
    /// The wake-up network, when the run has one.
    pub(super) wakes: Option<Arc<super::wakes::SimWakes>>,
}

impl World {
    pub(super) fn new(config: SimConfig, store: CountingBackend) -> Self {
        let real = TestClock::new();
        let start = real.now();
        let wakes = config.wake_ups.map(|faults| {
            super::wakes::SimWakes::new(faults, real.clone(), config.seed ^ 0x05ee_da11)
        });
        World {
            origins: Arc::default(),
            wakes,
            end: start + config.duration,
            start,
            store,
            real,
            history: Mutex::default(),
            faults: Mutex::default(),
            clients: Mutex::default(),
            links: Mutex::default(),
            config,
        }
    }

    pub(super) fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn now(&self) -> Instant {
        self.real.now()
    }

    /// Time since the start of the run, for messages.
    pub(super) fn at(&self, t: Instant) -> std::time::Duration {
        t.saturating_duration_since(self.start)
    }

    /// Records a violation found while running.
    pub(super) fn problem(&self, what: String) {
        self.history().problems.push(what);
    }

    /// The oracle resource: accepts a write only with a token no lower than
    /// any it accepted before (unless fencing is off).
    pub(super) fn write(&self, host: usize, token: u64) -> bool {
        let now = self.now();
        let mut h = self.history();
        if self.config.fencing && h.highest.is_some_and(|top| token < top) {
            h.counts.rejected_writes += 1;
            return false;
        }
        h.highest = Some(h.highest.map_or(token, |t| t.max(token)));
        h.accepted.push((now, host, token));
        true
    }

    /// Watches one holding's lost signal: when it fired, and whether that
    /// was before its safe deadline.
    pub(super) fn watch_lost(self: &Arc<Self>, index: usize, watch: LeaseWatch, clock: TestClock) {
        let world = self.clone();
        tokio::spawn(async move {
            watch.lost().await;
            let fired = world.now();
            let safe = clock.to_real(watch.safe_deadline());
            let mut h = world.history();
            h.counts.lost_signals += 1;
            if h.holdings[index].lost_at.is_none() {
                h.holdings[index].lost_at = Some(fired);
            }
            if fired >= safe {
                let x = &h.holdings[index];
                let what = format!(
                    "late lost signal: host {} handle {} (token {}, acquired at {:?}) was told at {:?}, {:?} after its safe deadline ({:?})",
                    x.host,
                    x.handle,
                    x.token,
                    world.at(x.acquired),
                    world.at(fired),
                    fired - safe,
                    watch.lost_reason()
                );
                h.problems.push(what);
            }
        });
    }
}
