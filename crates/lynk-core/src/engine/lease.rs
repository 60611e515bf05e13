//! The state of one held lease, shared by its guard, the heartbeat keeper and
//! the release path.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::writes::OwnWrites;
use crate::{FencingToken, LockError, LockRecord, LostReason, Version, WaitQueue};

/// The part of a lease that changes with every write. Heartbeats and releases
/// take this lock around their write, so exactly one write per lease is in
/// flight and each is conditioned on the version the previous one stored.
#[derive(Debug)]
pub(crate) struct LeaseCore {
    /// The version the store holds for us, as far as we know.
    pub(crate) version: Version,
    /// Heartbeats whose outcome is not known yet. If the store turns out to
    /// hold one of them, that write applied and the lease is valid from its
    /// send instant.
    pub(crate) pending: OwnWrites,
    /// The store's wait queue as the last write's answer showed it: a
    /// release grants the lock to its first entry.
    pub(crate) queue: WaitQueue,
    /// This process's own entry, left in the stored queue when it acquired
    /// by a write that kept the queue (a free lock): dead now (its acquirer
    /// stopped), so the next write that sets the queue drops it, and a
    /// release never grants to it.
    pub(crate) stale_entry: Option<String>,
}

impl LeaseCore {
    /// The stored queue without this process's stale entry.
    pub(crate) fn live_queue(&self) -> WaitQueue {
        match &self.stale_entry {
            Some(id) if self.queue.position(id).is_some() => WaitQueue {
                revision: self.queue.revision.clone(),
                entries: self
                    .queue
                    .entries
                    .iter()
                    .filter(|e| &e.id != id)
                    .cloned()
                    .collect(),
            },
            _ => self.queue.clone(),
        }
    }

    /// Whether the stored queue holds an entry to drop.
    pub(crate) fn queue_needs_cleaning(&self) -> bool {
        self.stale_entry
            .as_ref()
            .is_some_and(|id| self.queue.position(id).is_some())
    }
}

/// Where a lease is in its life. Every transition happens under one mutex,
/// so the keeper's lost signal and a release never both act on one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Held: the keeper renews it.
    Held,
    /// The lost signal fired; the guard has not released it yet.
    Lost,
    /// A release (or handover) of the record is running or has finished; its
    /// outcome is published on `released`.
    Releasing,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    lost_reason: Option<LostReason>,
}

/// What [`LeaseShared::begin_release`] found.
#[derive(Debug)]
pub(crate) enum ReleaseStart {
    /// The caller now owns the release. `lost` is the reason the lease was
    /// lost before (or, for a shutdown, as) the release began.
    Started { lost: Option<LostReason> },
    /// Another caller already releases it: wait for
    /// [`LeaseShared::release_outcome`].
    AlreadyStarted,
}

/// The published result of a lease's release: `Ok` when the store confirmed
/// it (or the record was no longer ours to release), else why not.
pub(crate) type ReleaseOutcome = Result<(), LockError>;

/// One held lease.
#[derive(Debug)]
pub(crate) struct LeaseShared {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) token: FencingToken,
    pub(crate) lease: Duration,
    /// The payload every heartbeat writes: the acquisition's, until
    /// [`Engine::set_payload`](super::Engine::set_payload) replaces it. Changed
    /// only under [`core`](LeaseShared::core)'s lock, which every heartbeat
    /// holds while it writes, so a heartbeat never carries a payload older
    /// than the last one stored by a payload change.
    payload: Mutex<Option<Bytes>>,
    /// Whether the keeper renews this lease (it always fires the lost signal).
    pub(crate) heartbeat: bool,
    pub(crate) core: tokio::sync::Mutex<LeaseCore>,
    /// Send instant of the last write known to have applied: the lease is
    /// valid from here.
    valid_from: Mutex<Instant>,
    /// Fired once when the lease is lost (never on a clean release).
    pub(crate) lost: CancellationToken,
    state: Mutex<State>,
    /// Cancelled when the lease ends, by release or loss.
    pub(crate) ended_signal: CancellationToken,
    /// The release's outcome, once known.
    released: watch::Sender<Option<ReleaseOutcome>>,
}

impl LeaseShared {
    pub(crate) fn new(
        id: u64,
        record: &LockRecord,
        sent_at: Instant,
        fallback_token: FencingToken,
        heartbeat: bool,
    ) -> Self {
        LeaseShared {
            id,
            name: record.key.clone(),
            token: record.fencing_token.unwrap_or(fallback_token),
            lease: record.lease_duration,
            payload: Mutex::new(record.payload.clone()),
            heartbeat,
            core: tokio::sync::Mutex::new(LeaseCore {
                version: record.version.clone(),
                pending: OwnWrites::default(),
                queue: record.queue.clone(),
                stale_entry: None,
            }),
            valid_from: Mutex::new(sent_at),
            lost: CancellationToken::new(),
            state: Mutex::new(State {
                phase: Phase::Held,
                lost_reason: None,
            }),
            ended_signal: CancellationToken::new(),
            released: watch::Sender::new(None),
        }
    }

