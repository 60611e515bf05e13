//! The lock engine on the controllable clock, continued: local queuing and
//! handover, drop and shutdown, try_acquire, payloads, input validation,
//! many locks, drift, short-lived holders, a failing store.

use std::time::Duration;

use lynk_core::{BackendErrorKind, Clock, LockClient, LockError, LostReason};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

const LEASE: Duration = Duration::from_secs(10);

mod common;

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 7)
        .build()
        .expect("valid config")
}

#[tokio::test(start_paused = true)]
async fn local_waiters_are_served_fifo_with_one_write_per_handover_and_no_polling() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "me");
    let holder = c.create_lock("job").acquire().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..3 {
        let (c, tx) = (c.clone(), tx.clone());
        tokio::spawn(async move {
            let g = c.create_lock("job").acquire().await.unwrap();
            tx.send((i, g.fencing_token())).unwrap();
            c.clock().sleep(Duration::from_secs(1)).await;
            g.release().await.unwrap();
        });
        tokio::task::yield_now().await; // enqueue in order
    }
    clock.advance(LEASE * 3).await; // a long hold: waiters must not poll
    let before = backend.counts();
    assert_eq!(
        backend.counts().reads,
        0,
        "no polling while a local holder exists"
    );
    let first_token = holder.fencing_token();
    holder.release().await.unwrap();
    let (i, t) = rx.recv().await.unwrap();
    let handover = backend.counts().since(before);
    assert_eq!(
        (handover.writes, handover.reads, handover.deletes),
        (1, 0, 0),
        "exactly one write per handover"
    );
    assert_eq!(i, 0);
    assert!(t > first_token);
    let mut order = vec![i];
    let mut last = t;
    while order.len() < 3 {
        let (i, t) = rx.recv().await.unwrap();
        assert!(t > last);
        last = t;
        order.push(i);
    }
    assert_eq!(order, vec![0, 1, 2], "FIFO");
    assert_eq!(c.metrics().handovers, 3);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_guard_releases_it() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let b = client(backend.clone(), &clock, "b");
    let guard = a.create_lock("job").acquire().await.unwrap();
    assert!(b.create_lock("job").try_acquire().await.unwrap().is_none());
    drop(guard);
    tokio::task::yield_now().await;
    clock.advance(Duration::from_millis(1)).await;
    assert!(
        backend.get("job").unwrap().released,
        "drop released the record"
    );
    let g = b
        .create_lock("job")
        .try_acquire()
        .await
        .unwrap()
        .expect("free after drop");
    g.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_everything_and_reports_per_lock() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "me");
    let mut guards = Vec::new();
    for name in ["a", "b", "c"] {
        guards.push(c.create_lock(name).acquire().await.unwrap());
    }
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.create_lock("a").acquire().await })
    };
    tokio::task::yield_now().await;
    let report = c.shutdown().await;
    let mut released = report.released.clone();
    released.sort();
    assert_eq!(released, vec!["a", "b", "c"]);
    assert!(report.is_clean());
    for name in ["a", "b", "c"] {
        assert!(backend.get(name).unwrap().released, "{name} released");
    }
    for g in &guards {
        assert_eq!(
            g.lost_reason(),
            Some(LostReason::ClientShutDown),
            "holders are told"
        );
    }
    assert!(matches!(waiter.await.unwrap(), Err(LockError::ShutDown)));
    assert!(matches!(
        c.create_lock("d").acquire().await,
        Err(LockError::ShutDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_locks_it_could_not_release() {
    let clock = TestClock::new();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let c = client(faulty.clone(), &clock, "me");
    let _a = c.create_lock("a").acquire().await.unwrap();
    let _b = c.create_lock("b").acquire().await.unwrap();
    faulty.inject(
        Some(Op::Write),
        Some("b"),
        Fault::FailBefore(BackendErrorKind::AccessDenied),
        None,
    );
    let report = c.shutdown().await;
    assert_eq!(report.released, vec!["a"]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "b");
    assert!(
        report.failed[0].1.to_string().contains("access denied"),
        "{}",
        report.failed[0].1
    );
}

#[tokio::test(start_paused = true)]
async fn try_acquire_does_not_wait_and_costs_one_write() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let b = client(backend.clone(), &clock, "b");
    let g = a.create_lock("job").acquire().await.unwrap();
    let before = backend.counts();
    let start = clock.now();
    assert!(b.create_lock("job").try_acquire().await.unwrap().is_none());
    assert_eq!(clock.now(), start);
    assert_eq!(backend.counts().since(before).total(), 1);
    // Locally held: answered with no I/O at all.
    let before = backend.counts();
    assert!(a.create_lock("job").try_acquire().await.unwrap().is_none());
    assert_eq!(backend.counts().since(before).total(), 0);
    g.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn payload_is_readable_by_others() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let leader = client(backend.clone(), &clock, "leader");
    let follower = client(backend.clone(), &clock, "follower");
    let g = leader
        .create_lock("leader")
        .with_payload("10.0.0.7:8080")
        .acquire()
        .await
        .unwrap();
    clock.advance(LEASE * 2).await; // heartbeats keep the payload
    let seen = follower.describe("leader").await.unwrap().unwrap();
    assert_eq!(seen.payload.as_deref(), Some(&b"10.0.0.7:8080"[..]));
    assert_eq!(seen.host, "leader");
    assert_eq!(g.payload().map(|p| &p[..]), Some(&b"10.0.0.7:8080"[..]));
    g.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_refused_before_any_request() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "me");
    let cases: Vec<(lynk_core::Lock, &str)> = vec![
        (c.create_lock(""), "lock name"),
        (c.create_lock("x".repeat(2049)), "lock name"),
        (c.create_lock("job").with_lease(Duration::ZERO), "lease"),
        (
            c.create_lock("job")
                .with_lease(Duration::from_secs(365 * 24 * 3600)),
            "lease",
        ),
        (
            c.create_lock("job").with_payload(vec![0u8; 300 * 1024]),
            "payload",
        ),
    ];
    for (lock, what) in cases {
        match lock.acquire().await {
            Err(LockError::InvalidInput { what: w, problem }) => {
                assert_eq!(w, what);
                assert!(!problem.is_empty());
            }
            other => panic!("expected invalid {what}, got {other:?}"),
        }
    }
    assert_eq!(backend.counts().total(), 0);
    let bad = LockClient::builder(MemoryBackend::new())
        .drift_allowance(0.9)
        .build();
    assert!(matches!(
        bad,
        Err(LockError::InvalidInput {
            what: "drift allowance",
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn one_task_heartbeats_many_locks_for_an_hour() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "me");
    let mut guards = Vec::new();
    for i in 0..500 {
        guards.push(c.create_lock(format!("lock-{i}")).acquire().await.unwrap());
    }
    clock.advance(Duration::from_secs(3600)).await;
    assert!(guards.iter().all(|g| !g.is_lost()));
    let beats = c.metrics().heartbeats;
    // 3 per lease of 10 s for an hour: 1080 per lock.
    assert!(beats >= 500 * 1070, "{beats} heartbeats");
    let report = c.shutdown().await;
    assert_eq!(report.released.len(), 500);
}

#[tokio::test(start_paused = true)]
async fn a_drifting_waiter_still_waits_long_enough() {
    // The waiter's clock runs 1 % fast: it measures the lease a bit short,
    // which the drift allowance must absorb against a holder whose clock is
    // 1 % slow (so its safe deadline comes late in real time).
    let backend = MemoryBackend::new();
    let fast = TestClock::new().with_drift(1.01);
    let slow = TestClock::new().with_drift(0.99);
    let holder = client(backend.clone(), &slow, "slow-holder");
    let waiter = client(backend.clone(), &fast, "fast-waiter");
    let real = TestClock::new();
    let g = holder.create_lock("job").acquire().await.unwrap();
    let holder_safe_real = {
        let local_left = g.safe_deadline() - slow.now();
        real.now() + local_left.div_f64(0.99)
    };
    // The holder crashes: freeze its heartbeats by forgetting the client's task.
    let record = backend.get("job").unwrap();
    holder.shutdown().await;
    backend.put_raw(record);
    drop(g);
    let w = waiter.create_lock("job").acquire().await.unwrap();
    assert!(
        real.now() >= holder_safe_real,
        "waiter took over {:?} before the holder's safe deadline",
        holder_safe_real - real.now()
    );
    w.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_holder_needs_no_heartbeats() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "lambda");
    let guard = c
        .create_lock("job")
        .without_heartbeat()
        .acquire()
        .await
        .unwrap();
    assert_eq!(backend.counts().total(), 1);
    let safe = guard.safe_deadline();
    clock.advance(LEASE / 2).await; // the work
    assert_eq!(backend.counts().total(), 1, "no heartbeat writes");
    assert!(!guard.is_lost());
    guard.release().await.unwrap();
    assert_eq!(
        backend.counts().total(),
        2,
        "one write to acquire, one to release"
    );
    // Overrunning the lease is signalled, before the safe deadline.
    let guard = c
        .create_lock("job")
        .without_heartbeat()
        .acquire()
        .await
        .unwrap();
    let safe2 = guard.safe_deadline();
    assert!(safe2 > safe);
    guard.lost().await;
    assert!(clock.now() < safe2);
    assert_eq!(guard.lost_reason(), Some(LostReason::LeaseRanOut));
    assert_eq!(backend.counts().total(), 3, "still no heartbeat");
}

#[tokio::test(start_paused = true)]
async fn waiting_on_a_failing_store_says_so() {
    let clock = TestClock::new();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let c = client(faulty.clone(), &clock, "me");
    faulty.inject(
        None,
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    let err = c
        .create_lock("job")
        .acquire_timeout(Duration::from_secs(5))
        .await
        .expect_err("the store is down");
    match &err {
        LockError::NotGranted {
            last_error: Some(e),
            ..
        } => assert!(e.to_string().contains("unavailable"), "{e}"),
        other => panic!("expected NotGranted naming the store error, got {other:?}"),
    }
    assert!(err.to_string().contains("the store kept failing"), "{err}");
    assert!(err.to_string().contains("within 5s"), "{err}");
    // Once the store recovers, the lock is granted.
    faulty.clear();
    let g = c
        .create_lock("job")
        .acquire_timeout(Duration::from_secs(5))
        .await
        .unwrap();
    g.release().await.unwrap();
}
