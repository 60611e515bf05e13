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

use super::slots::AcquireSpec;
use super::writes::OwnWrites;
use super::Engine;
use crate::metrics::Metrics;
use crate::{
    BackendError, BackendErrorKind, Condition, FencingToken, LockError, LockRecord, Version,
    WriteError,
};

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

/// What an acquisition write came to.
enum Written {
    /// The lock is ours, by the write sent at this instant.
    Granted(LockRecord, Instant),
    /// Applied, but answered too late to hand out: take our own record over
    /// afresh.
    Stale(Version),
    /// Not applied (or not known): the stored record, or the store's error.
    Current(Result<Option<LockRecord>, BackendError>),
}

/// The state of one acquirer task.
struct Acquirer {
    engine: Arc<Engine>,
    name: String,
    wake: Arc<Notify>,
    /// Versions this task (or an earlier attempt, from the seed) wrote.
    own: OwnWrites,
    /// Those whose outcome is unknown: handed on if this task stops early.
    uncertain: OwnWrites,
    observed: Option<Observation>,
    next: Next,
    backoff: Duration,
    waited: bool,
}

pub(crate) async fn run(engine: Arc<Engine>, name: String, seed: OwnWrites) {
    let _reset = ResetOnPanic {
        engine: engine.clone(),
        name: name.clone(),
    };
    let Some(wake) = engine.slots.wake_signal(&name) else {
        return;
    };
    let mut acquirer = Acquirer {
        backoff: engine.config.initial_backoff,
        engine,
        name,
        wake,
        own: seed,
        uncertain: OwnWrites::default(),
        observed: None,
        next: Next::Write(Condition::Vacant),
        waited: false,
    };
    while acquirer.step().await {}
}

impl Acquirer {
    /// One attempt for the head of the queue; `false` when the task stops.
    async fn step(&mut self) -> bool {
        let engine = self.engine.clone();
        let (waiter_id, spec) =
            match engine
                .slots
                .head(&self.name, engine.is_closed(), &self.uncertain)
            {
                Ok(head) => head,
                Err(start) => {
                    engine.start_acquirer(start);
                    return false;
                }
            };
        // One attempt (a write or a read, and the read that may resolve a
        // failed condition) ends by here, answered or not. A write's answer is
        // no use after the lease it would start reached its lost signal.
        let config = &engine.config;
        let limit = config
            .call_timeout_for(spec.lease)
            .min(config.signal_after(spec.lease));
        let by = engine.clock.now() + limit;
        engine.slots.note_call(&self.name, Some(engine.clock.now()));
        let current = match std::mem::replace(&mut self.next, Next::Read) {
            Next::Write(condition) => match self.write(condition, &spec, by).await {
                Written::Granted(record, sent) => {
                    engine.slots.note_call(&self.name, None);
                    self.grant(waiter_id, &spec, record, sent);
                    return false;
                }
                Written::Stale(version) => {
                    engine.slots.note_call(&self.name, None);
                    self.next = Next::Write(Condition::VersionIs(version));
                    return true;
                }
                Written::Current(current) => current,
            },
            Next::Read => {
                Metrics::inc(&engine.metrics.polls);
                engine.read_by(&self.name, by).await
            }
        };
        engine.slots.note_call(&self.name, None);
        match current {
            Ok(current) => {
                self.backoff = config.initial_backoff;
                engine.slots.note(&self.name, None, None);
                self.on_record(current, waiter_id, &spec).await
            }
            Err(e) if e.is_retryable() => {
                self.on_store_error(e).await;
                true
            }
            Err(e) => {
                tracing::warn!(lock = %self.name, error = %e, "acquire failed");
                let make = || LockError::from_backend(&self.name, "acquire", e.clone());
                engine.start_acquirer(engine.slots.fail_all(&self.name, &self.uncertain, make));
                false
            }
        }
    }

    /// Sends an acquisition write for `spec`.
    async fn write(&mut self, condition: Condition, spec: &AcquireSpec, by: Instant) -> Written {
        let engine = &self.engine;
        let takeover = matches!(condition, Condition::VersionIs(_));
        let out = engine.acquire_request(&self.name, condition, spec);
        self.own.push(out.version.clone(), out.sent);
        Metrics::inc(&engine.metrics.acquire_attempts);
        let span = if takeover {
            tracing::info_span!("lynk.takeover", lock = %self.name)
        } else {
            tracing::Span::none()
        };
        match engine.write_by(out.request, by).instrument(span).await {
            Ok(record) if !fresh(engine, out.sent, &record) => Written::Stale(record.version),
            Ok(record) => {
                if takeover {
                    Metrics::inc(&engine.metrics.takeovers);
                    tracing::info!(lock = %self.name, token = ?record.fencing_token, "took over an expired lease");
                }
                Written::Granted(record, out.sent)
            }
            Err(WriteError::Backend(e)) => {
                if e.kind() == BackendErrorKind::OutcomeUnknown {
                    self.uncertain.push(out.version, out.sent);
                }
                Written::Current(Err(e))
            }
            Err(e) => {
                if matches!(e, WriteError::ConditionFailed { current: None }) {
                    Metrics::inc(&engine.metrics.polls); // the read that resolves it
                }
                Written::Current(engine.after_conflict(e, &self.name, by).await)
            }
        }
    }

