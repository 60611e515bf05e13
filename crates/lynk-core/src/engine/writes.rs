//! Every write the lock protocol makes, and how a failed or unanswered write
//! is resolved. Read this file to know what lynk stores and when.
//!
//! | write | condition | token | lease, payload |
//! |---|---|---|---|
//! | [`acquire`](Engine::acquire_request) | `Vacant` (free), `VersionIs(seen)` (takeover, or a grant's confirmation), `QueueIs(seen)` (takeover that leaves the queue) | next | the waiter's |
//! | [`heartbeat`](Engine::heartbeat_request) | `VersionIs(ours)` | kept | the holder's |
//! | [`handover`](Engine::handover_request) | `VersionIs(ours)` | next | the next waiter's |
//! | [`grant`](Engine::grant_request) | `QueueIs(ours)` (a release), `QueueIs(seen)` (a waiter leaving passes on its grant) | kept | the grant lease, none; `granted_to` |
//! | [`release`](Engine::release_request) | `QueueIs(ours)` (`VersionIs` without a queue) | kept | zero, none; `released` |
//! | release by delete (`ReleaseMode::Delete`) | version is ours | gone | gone |
//! | [`enqueue`, leave](Engine::queue_request) | the record's version and queue revision | kept | kept (only the queue changes) |
//!
//! Writes that change the queue are conditioned on the queue revision they
//! read (`QueueIs`), so no waiter's entry is lost; the others keep the stored
//! queue. A grant removes its waiter from the queue; the waiter confirms it
//! by an acquisition conditioned on the grant's version, timed from its own
//! send, and until then nobody holds the lock.
//!
//! Every write carries a fresh random version, so a write whose response was
//! lost is recognised later: a record carrying one of a client's own
//! versions ([`OwnWrites`]) was written by that attempt.

use std::time::{Duration, Instant};

use super::lease::LeaseCore;
use super::slots::AcquireSpec;
use super::Engine;
use crate::{
    BackendError, Condition, LockRecord, QueueEntry, QueueRequest, QueueUpdate, TokenUpdate,
    Version, WaitQueue, WriteError, WriteRequest,
};

/// The most own writes remembered per list. Past it, writes from the middle
/// of the list are forgotten: the first ones (which a lost response followed
/// by a run of failures leaves behind) and the newest are kept. A forgotten
/// write that did apply only costs time (a takeover of our own record after
/// a lease, or a lost signal on the safe side), never safety.
const MAX_OWN_WRITES: usize = 64;

/// Writes this client sent, each with its send instant: if the store turns
/// out to hold one of their versions, that write applied, and the lease it
/// made is valid from that instant.
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnWrites(Vec<(Version, Instant)>);

impl OwnWrites {
    /// Remembers a write sent at `sent` (at most [`MAX_OWN_WRITES`]).
    pub(crate) fn push(&mut self, version: Version, sent: Instant) {
        if self.0.len() >= MAX_OWN_WRITES {
            self.0.remove(MAX_OWN_WRITES / 2);
        }
        self.0.push((version, sent));
    }

    /// Adds every write of `other`.
    pub(crate) fn extend(&mut self, other: &OwnWrites) {
        for (v, at) in &other.0 {
            self.push(v.clone(), *at);
        }
    }

    /// The send instant of `version`, if it is one of these writes.
    pub(crate) fn sent_at(&self, version: &Version) -> Option<Instant> {
        self.0.iter().find(|(v, _)| v == version).map(|(_, at)| *at)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Only the write of `version`, sent at `sent`.
    pub(crate) fn one(version: Version, sent: Instant) -> Self {
        OwnWrites(vec![(version, sent)])
    }
}

/// A write about to be sent, with its version and send instant.
pub(crate) struct Outgoing {
    pub(crate) request: WriteRequest,
    pub(crate) version: Version,
    pub(crate) sent: Instant,
}

impl Engine {
    fn outgoing(
        &self,
        name: &str,
        condition: Condition,
        token: TokenUpdate,
        lease: Duration,
        payload: Option<bytes::Bytes>,
        released: bool,
    ) -> Outgoing {
        let version = Version::random();
        let request = WriteRequest {
            key: name.to_owned(),
            condition,
            version: version.clone(),
            lease_duration: lease,
            host: self.config.host_identifier.clone(),
            token,
            payload,
            released,
            queue: QueueUpdate::Keep,
            granted_to: None,
            holder_detail: Some(self.holder_detail.clone()),
        };
        Outgoing {
            request,
            version,
            sent: self.clock.now(),
        }
    }

    /// A new acquisition for `spec`: of a free lock (`Vacant`), a takeover
    /// (`VersionIs` or `QueueIs` the version a waiter watched go stale), or
    /// the confirmation of a grant (`VersionIs` the grant's version). `queue`
    /// is how the write sets the wait queue.
    pub(crate) fn acquire_request(
        &self,
        name: &str,
        condition: Condition,
        queue: QueueUpdate,
        spec: &AcquireSpec,
    ) -> Outgoing {
        let token = TokenUpdate::Next {
            initial: self.initial_token(name),
        };
        let mut out = self.outgoing(
            name,
            condition,
            token,
            spec.lease,
            spec.payload.clone(),
            false,
        );
        out.request.queue = queue;
        out
    }

