//! Review of the grant lease taken from the grantee's queue entry
//! (`QueueEntry::poll`, `ClientConfig::grant_lease_for`): a granting holder
//! gives a grant `max(grant_timeout, 3 x the waiter's poll_interval)`
//! (its own poll interval for an entry without one), capped at `MAX_LEASE`.
//!
//! Several `LockClient`s on one `MemoryBackend` are several processes; the
//! [`Monitor`] records two processes holding at once and a fencing token
//! that does not go up. The review's two findings (a backoff after failed
//! reads outlasting the grant; a dead waiter configured to poll slowly
//! holding up a short-lease lock for three of its configured polls) were
//! fixed: the entry advertises the poll interval for the lease its waiter
//! queued on, and a queued waiter sleeps no longer than that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lynk_core::{
    BackendErrorKind, ClientConfig, Clock, LockClient, LockError, LockRecord, QueueEntry, Version,
    MAX_LEASE,
};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};
use tokio::task::JoinHandle;

mod common;
use common::monitor::Monitor;
use common::{ms, process_with, secs};

const NAME: &str = "job";

/// The default configuration with `poll_interval` `poll` and default lease
/// `lease`.
fn polling(poll: Duration, lease: Duration) -> ClientConfig {
    ClientConfig {
        poll_interval: poll,
        default_lease: lease,
        ..ClientConfig::default()
    }
}

/// A waiter in process `c`: acquires, tells the monitor, holds for `hold`,
/// releases.
fn waiter(
    c: &LockClient,
    host: &str,
    hold: Duration,
    mon: &Monitor,
) -> JoinHandle<Result<(), LockError>> {
    let (c, host, mon) = (c.clone(), host.to_owned(), mon.clone());
    tokio::spawn(async move {
        let g = c.create_lock(NAME).acquire().await?;
        mon.acquired(&host, &g, c.clock().now());
        c.clock().sleep(hold).await;
        g.release().await
    })
}

async fn at(clock: &TestClock, t0: Instant, d: Duration) {
    clock.sleep_until(t0 + d).await;
}

fn stored(mem: &MemoryBackend) -> LockRecord {
    mem.get(NAME).expect("a stored record")
}

/// The stored queue entry of `host`.
fn entry_of(mem: &MemoryBackend, host: &str) -> Option<QueueEntry> {
    stored(mem)
        .queue
        .entries
        .into_iter()
        .find(|e| e.host == host)
}

/// A queue entry of a process that is not there (died after queueing, or
/// never existed), polling every `poll` (`None`: an older lynk's entry).
fn ghost(id: &str, poll: Option<Duration>) -> QueueEntry {
    QueueEntry {
        id: id.to_owned(),
        host: format!("ghost-{id}"),
        wake: None,
        poll,
    }
}

/// Puts `entries` at the back of the stored queue, under a new revision, as
/// waiters of other processes would (the holder's version is kept).
fn queue_behind(mem: &MemoryBackend, entries: &[QueueEntry]) {
    let mut r = stored(mem);
    for e in entries {
        r.queue = r.queue.with(e.clone());
    }
    r.queue.revision = Some(Version::random());
    mem.put_raw(r);
}

// ---------------------------------------------------------------------------
// 1. The grant record's lease
// ---------------------------------------------------------------------------

