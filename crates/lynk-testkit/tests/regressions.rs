//! Regression tests for engine bugs found in review: each failed before its fix.

use std::sync::Arc;
use std::time::Duration;

use lynk_core::{
    BackendErrorKind, Clock, FencingToken, LockClient, LockError, LockRecord, Version,
};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

mod common;
use common::settle;

const L: Duration = Duration::from_secs(20);

fn client(b: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(b, clock, host, L, 7).build().unwrap()
}

/// A heartbeat whose response was lost must not be mistaken by a handover
/// for its own write: the next holder gets a higher token and its own payload.
#[tokio::test(start_paused = true)]
async fn handover_after_an_ambiguous_heartbeat_increases_the_token() {
    let mem = MemoryBackend::new();
    let faulty = FaultyBackend::new(mem.clone());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "a");
    let a = c
        .create_lock("x")
        .with_payload("A")
        .acquire()
        .await
        .unwrap();
    let ta = a.fencing_token();
    let lock_b = c.create_lock("x").with_payload("B");
    let b = tokio::spawn(async move { lock_b.acquire().await });
    settle().await;
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    clock.advance(L / 3 + Duration::from_millis(2)).await;
    a.release().await.unwrap();
    let b = b.await.unwrap().unwrap();
    assert!(
        b.fencing_token() > ta,
        "token did not increase: A={ta} B={}",
        b.fencing_token()
    );
    assert_eq!(b.payload().map(|p| &p[..]), Some(&b"B"[..]));
    assert_eq!(mem.get("x").unwrap().payload.as_deref(), Some(&b"B"[..]));
}

/// ... and without a waiter, the release really releases.
#[tokio::test(start_paused = true)]
async fn release_after_an_ambiguous_heartbeat_releases() {
    let mem = MemoryBackend::new();
    let faulty = FaultyBackend::new(mem.clone());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "a");
    let a = c.create_lock("x").acquire().await.unwrap();
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    clock.advance(L / 3 + Duration::from_millis(2)).await;
    a.release().await.unwrap();
    assert!(
        mem.get("x").unwrap().released,
        "release() said Ok, so the record must be released"
    );
}

/// A handover of unknown outcome, resolved later, must not be timed from the
/// resolution: a remote waiter and the local one never both hold the lock.
///
/// Run twice: without a store queue (the original finding: A's release is a
/// handover to its local waiter), and with one (A's release grants the lock
/// to B, queued in the store, first).
#[tokio::test(start_paused = true)]
async fn a_late_resolved_handover_does_not_overlap_a_takeover() {
    late_resolved_release(false).await;
    late_resolved_release(true).await;
}

async fn late_resolved_release(queue: bool) {
    let mem = MemoryBackend::new();
    let faulty = FaultyBackend::new(mem.clone());
    let clock = TestClock::new();
    let (a, b) = if queue {
        (
            client(faulty.clone(), &clock, "a"),
            client(mem.clone(), &clock, "b"),
        )
    } else {
        (
            client(common::NoQueue(faulty.clone()), &clock, "a"),
            client(common::NoQueue(mem.clone()), &clock, "b"),
        )
    };
    let a1 = a.create_lock("x").acquire().await.unwrap();
    let lock_a2 = a.create_lock("x");
    let (c2, c3) = (clock.clone(), clock.clone());
    let a2 = tokio::spawn(async move {
        let g = lock_a2.acquire().await.unwrap();
        let granted = c2.now();
        c2.sleep(Duration::from_secs(30)).await; // hold
        let released = c2.now();
        let still_ours = !g.is_lost();
        drop(g.release().await);
        (granted, released, still_ours)
    });
    let lock_b = b.create_lock("x");
    // B holds 1 s and releases: with the store's wait queue, A's release
    // may grant the lock to B (queued in the store) before A's local waiter.
    let bt = tokio::spawn(async move {
        let g = lock_b.acquire().await.unwrap();
        let at = c3.now();
        c3.sleep(Duration::from_secs(1)).await;
        let still_ours = !g.is_lost();
        drop(g.release().await);
        (at, c3.now(), still_ours)
    });
    settle().await;
    clock.advance(Duration::from_secs(1)).await;
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    drop(a1.release().await);
    faulty.clear();
    let (granted, released, a2_kept_it) = a2.await.unwrap();
    let (b_at, b_released, b_kept_it) = bt.await.unwrap();
    let overlap = (b_at >= granted && b_at < released && a2_kept_it)
        || (granted >= b_at && granted < b_released && b_kept_it);
    assert!(
        !overlap,
        "B held [{b_at:?}, {b_released:?}] and A2 held [{granted:?}, {released:?}]"
    );
}

/// A handover finishing after `shutdown()` must not hand out an unwatched guard.
#[tokio::test(start_paused = true)]
async fn a_handover_racing_shutdown_hands_out_no_guard() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = FaultyBackend::new(mem.clone()).with_clock(Arc::new(clock.clone()));
    let c = client(faulty.clone(), &clock, "a");
    let a = c.create_lock("x").acquire().await.unwrap();
    let lock_b = c.create_lock("x");
    let bt = tokio::spawn(async move { lock_b.acquire().await });
    settle().await;
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::Delay(Duration::from_millis(500)),
        Some(1),
    );
    let rel = tokio::spawn(async move { a.release().await });
    settle().await;
    drop(c.shutdown().await);
    rel.await.unwrap().unwrap();
    assert!(matches!(bt.await.unwrap(), Err(LockError::ShutDown)));
    clock.advance(Duration::from_secs(1)).await;
    assert!(
        mem.get("x").unwrap().released,
        "the handed-over lease was released"
    );
}

