//! Second adversarial pass over the cross-process wait queue, after the
//! fixes of d3a9310: the stale own entry, the queue-conditioned handover,
//! the grant/own-writes split, the poll schedule against the grant lease,
//! and wake-ups through `LockClientBuilder::wake_transport`.
//!
//! Several `LockClient`s on one `MemoryBackend` are several processes; the
//! [`Monitor`] (copied from `adversarial_queue.rs`) records two processes
//! holding at once and a fencing token that does not go up. A test that
//! found a bug is `#[ignore = "BUG: ..."]` and fails with `--ignored`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lynk_core::{
    ClientConfig, Clock, LockBackend, LockClient, LockError, LockRecord, WakeTransport,
};
use lynk_testkit::{CountingBackend, MemoryBackend, TestClock};
use tokio::task::JoinHandle;

mod common;
use common::monitor::Monitor;
use common::{ms, process_with, secs};

const NAME: &str = "job";

/// A waiter in process `c`: acquires with `lease`, tells the monitor, holds
/// for `hold`, releases.
fn waiter(
    c: &LockClient,
    host: &str,
    lease: Option<Duration>,
    hold: Duration,
    mon: &Monitor,
) -> JoinHandle<Result<(), LockError>> {
    let (c, host, mon) = (c.clone(), host.to_owned(), mon.clone());
    tokio::spawn(async move {
        let mut lock = c.create_lock(NAME);
        if let Some(l) = lease {
            lock = lock.with_lease(l);
        }
        let g = lock.acquire().await?;
        mon.acquired(&host, &g, c.clock().now());
        c.clock().sleep(hold).await;
        g.release().await
    })
}

async fn at(clock: &TestClock, t0: Instant, d: Duration) {
    clock.sleep_until(t0 + d).await;
}

fn queue_hosts(r: &LockRecord) -> Vec<String> {
    r.queue.entries.iter().map(|e| e.host.clone()).collect()
}

async fn done(clock: &TestClock, d: Duration, handle: JoinHandle<Result<(), LockError>>) {
    let out = common::within(clock, d, handle)
        .await
        .expect("the waiter finished in time")
        .expect("no panic");
    out.expect("the waiter acquired and released");
}

// ---------------------------------------------------------------------------
// An in-test wake-up network
// ---------------------------------------------------------------------------

/// Delivers wake-ups by calling `LockClient::wake` on the client registered
/// under the address; each one `copies` times, optionally `late` (after a
/// delay on the test clock), or not at all while `lose` is set.
#[derive(Debug, Default)]
struct Net {
    clients: Mutex<HashMap<String, LockClient>>,
    copies: AtomicU64,
    late: Mutex<Option<(TestClock, Duration)>>,
    lose: AtomicBool,
    sent: AtomicU64,
    /// Wake-ups sent for another name than the one delivered (forged).
    rename: Mutex<Option<String>>,
}

impl Net {
    fn new() -> Arc<Net> {
        let n = Net::default();
        n.copies.store(1, Ordering::SeqCst);
        Arc::new(n)
    }

    fn register(&self, address: &str, c: &LockClient) {
        self.clients
            .lock()
            .unwrap()
            .insert(address.to_owned(), c.clone());
    }
}

impl WakeTransport for Net {
    fn send(&self, to: &str, _scope: &str, name: &str) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.lose.load(Ordering::SeqCst) {
            return;
        }
        let Some(c) = self.clients.lock().unwrap().get(to).cloned() else {
            return;
        };
        let name = self
            .rename
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| name.to_owned());
        let copies = self.copies.load(Ordering::SeqCst);
        match self.late.lock().unwrap().clone() {
            Some((clock, d)) => {
                tokio::spawn(async move {
                    clock.sleep(d).await;
                    for _ in 0..copies {
                        c.wake(&name);
                    }
                });
            }
            None => {
                for _ in 0..copies {
                    c.wake(&name);
                }
            }
        }
    }
}

