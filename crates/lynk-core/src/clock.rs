//! Time, as the lock engine sees it.
//!
//! Every decision lynk makes about time (when to heartbeat, when a lease is
//! lost, when a waiter may take over) goes through a [`Clock`]. Production code
//! uses [`SystemClock`]; tests use a controllable clock such as
//! `lynk_testkit::TestClock`, so a lease of twenty seconds can be tested in
//! microseconds and to the exact instant.
//!
//! The workspace's `clippy.toml` forbids `Instant::now`, `SystemTime::now` and
//! the runtime's sleeps everywhere else, so a direct call to the system clock
//! cannot slip into the engine by accident.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A future that completes when a [`Clock`] reaches a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of monotonic time, wall-clock time and timers.
///
/// Two kinds of time, kept apart on purpose:
///
/// * [`now`](Clock::now) is **monotonic** and local to this process. All lease
///   accounting uses it: a holder times its lease from before it sends a write,
///   a waiter times how long it has seen the same record version. Monotonic
///   instants are never compared across hosts.
/// * [`wall_now`](Clock::wall_now) is the **wall clock**. lynk uses it only to
///   seed the fencing token of a record that has none (see
///   [`TokenUpdate::Next`](crate::TokenUpdate::Next)) and for TTL clean-up.
///
/// Implementations must be cheap to call and safe to share between tasks.
///
/// # Example
///
/// ```
/// use lynk_core::{Clock, SystemClock};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let clock = SystemClock;
/// let start = clock.now();
/// clock.sleep(Duration::from_millis(1)).await;
/// assert!(clock.now() >= start + Duration::from_millis(1));
/// # }
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// The current wall-clock time.
    fn wall_now(&self) -> SystemTime;

    /// A future that completes once [`now`](Clock::now) has reached `deadline`.
    ///
    /// A deadline in the past completes at once.
    fn sleep_until(&self, deadline: Instant) -> Sleep;

    /// A future that completes once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }

    /// Wall-clock time as whole microseconds since the Unix epoch (0 before it).
    fn wall_micros(&self) -> u64 {
        self.wall_now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// The real clock: the tokio runtime's timers and the operating system's time.
///
/// Monotonic time comes from `tokio::time::Instant`, so a test that runs on a
/// paused tokio runtime (`#[tokio::test(start_paused = true)]`) also controls
/// this clock's monotonic time. Wall time always comes from the operating
/// system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[allow(clippy::disallowed_methods)] // the one place that may read the system clock
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        // Built lazily, so the future can be created outside a runtime and
        // polled inside one (e.g. by a blocking facade's `block_on`).
        Box::pin(async move { tokio::time::sleep_until(deadline.into()).await })
    }
}
