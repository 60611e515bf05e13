//! The checker: reads the recorded history and reports every violation.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::world::{History, Holding, World};
use super::{SimPrimitive, SimReport};
use crate::FaultCounts;

pub(super) fn check(world: &World) -> SimReport {
    let h = world.history();
    let mut order: Vec<&Holding> = h.holdings.iter().collect();
    order.sort_by_key(|x| x.acquired);
    let mut report = SimReport {
        seed: world.config.seed,
        violations: h.problems.clone(),
        ..SimReport::default()
    };
    report.lost_on_arrival = order.iter().filter(|x| x.end() <= x.acquired).count() as u64;
    match world.config.primitive {
        SimPrimitive::Mutex | SimPrimitive::Election => {
            mutual_exclusion(world, &order, &mut report);
            fencing(world, &h.accepted[0], &order, &mut report);
            if world.config.check_liveness {
                liveness(world, &h, &order, &mut report);
            }
            fairness(&h, &order, &mut report);
            report.peak_holders = u64::from(!order.is_empty());
        }
        SimPrimitive::Semaphore { permits } => {
            permit_bound(world, &order, permits, &mut report);
            permit_tokens(world, &order, &mut report);
        }
        SimPrimitive::MultiLock { .. } => {
            for (name, accepted) in h.accepted.iter().enumerate() {
                per_name(world, accepted, &order, name, &mut report);
            }
        }
    }
    figures(world, &h, &mut report);
    report
}

/// A multi-lock run: for each name, its holdings (each running until the
/// earliest of its release, its multi-guard's lost signal and that name's
/// safe deadline) get the mutex's checks: no two overlap, tokens increase
/// in acquisition order, the name's oracle never accepted a lower token
/// after a higher one. A guard handed out with one of its locks already
/// lost holds nothing (its interval is empty): it is counted in
/// `lost_on_arrival`, and left out, since its token may be below that of
/// the acquisition that took the lost lock over.
fn per_name(
    world: &World,
    accepted: &[(Instant, usize, u64)],
    order: &[&Holding],
    name: usize,
    report: &mut SimReport,
) {
    let held: Vec<&Holding> = order
        .iter()
        .copied()
        .filter(|x| x.name == name && x.end() > x.acquired)
        .collect();
    let mut scratch = SimReport::default();
    mutual_exclusion(world, &held, &mut scratch);
    fencing(world, accepted, &held, &mut scratch);
    report.token_restarts += scratch.token_restarts;
    report.clock_dependent_restarts += scratch.clock_dependent_restarts;
    let label = &world.names[name];
    report.violations.extend(
        scratch
            .violations
            .into_iter()
            .map(|v| format!("{label}: {v}")),
    );
    // How many guards held this name at once (0 or 1 if all is well).
    report.peak_holders = report.peak_holders.max(peak(&held).0 as u64);
}