    /// A grant of the lock to the queued waiter `to`, by a releasing holder
    /// (`QueueIs` its own version) or by a waiter that was granted the lock
    /// but has nobody left to take it (`QueueIs` its grant): nobody holds the lock
    /// until `to` confirms, and `to` leaves the queue. Its lease is the grant
    /// lease; its host is `to`'s, for people reading the table.
    pub(crate) fn grant_request(
        &self,
        name: &str,
        condition: Condition,
        to: &QueueEntry,
        queue: &WaitQueue,
    ) -> Outgoing {
        let mut out = self.outgoing(
            name,
            condition,
            TokenUpdate::Keep,
            self.config.grant_lease_for(to.poll),
            None,
            false,
        );
        out.request.host = to.host.clone();
        out.request.holder_detail = None;
        out.request.granted_to = Some(to.id.clone());
        out.request.queue = QueueUpdate::Set(queue.without(&to.id));
        out
    }

    /// A change of the wait queue alone, over the record `seen`.
    pub(crate) fn queue_request(&self, seen: &LockRecord, queue: WaitQueue) -> QueueRequest {
        QueueRequest {
            key: seen.key.clone(),
            version: seen.version.clone(),
            revision: seen.queue.revision.clone(),
            queue,
        }
    }

    /// Whether waiters queue in the store: the backend keeps a wait queue.
    pub(crate) fn queues(&self) -> bool {
        self.backend.capabilities().wait_queue
    }

    /// A heartbeat: the same record with a new version.
    pub(crate) fn heartbeat_request(
        &self,
        name: &str,
        ours: &Version,
        lease: Duration,
        payload: Option<bytes::Bytes>,
    ) -> Outgoing {
        let condition = Condition::VersionIs(ours.clone());
        self.outgoing(name, condition, TokenUpdate::Keep, lease, payload, false)
    }

    /// A handover to the next local waiter: a new acquisition for its spec,
    /// conditioned on the releasing holder's version (or, only in the
    /// negative control, on whatever the store holds).
    ///
    /// With a store queue, `queue` is the queue the holder last saw: the
    /// handover applies only if nobody queued since (else the first queued
    /// waiter of another process goes first), and `clean` sets the queue to
    /// it (dropping this process's stale entry).
    pub(crate) async fn handover_request(
        &self,
        name: &str,
        ours: &Version,
        queue: Option<(&WaitQueue, Option<WaitQueue>)>,
        spec: &AcquireSpec,
        by: Instant,
    ) -> Outgoing {
        let condition = if self.config.mutations.unconditional_handover {
            match self.read_by(name, by).await {
                Ok(Some(r)) => Condition::VersionIs(r.version),
                _ => Condition::Absent,
            }
        } else {
            match queue {
                Some((seen, _)) => Condition::QueueIs {
                    version: ours.clone(),
                    revision: seen.revision.clone(),
                },
                None => Condition::VersionIs(ours.clone()),
            }
        };
        let update = match queue {
            Some((_, Some(clean))) => QueueUpdate::Set(clean),
            _ => QueueUpdate::Keep,
        };
        self.acquire_request(name, condition, update, spec)
    }

    /// A release that keeps the record, marked released, with the token. Its
    /// lease is zero, so the original Python client (which waits a record's
    /// lease before taking it) takes it at once too.
    ///
    /// `queue` is the queue revision the holder last saw, when the store keeps
    /// queues: the release then applies only if nobody queued since (else the
    /// holder grants the lock to the first waiter instead).
    pub(crate) fn release_request(
        &self,
        name: &str,
        ours: &Version,
        queue: Option<&WaitQueue>,
    ) -> Outgoing {
        self.release_request_setting(name, ours, queue, None)
    }

    /// [`release_request`](Engine::release_request) that also stores
    /// `clean` as the queue (dropping a stale entry of this process).
    pub(crate) fn release_request_setting(
        &self,
        name: &str,
        ours: &Version,
        queue: Option<&WaitQueue>,
        clean: Option<WaitQueue>,
    ) -> Outgoing {
        let condition = match queue {
            Some(q) => Condition::QueueIs {
                version: ours.clone(),
                revision: q.revision.clone(),
            },
            None => Condition::VersionIs(ours.clone()),
        };
        let mut out = self.outgoing(
            name,
            condition,
            TokenUpdate::Keep,
            Duration::ZERO,
            None,
            true,
        );
        if let Some(clean) = clean {
            out.request.queue = QueueUpdate::Set(clean);
        }
        out
    }

    /// The stored record behind a failed condition: the one the store
    /// returned with the failure, or else one strongly consistent read.
    pub(crate) async fn record_behind(
        &self,
        returned: Option<LockRecord>,
        name: &str,
        by: Instant,
    ) -> Result<Option<LockRecord>, BackendError> {
        match returned {
            Some(r) => Ok(Some(r)),
            None => self.read_by(name, by).await,
        }
    }

    /// The stored record after a write failed with `error`, read if the store
    /// did not return it; an error if the write failed otherwise.
    pub(crate) async fn after_conflict(
        &self,
        error: WriteError,
        name: &str,
        by: Instant,
    ) -> Result<Option<LockRecord>, BackendError> {
        match error {
            WriteError::ConditionFailed { current } => self.record_behind(current, name, by).await,
            WriteError::Backend(e) => Err(e),
        }
    }

    /// If `current` is the record of one of `core`'s heartbeats whose
    /// response was lost, that heartbeat applied: the lease was renewed from
    /// its send. Adopts it and returns the new start of the lease.
    pub(crate) fn adopt_heartbeat(
        &self,
        core: &mut LeaseCore,
        current: &LockRecord,
    ) -> Option<Instant> {
        if current.released {
            return None;
        }
        let sent = core.pending.sent_at(&current.version)?;
        crate::metrics::Metrics::inc(&self.metrics.ambiguous_resolved);
        core.version = current.version.clone();
        core.pending.clear();
        Some(self.lease_start(sent))
    }
}