    /// The payload heartbeats write now.
    pub(crate) fn payload(&self) -> Option<Bytes> {
        self.payload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the payload heartbeats write. Call only while holding
    /// [`core`](LeaseShared::core)'s lock (see the field).
    pub(super) fn replace_payload(&self, payload: Option<Bytes>) {
        *self.payload.lock().unwrap_or_else(|e| e.into_inner()) = payload;
    }

    pub(crate) fn valid_from(&self) -> Instant {
        *self.valid_from.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_valid_from(&self, at: Instant) {
        let mut v = self.valid_from.lock().unwrap_or_else(|e| e.into_inner());
        if at > *v {
            *v = at;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `true` once the lease is no longer held: lost, or being released.
    pub(crate) fn is_ended(&self) -> bool {
        self.state().phase != Phase::Held
    }

    /// Marks a held lease lost and fires its signal. Returns `false`, doing
    /// nothing, if it was already lost or a release has begun (a lease being
    /// released cleanly is not lost).
    pub(crate) fn mark_lost(&self, reason: LostReason) -> bool {
        let mut state = self.state();
        if state.phase != Phase::Held {
            return false;
        }
        state.phase = Phase::Lost;
        state.lost_reason = Some(reason);
        drop(state);
        self.lost.cancel();
        self.ended_signal.cancel();
        true
    }

    pub(crate) fn lost_reason(&self) -> Option<LostReason> {
        self.state().lost_reason.clone()
    }

    /// Claims the release of the record. With `lose_as`, a lease still held
    /// is first marked lost for that reason (a shutdown tells the work under
    /// it to stop before the release is written).
    pub(crate) fn begin_release(&self, lose_as: Option<LostReason>) -> ReleaseStart {
        let mut state = self.state();
        match state.phase {
            Phase::Releasing => return ReleaseStart::AlreadyStarted,
            Phase::Held => {
                if let Some(reason) = lose_as {
                    state.lost_reason = Some(reason);
                    self.lost.cancel();
                }
            }
            Phase::Lost => {}
        }
        state.phase = Phase::Releasing;
        let lost = state.lost_reason.clone();
        drop(state);
        self.ended_signal.cancel();
        ReleaseStart::Started { lost }
    }

    /// Publishes the release's outcome to everyone waiting for it.
    pub(crate) fn finish_release(&self, outcome: ReleaseOutcome) {
        self.released.send_replace(Some(outcome));
    }

    /// The release's outcome once it is known.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn release_outcome(&self) -> ReleaseOutcome {
        let mut rx = self.released.subscribe();
        let outcome = match rx.wait_for(|o| o.is_some()).await {
            Ok(o) => o.clone().unwrap_or(Ok(())),
            Err(_) => Err(LockError::ShutDown),
        };
        outcome
    }

    /// The release's outcome if it is known already.
    pub(crate) fn release_outcome_now(&self) -> Option<ReleaseOutcome> {
        self.released.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lease() -> Arc<LeaseShared> {
        let record = LockRecord {
            key: "x".into(),
            version: Version::random(),
            lease_duration: Duration::from_secs(1),
            host: "h".into(),
            fencing_token: Some(FencingToken::new(1)),
            payload: None,
            released: false,
            queue: Default::default(),
            granted_to: None,
            holder_detail: None,
        };
        #[allow(clippy::disallowed_methods)] // a fixed instant; nothing is timed
        let now = Instant::now();
        Arc::new(LeaseShared::new(
            1,
            &record,
            now,
            FencingToken::new(0),
            true,
        ))
    }

    /// Finding 6: the keeper's lost signal and a release race on two
    /// threads. Exactly one of them acts: a release that began first is a
    /// clean release (no lost signal), a loss that came first is reported to
    /// the release as a loss.
    #[test]
    fn loss_and_release_never_both_act_on_one_lease() {
        for _ in 0..2_000 {
            let l = lease();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let (l1, b1) = (l.clone(), barrier.clone());
            let loser = std::thread::spawn(move || {
                b1.wait();
                l1.mark_lost(LostReason::HeartbeatsFailed { last_error: None })
            });
            barrier.wait();
            let start = l.begin_release(None);
            let lost_won = loser.join().unwrap();
            match start {
                ReleaseStart::Started { lost: None } => {
                    assert!(!lost_won, "a clean release and a loss both acted");
                    assert!(
                        !l.lost.is_cancelled(),
                        "lost signal fired on a clean release"
                    );
                }
                ReleaseStart::Started { lost: Some(_) } => {
                    assert!(lost_won);
                    assert!(l.lost.is_cancelled());
                }
                ReleaseStart::AlreadyStarted => panic!("nobody else released"),
            }
            assert!(l.is_ended());
            assert!(matches!(
                l.begin_release(None),
                ReleaseStart::AlreadyStarted
            ));
        }
    }
}
