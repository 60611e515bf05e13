//! The acquirer: the one task per lock name that works the store on behalf of
//! this process's queue of waiters.
//!
//! It sends a conditional write when the lock looks free, reads the record at
//! the poll interval while someone else holds it, and takes over once it has
//! seen the *same* version for `lease × (1 + drift) + lock_delay`, timed on
//! its own monotonic clock from after the response that showed the version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::Instrument;

use crate::client::ClientInner;
use crate::metrics::Metrics;
use crate::slot::AcquireSpec;
use crate::{
    BackendError, Condition, FencingToken, LockError, LockRecord, TokenUpdate, Version, WriteError,
    WriteRequest,
};

/// The most versions of unknown outcome remembered; older ones only delay a
/// takeover of our own record by one lease, never break safety.
const MAX_OWN_VERSIONS: usize = 64;

/// A record version this waiter has watched, and since when.
struct Observation {
    version: Version,
    since: Instant,
    lease: Duration,
}

enum Next {
    Write(Condition),
    Read,
}

pub(crate) async fn run(inner: Arc<ClientInner>, name: String, seed: Vec<(Version, Instant)>) {
    let _reset = ResetOnPanic {
        inner: inner.clone(),
        name: name.clone(),
    };
    let wake = match inner.slots().get(&name) {
        Some(state) => state.wake.clone(),
        None => return,
    };
    // Versions this task (or an earlier attempt, from `seed`) wrote, with
    // their send instants.
    let mut own: Vec<(Version, Instant)> = seed;
    // Those whose outcome is unknown: handed on if this task stops early.
    let mut uncertain: Vec<(Version, Instant)> = Vec::new();
    let mut observed: Option<Observation> = None;
    let mut next = Next::Write(Condition::Vacant);
    let mut backoff = inner.config.initial_backoff;
    let mut waited = false;
    loop {
        let Some((waiter_id, spec)) = head(&inner, &name, &uncertain) else {
            return;
        };
        // One attempt (a write or a read, and the read that may resolve a
        // failed condition) ends by here, answered or not.
        // A write's response is no use after the lease it would start has
        // reached its lost-signal instant, so no attempt waits longer.
        let limit = inner
            .config
            .call_timeout_for(spec.lease)
            .min(inner.config.signal_after(spec.lease));
        let attempt_by = inner.clock.now() + limit;
        let current = match std::mem::replace(&mut next, Next::Read) {
            Next::Write(condition) => {
                let takeover = matches!(condition, Condition::VersionIs(_));
                let version = Version::random();
                let sent = inner.clock.now();
                own.push((version.clone(), sent));
                let attempt = (version.clone(), sent);
                if own.len() > MAX_OWN_VERSIONS {
                    own.remove(0);
                }
                Metrics::inc(&inner.metrics.acquire_attempts);
                let request = WriteRequest {
                    key: name.clone(),
                    condition,
                    version,
                    lease_duration: spec.lease,
                    host: inner.config.host_identifier.clone(),
                    token: TokenUpdate::Next {
                        initial: inner.initial_token(&name),
                    },
                    payload: spec.payload.clone(),
                    released: false,
                };
                let span = if takeover {
                    tracing::info_span!("lynk.takeover", lock = %name)
                } else {
                    tracing::Span::none()
                };
                match inner.write_by(request, attempt_by).instrument(span).await {
                    Ok(record) if !fresh(&inner, sent, &record) => {
                        // Applied, but answered too late to hand out: take
                        // our own record over afresh (a new lease from a new
                        // send).
                        next = Next::Write(Condition::VersionIs(record.version));
                        continue;
                    }
                    Ok(record) => {
                        if takeover {
                            Metrics::inc(&inner.metrics.takeovers);
                            tracing::info!(lock = %name, token = ?record.fencing_token, "took over an expired lease");
                        }
                        grant(&inner, &name, waiter_id, &spec, record, sent);
                        return;
                    }
                    Err(WriteError::ConditionFailed { current: Some(c) }) => Ok(Some(c)),
                    Err(WriteError::ConditionFailed { current: None }) => {
                        read(&inner, &name, attempt_by).await
                    }
                    Err(WriteError::Backend(e)) => {
                        if e.kind() == crate::BackendErrorKind::OutcomeUnknown {
                            uncertain.push(attempt);
                        }
                        Err(e)
                    }
                }
            }
            Next::Read => read(&inner, &name, attempt_by).await,
        };
        let current = match current {
            Ok(c) => {
                backoff = inner.config.initial_backoff;
                set_last_error(&inner, &name, None);
                c
            }
            Err(e) if e.is_retryable() => {
                tracing::debug!(lock = %name, error = %e, "store error while acquiring; backing off");
                set_last_error(&inner, &name, Some(&e));
                fail_try_waiters(&inner, &name, Some(&e));
                let until = inner.clock.now() + inner.jitter(backoff);
                sleep_or_wake(&inner, &wake, until).await;
                backoff = (backoff * 2).min(inner.config.max_backoff);
                // Retry the write we were making (a new version each time),
                // or read again.
                next = match observed {
                    Some(ref o) if o.takeover_due(&inner) => {
                        Next::Write(Condition::VersionIs(o.version.clone()))
                    }
                    Some(_) => Next::Read,
                    None => Next::Write(Condition::Vacant),
                };
                continue;
            }
            Err(e) => {
                fail_all(&inner, &name, e, &uncertain);
                return;
            }
        };
        let now = inner.clock.now();
        match current {
            None => next = Next::Write(Condition::Vacant),
            Some(r) if r.released => next = Next::Write(Condition::Vacant),
            Some(r) => {
                if let Some(&(_, sent)) = own.iter().find(|(v, _)| *v == r.version) {
                    // One of our writes whose response was lost did apply.
                    Metrics::inc(&inner.metrics.ambiguous_resolved);
                    if fresh(&inner, sent, &r) && made_for(&r, &spec) {
                        tracing::debug!(lock = %name, "an earlier attempt applied; lock is ours");
                        grant(&inner, &name, waiter_id, &spec, r, sent);
                        return;
                    }
                    // Ours, but too old to hand out, or written for a waiter
                    // that left (its lease and payload): take it over afresh
                    // for this waiter (the condition proves nobody else wrote
                    // since).
                    next = Next::Write(Condition::VersionIs(r.version));
                    continue;
                }
                if !waited {
                    waited = true;
                    Metrics::inc(&inner.metrics.waits);
                }
                fail_try_waiters(&inner, &name, None);
                set_last_holder(&inner, &name, &r.host);
                if observed.as_ref().is_none_or(|o| o.version != r.version) {
                    observed = Some(Observation {
                        version: r.version.clone(),
                        since: now,
                        lease: r.lease_duration,
                    });
                }
                let Some(o) = observed.as_ref() else { continue };
                let poll_at = now + inner.jitter(inner.config.poll_interval_for(o.lease));
                match o.takeover_at(&inner) {
                    Some(takeover_at) if takeover_at <= poll_at => {
                        sleep_or_wake(&inner, &wake, takeover_at).await;
                    }
                    _ => sleep_or_wake(&inner, &wake, poll_at).await,
                }
                // Woken early (a try_acquire, a shutdown) or not: take over
                // only once it is due.
                next = if o.takeover_due(&inner) {
                    Next::Write(Condition::VersionIs(o.version.clone()))
                } else {
                    Next::Read
                };
            }
        }
    }
}

