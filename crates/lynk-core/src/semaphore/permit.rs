//! The guard of one held permit.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::core::{Command, SemaphoreCore};
use crate::{FencingToken, LockError, LostReason};

/// What the semaphore's task and a [`Permit`] share.
#[derive(Debug)]
pub(crate) struct PermitShared {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) token: FencingToken,
    pub(crate) lease: Duration,
    /// Send instant of the last write that renewed this permit.
    pub(crate) valid_from: Mutex<Instant>,
    pub(crate) safe_for: Duration,
    pub(crate) lost: CancellationToken,
    pub(crate) reason: Mutex<Option<LostReason>>,
}

impl PermitShared {
    /// Marks the permit lost (once); `true` if this call did.
    pub(crate) fn mark_lost(&self, reason: LostReason) -> bool {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(reason);
        drop(slot);
        self.lost.cancel();
        true
    }

    pub(crate) fn lost_reason(&self) -> Option<LostReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn renewed(&self, from: Instant) {
        let mut at = self.valid_from.lock().unwrap_or_else(|e| e.into_inner());
        if from > *at {
            *at = from;
        }
    }

    pub(crate) fn valid_from(&self) -> Instant {
        *self.valid_from.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Proof that this process holds one permit of a
/// [`Semaphore`](crate::Semaphore), while its lease lasts.
///
/// Like a [`LockGuard`](crate::LockGuard): the permit is renewed in the
/// background (one write renews every permit this client holds under the
/// name), it has its own fencing token, and its **lost-lease signal** fires
/// before its safe deadline if renewals fail or the permit is taken over.
/// Release it with [`release`](Permit::release); dropping it releases in the
/// background and hands the permit to the next waiter of this process.
#[must_use = "dropping the permit releases it at once"]
pub struct Permit {
    pub(crate) core: Arc<SemaphoreCore>,
    pub(crate) shared: Arc<PermitShared>,
    pub(crate) released: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("name", &self.shared.name)
            .field("id", &self.shared.id)
            .field("fencing_token", &self.shared.token)
            .field("lost", &self.shared.lost_reason())
            .finish()
    }
}

impl Permit {
    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This permit's id in the semaphore's record (random, unique).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// This permit's fencing token: higher than that of every permit of this
    /// semaphore acquired before it. Send it with every write you protect.
    pub fn fencing_token(&self) -> FencingToken {
        self.shared.token
    }

    /// The permit's lease.
    pub fn lease_duration(&self) -> Duration {
        self.shared.lease
    }

    /// The instant (on the client's clock) after which this holder can no
    /// longer be sure it holds the permit, unless a renewal succeeds first.
    pub fn safe_deadline(&self) -> Instant {
        self.shared.valid_from() + self.shared.safe_for
    }

    /// `true` once the permit is lost.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.is_cancelled()
    }

    /// Why the permit was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.shared.lost_reason()
    }

    /// A future that completes when the permit is lost.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.shared.lost.cancelled()
    }

    /// A cancellation token cancelled when the permit is lost. Cancelling it
    /// yourself does not release the permit.
    pub fn lost_token(&self) -> CancellationToken {
        self.shared.lost.child_token()
    }

    /// Runs `work` while the permit holds; if it is lost first, `work` is
    /// dropped and the result is [`LockError::Lost`].
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as `work`.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LockError> {
        tokio::select! {
            biased;
            _ = self.shared.lost.cancelled() => Err(self.lost_error()),
            out = work => Ok(out),
        }
    }

    /// Releases the permit: hands it to the next waiter of this process in
    /// the same write if there is one (and no other process queued first),
    /// otherwise frees it. `Ok` means the store confirmed it;
    /// [`LockError::Lost`] means the permit had been lost before.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the release is carried out by the semaphore's task even
    /// if this future is dropped.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        let (reply, answer) = oneshot::channel();
        let sent = self.core.send(Command::Release {
            id: self.shared.id.clone(),
            reply: Some(reply),
        });
        if !sent {
            return Err(LockError::ShutDown);
        }
        let out = answer.await.unwrap_or(Err(LockError::ShutDown));
        // A permit lost before its release (its line may have been removed
        // by another client, or left to go stale) is not "released".
        match self.shared.lost_reason() {
            Some(reason) if reason != LostReason::ClientShutDown => Err(LockError::Lost {
                name: self.shared.name.clone(),
                reason,
            }),
            _ => out,
        }
    }

    fn lost_error(&self) -> LockError {
        LockError::Lost {
            name: self.shared.name.clone(),
            reason: self
                .shared
                .lost_reason()
                .unwrap_or(LostReason::HeartbeatsFailed { last_error: None }),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.released {
            self.core.send(Command::Release {
                id: self.shared.id.clone(),
                reply: None,
            });
        }
    }
}
