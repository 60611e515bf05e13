//! Counting semaphores on the in-memory backend, on paused time: permits,
//! tokens, request costs, FIFO order within and across clients, takeover of
//! abandoned permits, lost signals, lost responses, and the mutex next door.

use std::time::Duration;

use lynk_core::{
    BackendErrorKind, Clock, FencingToken, LockClient, LockError, LockRecord, LostReason, Version,
};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};

mod common;

const LEASE: Duration = Duration::from_secs(10);

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 11)
        .build()
        .expect("valid config")
}

/// A permit table left by a host that crashed holding one permit of `permits`.
fn abandoned(key: &str, permits: u32, token: u64) -> LockRecord {
    LockRecord {
        key: key.to_owned(),
        version: Version::random(),
        lease_duration: LEASE,
        host: "crashed-host".to_owned(),
        fencing_token: Some(FencingToken::new(token)),
        payload: Some(
            format!(
                "lynk-semaphore 1\npermits {permits}\nh dead-permit {token} beat-1 {} crashed-host\n",
                LEASE.as_millis()
            )
            .into(),
        ),
        released: false,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

fn held_lines(backend: &MemoryBackend, key: &str) -> usize {
    let record = backend.get(key).expect("record stored");
    let text = String::from_utf8(record.payload.expect("table").to_vec()).unwrap();
    text.lines().filter(|l| l.starts_with("h ")).count()
}

#[tokio::test(start_paused = true)]
async fn at_most_n_permits_each_with_a_higher_token() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "a");
    let sem = c.semaphore("jobs", 2);
    let p1 = sem.acquire().await.unwrap();
    let p2 = sem.acquire().await.unwrap();
    assert!(p1.fencing_token() < p2.fencing_token());
    assert!(
        sem.try_acquire().await.unwrap().is_none(),
        "only two permits"
    );
    assert_eq!(held_lines(&backend, "jobs"), 2);
    assert!(!backend.get("jobs").unwrap().released);

    let t2 = p2.fencing_token();
    p2.release().await.unwrap();
    assert_eq!(held_lines(&backend, "jobs"), 1);
    let p3 = sem.try_acquire().await.unwrap().expect("a permit is free");
    assert!(p3.fencing_token() > t2, "tokens only go up");
    drop(p3);
    p1.release().await.unwrap();
    common::settle().await;
    let record = backend.get("jobs").unwrap();
    assert!(record.released, "no permit held: the record says released");
    assert_eq!(held_lines(&backend, "jobs"), 0);

    let state = sem.describe().await.unwrap().expect("stored");
    assert_eq!((state.permits, state.holders.len()), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_free_permit_costs_at_most_two_requests() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "a");
    let before = backend.counts();
    let p = c.semaphore("jobs", 3).acquire().await.unwrap();
    let cost = backend.counts().since(before).total();
    assert!(cost <= 2, "first acquire cost {cost} requests");
    // A second client, with no cache: a read and a write.
    let other = client(backend.clone(), &clock, "b");
    let before = backend.counts();
    let q = other.semaphore("jobs", 3).try_acquire().await.unwrap();
    assert!(q.is_some());
    let cost = backend.counts().since(before).total();
    assert_eq!(cost, 2, "read + claiming write");
    drop((p, q));
}