fn woken(
    b: impl LockBackend,
    clock: &TestClock,
    host: &str,
    seed: u64,
    net: &Arc<Net>,
) -> LockClient {
    let c = LockClient::builder(b)
        .clock(clock.clone())
        .host_identifier(host)
        .jitter_seed(seed)
        .wake_transport(net.clone(), host)
        .build()
        .expect("valid config");
    net.register(host, &c);
    c
}

// ---------------------------------------------------------------------------
// 1. Poll schedule against the grant lease
// ---------------------------------------------------------------------------

/// A process configured to poll more slowly than the others (here
/// `poll_interval` 60 s, behind 240 s leases: it reads every 60-72 s once
/// its quick polls are spent) must still see the grants to it. The grant
/// lease was once the GRANTING process's `max(grant_timeout, 3 x its own
/// poll_interval)`, 5 s here: x missed its grant, a default-configured waiter
/// took it over, and x got the lock 47 s after the first release, behind 14
/// acquisitions by the others. Now a queue entry carries its waiter's poll
/// interval ([`QueueEntry::poll`](lynk_core::QueueEntry::poll)) and a grant
/// lasts at least three of the grantee's polls (fails if the grant lease
/// ignores the entry's poll).
#[tokio::test(start_paused = true)]
async fn liveness_a_slow_polling_process_sees_its_grants_under_contention() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let lease = secs(240);
    let fast = ClientConfig {
        default_lease: lease,
        ..ClientConfig::default()
    };
    let slow = ClientConfig {
        poll_interval: secs(60),
        default_lease: lease,
        ..ClientConfig::default()
    };
    let y = process_with(mem.clone(), &clock, "y", 2, fast.clone());
    let z = process_with(mem.clone(), &clock, "z", 3, fast.clone());
    let x = process_with(mem.clone(), &clock, "x", 1, slow);
    let mon = Monitor::default();
    let first = y.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("y", &first, clock.now());
    let wx = waiter(&x, "x", None, ms(100), &mon);
    // x's quick polls are spent by the time y first releases.
    at(&clock, t0, secs(130)).await;
    let stop = Arc::new(AtomicBool::new(false));
    // y and z take the lock again and again, 2 s each.
    let mut loops = Vec::new();
    for (c, host) in [(y.clone(), "y"), (z.clone(), "z")] {
        let (mon, stop) = (mon.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let g = c.create_lock(NAME).acquire().await.unwrap();
                mon.acquired(host, &g, c.clock().now());
                c.clock().sleep(secs(2)).await;
                g.release().await.unwrap();
                c.clock().sleep(ms(10)).await;
            }
        }));
    }
    at(&clock, t0, secs(135)).await;
    first.release().await.unwrap();
    let got = common::within(&clock, secs(300), wx).await;
    stop.store(true, Ordering::SeqCst);
    let stale_grants = y.metrics().takeovers + z.metrics().takeovers;
    let others = mon.count_of("y") + mon.count_of("z");
    assert_eq!(mon.violations(), Vec::<String>::new());
    let x_at = mon.when("x", 0).map(|a| a - t0);
    assert!(got.is_some(), "x never got the lock ({others} others)");
    assert_eq!(
        stale_grants, 0,
        "a grant to x (live, polling at its own 60 s interval; grants last 5 s) went stale and was taken over: x lost its place and got the lock only at {x_at:?} ({others} acquisitions by y and z)"
    );
}

