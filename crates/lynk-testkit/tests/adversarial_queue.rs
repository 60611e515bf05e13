//! Adversarial tests of the cross-process wait queue (commit d6277c2): a
//! holder's release grants the lock to the first queued process, which
//! confirms it; stale leases and grants are granted on or taken.
//!
//! Several `LockClient`s on one `MemoryBackend` are several processes. A
//! [`Monitor`] sees every acquisition and records any two processes holding
//! at once and any fencing token that does not go up. Tests that found a bug
//! were `#[ignore = "BUG: ..."]` until fixed; the one left ignored is a
//! documented limitation and fails when run with `--ignored`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lynk_core::{
    BackendErrorKind, ClientConfig, Clock, FencingToken, LockBackend, LockClient, LockError,
    LockRecord, ReleaseMode, Version,
};
use lynk_testkit::{CountingBackend, Fault, MemoryBackend, Op, TestClock};
use tokio::task::JoinHandle;

mod common;
use common::monitor::Monitor;
use common::{ms, process_with, secs};

const NAME: &str = "job";
const LEASE: Duration = Duration::from_secs(10);

/// A process: a client with its own host name and jitter seed.
fn process(b: impl LockBackend, clock: &TestClock, host: &str, seed: u64) -> LockClient {
    common::builder(b, clock, host, LEASE, seed)
        .build()
        .expect("valid config")
}

/// A waiter in process `c`: acquires (within `timeout`, if any), tells the
/// monitor, holds for `hold`, releases.
fn waiter(
    c: &LockClient,
    host: &str,
    lease: Option<Duration>,
    timeout: Option<Duration>,
    hold: Duration,
    mon: &Monitor,
) -> JoinHandle<Result<(), LockError>> {
    let (c, host, mon) = (c.clone(), host.to_owned(), mon.clone());
    tokio::spawn(async move {
        let mut lock = c.create_lock(NAME);
        if let Some(l) = lease {
            lock = lock.with_lease(l);
        }
        let g = match timeout {
            Some(t) => lock.acquire_timeout(t).await?,
            None => lock.acquire().await?,
        };
        mon.acquired(&host, &g, c.clock().now());
        c.clock().sleep(hold).await;
        g.release().await
    })
}

/// Sleeps until `t0 + d` on the test clock.
async fn at(clock: &TestClock, t0: Instant, d: Duration) {
    clock.sleep_until(t0 + d).await;
}

fn queue_hosts(r: &LockRecord) -> Vec<String> {
    r.queue.entries.iter().map(|e| e.host.clone()).collect()
}

/// `handle` finishes within `d`, with `Ok`.
async fn done(clock: &TestClock, d: Duration, handle: JoinHandle<Result<(), LockError>>) {
    let out = common::within(clock, d, handle)
        .await
        .expect("the waiter finished in time")
        .expect("no panic");
    out.expect("the waiter acquired and released");
}

// ---------------------------------------------------------------------------
// 1. Mutual exclusion and fencing
// ---------------------------------------------------------------------------

