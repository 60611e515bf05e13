//! The acquirer: the one task per lock name that works the store on behalf of
//! this process's queue of waiters.
//!
//! It sends a conditional write when the lock looks free, reads the record at
//! the poll schedule's gaps ([`PollSchedule`]) while someone else holds it,
//! and takes over once it has seen the *same* version for
//! `lease × (1 + drift) + lock_delay`, timed on its own monotonic clock from
//! after the response that showed the version.
//!
//! Where the store keeps a wait queue, the acquirer also stands in it for this
//! process: its first poll appends its entry (a queue write, which answers
//! with the record like a read), and a grant to its entry is confirmed at once
//! by an acquisition conditioned on the grant's version. A stale lease or
//! grant (its holder or grantee vanished) is taken by the first waiter to see
//! it go stale, whatever its place in the queue: handing it to the first
//! waiter instead would cost that waiter's next poll, and the queue's order
//! is for releases, not for recovery. When its last local waiter leaves, the
//! acquirer takes its entry out (or passes a grant it was given on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::Instrument;

use super::poll::PollSchedule;
use super::slots::AcquireSpec;
use super::writes::OwnWrites;
use super::Engine;
use crate::metrics::Metrics;
use crate::{
    BackendError, BackendErrorKind, Condition, FencingToken, LockError, LockRecord, QueueEntry,
    QueueUpdate, Version, WriteError,
};

/// How many queue writes in a row may conflict before the acquirer waits for
/// its next poll (other waiters queueing at the same moment).
const QUICK_QUEUE_RETRIES: u32 = 4;

/// The longest queue a waiter joins. Every entry makes the record (and so
/// every write of it, heartbeats included) larger, by about 100 bytes; past
/// this, further waiters poll without a place, in no particular order.
pub(crate) const MAX_QUEUE_ENTRIES: usize = 64;

/// A record version this waiter has watched, and since when.
struct Observation {
    version: Version,
    since: Instant,
    lease: Duration,
}

enum Next {
    Write(Attempt),
    Read,
    /// Append this process's entry to the wait queue.
    Enqueue,
}

/// An acquisition write.
#[derive(Clone, Debug)]
struct Attempt {
    condition: Condition,
    queue: QueueUpdate,
}

impl Attempt {
    fn vacant() -> Self {
        Attempt::mine(Condition::Vacant, QueueUpdate::Keep)
    }

    fn mine(condition: Condition, queue: QueueUpdate) -> Self {
        Attempt { condition, queue }
    }
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
    /// The last record the store showed, for writes built on it.
    last: Option<LockRecord>,
    next: Next,
    backoff: Duration,
    waited: bool,
    schedule: PollSchedule,
    /// This process's entry in the store's wait queue, if the store keeps one.
    entry: Option<QueueEntry>,
    /// Queue writes that conflicted in a row.
    queue_conflicts: u32,
    /// When the last request (attempt, poll, queue write) was sent.
    sent: Instant,
    /// A queue write went unanswered: our entry may be stored although the
    /// last record seen does not show it.
    enqueue_uncertain: bool,
}

