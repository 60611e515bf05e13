//! The guard of a held lock.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::engine::{LeaseHandle, LeaseShared};
use crate::{FencingToken, LockError, LostReason, Version};

/// Proof that this process holds a lock, while its lease lasts.
///
/// The client heartbeats the lease in the background. If heartbeats fail or
/// stall, or someone takes the lock over, the guard's **lost-lease signal**
/// fires before the lease's safe deadline: watch it with
/// [`lost`](LockGuard::lost), [`lost_token`](LockGuard::lost_token) or
/// [`run`](LockGuard::run), and stop touching the protected resource when it
/// fires. Pass [`fencing_token`](LockGuard::fencing_token) to the resource so
/// that it can refuse a write from a holder that did not notice in time.
///
/// Release with [`release`](LockGuard::release) to learn whether the release
/// was written. Dropping the guard also releases, in the background, and
/// hands the lock to the next waiter of this process if there is one.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    handle: LeaseHandle,
    /// The payload last set: the acquisition's, or the one given to
    /// [`set_payload`](LockGuard::set_payload) (kept here so `payload()`
    /// can lend it).
    payload: Option<Bytes>,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lease = self.lease();
        f.debug_struct("LockGuard")
            .field("name", &lease.name)
            .field("fencing_token", &lease.token)
            .field("lease", &lease.lease)
            .field("lost", &lease.lost_reason())
            .finish()
    }
}

impl LockGuard {
    pub(crate) fn new(handle: LeaseHandle) -> Self {
        let payload = handle.lease().payload();
        LockGuard { handle, payload }
    }

    fn lease(&self) -> &Arc<LeaseShared> {
        self.handle.lease()
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.lease().name
    }

    /// This acquisition's fencing token: higher than that of every earlier
    /// acquisition of the same lock name.
    pub fn fencing_token(&self) -> FencingToken {
        self.lease().token
    }

    /// The lease duration written into the record.
    pub fn lease_duration(&self) -> Duration {
        self.lease().lease
    }

    /// The payload of this holder's record: the one written with this
    /// acquisition, or the last one given to
    /// [`set_payload`](LockGuard::set_payload).
    pub fn payload(&self) -> Option<&Bytes> {
        self.payload.as_ref()
    }

    /// Replaces the payload in the stored record **without releasing the
    /// lock**: the fencing token, the lease and the queue of waiters stay as
    /// they are, and [`payload`](LockGuard::payload) returns the new payload
    /// from now on. For a leader that changes its address, or a holder that
    /// publishes its progress.
    ///
    /// The change is a heartbeat that carries the new payload: one write
    /// conditioned on the version this holder stored last, serialized with
    /// the background heartbeats (it waits for one in flight), and, like a
    /// heartbeat, it renews the lease. Every later heartbeat writes the new
    /// payload too.
    ///
    /// `Ok` means the store confirmed the new payload. Store errors are
    /// retried with backoff until [`ClientConfig::release_timeout`](crate::ClientConfig::release_timeout)
    /// or the lease's lost-signal instant, whichever comes first; then the
    /// error is returned, and the lock is still held: the heartbeats carry
    /// the new payload, so the store holds it after the next one that
    /// succeeds (call `set_payload` again to confirm). The payload never
    /// goes back to the old one. If another client's record is found
    /// instead of this holder's, the lease's lost signal fires and the
    /// result is [`LockError::Lost`]; a lease already lost gives `Lost` too.
    /// A payload over [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES) is
    /// refused with [`LockError::InvalidInput`] before anything changes.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the change runs in a task of its own and completes even
    /// if this future is dropped; the new payload is this guard's payload
    /// from the moment the call starts.
    pub async fn set_payload(&mut self, payload: impl Into<Bytes>) -> Result<(), LockError> {
        let payload = payload.into();
        crate::config::validate_payload(&payload)?;
        let previous = self.payload.replace(payload.clone());
        let out = self.handle.set_payload(Some(payload)).await;
        if let Err(LockError::Backend { source, .. }) = &out {
            if !source.is_retryable() && source.kind() != crate::BackendErrorKind::OutcomeUnknown {
                // Refused by the store: the old payload stays (see engine/payload.rs).
                self.payload = previous;
            }
        }
        out
    }

    /// The instant (on the client's clock) after which this holder can no
    /// longer be sure it holds the lock, unless a heartbeat succeeds first:
    /// the send time of the last applied write plus `lease × (1 − drift)`.
    ///
    /// A process that holds a lock without heartbeats (e.g. a short-lived
    /// function) should finish its work before this instant.
    pub fn safe_deadline(&self) -> Instant {
        self.watch().safe_deadline()
    }

    /// A cheap, cloneable view of this lease for other tasks: its lost-lease
    /// signal and safe deadline, without the right to release.
    pub fn watch(&self) -> LeaseWatch {
        LeaseWatch {
            lease: self.lease().clone(),
            safe_for: self.handle.engine().config.safe_for(self.lease().lease),
        }
    }

