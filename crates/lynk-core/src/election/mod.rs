//! Leader election on the lock engine: campaign, leadership, observers.
//!
//! An election for name `N` is the lock `N`; its leader is the lock's holder.
//! Everything the mutex does, an election does: candidates of one client
//! queue in FIFO order and only the first polls the store; candidates in
//! other processes queue in the record's wait queue; a leader that resigns
//! hands over in one write to a local candidate, or grants to a remote one;
//! a leader that vanishes is replaced once its lease has visibly gone stale
//! (`lease × (1 + drift)` on the candidate's own clock). The **term** is the
//! acquisition's fencing token, so it only goes up. The payload (e.g. the
//! leader's address) lives in the record, and the leader can replace it
//! without losing leadership ([`Leadership::set_payload`]).
//!
//! Followers watch with [`LeaderWatch`]: one poller per name and client,
//! however many watches, reading the record once per poll interval.
//!
//! See `docs/election.md` in the repository for the guide.

mod observe;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::{
    FencingToken, LeaseWatch, Lock, LockClient, LockError, LockGuard, LostReason, Version,
};

pub use observe::{Leader, LeaderStream, LeaderWatch};

impl LockClient {
    /// An election for `name`: a handle to campaign for leadership with.
    /// Does no I/O; the name is checked when a campaign starts.
    ///
    /// The election is the lock `name` (the leader holds it), so one name
    /// must not be used both as an election and as a plain lock, and the
    /// original Python lynk must not lock that name: see `docs/election.md`.
    ///
    /// # Example
    ///
    /// ```
    /// use lynk_core::LockClient;
    /// # use lynk_core::{BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest};
    /// # #[derive(Debug, Default)] struct MyBackend(std::sync::Mutex<Option<LockRecord>>);
    /// # #[async_trait::async_trait] impl LockBackend for MyBackend {
    /// #   async fn read(&self, _: &str) -> Result<Option<LockRecord>, BackendError> { Ok(self.0.lock().unwrap().clone()) }
    /// #   async fn write(&self, r: WriteRequest) -> Result<LockRecord, WriteError> {
    /// #     let mut s = self.0.lock().unwrap();
    /// #     if !r.condition.holds_for(s.as_ref()) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
    /// #     let rec = r.record_over(s.as_ref()); *s = Some(rec.clone()); Ok(rec) }
    /// #   async fn delete(&self, _: &str, v: &Version) -> Result<(), WriteError> {
    /// #     let mut s = self.0.lock().unwrap();
    /// #     if s.as_ref().map(|r| &r.version) != Some(v) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
    /// #     *s = None; Ok(()) }
    /// #   fn capabilities(&self) -> Capabilities { Capabilities::minimal() }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lynk_core::LockError> {
    /// let client = LockClient::new(MyBackend::default())?;
    ///
    /// // A candidate: waits until it leads.
    /// let mut leadership = client
    ///     .election("scheduler")
    ///     .with_payload("10.0.0.7:8080") // where followers reach the leader
    ///     .campaign()
    ///     .await?;
    /// let term = leadership.term(); // send it with every write the leader makes
    ///
    /// // A follower (here in the same process): who leads now?
    /// let mut watch = client.observe_leader("scheduler");
    /// let leader = watch.changed().await?.expect("a leader");
    /// assert_eq!(leader.term, term);
    /// assert_eq!(leader.payload.as_deref(), Some(&b"10.0.0.7:8080"[..]));
    ///
    /// // The leader moves, without an election.
    /// leadership.set_payload("10.0.0.7:9090").await?;
    /// assert_eq!(leadership.term(), term);
    ///
    /// // Lead until the work ends or leadership is lost, then step down.
    /// leadership.run(async { /* lead */ }).await?;
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub fn election(&self, name: impl Into<String>) -> Election {
        Election {
            lock: self.create_lock(name),
            client: self.clone(),
        }
    }
}

