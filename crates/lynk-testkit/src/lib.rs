//! # lynk-testkit
//!
//! Tools to test lynk and anything built on it:
//!
//! * [`MemoryBackend`]: an in-memory lock table with exactly DynamoDB's
//!   conditional-write semantics, and request counters;
//! * [`TestClock`]: a controllable clock (advance by hand or let tokio's
//!   paused time auto-advance), with drift and wall-clock offsets;
//! * [`FaultyBackend`]: fault injection around any backend;
//! * [`CountingBackend`]: request counts around any backend;
//! * [`conformance`]: the suite every backend must pass.
//!
//! [`TestClock`] and the simulation ([`sim`]) run on tokio's paused time, so
//! they come with the default feature `test-clock`, which turns on tokio's
//! `test-util`. With `default-features = false` the rest stays (the `lynk`
//! binary uses it so, for its in-memory `demo`).
//!
//! ```
//! use std::time::Duration;
//! use lynk_core::LockClient;
//! use lynk_testkit::{MemoryBackend, TestClock};
//!
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() -> Result<(), lynk_core::LockError> {
//!     let backend = MemoryBackend::new();
//!     let client = LockClient::builder(backend.clone()).clock(TestClock::new()).build()?;
//!     let guard = client.create_lock("job").acquire().await?;
//!     TestClock::new().advance(Duration::from_secs(3600)).await; // an hour of heartbeats, instantly
//!     assert!(!guard.is_lost());
//!     guard.release().await
//! }
//! ```

#[cfg(feature = "test-clock")]
mod clock;
pub mod conformance;
mod counting;
mod faults;
mod memory;
pub mod proxy;
#[cfg(feature = "test-clock")]
pub mod sim;

#[cfg(feature = "test-clock")]
pub use clock::{TestClock, TEST_WALL_START};
pub use counting::{CountingBackend, RequestCounts};
pub use faults::{Fault, FaultCounts, FaultyBackend, Op, RandomFaults};
pub use memory::MemoryBackend;

/// A blocking lock factory over the process-wide in-memory table `table`: the
/// original lynk's `lynk.get_lock_factory('table')`, with no AWS involved.
pub fn get_lock_factory(
    table: &str,
) -> Result<lynk_core::blocking::LockFactory, lynk_core::LockError> {
    let backend = MemoryBackend::shared(table);
    lynk_core::blocking::LockFactory::new(move || lynk_core::LockClient::new(backend))
}

/// The README's code, compiled and run as a doctest so it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