/// The release's grant applies but its answer is lost: the retry recognises
/// its own grant (no second grant, no release over it), the grantee gets the
/// lock, then the next in line.
#[tokio::test(start_paused = true)]
async fn safety_a_lost_release_grant_is_recognised_not_repeated() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let faulty = common::faulty(mem.clone(), &clock);
    let h = process(faulty.clone(), &clock, "h", 1);
    let x = process(mem.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(500)).await;
    let wy = waiter(&y, "y", None, None, secs(1), &mon);
    at(&clock, t0, secs(4)).await; // after h's heartbeat: h knows the queue
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["x", "y"]);
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    g.release().await.expect("the retry recognises the grant");
    let r = mem.get(NAME).unwrap();
    assert!(!r.released, "granted, not released: {r:?}");
    assert!(r.granted_to.is_some());
    assert_eq!(r.host, "x");
    assert_eq!(queue_hosts(&r), ["y"], "x left the queue, y stays");
    done(&clock, secs(10), wx).await;
    done(&clock, secs(10), wy).await;
    assert_eq!(mon.order(), ["h", "x", "y"]);
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// A release whose grant applied (answer lost) and then failed until the
/// release timeout hands its attempts, the grant's version included, to the
/// next local waiter's acquirer. That acquirer finds the grant record
/// carrying "its own" version and, the grant's lease and payload matching
/// the waiter's, hands the grant record out as a lease without any write:
/// the local waiter holds with the old holder's token, and the grantee
/// confirms the same grant too.
#[tokio::test(start_paused = true)]
async fn safety_a_failed_release_grant_is_not_adopted_by_the_local_waiter() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let fp = common::faulty(mem.clone(), &clock);
    let fx = common::faulty(mem.clone(), &clock);
    let config = ClientConfig {
        default_lease: secs(5), // the default grant lease
        release_timeout: secs(1),
        ..ClientConfig::default()
    };
    let p = process_with(fp.clone(), &clock, "p", 1, config.clone());
    let x = process_with(fx.clone(), &clock, "x", 2, config);
    assert_eq!(p.config().grant_lease(), secs(5));
    let mon = Monitor::default();
    let g = p.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("p", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(50)).await;
    let p2 = waiter(&p, "p", None, None, secs(1), &mon); // a local waiter
    at(&clock, t0, secs(2)).await; // p heartbeated at 1.67 s: knows x queued
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["x"]);
    // x's reads fail for a while (it will see its grant late, well within
    // the grant lease); p's grant applies unanswered, then p's store fails.
    fx.inject(
        Some(Op::Read),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    fp.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    fp.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    let _ = g.release().await; // gives up after the release timeout
    let grant = mem.get(NAME).unwrap();
    assert_eq!(grant.host, "x", "the grant applied: {grant:?}");
    fp.clear();
    at(&clock, t0, ms(3100)).await;
    fx.clear();
    let _ = common::within(&clock, secs(20), p2).await;
    let _ = common::within(&clock, secs(20), wx).await;
    assert_eq!(
        mon.violations(),
        Vec::<String>::new(),
        "log {:?}",
        mon.log(t0)
    );
}

/// The grantee's confirmation applies but its answer is lost: it recognises
/// its own write, and nobody else acquires meanwhile.
#[tokio::test(start_paused = true)]
async fn safety_a_lost_confirm_is_recognised() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let fx = common::faulty(mem.clone(), &clock);
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(fx.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(2), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, None, secs(1), &mon);
    at(&clock, t0, secs(2)).await;
    fx.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1)); // the confirm
    let released = clock.now();
    g.release().await.unwrap();
    done(&clock, secs(15), wx).await;
    done(&clock, secs(15), wy).await;
    assert_eq!(fx.injected(), 1, "the confirm's answer was lost");
    assert_eq!(mon.order(), ["h", "x", "y"]);
    assert!(mon.when("x", 0).unwrap() - released < secs(3));
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// The queue write applies but its answer is lost: the entry is in the queue
/// once, in arrival order.
#[tokio::test(start_paused = true)]
async fn safety_a_lost_queue_write_leaves_exactly_one_entry() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let fx = common::faulty(mem.clone(), &clock);
    fx.inject(Some(Op::WriteQueue), None, Fault::LoseResponse, Some(1));
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(fx.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(400)).await;
    let wy = waiter(&y, "y", None, None, secs(1), &mon);
    at(&clock, t0, secs(2)).await;
    assert_eq!(fx.injected(), 1);
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["x", "y"]);
    g.release().await.unwrap();
    done(&clock, secs(15), wx).await;
    done(&clock, secs(15), wy).await;
    assert_eq!(mon.order(), ["h", "x", "y"]);
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// The grantee cannot read (its reads fail) while its grant goes stale; the
/// next waiter takes the stale grant. The grantee's reads come back around
/// that instant (swept): exactly one of them wins, never both.
#[tokio::test(start_paused = true)]
async fn safety_a_confirm_racing_a_stale_grant_takeover() {
    for delta_ms in (4600..=5600).step_by(50) {
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let t0 = clock.now();
        let fx = common::faulty(mem.clone(), &clock);
        let h = process(mem.clone(), &clock, "h", 1);
        let x = process(fx.clone(), &clock, "x", 2);
        let y = process(mem.clone(), &clock, "y", 3);
        let mon = Monitor::default();
        let g = h.create_lock(NAME).acquire().await.unwrap();
        mon.acquired("h", &g, clock.now());
        let wx = waiter(&x, "x", None, None, secs(1), &mon);
        at(&clock, t0, ms(300)).await;
        let wy = waiter(&y, "y", None, None, secs(1), &mon);
        at(&clock, t0, secs(2)).await;
        fx.inject(
            Some(Op::Read),
            None,
            Fault::FailBefore(BackendErrorKind::Unavailable),
            None,
        );
        at(&clock, t0, secs(3)).await;
        g.release().await.unwrap();
        assert_eq!(mem.get(NAME).unwrap().host, "x", "granted to x");
        at(&clock, t0, secs(3) + ms(delta_ms)).await;
        fx.clear();
        done(&clock, secs(30), wx).await;
        done(&clock, secs(30), wy).await;
        assert_eq!(mon.count(), 3, "at {delta_ms} ms: {:?}", mon.order());
        assert_eq!(
            mon.violations(),
            Vec::<String>::new(),
            "reads back {delta_ms} ms after the grant"
        );
    }
}

