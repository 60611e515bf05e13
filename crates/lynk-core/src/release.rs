//! Releasing a lease: a handover to the next local waiter in one write, or a
//! release of the record.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::client::ClientInner;
use crate::lease::LeaseShared;
use crate::metrics::Metrics;
use crate::slot::Waiter;
use crate::{
    Condition, LockError, LockGuard, LockRecord, ReleaseMode, TokenUpdate, Version, WriteError,
    WriteRequest,
};

/// Releases the lease behind a guard (by `release()` or on drop). A lost
/// lease is still released if the record is still ours, and reported as lost.
pub(crate) async fn release_guard(
    inner: &Arc<ClientInner>,
    lease: Arc<LeaseShared>,
) -> Result<(), LockError> {
    let lost = lease.lost_reason().cloned();
    let result = release_record(inner, lease.clone(), lost.is_none()).await;
    match lost {
        Some(reason) => Err(LockError::Lost {
            name: lease.name.clone(),
            reason,
        }),
        None => result,
    }
}

/// Writes the release of `lease`, handing over to the next live local waiter
/// when `handover` is true. Runs at most once per lease.
pub(crate) async fn release_record(
    inner: &Arc<ClientInner>,
    lease: Arc<LeaseShared>,
    handover: bool,
) -> Result<(), LockError> {
    if !lease.start_release() {
        return Ok(());
    }
    let span = tracing::debug_span!("lynk.release", lock = %lease.name, token = %lease.token);
    release_inner(inner, lease, handover).instrument(span).await
}

enum Outcome {
    HandedOver(LockRecord, Instant),
    Released,
}

