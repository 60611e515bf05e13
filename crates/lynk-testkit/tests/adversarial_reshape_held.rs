//! Adversarial review of the engine reshape (issue 11: `lynk-core/src/engine/`,
//! `LeaseHandle`, `LockGuard::record_version` / `detach`,
//! `LockClient::release_version`), against the engine before it (3bc26b5).
//!
//! This file: the attacks the reshaped engine held, kept as regression guards
//! (the findings, each fixed, are in `adversarial_reshape.rs`).
//!
//! Run: `cargo test -p lynk-testkit --test adversarial_reshape_held`

use std::time::Duration;

use lynk_core::{
    BackendErrorKind, ClientConfig, Clock, FencingToken, LockBackend, LockClient, LockError,
    LockRecord, LostReason, Version, WriteError,
};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

mod common;
use common::{faulty, settle, within};

const L: Duration = Duration::from_secs(20);
const SEED: u64 = 23;

fn client(b: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(b, clock, host, L, SEED).build().unwrap()
}

fn client_with(
    b: impl lynk_core::LockBackend,
    clock: &TestClock,
    host: &str,
    config: ClientConfig,
) -> LockClient {
    let config = ClientConfig {
        host_identifier: host.to_owned(),
        default_lease: L,
        jitter_seed: Some(SEED),
        ..config
    };
    common::builder(b, clock, host, L, SEED)
        .config(config)
        .build()
        .unwrap()
}

/// Lets time pass in 1 ms steps until `faulty` has injected `n` faults.
async fn until_injected<B: LockBackend>(clock: &TestClock, f: &FaultyBackend<B>, n: u64) {
    for _ in 0..100_000 {
        if f.injected() >= n {
            settle().await;
            return;
        }
        clock.advance(Duration::from_millis(1)).await;
    }
    panic!("only {} of {n} faults were injected", f.injected());
}

// ---------------------------------------------------------------------------
// Attacks the reshaped engine held
// ---------------------------------------------------------------------------

/// Detach with a local waiter queued: the waiter must not be granted before
/// the detached lease's safe deadline (by the detached holder's accounting),
/// and must get a higher token.
#[tokio::test(start_paused = true)]
async fn held_detach_with_a_local_waiter_does_not_overlap() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(mem.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let lock = c.create_lock("x");
    let waiter = tokio::spawn(async move { lock.acquire().await });
    settle().await;
    clock.advance(Duration::from_secs(7)).await; // one heartbeat
    let safe_deadline = g.safe_deadline();
    let t1 = g.fencing_token();
    let version = g.record_version().await;
    g.detach();
    assert!(c.held_locks().is_empty());
    let w = waiter.await.unwrap().unwrap();
    assert!(
        clock.now() >= safe_deadline,
        "granted {:?} before the detached lease's safe deadline",
        safe_deadline - clock.now()
    );
    assert!(w.fencing_token() > t1);
    // The detached version no longer releases anything.
    assert!(matches!(
        c.release_version("x", &version).await,
        Err(WriteError::ConditionFailed { current: Some(_) })
    ));
    w.release().await.unwrap();
}

/// A lease handed over to a local waiter, detached at once, with a third
/// waiter queued: the third is not handed the lock (no handover from a
/// detached lease) and does not get it before the safe deadline.
#[tokio::test(start_paused = true)]
async fn held_detach_of_a_handed_over_lease_does_not_hand_over() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(mem.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let (l2, l3) = (c.create_lock("x"), c.create_lock("x"));
    let w2 = tokio::spawn(async move { l2.acquire().await });
    settle().await;
    let w3 = tokio::spawn(async move { l3.acquire().await });
    settle().await;
    g.release().await.unwrap();
    let g2 = w2.await.unwrap().unwrap();
    let safe = g2.safe_deadline();
    let t2 = g2.fencing_token();
    g2.detach();
    let g3 = w3.await.unwrap().unwrap();
    assert!(clock.now() >= safe, "overlapped the detached lease");
    assert!(g3.fencing_token() > t2);
    g3.release().await.unwrap();
}

/// Detach while a shutdown's release of the same lease is in flight: no
/// panic, no hang, and the report says what happened (the shutdown's release
/// did apply, so "released" is true).
#[tokio::test(start_paused = true)]
async fn held_detach_during_a_shutdown_release_is_reported_truthfully() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::Delay(Duration::from_secs(2)),
        Some(1),
    );
    let c2 = c.clone();
    let shutdown = tokio::spawn(async move { c2.shutdown().await });
    settle().await;
    assert!(matches!(g.lost_reason(), Some(LostReason::ClientShutDown)));
    g.detach();
    let report = shutdown.await.unwrap();
    let stored = mem.get("x").unwrap();
    assert!(stored.released, "the shutdown's release applied");
    assert_eq!(report.released, vec!["x".to_owned()], "{report:?}");
    assert!(report.is_clean());
}

/// Detach after the shutdown finished: nothing to do, nothing panics.
#[tokio::test(start_paused = true)]
async fn held_detach_after_shutdown_is_harmless() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(mem.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let report = c.shutdown().await;
    assert_eq!(report.released, vec!["x".to_owned()]);
    g.detach();
    settle().await;
    assert!(mem.get("x").unwrap().released);
}