pub(crate) async fn run(engine: Arc<Engine>, name: String, seed: OwnWrites) {
    let _reset = ResetOnPanic {
        engine: engine.clone(),
        name: name.clone(),
    };
    let Some(wake) = engine.slots.wake_signal(&name) else {
        return;
    };
    let entry = engine.queues().then(|| QueueEntry {
        id: uuid::Uuid::new_v4().hyphenated().to_string(),
        host: engine.config.host_identifier.clone(),
        wake: engine.wake_address(),
        // Until the first enqueue sets the interval for the lease it sees.
        poll: Some(engine.config.poll_interval),
    });
    let engine_now = engine.clock.now();
    let mut acquirer = Acquirer {
        backoff: engine.config.initial_backoff,
        engine,
        name,
        wake,
        own: seed,
        uncertain: OwnWrites::default(),
        observed: None,
        last: None,
        next: Next::Write(Attempt::vacant()),
        waited: false,
        schedule: PollSchedule::default(),
        entry,
        queue_conflicts: 0,
        enqueue_uncertain: false,
        sent: engine_now,
    };
    while acquirer.step().await {}
    acquirer.leave().await;
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
                    // Nobody left to wait for: leave the store's queue first,
                    // so a successor does not find this entry ahead of it.
                    self.leave().await;
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
        self.sent = engine.clock.now();
        engine.slots.note_call(&self.name, Some(engine.clock.now()));
        let current = match std::mem::replace(&mut self.next, Next::Read) {
            Next::Write(attempt) => match self.write(attempt, &spec, by).await {
                Written::Granted(record, sent) => {
                    engine.slots.note_call(&self.name, None);
                    self.grant(waiter_id, &spec, record, sent);
                    return false;
                }
                Written::Stale(version) => {
                    engine.slots.note_call(&self.name, None);
                    self.next = Next::Write(Attempt::mine(
                        Condition::VersionIs(version),
                        QueueUpdate::Keep,
                    ));
                    return true;
                }
                Written::Current(current) => current,
            },
            Next::Read => {
                Metrics::inc(&engine.metrics.polls);
                engine.read_by(&self.name, by).await
            }
            Next::Enqueue => {
                Metrics::inc(&engine.metrics.polls);
                self.enqueue(by).await
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

    /// Appends this process's entry to the queue of the last record seen; the
    /// answer is the record, as a read's would be.
    async fn enqueue(&mut self, by: Instant) -> Result<Option<LockRecord>, BackendError> {
        let engine = self.engine.clone();
        let (Some(seen), Some(entry)) = (self.last.clone(), self.entry.as_mut()) else {
            return engine.read_by(&self.name, by).await;
        };
        // The entry says how often we read while queued: the poll interval
        // for the lease we see now (what we poll at anyway). Our sleeps are
        // capped at it (plus jitter) while we wait (`queued_gap`), so a grant
        // of three of them finds us reading, and a grant to us if we die
        // lasts no longer than this lock's polls, whatever our configured
        // interval.
        entry.poll = Some(advertised_poll(&engine, seen.lease_duration));
        let request = engine.queue_request(&seen, seen.queue.with(entry.clone()));
        match engine.write_queue_by(request, by).await {
            Ok(record) => {
                self.queue_conflicts = 0;
                Ok(Some(record))
            }
            Err(WriteError::ConditionFailed { current }) => {
                self.queue_conflicts += 1;
                engine.record_behind(current, &self.name, by).await
            }
            Err(WriteError::Backend(e)) => {
                self.enqueue_uncertain |= e.kind() == BackendErrorKind::OutcomeUnknown;
                Err(e)
            }
        }
    }

    /// Sends an acquisition write for `spec`.
    async fn write(&mut self, attempt: Attempt, spec: &AcquireSpec, by: Instant) -> Written {
        let engine = &self.engine;
        let takeover = self
            .observed
            .as_ref()
            .is_some_and(|o| o.takeover_due(engine));
        let out = engine.acquire_request(&self.name, attempt.condition, attempt.queue, spec);
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
                if self.last.as_ref().is_some_and(|r| self.granted_to_us(r)) {
                    Metrics::inc(&engine.metrics.confirmed_grants);
                    tracing::debug!(lock = %self.name, token = ?record.fencing_token, "confirmed a grant");
                } else if takeover {
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
            Some(r)
                if self
                    .entry
                    .as_ref()
                    .is_some_and(|e| r.queue.position(&e.id).is_some()) =>
            {
                // Free, and we are queued in it (a release that kept the
                // queue, such as an operator's): take it and leave the queue
                // in one write, so no dead entry of ours stays behind.
                let me = self.entry.as_ref().map_or("", |e| e.id.as_str());
                self.next = Next::Write(Attempt::mine(
                    Condition::QueueIs {
                        version: r.version.clone(),
                        revision: r.queue.revision.clone(),
                    },
                    QueueUpdate::Set(r.queue.without(me)),
                ));
                self.last = Some(r);
                return true;
            }
            _ => {
                self.next = Next::Write(Attempt::vacant());
                return true;
            }
        };
        // (A grant is never an acquisition of ours, even if it carries a
        // version this process wrote: a release's grant to another process.)
        if let Some(sent) = self
            .own
            .sent_at(&r.version)
            .filter(|_| r.granted_to.is_none())
        {
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
            self.next = Next::Write(Attempt::mine(
                Condition::VersionIs(r.version),
                QueueUpdate::Keep,
            ));
            return true;
        }
        if self.granted_to_us(&r) {
            // A releasing holder (or a waiter that saw a lease go stale)
            // granted us the lock: confirm it with our own write, whose send
            // starts our lease. Only we may write over a grant until it goes
            // stale.
            tracing::debug!(lock = %self.name, "granted the lock; confirming");
            self.next = Next::Write(Attempt::mine(
                Condition::VersionIs(r.version.clone()),
                QueueUpdate::Keep,
            ));
            self.last = Some(r);
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
        // Quick polls again for a new holder, unless others are queued (or
        // granted) ahead of us: it cannot be our turn before theirs.
        let first_in_line = match &self.entry {
            Some(e) => {
                r.queue.position(&e.id).is_none_or(|p| p == 0)
                    && r.granted_to.as_ref().is_none_or(|to| to == &e.id)
            }
            None => true,
        };
        self.schedule.observe(&r, first_in_line);
        let queued = self.queued_in(&r);
        self.last = Some(r);
        let Some(o) = self.observed.as_ref() else {
            return true;
        };
        if !queued && self.queue_conflicts > 0 && self.queue_conflicts <= QUICK_QUEUE_RETRIES {
            // Our entry lost a race with another queue write: retry on the
            // record that answered, without waiting, in place of the next
            // poll (so the race costs no extra request).
            self.schedule.next_gap(&engine.config, o.lease);
            self.next = self.retry_or_read();
            return true;
        }
        self.queue_conflicts = 0;
        let gap = self.schedule.next_gap(&engine.config, o.lease);
        // Gaps run from the last request's send, not its answer, so a slow
        // store does not stretch the quick polls by a round trip each.
        // Only the steady gaps are jittered (spreading many waiters' polls);
        // a quick poll comes on time, or it would miss the short critical
        // section it is for.
        let steady = gap >= engine.config.poll_interval_for(o.lease);
        let gap = if steady { engine.jitter(gap) } else { gap };
        let gap = self.queued_gap(gap);
        let poll_at = (self.sent + gap).max(now);
        let until = match o.takeover_at(&engine) {
            Some(takeover_at) if takeover_at <= poll_at => takeover_at,
            _ => poll_at,
        };
        sleep_or_wake(&engine, &self.wake, until).await;
        // Woken early (a try_acquire, a shutdown, a wake-up) or not: take
        // over only once it is due.
        self.next = self.retry_or_read();
        true
    }

    /// `gap` (jittered), but at most the poll interval our queue entry
    /// advertises with its largest jitter: a grant to us lasts three of
    /// those intervals, so no sleep of ours (a poll behind a holder with a
    /// longer lease than the one we queued on, a backoff after store errors)
    /// may outlast it. A jittered poll at the advertised interval is not cut.
    fn queued_gap(&self, gap: Duration) -> Duration {
        match self.entry.as_ref().and_then(|e| e.poll) {
            Some(poll) => gap.min(poll.mul_f64(super::MAX_JITTER)),
            None => gap,
        }
    }

    /// Whether `r` grants the lock to this process's queue entry.
    fn granted_to_us(&self, r: &LockRecord) -> bool {
        match (&self.entry, &r.granted_to) {
            (Some(e), Some(to)) => &e.id == to,
            _ => false,
        }
    }

    /// Whether this process needs no queue write on `r`: it keeps no queue,
    /// or its entry is in `r`'s.
    fn queued_in(&self, r: &LockRecord) -> bool {
        match &self.entry {
            Some(e) => r.queue.position(&e.id).is_some(),
            None => true,
        }
    }

    /// A store error retrying may fix: back off, then retry.
    async fn on_store_error(&mut self, e: BackendError) {
        let engine = self.engine.clone();
        tracing::debug!(lock = %self.name, error = %e, "store error while acquiring; backing off");
        engine.slots.note(&self.name, None, Some(&e));
        let error = LockError::from_backend(&self.name, "acquire", e);
        engine.slots.answer_tries(&self.name, Some(&error));
        let until = engine.clock.now() + self.queued_gap(engine.jitter(self.backoff));
        sleep_or_wake(&engine, &self.wake, until).await;
        self.backoff = (self.backoff * 2).min(engine.config.max_backoff);
        self.next = match self.observed {
            // Retry the write we were making (a new version each time), or
            // read again.
            Some(_) => self.retry_or_read(),
            None => Next::Write(Attempt::vacant()),
        };
    }

    /// A takeover of the observed version once it is due, else a queue write
    /// if this process is not queued yet, else a read.
    fn retry_or_read(&self) -> Next {
        match &self.observed {
            Some(o) if o.takeover_due(&self.engine) => Next::Write(self.takeover(&o.version)),
            _ => match &self.last {
                Some(r) if !self.queued_in(r) && r.queue.entries.len() < MAX_QUEUE_ENTRIES => {
                    Next::Enqueue
                }
                _ => Next::Read,
            },
        }
    }

    /// The write that ends a stale lease (or grant) of `version`: a takeover,
    /// which also takes this process's entry out of the queue (conditioned
    /// on the queue it saw, so no other entry is lost).
    fn takeover(&self, version: &Version) -> Attempt {
        match (&self.entry, &self.last) {
            (Some(entry), Some(r)) if r.queue.position(&entry.id).is_some() => Attempt::mine(
                Condition::QueueIs {
                    version: version.clone(),
                    revision: r.queue.revision.clone(),
                },
                QueueUpdate::Set(r.queue.without(&entry.id)),
            ),
            _ => Attempt::mine(Condition::VersionIs(version.clone()), QueueUpdate::Keep),
        }
    }

    /// This process stops waiting: takes its entry out of the store's queue,
    /// or passes on a grant it was given, in at most a few bounded writes.
    /// Best effort: an entry left behind is skipped when it is granted and
    /// the grant goes stale.
    async fn leave(&mut self) {
        let engine = self.engine.clone();
        let Some(entry) = self.entry.clone() else {
            return;
        };
        let Some(mut seen) = self.last.take() else {
            return;
        };
        let by = engine.clock.now() + engine.config.call_timeout_for(seen.lease_duration);
        if self.enqueue_uncertain && seen.queue.position(&entry.id).is_none() {
            // A queue write of unknown outcome may have stored our entry.
            match engine.read_by(&self.name, by).await {
                Ok(Some(r)) => seen = r,
                _ => return,
            }
        }
        for _ in 0..3 {
            if seen.released {
                return;
            }
            let out = if seen.granted_to.as_deref() == Some(entry.id.as_str()) {
                // Granted to us, and nobody here wants it: grant it to the
                // next waiter, or release it.
                let condition = Condition::QueueIs {
                    version: seen.version.clone(),
                    revision: seen.queue.revision.clone(),
                };
                let request = match seen.queue.entries.first() {
                    Some(next) => engine.grant_request(&self.name, condition, next, &seen.queue),
                    None => engine.release_request(&self.name, &seen.version, Some(&seen.queue)),
                };
                engine.write_by(request.request, by).await
            } else if seen.queue.position(&entry.id).is_some() {
                let request = engine.queue_request(&seen, seen.queue.without(&entry.id));
                engine.write_queue_by(request, by).await
            } else {
                return;
            };
            match out {
                Ok(_) => return,
                Err(WriteError::ConditionFailed { current }) => {
                    match engine.record_behind(current, &self.name, by).await {
                        Ok(Some(r)) => seen = r,
                        _ => return,
                    }
                }
                Err(WriteError::Backend(e)) => {
                    tracing::debug!(lock = %self.name, error = %e, "could not leave the wait queue; the entry will be skipped");
                    return;
                }
            }
        }
    }

    /// The lock is ours: make the lease and give it to the waiter it was won
    /// for. If that waiter left (or another is now first), dropping the lease
    /// releases or hands over to the right one.
    fn grant(&mut self, waiter_id: u64, spec: &AcquireSpec, record: LockRecord, sent: Instant) {
        // A takeover or a grant's confirmation took our entry out of the
        // queue; an acquisition of a free lock kept the queue, and the lease
        // drops our entry (dead once this task stops) at its next queue
        // write. Nothing to leave either way.
        self.last = None;
        let engine = &self.engine;
        Metrics::inc(&engine.metrics.acquired);
        let lease = engine.new_lease(&record, sent, FencingToken::new(0), spec.heartbeat);
        if let Some(entry) = &self.entry {
            if record.queue.position(&entry.id).is_some() {
                if let Ok(mut core) = lease.core.try_lock() {
                    core.stale_entry = Some(entry.id.clone());
                }
            }
        }
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

/// The poll interval a queue entry advertises, queued on a record of lease
/// `lease`: [`ClientConfig::poll_interval_for`](crate::ClientConfig::poll_interval_for)
/// that lease (the configured interval for a lease of zero, which says
/// nothing about how long anyone holds).
fn advertised_poll(engine: &Engine, lease: Duration) -> Duration {
    if lease.is_zero() {
        engine.config.poll_interval
    } else {
        engine.config.poll_interval_for(lease)
    }
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