async fn release_inner(
    inner: &Arc<ClientInner>,
    lease: Arc<LeaseShared>,
    handover: bool,
) -> Result<(), LockError> {
    let config = &inner.config;
    let clock = &inner.clock;
    let mut deadline = lease.valid_from() + config.safe_for(lease.lease);
    // Wait for an in-flight heartbeat, but not past the point where the lease
    // is no longer ours anyway.
    let core = tokio::select! {
        biased;
        core = lease.core.lock() => Some(core),
        _ = clock.sleep_until(deadline) => None,
    };
    let Some(mut core) = core else {
        finish(inner, &lease, None, &[]);
        return Err(LockError::Lost {
            name: lease.name.clone(),
            reason: crate::LostReason::HeartbeatsFailed { last_error: None },
        });
    };
    let waiter = if handover {
        pop_waiter(inner, &lease.name)
    } else {
        None
    };
    let mut backoff = config.initial_backoff;
    let mut unknown = false;
    // This release's own attempts; `core.pending` holds only heartbeats'.
    let mut mine: Vec<(Version, Instant)> = Vec::new();
    loop {
        let version = Version::random();
        let sent = clock.now();
        mine.push((version.clone(), sent));
        let result = match (&waiter, config.release_mode) {
            (Some(w), _) => inner
                .backend
                .write(WriteRequest {
                    key: lease.name.clone(),
                    condition: Condition::VersionIs(core.version.clone()),
                    version,
                    lease_duration: w.spec.lease,
                    host: config.host_identifier.clone(),
                    token: TokenUpdate::Next {
                        initial: clock.wall_micros(),
                    },
                    payload: w.spec.payload.clone(),
                    released: false,
                })
                .await
                .map(|r| Outcome::HandedOver(r, sent)),
            (None, ReleaseMode::KeepRecord) => inner
                .backend
                .write(WriteRequest {
                    key: lease.name.clone(),
                    condition: Condition::VersionIs(core.version.clone()),
                    version,
                    // Zero, so the original Python client (which waits a
                    // record's lease before taking it) takes it at once too.
                    lease_duration: std::time::Duration::ZERO,
                    host: config.host_identifier.clone(),
                    token: TokenUpdate::Keep,
                    payload: None,
                    released: true,
                })
                .await
                .map(|_| Outcome::Released),
            (None, ReleaseMode::Delete) => inner
                .backend
                .delete(&lease.name, &core.version)
                .await
                .map(|_| Outcome::Released),
        };
        let outcome = match result {
            Ok(o) => o,
            Err(WriteError::ConditionFailed { current }) => {
                let current = match current {
                    Some(c) => Some(c),
                    None => match inner.backend.read(&lease.name).await {
                        Ok(c) => c,
                        Err(e) => {
                            let ambiguous = handovers(&waiter, &mine);
                            finish(inner, &lease, waiter, &ambiguous);
                            return Err(LockError::from_backend(&lease.name, "release", e));
                        }
                    },
                };
                let sent_at = |v: &Version| mine.iter().find(|(m, _)| m == v).map(|(_, at)| *at);
                match current {
                    Some(r) if sent_at(&r.version).is_some() => {
                        // One of this release's attempts applied.
                        Metrics::inc(&inner.metrics.ambiguous_resolved);
                        if waiter.is_some() && !r.released {
                            let at = sent_at(&r.version).unwrap_or(sent);
                            Outcome::HandedOver(r, at)
                        } else {
                            Outcome::Released
                        }
                    }
                    Some(r) if !r.released && core.pending_sent_at(&r.version).is_some() => {
                        // A heartbeat whose response was lost did apply: the
                        // lease was renewed. Adopt it and release from there.
                        let at = core.pending_sent_at(&r.version).unwrap_or(sent);
                        Metrics::inc(&inner.metrics.ambiguous_resolved);
                        core.version = r.version;
                        core.pending.clear();
                        lease.set_valid_from(at);
                        deadline = lease.valid_from() + config.safe_for(lease.lease);
                        continue;
                    }
                    // Gone or released: the lock is free, which is what we wanted.
                    None => Outcome::Released,
                    Some(r) if r.released => Outcome::Released,
                    Some(r) => {
                        finish(inner, &lease, waiter, &[]);
                        if unknown || sent < deadline {
                            // Someone else holds it now. Sent before our safe
                            // deadline, so nobody could have taken it over
                            // before this release: an earlier attempt (maybe
                            // retried inside the store's client) applied, and
                            // the next holder came after it.
                            return Ok(());
                        }
                        return Err(LockError::Lost {
                            name: lease.name.clone(),
                            reason: crate::LostReason::Stolen { by: Some(r.host) },
                        });
                    }
                }
            }
            Err(WriteError::Backend(e)) => {
                let now = clock.now();
                if e.is_retryable() && now + backoff < deadline {
                    unknown |= e.kind() == crate::BackendErrorKind::OutcomeUnknown;
                    tracing::debug!(error = %e, "release failed, retrying");
                    clock.sleep(inner.jitter(backoff)).await;
                    backoff = (backoff * 2).min(config.max_backoff);
                    continue;
                }
                let ambiguous = handovers(&waiter, &mine);
                finish(inner, &lease, waiter, &ambiguous);
                return Err(LockError::from_backend(&lease.name, "release", e));
            }
        };
        core.pending.clear();
        match (outcome, waiter) {
            (Outcome::HandedOver(record, sent_at), Some(w)) => {
                Metrics::inc(&inner.metrics.handovers);
                Metrics::inc(&inner.metrics.acquired);
                tracing::debug!(token = ?record.fencing_token, "handed over to a local waiter");
                let next = Arc::new(LeaseShared::new(
                    inner.next_id(),
                    &record,
                    sent_at,
                    lease.token,
                    w.spec.heartbeat,
                ));
                if inner.is_closed() {
                    // Shut down while the handover was in flight: nobody will
                    // heartbeat the new lease, so release it at once.
                    next.mark_lost(crate::LostReason::ClientShutDown);
                    drop(LockGuard::new(inner.clone(), next)); // releases in the background
                    drop(w.tx.send(Err(LockError::ShutDown)));
                    return Ok(());
                }
                inner.slots().entry(lease.name.clone()).or_default().holder = Some(next.clone());
                inner.register(next.clone());
                let guard = LockGuard::new(inner.clone(), next);
                // If the waiter gave up meanwhile, the guard comes back and is
                // dropped, which releases (or hands over) again.
                drop(w.tx.send(Ok(Some(guard))));
            }
            // Released, or the record vanished under a handover: a popped
            // waiter goes back to the head of the queue and polls.
            (_, waiter) => {
                Metrics::inc(&inner.metrics.releases);
                finish(inner, &lease, waiter, &[]);
            }
        }
        return Ok(());
    }
}

/// The attempts that may have handed the lock to a local waiter: only
/// handover writes (not release markers) acquire, so only they are passed to
/// the acquirer as its own.
fn handovers(waiter: &Option<Waiter>, mine: &[(Version, Instant)]) -> Vec<(Version, Instant)> {
    if waiter.is_some() {
        mine.to_vec()
    } else {
        Vec::new()
    }
}

fn pop_waiter(inner: &Arc<ClientInner>, name: &str) -> Option<Waiter> {
    let mut slots = inner.slots();
    let state = slots.get_mut(name)?;
    state.prune();
    state.waiters.pop_front()
}

/// Clears `lease` as the local holder, puts back a popped waiter, remembers
/// versions of unknown outcome for the acquirer, and lets the queue poll.
fn finish(
    inner: &Arc<ClientInner>,
    lease: &Arc<LeaseShared>,
    waiter: Option<Waiter>,
    ambiguous: &[(Version, Instant)],
) {
    let mut slots = inner.slots();
    let state = slots.entry(lease.name.clone()).or_default();
    if state.holder.as_ref().is_some_and(|h| h.id == lease.id) {
        state.holder = None;
    }
    state.remember_ambiguous(ambiguous);
    if let Some(w) = waiter {
        state.waiters.push_front(w);
    }
    inner.ensure_acquirer(&mut slots, &lease.name);
}
