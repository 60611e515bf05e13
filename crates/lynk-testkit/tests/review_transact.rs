//! Review probes of the multi-lock's transaction fast path
//! (`Engine::acquire_all_at_once`, `Slots::reserve` / `end_reservation`).
//! Passing tests pin what held up; the tests marked "Regression for finding
//! N" failed before their fix (engine/slots.rs `end_reservation` answers a
//! queued `try_acquire`; engine/transact.rs falls back below a token that
//! would be exhausted).

use std::time::Duration;

use lynk_core::{Clock, LockClient, LockError};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};

mod common;

const LEASE: Duration = Duration::from_secs(10);

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 7)
        .build()
        .expect("valid config")
}

/// Finding 1: a `try_acquire` of a name reserved by a transaction is
/// queued behind the reservation (`Slots::enqueue`: the reservation sets
/// `acquirer_running`, so the try only wakes a non-existent acquirer). When
/// the transaction wins, `end_reservation(Some(lease))` makes the lease the
/// holder and `settle` starts no acquirer, so the try waiter sits in the
/// local queue until the multi-lock is released: `try_acquire` blocks for as
/// long as the multi-lock is held instead of answering "busy" after one
/// attempt.
#[tokio::test(start_paused = true)]
// Regression for finding 1 of the transaction review (fixed).
async fn a_try_acquire_during_the_transaction_answers_busy() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::Delay(Duration::from_secs(1)),
        Some(1),
    );
    let multi = c.multi_lock(["a", "b"]);
    let taking = tokio::spawn(async move { multi.acquire().await });
    common::settle().await;
    let single = c.create_lock("a");
    let trying = tokio::spawn(async move { single.try_acquire().await });
    clock.advance(Duration::from_millis(1100)).await;
    let guard = taking.await.unwrap().unwrap();
    let answer = common::within(&clock, Duration::from_secs(5), trying)
        .await
        .expect("a try_acquire answers while the multi-lock is held")
        .unwrap()
        .unwrap();
    assert!(answer.is_none(), "a is the multi-lock's: busy");
    guard.release().await.unwrap();
}

/// The fast path is inside an async fn the caller can drop. Dropped during
/// its reads, it must not leave the names reserved (`acquirer_running`
/// forever, nobody polling) for a local waiter queued meanwhile.
#[tokio::test(start_paused = true)]
async fn an_acquire_dropped_during_its_reads_strands_no_local_waiter() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(
        Some(Op::Read),
        Some("b"),
        Fault::Delay(Duration::from_secs(3)),
        Some(1),
    );
    let multi = c.multi_lock(["a", "b"]);
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        common::settle().await;
        c2.create_lock("a").acquire().await
    });
    let gave_up = common::within(&clock, Duration::from_secs(1), multi.acquire()).await;
    assert!(gave_up.is_none(), "still reading");
    let g = common::within(&clock, Duration::from_secs(10), waiter)
        .await
        .expect("the waiter queued behind the reservation is served")
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
    let g = common::within(
        &clock,
        Duration::from_secs(10),
        c.create_lock("b").acquire(),
    )
    .await
    .expect("b not left reserved")
    .unwrap();
    g.release().await.unwrap();
}

/// Same, dropped while the transaction is in flight and a local waiter
/// queued behind it.
#[tokio::test(start_paused = true)]
async fn an_acquire_dropped_during_its_write_strands_no_local_waiter() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::Delay(Duration::from_secs(3)),
        Some(1),
    );
    let multi = c.multi_lock(["a", "b"]);
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        common::settle().await;
        c2.create_lock("b").acquire().await
    });
    let gave_up = common::within(&clock, Duration::from_secs(1), multi.acquire()).await;
    assert!(gave_up.is_none(), "still in its transaction");
    let g = common::within(&clock, Duration::from_secs(10), waiter)
        .await
        .expect("the waiter queued behind the reservation is served")
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
}

/// Finding 2 probe: a token of `u64::MAX` is refused on the single path
/// (`Engine::deliver`: TokenExhausted), but the transaction only refuses a
/// *stored* token of `u64::MAX`; a stored `u64::MAX - 1` gives a lease with
/// token `u64::MAX`, handed out by `adopt` without the check.
#[tokio::test(start_paused = true)]
// Regression for finding 2 of the transaction review (fixed).
async fn the_transaction_never_hands_out_an_exhausted_token() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    memory.put_raw(common::record("a", "old", LEASE, u64::MAX - 1, true));
    let c = client(memory.clone(), &clock, "multi");
    let out = common::within(
        &clock,
        Duration::from_secs(5),
        c.multi_lock(["a", "b"]).acquire(),
    )
    .await
    .expect("answered");
    if let Ok(guard) = out {
        for (name, token) in guard.tokens() {
            assert_ne!(
                token.get(),
                u64::MAX,
                "{name}: an exhausted token handed out"
            );
        }
    }
}