#[tokio::test(start_paused = true)]
async fn local_waiters_are_served_in_order_and_share_one_poller() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let holder = client(backend.clone(), &clock, "holder");
    let held = holder.semaphore("jobs", 1).acquire().await.unwrap();

    let counted = lynk_testkit::CountingBackend::new(backend.clone());
    let c = client(counted.clone(), &clock, "waiters");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..5 {
        let sem = c.semaphore("jobs", 1);
        let tx = tx.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let p = sem.acquire().await.unwrap();
            tx.send(i).unwrap();
            clock.sleep(Duration::from_millis(10)).await;
            drop(p);
        });
        common::settle().await;
    }
    common::settle().await;
    // Five waiters, 60 s of waiting: one poller, reading at most once per
    // poll interval, plus the queue line's renewal every lease / 3 (which a
    // holder's renewal in between makes fail once and retry).
    let before = counted.counts();
    clock.advance(Duration::from_secs(60)).await;
    let spent = counted.counts().since(before);
    let poll = c.config().poll_interval_for(LEASE).as_secs_f64();
    assert!(
        spent.reads as f64 <= 60.0 / poll + 2.0,
        "five waiters of one client read {} times in 60 s",
        spent.reads
    );
    assert!(
        spent.writes <= 2 * (60 / 3 + 1),
        "five waiters of one client wrote {} times in 60 s",
        spent.writes
    );
    assert!(rx.try_recv().is_err(), "nobody got the held permit");

    held.release().await.unwrap();
    let mut order = Vec::new();
    for _ in 0..5 {
        let i = common::within(&clock, Duration::from_secs(30), rx.recv())
            .await
            .flatten()
            .expect("each waiter is served");
        order.push(i);
    }
    assert_eq!(order, vec![0, 1, 2, 3, 4], "FIFO within a client");
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_permit_is_taken_over_after_its_lease_and_not_before() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    backend.put_raw(abandoned("jobs", 1, 41));
    let c = client(backend.clone(), &clock, "b");
    let sem = c.semaphore("jobs", 1);
    let after = c.config().takeover_after(LEASE).unwrap();
    let start = clock.now();
    let err = sem
        .acquire_timeout(after - Duration::from_millis(1))
        .await
        .expect_err("not before lease × (1 + d)");
    assert!(matches!(err, LockError::NotGranted { .. }), "{err}");
    let p = sem.acquire().await.unwrap();
    let took = clock.now() - start;
    assert!(took >= after, "took over after {took:?}");
    let poll = c.config().poll_interval_for(LEASE);
    assert!(
        took <= after + poll.mul_f64(1.2) + Duration::from_millis(10),
        "took over after {took:?}"
    );
    assert_eq!(p.fencing_token(), FencingToken::new(42));
    assert_eq!(held_lines(&backend, "jobs"), 1, "the dead line is gone");
}

