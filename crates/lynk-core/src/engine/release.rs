//! Releasing a lease: a handover to the next local waiter in one write, or a
//! release of the record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::lease::{LeaseCore, LeaseShared, ReleaseStart};
use super::slots::Waiter;
use super::writes::OwnWrites;
use super::Engine;
use crate::metrics::Metrics;
use crate::{
    BackendError, BackendErrorKind, Condition, LockError, LockRecord, LostReason, QueueEntry,
    ReleaseMode, WriteError,
};

/// Releases the lease behind a guard (by `release()` or on drop). A lost
/// lease is still released if the record is still ours, and reported as lost.
/// If a release of this lease is already running (a shutdown's), waits for
/// its outcome instead.
pub(crate) async fn release_guard(
    engine: &Arc<Engine>,
    lease: Arc<LeaseShared>,
) -> Result<(), LockError> {
    let result = match lease.begin_release(None) {
        ReleaseStart::Started { lost } => run_release(engine, &lease, lost.is_none()).await,
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
    engine: &Arc<Engine>,
    lease: &Arc<LeaseShared>,
    handover: bool,
) -> Result<(), LockError> {
    let span = tracing::debug_span!("lynk.release", lock = %lease.name, token = %lease.token);
    let result = release_inner(engine, lease.clone(), handover)
        .instrument(span)
        .await;
    lease.finish_release(result.clone());
    engine.forget_lease(lease.id);
    result
}

enum Outcome {
    HandedOver(LockRecord, Instant),
    /// Granted to the first waiter of the store's queue (`None`: found
    /// applied after a lost response).
    Granted(Option<QueueEntry>),
    Released,
}

/// What one attempt of a release came to.
enum Step {
    Done(Outcome),
    /// A heartbeat of unknown outcome turned out to have applied: the lease
    /// was renewed and the release goes on from its new version.
    Again,
    /// The store failed; retried while time remains.
    Failed(BackendError),
    /// The release ends with this error.
    Error(LockError),
}

/// One release (or handover) in progress.
struct Releasing<'a> {
    engine: &'a Arc<Engine>,
    lease: &'a Arc<LeaseShared>,
    /// The whole release, retries included, ends by here.
    deadline: Instant,
    call_limit: Duration,
    /// The local waiter being handed the lock, if any.
    waiter: Option<Waiter>,
    /// This release's own attempts; `LeaseCore::pending` holds only heartbeats'.
    mine: OwnWrites,
    /// Its grants to another process's waiter, apart: if the release fails,
    /// `mine` goes to this process's acquirer as its own writes, and a grant
    /// must never look like an acquisition of ours.
    grants: OwnWrites,
    /// An attempt went unanswered.
    unknown: bool,
}