/// The most holdings overlapping at one instant, and the holdings at the
/// first instant more than `bound` overlap (if any). Intervals are
/// half-open: one ending at the instant another starts does not overlap it.
fn peak<'a>(order: &[&'a Holding]) -> (usize, Vec<(usize, Vec<&'a Holding>)>) {
    let mut events: Vec<(Instant, bool, usize)> = Vec::new();
    for (i, x) in order.iter().enumerate() {
        if x.end() > x.acquired {
            events.push((x.acquired, true, i));
            events.push((x.end(), false, i));
        }
    }
    // Ends before starts at the same instant (`false` < `true`).
    events.sort();
    let mut active: Vec<usize> = Vec::new();
    let mut most = 0;
    let mut snapshots = Vec::new();
    for (_, start, i) in events {
        if start {
            active.push(i);
            most = most.max(active.len());
            snapshots.push((active.len(), active.iter().map(|&j| order[j]).collect()));
        } else {
            active.retain(|&j| j != i);
        }
    }
    (most, snapshots)
}

/// Semaphore: at no instant do more than `permits` permit holdings overlap,
/// by the holders' own accounting (each from `acquire` returning to the
/// earliest of its release, its lost signal and its safe deadline, in real
/// time through its host's drift).
fn permit_bound(world: &World, order: &[&Holding], permits: u32, report: &mut SimReport) {
    let (most, snapshots) = peak(order);
    report.peak_holders = most as u64;
    for (count, active) in snapshots {
        if count <= permits as usize {
            continue;
        }
        let newest = active[active.len() - 1];
        let holders: Vec<String> = active
            .iter()
            .map(|x| {
                format!(
                    "host {} handle {} token {} [{:?}, {:?})",
                    x.host,
                    x.handle,
                    x.token,
                    world.at(x.acquired),
                    world.at(x.end())
                )
            })
            .collect();
        report.violations.push(format!(
            "overlap: {count} permits of {permits} held at once at {:?}: {}",
            world.at(newest.acquired),
            holders.join(", ")
        ));
    }
}

/// Semaphore: permit tokens are distinct, and a permit whose `acquire`
/// began after another's returned (at a later instant: at one instant of
/// the simulated time there is no order) has a higher token (its claiming
/// write was sent after the other's had applied). Permits whose acquisitions
/// overlapped in time may return in either order. The mutex's exception
/// (a token restarted from the wall clock below a token its client never
/// saw) applies only to the permit whose write created the record: a
/// semaphore's record is never deleted, so no later permit descends from a
/// wall-clock start after a deletion.
fn permit_tokens(world: &World, order: &[&Holding], report: &mut SimReport) {
    report.token_restarts = order.iter().filter(|x| x.restart.is_some()).count() as u64;
    let unseen = |next: &Holding, prev: &Holding| matches!(next.restart, Some(seen) if seen.is_none_or(|s| s < prev.token));
    for (i, y) in order.iter().enumerate() {
        for x in &order[..i] {
            let reused = x.token == y.token;
            let back = x.acquired < y.started && y.token <= x.token;
            if !(reused || back) {
                continue;
            }
            if unseen(y, x) {
                report.clock_dependent_restarts += 1;
                continue;
            }
            report.violations.push(format!(
                "token went back: permit token {} (host {} handle {}, acquired at {:?}) then {} (host {} handle {}, asked at {:?}, acquired at {:?}){}",
                x.token,
                x.host,
                x.handle,
                world.at(x.acquired),
                y.token,
                y.host,
                y.handle,
                world.at(y.started),
                world.at(y.acquired),
                if reused { ": the same token twice" } else { "" },
            ));
        }
    }
}

/// How often a handover after a release kept arrival order across hosts: an
/// acquisition that followed a release, by a blocking wait, while another
/// host's wait (on a host healthy throughout) had begun at least 0.5 s
/// earlier (beyond the first poll, which is when a waiter takes its place)
/// and was still waiting, passed that waiter over. A figure, not a check:
/// takeovers of stale leases and local handovers keep no order by design.
fn fairness(h: &History, order: &[&Holding], report: &mut SimReport) {
    const MARGIN: Duration = Duration::from_millis(500);
    let healthy = |host: usize, from: Instant, to: Instant| {
        !h.unhealthy
            .iter()
            .any(|&(hh, a, b)| hh == host && a < to && b > from)
    };
    for pair in order.windows(2) {
        let (prev, x) = (pair[0], pair[1]);
        let Some(released) = prev.released_at else {
            continue;
        };
        if x.acquired < released || prev.host == x.host {
            continue;
        }
        let Some(mine) = h
            .waits
            .iter()
            .find(|w| w.host == x.host && w.until == Some(x.acquired))
        else {
            continue; // a try_acquire
        };
        let earlier: Vec<_> = h
            .waits
            .iter()
            .filter(|w| {
                w.host != x.host
                    && w.host != prev.host
                    && w.since + MARGIN < mine.since
                    && w.until.is_none_or(|u| u > x.acquired + MARGIN)
                    && healthy(w.host, w.since, x.acquired)
            })
            .collect();
        let contended = h.waits.iter().any(|w| {
            w.host != x.host && w.since < x.acquired && w.until.is_none_or(|u| u > x.acquired)
        });
        if !contended {
            continue;
        }
        report.ordered_checks += 1;
        if earlier.is_empty() {
            report.in_arrival_order += 1;
        }
    }
}

/// 1. At most one holder by the holders' own accounting: no acquisition
///    starts before the latest end of the ones before it.
fn mutual_exclusion(world: &World, order: &[&Holding], report: &mut SimReport) {
    let mut latest: Option<&Holding> = None;
    for x in order {
        if let Some(prev) = latest {
            if x.acquired < prev.end() {
                report.violations.push(format!(
                    "overlap: host {} handle {} (token {}) acquired at {:?} while host {} handle {} (token {}) held until {:?}",
                    x.host, x.handle, x.token, world.at(x.acquired),
                    prev.host, prev.handle, prev.token, world.at(prev.end())
                ));
            }
        }
        if latest.is_none_or(|p| x.end() > p.end()) {
            latest = Some(x);
        }
    }
}

/// 2. Fencing: each acquisition's token is above the one before it, and the
///    oracle never accepted a lower token after a higher one.
///
/// The one allowed exception is the clock dependence `docs/concepts.md`
/// describes: a token restarted from the wall clock (the record had been
/// deleted) by a client that had never seen the previous token may be
/// lower, and so may the tokens that descend from such a start (a start
/// applied late, by a write held before the store, recreates a deleted
/// record below a token handed out meanwhile). It is counted, not reported.
/// A restart by a client that had seen the previous token must be above it.
fn fencing(
    world: &World,
    accepted: &[(Instant, usize, u64)],
    order: &[&Holding],
    report: &mut SimReport,
) {
    report.token_restarts = order.iter().filter(|x| x.restart.is_some()).count() as u64;
    for w in order.windows(2) {
        let (prev, next) = (w[0], w[1]);
        if next.token > prev.token {
            continue;
        }
        match next.restart.or(next.lineage) {
            Some(seen) if seen.is_none_or(|s| s < prev.token) => {
                report.clock_dependent_restarts += 1;
            }
            _ => report.violations.push(format!(
                "token went back: {} (host {} handle {}) then {} (host {} handle {}) at {:?}{}",
                prev.token,
                prev.host,
                prev.handle,
                next.token,
                next.host,
                next.handle,
                world.at(next.acquired),
                match next.restart {
                    Some(Some(seen)) => format!(
                        ", restarted from the wall clock although its client had seen token {seen}"
                    ),
                    _ => String::new(),
                }
            )),
        }
    }
    for w in accepted.windows(2) {
        if w[1].2 < w[0].2 {
            report.violations.push(format!(
                "the resource accepted token {} from host {} at {:?} after token {} from host {}",
                w[1].2,
                w[1].1,
                world.at(w[1].0),
                w[0].2,
                w[0].1
            ));
        }
    }
}

/// 4. Liveness: once the lock is free or abandoned, a waiter on a healthy
///    host gets it within `(max lease × (1 + d) + 2.4 × poll) / slowest
///    rate + lock_delay`, plus one grant lease × (1 + d) for each other host
///    that was paused or down meanwhile: its entry in the wait queue may be
///    granted the lock, and is skipped only when that grant goes stale.
fn liveness(world: &World, h: &History, order: &[&Holding], report: &mut SimReport) {
    let config = &world.config;
    let slowest = h.rates.iter().copied().fold(f64::INFINITY, f64::min);
    let lease = config.max_lease();
    let poll = lynk_core::ClientConfig::default()
        .poll_interval
        .min(lease / 4);
    let bound = (lease.mul_f64(1.0 + config.drift_allowance) + poll.mul_f64(2.4)).div_f64(slowest)
        + config.lock_delay
        + Duration::from_millis(50);
    let after_release = poll.mul_f64(2.4).div_f64(slowest) + Duration::from_millis(50);
    let skip = lynk_core::ClientConfig::default()
        .grant_lease()
        .mul_f64(1.0 + config.drift_allowance)
        .div_f64(slowest);
    // Hosts that were unhealthy at some point in [from, to] (the waiter's
    // own host too: an entry its earlier wait could not take out while it
    // was paused may still be queued ahead of it). Such a dead entry waits
    // for its turn at the head of the queue, up to a few releases later:
    // the window starts `LINGER` before the wait (or the release).
    const LINGER: Duration = Duration::from_secs(60);
    let stalled = |from: Instant, to: Instant| {
        let mut hosts: Vec<usize> = h
            .unhealthy
            .iter()
            .filter(|&&(_, a, b)| a < to && b > from)
            .map(|&(hh, _, _)| hh)
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts.len() as u32
    };
    // A waiter's host must have been healthy from a little before it had to
    // start watching (a call in flight when a pause ended) to its deadline.
    let settle = lynk_core::ClientConfig::default().call_timeout_for(lease);
    let healthy = |host: usize, from: Instant, to: Instant| {
        !h.unhealthy
            .iter()
            .any(|&(hh, a, b)| hh == host && a < to && b + settle > from)
    };
    for &(freed, by, how) in &h.freed {
        let until = order
            .iter()
            // A release may hand over at its very instant; the acquisition
            // a crash or pause ends may have been at its very instant.
            .find(|x| x.acquired > freed || (how == "release" && x.acquired == freed))
            .map_or(world.end, |x| x.acquired);
        // Waiters on healthy hosts that still waited a bound after the lock
        // was free (or after they began to wait, if later).
        // After a clean release the lock is free (or granted) at once: the
        // next acquisition is a poll or two away, not a lease.
        let base = if how == "release" {
            after_release
        } else {
            bound
        };
        let bound_for = |w: &&super::world::Wait| {
            base + skip
                * stalled(
                    w.since
                        .min(freed)
                        .checked_sub(LINGER)
                        .unwrap_or(world.start),
                    until,
                )
        };
        let mut checked = h.waits.iter().filter(|w| {
            let from = w.since.max(freed);
            let due = from + bound_for(w);
            w.since <= until
                && w.until.is_none_or(|end| end >= due.min(until))
                && healthy(w.host, from, due)
        });
        let Some(first) = checked.next() else {
            continue;
        };
        report.liveness_checks += 1;
        let late = std::iter::once(first)
            .chain(checked)
            .find(|w| w.since.max(freed) + bound_for(w) < until);
        if let Some(w) = late {
            report.violations.push(format!(
                "liveness: lock free at {:?} ({how} by host {by}), host {} waiting since {:?}, next acquisition at {:?} (bound {:?})",
                world.at(freed), w.host, world.at(w.since), world.at(until), bound_for(&w)
            ));
        }
    }
}

fn figures(world: &World, h: &History, report: &mut SimReport) {
    let c = &h.counts;
    report.operations = world.store.counts().total();
    report.acquisitions = h.holdings.len() as u64;
    let mut faults = FaultCounts::default();
    for f in world
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        faults += f.injected_by_kind();
    }
    report.faults = faults;
    for client in world
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let m = client.metrics();
        report.handovers += m.handovers;
        report.takeovers += m.takeovers;
        report.grants += m.grants;
        report.confirmed_grants += m.confirmed_grants;
        report.wakeup_polls += m.wakeups;
    }
    if let Some(w) = &world.wakes {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        report.wakeups_sent = get(&w.counts.sent);
        report.wakeups_lost = get(&w.counts.lost);
        report.wakeups_duplicated = get(&w.counts.duplicated);
        report.wakeups_delivered = get(&w.counts.delivered);
    }
    report.transactions = world
        .links
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|l| l.transactions.load(Ordering::Relaxed))
        .sum();
    report.partitioned_calls = world
        .links
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|l| l.partitioned_calls.load(Ordering::Relaxed))
        .sum();
    report.pauses = c.pauses;
    report.crashes = c.crashes;
    report.partitions = c.partitions;
    report.wall_steps = c.wall_steps;
    report.try_granted = c.try_granted;
    report.try_busy = c.try_busy;
    report.try_errors = c.try_errors;
    report.acquire_timeouts = c.acquire_timeouts;
    report.acquire_errors = c.acquire_errors;
    report.payload_checks = c.payload_checks;
    report.lost_signals = c.lost_signals;
    report.release_errors = c.release_errors;
    report.accepted_writes = h.accepted.iter().map(Vec::len).sum::<usize>() as u64;
    report.payload_changes = c.payload_changes;
    report.rejected_writes = c.rejected_writes;
}