/// A waiter's queue entry carries its configured poll interval, and the
/// grant to it lasts three of them (or the granter's `grant_timeout`, if
/// longer): a default granter (poll 1.5 s, grant 5 s) gives a waiter polling
/// every 10 s a 30 s grant (fails if the grant lease ignores the entry's
/// poll: 5 s).
#[tokio::test(start_paused = true)]
async fn grant_to_a_slow_waiter_lasts_three_of_its_polls() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process_with(mem.clone(), &clock, "h", 1, polling(ms(1500), secs(60)));
    let x = process_with(mem.clone(), &clock, "x", 2, polling(secs(10), secs(60)));
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", ms(100), &mon);
    at(&clock, t0, secs(2)).await;
    let e = entry_of(&mem, "x").expect("x queued");
    assert_eq!(e.poll, Some(secs(10)), "the entry carries x's poll");
    g.release().await.unwrap();
    let r = stored(&mem);
    assert_eq!(r.granted_to.as_deref(), Some(e.id.as_str()));
    assert_eq!(
        r.lease_duration,
        secs(30),
        "a grant to a waiter polling every 10 s lasts 3 x 10 s"
    );
    common::within(&clock, secs(60), wx)
        .await
        .expect("x confirmed its grant")
        .unwrap()
        .unwrap();
    assert_eq!(x.metrics().confirmed_grants, 1);
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// The other way round: a granter that polls slowly (10 s, so its own
/// `grant_lease()` is 30 s) gives a waiter polling every 200 ms only its
/// `grant_timeout` (5 s), so a fast waiter that dies blocks the lock no
/// longer than that (fails if the grant lease is the granter's own: 30 s).
#[tokio::test(start_paused = true)]
async fn grant_to_a_fast_waiter_from_a_slow_granter_lasts_the_grant_timeout() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process_with(mem.clone(), &clock, "h", 1, polling(secs(10), secs(60)));
    assert_eq!(h.config().grant_lease(), secs(30));
    let x = process_with(mem.clone(), &clock, "x", 2, polling(ms(200), secs(60)));
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", ms(100), &mon);
    at(&clock, t0, secs(2)).await;
    let e = entry_of(&mem, "x").expect("x queued");
    assert_eq!(e.poll, Some(ms(200)));
    g.release().await.unwrap();
    let r = stored(&mem);
    assert_eq!(r.granted_to.as_deref(), Some(e.id.as_str()));
    assert_eq!(r.lease_duration, secs(5));
    common::within(&clock, secs(10), wx)
        .await
        .expect("x confirmed its grant")
        .unwrap()
        .unwrap();
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// What a granter makes of entries it did not write: one without a poll
/// (an older lynk) gets the granter's own grant lease; a zero poll gets the
/// `grant_timeout`; a poll of `MAX_LEASE` (or past it) gets `MAX_LEASE`,
/// never more (fails if the grant lease ignores the entry's poll, or is not
/// capped).
#[tokio::test(start_paused = true)]
async fn grants_to_entries_without_or_with_odd_polls() {
    let cases = [
        (None, secs(9)), // the granter's own: 3 x 3 s
        (Some(Duration::ZERO), secs(5)),
        (Some(ms(1)), secs(5)),
        (
            Some(Duration::from_nanos(1_666_666_667)),
            Duration::from_nanos(5_000_000_001),
        ),
        (Some(secs(2)), secs(6)),
        (Some(secs(3600)), secs(3 * 3600)),
        (Some(MAX_LEASE), MAX_LEASE),
        (Some(Duration::MAX), MAX_LEASE),
    ];
    for (poll, lease) in cases {
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let h = process_with(mem.clone(), &clock, "h", 1, polling(secs(3), secs(60)));
        let g = h.create_lock(NAME).acquire().await.unwrap();
        queue_behind(&mem, &[ghost("g", poll)]);
        g.release().await.unwrap();
        let r = stored(&mem);
        assert_eq!(r.granted_to.as_deref(), Some("g"), "poll {poll:?}");
        assert_eq!(r.lease_duration, lease, "poll {poll:?}");
        assert!(r.queue.is_empty(), "poll {poll:?}");
    }
}

/// A grantee with nobody left to take the lock passes its grant on to the
/// next entry; that grant lasts three of the NEXT waiter's polls, not the
/// passing process's (fails if the grant lease ignores the entry's poll:
/// x's own 3 x 4 s).
#[tokio::test(start_paused = true)]
async fn a_grant_passed_on_lasts_three_of_the_next_waiters_polls() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process_with(mem.clone(), &clock, "h", 1, polling(ms(1500), secs(240)));
    let x = process_with(mem.clone(), &clock, "x", 2, polling(secs(4), secs(240)));
    let g = h.create_lock(NAME).acquire().await.unwrap();
    // x waits at most 30 s; its acquirer reads every 4-4.8 s.
    let wx = {
        let x = x.clone();
        tokio::spawn(async move { x.create_lock(NAME).acquire_timeout(secs(30)).await })
    };
    at(&clock, t0, secs(2)).await;
    let ex = entry_of(&mem, "x").expect("x queued");
    // Behind x: a waiter that polls every 20 s (not there: only its entry).
    queue_behind(&mem, &[ghost("next", Some(secs(20)))]);
    // h releases 0.1 s before x's waiter gives up: x reads the grant only
    // after that (its acquirer then has nobody to take the lock for).
    at(&clock, t0, ms(29_900)).await;
    g.release().await.unwrap();
    let r = stored(&mem);
    assert_eq!(r.granted_to.as_deref(), Some(ex.id.as_str()));
    assert_eq!(r.lease_duration, secs(12), "x's own 3 x 4 s");
    let out = common::within(&clock, secs(10), wx)
        .await
        .expect("x's acquire ended")
        .unwrap();
    assert!(out.is_err(), "x's waiter timed out: {out:?}");
    common::settle().await;
    clock.advance(secs(10)).await;
    let r = stored(&mem);
    assert_eq!(
        r.granted_to.as_deref(),
        Some("next"),
        "x passed its grant on: {r:?}"
    );
    assert_eq!(
        r.lease_duration,
        secs(60),
        "the grant passed on lasts 3 x the next waiter's 20 s"
    );
}

