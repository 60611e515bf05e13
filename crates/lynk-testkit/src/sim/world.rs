//! The simulated world: the shared store, the real time line, the oracle
//! resource, and the history the checker reads.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use lynk_core::{Clock, LeaseWatch, LockClient, Permit};

use super::net::HostLink;
use super::SimConfig;
use crate::{CountingBackend, FaultyBackend, TestClock};

/// Where a holding's safe deadline (on its host's clock) comes from.
pub(super) enum Safe {
    /// A lock's (mutex, election, one name of a multi-lock) lease.
    Watch(LeaseWatch),
    /// A semaphore permit: read from the permit while it exists (its
    /// holder's task keeps it, or a crashed host's zombie), else the last
    /// value its holder read (just before releasing or dropping it).
    Permit { permit: Weak<Permit>, last: Instant },
}

/// One acquisition (of one name, or one permit), as its holder saw it.
pub(super) struct Holding {
    pub(super) host: usize,
    pub(super) handle: usize,
    /// Which name of the run (index into `World::names`).
    pub(super) name: usize,
    pub(super) token: u64,
    /// Real instant the `acquire` (or `try_acquire`) call began.
    pub(super) started: Instant,
    /// Real instant `acquire` (or `try_acquire`) returned the guard.
    pub(super) acquired: Instant,
    /// Real instant the holder stopped using it to release it.
    pub(super) released_at: Option<Instant>,
    /// Real instant its lost-lease signal fired.
    pub(super) lost_at: Option<Instant>,
    /// Real instant its multi-guard's lost signal fired (any name lost).
    pub(super) group_lost: Option<Instant>,
    pub(super) safe: Safe,
    pub(super) clock: TestClock,
    /// `Some` when the token restarted from the wall clock: the highest
    /// token the client had seen when it sent the write (if any).
    pub(super) restart: Option<Option<u64>>,
    /// `Some` when the token descends from a wall-clock start by any
    /// client: that start's highest token seen at its send.
    pub(super) lineage: Option<Option<u64>>,
}

impl Holding {
    /// The safe deadline on the holder's clock.
    pub(super) fn safe_deadline(&self) -> Instant {
        match &self.safe {
            Safe::Watch(w) => w.safe_deadline(),
            Safe::Permit { permit, last } => permit.upgrade().map_or(*last, |p| p.safe_deadline()),
        }
    }

    /// When the holder's own accounting says it stopped holding: its
    /// release, its lost signal (for a name of a multi-lock, the guard's
    /// lost signal, which fires when any of its names is lost) or its safe
    /// deadline (in real time through its clock's drift), whichever came
    /// first.
    pub(super) fn end(&self) -> Instant {
        let safe = self.clock.to_real(self.safe_deadline());
        [self.released_at, self.lost_at, self.group_lost, Some(safe)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(safe)
    }
}

/// What a crashed host held (a guard, leadership, permit or multi-guard),
/// kept so nothing releases it.
pub(super) type Zombie = Box<dyn std::any::Any + Send>;

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
    pub(super) payload_changes: u64,
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
    /// Oracle writes accepted: (when, host, token), one oracle resource
    /// per name (index into `World::names`).
    pub(super) accepted: Vec<Vec<(Instant, usize, u64)>>,
    pub(super) highest: Vec<Option<u64>>,
    /// Violations found while running.
    pub(super) problems: Vec<String>,
    pub(super) counts: Counters,
    /// Guards of crashed hosts, kept so nothing releases them.
    pub(super) zombies: Vec<Zombie>,
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
    pub(super) origins: super::net::Origins,
    /// The names contended for (one, except for multi-locks).
    pub(super) names: Vec<String>,
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
        let names = super::names(&config);
        let history = History {
            accepted: vec![Vec::new(); names.len()],
            highest: vec![None; names.len()],
            ..History::default()
        };
        World {
            origins: Arc::default(),
            names,
            wakes,
            end: start + config.duration,
            start,
            store,
            real,
            history: Mutex::new(history),
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

    /// The oracle resource of name `name`: accepts a write only with a
    /// token no lower than any it accepted before (unless fencing is off).
    pub(super) fn write(&self, host: usize, name: usize, token: u64) -> bool {
        let now = self.now();
        let mut h = self.history();
        if self.config.fencing && h.highest[name].is_some_and(|top| token < top) {
            h.counts.rejected_writes += 1;
            return false;
        }
        h.highest[name] = Some(h.highest[name].map_or(token, |t| t.max(token)));
        h.accepted[name].push((now, host, token));
        true
    }

    /// Watches one holding's lost signal: when it fired, and whether that
    /// was before its safe deadline.
    pub(super) fn watch_lost(self: &Arc<Self>, index: usize, watch: LeaseWatch, clock: TestClock) {
        let (w1, w2, w3) = (watch.clone(), watch.clone(), watch);
        self.watch_lost_with(
            index,
            async move { w1.lost().await },
            move || Some(w2.safe_deadline()),
            move || format!("{:?}", w3.lost_reason()),
            clock,
        );
    }

    /// Records when a multi-guard's lost signal (`lost`) fires, for each of
    /// its holdings `indices`.
    pub(super) fn watch_group(
        self: &Arc<Self>,
        indices: Vec<usize>,
        lost: impl Future<Output = ()> + Send + 'static,
    ) {
        let world = self.clone();
        tokio::spawn(async move {
            lost.await;
            let fired = world.now();
            let mut h = world.history();
            for i in indices {
                h.holdings[i].group_lost.get_or_insert(fired);
            }
        });
    }

    /// As [`watch_lost`](World::watch_lost), for any lost signal: `lost`
    /// completes when it fires; `safe` reads the safe deadline then (on the
    /// holder's clock; `None`: unknown, the permit is gone), `reason` why.
    pub(super) fn watch_lost_with(
        self: &Arc<Self>,
        index: usize,
        lost: impl Future<Output = ()> + Send + 'static,
        safe: impl Fn() -> Option<Instant> + Send + 'static,
        reason: impl Fn() -> String + Send + 'static,
        clock: TestClock,
    ) {
        let world = self.clone();
        tokio::spawn(async move {
            lost.await;
            let fired = world.now();
            let Some(safe) = safe() else {
                world.history().counts.lost_signals += 1;
                return;
            };
            let safe = clock.to_real(safe);
            let mut h = world.history();
            h.counts.lost_signals += 1;
            if h.holdings[index].lost_at.is_none() {
                h.holdings[index].lost_at = Some(fired);
            }
            if fired >= safe {
                let x = &h.holdings[index];
                let what = format!(
                    "late lost signal: {} host {} handle {} (token {}, acquired at {:?}) was told at {:?}, {:?} after its safe deadline ({})",
                    world.names[x.name],
                    x.host,
                    x.handle,
                    x.token,
                    world.at(x.acquired),
                    world.at(fired),
                    fired - safe,
                    reason()
                );
                h.problems.push(what);
            }
        });
    }
}