/// The original client (no queue attributes) overwrites the whole record
/// while two lynk processes are queued: the lynk holder loses its lease, the
/// queue is gone, and the waiters still get the lock, one at a time, once
/// the original's lease goes stale, with tokens going up.
#[tokio::test(start_paused = true)]
async fn safety_an_original_client_overwrite_drops_the_queue_safely() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(mem.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    let h_token = g.fencing_token();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, None, secs(1), &mon);
    at(&clock, t0, secs(2)).await;
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["x", "y"]);
    let original = LockRecord {
        key: NAME.into(),
        version: Version::random(),
        lease_duration: secs(5),
        host: "python".into(),
        fencing_token: None,
        payload: None,
        released: false,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    };
    mem.put_raw(original);
    done(&clock, secs(30), wx).await;
    done(&clock, secs(30), wy).await;
    assert!(g.is_lost(), "h's heartbeat found the record taken");
    assert_eq!(mon.count(), 3);
    assert!(
        mon.when("x", 0).unwrap() - t0 >= secs(7),
        "not before stale"
    );
    assert_eq!(mon.violations(), Vec::<String>::new());
    assert!(mem.get(NAME).unwrap().fencing_token.unwrap() > h_token);
    drop(g);
}

/// The record is deleted (a TTL, an operator) while a grant is pending: the
/// waiters still get the lock one at a time, tokens up.
#[tokio::test(start_paused = true)]
async fn safety_a_grant_deleted_under_the_grantee() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(mem.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, None, secs(1), &mon);
    at(&clock, t0, secs(3)).await;
    g.release().await.unwrap();
    assert!(mem.get(NAME).unwrap().granted_to.is_some());
    mem.remove_raw(NAME);
    done(&clock, secs(15), wx).await;
    done(&clock, secs(15), wy).await;
    assert_eq!(mon.count(), 3);
    assert_eq!(mon.violations(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 2. Liveness
// ---------------------------------------------------------------------------

/// The grantee is cut off (every call stalls) when it is granted: the next
/// waiter gets the lock one grant lease later, and the grantee, back, does
/// not get it while that one holds, but gets it after.
#[tokio::test(start_paused = true)]
async fn liveness_a_grant_to_a_cut_off_process_is_skipped_within_a_grant_lease() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let fx = common::faulty(mem.clone(), &clock);
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(fx.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, None, secs(3), &mon);
    at(&clock, t0, secs(2)).await;
    fx.inject(None, None, Fault::Stall, None);
    g.release().await.unwrap();
    let released = clock.now();
    at(&clock, t0, secs(12)).await;
    fx.clear();
    done(&clock, secs(30), wy).await;
    done(&clock, secs(30), wx).await;
    let y_at = mon.when("y", 0).unwrap() - released;
    let bound = h.config().grant_lease().mul_f64(1.01) + ms(1800);
    assert!(
        y_at <= bound,
        "y waited {y_at:?} after the release (bound {bound:?})"
    );
    assert_eq!(mon.order(), ["h", "y", "x"]);
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// The first waiter gives up (its timeout) at about the instant its process
/// is granted the lock (swept around it): the next waiter is not made to
/// wait a whole grant lease, and the record ends clean.
#[tokio::test(start_paused = true)]
async fn liveness_a_waiter_timing_out_as_it_is_granted() {
    for offset in (0..=24).map(|i| i * 50) {
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let t0 = clock.now();
        let h = process(mem.clone(), &clock, "h", 1);
        let x = process(mem.clone(), &clock, "x", 2);
        let y = process(mem.clone(), &clock, "y", 3);
        let mon = Monitor::default();
        let g = h.create_lock(NAME).acquire().await.unwrap();
        mon.acquired("h", &g, clock.now());
        // x gives up from 2.4 s to 3.6 s; h releases at 3 s.
        let wx = waiter(&x, "x", None, Some(ms(2400 + offset)), secs(1), &mon);
        at(&clock, t0, ms(300)).await;
        let wy = waiter(&y, "y", None, None, secs(1), &mon);
        at(&clock, t0, secs(3)).await;
        g.release().await.unwrap();
        let released = clock.now();
        done(&clock, secs(20), wy).await;
        let _ = common::within(&clock, secs(20), wx).await;
        let y_at = mon.when("y", 0).unwrap() - released;
        let x_won = mon.when("x", 0).is_some();
        let bound = if x_won { secs(4) } else { ms(3600) };
        assert!(
            y_at <= bound,
            "x timing out at {} ms: y waited {y_at:?} after the release",
            2400 + offset
        );
        assert_eq!(mon.violations(), Vec::<String>::new());
        clock.sleep(secs(1)).await;
        let end = mem.get(NAME).unwrap();
        assert!(
            end.released && end.queue.is_empty() && end.granted_to.is_none(),
            "offset {offset}: the record ends clean: {end:?}"
        );
    }
}

/// The first waiter's acquire future is dropped at every point of its wait
/// (swept in 37 ms steps, with its queue writes and writes slowed so that
/// some drops land while they are in flight): the next waiter is not held up
/// by a dead entry, and the record ends clean.
#[tokio::test(start_paused = true)]
async fn liveness_a_cancelled_acquire_at_every_point() {
    for step in 0..110u64 {
        let drop_at = ms(10 + step * 37);
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let t0 = clock.now();
        let fx = common::faulty(mem.clone(), &clock);
        fx.inject(Some(Op::WriteQueue), None, Fault::Delay(ms(40)), None);
        fx.inject(Some(Op::Write), None, Fault::Delay(ms(40)), None);
        let h = process(mem.clone(), &clock, "h", 1);
        let x = process(fx.clone(), &clock, "x", 2);
        let y = process(mem.clone(), &clock, "y", 3);
        let mon = Monitor::default();
        let g = h.create_lock(NAME).acquire().await.unwrap();
        mon.acquired("h", &g, clock.now());
        let wx = waiter(&x, "x", None, None, secs(1), &mon);
        at(&clock, t0, ms(250)).await;
        let wy = waiter(&y, "y", None, None, secs(1), &mon);
        let release_at = secs(2);
        let holder = {
            let clock = clock.clone();
            tokio::spawn(async move {
                at(&clock, t0, release_at).await;
                g.release().await.unwrap();
            })
        };
        at(&clock, t0, drop_at.max(ms(251))).await;
        wx.abort();
        holder.await.unwrap();
        done(&clock, secs(20), wy).await;
        let y_at = mon.when("y", 0).unwrap() - (t0 + release_at);
        assert!(
            y_at <= ms(3600),
            "x dropped at {drop_at:?}: y waited {y_at:?} after the release; order {:?}",
            mon.order()
        );
        assert_eq!(mon.violations(), Vec::<String>::new());
        clock.sleep(secs(2)).await;
        let end = mem.get(NAME).unwrap();
        assert!(
            end.released && end.queue.is_empty() && end.granted_to.is_none(),
            "x dropped at {drop_at:?}: the record ends clean: {end:?}"
        );
        assert!(x.held_locks().is_empty());
    }
}

/// A queued process shuts down: its entry leaves the queue, and the holder's
/// release then releases (no grant to the gone process).
#[tokio::test(start_paused = true)]
async fn liveness_shutdown_while_queued_takes_the_entry_out() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(mem.clone(), &clock, "x", 2);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, secs(2)).await;
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["x"]);
    let report = x.shutdown().await;
    assert!(report.is_clean());
    assert!(matches!(wx.await.unwrap(), Err(LockError::ShutDown)));
    assert!(
        mem.get(NAME).unwrap().queue.is_empty(),
        "x left the queue on shutdown"
    );
    g.release().await.unwrap();
    let r = mem.get(NAME).unwrap();
    assert!(r.released && r.granted_to.is_none(), "{r:?}");
}

