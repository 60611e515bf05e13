//! The in-process state of every lock name: its local holder and the FIFO
//! queue of local waiters, changed only through the named transitions below.
//!
//! All slots of a client live in one map behind one mutex, held only for
//! short, non-async sections. Invariant, kept by [`Slots::settle`] at the end
//! of every transition: while a local holder exists, nobody polls the store
//! (the release hands over); while there is no local holder and the queue is
//! not empty, exactly one acquirer task polls for the queue. A transition
//! that needs a new acquirer says so by returning an [`AcquirerStart`]; the
//! engine spawns it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use super::handle::LeaseHandle;
use super::lease::LeaseShared;
use super::writes::OwnWrites;
use crate::{BackendError, LockError};

/// What a waiter asks for: the lease and payload its record must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AcquireSpec {
    pub(crate) lease: Duration,
    pub(crate) payload: Option<Bytes>,
    /// Renew the lease in the background (off for short-lived holders).
    pub(crate) heartbeat: bool,
}

/// What a waiter is told: a lease, "busy" (only for `try_acquire`), or an error.
pub(crate) type Grant = Result<Option<LeaseHandle>, LockError>;

/// One local waiter.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) id: u64,
    pub(crate) spec: AcquireSpec,
    /// `try_acquire`: one attempt at the store, then "busy".
    try_once: bool,
    pub(crate) tx: oneshot::Sender<Grant>,
}

impl Waiter {
    /// Answers the waiter (a waiter that left drops the answer, and with it
    /// any lease, which then releases itself).
    pub(crate) fn answer(self, grant: Grant) {
        drop(self.tx.send(grant));
    }
}

/// An acquirer the engine must spawn for `name`, seeded with this process's
/// acquisition writes of unknown outcome for it.
#[must_use = "the engine must spawn the acquirer"]
pub(crate) struct AcquirerStart {
    pub(crate) name: String,
    pub(crate) seed: OwnWrites,
}

/// The local state of one lock name.
#[derive(Debug, Default)]
struct SlotState {
    holder: Option<Arc<LeaseShared>>,
    waiters: VecDeque<Waiter>,
    acquirer_running: bool,
    /// Acquisition writes (handovers, abandoned attempts) of this process
    /// whose outcome is unknown. The next acquirer treats them as its own.
    ambiguous: OwnWrites,
    /// The holder seen last by the acquirer, for error messages.
    last_holder: Option<String>,
    /// The store error the acquirer is retrying, if any, for error messages.
    last_error: Option<BackendError>,
    /// When the acquirer's store call now in flight was sent.
    call_since: Option<Instant>,
    /// Wakes the acquirer from a poll or backoff sleep: a `try_acquire`
    /// waiter wants its answer now, or the client is shutting down.
    wake: Arc<Notify>,
}

impl SlotState {
    fn prune(&mut self) {
        self.waiters.retain(|w| !w.tx.is_closed());
    }

    fn fail_waiters(&mut self, only_tries: bool, make: impl Fn() -> Grant) {
        let (fail, keep): (Vec<_>, Vec<_>) = self
            .waiters
            .drain(..)
            .partition(|w| w.try_once || !only_tries);
        self.waiters = keep.into();
        for w in fail {
            w.answer(make());
        }
    }

    fn is_idle(&self) -> bool {
        self.holder.is_none()
            && self.waiters.is_empty()
            && !self.acquirer_running
            && self.ambiguous.is_empty()
    }
}

/// Every slot of a client.
#[derive(Debug, Default)]
pub(crate) struct Slots(Mutex<HashMap<String, SlotState>>);

/// What [`Slots::enqueue`] did.
pub(crate) enum Enqueued {
    /// Answered at once (a `try_acquire` behind a local holder or waiter).
    Answered,
    /// Queued; maybe an acquirer to start.
    Queued(Option<AcquirerStart>),
}

impl Slots {
    fn map(&self) -> MutexGuard<'_, HashMap<String, SlotState>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the invariant for `name` after a change: starts an acquirer if
    /// the queue needs one, or drops a slot with nothing in it.
    fn settle(map: &mut HashMap<String, SlotState>, name: &str) -> Option<AcquirerStart> {
        let state = map.get_mut(name)?;
        state.prune();
        if state.holder.is_none() && !state.waiters.is_empty() && !state.acquirer_running {
            state.acquirer_running = true;
            return Some(AcquirerStart {
                name: name.to_owned(),
                seed: std::mem::take(&mut state.ambiguous),
            });
        }
        if state.is_idle() {
            map.remove(name);
        }
        None
    }

