//! The backend trait: a conditional store of lock records.
//!
//! This is lynk's "raw lock", in the sense of parking_lot's `RawMutex`: the
//! small piece a storage system must provide. Everything else (waiting,
//! heartbeats, takeover, fencing, lost-lease signals, in-process queuing)
//! lives in [`LockClient`](crate::LockClient) and works with any backend.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BackendError, BackendErrorKind, FencingToken, LockRecord, Version, WaitQueue};

/// What must be true of the stored record for a [`WriteRequest`] to apply.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Condition {
    /// No record exists under the key.
    Absent,
    /// No record exists under the key, **or** the record has `released == true`.
    Vacant,
    /// A record exists under the key and its version equals this one. Its
    /// `released` flag does not matter.
    VersionIs(Version),
    /// A record exists under the key, its version equals `version`, and its
    /// queue's [`revision`](WaitQueue::revision) equals `revision` (`None`:
    /// the record has no queue revision). Used by writes that change the
    /// queue, so that no waiter's entry is lost.
    QueueIs {
        /// The expected record version.
        version: Version,
        /// The expected queue revision.
        revision: Option<Version>,
    },
}

/// How a write sets the record's [`WaitQueue`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum QueueUpdate {
    /// Keep the stored queue (empty if there is no stored record).
    #[default]
    Keep,
    /// Store this queue (with its new revision). Pair it with
    /// [`Condition::QueueIs`] so entries added meanwhile are not lost.
    Set(WaitQueue),
}

/// How a write sets the record's fencing token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TokenUpdate {
    /// Keep the stored token unchanged. If the stored record has no token (or
    /// there is no stored record), the written record has none either.
    Keep,
    /// A new acquisition: the written token is the stored token plus one when
    /// the stored record exists and has a token, and `initial` otherwise.
    ///
    /// The engine passes the wall clock in microseconds as `initial`, so a
    /// record that was deleted (by a TTL, by `ReleaseMode::Delete`, or
    /// rewritten by a client that does not know tokens) restarts above every
    /// token it handed out before, provided acquisitions of one name happen
    /// less than once per microsecond and hosts' wall clocks do not lag each
    /// other by more than the time between two acquisitions.
    Next {
        /// The token for a record that has none.
        initial: u64,
    },
}

/// A conditional write of a whole record.
///
/// If [`condition`](WriteRequest::condition) holds, the stored record for
/// [`key`](WriteRequest::key) is replaced (or created) by one made of the
/// request's fields, with the fencing token set as
/// [`token`](WriteRequest::token) says. Otherwise nothing is written.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WriteRequest {
    /// The lock name.
    pub key: String,
    /// What must hold for the write to apply.
    pub condition: Condition,
    /// The version the written record carries. The engine makes a new one for
    /// every attempt, which is what lets it resolve ambiguous outcomes.
    pub version: Version,
    /// The written record's lease duration.
    pub lease_duration: Duration,
    /// The written record's host identifier.
    pub host: String,
    /// How the written record's fencing token is computed.
    pub token: TokenUpdate,
    /// The written record's payload; `None` removes any stored payload.
    pub payload: Option<Bytes>,
    /// The written record's `released` flag.
    pub released: bool,
    /// How the written record's queue is set.
    pub queue: QueueUpdate,
    /// The written record's [`granted_to`](LockRecord::granted_to).
    pub granted_to: Option<String>,
    /// The written record's [`holder_detail`](LockRecord::holder_detail);
    /// `None` removes it.
    pub holder_detail: Option<String>,
}

