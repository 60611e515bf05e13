//! A multi-lock on a backend with transactions: free names are taken in one
//! `write_all`, all or none; anything else falls back to ordered
//! acquisition, and a transaction of unknown outcome is recognised.

use std::time::Duration;

use lynk_core::{Clock, LockClient};
use lynk_testkit::{CountingBackend, Fault, MemoryBackend, Op, TestClock};

mod common;

const LEASE: Duration = Duration::from_secs(10);

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 5)
        .build()
        .expect("valid config")
}

#[tokio::test(start_paused = true)]
async fn free_names_are_taken_in_one_transaction() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let counted = CountingBackend::new(memory.clone());
    let c = client(counted.clone(), &clock, "multi");
    let before = counted.counts();
    let guard = c.multi_lock(["c", "a", "b"]).acquire().await.unwrap();
    let spent = counted.counts().since(before);
    assert_eq!(
        (spent.reads, spent.writes),
        (3, 1),
        "three reads and one transaction"
    );
    for (name, token) in guard.tokens() {
        let stored = memory.get(name).expect("stored");
        assert!(!stored.released, "{name} held");
        assert_eq!(stored.fencing_token, Some(token), "{name}'s token");
    }
    // Renewed like any lease.
    clock.advance(LEASE * 3).await;
    assert!(!guard.is_lost());
    guard.release().await.unwrap();
    for name in ["a", "b", "c"] {
        assert!(memory.get(name).unwrap().released, "{name} released");
    }
}

#[tokio::test(start_paused = true)]
async fn a_busy_name_falls_back_to_ordered_acquisition() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let other = client(memory.clone(), &clock, "other");
    let busy = other.create_lock("b").acquire().await.unwrap();
    let c = client(memory.clone(), &clock, "multi");
    let multi = c.multi_lock(["a", "b"]);
    let waiting = tokio::spawn(async move { multi.acquire().await });
    clock.advance(Duration::from_secs(3)).await;
    assert!(!waiting.is_finished());
    assert!(
        !memory.get("a").unwrap().released,
        "ordered: a is held while b is waited for"
    );
    busy.release().await.unwrap();
    let guard = common::within(&clock, Duration::from_secs(5), waiting)
        .await
        .expect("granted once b is free")
        .unwrap()
        .unwrap();
    assert_eq!(guard.names().count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_transaction_of_unknown_outcome_is_recognised_as_ours() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    // The transaction applies; its answer is lost.
    faulty.inject(Some(Op::Write), Some("a"), Fault::LoseResponse, Some(1));
    let start = clock.now();
    let guard = common::within(
        &clock,
        Duration::from_secs(5),
        c.multi_lock(["a", "b"]).acquire(),
    )
    .await
    .expect("not a lease-long wait for our own records")
    .unwrap();
    assert!(clock.now() - start < Duration::from_secs(2));
    for (name, token) in guard.tokens() {
        assert_eq!(memory.get(name).unwrap().fencing_token, Some(token));
    }
}

#[tokio::test(start_paused = true)]
async fn a_local_waiter_queued_during_the_transaction_gets_the_lock_after() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let counted = CountingBackend::new(faulty.clone());
    let c = client(counted.clone(), &clock, "multi");
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
    let waiter = tokio::spawn(async move { single.acquire().await });
    clock.advance(Duration::from_millis(1100)).await;
    let guard = taking.await.unwrap().unwrap();
    assert!(!waiter.is_finished(), "a is the multi-lock's");
    // The transaction's lease is the local holder: the waiter waits in
    // process, and nobody polls the store.
    let before = counted.counts();
    clock.advance(Duration::from_secs(5)).await;
    assert_eq!(
        counted.counts().since(before).reads,
        0,
        "no polling behind a local holder"
    );
    let token_a = guard.fencing_token("a").unwrap();
    guard.release().await.unwrap();
    let single = common::within(&clock, Duration::from_secs(1), waiter)
        .await
        .expect("handed over at the release")
        .unwrap()
        .unwrap();
    assert!(single.fencing_token() > token_a);
}

#[tokio::test(start_paused = true)]
async fn an_acquire_dropped_during_its_transaction_leaves_no_name_reserved() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    // The transaction waits 3 s before the store; the caller gives up after 1 s.
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::Delay(Duration::from_secs(3)),
        Some(1),
    );
    let multi = c.multi_lock(["a", "b"]);
    let gave_up = common::within(&clock, Duration::from_secs(1), multi.acquire()).await;
    assert!(gave_up.is_none(), "still in its transaction");
    // The transaction ends on its own (applied, and its leases, won for
    // nobody, released): a single acquire of either name is served.
    for name in ["a", "b"] {
        let g = common::within(
            &clock,
            Duration::from_secs(10),
            c.create_lock(name).acquire(),
        )
        .await
        .expect("not left reserved for ever")
        .unwrap();
        g.release().await.unwrap();
    }
}
