//! The heartbeat keeper: one task per client that renews every held lease
//! and fires the lost-lease signal of any lease it could not renew in time.
//!
//! Each lease has one timer: its next heartbeat, or (while a heartbeat is in
//! flight, or when that comes first) its lost-signal instant. Heartbeats run
//! concurrently inside the task, so one slow write delays no other lease.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::calls::unless_panicked;
use super::lease::LeaseShared;
use super::Engine;
use crate::metrics::Metrics;
use crate::{BackendError, LostReason, WriteError};

pub(crate) enum KeeperCommand {
    Register(Arc<LeaseShared>),
    Shutdown,
}

enum Beat {
    /// The lease is valid from this send instant.
    Renewed(Instant),
    /// The write failed in a way worth retrying.
    Retry(BackendError),
    /// The lease is gone.
    Lost(LostReason),
    /// A release holds the lease; nothing to do.
    Skipped,
}

struct Entry {
    lease: Arc<LeaseShared>,
    /// The lease's `valid_from` the timers below were computed from.
    from: Instant,
    next_beat: Instant,
    signal_at: Instant,
    in_flight: bool,
    failures: u32,
    last_error: Option<BackendError>,
    timer: Instant,
}

type BeatFuture = Pin<Box<dyn Future<Output = (u64, Beat)> + Send>>;

pub(crate) async fn run(client: Weak<Engine>, mut rx: mpsc::UnboundedReceiver<KeeperCommand>) {
    let mut entries: HashMap<u64, Entry> = HashMap::new();
    let mut timers: BTreeSet<(Instant, u64)> = BTreeSet::new();
    let mut in_flight: FuturesUnordered<BeatFuture> = FuturesUnordered::new();
    loop {
        let Some(engine) = client.upgrade() else {
            return;
        };
        let sleep = timers.first().map(|(t, _)| engine.clock.sleep_until(*t));
        drop(engine);
        tokio::select! {
            biased;
            cmd = rx.recv() => match cmd {
                Some(KeeperCommand::Register(lease)) => {
                    let Some(engine) = client.upgrade() else { return };
                    let from = lease.valid_from();
                    let entry = Entry {
                        from,
                        next_beat: from + engine.config.heartbeat_every(lease.lease),
                        signal_at: from + engine.config.signal_after(lease.lease),
                        in_flight: false,
                        failures: 0,
                        last_error: None,
                        timer: from,
                        lease,
                    };
                    let id = entry.lease.id;
                    entries.insert(id, entry);
                    if let Some(e) = entries.get_mut(&id) {
                        reschedule(&mut timers, e);
                    }
                }
                Some(KeeperCommand::Shutdown) | None => return,
            },
            Some((id, beat)) = in_flight.next(), if !in_flight.is_empty() => {
                let Some(engine) = client.upgrade() else { return };
                on_beat(&engine, &mut entries, &mut timers, id, beat);
            }
            _ = async { match sleep { Some(s) => s.await, None => std::future::pending().await } } => {
                let Some(engine) = client.upgrade() else { return };
                let now = engine.clock.now();
                while let Some(&(t, id)) = timers.first() {
                    if t > now {
                        break;
                    }
                    timers.pop_first();
                    on_timer(&engine, &mut entries, &mut timers, &mut in_flight, id, now);
                }
            }
        }
    }
}

fn reschedule(timers: &mut BTreeSet<(Instant, u64)>, e: &mut Entry) {
    timers.remove(&(e.timer, e.lease.id));
    e.timer = if e.in_flight || !e.lease.heartbeat {
        e.signal_at
    } else {
        e.next_beat.min(e.signal_at)
    };
    timers.insert((e.timer, e.lease.id));
}

fn on_timer(
    engine: &Arc<Engine>,
    entries: &mut HashMap<u64, Entry>,
    timers: &mut BTreeSet<(Instant, u64)>,
    in_flight: &mut FuturesUnordered<BeatFuture>,
    id: u64,
    now: Instant,
) {
    let Some(e) = entries.get_mut(&id) else {
        return;
    };
    if e.lease.is_ended() {
        entries.remove(&id);
        return;
    }
    // Another write renewed the lease meanwhile (a payload change, which
    // holds the lease's lock and makes heartbeats skip): time the signal and
    // the next heartbeat from it, as from a heartbeat.
    let from = e.lease.valid_from();
    if from > e.from {
        e.from = from;
        e.signal_at = from + engine.config.signal_after(e.lease.lease);
        e.next_beat = from + engine.config.heartbeat_every(e.lease.lease);
        e.failures = 0;
        e.last_error = None;
    }
    if now >= e.signal_at {
        let reason = if e.lease.heartbeat {
            LostReason::HeartbeatsFailed {
                last_error: e.last_error.take(),
            }
        } else {
            LostReason::LeaseRanOut
        };
        let lease = e.lease.clone();
        entries.remove(&id);
        lose(engine, &lease, reason);
        return;
    }
    if e.lease.heartbeat && !e.in_flight && now >= e.next_beat {
        engine.metrics.record_lag(now - e.next_beat);
        e.in_flight = true;
        let span =
            tracing::debug_span!("lynk.heartbeat", lock = %e.lease.name, token = %e.lease.token);
        let lease = e.lease.clone();
        let engine2 = engine.clone();
        // A heartbeat never waits past the lost signal: by then the lease is
        // given up anyway, and the next one must not queue behind it.
        let give_up = (now + engine.config.call_timeout_for(e.lease.lease)).min(e.signal_at);
        in_flight.push(Box::pin(
            async move {
                let beat = heartbeat(&engine2, &lease, give_up);
                (lease.id, unless_panicked(beat, Beat::Retry).await)
            }
            .instrument(span),
        ));
    }
    reschedule(timers, e);
}