/// Detach of a lost lease (heartbeats failing): no panic, not listed as
/// held, the lost reason stays, and a later acquire of the name waits out
/// the record and gets a higher token.
#[tokio::test(start_paused = true)]
async fn held_detach_of_a_lost_lease() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let t1 = g.fencing_token();
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    let watch = g.watch();
    g.lost().await;
    let safe = g.safe_deadline();
    assert!(matches!(
        g.lost_reason(),
        Some(LostReason::HeartbeatsFailed { .. })
    ));
    g.detach();
    assert!(c.held_locks().is_empty());
    assert!(watch.is_lost() && !watch.is_held());
    f.clear();
    let g2 = c.create_lock("x").acquire().await.unwrap();
    assert!(clock.now() >= safe);
    assert!(g2.fencing_token() > t1);
    g2.release().await.unwrap();
}

/// `release_version` racing a heartbeat that reaches the store after it: the
/// holder's lost signal fires (`Stolen`), its release says `Lost`, and the
/// record stays released.
#[tokio::test(start_paused = true)]
async fn held_release_version_before_a_slow_heartbeat_fires_the_lost_signal() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let version = g.record_version().await;
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::Delay(Duration::from_secs(1)),
        Some(1),
    );
    clock.advance(L / 3 + Duration::from_millis(10)).await; // heartbeat delayed
    let released = c.release_version("x", &version).await.unwrap();
    assert!(released.released);
    clock.advance(Duration::from_secs(2)).await;
    assert!(
        matches!(g.lost_reason(), Some(LostReason::ReleasedByOther { .. })),
        "{:?}",
        g.lost_reason()
    );
    assert!(matches!(g.release().await, Err(LockError::Lost { .. })));
    assert!(mem.get("x").unwrap().released);
}

/// `release_version` racing a heartbeat that applied first (its response
/// slow): the release is refused with the heartbeat's record, and the holder
/// keeps its lease.
#[tokio::test(start_paused = true)]
async fn held_release_version_after_an_applied_heartbeat_is_refused() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    let version = g.record_version().await;
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::DelayResponse(Duration::from_secs(1)),
        Some(1),
    );
    clock.advance(L / 3 + Duration::from_millis(10)).await; // applied, unanswered
    let refused = c.release_version("x", &version).await;
    match refused {
        Err(WriteError::ConditionFailed { current: Some(r) }) => {
            assert!(!r.released);
            assert_ne!(r.version, version);
        }
        other => panic!("{other:?}"),
    }
    clock.advance(Duration::from_secs(2)).await;
    assert!(!g.is_lost());
    // record_version waited for nothing stale: it is the heartbeat's now.
    assert_eq!(g.record_version().await, mem.get("x").unwrap().version);
    g.release().await.unwrap();
}

/// `record_version` while a heartbeat is in flight waits for it and returns
/// the version it wrote; after `detach` that version releases the lock.
#[tokio::test(start_paused = true)]
async fn held_record_version_waits_for_a_heartbeat_in_flight() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::Delay(Duration::from_secs(1)),
        Some(1),
    );
    clock.advance(L / 3 - Duration::from_millis(5)).await;
    until_injected(&clock, &f, 1).await; // heartbeat in flight
    let version = g.record_version().await;
    assert_eq!(version, mem.get("x").unwrap().version);
    g.detach();
    clock.advance(L).await;
    assert_eq!(
        mem.get("x").unwrap().version,
        version,
        "no heartbeat after detach"
    );
    assert!(c.release_version("x", &version).await.unwrap().released);
}

/// A token one below the largest: the acquisition that reaches `u64::MAX`
/// is refused with `TokenExhausted`, the one queued behind it too, nobody is
/// handed a guard, and the record ends released.
#[tokio::test(start_paused = true)]
async fn held_token_exhaustion_hands_out_nothing() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    mem.put_raw(LockRecord {
        key: "x".into(),
        version: Version::random(),
        lease_duration: L,
        host: "b".into(),
        fencing_token: Some(FencingToken::new(u64::MAX - 1)),
        payload: None,
        released: true,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    });
    let c = client(mem.clone(), &clock, "a");
    let (l1, l2) = (c.create_lock("x"), c.create_lock("x"));
    let a = tokio::spawn(async move { l1.acquire().await });
    let b = tokio::spawn(async move { l2.acquire().await });
    let a = within(&clock, L, a).await.expect("answered").unwrap();
    let b = within(&clock, L, b).await.expect("answered").unwrap();
    assert!(matches!(a, Err(LockError::TokenExhausted { .. })), "{a:?}");
    assert!(matches!(b, Err(LockError::TokenExhausted { .. })), "{b:?}");
    settle().await;
    assert!(mem.get("x").unwrap().released);
    assert!(c.held_locks().is_empty());
}

/// A handover whose write is of unknown outcome and not resolvable within the
/// release (reads fail too) requeues the waiter with the handover's version
/// as the client's own: the waiter gets the lock without waiting a lease,
/// with a higher token.
#[tokio::test(start_paused = true)]
async fn held_an_unresolved_handover_is_recognised_by_the_requeued_waiter() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let config = ClientConfig {
        release_timeout: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    let c = client_with(f.clone(), &clock, "a", config);
    let g = c.create_lock("x").acquire().await.unwrap();
    let t1 = g.fencing_token();
    let lock = c.create_lock("x");
    let waiter = tokio::spawn(async move { lock.acquire().await });
    settle().await;
    f.inject(Some(Op::Write), Some("x"), Fault::LoseResponse, Some(1));
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        Some(1),
    );
    let r = g.release().await;
    assert!(r.is_err(), "unconfirmed: {r:?}");
    let w = within(&clock, Duration::from_secs(2), waiter)
        .await
        .expect("the requeued waiter recognised its own handover")
        .unwrap()
        .unwrap();
    assert!(w.fencing_token() > t1);
    w.release().await.unwrap();
}
