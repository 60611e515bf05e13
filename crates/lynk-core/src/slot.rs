//! The in-process state of one lock name: its local holder and the FIFO
//! queue of local waiters.
//!
//! All slots of a client live in one map behind one mutex, held only for
//! short, non-async sections. Invariant: while a local holder exists, nobody
//! polls the store (the release hands over); while there is no local holder
//! and the queue is not empty, exactly one acquirer task polls for the queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use crate::lease::LeaseShared;
use crate::{LockError, LockGuard, Version};

/// What a waiter asks for: the lease and payload its record must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AcquireSpec {
    pub(crate) lease: Duration,
    pub(crate) payload: Option<Bytes>,
    /// Renew the lease in the background (off for short-lived holders).
    pub(crate) heartbeat: bool,
}

/// What a waiter is told: a guard, "busy" (only for `try_acquire`), or an error.
pub(crate) type Grant = Result<Option<LockGuard>, LockError>;

/// One local waiter.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) id: u64,
    pub(crate) spec: AcquireSpec,
    /// `try_acquire`: one attempt at the store, then "busy".
    pub(crate) try_once: bool,
    pub(crate) tx: oneshot::Sender<Grant>,
}

/// The local state of one lock name.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    pub(crate) holder: Option<Arc<LeaseShared>>,
    pub(crate) waiters: VecDeque<Waiter>,
    pub(crate) acquirer_running: bool,
    /// Acquisition writes (handovers, abandoned attempts) of this process
    /// whose outcome is unknown, with the instant each was sent. The
    /// acquirer treats them as its own, valid from that instant.
    pub(crate) ambiguous: Vec<(Version, Instant)>,
    /// The holder seen last by the acquirer, for error messages.
    pub(crate) last_holder: Option<String>,
    /// The store error the acquirer is retrying, if any, for error messages.
    pub(crate) last_error: Option<String>,
    /// Wakes the acquirer from a poll or backoff sleep: a `try_acquire`
    /// waiter wants its answer now, or the client is shutting down.
    pub(crate) wake: Arc<Notify>,
}

impl SlotState {
    /// Answers every waiter with the error `make` builds, and wakes the
    /// acquirer so it stops.
    pub(crate) fn fail_all_waiters(&mut self, make: impl Fn() -> LockError) {
        for w in self.waiters.drain(..) {
            let _ = w.tx.send(Err(make()));
        }
        self.wake.notify_one();
    }

    /// Drops waiters whose callers gave up.
    pub(crate) fn prune(&mut self) {
        self.waiters.retain(|w| !w.tx.is_closed());
    }

    /// Remembers acquisition writes of unknown outcome (the newest 64).
    pub(crate) fn remember_ambiguous(&mut self, versions: &[(Version, Instant)]) {
        self.ambiguous.extend_from_slice(versions);
        let excess = self.ambiguous.len().saturating_sub(64);
        self.ambiguous.drain(..excess);
    }

    /// Nothing here: the slot can be removed from the map.
    pub(crate) fn is_idle(&self) -> bool {
        self.holder.is_none()
            && self.waiters.is_empty()
            && !self.acquirer_running
            && self.ambiguous.is_empty()
    }
}