    /// Queues a waiter. A `try_acquire` behind a local holder or waiter is
    /// answered "busy" at once; one queued behind a running acquirer wakes it.
    pub(crate) fn enqueue(&self, name: &str, waiter: Waiter) -> Enqueued {
        let mut map = self.map();
        let state = map.entry(name.to_owned()).or_default();
        state.prune();
        if waiter.try_once && (state.holder.is_some() || !state.waiters.is_empty()) {
            waiter.answer(Ok(None));
            return Enqueued::Answered;
        }
        if waiter.try_once && state.acquirer_running {
            // The acquirer may be asleep until its next poll: the answer
            // should come after one attempt, not after that.
            state.wake.notify_one();
        }
        state.waiters.push_back(waiter);
        Enqueued::Queued(Self::settle(&mut map, name))
    }

    /// Whether `name`'s acquirer runs for nobody: every waiter left.
    pub(crate) fn has_no_live_waiter(&self, name: &str) -> bool {
        let mut map = self.map();
        let Some(state) = map.get_mut(name) else {
            return false;
        };
        state.prune();
        state.acquirer_running && state.waiters.is_empty()
    }

    /// The acquirer of `name`'s wake-up signal.
    pub(crate) fn wake_signal(&self, name: &str) -> Option<Arc<Notify>> {
        self.map().get(name).map(|s| s.wake.clone())
    }

    /// The first live waiter of `name`; or `None` after stopping the acquirer
    /// (no waiters left, or `closed`), which hands `uncertain` on to the next.
    pub(crate) fn head(
        &self,
        name: &str,
        closed: bool,
        uncertain: &OwnWrites,
    ) -> Result<(u64, AcquireSpec), Option<AcquirerStart>> {
        let mut map = self.map();
        let Some(state) = map.get_mut(name) else {
            return Err(None);
        };
        if closed {
            state.fail_waiters(false, || Err(LockError::ShutDown));
        }
        state.prune();
        if let Some(w) = state.waiters.front() {
            return Ok((w.id, w.spec.clone()));
        }
        state.ambiguous.extend(uncertain);
        state.acquirer_running = false;
        Err(Self::settle(&mut map, name))
    }

    /// The acquirer won the lock: `lease` is the local holder, the acquirer
    /// stops, and the waiter it was won for is popped if still first with the
    /// same spec (else the lease goes to nobody and releases or hands over).
    pub(crate) fn grant(
        &self,
        lease: &Arc<LeaseShared>,
        waiter_id: u64,
        spec: &AcquireSpec,
    ) -> Option<Waiter> {
        let mut map = self.map();
        let state = map.entry(lease.name.clone()).or_default();
        state.acquirer_running = false;
        state.holder = Some(lease.clone());
        state.prune();
        match state.waiters.front() {
            Some(w) if w.id == waiter_id && w.spec == *spec => state.waiters.pop_front(),
            _ => None,
        }
    }

    /// Reserves every name of `names` for a transaction that takes them at
    /// once: only if no name has a local holder, waiter, acquirer or write
    /// of unknown outcome (else nothing is reserved and `false`). While
    /// reserved, a name counts as having an acquirer: local waiters queue
    /// behind the transaction, and nobody polls.
    pub(crate) fn reserve(&self, names: &[String]) -> bool {
        let mut map = self.map();
        let free = names.iter().all(|n| {
            map.get_mut(n).is_none_or(|s| {
                s.prune();
                s.is_idle()
            })
        });
        if free {
            for n in names {
                map.entry(n.clone()).or_default().acquirer_running = true;
            }
        }
        free
    }

    /// Ends `name`'s reservation: `lease` (the transaction's) becomes the
    /// local holder, or, if the transaction did not take the name, the
    /// writes of unknown outcome are remembered and the local queue polls.
    pub(crate) fn end_reservation(
        &self,
        name: &str,
        lease: Option<&Arc<LeaseShared>>,
        ambiguous: &OwnWrites,
    ) -> Option<AcquirerStart> {
        let mut map = self.map();
        let state = map.entry(name.to_owned()).or_default();
        state.acquirer_running = false;
        if let Some(lease) = lease {
            state.holder = Some(lease.clone());
            // A `try_acquire` that queued behind the reservation gets its
            // "busy" now, as it would have behind a holder.
            state.fail_waiters(true, || Ok(None));
        }
        state.ambiguous.extend(ambiguous);
        Self::settle(&mut map, name)
    }

    /// A handover made `lease` the local holder.
    pub(crate) fn hand_over(&self, lease: &Arc<LeaseShared>) {
        self.map().entry(lease.name.clone()).or_default().holder = Some(lease.clone());
    }