impl WriteRequest {
    /// The record this request stores when applied over `previous`.
    ///
    /// Backends that compute the new record themselves (such as in-memory or
    /// SQL stores) can call this to get the token arithmetic exactly right.
    pub fn record_over(&self, previous: Option<&LockRecord>) -> LockRecord {
        let previous_token = previous.and_then(|p| p.fencing_token);
        let fencing_token = match self.token {
            TokenUpdate::Keep => previous_token,
            TokenUpdate::Next { initial } => Some(match previous_token {
                Some(t) => FencingToken::new(t.get().saturating_add(1)),
                None => FencingToken::new(initial),
            }),
        };
        LockRecord {
            key: self.key.clone(),
            version: self.version.clone(),
            lease_duration: self.lease_duration,
            host: self.host.clone(),
            fencing_token,
            payload: self.payload.clone(),
            released: self.released,
            queue: match &self.queue {
                QueueUpdate::Keep => previous.map(|p| p.queue.clone()).unwrap_or_default(),
                QueueUpdate::Set(queue) => queue.clone(),
            },
            granted_to: self.granted_to.clone(),
            holder_detail: self.holder_detail.clone(),
        }
    }
}

/// A write of a lock's [`WaitQueue`] alone: everything else in the record
/// (version, lease, holder, token, payload, flags) stays as stored, so the
/// holder and the other waiters see no change of version.
///
/// It applies if a record exists under `key` whose version is `version` and
/// whose queue revision is `revision`; the stored queue becomes `queue`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QueueRequest {
    /// The lock name.
    pub key: String,
    /// The record version the waiter saw.
    pub version: Version,
    /// The queue revision the waiter saw (`None`: no revision stored).
    pub revision: Option<Version>,
    /// The queue to store; its revision is fresh, which is how the writer
    /// recognises its own write after a lost response.
    pub queue: WaitQueue,
}

impl QueueRequest {
    /// Whether the request's condition holds for the stored record `current`.
    pub fn holds_for(&self, current: Option<&LockRecord>) -> bool {
        current.is_some_and(|r| r.version == self.version && r.queue.revision == self.revision)
    }

    /// The record this request stores over `current` (for which
    /// [`holds_for`](QueueRequest::holds_for) is true).
    pub fn record_over(&self, current: &LockRecord) -> LockRecord {
        LockRecord {
            queue: self.queue.clone(),
            ..current.clone()
        }
    }
}

impl Condition {
    /// Whether this condition holds for the stored record `current`.
    pub fn holds_for(&self, current: Option<&LockRecord>) -> bool {
        match (self, current) {
            (Condition::Absent, None) | (Condition::Vacant, None) => true,
            (Condition::Absent, Some(_)) => false,
            (Condition::Vacant, Some(r)) => r.released,
            (Condition::VersionIs(_), None) => false,
            (Condition::VersionIs(v), Some(r)) => &r.version == v,
            (Condition::QueueIs { .. }, None) => false,
            (Condition::QueueIs { version, revision }, Some(r)) => {
                &r.version == version && &r.queue.revision == revision
            }
        }
    }
}

/// Why a conditional [`write`](LockBackend::write) or
/// [`delete`](LockBackend::delete) did not apply.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The condition did not hold; nothing was written.
    #[error("the lock record did not match the write's condition")]
    ConditionFailed {
        /// The stored record at the time of the check, if the store returned
        /// it with the failure (DynamoDB's `ALL_OLD`). `None` means "not
        /// returned": the engine then reads the record itself. A backend may
        /// always return `None`, at the cost of one extra read per conflict.
        current: Option<LockRecord>,
    },
    /// The store failed; see [`BackendError::kind`] for whether the write may
    /// have applied.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What a backend can do, so the conformance suite can pick its cases and
/// callers (such as fenced writes in `lynk-dynamo`) can choose a strategy.
/// The engine itself needs neither flag: it reads the record whenever a
/// failed condition did not return it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Capabilities {
    /// A failed condition returns the stored record in the same request.
    pub returns_current_on_conflict: bool,
    /// The store supports multi-item transactions: it implements
    /// [`write_all`](LockBackend::write_all) (a multi-lock takes free names in
    /// one request) and, on DynamoDB, fenced writes.
    pub transactions: bool,
    /// The store keeps a lock's [`WaitQueue`] and implements
    /// [`write_queue`](LockBackend::write_queue): waiters in other processes
    /// then queue in arrival order and a release grants the first of them.
    /// Without it, waiters poll and the order among processes is luck.
    pub wait_queue: bool,
}