// ---------------------------------------------------------------------------
// 2. Live waiters see their grants; dead ones are skipped after the lease
// ---------------------------------------------------------------------------

/// A live waiter polling every 20 s (behind 240 s leases: it reads every
/// 20-24 s) is granted the lock while a default waiter (poll 1.5 s) is
/// queued behind it and watches the grant. Whatever the release's phase
/// against x's polls, x confirms its grant before z may take it over: no
/// takeover, x first, then z (fails if the grant lease ignores the entry's
/// poll: z takes the 5 s grant over and x loses its place).
#[tokio::test(start_paused = true)]
async fn a_live_slow_waiter_confirms_before_a_fast_one_may_take_over() {
    for release_at in [61_000, 64_000, 67_500, 71_000, 75_000, 79_500] {
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let t0 = clock.now();
        let lease = secs(240);
        let h = process_with(mem.clone(), &clock, "h", 1, polling(ms(1500), lease));
        let x = process_with(mem.clone(), &clock, "x", 2, polling(secs(20), lease));
        let z = process_with(mem.clone(), &clock, "z", 3, polling(ms(1500), lease));
        let mon = Monitor::default();
        let g = h.create_lock(NAME).acquire().await.unwrap();
        mon.acquired("h", &g, clock.now());
        let wx = waiter(&x, "x", ms(100), &mon);
        at(&clock, t0, secs(1)).await;
        let wz = waiter(&z, "z", ms(100), &mon);
        at(&clock, t0, ms(release_at)).await;
        assert_eq!(
            stored(&mem)
                .queue
                .entries
                .iter()
                .map(|e| e.host.as_str())
                .collect::<Vec<_>>(),
            ["x", "z"]
        );
        g.release().await.unwrap();
        for w in [wx, wz] {
            common::within(&clock, secs(120), w)
                .await
                .expect("both waiters got the lock")
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            (
                mon.order(),
                z.metrics().takeovers,
                x.metrics().confirmed_grants
            ),
            (vec!["h".to_owned(), "x".into(), "z".into()], 0, 1),
            "release at {release_at} ms: {:?}",
            mon.log(t0)
        );
        assert_eq!(mon.violations(), Vec::<String>::new());
    }
}

