//! Releasing a lease: a handover to the next local waiter in one write, or a
//! release of the record.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::client::ClientInner;
use crate::lease::{LeaseShared, ReleaseStart};
use crate::metrics::Metrics;
use crate::slot::Waiter;
use crate::{
    Condition, LockError, LockRecord, ReleaseMode, TokenUpdate, Version, WriteError, WriteRequest,
};

/// Releases the lease behind a guard (by `release()` or on drop). A lost
/// lease is still released if the record is still ours, and reported as lost.
/// If a release of this lease is already running (a shutdown's), waits for
/// its outcome instead.
pub(crate) async fn release_guard(
    inner: &Arc<ClientInner>,
    lease: Arc<LeaseShared>,
) -> Result<(), LockError> {
    let result = match lease.begin_release(None) {
        ReleaseStart::Started { lost } => run_release(inner, &lease, lost.is_none()).await,
        ReleaseStart::AlreadyStarted => lease.release_outcome().await,
    };
    match lease.lost_reason() {
        Some(reason) => Err(LockError::Lost {
            name: lease.name.clone(),
            reason,
        }),
        None => result,
    }
}

/// Runs a release the caller has begun with
/// [`LeaseShared::begin_release`], handing over to the next live local
/// waiter when `handover` is true; publishes the outcome and forgets the
/// lease.
pub(crate) async fn run_release(
    inner: &Arc<ClientInner>,
    lease: &Arc<LeaseShared>,
    handover: bool,
) -> Result<(), LockError> {
    let span = tracing::debug_span!("lynk.release", lock = %lease.name, token = %lease.token);
    let result = release_inner(inner, lease.clone(), handover)
        .instrument(span)
        .await;
    lease.finish_release(result.clone());
    inner.forget_lease(lease.id);
    result
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
    // The whole release, retries included, ends by here.
    let deadline = clock.now() + config.release_timeout;
    let call_limit = config.call_timeout_for(lease.lease);
    // Wait for an in-flight heartbeat (itself bounded), but not past the
    // release's deadline.
    let core = tokio::select! {
        biased;
        core = lease.core.lock() => Some(core),
        _ = clock.sleep_until(deadline) => None,
    };
    let Some(mut core) = core else {
        finish(inner, &lease, None, &[]);
        return Err(LockError::OutcomeUnknown {
            name: lease.name.clone(),
            operation: "release",
            source: crate::BackendError::new(
                crate::BackendErrorKind::OutcomeUnknown,
                "a heartbeat of the lease was still unanswered when the release gave up",
            ),
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
        let call_by = (sent + call_limit).min(deadline);
        mine.push((version.clone(), sent));
        let result = match (&waiter, config.release_mode) {
            (Some(w), _) => {
                let condition = if config.mutations.unconditional_handover {
                    blind_condition(inner, &lease.name, call_by).await
                } else {
                    Condition::VersionIs(core.version.clone())
                };
                inner
                    .write_by(
                        WriteRequest {
                            key: lease.name.clone(),
                            condition,
                            version,
                            lease_duration: w.spec.lease,
                            host: config.host_identifier.clone(),
                            token: TokenUpdate::Next {
                                initial: inner.initial_token(&lease.name),
                            },
                            payload: w.spec.payload.clone(),
                            released: false,
                        },
                        call_by,
                    )
                    .await
                    .map(|r| Outcome::HandedOver(r, sent))
            }
            (None, ReleaseMode::KeepRecord) => inner
                .write_by(
                    WriteRequest {
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
                    },
                    call_by,
                )
                .await
                .map(|_| Outcome::Released),
            (None, ReleaseMode::Delete) => inner
                .delete_by(&lease.name, &core.version, call_by)
                .await
                .map(|_| Outcome::Released),
        };
        let outcome = match result {
            Ok(o) => o,
            Err(WriteError::ConditionFailed { current }) => {
                let current = match current {
                    Some(c) => Some(c),
                    None => match inner.read_by(&lease.name, call_by).await {
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
                        lease.set_valid_from(inner.lease_start(at));
                        continue;
                    }
                    // Released by another acquisition after ours: the lock
                    // was taken from us during our lease.
                    Some(r) if r.released && r.fencing_token.is_some_and(|t| t > lease.token) => {
                        finish(inner, &lease, waiter, &[]);
                        return Err(held_by_another(&lease.name, unknown, r.host));
                    }
                    // Gone or released: the lock is free, which is what we wanted.
                    None => Outcome::Released,
                    Some(r) if r.released => Outcome::Released,
                    Some(r) => {
                        // Someone else holds it now: never a quiet success,
                        // since it may mean two holders overlapped.
                        finish(inner, &lease, waiter, &[]);
                        return Err(held_by_another(&lease.name, unknown, r.host));
                    }
                }
            }
            Err(WriteError::Backend(e)) => {
                let now = clock.now();
                unknown |= e.kind() == crate::BackendErrorKind::OutcomeUnknown;
                if e.is_retryable() && now + backoff < deadline {
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
            (Outcome::HandedOver(record, sent_at), Some(w))
                if clock.now()
                    >= inner.lease_start(sent_at) + config.signal_after(record.lease_duration) =>
            {
                // Handed over, but learnt too late to hand the lease out: the
                // waiter goes back to the head of the queue, and the acquirer
                // recognises the record as this process's own and takes it
                // over afresh.
                Metrics::inc(&inner.metrics.releases);
                finish(inner, &lease, Some(w), &[(record.version, sent_at)]);
            }
            (Outcome::HandedOver(record, sent_at), Some(w)) => {
                Metrics::inc(&inner.metrics.handovers);
                Metrics::inc(&inner.metrics.acquired);
                tracing::debug!(token = ?record.fencing_token, "handed over to a local waiter");
                let next = inner.new_lease(&record, sent_at, lease.token, w.spec.heartbeat);
                inner.slots().entry(lease.name.clone()).or_default().holder = Some(next.clone());
                // If the waiter gave up meanwhile, the guard comes back and is
                // dropped, which releases (or hands over) again.
                inner.deliver(next, Some(w));
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

/// The error of a release that found the record held by `host`. With an
/// attempt of unknown outcome behind it, the release may have applied before
/// that holder acquired; without one, the lock was taken from us first.
fn held_by_another(name: &str, unknown: bool, host: String) -> LockError {
    if unknown {
        return LockError::OutcomeUnknown {
            name: name.to_owned(),
            operation: "release",
            source: crate::BackendError::new(
                crate::BackendErrorKind::OutcomeUnknown,
                format!(
                    "the lock is now held by {host}: an earlier attempt of this release may have applied before they acquired it, or the lock was taken from this holder before its release"
                ),
            ),
        };
    }
    LockError::Lost {
        name: name.to_owned(),
        reason: crate::LostReason::Stolen { by: Some(host) },
    }
}

/// The negative control's handover condition: whatever the store holds now,
/// so the handover applies even over another holder's record.
async fn blind_condition(inner: &Arc<ClientInner>, name: &str, by: Instant) -> Condition {
    match inner.read_by(name, by).await {
        Ok(Some(r)) => Condition::VersionIs(r.version),
        _ => Condition::Absent,
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
