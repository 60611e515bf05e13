//! Counters a user can scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of one [`LockClient`](crate::LockClient).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) acquired: AtomicU64,
    pub(crate) acquire_attempts: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) takeovers: AtomicU64,
    pub(crate) handovers: AtomicU64,
    pub(crate) grants: AtomicU64,
    pub(crate) confirmed_grants: AtomicU64,
    pub(crate) wakeups: AtomicU64,
    pub(crate) releases: AtomicU64,
    pub(crate) heartbeats: AtomicU64,
    pub(crate) heartbeat_failures: AtomicU64,
    pub(crate) lost_leases: AtomicU64,
    pub(crate) ambiguous_resolved: AtomicU64,
    pub(crate) max_heartbeat_lag_micros: AtomicU64,
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_lag(&self, lag: Duration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.max_heartbeat_lag_micros
            .fetch_max(micros, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            acquired: get(&self.acquired),
            acquire_attempts: get(&self.acquire_attempts),
            waits: get(&self.waits),
            polls: get(&self.polls),
            takeovers: get(&self.takeovers),
            handovers: get(&self.handovers),
            grants: get(&self.grants),
            confirmed_grants: get(&self.confirmed_grants),
            wakeups: get(&self.wakeups),
            releases: get(&self.releases),
            heartbeats: get(&self.heartbeats),
            heartbeat_failures: get(&self.heartbeat_failures),
            lost_leases: get(&self.lost_leases),
            ambiguous_resolved: get(&self.ambiguous_resolved),
            max_heartbeat_lag: Duration::from_micros(get(&self.max_heartbeat_lag_micros)),
        }
    }
}

/// A copy of a client's counters at one moment; see
/// [`LockClient::metrics`](crate::LockClient::metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Locks granted (including local handovers and takeovers).
    pub acquired: u64,
    /// Conditional acquire writes sent to the store.
    pub acquire_attempts: u64,
    /// Acquisitions that found the lock held and had to wait.
    pub waits: u64,
    /// Reads (and queue writes, which answer like reads) a waiter sent while
    /// the lock was held.
    pub polls: u64,
    /// Locks taken over from a holder whose lease ran out.
    pub takeovers: u64,
    /// Releases that handed the lock to a waiter in this process in one write.
    pub handovers: u64,
    /// Grants written to the first waiter of the store's queue: by a release,
    /// or over a stale lease or grant.
    pub grants: u64,
    /// Grants to this client that it confirmed (acquisitions by grant).
    pub confirmed_grants: u64,
    /// Wake-up datagrams received that led to an early poll (after rate
    /// limiting).
    pub wakeups: u64,
    /// Releases written to the store.
    pub releases: u64,
    /// Heartbeats that succeeded.
    pub heartbeats: u64,
    /// Heartbeats that failed (and were retried, or led to a lost lease).
    pub heartbeat_failures: u64,
    /// Leases that were lost (lost-lease signal fired).
    pub lost_leases: u64,
    /// Writes whose outcome was unknown and later found to have applied.
    pub ambiguous_resolved: u64,
    /// The largest delay between a heartbeat's due time and its send.
    pub max_heartbeat_lag: Duration,
}