/// A process shuts down after it was granted the lock but before it saw the
/// grant: the grant passes to the next waiter at once, not a grant lease
/// later.
#[tokio::test(start_paused = true)]
async fn liveness_shutdown_while_granted_passes_the_grant_on() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(mem.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, None, secs(1), &mon);
    at(&clock, t0, ms(3010)).await; // just after x's poll at ~3 s
    g.release().await.unwrap();
    assert_eq!(mem.get(NAME).unwrap().host, "x", "granted to x");
    let shut = clock.now();
    let report = x.shutdown().await;
    let _ = wx.await;
    done(&clock, secs(20), wy).await;
    let y_at = mon.when("y", 0).unwrap() - shut;
    assert!(y_at <= ms(2500), "y waited {y_at:?} after x shut down");
    assert!(mon.when("x", 0).is_none() || report.is_clean());
    assert_eq!(mon.violations(), Vec::<String>::new());
}

/// An operator force-releases a detached holder's lock
/// (`LockClient::release_version`) while two processes are queued. The
/// release keeps the queue, the waiter that takes the released record keeps
/// it too, its own (now dead) entry included, and its release then grants
/// the lock to that dead entry: the last waiter is held up a whole grant
/// lease, and a grant to nobody is left in the record.
#[tokio::test(start_paused = true)]
async fn liveness_a_force_release_leaves_no_dead_entry() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(mem.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    let wx = waiter(&x, "x", None, None, ms(500), &mon);
    at(&clock, t0, ms(300)).await;
    let wy = waiter(&y, "y", None, None, ms(500), &mon);
    at(&clock, t0, secs(2)).await;
    g.detach();
    let v = mem.get(NAME).unwrap().version;
    h.release_version(NAME, &v).await.unwrap();
    done(&clock, secs(30), wx).await;
    done(&clock, secs(30), wy).await;
    let (first, second) = {
        let o = mon.order();
        (o[0].clone(), o[1].clone())
    };
    let gap = mon.when(&second, 0).unwrap() - mon.when(&first, 0).unwrap();
    clock.sleep(secs(1)).await;
    let end = mem.get(NAME).unwrap();
    assert!(
        end.released && end.queue.is_empty() && end.granted_to.is_none(),
        "the record ends clean: {end:?}"
    );
    assert!(
        gap <= ms(500) + ms(2000),
        "{second} acquired {gap:?} after {first} (which held 0.5 s)"
    );
}