#[tokio::test(start_paused = true)]
async fn another_permit_count_is_an_error_naming_both() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "a");
    let _p = c.semaphore("jobs", 3).acquire().await.unwrap();
    let other = client(backend.clone(), &clock, "b");
    let err = other
        .semaphore("jobs", 5)
        .acquire()
        .await
        .expect_err("count differs");
    let text = err.to_string();
    assert!(
        matches!(err, LockError::InvalidInput { .. }) && text.contains('3') && text.contains('5'),
        "{text}"
    );
    for bad in [0, lynk_core::MAX_PERMITS + 1] {
        let err = c
            .semaphore("other", bad)
            .acquire()
            .await
            .expect_err("bad count");
        assert!(matches!(err, LockError::InvalidInput { .. }), "{err}");
        assert!(err.to_string().contains(&bad.to_string()), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn failing_renewals_fire_the_lost_signal_before_the_safe_deadline() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    let p = c.semaphore("jobs", 2).acquire().await.unwrap();
    let safe = p.safe_deadline();
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    common::within(&clock, Duration::from_secs(30), p.lost())
        .await
        .expect("lost signal fires");
    assert!(clock.now() < safe, "signal before the safe deadline");
    assert!(
        matches!(p.lost_reason(), Some(LostReason::HeartbeatsFailed { .. })),
        "{:?}",
        p.lost_reason()
    );
    let err = p.run(async {}).await.expect_err("lost");
    assert!(matches!(err, LockError::Lost { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn renewals_keep_a_permit_for_many_leases() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "a");
    let p = c.semaphore("jobs", 1).acquire().await.unwrap();
    let other = client(backend.clone(), &clock, "b");
    let sem = other.semaphore("jobs", 1);
    let waiter = tokio::spawn(async move { sem.acquire().await });
    clock.advance(LEASE * 10).await;
    assert!(!p.is_lost(), "renewed");
    assert!(
        !waiter.is_finished(),
        "the waiter does not take a renewed permit"
    );
    p.release().await.unwrap();
    let q = common::within(&clock, Duration::from_secs(5), waiter)
        .await
        .expect("waiter gets it within a poll")
        .unwrap()
        .unwrap();
    assert_eq!(q.name(), "jobs");
}

#[tokio::test(start_paused = true)]
async fn a_lost_claim_response_is_resolved_by_its_line() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    let p = c.semaphore("jobs", 2).acquire().await.unwrap();
    assert_eq!(held_lines(&backend, "jobs"), 1, "one line, not two");
    let stored = backend.get("jobs").unwrap().fencing_token.unwrap();
    assert_eq!(p.fencing_token(), stored, "the token of the applied write");
    // Its validity runs from the lost write's send, so it is renewed in time.
    clock.advance(LEASE * 3).await;
    assert!(!p.is_lost());
}

#[tokio::test(start_paused = true)]
async fn a_process_queued_first_is_served_before_a_local_handover() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let x = client(backend.clone(), &clock, "x");
    let y = client(backend.clone(), &clock, "y");
    let held = x.semaphore("jobs", 1).acquire().await.unwrap();
    let y_sem = y.semaphore("jobs", 1);
    let y_wait = tokio::spawn(async move { y_sem.acquire().await });
    clock.advance(Duration::from_secs(2)).await; // y polls and queues
    let x_sem = x.semaphore("jobs", 1);
    let x_wait = tokio::spawn(async move { x_sem.acquire().await });
    common::settle().await;
    held.release().await.unwrap();
    let got = common::within(&clock, Duration::from_secs(5), y_wait)
        .await
        .expect("y, queued first, gets the permit within a poll")
        .unwrap()
        .unwrap();
    assert!(!x_wait.is_finished(), "x's later waiter does not jump y");
    drop(got);
    let mine = common::within(&clock, Duration::from_secs(5), x_wait)
        .await
        .expect("then x's waiter")
        .unwrap()
        .unwrap();
    drop(mine);
}

#[tokio::test(start_paused = true)]
async fn a_mutex_and_a_semaphore_of_one_name_exclude_each_other() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "a");
    let guard = c.create_lock("shared").acquire().await.unwrap();
    let other = client(backend.clone(), &clock, "b");
    let err = other
        .semaphore("shared", 2)
        .acquire_timeout(Duration::from_secs(30))
        .await
        .expect_err("a held mutex is not a free semaphore");
    assert!(matches!(err, LockError::NotGranted { .. }), "{err}");
    let token = guard.fencing_token();
    guard.release().await.unwrap();
    let p = other.semaphore("shared", 2).acquire().await.unwrap();
    assert!(p.fencing_token() > token, "the token continues");
    let err = c
        .create_lock("shared")
        .acquire_timeout(Duration::from_secs(30))
        .await
        .expect_err("a semaphore with a permit held is not a free mutex");
    assert!(matches!(err, LockError::NotGranted { .. }), "{err}");
    drop(p);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_counts_from_its_send_not_its_answer() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    let p = c.semaphore("jobs", 2).acquire().await.unwrap();
    let start = clock.now();
    let every = c.config().heartbeat_every(LEASE);
    let safe_for = c.config().safe_for(LEASE);
    // The next renewal applies at once, but its answer takes 2 s.
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::DelayResponse(Duration::from_secs(2)),
        Some(1),
    );
    clock.advance(every + Duration::from_secs(3)).await;
    let deadline = p.safe_deadline();
    assert!(
        deadline > start + safe_for,
        "the renewal was taken in: {:?} after the start",
        deadline - start
    );
    assert!(
        deadline <= start + every + safe_for + Duration::from_millis(5),
        "valid from the renewal's send, not its answer: deadline {:?} after the start",
        deadline - start
    );
}