/// A handle to campaign for leadership of one name, made by
/// [`LockClient::election`]. Cheap to clone; creating it does no I/O.
///
/// Candidates of one client queue in this process in FIFO order (only the
/// first polls the store); candidates of other processes queue in the
/// store's wait queue, where the backend keeps one.
#[derive(Clone, Debug)]
#[must_use = "an election does nothing until you campaign"]
pub struct Election {
    lock: Lock,
    client: LockClient,
}

impl Election {
    /// The election's name (the name of the lock its leader holds).
    pub fn name(&self) -> &str {
        self.lock.name()
    }

    /// The leader's lease (default: the client's default lease, 20 s). A
    /// leader that crashes is replaced within `lease × (1 + drift)` plus one
    /// poll; a shorter lease fails over sooner and heartbeats more often
    /// (every third of it).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lock = self.lock.with_lease(lease);
        self
    }

    /// The payload stored while this candidate leads, e.g. its address;
    /// followers see it in [`Leader::payload`]. The leader can replace it
    /// with [`Leadership::set_payload`]. At most
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES).
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.lock = self.lock.with_payload(payload);
        self
    }

    /// The lease this candidate leads with.
    pub fn lease(&self) -> Duration {
        self.lock.lease()
    }

    /// Campaigns until this candidate leads, however long that takes.
    ///
    /// Behind a live leader it waits: locally in FIFO order behind this
    /// client's earlier candidates, and in the store's queue behind other
    /// processes'. It leads at once when the lock is free, when the leader
    /// resigns to it, or once the leader's lease has visibly gone stale.
    /// Store errors that may pass are retried while waiting; bound the wait
    /// with [`campaign_timeout`](Election::campaign_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future withdraws the candidacy, and if
    /// leadership was being granted at that moment it is resigned (or passed
    /// to the next candidate) in the background.
    pub async fn campaign(&self) -> Result<Leadership, LockError> {
        self.lock.acquire().await.map(Leadership::new)
    }

    /// Campaigns for at most `wait`; after that the result is
    /// [`LockError::NotGranted`], which names the current leader's host (or
    /// the store error that kept the campaign from getting through).
    ///
    /// # Cancel safety
    ///
    /// As [`campaign`](Election::campaign).
    pub async fn campaign_timeout(&self, wait: Duration) -> Result<Leadership, LockError> {
        self.lock.acquire_timeout(wait).await.map(Leadership::new)
    }

    /// Campaigns until `deadline` on the client's clock (`None`: no limit).
    ///
    /// # Cancel safety
    ///
    /// As [`campaign`](Election::campaign).
    pub async fn campaign_until(&self, deadline: Option<Instant>) -> Result<Leadership, LockError> {
        self.lock.acquire_until(deadline).await.map(Leadership::new)
    }

    /// Becomes leader if nobody leads now: `Ok(None)` if someone does (or
    /// another candidate of this client is campaigning). One conditional
    /// write at most.
    ///
    /// # Cancel safety
    ///
    /// As [`campaign`](Election::campaign).
    pub async fn try_campaign(&self) -> Result<Option<Leadership>, LockError> {
        Ok(self.lock.try_acquire().await?.map(Leadership::new))
    }

    /// Watches who leads this election: as
    /// [`LockClient::observe_leader`] on this election's name.
    pub fn observe(&self) -> LeaderWatch {
        self.client.observe_leader(self.name())
    }
}

/// Leadership of an election, while its lease lasts: what
/// [`Election::campaign`] returns. It wraps the [`LockGuard`] of the
/// election's lock, so everything about a guard holds: heartbeats run in the
/// background, the **lost signal** fires before the lease's safe deadline if
/// they fail or someone takes over, and dropping it resigns.
///
/// The [`term`](Leadership::term) is the acquisition's fencing token: every
/// later leader has a higher one. Send it with every write the leader makes
/// so the resource can refuse a deposed leader's late writes.
#[must_use = "dropping the leadership resigns at once"]
pub struct Leadership {
    guard: LockGuard,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("name", &self.name())
            .field("term", &self.term())
            .field("lost", &self.lost_reason())
            .finish()
    }
}