/// A waiter's queue write applies unanswered and the waiter gives up during
/// the backoff that follows: its entry stays behind, and the holder's
/// release grants to it, holding up the next waiter a grant lease.
#[tokio::test(start_paused = true)]
async fn liveness_a_waiter_leaving_after_a_lost_queue_write_leaves_no_entry() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let fx = common::faulty(mem.clone(), &clock);
    fx.inject(Some(Op::WriteQueue), None, Fault::LoseResponse, Some(1));
    let h = process(mem.clone(), &clock, "h", 1);
    let x = process(fx.clone(), &clock, "x", 2);
    let y = process(mem.clone(), &clock, "y", 3);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    // x's queue write goes at ~0.1 s; its retry after a 25-30 ms backoff.
    let wx = waiter(&x, "x", None, Some(ms(115)), secs(1), &mon);
    at(&clock, t0, ms(300)).await;
    assert!(wx.await.unwrap().is_err(), "x gave up");
    assert_eq!(fx.injected(), 1);
    let wy = waiter(&y, "y", None, None, secs(1), &mon);
    at(&clock, t0, secs(1)).await;
    assert_eq!(
        queue_hosts(&mem.get(NAME).unwrap()),
        ["y"],
        "x's entry was taken out"
    );
    g.release().await.unwrap();
    let released = clock.now();
    done(&clock, secs(20), wy).await;
    assert!(mon.when("y", 0).unwrap() - released <= secs(2));
}

// ---------------------------------------------------------------------------
// 3. Fairness
// ---------------------------------------------------------------------------

