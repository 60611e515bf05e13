//! The state of one held lease, shared by its guard, the heartbeat keeper and
//! the release path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::{FencingToken, LockRecord, LostReason, Version};

/// The part of a lease that changes with every write. Heartbeats and releases
/// take this lock around their write, so exactly one write per lease is in
/// flight and each is conditioned on the version the previous one stored.
#[derive(Debug)]
pub(crate) struct LeaseCore {
    /// The version the store holds for us, as far as we know.
    pub(crate) version: Version,
    /// Versions of writes whose outcome is not known yet, with the instant
    /// each was sent. If the store turns out to hold one of them, that write
    /// applied and the lease is valid from its send instant.
    pub(crate) pending: Vec<(Version, Instant)>,
}

impl LeaseCore {
    /// The send instant of `version` if it is one of our pending writes.
    pub(crate) fn pending_sent_at(&self, version: &Version) -> Option<Instant> {
        self.pending
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, at)| *at)
    }
}

/// One held lease.
#[derive(Debug)]
pub(crate) struct LeaseShared {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) token: FencingToken,
    pub(crate) lease: Duration,
    pub(crate) payload: Option<Bytes>,
    /// Whether the keeper renews this lease (it always fires the lost signal).
    pub(crate) heartbeat: bool,
    pub(crate) core: tokio::sync::Mutex<LeaseCore>,
    /// Send instant of the last write known to have applied: the lease is
    /// valid from here.
    valid_from: Mutex<Instant>,
    /// Fired once when the lease is lost (never on a clean release).
    pub(crate) lost: CancellationToken,
    lost_reason: OnceLock<LostReason>,
    /// No more heartbeats: the lease was released or lost.
    ended: AtomicBool,
    /// Cancelled when the lease ends, by release or loss.
    pub(crate) ended_signal: CancellationToken,
    /// A release of the record has started; later releases are no-ops.
    release_started: AtomicBool,
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
            payload: record.payload.clone(),
            heartbeat,
            core: tokio::sync::Mutex::new(LeaseCore {
                version: record.version.clone(),
                pending: Vec::new(),
            }),
            valid_from: Mutex::new(sent_at),
            lost: CancellationToken::new(),
            lost_reason: OnceLock::new(),
            ended: AtomicBool::new(false),
            ended_signal: CancellationToken::new(),
            release_started: AtomicBool::new(false),
        }
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

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.ended_signal.cancel();
    }

    /// Marks the lease lost and fires the signal. Returns `false` if it was
    /// already lost.
    pub(crate) fn mark_lost(&self, reason: LostReason) -> bool {
        self.end();
        let first = self.lost_reason.set(reason).is_ok();
        self.lost.cancel();
        first
    }

    pub(crate) fn lost_reason(&self) -> Option<&LostReason> {
        self.lost_reason.get()
    }

    /// Claims the right to release the record; `false` if a release already ran.
    pub(crate) fn start_release(&self) -> bool {
        self.end();
        !self.release_started.swap(true, Ordering::AcqRel)
    }
}