/// The price of a long grant: a waiter polling every 20 s that died with
/// its entry queued is granted the lock, which nobody then holds for three
/// of its polls (60 s) plus the drift allowance; only then does the next
/// waiter take it over, with a higher token. Not before (the grantee might
/// still confirm), and not much after (fails if the grant lease ignores the
/// entry's poll: z takes over after about 5 s).
#[tokio::test(start_paused = true)]
async fn a_dead_slow_waiter_holds_up_the_lock_for_three_of_its_polls() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process_with(mem.clone(), &clock, "h", 1, polling(ms(1500), secs(20)));
    let z = process_with(mem.clone(), &clock, "z", 3, polling(ms(1500), secs(20)));
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    queue_behind(&mem, &[ghost("dead", Some(secs(20)))]);
    let wz = waiter(&z, "z", ms(100), &mon);
    at(&clock, t0, secs(5)).await;
    let released = clock.now();
    g.release().await.unwrap();
    assert_eq!(stored(&mem).granted_to.as_deref(), Some("dead"));
    assert_eq!(stored(&mem).lease_duration, secs(60));
    common::within(&clock, secs(120), wz)
        .await
        .expect("z took over the stale grant")
        .unwrap()
        .unwrap();
    let z_at = mon.when("z", 0).unwrap() - released;
    // z watches the grant from its first read after the release (within a
    // poll, 1.8 s with jitter) for 60 s x 1.01, then reads at most a poll
    // later.
    assert!(
        z_at >= ms(60_600) && z_at <= ms(60_600 + 2 * 1800),
        "z got the lock {z_at:?} after the release"
    );
    assert_eq!(z.metrics().takeovers, 1);
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// Processes with poll intervals from 100 ms to 20 s, each slow poller
/// queued right behind a fast one (whose own grant lease is 5 s), take a
/// lock in turn, holding it `hold` each time, for 15 minutes:
/// nobody is ever taken over (every grant is confirmed by its live grantee
/// in time), everybody gets the lock, and mutual exclusion and fencing hold
/// (fails if the grant lease ignores the entry's poll: the slow pollers'
/// grants from fast granters go stale and are taken over).
#[tokio::test(start_paused = true)]
async fn mixed_poll_intervals_under_contention_never_take_over_a_grant() {
    for hold in [secs(3), secs(25)] {
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let t0 = clock.now();
        let lease = secs(120);
        // In arrival order: each slow poller queues right behind a fast one.
        let polls = [ms(100), secs(20), ms(1500), secs(10), secs(4)];
        let clients: Vec<(String, LockClient)> = polls
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let host = format!("p{i}");
                let config = polling(*p, lease);
                let c = process_with(mem.clone(), &clock, &host, i as u64 + 1, config);
                (host, c)
            })
            .collect();
        let mon = Monitor::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut loops = Vec::new();
        for (i, (host, c)) in clients.iter().enumerate() {
            let (c, host, mon, stop) = (c.clone(), host.clone(), mon.clone(), stop.clone());
            loops.push(tokio::spawn(async move {
                c.clock().sleep(ms(300 * i as u64)).await;
                while !stop.load(Ordering::SeqCst) {
                    let g = c.create_lock(NAME).acquire().await.unwrap();
                    mon.acquired(&host, &g, c.clock().now());
                    c.clock().sleep(hold).await;
                    g.release().await.unwrap();
                    c.clock().sleep(ms(50)).await;
                }
            }));
        }
        at(&clock, t0, secs(900)).await;
        stop.store(true, Ordering::SeqCst);
        for l in loops {
            common::within(&clock, secs(900), l)
                .await
                .expect("every loop ended")
                .unwrap();
        }
        let takeovers: u64 = clients.iter().map(|(_, c)| c.metrics().takeovers).sum();
        let counts: Vec<usize> = clients.iter().map(|(h, _)| mon.count_of(h)).collect();
        assert_eq!(
            takeovers, 0,
            "hold {hold:?}: acquisitions per process {counts:?}"
        );
        assert!(counts.iter().all(|n| *n >= 3), "hold {hold:?}: {counts:?}");
        assert_eq!(mon.violations(), Vec::<String>::new());
    }
}

// ---------------------------------------------------------------------------
// 3. When a waiter reads less often than its entry says
// ---------------------------------------------------------------------------

/// x (poll 1 s, `max_backoff` `x_backoff`), h (the holder) and z (default)
/// on one store, x first in the queue, z behind it; x's reads fail for
/// 40 s (its own network), then h releases, granting x the lock. Returns z's
/// takeovers and the order of acquisitions, and the log (host, ms since
/// the start, token).
async fn grant_after_failed_reads(
    x_backoff: Duration,
) -> ((u64, Vec<String>), Vec<(String, u128, u64)>) {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let lease = secs(120);
    let x_store = common::faulty(mem.clone(), &clock);
    let h = process_with(mem.clone(), &clock, "h", 1, polling(ms(1500), lease));
    let x_config = ClientConfig {
        max_backoff: x_backoff,
        ..polling(secs(1), lease)
    };
    let x = process_with(x_store.clone(), &clock, "x", 2, x_config);
    let z = process_with(mem.clone(), &clock, "z", 3, polling(ms(1500), lease));
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", ms(100), &mon);
    at(&clock, t0, secs(1)).await;
    let wz = waiter(&z, "z", ms(100), &mon);
    at(&clock, t0, secs(5)).await;
    let ex = entry_of(&mem, "x").expect("x queued");
    assert_eq!(ex.poll, Some(secs(1)));
    // x's network to the store fails for 40 s.
    x_store.inject(
        Some(Op::Read),
        None,
        Fault::FailBefore(BackendErrorKind::Throttled),
        None,
    );
    at(&clock, t0, secs(45)).await;
    x_store.clear();
    g.release().await.unwrap();
    let grant = stored(&mem);
    assert_eq!(grant.granted_to.as_deref(), Some(ex.id.as_str()));
    assert_eq!(grant.lease_duration, secs(5));
    for w in [wx, wz] {
        common::within(&clock, secs(120), w)
            .await
            .expect("both waiters got the lock")
            .unwrap()
            .unwrap();
    }
    assert_eq!(mon.violations(), Vec::<String>::new());
    ((z.metrics().takeovers, mon.order()), mon.log(t0))
}