    /// `true` once the lease is lost. Check it before each step of long work.
    pub fn is_lost(&self) -> bool {
        is_lost(self.lease())
    }

    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        lost_reason(self.lease())
    }

    /// A future that completes when the lease is lost.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.lease().lost.cancelled()
    }

    /// A cancellation token cancelled when the lease is lost. Hand it to tasks
    /// that must stop when the lock is gone. Cancelling it yourself does not
    /// release the lock.
    pub fn lost_token(&self) -> CancellationToken {
        self.lease().lost.child_token()
    }

    /// Runs `work` while the lease holds. If the lease is lost first, `work` is
    /// dropped (cancelled) and the result is [`LockError::Lost`].
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as `work`.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LockError> {
        tokio::select! {
            biased;
            _ = self.lease().lost.cancelled() => Err(self.lost_error()),
            out = work => Ok(out),
        }
    }

    /// Releases the lock: hands it to the next waiter of this process in one
    /// write if there is one, otherwise marks the record released (or deletes
    /// it, with [`ReleaseMode::Delete`](crate::ReleaseMode::Delete)).
    ///
    /// `Ok` means the store confirmed the release (or found the record
    /// already released or gone). Returns [`LockError::Lost`] if the lease had
    /// been lost (its signal fired; the record is still released if it is
    /// still ours) or if the release found another holder's record although
    /// every attempt of it was answered: the lock was taken from this holder
    /// before it released, so the two may have overlapped. If an attempt went
    /// unanswered and another holder now has the lock, the result is
    /// [`LockError::OutcomeUnknown`]: the release may have applied before
    /// they acquired, or not. The release gives up after
    /// [`ClientConfig::release_timeout`](crate::ClientConfig::release_timeout),
    /// each store call after its call timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the release runs in a task of its own and completes even
    /// if this future is dropped.
    pub async fn release(self) -> Result<(), LockError> {
        self.handle.release().await
    }

    /// The version the store holds for this lease, as far as this client
    /// knows (waits for a heartbeat in flight). With it, anyone can later
    /// release the record conditionally, e.g. `lynk release --version`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn record_version(&self) -> Version {
        self.handle.version().await
    }

    /// Stops heartbeating the lock and forgets it, **without releasing it**:
    /// the record stays in the store and the lock stays held by it until its
    /// lease runs out (waiters then take it over) or someone releases it by
    /// its version. For a process that hands a held lock on to another (as
    /// `lynk acquire` does) and exits. Take [`record_version`](Self::record_version)
    /// first to be able to release it later.
    pub fn detach(self) {
        self.handle.detach();
    }

    fn lost_error(&self) -> LockError {
        let lease = self.lease();
        LockError::Lost {
            name: lease.name.clone(),
            reason: lease
                .lost_reason()
                .unwrap_or(LostReason::HeartbeatsFailed { last_error: None }),
        }
    }
}

/// A view of a held lease, from [`LockGuard::watch`]: clone it into tasks
/// that must know whether the lock is still held.
#[derive(Clone)]
pub struct LeaseWatch {
    lease: Arc<LeaseShared>,
    safe_for: Duration,
}

impl fmt::Debug for LeaseWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseWatch")
            .field("name", &self.lease().name)
            .field("fencing_token", &self.lease().token)
            .finish_non_exhaustive()
    }
}

impl LeaseWatch {
    fn lease(&self) -> &Arc<LeaseShared> {
        &self.lease
    }
    /// The fencing token of the watched acquisition.
    pub fn fencing_token(&self) -> FencingToken {
        self.lease().token
    }

    /// As [`LockGuard::safe_deadline`].
    pub fn safe_deadline(&self) -> Instant {
        self.lease.valid_from() + self.safe_for
    }

    /// As [`LockGuard::is_lost`].
    pub fn is_lost(&self) -> bool {
        is_lost(self.lease())
    }

    /// As [`LockGuard::lost_reason`].
    pub fn lost_reason(&self) -> Option<LostReason> {
        lost_reason(self.lease())
    }

    /// As [`LockGuard::lost`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.lease.lost.cancelled()
    }

    /// `true` while the guard still holds the lock: neither lost nor
    /// released (or dropped). A task that works under a watch should check
    /// this, not only [`is_lost`](LeaseWatch::is_lost), which a clean
    /// release does not set.
    pub fn is_held(&self) -> bool {
        !self.lease.is_ended()
    }

    /// A future that completes when the guard stops holding the lock, by
    /// loss, release or drop.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.lease.ended_signal.cancelled()
    }
}

fn is_lost(lease: &LeaseShared) -> bool {
    lease.lost.is_cancelled()
}

fn lost_reason(lease: &LeaseShared) -> Option<LostReason> {
    lease.lost_reason()
}