async fn release_inner(
    engine: &Arc<Engine>,
    lease: Arc<LeaseShared>,
    handover: bool,
) -> Result<(), LockError> {
    let config = &engine.config;
    let mut r = Releasing {
        engine,
        lease: &lease,
        deadline: engine.clock.now() + config.release_timeout,
        call_limit: config.call_timeout_for(lease.lease),
        waiter: None,
        mine: OwnWrites::default(),
        grants: OwnWrites::default(),
        unknown: false,
    };
    // Wait for an in-flight heartbeat (itself bounded), but not past the
    // release's deadline.
    let core = tokio::select! {
        biased;
        core = lease.core.lock() => Some(core),
        _ = engine.clock.sleep_until(r.deadline) => None,
    };
    let Some(mut core) = core else {
        let source = BackendError::new(
            BackendErrorKind::OutcomeUnknown,
            "a heartbeat of the lease was still unanswered when the release gave up",
        );
        return r.fail(LockError::from_backend(&lease.name, "release", source));
    };
    if handover {
        r.waiter = engine.slots.pop_waiter(&lease.name);
    }
    let mut backoff = config.initial_backoff;
    loop {
        match r.attempt(&mut core).await {
            Step::Done(outcome) => {
                core.pending.clear();
                return r.complete(outcome);
            }
            Step::Again => {}
            Step::Failed(e) if e.is_retryable() && engine.clock.now() + backoff < r.deadline => {
                tracing::debug!(error = %e, "release failed, retrying");
                engine.clock.sleep(engine.jitter(backoff)).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
            Step::Failed(e) => {
                return r.fail(LockError::from_backend(&lease.name, "release", e));
            }
            Step::Error(e) => return r.fail(e),
        }
    }
}

impl Releasing<'_> {
    /// Sends one attempt and works out what its answer means.
    async fn attempt(&mut self, core: &mut LeaseCore) -> Step {
        let by = (self.engine.clock.now() + self.call_limit).min(self.deadline);
        let error = match self.send(core, by).await {
            Ok(outcome) => return Step::Done(outcome),
            Err(WriteError::Backend(e)) => {
                self.unknown |= e.kind() == BackendErrorKind::OutcomeUnknown;
                return Step::Failed(e);
            }
            Err(e) => e,
        };
        match self
            .engine
            .after_conflict(error, &self.lease.name, by)
            .await
        {
            Ok(current) => self.on_conflict(core, current),
            Err(e) => Step::Error(LockError::from_backend(&self.lease.name, "release", e)),
        }
    }

    /// The write of this attempt: a grant to the first waiter of the store's
    /// queue (before any local waiter, so no process can keep the lock from
    /// the others), a handover, a release marker, or a delete.
    async fn send(&mut self, core: &LeaseCore, by: Instant) -> Result<Outcome, WriteError> {
        let (engine, name) = (self.engine, &self.lease.name);
        let queues = engine.queues();
        let live = core.live_queue();
        if let Some(first) = live.entries.first().filter(|_| queues) {
            let condition = Condition::QueueIs {
                version: core.version.clone(),
                revision: core.queue.revision.clone(),
            };
            let out = engine.grant_request(name, condition, first, &live);
            self.grants.push(out.version, out.sent);
            engine.write_no_return_by(out.request, by).await?;
            return Ok(Outcome::Granted(Some(first.clone())));
        }
        // The queue to store (under a new revision), when a stale entry of
        // ours is to go.
        let clean = core.queue_needs_cleaning().then(|| crate::WaitQueue {
            revision: Some(crate::Version::random()),
            entries: live.entries.clone(),
        });
        match (&self.waiter, engine.config.release_mode) {
            (Some(w), _) => {
                let queue = queues.then(|| (&core.queue, clean.clone()));
                let out = engine
                    .handover_request(name, &core.version, queue, &w.spec, by)
                    .await;
                self.mine.push(out.version, out.sent);
                let sent = out.sent;
                let record = engine.write_by(out.request, by).await?;
                Ok(Outcome::HandedOver(record, sent))
            }
            (None, ReleaseMode::KeepRecord) => {
                let out = engine.release_request_setting(
                    name,
                    &core.version,
                    queues.then_some(&core.queue),
                    clean,
                );
                self.mine.push(out.version, out.sent);
                // The record written is not needed back: ask for none.
                engine.write_no_return_by(out.request, by).await?;
                Ok(Outcome::Released)
            }
            (None, ReleaseMode::Delete) => {
                engine.delete_by(name, &core.version, by).await?;
                Ok(Outcome::Released)
            }
        }
    }

    /// The condition failed over `current`.
    fn on_conflict(&mut self, core: &mut LeaseCore, current: Option<LockRecord>) -> Step {
        let Some(r) = current else {
            // Gone: the lock is free, which is what we wanted.
            return Step::Done(Outcome::Released);
        };
        if r.version == core.version {
            // Still ours: only the queue changed (a waiter queued since we
            // last looked). Release again, over the queue as it is now.
            core.queue = r.queue;
            return Step::Again;
        }
        if self.grants.sent_at(&r.version).is_some() {
            // This release's grant applied.
            Metrics::inc(&self.engine.metrics.ambiguous_resolved);
            return Step::Done(Outcome::Granted(None));
        }
        if let Some(at) = self.mine.sent_at(&r.version) {
            // One of this release's attempts applied.
            Metrics::inc(&self.engine.metrics.ambiguous_resolved);
            if self.waiter.is_some() && !r.released {
                return Step::Done(Outcome::HandedOver(r, at));
            }
            return Step::Done(Outcome::Released);
        }
        if let Some(from) = self.engine.adopt_heartbeat(core, &r) {
            // A heartbeat whose response was lost did apply: the lease was
            // renewed. Release from there.
            self.lease.set_valid_from(from);
            return Step::Again;
        }
        let later = r.fencing_token.is_some_and(|t| t > self.lease.token);
        if r.released && !later {
            // Released already (e.g. by an operator): the lock is free.
            return Step::Done(Outcome::Released);
        }
        // Someone else holds it now, or acquired and released it after us:
        // never a quiet success, since the two may have overlapped.
        Step::Error(held_by_another(&self.lease.name, self.unknown, r.host))
    }

    /// The release is confirmed: hand the lease to the waiter, or let the
    /// queue poll.
    fn complete(mut self, outcome: Outcome) -> Result<(), LockError> {
        let engine = self.engine;
        let config = &engine.config;
        match (outcome, self.waiter.take()) {
            (Outcome::HandedOver(record, sent), Some(w))
                if engine.clock.now()
                    >= engine.lease_start(sent) + config.signal_after(record.lease_duration) =>
            {
                // Handed over, but learnt too late to hand the lease out: the
                // waiter goes back to the head of the queue, and the acquirer
                // recognises the record as this process's own and takes it
                // over afresh.
                Metrics::inc(&engine.metrics.releases);
                let own = OwnWrites::one(record.version, sent);
                engine.clear_holder(self.lease, Some(w), &own);
            }
            (Outcome::HandedOver(record, sent), Some(w)) => {
                Metrics::inc(&engine.metrics.handovers);
                Metrics::inc(&engine.metrics.acquired);
                tracing::debug!(token = ?record.fencing_token, "handed over to a local waiter");
                let next = engine.new_lease(&record, sent, self.lease.token, w.spec.heartbeat);
                engine.slots.hand_over(&next);
                // If the waiter gave up meanwhile, the lease comes back and is
                // dropped, which releases (or hands over) again.
                engine.deliver(next, Some(w));
            }
            (Outcome::Granted(to), waiter) => {
                Metrics::inc(&engine.metrics.releases);
                Metrics::inc(&engine.metrics.grants);
                tracing::debug!(to = ?to.as_ref().map(|e| &e.host), "granted to the first queued waiter");
                if let Some(to) = &to {
                    engine.send_wake(&self.lease.name, to);
                }
                // A local waiter goes back to the head of this process's
                // queue, and its acquirer queues in the store.
                engine.clear_holder(self.lease, waiter, &OwnWrites::default());
            }
            // Released, or the record vanished under a handover: a popped
            // waiter goes back to the head of the queue and polls.
            (_, waiter) => {
                Metrics::inc(&engine.metrics.releases);
                engine.clear_holder(self.lease, waiter, &OwnWrites::default());
            }
        }
        Ok(())
    }

    /// The release ends with `error`: the lease is no longer the holder, a
    /// popped waiter goes back to the head, and handover writes of unknown
    /// outcome are remembered as the process's own.
    fn fail(mut self, error: LockError) -> Result<(), LockError> {
        self.free_slot();
        Err(error)
    }

    /// Clears the lease as the slot's holder, putting a popped waiter back
    /// with this release's handover writes as the process's own.
    fn free_slot(&mut self) {
        let waiter = self.waiter.take();
        let own = if waiter.is_some() {
            std::mem::take(&mut self.mine)
        } else {
            OwnWrites::default()
        };
        self.engine.clear_holder(self.lease, waiter, &own);
    }
}

impl Drop for Releasing<'_> {
    /// If the release panics (a backend bug), frees the lock's slot as a
    /// failed release would, with the popped waiter put back, and publishes
    /// the failure, so neither this client's later acquires of the name nor
    /// a shutdown waiting for the outcome wait for ever.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        self.free_slot();
        self.lease.finish_release(Err(LockError::Internal {
            name: self.lease.name.clone(),
            during: "release",
        }));
        self.engine.forget_lease(self.lease.id);
    }
}

/// The error of a release that found the record held by `host`. With an
/// attempt of unknown outcome behind it, the release may have applied before
/// that holder acquired; without one, the lock was taken from us first.
fn held_by_another(name: &str, unknown: bool, host: String) -> LockError {
    if unknown {
        let source = BackendError::new(
            BackendErrorKind::OutcomeUnknown,
            format!(
                "the lock is now held by {host}: an earlier attempt of this release may have applied before they acquired it, or the lock was taken from this holder before its release"
            ),
        );
        return LockError::from_backend(name, "release", source);
    }
    LockError::Lost {
        name: name.to_owned(),
        reason: LostReason::Stolen { by: Some(host) },
    }
}
