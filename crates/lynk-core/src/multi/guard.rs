//! The guard of a held multi-lock.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{FencingToken, LockError, LockGuard, LostReason};

/// Proof that this process holds every lock of a
/// [`MultiLock`](crate::MultiLock), while their leases last.
///
/// It holds one [`LockGuard`] per name, in byte order of the names. The
/// engine heartbeats each of them like any lock; each keeps its own fencing
/// token ([`fencing_token`](MultiGuard::fencing_token)), which the resource
/// that name protects should check.
///
/// The **lost signal** fires as soon as **any** of the locks is lost
/// ([`lost`](MultiGuard::lost), [`lost_token`](MultiGuard::lost_token),
/// [`run`](MultiGuard::run)); [`lost_reason`](MultiGuard::lost_reason) says
/// which name and why. The other locks are still held then: stop the work,
/// then release (or drop) the guard.
///
/// Release with [`release`](MultiGuard::release) to learn whether every
/// release was written. Dropping the guard releases every lock in the
/// background, as dropping each [`LockGuard`] does.
#[must_use = "dropping the guard releases every lock at once"]
pub struct MultiGuard {
    /// Sorted by name (the acquisition order).
    guards: Vec<LockGuard>,
    /// Cancelled (by the watcher task) when any lock is lost.
    any_lost: CancellationToken,
    /// The first lock the watcher saw lost, with why.
    first_lost: Arc<Mutex<Option<(String, LostReason)>>>,
    /// Stops the watcher task when the guard is released or dropped.
    _stop_watcher: DropGuard,
}

impl fmt::Debug for MultiGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiGuard")
            .field("guards", &self.guards)
            .field("lost", &self.lost_reason())
            .finish()
    }
}

impl MultiGuard {
    /// `guards` must be sorted by name and non-empty.
    pub(crate) fn new(guards: Vec<LockGuard>) -> Self {
        debug_assert!(!guards.is_empty());
        debug_assert!(guards.windows(2).all(|w| w[0].name() < w[1].name()));
        let any_lost = CancellationToken::new();
        let first_lost = Arc::new(Mutex::new(None));
        let stop = CancellationToken::new();
        let watches: Vec<_> = guards.iter().map(|g| g.watch()).collect();
        let names: Vec<String> = guards.iter().map(|g| g.name().to_owned()).collect();
        {
            // One small task per multi-guard, for `lost_token`: it ends when
            // any lock is lost or when the guard is released or dropped.
            let (any_lost, first_lost, stop) = (any_lost.clone(), first_lost.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lost: FuturesUnordered<_> = watches
                    .iter()
                    .zip(&names)
                    .map(|(w, name)| async move {
                        w.lost().await;
                        (name, w.lost_reason())
                    })
                    .collect();
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {}
                    Some((name, reason)) = lost.next() => {
                        let reason = reason.unwrap_or(LostReason::HeartbeatsFailed { last_error: None });
                        *first_lost.lock().unwrap_or_else(|p| p.into_inner()) = Some((name.clone(), reason));
                        any_lost.cancel();
                    }
                }
            });
        }
        MultiGuard {
            guards,
            any_lost,
            first_lost,
            _stop_watcher: stop.drop_guard(),
        }
    }

    /// The names held, in byte order (the order they were acquired in).
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.guards.iter().map(LockGuard::name)
    }

    /// The fencing token of lock `name`, or `None` if this guard does not
    /// hold that name. Each name has its own token, higher than that of every
    /// earlier acquisition of that name.
    pub fn fencing_token(&self, name: &str) -> Option<FencingToken> {
        self.guard(name).map(LockGuard::fencing_token)
    }

    /// Every name with its fencing token, in byte order of the names.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = (&str, FencingToken)> + '_ {
        self.guards.iter().map(|g| (g.name(), g.fencing_token()))
    }

    /// The guard of lock `name`, if this guard holds that name.
    pub fn guard(&self, name: &str) -> Option<&LockGuard> {
        self.guards
            .binary_search_by(|g| g.name().cmp(name))
            .ok()
            .map(|i| &self.guards[i])
    }

    /// The guards of every lock, in byte order of the names: for their
    /// payloads, safe deadlines and [`watch`](LockGuard::watch)es.
    pub fn guards(&self) -> &[LockGuard] {
        &self.guards
    }

    /// `true` once any of the locks is lost.
    pub fn is_lost(&self) -> bool {
        self.guards.iter().any(LockGuard::is_lost)
    }

    /// Which lock was lost and why, if any was: the first one seen lost
    /// (if several were lost at once, the first in name order).
    pub fn lost_reason(&self) -> Option<(String, LostReason)> {
        let first = self
            .first_lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        first.or_else(|| {
            self.guards.iter().find(|g| g.is_lost()).map(|g| {
                let reason = g
                    .lost_reason()
                    .unwrap_or(LostReason::HeartbeatsFailed { last_error: None });
                (g.name().to_owned(), reason)
            })
        })
    }

    /// A future that completes when any of the locks is lost.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + '_ {
        let mut any: FuturesUnordered<_> = self.guards.iter().map(LockGuard::lost).collect();
        async move {
            any.next().await;
        }
    }

    /// A cancellation token cancelled when any of the locks is lost. Hand it
    /// to tasks that must stop then. Cancelling it yourself releases nothing.
    ///
    /// A small task of the guard's watches the locks for it; it ends when
    /// the guard is released or dropped, and the token is then never
    /// cancelled by the guard (a clean release is no loss).
    pub fn lost_token(&self) -> CancellationToken {
        self.any_lost.child_token()
    }

    /// Runs `work` while every lock holds. If any lock is lost first, `work`
    /// is dropped (cancelled) and the result is [`LockError::Lost`] naming
    /// that lock.
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as `work`.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LockError> {
        tokio::select! {
            biased;
            _ = self.lost() => Err(self.lost_error()),
            out = work => Ok(out),
        }
    }

    /// Releases every lock, concurrently, and waits for all the releases.
    /// Every release is attempted; the result is the first error in name
    /// order, if any (see [`LockGuard::release`] for what each error means):
    /// e.g. [`LockError::Lost`] for a lock lost while held.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: each release runs in a task of its own and completes even
    /// if this future is dropped; only the result is lost.
    pub async fn release(self) -> Result<(), LockError> {
        let MultiGuard {
            guards,
            _stop_watcher,
            ..
        } = self;
        drop(_stop_watcher);
        join_all(guards.into_iter().map(LockGuard::release))
            .await
            .into_iter()
            .collect()
    }

    fn lost_error(&self) -> LockError {
        let (name, reason) = self.lost_reason().unwrap_or_else(|| {
            (
                self.guards[0].name().to_owned(),
                LostReason::HeartbeatsFailed { last_error: None },
            )
        });
        LockError::Lost { name, reason }
    }
}
