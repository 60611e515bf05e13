//! # lynk-core
//!
//! The storage-agnostic heart of lynk, a distributed lock manager: leases
//! with automatic heartbeats, takeover of abandoned locks without trusting
//! clocks across hosts, fencing tokens, lost-lease signals, in-process FIFO
//! queuing and handover, and a blocking facade.
//!
//! A store plugs in by implementing the small [`LockBackend`] trait (a
//! conditional store of [`LockRecord`]s). `lynk-dynamo` implements it on
//! DynamoDB; `lynk-testkit` has an in-memory backend, a controllable clock
//! and the conformance suite any backend can run.
//!
//! ```
//! use lynk_core::LockClient;
//! # use lynk_core::{BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest};
//! # #[derive(Debug, Default)] struct MyBackend(std::sync::Mutex<Option<LockRecord>>);
//! # #[async_trait::async_trait] impl LockBackend for MyBackend {
//! #   async fn read(&self, _: &str) -> Result<Option<LockRecord>, BackendError> { Ok(self.0.lock().unwrap().clone()) }
//! #   async fn write(&self, r: WriteRequest) -> Result<LockRecord, WriteError> {
//! #     let mut s = self.0.lock().unwrap();
//! #     if !r.condition.holds_for(s.as_ref()) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
//! #     let rec = r.record_over(s.as_ref()); *s = Some(rec.clone()); Ok(rec) }
//! #   async fn delete(&self, _: &str, v: &Version) -> Result<(), WriteError> {
//! #     let mut s = self.0.lock().unwrap();
//! #     if s.as_ref().map(|r| &r.version) != Some(v) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
//! #     *s = None; Ok(()) }
//! #   fn capabilities(&self) -> Capabilities { Capabilities::minimal() }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lynk_core::LockError> {
//! let client = LockClient::new(MyBackend::default())?;
//! let guard = client.create_lock("nightly-migration").acquire().await?;
//! let token = guard.fencing_token(); // send it with every write you protect
//! guard.run(async { /* work; cancelled if the lease is lost */ }).await?;
//! guard.release().await?;
//! # let _ = token; Ok(()) }
//! ```
//!
//! See `docs/concepts.md` in the repository for the protocol and its
//! guarantees.

mod backend;
mod backend_error;
pub mod blocking;
mod client;
mod clock;
mod config;
mod election;
mod engine;
mod error;
mod guard;
mod lock;
mod metrics;
mod multi;
mod record;
mod registry;
mod semaphore;
mod wake;

pub use backend::{
    Capabilities, Condition, LockBackend, QueueRequest, QueueUpdate, TokenUpdate, WriteError,
    WriteRequest,
};
pub use backend_error::{BackendError, BackendErrorKind};
pub use client::{LockClient, LockClientBuilder};
pub use clock::{Clock, Sleep, SystemClock};
pub use config::{
    ClientConfig, Mutations, ReleaseMode, WakeUps, MAX_LEASE, MAX_NAME_BYTES, MAX_PAYLOAD_BYTES,
    MIN_LEASE,
};
pub use election::*;
pub use engine::ShutdownReport;
pub use error::{LockError, LostReason};
pub use guard::{LeaseWatch, LockGuard};
pub use lock::Lock;
pub use metrics::MetricsSnapshot;
pub use multi::*;
pub use record::{FencingToken, LockRecord, QueueEntry, Version, WaitQueue};
pub use semaphore::*;
pub use wake::{
    encode_wake, parse_wake, Wake, WakeError, WakeLimiter, WakeLimits, WakeListener, WakeSender,
    WakeTransport, DEFAULT_WAKE_LIMITER_KEYS, MAX_WAKE_DATAGRAM_BYTES, WAKE_PROTOCOL,
};

pub use async_trait::async_trait;
pub use bytes::Bytes;
