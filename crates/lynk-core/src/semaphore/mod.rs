//! Counting semaphores: N permits under one name, in one record.
//!
//! - [`handle`]: [`Semaphore`], the public handle;
//! - [`permit`]: [`Permit`], the guard of one held permit;
//! - [`core`]: the per-client, per-name task that reads and writes the record;
//! - [`table`]: the permit table stored in the record's payload;
//! - [`state`]: [`SemaphoreState`], the record as `describe` shows it.

mod core;
mod handle;
mod permit;
mod state;
mod table;

pub use handle::{Semaphore, MAX_PERMITS};
pub use permit::Permit;
pub use state::{PermitHolder, SemaphoreState};

pub(crate) use self::core::SemaphoreCore;