/// A shutdown while the transaction is in flight: no name is left held by
/// the shut-down client, and no live guard is handed out (held up).
#[tokio::test(start_paused = true)]
async fn a_transaction_answered_after_shutdown_gives_no_guard() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::DelayResponse(Duration::from_secs(2)),
        Some(1),
    );
    let multi = c.multi_lock(["a", "b"]);
    let taking = tokio::spawn(async move { multi.acquire().await });
    common::settle().await;
    let c2 = c.clone();
    let shutting = tokio::spawn(async move { c2.shutdown().await });
    common::settle().await;
    clock.advance(Duration::from_secs(3)).await;
    let out = taking.await.unwrap();
    let _ = common::within(&clock, Duration::from_secs(30), shutting).await;
    assert!(
        matches!(out, Err(LockError::ShutDown)) || out.as_ref().is_ok_and(|g| g.is_lost()),
        "a lock won after the shutdown began is not handed out as held"
    );
    clock.advance(LEASE * 2).await;
    for name in ["a", "b"] {
        assert!(
            memory.get(name).is_none_or(|r| r.released),
            "{name} left held by a shut-down client"
        );
    }
}

/// The lease is timed from the send instant: a slow response does not
/// stretch it.
#[tokio::test(start_paused = true)]
async fn the_lease_is_timed_from_the_send() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::DelayResponse(Duration::from_secs(4)),
        Some(1),
    );
    let start = clock.now();
    let guard = c.multi_lock(["a", "b"]).acquire().await.unwrap();
    for g in guard.guards() {
        assert!(
            g.safe_deadline() <= start + LEASE,
            "{}: lease valid past send + lease",
            g.name()
        );
    }
    guard.release().await.unwrap();
}

/// Another client takes a name between the reads and the write: the
/// transaction's condition fails, nothing is written, and the multi-lock
/// waits on the ordered path; never two holders.
#[tokio::test(start_paused = true)]
async fn another_client_between_read_and_write_is_not_overwritten() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    let other = client(memory.clone(), &clock, "other");
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::Delay(Duration::from_secs(1)),
        Some(1),
    );
    let multi = c.multi_lock(["a", "b"]);
    let taking = tokio::spawn(async move { multi.acquire().await });
    common::settle().await;
    let theirs = other.create_lock("b").acquire().await.unwrap();
    let their_token = theirs.fencing_token();
    clock.advance(Duration::from_secs(3)).await;
    assert!(!taking.is_finished(), "b is the other client's");
    assert_eq!(memory.get("b").unwrap().host, "other");
    assert!(!memory.get("b").unwrap().released);
    theirs.release().await.unwrap();
    let guard = common::within(&clock, Duration::from_secs(10), taking)
        .await
        .expect("granted after the release")
        .unwrap()
        .unwrap();
    assert!(guard.fencing_token("b").unwrap() > their_token);
    guard.release().await.unwrap();
}

/// A single-lock acquire of a reserved name in the same client queues
/// behind the transaction; after a failed transaction it is served by the
/// ordered path, never alongside the multi-lock.
#[tokio::test(start_paused = true)]
async fn a_local_waiter_and_a_failed_transaction_never_both_hold() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::FailBefore(lynk_core::BackendErrorKind::Unavailable),
        Some(1),
    );
    let single = c.create_lock("a");
    let multi = c.multi_lock(["a", "b"]);
    let taking = tokio::spawn(async move { multi.acquire().await });
    let waiter = tokio::spawn(async move { single.acquire().await });
    common::settle().await;
    clock.advance(Duration::from_secs(2)).await;
    let first_done = (taking.is_finished(), waiter.is_finished());
    assert!(first_done != (true, true), "both hold a at once");
    if waiter.is_finished() {
        let g = waiter.await.unwrap().unwrap();
        g.release().await.unwrap();
        let m = common::within(&clock, Duration::from_secs(10), taking)
            .await
            .expect("multi served after")
            .unwrap()
            .unwrap();
        m.release().await.unwrap();
    } else {
        let m = taking.await.unwrap().unwrap();
        m.release().await.unwrap();
        let g = common::within(&clock, Duration::from_secs(10), waiter)
            .await
            .expect("waiter served after")
            .unwrap()
            .unwrap();
        g.release().await.unwrap();
    }
}

/// A transaction that applied but stalled (no answer) times out as unknown:
/// the ordered path recognises the records, and tokens increase.
#[tokio::test(start_paused = true)]
async fn a_stalled_applied_transaction_is_recognised_with_increasing_tokens() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    memory.put_raw(common::record("a", "old", LEASE, 40, true));
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(Some(Op::Write), Some("a"), Fault::StallAfterApply, Some(1));
    let guard = common::within(&clock, LEASE * 3, c.multi_lock(["a", "b"]).acquire())
        .await
        .expect("answered")
        .unwrap();
    let a = memory.get("a").unwrap();
    assert!(!a.released);
    assert_eq!(a.fencing_token, guard.fencing_token("a"));
    assert!(guard.fencing_token("a").unwrap().get() > 40);
    for (name, token) in guard.tokens() {
        assert_eq!(
            memory.get(name).unwrap().fencing_token,
            Some(token),
            "{name}"
        );
    }
    guard.release().await.unwrap();
}