impl Capabilities {
    /// Capabilities with every optional feature off.
    pub const fn minimal() -> Self {
        Capabilities {
            returns_current_on_conflict: false,
            transactions: false,
            wait_queue: false,
        }
    }

    /// Sets [`returns_current_on_conflict`](Capabilities::returns_current_on_conflict).
    pub const fn with_returns_current_on_conflict(mut self, yes: bool) -> Self {
        self.returns_current_on_conflict = yes;
        self
    }

    /// Sets [`transactions`](Capabilities::transactions).
    pub const fn with_transactions(mut self, yes: bool) -> Self {
        self.transactions = yes;
        self
    }

    /// Sets [`wait_queue`](Capabilities::wait_queue).
    pub const fn with_wait_queue(mut self, yes: bool) -> Self {
        self.wait_queue = yes;
        self
    }
}

/// A conditional store of lock records: the one trait a storage system
/// implements to back lynk.
///
/// # Contract
///
/// * One store holds at most one [`LockRecord`] per key. Keys are non-empty
///   UTF-8 strings of at most 2048 bytes.
/// * [`read`](LockBackend::read) is **strongly consistent**: it sees every
///   write that completed before it was sent.
/// * [`write`](LockBackend::write) and [`delete`](LockBackend::delete) are
///   **atomic compare-and-set** operations on one key: the check of the
///   condition and the write happen as one step, linearizable with every other
///   operation on the key.
/// * On success, `write` returns the record now stored, exactly
///   [`WriteRequest::record_over`] applied to the previous record.
/// * When the condition fails, nothing is written and the result is
///   [`WriteError::ConditionFailed`], carrying the stored record if the store
///   returned it in the same request (else `None`; the engine will read).
/// * When the outcome is unknown (a timeout, a lost response), return a
///   [`BackendError`] of kind
///   [`OutcomeUnknown`](crate::BackendErrorKind::OutcomeUnknown). The engine
///   resolves it: every write carries a fresh version, and a later conflict
///   that shows one of its own versions means the earlier attempt applied.
///   Retrying the *same* request internally is allowed for the same reason.
/// * Errors that say nothing was written (throttling, a refused connection)
///   use [`Throttled`](crate::BackendErrorKind::Throttled) or
///   [`Unavailable`](crate::BackendErrorKind::Unavailable); the engine backs
///   off and retries them inside the lease budget.
///
/// `lynk_testkit::conformance` checks all of this against any implementation.
///
/// # Example
///
/// A backend for a `HashMap` behind a mutex (this is essentially
/// `lynk_testkit::MemoryBackend`):
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use async_trait::async_trait;
/// use lynk_core::{BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest};
///
/// #[derive(Debug, Default)]
/// struct MapBackend(Mutex<HashMap<String, LockRecord>>);
///
/// #[async_trait]
/// impl LockBackend for MapBackend {
///     async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
///         Ok(self.0.lock().unwrap().get(key).cloned())
///     }
///     async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
///         let mut map = self.0.lock().unwrap();
///         let current = map.get(&request.key);
///         if !request.condition.holds_for(current) {
///             return Err(WriteError::ConditionFailed { current: current.cloned() });
///         }
///         let record = request.record_over(current);
///         map.insert(request.key.clone(), record.clone());
///         Ok(record)
///     }
///     async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
///         let mut map = self.0.lock().unwrap();
///         match map.get(key) {
///             Some(r) if &r.version == expected => { map.remove(key); Ok(()) }
///             current => Err(WriteError::ConditionFailed { current: current.cloned() }),
///         }
///     }
///     fn capabilities(&self) -> Capabilities {
///         Capabilities::minimal().with_returns_current_on_conflict(true)
///     }
/// }
/// ```
#[async_trait]
pub trait LockBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Reads the record stored under `key`, strongly consistent.
    ///
    /// # Cancel safety
    ///
    /// Must be cancel safe: dropping the future has no effect on the store.
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError>;

    /// Writes `request` as one compare-and-set; see the trait's contract.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the write applied or not; the engine
    /// treats that like [`OutcomeUnknown`](crate::BackendErrorKind::OutcomeUnknown).
    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError>;

    /// Writes `request` exactly as [`write`](LockBackend::write) does, for a
    /// caller that does not need the stored record back: the engine uses it
    /// for a release (and a grant to a queued waiter), whose record it wrote
    /// itself and never looks at again. Everything else is `write`'s
    /// contract: one compare-and-set; a failed condition is
    /// [`WriteError::ConditionFailed`] with the stored record where the
    /// backend returns it; a retried attempt finding this request's own
    /// version stored is a success.
    ///
    /// The default calls `write` and drops the record. Override it where
    /// skipping the record is cheaper (DynamoDB: `ReturnValues=NONE`, so no
    /// item to send, parse and convert).
    ///
    /// # Cancel safety
    ///
    /// As for [`write`](LockBackend::write).
    async fn write_no_return(&self, request: WriteRequest) -> Result<(), WriteError> {
        self.write(request).await.map(|_| ())
    }

    /// Deletes the record under `key` if its version is `expected`.
    ///
    /// # Cancel safety
    ///
    /// As for [`write`](LockBackend::write).
    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError>;

    /// Replaces the stored queue as `request` says, if its condition holds
    /// (see [`QueueRequest`]); returns the record now stored. Like
    /// [`write`](LockBackend::write), it is one atomic compare-and-set, and a
    /// failed condition returns [`WriteError::ConditionFailed`].
    ///
    /// Only called when [`Capabilities::wait_queue`] is set; the default
    /// implementation says the backend has no queue.
    ///
    /// # Cancel safety
    ///
    /// As for [`write`](LockBackend::write).
    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        let _ = request;
        Err(WriteError::Backend(BackendError::new(
            BackendErrorKind::Other,
            "this backend keeps no wait queue (Capabilities::wait_queue is false)",
        )))
    }

    /// Applies every request as **one atomic transaction**: all of them, or
    /// none. On success each stored record is exactly
    /// [`WriteRequest::record_over`] applied to the record it replaced; the
    /// stores need not return them, so callers condition each request on a
    /// record they read ([`Condition::Absent`] or
    /// [`Condition::VersionIs`]) and compute the records themselves. When any
    /// condition fails nothing is written and the result is
    /// [`WriteError::ConditionFailed`] (with that request's stored record, if
    /// the store returned it). Unknown outcomes are reported as for
    /// [`write`](LockBackend::write): every request carries a fresh version,
    /// so a later read tells whether the transaction applied.
    ///
    /// Only called when [`Capabilities::transactions`] is set; the default
    /// implementation says the backend has no transactions. A multi-lock
    /// uses it to take several free locks in one request.
    ///
    /// # Cancel safety
    ///
    /// As for [`write`](LockBackend::write).
    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        let _ = requests;
        Err(WriteError::Backend(BackendError::new(
            BackendErrorKind::Other,
            "this backend has no transactions (Capabilities::transactions is false)",
        )))
    }

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;
}

#[async_trait]
impl<T: LockBackend + ?Sized> LockBackend for std::sync::Arc<T> {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        (**self).read(key).await
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        (**self).write(request).await
    }

    async fn write_no_return(&self, request: WriteRequest) -> Result<(), WriteError> {
        (**self).write_no_return(request).await
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        (**self).delete(key, expected).await
    }

    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        (**self).write_queue(request).await
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        (**self).write_all(requests).await
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
}