/// The same with every process on the default configuration: the grant
/// lease covers three poll intervals, so the live waiter never misses its
/// grant, and gets the lock on the first release after it queues.
#[tokio::test(start_paused = true)]
async fn liveness_same_config_waiter_sees_its_grant_under_contention() {
    for (lease, poll, grant) in [
        (secs(60), ms(1500), secs(5)),
        (secs(1), ms(1500), secs(1)),
        (secs(1), ms(300), secs(1)),
        (secs(4), secs(3), secs(1)),
        (secs(20), ms(50), secs(1)),
    ] {
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let t0 = clock.now();
        let config = ClientConfig {
            default_lease: lease,
            poll_interval: poll,
            grant_timeout: grant,
            ..ClientConfig::default()
        };
        let y = process_with(mem.clone(), &clock, "y", 2, config.clone());
        let z = process_with(mem.clone(), &clock, "z", 3, config.clone());
        let x = process_with(mem.clone(), &clock, "x", 1, config.clone());
        let mon = Monitor::default();
        let stop = Arc::new(AtomicBool::new(false));
        let hold = lease / 2;
        let mut loops = Vec::new();
        for (c, host) in [(y.clone(), "y"), (z.clone(), "z")] {
            let (mon, stop) = (mon.clone(), stop.clone());
            loops.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let g = c.create_lock(NAME).acquire().await.unwrap();
                    mon.acquired(host, &g, c.clock().now());
                    c.clock().sleep(hold).await;
                    let _ = g.release().await;
                    c.clock().sleep(ms(10)).await;
                }
            }));
        }
        at(&clock, t0, lease / 3).await;
        let wx = waiter(&x, "x", None, ms(10), &mon);
        let started = clock.now();
        let got = common::within(&clock, lease * 6 + secs(10), wx).await;
        stop.store(true, Ordering::SeqCst);
        assert!(
            got.is_some(),
            "lease {lease:?} poll {poll:?} grant {grant:?}: x did not get the lock; order {:?}",
            mon.order()
        );
        let x_at = mon.when("x", 0).unwrap() - started;
        // At most the current holder's hold, the next one's (granted or
        // queued ahead), plus a grant lease: never a takeover of a stale
        // grant to x.
        let bound = hold * 2 + config.grant_lease() + poll.min(lease / 4) * 2;
        assert!(
            x_at <= bound,
            "lease {lease:?} poll {poll:?} grant {grant:?}: x waited {x_at:?} (bound {bound:?}); order {:?}",
            mon.order()
        );
        assert_eq!(mon.violations(), Vec::<String>::new());
        for l in loops {
            let _ = common::within(&clock, lease * 4, l).await;
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Wake-ups
// ---------------------------------------------------------------------------

/// A release's grant wakes the grantee through the transport: it confirms
/// at once (well before its next poll), in arrival order, with duplicated
/// wake-ups changing nothing.
#[tokio::test(start_paused = true)]
async fn wake_a_duplicated_wake_up_hands_over_at_once_in_order() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let net = Net::new();
    net.copies.store(5, Ordering::SeqCst);
    let h = woken(mem.clone(), &clock, "h", 1, &net);
    let x = woken(mem.clone(), &clock, "x", 2, &net);
    let y = woken(mem.clone(), &clock, "y", 3, &net);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, ms(300), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, ms(300), &mon);
    at(&clock, t0, secs(8)).await; // both poll at 1.5 s by now
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["x", "y"]);
    let released = clock.now();
    g.release().await.unwrap();
    done(&clock, secs(20), wx).await;
    done(&clock, secs(20), wy).await;
    assert_eq!(mon.order(), ["h", "x", "y"]);
    assert_eq!(mon.violations(), Vec::<String>::new());
    let x_at = mon.when("x", 0).unwrap() - released;
    assert!(
        x_at < ms(50),
        "woken, x confirmed {x_at:?} after the release"
    );
    let y_at = mon.when("y", 0).unwrap() - mon.when("x", 0).unwrap();
    assert!(y_at < ms(300) + ms(50), "woken, y took {y_at:?} after x");
    assert!(net.sent.load(Ordering::SeqCst) >= 2);
}