impl Observation {
    /// When a waiter may take over the observed version; `None` for a lease
    /// too long to represent (never).
    fn takeover_at(&self, inner: &ClientInner) -> Option<Instant> {
        self.since
            .checked_add(inner.config.takeover_after(self.lease)?)
    }

    fn takeover_due(&self, inner: &ClientInner) -> bool {
        self.takeover_at(inner)
            .is_some_and(|at| inner.clock.now() >= at)
    }
}

/// Whether a lease written by a write sent at `sent` may still be handed out:
/// its lost-signal instant has not come yet.
fn fresh(inner: &ClientInner, sent: Instant, record: &LockRecord) -> bool {
    let start = inner.lease_start(sent);
    inner.clock.now() < start + inner.config.signal_after(record.lease_duration)
}

/// Whether our own record `r` carries what `spec` asks for, so it can be
/// handed to that waiter as it is.
fn made_for(r: &LockRecord, spec: &AcquireSpec) -> bool {
    r.lease_duration == spec.lease && r.payload == spec.payload
}

/// Sleeps until `until`, or until woken (a `try_acquire` waiter arrived, or
/// the client is shutting down).
async fn sleep_or_wake(inner: &ClientInner, wake: &Notify, until: Instant) {
    tokio::select! {
        _ = inner.clock.sleep_until(until) => {}
        _ = wake.notified() => {}
    }
}

