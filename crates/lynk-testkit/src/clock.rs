//! A controllable clock for tests, built on tokio's paused time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lynk_core::{Clock, Sleep};

/// A clock under the test's control, with an optional drift rate and
/// wall-clock offset.
///
/// It runs on tokio's time, so on a paused runtime
/// (`#[tokio::test(start_paused = true)]`) time stands still until the test
/// calls [`TestClock::advance`] or every task is idle, at which point tokio
/// jumps to the next timer (auto-advance). A twenty-second lease then takes
/// microseconds to test, to the exact instant.
///
/// Several `TestClock`s with different [`drift`](TestClock::with_drift) rates
/// model hosts whose clocks run at different speeds; they share tokio's
/// underlying "real" time.
///
/// The wall clock can also be stepped while the clock is in use
/// ([`TestClock::step_wall`], as NTP does to a host that was far off); the
/// step shows in every clone, so the clock handed to a client can be stepped
/// from outside.
///
/// ```
/// use std::time::Duration;
/// use lynk_core::Clock;
/// use lynk_testkit::TestClock;
///
/// #[tokio::main(flavor = "current_thread", start_paused = true)]
/// async fn main() {
///     let clock = TestClock::new();
///     let t0 = clock.now();
///     clock.sleep(Duration::from_secs(3600)).await; // returns at once: time auto-advances
///     assert_eq!(clock.now() - t0, Duration::from_secs(3600));
/// }
/// ```
#[derive(Clone, Debug)]
pub struct TestClock {
    base_real: tokio::time::Instant,
    rate: f64,
    wall_base: SystemTime,
    /// Nanoseconds added to the wall time by [`TestClock::step_wall`],
    /// shared by clones.
    wall_step: Arc<AtomicI64>,
}

/// The wall time every `TestClock` starts at: 2026-01-01T00:00:00Z.
pub const TEST_WALL_START: Duration = Duration::from_secs(1_767_225_600);

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

#[allow(clippy::disallowed_methods)] // a clock is the one place that reads the runtime's time
impl TestClock {
    /// A clock running at tokio's rate, with wall time starting at
    /// [`TEST_WALL_START`].
    pub fn new() -> Self {
        TestClock {
            base_real: tokio::time::Instant::now(),
            rate: 1.0,
            wall_base: UNIX_EPOCH + TEST_WALL_START,
            wall_step: Arc::default(),
        }
    }

    /// The same clock, but running `rate` times as fast as tokio's time
    /// (`1.01` is one percent fast). Panics if `rate` is not positive.
    pub fn with_drift(mut self, rate: f64) -> Self {
        assert!(
            rate.is_finite() && rate > 0.0,
            "drift rate must be positive"
        );
        self.rate = rate;
        self
    }

    /// The same clock with its wall time shifted by `offset` (ahead when
    /// `ahead`, else behind): hosts whose wall clocks disagree.
    pub fn with_wall_offset(mut self, offset: Duration, ahead: bool) -> Self {
        self.wall_base = if ahead {
            self.wall_base + offset
        } else {
            self.wall_base - offset
        };
        self
    }

    /// Steps the wall time of this clock and of every clone of it by `by`
    /// (forward when `ahead`, else back), now: the wall clock jumps, as when
    /// NTP corrects a host. Monotonic time ([`Clock::now`]) is unaffected.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lynk_core::Clock;
    /// use lynk_testkit::TestClock;
    ///
    /// #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// async fn main() {
    ///     let clock = TestClock::new();
    ///     let handed_out = clock.clone();
    ///     let before = handed_out.wall_micros();
    ///     clock.step_wall(Duration::from_secs(3), false);
    ///     assert_eq!(before - handed_out.wall_micros(), 3_000_000);
    /// }
    /// ```
    pub fn step_wall(&self, by: Duration, ahead: bool) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let delta = if ahead { nanos } else { -nanos };
        self.wall_step.fetch_add(delta, Ordering::Relaxed);
    }

    /// The total of the wall steps so far (positive: ahead), in nanoseconds.
    pub fn wall_stepped_nanos(&self) -> i64 {
        self.wall_step.load(Ordering::Relaxed)
    }

    /// Lets `duration` of tokio's time (real, not drifted) pass, firing every
    /// timer due on the way in order and letting the woken tasks run at each,
    /// as if that much time had really passed. On a paused runtime this takes
    /// no wall time at all.
    pub async fn advance(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    /// The instant of tokio's (real) time at which this clock shows `local`:
    /// converts a drifting host's instants to the shared time line.
    pub fn to_real(&self, local: Instant) -> Instant {
        let since = local.saturating_duration_since(self.base_real.into_std());
        self.base_real.into_std() + since.div_f64(self.rate)
    }

    /// The drift rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn elapsed_local(&self) -> Duration {
        (tokio::time::Instant::now() - self.base_real).mul_f64(self.rate)
    }
}

#[allow(clippy::disallowed_methods)]
impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.base_real.into_std() + self.elapsed_local()
    }

    fn wall_now(&self) -> SystemTime {
        let unstepped = self.wall_base + self.elapsed_local();
        let step = self.wall_step.load(Ordering::Relaxed);
        let by = Duration::from_nanos(step.unsigned_abs());
        if step >= 0 {
            unstepped + by
        } else {
            unstepped.checked_sub(by).unwrap_or(UNIX_EPOCH)
        }
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let local = deadline.saturating_duration_since(self.base_real.into_std());
        let mut real = self.base_real + local.div_f64(self.rate);
        if self.rate != 1.0 {
            // Round up, so `now()` is never a hair short of the deadline on wake.
            real += Duration::from_micros(1);
        }
        Box::pin(tokio::time::sleep_until(real))
    }
}