/// Forged wake-ups (a flood for the lock, for other names, to the holder
/// and to the waiters, late ones after the lock changed hands) never change
/// who holds the lock or the order, and cost the waiter at most the
/// limiter's allowance: two polls at once, then one per poll interval.
#[tokio::test(start_paused = true)]
async fn wake_forged_and_late_wake_ups_change_nothing_and_are_rate_limited() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let net = Net::new();
    let counted = CountingBackend::new(mem.clone());
    let h = woken(mem.clone(), &clock, "h", 1, &net);
    let x = woken(counted.clone(), &clock, "x", 2, &net);
    let y = woken(mem.clone(), &clock, "y", 3, &net);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, secs(1), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, secs(1), &mon);
    at(&clock, t0, secs(3)).await;
    let before = counted.counts();
    // A flood every 100 ms for 10 s, to everyone, for the lock and others.
    for _ in 0..100 {
        for c in [&h, &x, &y] {
            for _ in 0..10 {
                c.wake(NAME);
                c.wake("other");
            }
        }
        clock.sleep(ms(100)).await;
    }
    let used = counted.counts().since(before);
    // Without wake-ups: ~7 polls in 10 s at 1.5 s; the limiter allows 2 at
    // once and one per 1.5 s poll interval: about 7 more.
    assert!(
        used.total() <= 7 + 2 + 8,
        "{used:?} in 10 s of forged wake-ups"
    );
    assert!(!g.is_lost(), "h still holds");
    assert_eq!(mem.get(NAME).unwrap().host, "h");
    // Late wake-ups for the next releases: delivered 2 s after they are sent.
    *net.late.lock().unwrap() = Some((clock.clone(), secs(2)));
    g.release().await.unwrap();
    done(&clock, secs(20), wx).await;
    done(&clock, secs(20), wy).await;
    clock.sleep(secs(5)).await;
    assert_eq!(mon.order(), ["h", "x", "y"]);
    assert_eq!(mon.violations(), Vec::<String>::new());
    let end = mem.get(NAME).unwrap();
    assert!(end.released && end.queue.is_empty() && end.granted_to.is_none());
}

/// Wake-ups all lost: the grantee still sees its grant at its next poll,
/// well within the grant lease.
#[tokio::test(start_paused = true)]
async fn wake_lost_wake_ups_only_cost_a_poll() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let net = Net::new();
    net.lose.store(true, Ordering::SeqCst);
    let h = woken(mem.clone(), &clock, "h", 1, &net);
    let x = woken(mem.clone(), &clock, "x", 2, &net);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, ms(300), &mon);
    at(&clock, t0, secs(8)).await;
    let released = clock.now();
    g.release().await.unwrap();
    done(&clock, secs(20), wx).await;
    let x_at = mon.when("x", 0).unwrap() - released;
    assert!(
        x_at <= ms(1800) + ms(50),
        "x confirmed {x_at:?} after; released at {:?}, log {:?}",
        released - t0,
        mon.log(t0)
    );
    assert_eq!(
        x.metrics().confirmed_grants,
        1,
        "by the grant, not a takeover"
    );
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// Wake-ups renamed to another lock the receiver also waits for: a wake-up
/// for lock A delivered as one for lock B only makes B's acquirer poll; it
/// never gives B to anyone.
#[tokio::test(start_paused = true)]
async fn wake_a_wake_up_for_another_lock_only_polls_that_lock() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let net = Net::new();
    *net.rename.lock().unwrap() = Some("other".into());
    let h = woken(mem.clone(), &clock, "h", 1, &net);
    let x = woken(mem.clone(), &clock, "x", 2, &net);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    let go = h.create_lock("other").acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, ms(300), &mon);
    let xo = {
        let x = x.clone();
        tokio::spawn(async move { x.create_lock("other").acquire().await.map(|g| g.detach()) })
    };
    at(&clock, t0, secs(8)).await;
    g.release().await.unwrap(); // its wake-up arrives as one for "other"
    common::settle().await;
    assert_eq!(mem.get("other").unwrap().host, "h", "other is still h's");
    assert!(!go.is_lost());
    done(&clock, secs(20), wx).await;
    go.release().await.unwrap();
    let _ = common::within(&clock, secs(20), xo).await;
    assert_eq!(mon.violations(), Vec::<String>::new());
}
