//! Multi-locks (all or nothing, in one global order) on the in-memory
//! backend and the controllable clock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lynk_core::{
    BackendErrorKind, Clock, LockClient, LockError, LostReason, MultiGuard, MAX_MULTI_LOCK_NAMES,
};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};

mod common;

const LEASE: Duration = Duration::from_secs(10);

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 7)
        .build()
        .expect("valid config")
}

fn names(guard: &MultiGuard) -> Vec<&str> {
    guard.names().collect()
}

/// Whether `name`'s stored record is released (`None`: no record).
fn released(backend: &MemoryBackend, name: &str) -> Option<bool> {
    backend.get(name).map(|r| r.released)
}

#[tokio::test(start_paused = true)]
async fn acquires_every_name_in_byte_order_and_releases_them_all() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "multi");
    let guard = c
        .multi_lock(["b", "a", "B", "c"])
        .with_payload(&b"me"[..])
        .acquire()
        .await
        .unwrap();
    assert_eq!(names(&guard), ["B", "a", "b", "c"], "byte order");
    assert_eq!(guard.guards().len(), 4);
    assert_eq!(c.held_locks().len(), 4);
    for name in ["B", "a", "b", "c"] {
        let record = backend.get(name).expect("written");
        assert!(!record.released);
        assert_eq!(record.payload.as_deref(), Some(&b"me"[..]));
        assert_eq!(
            Some(record.fencing_token.unwrap()),
            guard.fencing_token(name)
        );
        assert_eq!(guard.guard(name).unwrap().name(), name);
    }
    assert_eq!(guard.fencing_token("d"), None);
    // Heartbeats keep every lease for a long time.
    clock.advance(Duration::from_secs(120)).await;
    assert!(!guard.is_lost());
    assert_eq!(guard.lost_reason(), None);
    assert!(!guard.lost_token().is_cancelled());
    guard.release().await.expect("clean release");
    for name in ["B", "a", "b", "c"] {
        assert_eq!(released(&backend, name), Some(true), "{name}");
    }
    assert!(c.held_locks().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_busy_name_leaves_nothing_held_after_the_timeout() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let other = client(backend.clone(), &clock, "other");
    let c = client(backend.clone(), &clock, "multi");
    let busy = other.create_lock("b").acquire().await.unwrap();

    let start = clock.now();
    let err = c
        .multi_lock(["c", "b", "a"])
        .acquire_timeout(Duration::from_secs(5))
        .await
        .expect_err("b is held");
    assert!(
        matches!(&err, LockError::NotGranted { name, waited, holder, .. }
            if name == "b" && *waited == Duration::from_secs(5) && holder.as_deref() == Some("other")),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"b\""), "{err}");
    assert_eq!(clock.now() - start, Duration::from_secs(5));
    // "a" was taken first and released before the error came back; "c"
    // (after "b") was never tried.
    assert_eq!(released(&backend, "a"), Some(true), "a released");
    assert_eq!(backend.get("c"), None, "c never written");
    assert!(c.held_locks().is_empty(), "{:?}", c.held_locks());
    // So another client gets "a" at once.
    let a = other.create_lock("a").try_acquire().await.unwrap();
    assert!(a.is_some(), "a is free");
    assert!(!busy.is_lost());
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_shared_by_all_names() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let other = client(backend.clone(), &clock, "other");
    let c = client(backend.clone(), &clock, "multi");
    let a = other.create_lock("a").acquire().await.unwrap();
    let _b = other.create_lock("b").acquire().await.unwrap();
    let release_a = async {
        clock.sleep(Duration::from_secs(3)).await;
        a.release().await.unwrap();
    };
    let start = clock.now();
    let multi = c.multi_lock(["a", "b"]);
    let (result, ()) = tokio::join!(multi.acquire_timeout(Duration::from_secs(5)), release_a);
    let err = result.expect_err("b stays held");
    assert!(
        matches!(&err, LockError::NotGranted { name, waited, .. } if name == "b" && *waited == Duration::from_secs(5)),
        "{err:?}"
    );
    assert_eq!(
        clock.now() - start,
        Duration::from_secs(5),
        "5 s in all, not 5 s per name"
    );
    let a = backend.get("a").unwrap();
    assert!(
        a.released && a.host == "multi",
        "a was taken at 3 s and released: {a:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn try_acquire_takes_all_or_releases_what_it_took() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let other = client(backend.clone(), &clock, "other");
    let c = client(backend.clone(), &clock, "multi");
    let busy = other.create_lock("b").acquire().await.unwrap();
    let start = clock.now();
    let none = c.multi_lock(["a", "b", "c"]).try_acquire().await.unwrap();
    assert!(none.is_none());
    assert_eq!(clock.now(), start, "no waiting");
    assert_eq!(released(&backend, "a"), Some(true));
    assert_eq!(backend.get("c"), None);
    assert!(c.held_locks().is_empty());

    busy.release().await.unwrap();
    let guard = c
        .multi_lock(["a", "b", "c"])
        .try_acquire()
        .await
        .unwrap()
        .expect("all free now");
    assert_eq!(names(&guard), ["a", "b", "c"]);
    // A name this process already holds is busy too.
    assert!(c
        .multi_lock(["c", "d"])
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    assert_eq!(released(&backend, "d"), None, "d not tried after c");
    drop(guard);
    common::settle().await;
    for name in ["a", "b", "c"] {
        assert_eq!(
            released(&backend, name),
            Some(true),
            "dropping released {name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_on_one_name_releases_the_others_and_names_it() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    faulty.inject(
        Some(Op::Write),
        Some("b"),
        Fault::FailBefore(BackendErrorKind::AccessDenied),
        None,
    );
    let err = c
        .multi_lock(["a", "b", "c"])
        .acquire_timeout(Duration::from_secs(30))
        .await
        .expect_err("b cannot be written");
    assert!(
        matches!(&err, LockError::Backend { name, .. } if name == "b"),
        "{err:?}"
    );
    assert_eq!(released(&memory, "a"), Some(true));
    assert_eq!(memory.get("c"), None);
    assert!(c.held_locks().is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_acquire_half_way_releases_the_names_taken() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let other = client(backend.clone(), &clock, "other");
    let c = client(backend.clone(), &clock, "multi");
    let _busy = other.create_lock("b").acquire().await.unwrap();
    let multi = c.multi_lock(["a", "b"]);
    let out = common::within(&clock, Duration::from_secs(2), multi.acquire()).await;
    assert!(out.is_none(), "still waiting for b");
    common::settle().await;
    assert_eq!(
        released(&backend, "a"),
        Some(true),
        "a released in the background"
    );
    assert!(c.held_locks().is_empty(), "{:?}", c.held_locks());
}

/// Several tasks on two clients take overlapping sets, listed in opposite
/// orders, many times: with one global order nobody deadlocks (all rounds
/// finish) and no name is ever held by two of them at once.
#[tokio::test(start_paused = true)]
async fn overlapping_sets_in_opposite_orders_never_deadlock_nor_overlap() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let clients = [
        client(backend.clone(), &clock, "one"),
        client(backend.clone(), &clock, "two"),
    ];
    let sets: [&[&str]; 4] = [&["a", "b", "c"], &["c", "b", "a"], &["b", "c"], &["c", "a"]];
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    const TASKS: usize = 6;
    const ROUNDS: usize = 25;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let c = clients[t % 2].clone();
        let set: Vec<String> = sets[t % sets.len()].iter().map(|s| s.to_string()).collect();
        let (held, rounds, clock) = (held.clone(), rounds.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let guard = c.multi_lock(set.clone()).acquire().await.unwrap();
                {
                    let mut held = held.lock().unwrap();
                    for name in guard.names() {
                        assert!(held.insert(name.to_owned()), "{name} held twice at once");
                    }
                }
                let hold = Duration::from_millis(5 + ((t * 7 + round * 3) % 20) as u64);
                guard.run(clock.sleep(hold)).await.expect("not lost");
                {
                    let mut held = held.lock().unwrap();
                    for name in guard.names() {
                        held.remove(name);
                    }
                }
                guard.release().await.unwrap();
                rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    let start = clock.now();
    let done = common::within(
        &clock,
        Duration::from_secs(3600),
        futures::future::join_all(tasks),
    )
    .await;
    let done = done.unwrap_or_else(|| {
        panic!(
            "deadlock: only {} of {} rounds finished in an hour",
            rounds.load(std::sync::atomic::Ordering::SeqCst),
            TASKS * ROUNDS
        )
    });
    for task in done {
        task.expect("task panicked");
    }
    assert_eq!(
        rounds.load(std::sync::atomic::Ordering::SeqCst),
        TASKS * ROUNDS
    );
    println!(
        "{} rounds in {:?} of virtual time",
        TASKS * ROUNDS,
        clock.now() - start
    );
}

#[tokio::test(start_paused = true)]
async fn each_name_keeps_its_own_increasing_token() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "multi");
    let other = client(backend.clone(), &clock, "other");
    let first = c.multi_lock(["a", "b"]).acquire().await.unwrap();
    let (a1, b1) = (
        first.fencing_token("a").unwrap(),
        first.fencing_token("b").unwrap(),
    );
    let listed: Vec<_> = first.tokens().collect();
    assert_eq!(listed, [("a", a1), ("b", b1)]);
    first.release().await.unwrap();
    // "a" alone is taken three more times, by another client.
    for _ in 0..3 {
        other
            .create_lock("a")
            .acquire()
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let second = c.multi_lock(["b", "a"]).acquire().await.unwrap();
    assert_eq!(second.fencing_token("a").unwrap().get(), a1.get() + 4);
    assert_eq!(second.fencing_token("b").unwrap().get(), b1.get() + 1);
    second.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stolen_lock_fires_the_lost_signal_and_run_names_it() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "multi");
    let guard = c.multi_lock(["a", "b", "c"]).acquire().await.unwrap();
    let token = guard.lost_token();
    let start = clock.now();
    let steal = async {
        clock.sleep(Duration::from_secs(1)).await;
        // A rogue client (or an operator) overwrites "b".
        backend.put_raw(common::record("b", "thief", LEASE, 99, false));
    };
    let bounded = common::within(&clock, LEASE, guard.run(std::future::pending::<()>()));
    let (worked, ()) = tokio::join!(bounded, steal);
    let worked = worked.expect("run() did not end within a lease of the theft");
    let stolen = LostReason::Stolen {
        by: Some("thief".into()),
    };
    assert!(
        matches!(&worked, Err(LockError::Lost { name, reason }) if name == "b" && *reason == stolen),
        "{worked:?}"
    );
    assert!(
        clock.now() - start <= Duration::from_secs(1) + c.config().heartbeat_every(LEASE),
        "lost at the first heartbeat after the theft, {:?} in",
        clock.now() - start
    );
    assert!(guard.is_lost());
    assert_eq!(guard.lost_reason(), Some(("b".to_owned(), stolen.clone())));
    common::within(&clock, Duration::from_millis(1), guard.lost())
        .await
        .expect("lost() completes at once now");
    common::settle().await;
    assert!(token.is_cancelled(), "lost_token cancelled");
    assert!(!guard.guards()[0].is_lost() && !guard.guards()[2].is_lost());
    // Releasing reports the loss and still releases the others.
    let err = guard.release().await.expect_err("b was lost");
    assert!(
        matches!(&err, LockError::Lost { name, .. } if name == "b"),
        "{err:?}"
    );
    assert_eq!(released(&backend, "a"), Some(true));
    assert_eq!(released(&backend, "c"), Some(true));
    assert_eq!(
        backend.get("b").unwrap().host,
        "thief",
        "b left to the thief"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_heartbeats_on_one_name_fire_the_signal_before_its_safe_deadline() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let c = client(faulty.clone(), &clock, "multi");
    let guard = c.multi_lock(["a", "b", "c"]).acquire().await.unwrap();
    let token = guard.lost_token();
    let safe = guard.guard("c").unwrap().safe_deadline();
    faulty.inject(
        Some(Op::Write),
        Some("c"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    common::within(&clock, LEASE, token.cancelled())
        .await
        .expect("lost_token cancelled within the lease");
    assert!(clock.now() < safe, "before c's safe deadline");
    common::within(&clock, Duration::from_millis(1), guard.lost())
        .await
        .expect("lost() completes too");
    assert!(guard.is_lost());
    assert!(
        matches!(guard.lost_reason(), Some((name, LostReason::HeartbeatsFailed { .. })) if name == "c"),
        "{:?}",
        guard.lost_reason()
    );
    let worked = guard.run(async {}).await;
    assert!(
        matches!(&worked, Err(LockError::Lost { name, .. }) if name == "c"),
        "{worked:?}"
    );
    // A second loss later does not change which lock was lost first.
    memory.put_raw(common::record("a", "thief", LEASE, 99, false));
    let a = guard.guards()[0].watch();
    common::within(&clock, LEASE, a.lost())
        .await
        .expect("a lost too");
    assert!(
        matches!(guard.lost_reason(), Some((name, LostReason::HeartbeatsFailed { .. })) if name == "c"),
        "{:?}",
        guard.lost_reason()
    );
    faulty.clear();
    drop(guard);
    common::settle().await;
    assert_eq!(released(&memory, "b"), Some(true));
    assert_eq!(memory.get("a").unwrap().host, "thief");
}

#[tokio::test(start_paused = true)]
async fn a_released_guard_never_signals_lost() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "multi");
    let guard = c.multi_lock(["a", "b"]).acquire().await.unwrap();
    let token = guard.lost_token();
    guard.release().await.unwrap();
    clock.advance(Duration::from_secs(60)).await;
    assert!(!token.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn bad_inputs_are_refused_before_any_request() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "multi");
    let invalid = |e: LockError| match e {
        LockError::InvalidInput { .. } => e.to_string(),
        other => panic!("not InvalidInput: {other:?}"),
    };

    let empty: [&str; 0] = [];
    let e = invalid(c.multi_lock(empty).acquire().await.unwrap_err());
    assert!(e.contains("no names") && e.contains("at least one"), "{e}");

    let e = invalid(c.multi_lock(["a", "b", "a"]).acquire().await.unwrap_err());
    assert!(
        e.contains("name \"a\" appears twice in the multi-lock; list each name once"),
        "{e}"
    );

    let e = invalid(c.multi_lock(["a", ""]).try_acquire().await.unwrap_err());
    assert!(
        e.contains("name 2 of the multi-lock") && e.contains("empty"),
        "{e}"
    );

    let long = "x".repeat(lynk_core::MAX_NAME_BYTES + 1);
    let e = invalid(
        c.multi_lock(["a".to_owned(), long])
            .acquire()
            .await
            .unwrap_err(),
    );
    assert!(e.contains("name 2") && e.contains("2048"), "{e}");

    let many: Vec<String> = (0..=MAX_MULTI_LOCK_NAMES)
        .map(|i| format!("n{i}"))
        .collect();
    let e = invalid(c.multi_lock(many).acquire().await.unwrap_err());
    assert!(
        e.contains("101 names")
            && e.contains("the limit is 100")
            && e.contains("TransactWriteItems"),
        "{e}"
    );

    let e = invalid(
        c.multi_lock(["a"])
            .with_lease(Duration::from_millis(1))
            .acquire()
            .await
            .unwrap_err(),
    );
    assert!(e.contains("lease"), "{e}");

    assert!(backend.snapshot().is_empty(), "nothing was written");
    assert_eq!(backend.counts().total(), 0, "no request at all");

    // Exactly the limit is fine.
    let most: Vec<String> = (0..MAX_MULTI_LOCK_NAMES)
        .map(|i| format!("n{i:03}"))
        .collect();
    let guard = c.multi_lock(most).acquire().await.unwrap();
    assert_eq!(guard.guards().len(), MAX_MULTI_LOCK_NAMES);
    guard.release().await.unwrap();
}