/// Three processes start waiting 0.6 s apart behind a holder, with the
/// default configuration; every round (holds of the holder from short to
/// past several heartbeats) they get the lock in arrival order.
#[tokio::test(start_paused = true)]
async fn fairness_three_processes_in_arrival_order_every_round() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let mk = |host: &str, seed| {
        LockClient::builder(mem.clone())
            .clock(clock.clone())
            .host_identifier(host)
            .jitter_seed(seed)
            .build()
            .unwrap()
    };
    let h = mk("h", 11);
    let cs = [mk("c1", 12), mk("c2", 13), mk("c3", 14)];
    let mon = Monitor::default();
    let holds = [
        ms(1300),
        ms(1900),
        ms(2500),
        ms(3100),
        ms(6000),
        ms(7000),
        secs(14),
        secs(25),
    ];
    for (round, hold) in holds.iter().enumerate() {
        let t0 = clock.now();
        let before = mem.counts();
        let beats_before: u64 = std::iter::once(&h)
            .chain(cs.iter())
            .map(|c| c.metrics().heartbeats)
            .sum();
        let g = h.create_lock(NAME).acquire().await.unwrap();
        mon.acquired("h", &g, clock.now());
        let mut tasks = Vec::new();
        for (i, c) in cs.iter().enumerate() {
            at(&clock, t0, ms(600 * i as u64)).await;
            tasks.push(waiter(c, &format!("c{}", i + 1), None, None, ms(700), &mon));
        }
        at(&clock, t0, *hold).await;
        g.release().await.unwrap();
        for t in tasks {
            done(&clock, secs(60), t).await;
        }
        let order = mon.order();
        assert_eq!(
            order[order.len() - 4..],
            ["h", "c1", "c2", "c3"],
            "round {round} (hold {hold:?})"
        );
        assert_eq!(mon.violations(), Vec::<String>::new());
        // Cost of the round: h's acquisition, each waiter's failed first
        // attempt, its queue write, its confirmation and its release, and
        // h's release: at most one failed release attempt (h's view of the
        // queue is its last heartbeat's), and the heartbeats; at most one
        // queue write conflict.
        let used = mem.counts().since(before);
        let beats: u64 = std::iter::once(&h)
            .chain(cs.iter())
            .map(|c| c.metrics().heartbeats)
            .sum::<u64>()
            - beats_before;
        assert!(
            used.writes <= 1 + 3 * 3 + 2 + beats && used.queue_writes <= 3 + 1,
            "round {round}: {used:?}, {beats} heartbeats; log {:?}",
            mon.log(t0)
        );
        clock.sleep(secs(1)).await;
    }
}

/// A remote process queues in the store, then a local waiter of the holder's
/// process arrives; the holder releases before its next heartbeat, so its
/// view of the queue is empty, and it hands over to the local waiter with a
/// write conditioned on its version alone: the remote, earlier waiter is
/// passed over (the release path says the store's queue comes first).
#[tokio::test(start_paused = true)]
async fn fairness_a_remote_waiter_queued_first_is_not_passed_over_by_a_local_one() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let p = process(mem.clone(), &clock, "p", 1);
    let x = process(mem.clone(), &clock, "x", 2);
    let mon = Monitor::default();
    let g = p.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("p", &g, clock.now());
    at(&clock, t0, ms(500)).await;
    let wx = waiter(&x, "x", None, None, secs(1), &mon);
    at(&clock, t0, ms(1500)).await;
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["x"]);
    let p2 = waiter(&p, "p2", None, None, secs(1), &mon);
    at(&clock, t0, ms(2500)).await; // before p's heartbeat at 3.33 s
    g.release().await.unwrap();
    done(&clock, secs(20), wx).await;
    done(&clock, secs(20), p2).await;
    assert_eq!(mon.order(), ["p", "x", "p2"], "x queued before p2 arrived");
}

/// With `ReleaseMode::Delete`, a release that does not know of the queue
/// (queued since the holder's last write) deletes the record, queue and
/// all: conditioned on the version only, it does not see the queue. The
/// waiters then race, and a later arrival can win.
#[tokio::test(start_paused = true)]
#[ignore = "known limitation (docs/waiting.md): ReleaseMode::Delete deletes on the version alone (the backend trait has no conditional delete on the queue), so waiters queued since the holder's last write lose their places for that one release"]
async fn fairness_release_mode_delete_keeps_the_queue() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let mk = |host: &str, seed| {
        common::builder(mem.clone(), &clock, host, LEASE, seed)
            .release_mode(ReleaseMode::Delete)
            .build()
            .unwrap()
    };
    let (h, c1, c2) = (mk("h", 1), mk("c1", 2), mk("c2", 3));
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    mon.acquired("h", &g, clock.now());
    let w1 = waiter(&c1, "c1", None, None, secs(1), &mon);
    at(&clock, t0, ms(600)).await;
    let w2 = waiter(&c2, "c2", None, None, secs(1), &mon);
    at(&clock, t0, ms(1900)).await;
    assert_eq!(queue_hosts(&mem.get(NAME).unwrap()), ["c1", "c2"]);
    g.release().await.unwrap();
    let after = mem.get(NAME);
    done(&clock, secs(20), w1).await;
    done(&clock, secs(20), w2).await;
    assert!(
        after.as_ref().is_some_and(|r| r.host == "c1"),
        "the release granted c1 (or kept the queue): {after:?}"
    );
    assert_eq!(mon.order(), ["h", "c1", "c2"]);
}

