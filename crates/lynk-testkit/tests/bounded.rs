//! Nothing hangs: every store call of the engine has a time limit, so a
//! store that stops answering (a half-open connection) delays lynk by a
//! bounded time and is then reported, never waited on forever.
//!
//! With the default settings and a 20 s lease, one store call is given up
//! after 5 s (a quarter of the lease) and a release after 10 s.

use std::time::Duration;

use lynk_core::{ClientConfig, Clock, FencingToken, LockClient, LockError, LockRecord, Version};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

const L: Duration = Duration::from_secs(20);
const CALL: Duration = Duration::from_secs(5);
const RELEASE: Duration = Duration::from_secs(10);

fn client(b: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    LockClient::builder(b)
        .clock(clock.clone())
        .host_identifier(host)
        .default_lease(L)
        .jitter_seed(3)
        .build()
        .unwrap()
}

fn held_by(host: &str, released: bool) -> LockRecord {
    LockRecord {
        key: "x".into(),
        version: Version::random(),
        lease_duration: L,
        host: host.into(),
        fencing_token: Some(FencingToken::new(5)),
        payload: None,
        released,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

/// One read that never returns used to wedge the name's acquirer for good:
/// a lock freed meanwhile was never seen free.
#[tokio::test(start_paused = true)]
async fn one_hung_read_does_not_wedge_the_waiters() {
    let mem = MemoryBackend::new();
    let faulty = FaultyBackend::new(mem.clone());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "w");
    mem.put_raw(held_by("remote", false));
    faulty.inject(Some(Op::Read), None, Fault::Stall, Some(1));
    let lock = c.create_lock("x");
    let waiter = tokio::spawn(async move { lock.acquire_timeout(Duration::from_secs(15)).await });
    clock.advance(Duration::from_secs(2)).await;
    mem.put_raw(held_by("remote", true)); // the remote holder released
    let guard = waiter.await.unwrap().expect("the freed lock is acquired");
    assert_eq!(mem.get("x").unwrap().host, "w");
    guard.release().await.unwrap();
}

/// `try_acquire` answers within one call timeout whatever the store does,
/// and says that the store did not answer.
#[tokio::test(start_paused = true)]
async fn try_acquire_answers_within_one_call_timeout_on_a_silent_store() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "w");
    faulty.inject(None, None, Fault::Stall, None);
    let start = clock.now();
    let answer = c.create_lock("x").try_acquire().await;
    let took = clock.now() - start;
    assert!(took <= CALL, "answered after {took:?}");
    let err = answer.expect_err("the store never answered");
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(err.is_retryable());
}

/// `acquire_timeout` names the silent store, not a holder it no longer knows.
#[tokio::test(start_paused = true)]
async fn acquire_timeout_on_a_silent_store_says_so() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "w");
    faulty.inject(None, None, Fault::Stall, None);
    let start = clock.now();
    let err = c
        .create_lock("x")
        .acquire_timeout(Duration::from_secs(7))
        .await
        .expect_err("nothing answers");
    assert_eq!(clock.now() - start, Duration::from_secs(7));
    match &err {
        LockError::NotGranted {
            last_error: Some(e),
            ..
        } => assert!(e.message().contains("did not answer"), "{err}"),
        other => panic!("{other:?}"),
    }
}

/// A heartbeat that never returns is given up at its call timeout, and the
/// next heartbeat renews the lease: one bad socket does not lose the lock.
#[tokio::test(start_paused = true)]
async fn one_hung_heartbeat_does_not_lose_the_lease() {
    let mem = MemoryBackend::new();
    let faulty = FaultyBackend::new(mem.clone());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "h");
    let guard = c.create_lock("x").acquire().await.unwrap();
    faulty.inject(Some(Op::Write), None, Fault::Stall, Some(1));
    clock.advance(L * 3).await;
    assert!(!guard.is_lost(), "{:?}", guard.lost_reason());
    let m = c.metrics();
    assert!(m.heartbeat_failures >= 1 && m.heartbeats >= 3, "{m:?}");
    guard.release().await.unwrap();
}

/// A release whose write never returns gives up after the release timeout,
/// reporting that its outcome is unknown.
#[tokio::test(start_paused = true)]
async fn a_hung_release_returns_within_the_release_timeout() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "h");
    let guard = c.create_lock("x").acquire().await.unwrap();
    faulty.inject(Some(Op::Write), None, Fault::Stall, None);
    let start = clock.now();
    let err = guard.release().await.expect_err("never confirmed");
    assert!(clock.now() - start <= RELEASE, "{:?}", clock.now() - start);
    assert!(matches!(err, LockError::OutcomeUnknown { .. }), "{err}");
}

/// `shutdown` on a silent store returns within its bound and reports every
/// held lock as not released.
#[tokio::test(start_paused = true)]
async fn shutdown_on_a_silent_store_is_bounded_and_truthful() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "h");
    let g1 = c.create_lock("a").acquire().await.unwrap();
    let g2 = c.create_lock("b").acquire().await.unwrap();
    faulty.inject(None, None, Fault::Stall, None);
    let start = clock.now();
    let report = c.shutdown().await;
    assert!(clock.now() - start <= RELEASE + CALL);
    assert!(report.released.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert!(
        g1.is_lost() && g2.is_lost(),
        "work under them was told to stop"
    );
}

/// The blocking guard's drop waits for the release, but not forever.
#[test]
fn a_blocking_drop_on_a_silent_store_is_bounded() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let f2 = faulty.clone();
    let factory = lynk_core::blocking::LockFactory::new(move || {
        LockClient::builder(f2)
            .config(ClientConfig {
                default_lease: Duration::from_secs(2),
                release_timeout: Duration::from_millis(300),
                ..ClientConfig::default()
            })
            .build()
    })
    .unwrap();
    let guard = factory.create_lock("x").acquire().unwrap();
    faulty.inject(None, None, Fault::Stall, None);
    let clock = factory.client().clock().clone();
    let start = clock.now();
    drop(guard);
    let took = clock.now() - start;
    // Generous: the bound is 300 ms; only a hang would take seconds.
    assert!(took < Duration::from_secs(5), "drop took {took:?}");
}

/// A wait that ends while the store has not answered its one call yet (the
/// call's limit is longer than the wait) names the silent store, not an
/// imagined holder.
#[tokio::test(start_paused = true)]
async fn a_wait_shorter_than_one_call_names_the_silent_store() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let clock = TestClock::new();
    let c = client(faulty.clone(), &clock, "w");
    faulty.inject(None, None, Fault::Stall, None);
    let err = c
        .create_lock("x")
        .acquire_timeout(Duration::from_secs(3))
        .await
        .expect_err("nothing answers");
    match &err {
        LockError::NotGranted {
            holder: None,
            last_error: Some(e),
            ..
        } => assert!(e.message().contains("has not answered"), "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("the store kept failing"), "{err}");
}
