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

use crate::client::ClientInner;
use crate::lease::LeaseShared;
use crate::metrics::Metrics;
use crate::{Condition, LostReason, TokenUpdate, Version, WriteError, WriteRequest};

pub(crate) enum KeeperCommand {
    Register(Arc<LeaseShared>),
    Shutdown,
}

enum Beat {
    /// The lease is valid from this send instant.
    Renewed(Instant),
    /// The write failed in a way worth retrying.
    Retry(String),
    /// The lease is gone.
    Lost(LostReason),
    /// A release holds the lease; nothing to do.
    Skipped,
}

struct Entry {
    lease: Arc<LeaseShared>,
    next_beat: Instant,
    signal_at: Instant,
    in_flight: bool,
    failures: u32,
    last_error: Option<String>,
    timer: Instant,
}

type BeatFuture = Pin<Box<dyn Future<Output = (u64, Beat)> + Send>>;

pub(crate) async fn run(client: Weak<ClientInner>, mut rx: mpsc::UnboundedReceiver<KeeperCommand>) {
    let mut entries: HashMap<u64, Entry> = HashMap::new();
    let mut timers: BTreeSet<(Instant, u64)> = BTreeSet::new();
    let mut in_flight: FuturesUnordered<BeatFuture> = FuturesUnordered::new();
    loop {
        let Some(inner) = client.upgrade() else {
            return;
        };
        let sleep = timers.first().map(|(t, _)| inner.clock.sleep_until(*t));
        drop(inner);
        tokio::select! {
            biased;
            cmd = rx.recv() => match cmd {
                Some(KeeperCommand::Register(lease)) => {
                    let Some(inner) = client.upgrade() else { return };
                    let from = lease.valid_from();
                    let entry = Entry {
                        next_beat: from + inner.config.heartbeat_every(lease.lease),
                        signal_at: from + inner.config.signal_after(lease.lease),
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
                let Some(inner) = client.upgrade() else { return };
                on_beat(&inner, &mut entries, &mut timers, id, beat);
            }
            _ = async { match sleep { Some(s) => s.await, None => std::future::pending().await } } => {
                let Some(inner) = client.upgrade() else { return };
                let now = inner.clock.now();
                while let Some(&(t, id)) = timers.first() {
                    if t > now {
                        break;
                    }
                    timers.pop_first();
                    on_timer(&inner, &mut entries, &mut timers, &mut in_flight, id, now);
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
    inner: &Arc<ClientInner>,
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
        lose(inner, &lease, reason);
        return;
    }
    if e.lease.heartbeat && !e.in_flight && now >= e.next_beat {
        inner.metrics.record_lag(now - e.next_beat);
        e.in_flight = true;
        let span =
            tracing::debug_span!("lynk.heartbeat", lock = %e.lease.name, token = %e.lease.token);
        let lease = e.lease.clone();
        let inner2 = inner.clone();
        // A heartbeat never waits past the lost signal: by then the lease is
        // given up anyway, and the next one must not queue behind it.
        let give_up = (now + inner.config.call_timeout_for(e.lease.lease)).min(e.signal_at);
        in_flight.push(Box::pin(
            async move { (lease.id, heartbeat(&inner2, &lease, give_up).await) }.instrument(span),
        ));
    }
    reschedule(timers, e);
}

fn on_beat(
    inner: &Arc<ClientInner>,
    entries: &mut HashMap<u64, Entry>,
    timers: &mut BTreeSet<(Instant, u64)>,
    id: u64,
    beat: Beat,
) {
    let Some(e) = entries.get_mut(&id) else {
        return;
    };
    e.in_flight = false;
    let config = &inner.config;
    match beat {
        Beat::Renewed(from) => {
            Metrics::inc(&inner.metrics.heartbeats);
            e.failures = 0;
            e.last_error = None;
            e.signal_at = from + config.signal_after(e.lease.lease);
            e.next_beat = from + config.heartbeat_every(e.lease.lease);
        }
        Beat::Retry(error) => {
            Metrics::inc(&inner.metrics.heartbeat_failures);
            tracing::warn!(lock = %e.lease.name, %error, "heartbeat failed; retrying");
            let backoff = config
                .initial_backoff
                .saturating_mul(1u32 << e.failures.min(16))
                .min(config.max_backoff)
                .min(config.heartbeat_every(e.lease.lease) / 2);
            e.failures += 1;
            e.last_error = Some(error);
            e.next_beat = inner.clock.now() + inner.jitter(backoff.max(Duration::from_millis(1)));
        }
        Beat::Lost(reason) => {
            Metrics::inc(&inner.metrics.heartbeat_failures);
            let lease = e.lease.clone();
            timers.remove(&(e.timer, id));
            entries.remove(&id);
            lose(inner, &lease, reason);
            return;
        }
        Beat::Skipped => {
            if e.lease.is_ended() {
                timers.remove(&(e.timer, id));
                entries.remove(&id);
                return;
            }
            e.next_beat = inner.clock.now() + config.heartbeat_every(e.lease.lease) / 8;
        }
    }
    reschedule(timers, e);
}

fn lose(inner: &Arc<ClientInner>, lease: &Arc<LeaseShared>, reason: LostReason) {
    // One atomic step: a release that began first wins, and nothing is lost.
    if !lease.mark_lost(reason.clone()) {
        return;
    }
    tracing::warn!(lock = %lease.name, %reason, "lease lost");
    Metrics::inc(&inner.metrics.lost_leases);
    inner.on_lost(lease);
}

/// One heartbeat: rewrite the record with a new version, conditioned on ours.
async fn heartbeat(inner: &Arc<ClientInner>, lease: &Arc<LeaseShared>, give_up: Instant) -> Beat {
    let Ok(mut core) = lease.core.try_lock() else {
        return Beat::Skipped;
    };
    if lease.is_ended() {
        return Beat::Skipped;
    }
    let version = Version::random();
    let sent = inner.clock.now();
    core.pending.push((version.clone(), sent));
    let request = WriteRequest {
        key: lease.name.clone(),
        condition: Condition::VersionIs(core.version.clone()),
        version,
        lease_duration: lease.lease,
        host: inner.config.host_identifier.clone(),
        token: TokenUpdate::Keep,
        payload: lease.payload.clone(),
        released: false,
    };
    match inner.write_by(request, give_up).await {
        Ok(record) => {
            core.version = record.version;
            core.pending.clear();
            let from = inner.lease_start(sent);
            lease.set_valid_from(from);
            Beat::Renewed(from)
        }
        Err(WriteError::ConditionFailed { current }) => {
            let current = match current {
                Some(c) => Some(c),
                None => match inner.read_by(&lease.name, give_up).await {
                    Ok(c) => c,
                    Err(e) => return Beat::Retry(e.to_string()),
                },
            };
            match current {
                Some(r) if !r.released && core.pending_sent_at(&r.version).is_some() => {
                    // An earlier heartbeat whose response was lost did apply.
                    let at = inner.lease_start(core.pending_sent_at(&r.version).unwrap_or(sent));
                    Metrics::inc(&inner.metrics.ambiguous_resolved);
                    core.version = r.version;
                    core.pending.clear();
                    lease.set_valid_from(at);
                    Beat::Renewed(at)
                }
                Some(r) => Beat::Lost(LostReason::Stolen { by: Some(r.host) }),
                None => Beat::Lost(LostReason::Stolen { by: None }),
            }
        }
        Err(WriteError::Backend(e)) if e.is_retryable() => Beat::Retry(e.to_string()),
        Err(WriteError::Backend(e)) => Beat::Lost(LostReason::BackendFailed {
            error: e.to_string(),
        }),
    }
}