    /// The stored record is `current`: write, wait and watch, or take over.
    async fn on_record(
        &mut self,
        current: Option<LockRecord>,
        waiter_id: u64,
        spec: &AcquireSpec,
    ) -> bool {
        let engine = self.engine.clone();
        let r = match current {
            Some(r) if !r.released => r,
            _ => {
                self.next = Next::Write(Condition::Vacant);
                return true;
            }
        };
        if let Some(sent) = self.own.sent_at(&r.version) {
            // One of our writes whose response was lost did apply.
            Metrics::inc(&engine.metrics.ambiguous_resolved);
            if fresh(&engine, sent, &r) && made_for(&r, spec) {
                tracing::debug!(lock = %self.name, "an earlier attempt applied; lock is ours");
                self.grant(waiter_id, spec, r, sent);
                return false;
            }
            // Ours, but too old to hand out, or written for a waiter that
            // left (its lease and payload): take it over afresh for this
            // waiter (the condition proves nobody else wrote since).
            self.next = Next::Write(Condition::VersionIs(r.version));
            return true;
        }
        if !self.waited {
            self.waited = true;
            Metrics::inc(&engine.metrics.waits);
        }
        engine.slots.answer_tries(&self.name, None);
        engine.slots.note(&self.name, Some(&r.host), None);
        let now = engine.clock.now();
        if self
            .observed
            .as_ref()
            .is_none_or(|o| o.version != r.version)
        {
            self.observed = Some(Observation {
                version: r.version.clone(),
                since: now,
                lease: r.lease_duration,
            });
        }
        let Some(o) = self.observed.as_ref() else {
            return true;
        };
        let poll_at = now + engine.jitter(engine.config.poll_interval_for(o.lease));
        let until = match o.takeover_at(&engine) {
            Some(takeover_at) if takeover_at <= poll_at => takeover_at,
            _ => poll_at,
        };
        sleep_or_wake(&engine, &self.wake, until).await;
        // Woken early (a try_acquire, a shutdown) or not: take over only once
        // it is due.
        self.next = self.retry_or_read();
        true
    }

    /// A store error retrying may fix: back off, then retry.
    async fn on_store_error(&mut self, e: BackendError) {
        let engine = self.engine.clone();
        tracing::debug!(lock = %self.name, error = %e, "store error while acquiring; backing off");
        engine.slots.note(&self.name, None, Some(&e));
        let error = LockError::from_backend(&self.name, "acquire", e);
        engine.slots.answer_tries(&self.name, Some(&error));
        let until = engine.clock.now() + engine.jitter(self.backoff);
        sleep_or_wake(&engine, &self.wake, until).await;
        self.backoff = (self.backoff * 2).min(engine.config.max_backoff);
        self.next = match self.observed {
            // Retry the write we were making (a new version each time), or
            // read again.
            Some(_) => self.retry_or_read(),
            None => Next::Write(Condition::Vacant),
        };
    }

    /// A takeover of the observed version once it is due, else a read.
    fn retry_or_read(&self) -> Next {
        match &self.observed {
            Some(o) if o.takeover_due(&self.engine) => {
                Next::Write(Condition::VersionIs(o.version.clone()))
            }
            _ => Next::Read,
        }
    }

    /// The lock is ours: make the lease and give it to the waiter it was won
    /// for. If that waiter left (or another is now first), dropping the lease
    /// releases or hands over to the right one.
    fn grant(&self, waiter_id: u64, spec: &AcquireSpec, record: LockRecord, sent: Instant) {
        let engine = &self.engine;
        Metrics::inc(&engine.metrics.acquired);
        let lease = engine.new_lease(&record, sent, FencingToken::new(0), spec.heartbeat);
        let waiter = engine.slots.grant(&lease, waiter_id, spec);
        engine.deliver(lease, waiter);
    }
}

impl Observation {
    /// When a waiter may take over the observed version; `None` for a lease
    /// too long to represent (never).
    fn takeover_at(&self, engine: &Engine) -> Option<Instant> {
        self.since
            .checked_add(engine.config.takeover_after(self.lease)?)
    }

    fn takeover_due(&self, engine: &Engine) -> bool {
        self.takeover_at(engine)
            .is_some_and(|at| engine.clock.now() >= at)
    }
}

/// Whether a lease written by a write sent at `sent` may still be handed out:
/// its lost-signal instant has not come yet.
fn fresh(engine: &Engine, sent: Instant, record: &LockRecord) -> bool {
    let start = engine.lease_start(sent);
    engine.clock.now() < start + engine.config.signal_after(record.lease_duration)
}

/// Whether our own record `r` carries what `spec` asks for, so it can be
/// handed to that waiter as it is.
fn made_for(r: &LockRecord, spec: &AcquireSpec) -> bool {
    r.lease_duration == spec.lease && r.payload == spec.payload
}

/// Sleeps until `until`, or until woken (a `try_acquire` waiter arrived, or
/// the client is shutting down).
async fn sleep_or_wake(engine: &Engine, wake: &Notify, until: Instant) {
    tokio::select! {
        biased; // deterministic: a simulation's seed replays exactly
        _ = engine.clock.sleep_until(until) => {}
        _ = wake.notified() => {}
    }
}

/// If the acquirer panics, frees the queue so a later acquire can start a
/// new one instead of waiting forever.
struct ResetOnPanic {
    engine: Arc<Engine>,
    name: String,
}

impl Drop for ResetOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let error = LockError::Internal {
                name: self.name.clone(),
                during: "acquire",
            };
            self.engine.slots.reset_after_panic(&self.name, error);
        }
    }
}
