//! When a waiter polls: quickly at first, then at the poll interval.
//!
//! A waiter's first poll comes [`first_poll`](crate::ClientConfig::first_poll)
//! after its failed attempt, and each gap doubles while under half the poll
//! interval, then is the poll interval
//! (see [`ClientConfig::poll_interval_for`](crate::ClientConfig::poll_interval_for)).
//! A short critical section is thus seen to end within a gap of about its own
//! length, and a long wait settles at one read per poll interval. The quick
//! polls start over when the lock changes hands (a new fencing token, or a
//! grant), since the new holder's critical section may be short too: if no
//! other process is queued (or granted) ahead of this waiter, and if the
//! last quick polls were at least [`RESTART_AFTER_POLLS`] poll intervals
//! ago, so that any ten seconds of a wait cost about ten requests at most.

use std::time::Duration;

use crate::{ClientConfig, FencingToken, LockRecord};

/// How many poll intervals of waiting pay for one more run of quick polls.
pub(crate) const RESTART_AFTER_POLLS: u32 = 10;

/// The poll gaps of one waiter.
#[derive(Debug, Default)]
pub(crate) struct PollSchedule {
    /// The next gap; `None` starts over at the first poll.
    gap: Option<Duration>,
    /// The gaps handed out since the quick polls last started.
    since_quick: Duration,
    /// The last gap's cap (the poll interval for the lease then).
    cap: Duration,
    /// The acquisition whose wait the gaps time: its token, and whether the
    /// record was a grant.
    holder: Option<(Option<FencingToken>, bool)>,
}

impl PollSchedule {
    /// Notes the record a poll returned: a new holder starts the quick polls
    /// over if this waiter is `first_in_line` (no other process queued ahead
    /// of it, whose turn would come first) and the last quick polls are paid
    /// for.
    pub(crate) fn observe(&mut self, record: &LockRecord, first_in_line: bool) {
        let holder = (record.fencing_token, record.granted_to.is_some());
        if self.holder != Some(holder) {
            self.holder = Some(holder);
            let paid = self.since_quick >= self.cap.saturating_mul(RESTART_AFTER_POLLS);
            if first_in_line && paid {
                self.gap = None;
            }
        }
    }

    /// The gap before the next poll of a lock whose record says `lease`.
    pub(crate) fn next_gap(&mut self, config: &ClientConfig, lease: Duration) -> Duration {
        let cap = config.poll_interval_for(lease);
        let gap = match self.gap {
            Some(gap) => gap,
            None => {
                self.since_quick = Duration::ZERO;
                config.first_poll_for(lease)
            }
        }
        .min(cap);
        // Double while the doubled gap is under half the poll interval, then
        // the poll interval: 0.1, 0.2, 0.4, then 1.5 s by default. (A 0.8 s
        // step would cost a request in every 10 s of waiting for little.)
        let doubled = gap.saturating_mul(2);
        self.gap = Some(if doubled < cap / 2 { doubled } else { cap });
        self.since_quick += gap;
        self.cap = cap;
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Version;

    fn record(token: u64) -> LockRecord {
        LockRecord {
            key: "k".into(),
            version: Version::random(),
            lease_duration: Duration::from_secs(20),
            host: "h".into(),
            fencing_token: Some(FencingToken::new(token)),
            payload: None,
            released: false,
            queue: Default::default(),
            granted_to: None,
            holder_detail: None,
        }
    }

    #[test]
    fn gaps_double_from_the_first_poll_then_jump_to_the_poll_interval() {
        let config = ClientConfig::default();
        let mut s = PollSchedule::default();
        s.observe(&record(1), true);
        let gaps: Vec<u128> = (0..7)
            .map(|_| s.next_gap(&config, Duration::from_secs(20)).as_millis())
            .collect();
        assert_eq!(gaps, [100, 200, 400, 1500, 1500, 1500, 1500]);
    }

    #[test]
    fn a_new_holder_starts_the_quick_polls_over_but_a_heartbeat_does_not() {
        let config = ClientConfig::default();
        let lease = Duration::from_secs(20);
        let mut s = PollSchedule::default();
        s.observe(&record(1), true);
        for _ in 0..5 {
            s.next_gap(&config, lease);
        }
        s.observe(&record(1), true); // a heartbeat: same token
        assert_eq!(s.next_gap(&config, lease), Duration::from_millis(1500));
        s.observe(&record(2), true); // a new acquisition, too soon
        assert_eq!(s.next_gap(&config, lease), Duration::from_millis(1500));
        for _ in 0..10 {
            s.next_gap(&config, lease);
        }
        s.observe(&record(2), true); // the same holder
        assert_eq!(s.next_gap(&config, lease), Duration::from_millis(1500));
        s.observe(&record(3), true); // a new acquisition, quick polls paid for
        assert_eq!(s.next_gap(&config, lease), Duration::from_millis(100));
        for _ in 0..20 {
            s.next_gap(&config, lease);
        }
        let mut grant = record(3);
        grant.granted_to = Some("w".into());
        s.next_gap(&config, lease);
        s.observe(&grant, true); // released to a waiter
        assert_eq!(s.next_gap(&config, lease), Duration::from_millis(100));
        for _ in 0..5 {
            s.next_gap(&config, lease);
        }
        s.observe(&record(3), false); // a new holder, but others are ahead
        assert_eq!(s.next_gap(&config, lease), Duration::from_millis(1500));
    }

    #[test]
    fn a_ten_second_wait_costs_at_most_ten_requests_with_the_defaults() {
        // The first attempt, then polls at the schedule's gaps (before the
        // +0..20% jitter, which only spaces them further).
        let config = ClientConfig::default();
        let mut s = PollSchedule::default();
        s.observe(&record(1), true);
        let (mut t, mut requests) = (Duration::ZERO, 1);
        loop {
            t += s.next_gap(&config, Duration::from_secs(20));
            if t >= Duration::from_secs(10) {
                break;
            }
            requests += 1;
        }
        assert!(requests <= 10, "{requests} requests in 10 s");
    }

    #[test]
    fn short_leases_poll_at_a_quarter_of_the_lease() {
        let config = ClientConfig::default();
        let mut s = PollSchedule::default();
        let lease = Duration::from_millis(200);
        let gaps: Vec<u128> = (0..3)
            .map(|_| s.next_gap(&config, lease).as_millis())
            .collect();
        assert_eq!(gaps, [50, 50, 50]);
    }
}