// ---------------------------------------------------------------------------
// 4. Cost
// ---------------------------------------------------------------------------

/// With the defaults, a waiter behind one long holder makes at most 10
/// requests in its first 10 s (first attempt, queue write, polls).
#[tokio::test(start_paused = true)]
async fn cost_a_ten_second_wait_behind_one_holder() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let counted = CountingBackend::new(mem.clone());
    let h = LockClient::builder(mem.clone())
        .clock(clock.clone())
        .host_identifier("h")
        .jitter_seed(1)
        .build()
        .unwrap();
    let x = LockClient::builder(counted.clone())
        .clock(clock.clone())
        .host_identifier("x")
        .jitter_seed(2)
        .build()
        .unwrap();
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    let wx = waiter(&x, "x", None, None, ms(100), &mon);
    at(&clock, t0, secs(10) - ms(1)).await;
    let used = counted.counts();
    assert!(used.total() <= 10, "{used:?} in 10 s");
    assert_eq!(used.queue_writes, 1, "queued once");
    g.release().await.unwrap();
    done(&clock, secs(5), wx).await;
}

/// With the defaults, a waiter fourth in the queue, behind processes that
/// each hold 2 s, restarts its quick polls at every grant and every
/// confirmation although it cannot be granted before the ones ahead: its
/// first 10 s of waiting cost well over 10 requests.
#[tokio::test(start_paused = true)]
async fn cost_a_ten_second_wait_deep_in_the_queue() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let t0 = clock.now();
    let counted = CountingBackend::new(mem.clone());
    let mk = |b: Arc<dyn LockBackend>, host: &str, seed| {
        LockClient::builder_shared(b)
            .clock(clock.clone())
            .host_identifier(host)
            .jitter_seed(seed)
            .build()
            .unwrap()
    };
    let h = mk(Arc::new(mem.clone()), "h", 1);
    let mon = Monitor::default();
    let g = h.create_lock(NAME).acquire().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..3u64 {
        let c = mk(Arc::new(mem.clone()), &format!("c{i}"), 10 + i);
        // Each holds 4 s, so x still waits at 10 s: the window counts
        // waiting only, not x's own confirmation and release.
        tasks.push(waiter(&c, &format!("c{i}"), None, None, secs(4), &mon));
        clock.sleep(ms(50)).await;
    }
    let x = mk(Arc::new(counted.clone()), "x", 20);
    let start = clock.now();
    tasks.push(waiter(&x, "x", None, None, ms(100), &mon));
    at(&clock, t0, secs(1)).await;
    g.release().await.unwrap();
    clock.sleep_until(start + secs(10) - ms(1)).await;
    let used = counted.counts();
    let x_at = mon.when("x", 0);
    for t in tasks {
        done(&clock, secs(30), t).await;
    }
    assert!(
        x_at.is_none_or(|at| at - start >= secs(6)),
        "x waited long enough to measure"
    );
    assert_eq!(mon.violations(), Vec::<String>::new());
    assert!(used.total() <= 10, "{used:?} in x's first 10 s of waiting");
}

/// Guards the helpers: a monitor flags two processes at once and a token
/// that does not go up.
#[tokio::test(start_paused = true)]
async fn monitor_flags_overlap_and_token_regression() {
    let clock = TestClock::new();
    let a = process(MemoryBackend::new(), &clock, "a", 1);
    let b = process(MemoryBackend::new(), &clock, "b", 2);
    let mon = Monitor::default();
    let ga = a.create_lock(NAME).acquire().await.unwrap();
    let gb = b.create_lock(NAME).acquire().await.unwrap();
    assert_eq!(ga.fencing_token(), gb.fencing_token());
    assert!(ga.fencing_token() > FencingToken::new(0));
    mon.acquired("a", &ga, clock.now());
    mon.acquired("b", &gb, clock.now());
    assert_eq!(mon.violations().len(), 2, "{:?}", mon.violations());
}