impl Leadership {
    fn new(guard: LockGuard) -> Self {
        Leadership { guard }
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        self.guard.name()
    }

    /// This leadership's term: the fencing token of its acquisition, higher
    /// than every earlier leader's of this election. It does not change
    /// while this leader leads (not with heartbeats, nor with
    /// [`set_payload`](Leadership::set_payload)).
    pub fn term(&self) -> FencingToken {
        self.guard.fencing_token()
    }

    /// The payload followers see: the one campaigned with, or the last one
    /// given to [`set_payload`](Leadership::set_payload).
    pub fn payload(&self) -> Option<&Bytes> {
        self.guard.payload()
    }

    /// The lease written into the record.
    pub fn lease_duration(&self) -> Duration {
        self.guard.lease_duration()
    }

    /// As [`LockGuard::safe_deadline`]: after this instant, unless a
    /// heartbeat succeeds first, this leader can no longer be sure it leads.
    pub fn safe_deadline(&self) -> Instant {
        self.guard.safe_deadline()
    }

    /// `true` once leadership is lost (heartbeats failed, or another
    /// candidate took over). Check it before each step of long work.
    pub fn is_lost(&self) -> bool {
        self.guard.is_lost()
    }

    /// Why leadership was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.guard.lost_reason()
    }

    /// A future that completes when leadership is lost (never on a clean
    /// resignation).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.guard.lost()
    }

    /// A token cancelled when leadership is lost: hand it to tasks that must
    /// stop leading. Cancelling it yourself does not resign.
    pub fn lost_token(&self) -> CancellationToken {
        self.guard.lost_token()
    }

    /// A cheap, cloneable view of the leadership's lease for other tasks
    /// (its lost signal, whether it is still held), without the right to
    /// resign. Its [`fencing_token`](LeaseWatch::fencing_token) is the term.
    pub fn watch(&self) -> LeaseWatch {
        self.guard.watch()
    }

    /// Runs `work` while leading. If leadership is lost first, `work` is
    /// dropped (cancelled) and the result is [`LockError::Lost`].
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as `work`.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LockError> {
        self.guard.run(work).await
    }

    /// Replaces the payload followers see (e.g. the leader's new address)
    /// **without losing leadership**: same term, same lease, the candidates'
    /// queue untouched. Observers see the new payload at their next poll.
    /// See [`LockGuard::set_payload`] for how it is written and what its
    /// errors mean: on an error other than [`LockError::Lost`] this leader
    /// still leads and its heartbeats carry the new payload; call again to
    /// confirm.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the change completes in the background if this future is
    /// dropped, and [`payload`](Leadership::payload) returns the new payload
    /// from the moment the call starts.
    pub async fn set_payload(&mut self, payload: impl Into<Bytes>) -> Result<(), LockError> {
        self.guard.set_payload(payload).await
    }

    /// Steps down. A candidate of this client waiting for the same election
    /// leads at once (one write hands over); otherwise the first candidate
    /// queued by another process is granted leadership and takes it at its
    /// next poll; with no candidate the record is marked released (the term
    /// is kept, so the next leader's is higher).
    ///
    /// `Ok` means the store confirmed it. The errors are
    /// [`LockGuard::release`]'s: [`LockError::Lost`] if leadership had been
    /// lost, or taken over before the resignation.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the resignation runs in a task of its own and completes
    /// even if this future is dropped.
    pub async fn resign(self) -> Result<(), LockError> {
        self.guard.release().await
    }

    /// The record version this leader stored last (waits for a heartbeat in
    /// flight), as [`LockGuard::record_version`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn record_version(&self) -> Version {
        self.guard.record_version().await
    }

    /// The guard of the election's lock.
    pub fn guard(&self) -> &LockGuard {
        &self.guard
    }

    /// The guard of the election's lock, owned: dropping or releasing it
    /// resigns.
    pub fn into_guard(self) -> LockGuard {
        self.guard
    }
}