/// A `LeaseWatch` learns that its guard was released.
#[tokio::test(start_paused = true)]
async fn a_lease_watch_sees_the_release() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(mem.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let w = g.watch();
    assert!(w.is_held());
    drop(g);
    w.ended().await;
    assert!(!w.is_held());
    assert!(!w.is_lost(), "a release is not a loss");
}

/// A grant resolved long after its write is renewed, never handed out stale.
#[tokio::test(start_paused = true)]
async fn a_grant_is_never_handed_out_past_its_deadline() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = FaultyBackend::new(mem.clone()).with_clock(Arc::new(clock.clone()));
    let c = client(faulty.clone(), &clock, "a");
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        Some(25),
    );
    let g = c.create_lock("x").acquire().await.unwrap();
    assert!(!g.is_lost());
    assert!(g.safe_deadline() > clock.now() + L / 2, "a fresh lease");
}

/// An abandoned attempt whose write applied is recognised by the next acquire.
#[tokio::test(start_paused = true)]
async fn an_abandoned_attempt_does_not_strand_the_lock() {
    let mem = MemoryBackend::new();
    let faulty = FaultyBackend::new(mem.clone());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "a");
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    assert!(
        c.create_lock("x").try_acquire().await.is_err(),
        "outcome unknown"
    );
    clock.advance(Duration::from_secs(1)).await;
    let t0 = clock.now();
    let g = c.create_lock("x").acquire().await.unwrap();
    assert!(
        clock.now() - t0 < Duration::from_secs(1),
        "took {:?}",
        clock.now() - t0
    );
    g.release().await.unwrap();
}

/// A record with an absurd lease neither panics nor blocks the queue.
#[tokio::test(start_paused = true)]
async fn an_absurd_lease_in_a_record_is_survived() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(mem.clone(), &clock, "a");
    mem.put_raw(LockRecord {
        key: "x".into(),
        version: Version::random(),
        lease_duration: Duration::from_secs(u64::MAX),
        host: "h".into(),
        fencing_token: Some(FencingToken::new(1)),
        payload: None,
        released: false,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    });
    let l = c.create_lock("x");
    assert!(matches!(
        l.acquire_timeout(Duration::from_secs(5)).await,
        Err(LockError::NotGranted { .. })
    ));
    mem.remove_raw("x");
    l.acquire_timeout(Duration::from_secs(60))
        .await
        .expect("served once the record is gone")
        .release()
        .await
        .unwrap();
}

/// A detached guard leaves its record held and heartbeats no more; its
/// version releases it later through `release_version`, which keeps the
/// token; a wrong version is refused with the stored record.
#[tokio::test(start_paused = true)]
async fn a_detached_lock_stays_held_until_released_by_its_version() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(mem.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let token = g.fencing_token();
    let version = g.record_version().await;
    g.detach();
    assert!(c.held_locks().is_empty(), "forgotten by the client");
    clock.advance(L).await;
    let stored = mem.get("x").unwrap();
    assert_eq!(stored.version, version, "no heartbeat after detach");
    assert!(!stored.released, "not released by detach");
    let wrong = c.release_version("x", &Version::random()).await;
    assert!(matches!(
        wrong,
        Err(lynk_core::WriteError::ConditionFailed { current: Some(_) })
    ));
    let released = c.release_version("x", &version).await.unwrap();
    assert!(released.released);
    assert_eq!(released.fencing_token, Some(token));
    let next = c.create_lock("x").try_acquire().await.unwrap().unwrap();
    assert!(next.fencing_token() > token);
    next.release().await.unwrap();
}

/// Found by the simulation: a handover whose first attempt applied (response
/// lost) and whose retries failed for longer than the waiter's lease could be
/// resolved only after that lease's safe deadline; the waiter was then handed
/// a lease already lost. It is requeued and takes its own record over afresh.
#[tokio::test(start_paused = true)]
async fn a_handover_resolved_late_is_not_handed_out_stale() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let clock = TestClock::new();
    let c = LockClient::builder(faulty.clone())
        .clock(clock.clone())
        .config(lynk_core::ClientConfig {
            host_identifier: "a".into(),
            default_lease: Duration::from_secs(10),
            jitter_seed: Some(7),
            release_timeout: Duration::from_secs(30),
            ..lynk_core::ClientConfig::default()
        })
        .build()
        .unwrap();
    let first = c.create_lock("x").acquire().await.unwrap();
    let lock = c.create_lock("x");
    let waiter = tokio::spawn(async move { lock.acquire().await });
    settle().await;
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        Some(14),
    );
    let released = tokio::spawn(first.release());
    let second = waiter.await.unwrap().unwrap();
    assert!(
        clock.now() < second.safe_deadline() && !second.is_lost(),
        "{:?}",
        second.lost_reason()
    );
    released.await.unwrap().unwrap();
}
