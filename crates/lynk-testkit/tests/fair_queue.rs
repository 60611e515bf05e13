//! The wait queue across processes (one `LockClient` per process, one
//! in-memory store), on a paused test clock: arrival order, the handover of
//! a short critical section, and what a wait costs in requests.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::builder;
use lynk_core::{Clock, LockClient};
use lynk_testkit::{CountingBackend, MemoryBackend, TestClock};

const LEASE: Duration = Duration::from_secs(20);

fn process(backend: &MemoryBackend, clock: &TestClock, host: &str, seed: u64) -> LockClient {
    builder(backend.clone(), clock, host, LEASE, seed)
        .build()
        .unwrap()
}

/// Three processes start waiting 0.6 s apart behind a holder; each holds
/// the lock 0.3 s. Returns the order they got it in.
async fn one_round(backend: &MemoryBackend, clock: &TestClock, round: u64) -> Vec<usize> {
    let holder = process(backend, clock, "holder", round * 10);
    let waiters: Vec<_> = (0..3)
        .map(|i| process(backend, clock, &format!("w{i}"), round * 10 + 1 + i as u64))
        .collect();
    let guard = holder.create_lock("job").acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, w) in waiters.iter().enumerate() {
        let lock = w.create_lock("job");
        let (order, clock2) = (order.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            let g = lock.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            clock2.sleep(Duration::from_millis(300)).await;
            g.release().await.unwrap();
        }));
        clock.sleep(Duration::from_millis(600)).await;
    }
    // Released at a moment that varies with the round, within the waiters'
    // poll gaps.
    clock
        .sleep(Duration::from_millis(500 + 137 * (round % 11)))
        .await;
    guard.release().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    order
}

#[tokio::test(start_paused = true)]
async fn three_processes_get_the_lock_in_arrival_order_every_round() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let rounds = 20;
    let mut in_order = 0;
    for round in 0..rounds {
        let order = one_round(&backend, &clock, round).await;
        assert_eq!(order.len(), 3, "round {round}: every waiter got the lock");
        if order == [0, 1, 2] {
            in_order += 1;
        } else {
            eprintln!("round {round}: order {order:?}");
        }
    }
    println!("fairness: arrival order kept in {in_order} of {rounds} rounds");
    assert_eq!(in_order, rounds, "arrival order in every round");
    let stored = backend.get("job").unwrap();
    assert!(
        stored.queue.is_empty(),
        "nobody left queued: {:?}",
        stored.queue
    );
}

#[tokio::test(start_paused = true)]
async fn a_short_critical_section_hands_over_within_150_ms_p50_to_another_process() {
    // As measured in the issue: the holder works 0.3 s, the waiter starts
    // 0.1 s after it. Virtual time, so the figure is exact, not a timing.
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let holder = process(&backend, &clock, "holder", 1);
    let waiter = process(&backend, &clock, "waiter", 2);
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let guard = holder.create_lock("job").acquire().await.unwrap();
        let started = clock.now();
        let lock = waiter.create_lock("job");
        let clock2 = clock.clone();
        let waiting = tokio::spawn(async move {
            clock2.sleep(Duration::from_millis(100)).await;
            let g = lock.acquire().await.unwrap();
            (clock2.now(), g)
        });
        clock
            .sleep(Duration::from_millis(300) - (clock.now() - started))
            .await;
        let released = clock.now();
        guard.release().await.unwrap();
        let (acquired, g) = waiting.await.unwrap();
        latencies.push(acquired - released);
        g.release().await.unwrap();
    }
    println!("short critical section: handovers {latencies:?}");
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    assert!(
        p50 <= Duration::from_millis(150),
        "p50 {p50:?}: {latencies:?}"
    );
    assert!(
        latencies.iter().all(|l| *l <= Duration::from_millis(200)),
        "each within the 0.2 s poll gap (+20% jitter): {latencies:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_ten_second_wait_costs_at_most_ten_requests() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let holder = process(&backend, &clock, "holder", 1);
    let counting = CountingBackend::new(backend.clone());
    let waiter = builder(counting.clone(), &clock, "waiter", LEASE, 2)
        .build()
        .unwrap();
    let guard = holder.create_lock("job").acquire().await.unwrap();
    let lock = waiter.create_lock("job");
    let waiting = tokio::spawn(async move { lock.acquire().await.unwrap() });
    clock.sleep(Duration::from_secs(10)).await;
    let during = counting.counts();
    guard.release().await.unwrap();
    let g = waiting.await.unwrap();
    println!("a 10 s wait: {during:?}");
    assert!(
        during.total() <= 10,
        "{} requests in a 10 s wait: {during:?}",
        during.total()
    );
    assert_eq!(during.queue_writes, 1, "queued once: {during:?}");
    let after = counting.counts().since(during);
    assert!(
        after.total() <= 2,
        "the grant costs the waiter one poll and its confirmation: {after:?}"
    );
    g.release().await.unwrap();
}
