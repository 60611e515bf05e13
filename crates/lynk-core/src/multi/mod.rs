//! Multi-locks: several names taken all or nothing, in one global order.
//!
//! A [`MultiLock`] acquires each of its names through the ordinary lock
//! engine, one after the other, in byte order of the names. Because every
//! multi-lock (and every caller that follows the same rule) takes names in
//! that one order, two multi-locks over overlapping sets can never wait for
//! each other in a cycle: no deadlock. If one name cannot be taken, the names
//! already taken are released before the error is returned, so the caller
//! ends up holding every name or none.
//!
//! The [`MultiGuard`] holds one [`LockGuard`] per name: each keeps its own
//! fencing token and is heartbeated by the engine like any lock; losing any
//! one of them fires the multi-guard's lost signal.
//!
//! See `docs/multi-lock.md` in the repository for the guide.

mod guard;
mod lock;

pub use guard::MultiGuard;
pub use lock::{MultiLock, MAX_MULTI_LOCK_NAMES};