/// The control: with the default `max_backoff` (1 s, under the 5 s grant),
/// x reads again within a second or so of the store answering, sees its
/// grant and keeps its place.
#[tokio::test(start_paused = true)]
async fn a_waiter_backing_off_less_than_its_grant_keeps_its_place() {
    let (out, log) = grant_after_failed_reads(secs(1)).await;
    let expected = (0, vec!["h".to_owned(), "x".into(), "z".into()]);
    assert_eq!(out, expected, "{log:?}");
}

/// The entry says how often its waiter polls, but after failed reads the
/// acquirer backed off up to `max_backoff` instead (+0-20 % jitter), and
/// `max_backoff` may be anything up to `MAX_LEASE`. Here x polls every 1 s
/// with `max_backoff` 20 s: after its 40 s of failed reads it was backing
/// off 20 s when the store answered again; h released then and granted x
/// the lock for max(5 s, 3 x 1 s) = 5 s, z (default) watched the grant go
/// stale and took it over at 51.7 s, and x, live and first in line, got the
/// lock only after z (57.5 s). Fixed: a queued waiter's sleeps, backoffs
/// included, are capped at the poll its entry advertises.
#[tokio::test(start_paused = true)]
async fn a_queued_waiter_backs_off_no_longer_than_its_advertised_poll() {
    let (out, log) = grant_after_failed_reads(secs(20)).await;
    assert_eq!(
        out,
        (0, vec!["h".to_owned(), "x".into(), "z".into()]),
        "x (live, first in line, entry poll 1 s) missed its 5 s grant while backing off; z took it over: {log:?}"
    );
}

// ---------------------------------------------------------------------------
// 4. The configured poll against the one a waiter really uses
// ---------------------------------------------------------------------------

/// The entry once carried the configured `poll_interval`, not the interval
/// the waiter really polls at: `poll_interval_for(lease)` caps it at a
/// quarter of the holder's lease. On a lock taken with 2 s leases, x
/// (configured poll 60 s) reads every 0.5-0.6 s, yet a grant to it lasted
/// 180 s: when x died queued (here: its connection hangs), the lock, whose
/// holders hold it for 2 s at a time, was granted to nobody for 3 minutes
/// (181.8 s) before z took it over (up to `MAX_LEASE` for a client with a
/// day's poll). Fixed: the entry advertises the interval for the lease x
/// queued on (0.5 s), x caps its sleeps at it while queued, and the grant
/// lasts the grant timeout (5 s). Fails if the entry advertises the
/// configured interval.
#[tokio::test(start_paused = true)]
async fn a_dead_waiter_configured_to_poll_slowly_holds_up_a_short_lease_lock_one_grant_timeout() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let lease = secs(2);
    let x_store = common::faulty(mem.clone(), &clock);
    let x_counted = lynk_testkit::CountingBackend::new(x_store.clone());
    let h = process_with(mem.clone(), &clock, "h", 1, polling(ms(1500), lease));
    let x = process_with(x_counted.clone(), &clock, "x", 2, polling(secs(60), lease));
    let z = process_with(mem.clone(), &clock, "z", 3, polling(ms(1500), lease));
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let _wx = waiter(&x, "x", ms(100), &mon);
    at(&clock, t0, ms(500)).await;
    let wz = waiter(&z, "z", ms(100), &mon);
    at(&clock, t0, secs(10)).await;
    // x really polls every 0.5-0.6 s (a quarter of h's lease, jittered).
    let reads = x_counted.counts().reads;
    assert!(reads >= 14, "x read {reads} times in 10 s");
    assert_eq!(
        entry_of(&mem, "x").expect("x queued").poll,
        Some(ms(500)),
        "and its entry says so (a quarter of h's 2 s lease), not its configured 60 s"
    );
    // x's connection hangs from now on: it is as good as dead.
    for op in [Op::Read, Op::Write, Op::WriteQueue, Op::Delete] {
        x_store.inject(Some(op), None, Fault::Stall, None);
    }
    let released = clock.now();
    g.release().await.unwrap();
    let grant = stored(&mem);
    assert_eq!(grant.host, "x");
    common::within(&clock, secs(300), wz)
        .await
        .expect("z got the lock")
        .unwrap()
        .unwrap();
    let z_after = mon.when("z", 0).unwrap() - released;
    assert_eq!(mon.violations(), Vec::<String>::new());
    assert!(
        z_after <= secs(10),
        "a lock with 2 s leases was granted to a dead waiter (which polled every 0.5 s) for {:?}: z got it {z_after:?} after the release",
        grant.lease_duration
    );
}