fn on_beat(
    engine: &Arc<Engine>,
    entries: &mut HashMap<u64, Entry>,
    timers: &mut BTreeSet<(Instant, u64)>,
    id: u64,
    beat: Beat,
) {
    let Some(e) = entries.get_mut(&id) else {
        return;
    };
    e.in_flight = false;
    let config = &engine.config;
    match beat {
        Beat::Renewed(from) => {
            Metrics::inc(&engine.metrics.heartbeats);
            e.failures = 0;
            e.last_error = None;
            e.from = e.from.max(from);
            e.signal_at = from + config.signal_after(e.lease.lease);
            e.next_beat = from + config.heartbeat_every(e.lease.lease);
        }
        Beat::Retry(error) => {
            Metrics::inc(&engine.metrics.heartbeat_failures);
            tracing::warn!(lock = %e.lease.name, %error, "heartbeat failed; retrying");
            let backoff = config
                .initial_backoff
                .saturating_mul(1u32 << e.failures.min(16))
                .min(config.max_backoff)
                .min(config.heartbeat_every(e.lease.lease) / 2);
            e.failures += 1;
            e.last_error = Some(error);
            e.next_beat = engine.clock.now() + engine.jitter(backoff.max(Duration::from_millis(1)));
        }
        Beat::Lost(reason) => {
            Metrics::inc(&engine.metrics.heartbeat_failures);
            let lease = e.lease.clone();
            timers.remove(&(e.timer, id));
            entries.remove(&id);
            lose(engine, &lease, reason);
            return;
        }
        Beat::Skipped => {
            if e.lease.is_ended() {
                timers.remove(&(e.timer, id));
                entries.remove(&id);
                return;
            }
            e.next_beat = engine.clock.now() + config.heartbeat_every(e.lease.lease) / 8;
        }
    }
    reschedule(timers, e);
}

pub(super) fn lose(engine: &Arc<Engine>, lease: &Arc<LeaseShared>, reason: LostReason) {
    // One atomic step: a release that began first wins, and nothing is lost.
    if !lease.mark_lost(reason.clone()) {
        return;
    }
    tracing::warn!(lock = %lease.name, %reason, "lease lost");
    Metrics::inc(&engine.metrics.lost_leases);
    engine.clear_holder(lease, None, &super::writes::OwnWrites::default());
}

/// One heartbeat: rewrite the record with a new version, conditioned on ours.
async fn heartbeat(engine: &Arc<Engine>, lease: &Arc<LeaseShared>, give_up: Instant) -> Beat {
    let Ok(mut core) = lease.core.try_lock() else {
        return Beat::Skipped;
    };
    if lease.is_ended() {
        return Beat::Skipped;
    }
    let out = engine.heartbeat_request(&lease.name, &core.version, lease.lease, lease.payload());
    core.pending.push(out.version.clone(), out.sent);
    let error = match engine.write_by(out.request, give_up).await {
        Ok(record) => {
            core.queue = record.queue;
            core.version = record.version;
            core.pending.clear();
            let from = engine.lease_start(out.sent);
            lease.set_valid_from(from);
            return Beat::Renewed(from);
        }
        Err(e) => e,
    };
    let returned = match error {
        WriteError::ConditionFailed { current } => current,
        WriteError::Backend(e) if e.is_retryable() => return Beat::Retry(e),
        WriteError::Backend(e) => return Beat::Lost(LostReason::BackendFailed { error: e }),
    };
    // A failed read here only leaves the conflict unresolved: retry it.
    let current = match engine.record_behind(returned, &lease.name, give_up).await {
        Ok(current) => current,
        Err(e) => return Beat::Retry(e),
    };
    match current {
        Some(r) => match engine.adopt_heartbeat(&mut core, &r) {
            // An earlier heartbeat whose response was lost did apply.
            Some(from) => {
                lease.set_valid_from(from);
                Beat::Renewed(from)
            }
            None => Beat::Lost(LostReason::replaced_by(Some(&r))),
        },
        None => Beat::Lost(LostReason::replaced_by(None)),
    }
}