/// The first live waiter, or `None` after marking the acquirer stopped (no
/// waiters left, or the client is shut down).
fn head(
    inner: &Arc<ClientInner>,
    name: &str,
    uncertain: &[(Version, Instant)],
) -> Option<(u64, AcquireSpec)> {
    let mut slots = inner.slots();
    let state = slots.get_mut(name)?;
    if inner.is_closed() {
        state.fail_all_waiters(|| LockError::ShutDown);
    }
    state.prune();
    match state.waiters.front() {
        Some(w) => Some((w.id, w.spec.clone())),
        None => {
            // Attempts of unknown outcome may have acquired: the next
            // acquirer of this process recognises them as its own.
            state.remember_ambiguous(uncertain);
            state.acquirer_running = false;
            inner.ensure_acquirer(&mut slots, name);
            None
        }
    }
}

async fn read(
    inner: &Arc<ClientInner>,
    name: &str,
    by: Instant,
) -> Result<Option<LockRecord>, BackendError> {
    Metrics::inc(&inner.metrics.polls);
    inner.read_by(name, by).await
}

/// The lock is ours: make the lease, start heartbeats, and give a guard to
/// the waiter it was acquired for. If that waiter left (or a different one is
/// now first), dropping the guard releases or hands over to the right one.
fn grant(
    inner: &Arc<ClientInner>,
    name: &str,
    waiter_id: u64,
    spec: &AcquireSpec,
    record: LockRecord,
    sent: Instant,
) {
    Metrics::inc(&inner.metrics.acquired);
    let lease = inner.new_lease(&record, sent, FencingToken::new(0), spec.heartbeat);
    let waiter = {
        let mut slots = inner.slots();
        let state = slots.entry(name.to_owned()).or_default();
        state.acquirer_running = false;
        state.holder = Some(lease.clone());
        state.prune();
        match state.waiters.front() {
            Some(w) if w.id == waiter_id && w.spec == *spec => state.waiters.pop_front(),
            _ => None,
        }
    };
    inner.deliver(lease, waiter);
}

fn set_last_holder(inner: &Arc<ClientInner>, name: &str, host: &str) {
    if let Some(state) = inner.slots().get_mut(name) {
        if state.last_holder.as_deref() != Some(host) {
            state.last_holder = Some(host.to_owned());
        }
    }
}

fn set_last_error(inner: &Arc<ClientInner>, name: &str, error: Option<&BackendError>) {
    if let Some(state) = inner.slots().get_mut(name) {
        state.last_error = error.map(|e| e.to_string());
    }
}

/// `try_acquire` waiters get their answer after the first attempt: busy
/// (`error == None`) or the store's error.
fn fail_try_waiters(inner: &Arc<ClientInner>, name: &str, error: Option<&BackendError>) {
    let mut slots = inner.slots();
    let Some(state) = slots.get_mut(name) else {
        return;
    };
    let (tries, rest): (Vec<_>, Vec<_>) = state.waiters.drain(..).partition(|w| w.try_once);
    state.waiters = rest.into();
    for w in tries {
        let answer = match error {
            None => Ok(None),
            Some(e) => Err(LockError::from_backend(name, "acquire", e.clone())),
        };
        let _ = w.tx.send(answer);
    }
}

/// A store error retrying cannot fix: every waiter gets it.
fn fail_all(
    inner: &Arc<ClientInner>,
    name: &str,
    error: BackendError,
    uncertain: &[(Version, Instant)],
) {
    tracing::warn!(lock = %name, %error, "acquire failed");
    let mut slots = inner.slots();
    if let Some(state) = slots.get_mut(name) {
        state.remember_ambiguous(uncertain);
        state.fail_all_waiters(|| LockError::from_backend(name, "acquire", error.clone()));
        state.acquirer_running = false;
    }
    inner.ensure_acquirer(&mut slots, name);
}

/// If the acquirer panics, frees the queue so a later acquire can start a
/// new one instead of waiting forever.
struct ResetOnPanic {
    inner: Arc<ClientInner>,
    name: String,
}

impl Drop for ResetOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut slots = self.inner.slots();
            if let Some(state) = slots.get_mut(&self.name) {
                state.acquirer_running = false;
                state.fail_all_waiters(|| {
                    LockError::invalid(
                        "lock record",
                        "the lock engine failed while acquiring it (a bug: please report it); try again",
                    )
                });
            }
        }
    }
}