    /// Takes the first live waiter of `name`, for a handover.
    pub(crate) fn pop_waiter(&self, name: &str) -> Option<Waiter> {
        let mut map = self.map();
        let state = map.get_mut(name)?;
        state.prune();
        state.waiters.pop_front()
    }

    /// `lease` no longer holds `name` (released, lost, detached): clears it
    /// as the holder, puts a popped waiter back at the head, remembers
    /// acquisition writes of unknown outcome, and lets the queue poll.
    pub(crate) fn clear_holder(
        &self,
        name: &str,
        lease_id: u64,
        requeue: Option<Waiter>,
        ambiguous: &OwnWrites,
    ) -> Option<AcquirerStart> {
        let mut map = self.map();
        let state = map.entry(name.to_owned()).or_default();
        if state.holder.as_ref().is_some_and(|h| h.id == lease_id) {
            state.holder = None;
        }
        state.ambiguous.extend(ambiguous);
        if let Some(w) = requeue {
            state.waiters.push_front(w);
        }
        Self::settle(&mut map, name)
    }

    /// A store error retrying cannot fix: every waiter of `name` gets it and
    /// the acquirer stops.
    pub(crate) fn fail_all(
        &self,
        name: &str,
        uncertain: &OwnWrites,
        make: impl Fn() -> LockError,
    ) -> Option<AcquirerStart> {
        let mut map = self.map();
        let state = map.get_mut(name)?;
        state.ambiguous.extend(uncertain);
        state.fail_waiters(false, || Err(make()));
        state.acquirer_running = false;
        Self::settle(&mut map, name)
    }

    /// `try_acquire` waiters get their answer after one attempt: busy, or the
    /// store's error.
    pub(crate) fn answer_tries(&self, name: &str, error: Option<&LockError>) {
        if let Some(state) = self.map().get_mut(name) {
            state.fail_waiters(true, || match error {
                None => Ok(None),
                Some(e) => Err(e.clone()),
            });
        }
    }

    /// Every waiter of every name gets `ShutDown`, and every acquirer wakes.
    pub(crate) fn shut_down(&self) {
        for state in self.map().values_mut() {
            state.fail_waiters(false, || Err(LockError::ShutDown));
            state.wake.notify_one();
        }
    }

    /// Notes who holds `name` now, and the store error being retried (or
    /// none), for the messages of waiters that give up.
    pub(crate) fn note(&self, name: &str, holder: Option<&str>, error: Option<&BackendError>) {
        if let Some(state) = self.map().get_mut(name) {
            if let Some(h) = holder {
                if state.last_holder.as_deref() != Some(h) {
                    state.last_holder = Some(h.to_owned());
                }
            }
            state.last_error = error.cloned();
        }
    }

    /// Notes that the acquirer of `name` sent a store call at `at` (`None`:
    /// it was answered or given up).
    pub(crate) fn note_call(&self, name: &str, at: Option<Instant>) {
        if let Some(state) = self.map().get_mut(name) {
            state.call_since = at;
        }
    }

    /// The last holder and store error seen while waiting for `name`, as of
    /// `now`: a store call unanswered for over a second counts as an error.
    pub(crate) fn wait_info(
        &self,
        name: &str,
        now: Instant,
    ) -> (Option<String>, Option<BackendError>) {
        let map = self.map();
        let Some(s) = map.get(name) else {
            return (None, None);
        };
        let silent = s
            .call_since
            .map(|at| now.saturating_duration_since(at))
            .filter(|d| *d >= Duration::from_secs(1));
        let error = match (&s.last_error, silent) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(d)) => Some(BackendError::new(
                crate::BackendErrorKind::Unavailable,
                format!("the store has not answered a request sent {d:.1?} ago"),
            )),
            (None, None) => None,
        };
        (s.last_holder.clone(), error)
    }

    /// Names with a local holder, sorted.
    pub(crate) fn held_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .map()
            .iter()
            .filter(|(_, s)| s.holder.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// After an acquirer panicked: the queue is freed with `error`, so a
    /// later acquire starts a new acquirer instead of waiting forever.
    pub(crate) fn reset_after_panic(&self, name: &str, error: LockError) {
        if let Some(state) = self.map().get_mut(name) {
            state.acquirer_running = false;
            state.fail_waiters(false, || Err(error.clone()));
        }
    }
}

impl Waiter {
    /// A waiter for `spec`; `try_once` answers after one attempt.
    pub(crate) fn new(
        id: u64,
        spec: AcquireSpec,
        try_once: bool,
    ) -> (Self, oneshot::Receiver<Grant>) {
        let (tx, rx) = oneshot::channel();
        (
            Waiter {
                id,
                spec,
                try_once,
                tx,
            },
            rx,
        )
    }
}
