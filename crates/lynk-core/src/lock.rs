//! A lock handle: a name bound to a client, with the lease and payload to
//! acquire with.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::config::{validate_lease, validate_name, validate_payload};
use crate::engine::{AcquireSpec, Grant};
use crate::{LockClient, LockError, LockGuard};

/// A handle to one lock name, made by
/// [`LockClient::create_lock`](crate::LockClient::create_lock). Creating it
/// does no I/O; it is cheap to clone and to make many of.
///
/// Handles of one client for the same name queue in this process in FIFO
/// order, and only the first of them polls the store.
#[derive(Clone, Debug)]
pub struct Lock {
    client: LockClient,
    name: String,
    lease: Duration,
    payload: Option<Bytes>,
    heartbeat: bool,
}

impl Lock {
    pub(crate) fn new(client: LockClient, name: String, lease: Duration) -> Self {
        Lock {
            client,
            name,
            lease,
            payload: None,
            heartbeat: true,
        }
    }

    /// Uses `lease` instead of the client's default lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Attaches `payload` to the record while this handle holds the lock;
    /// others can read it with [`LockClient::describe`](crate::LockClient::describe)
    /// (e.g. a leader's address).
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// Holds the lock without background heartbeats: for a short-lived
    /// process (a Lambda handler, a cron job) that finishes its work within
    /// one lease. Choose a lease longer than the work, and finish before
    /// [`LockGuard::safe_deadline`](crate::LockGuard::safe_deadline); the
    /// lost-lease signal still fires before it. Nothing keeps running after
    /// the process ends, and a release is one write.
    pub fn without_heartbeat(mut self) -> Self {
        self.heartbeat = false;
        self
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lease this handle acquires with.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// One conditional write when the lock is free. When it is held, waits
    /// behind this process's earlier waiters, then polls the store and takes
    /// over once the holder's lease has visibly gone stale. Store errors
    /// that may pass (throttling, an unreachable endpoint) are retried with
    /// backoff while waiting; bound the wait with
    /// [`acquire_timeout`](Lock::acquire_timeout), whose
    /// [`LockError::NotGranted`] then names the last store error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the queue, and if the lock was
    /// being granted at that moment, it is released (or handed to the next
    /// waiter) in the background. Wrap it in a timeout or `select!` to bound
    /// the wait, or use [`acquire_timeout`](Lock::acquire_timeout).
    pub async fn acquire(&self) -> Result<LockGuard, LockError> {
        self.acquire_until(None).await
    }

    /// Acquires the lock, waiting at most `wait`; after that the result is
    /// [`LockError::NotGranted`].
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Lock::acquire).
    pub async fn acquire_timeout(&self, wait: Duration) -> Result<LockGuard, LockError> {
        // A wait too long to represent (e.g. `Duration::MAX`) is no limit.
        let deadline = self.client.engine.clock.now().checked_add(wait);
        self.acquire_until(deadline).await
    }

    /// Acquires the lock, waiting until `deadline` on the client's clock.
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Lock::acquire).
    pub async fn acquire_until(&self, deadline: Option<Instant>) -> Result<LockGuard, LockError> {
        let span = tracing::info_span!("lynk.acquire", lock = %self.name);
        async {
            let started = self.client.engine.clock.now();
            // However this wait ends early (its deadline, or the future
            // dropped), the acquirer is told at once (after `rx` below is
            // dropped: declared later, dropped first), so that if nobody
            // else here waits it leaves the store's queue now, not at its
            // next poll (where a release might grant the lock to nobody).
            let _left = NudgeOnExit {
                engine: &self.client.engine,
                name: &self.name,
            };
            let rx = self.enqueue(false)?;
            let grant = match deadline {
                None => rx.await,
                Some(deadline) => {
                    tokio::select! {
                        biased;
                        grant = rx => grant,
                        fired = self.client.engine.caller_deadline(deadline) => {
                            if !fired {
                                return Err(LockError::ShutDown);
                            }
                            let (holder, last_error) = self.client.engine.wait_info(&self.name);
                            return Err(LockError::NotGranted {
                                name: self.name.clone(),
                                waited: self.client.engine.clock.now().saturating_duration_since(started),
                                holder,
                                last_error,
                            });
                        }
                    }
                }
            };
            match grant {
                Ok(Ok(Some(lease))) => Ok(LockGuard::new(lease)),
                Ok(Err(e)) => Err(e),
                Ok(Ok(None)) | Err(_) => Err(LockError::ShutDown),
            }
        }
        .instrument(span)
        .await
    }

    /// Tries to acquire the lock without waiting: `Ok(None)` if it is held.
    ///
    /// Makes one conditional write unless this process already holds or
    /// waits for the lock, in which case it answers at once with no I/O.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`acquire`](Lock::acquire).
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>, LockError> {
        let span = tracing::info_span!("lynk.try_acquire", lock = %self.name);
        async {
            match self.enqueue(true) {
                Err(e) => Err(e),
                Ok(rx) => match rx.await {
                    Ok(grant) => grant.map(|lease| lease.map(LockGuard::new)),
                    Err(_) => Err(LockError::ShutDown),
                },
            }
        }
        .instrument(span)
        .await
    }

    fn enqueue(&self, try_once: bool) -> Result<oneshot::Receiver<Grant>, LockError> {
        validate_name(&self.name)?;
        validate_lease(self.lease)?;
        if let Some(p) = &self.payload {
            validate_payload(p)?;
        }
        let spec = AcquireSpec {
            lease: self.lease,
            payload: self.payload.clone(),
            heartbeat: self.heartbeat,
        };
        self.client.engine.enqueue(&self.name, spec, try_once)
    }
}

/// Wakes the acquirer of `name` when dropped (see [`Lock::acquire_until`]);
/// a wake-up it did not need costs it at most one early poll.
struct NudgeOnExit<'a> {
    engine: &'a crate::engine::Engine,
    name: &'a str,
}

impl Drop for NudgeOnExit<'_> {
    fn drop(&mut self) {
        self.engine.nudge_acquirer(self.name);
    }
}
