//! A fresh-eyes review of 8ab0104 (a panic in a release frees the lock's
//! slot and publishes the failure; a caller's time limit timed on the
//! client's runtime), extended to every place a backend panic or a foreign
//! runtime could reach: releases of every kind, the heartbeat keeper, the
//! semaphore's task, callers on runtimes without timers, outside tokio, or
//! on a client whose runtime is gone. Its eight findings are fixed (the
//! tests whose docs say "review finding" failed before the fix); the other
//! tests pin behaviour that held.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lynk_core::{Clock, LockClient, LockError, ReleaseMode};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};

mod common;
use common::{faulty, faulty_client, next_write, record, settle, within};

const L: Duration = Duration::from_secs(20);

fn client(b: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(b, clock, host, L, 7).build().unwrap()
}

fn is_internal_release(out: &Result<(), LockError>) -> bool {
    matches!(
        out,
        Err(LockError::Internal {
            during: "release",
            ..
        })
    )
}

// ---------------------------------------------------------------------------
// Change 1: a panic in a release.
// ---------------------------------------------------------------------------

/// A handover to a local waiter whose write panics: the release fails with
/// `Internal`, the popped waiter is put back (not lost, not answered twice)
/// and gets the lock exactly once when the unrenewed lease runs out, with a
/// higher token; the waiter behind it is served after it, never both at once.
#[tokio::test(start_paused = true)]
async fn a_panicking_handover_puts_the_waiter_back_and_it_is_served_once() {
    let (mem, clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    let t0 = guard.fencing_token().get();
    let inside = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..2u32 {
        let (lock, inside, log, clock) = (
            c.create_lock("x"),
            inside.clone(),
            log.clone(),
            clock.clone(),
        );
        waiters.push(tokio::spawn(async move {
            let g = lock.acquire().await.unwrap();
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
            log.lock()
                .unwrap()
                .push((i, g.fencing_token().get(), clock.now()));
            clock.sleep(Duration::from_millis(300)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            g.release().await.unwrap();
        }));
        settle().await;
    }
    next_write(&store, Fault::Panic);
    let released_at = clock.now();
    let out = guard.release().await;
    assert!(is_internal_release(&out), "{out:?}");
    for w in waiters {
        within(&clock, Duration::from_secs(60), w)
            .await
            .expect("a waiter was never served")
            .unwrap();
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(log.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 1]);
    assert!(log[0].1 > t0, "token {} not above {t0}", log[0].1);
    assert!(log[0].1 < log[1].1, "{log:?}");
    // Not before the dead lease (never released in the store) ran out.
    assert!(log[0].2 >= released_at + Duration::from_secs(15), "{log:?}");
    assert!(mem.get("x").unwrap().released);
    assert_eq!(store.injected_by_kind().panic, 1);
}

/// The first handover's response is lost (it applied: the store holds the
/// waiter's record), the retry panics. The waiter is put back with the
/// handover's write remembered as this process's own, so it takes over the
/// record at once (no waiting out a lease), exactly once, with a higher token;
/// another process gets nothing meanwhile.
#[tokio::test(start_paused = true)]
async fn a_handover_applied_then_a_panicking_retry_still_serves_the_waiter() {
    let (mem, clock, store, c) = faulty_client("a");
    let other = client(mem.clone(), &clock, "b");
    let guard = c.create_lock("x").acquire().await.unwrap();
    let t0 = guard.fencing_token().get();
    let waiter = {
        let lock = c.create_lock("x");
        tokio::spawn(async move { lock.acquire().await })
    };
    settle().await;
    next_write(&store, Fault::LoseResponse);
    next_write(&store, Fault::Panic);
    let out = guard.release().await;
    assert!(is_internal_release(&out), "{out:?}");
    assert_eq!(store.injected_by_kind().panic, 1, "the retry did not panic");
    let g = within(&clock, Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was not served from its own handover")
        .unwrap()
        .unwrap();
    assert!(g.fencing_token().get() > t0);
    let stored = mem.get("x").unwrap();
    assert!(!stored.released);
    assert_eq!(stored.host, "a");
    assert_eq!(stored.fencing_token.unwrap().get(), g.fencing_token().get());
    // The holder keeps it: its heartbeats run, another process waits.
    let stolen = within(
        &clock,
        Duration::from_secs(45),
        other.create_lock("x").acquire(),
    )
    .await;
    assert!(stolen.is_none(), "another process got a held lock");
    assert!(!g.is_lost());
    g.release().await.unwrap();
}

/// A plain release applied with its response lost, then a panicking retry:
/// `Internal`, the record is released in the store, and both this client and
/// another acquire at once.
#[tokio::test(start_paused = true)]
async fn a_release_applied_then_a_panicking_retry_leaves_the_lock_free() {
    let (mem, _clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    next_write(&store, Fault::LoseResponse);
    next_write(&store, Fault::Panic);
    let out = guard.release().await;
    assert!(is_internal_release(&out), "{out:?}");
    assert!(mem.get("x").unwrap().released);
    let g = c.create_lock("x").try_acquire().await.unwrap();
    g.expect("free lock busy in this client")
        .release()
        .await
        .unwrap();
}

/// A release that grants the lock to another process's queued waiter panics
/// before the grant is written; a local waiter popped for the handover is
/// put back. Both waiters are served (the other process first: it queued in
/// the store first), once each, never both at once, with rising tokens.
#[tokio::test(start_paused = true)]
async fn a_panicking_grant_serves_the_queued_process_and_the_local_waiter() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    let store = faulty(mem.clone(), &clock);
    let a = client(store.clone(), &clock, "a");
    let b = client(mem.clone(), &clock, "b");
    let guard = a.create_lock("x").acquire().await.unwrap();
    let t0 = guard.fencing_token().get();
    let inside = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let spawn = |lock: lynk_core::Lock, who: &'static str| {
        let (inside, log, clock) = (inside.clone(), log.clone(), clock.clone());
        tokio::spawn(async move {
            let g = lock.acquire().await.unwrap();
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
            log.lock().unwrap().push((who, g.fencing_token().get()));
            clock.sleep(Duration::from_millis(300)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            g.release().await.unwrap();
        })
    };
    let remote = spawn(b.create_lock("x"), "b");
    // b polls and queues in the store.
    clock.advance(Duration::from_secs(2)).await;
    assert!(!mem.get("x").unwrap().queue.is_empty(), "b did not queue");
    let local = spawn(a.create_lock("x"), "a");
    settle().await;
    next_write(&store, Fault::Panic);
    let out = guard.release().await;
    assert!(is_internal_release(&out), "{out:?}");
    for t in [remote, local] {
        within(&clock, Duration::from_secs(90), t)
            .await
            .expect("a waiter was never served")
            .unwrap();
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].1 > t0 && log[0].1 < log[1].1, "{log:?}");
}

/// A shutdown whose release of a held lock panics: the shutdown ends (no
/// hang), and its report says the lock was not released, with `Internal`;
/// the guard's own release then says the client shut down under it.
#[tokio::test(start_paused = true)]
async fn a_panicking_shutdown_release_is_reported_failed() {
    let (mem, clock, store, c) = faulty_client("a");
    let held = c.create_lock("x").acquire().await.unwrap();
    let fine = c.create_lock("y").acquire().await.unwrap();
    store.inject(Some(Op::Write), Some("x"), Fault::Panic, Some(1));
    let report = within(&clock, Duration::from_secs(60), c.shutdown())
        .await
        .expect("the shutdown hung");
    assert_eq!(report.released, vec!["y".to_owned()], "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, "x");
    assert!(
        matches!(report.failed[0].1, LockError::Internal { .. }),
        "{report:?}"
    );
    assert!(!report.is_clean());
    assert!(!mem.get("x").unwrap().released);
    assert!(mem.get("y").unwrap().released);
    assert!(held.is_lost());
    let out = held.release().await;
    assert!(
        matches!(
            out,
            Err(LockError::Lost { .. }) | Err(LockError::Internal { .. })
        ),
        "{out:?}"
    );
    fine.release().await.ok();
}

/// A guard dropped (not released) whose background release panics: nobody
/// is told, but the slot is freed, so a later acquire in this client gets the
/// lock once the lease ran out, with a higher token.
#[tokio::test(start_paused = true)]
async fn a_dropped_guard_whose_release_panics_does_not_wedge_the_lock() {
    let (_mem, clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    let t0 = guard.fencing_token().get();
    next_write(&store, Fault::Panic);
    drop(guard);
    settle().await;
    assert_eq!(store.injected_by_kind().panic, 1);
    let g = within(
        &clock,
        Duration::from_secs(60),
        c.create_lock("x").acquire(),
    )
    .await
    .expect("wedged")
    .unwrap();
    assert!(g.fencing_token().get() > t0);
    g.release().await.unwrap();
}

/// A release whose write conflicts (another process queued since) and whose
/// read of the current record then panics: `Internal`, the slot is free, and
/// the queued process is served when the lease runs out.
#[tokio::test(start_paused = true)]
async fn a_panic_in_the_conflict_read_of_a_release_frees_the_slot() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    let store = faulty(mem.clone(), &clock);
    let a = client(store.clone(), &clock, "a");
    let guard = a.create_lock("x").acquire().await.unwrap();
    // A queue entry this client has not seen yet: the release's condition
    // (no queue revision) fails.
    let mut r = mem.get("x").unwrap();
    r.queue = lynk_core::WaitQueue {
        revision: Some(lynk_core::Version::random()),
        entries: vec![],
    };
    mem.put_raw(r);
    store.inject(Some(Op::Read), None, Fault::Panic, Some(1));
    let out = guard.release().await;
    // Either the panic hit the conflict read, or the write went through.
    if store.injected_by_kind().panic == 1 {
        assert!(is_internal_release(&out), "{out:?}");
    }
    let g = within(
        &clock,
        Duration::from_secs(60),
        a.create_lock("x").acquire(),
    )
    .await
    .expect("wedged")
    .unwrap();
    g.release().await.unwrap();
}

/// Delete mode: the delete panics; `Internal`, and the lock comes back once
/// the lease runs out.
#[tokio::test(start_paused = true)]
async fn a_panicking_delete_release_frees_the_slot() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    let store = faulty(mem.clone(), &clock);
    let c = common::builder(store.clone(), &clock, "a", L, 7)
        .release_mode(ReleaseMode::Delete)
        .build()
        .unwrap();
    let guard = c.create_lock("x").acquire().await.unwrap();
    store.inject(Some(Op::Delete), None, Fault::Panic, Some(1));
    let out = guard.release().await;
    assert!(is_internal_release(&out), "{out:?}");
    assert!(mem.get("x").is_some());
    let g = within(
        &clock,
        Duration::from_secs(60),
        c.create_lock("x").acquire(),
    )
    .await
    .expect("wedged")
    .unwrap();
    g.release().await.unwrap();
    assert!(mem.get("x").is_none());
}

/// A semaphore permit's release whose write panics (a backend bug). The
/// semaphore's per-name task runs every store call of the name; unguarded,
/// the panic killed it (review finding): the release said `ShutDown`, the
/// handle was dead for good, and the client's *other* permit stopped being
/// renewed without its lost signal firing, so another process took both
/// permits while this client believed it held one. Now the task counts the
/// panicked call as one of unknown outcome and resolves it as it does a
/// lost response: the release succeeds, the other permit stays held and
/// renewed, and another process gets exactly the one free permit.
#[tokio::test(start_paused = true)]
async fn a_panic_in_a_semaphore_release_spares_the_name_and_its_other_permits() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    let store = faulty(mem.clone(), &clock);
    let a = client(store.clone(), &clock, "a");
    let b = client(mem.clone(), &clock, "b");
    let sem = a.semaphore("s", 2);
    let first = sem.acquire().await.unwrap();
    let second = sem.acquire().await.unwrap();
    next_write(&store, Fault::Panic);
    let out = first.release().await;
    assert_eq!(store.injected_by_kind().panic, 1, "no store call panicked");
    assert!(
        out.is_ok(),
        "release of the permit whose write panicked: {out:?}"
    );
    // Another process gets the one free permit at once, and not the one
    // this client still holds, two lease lengths later.
    let theirs = b.semaphore("s", 2);
    let one = within(&clock, Duration::from_secs(5), theirs.acquire()).await;
    let one = one.expect("the released permit was not free").unwrap();
    let both = within(&clock, Duration::from_secs(60), theirs.acquire()).await;
    assert!(
        both.is_none(),
        "another process took this client's held permit"
    );
    assert!(
        !second.is_lost(),
        "the held permit was lost: {:?}",
        second.lost_reason()
    );
    // The handle still works.
    drop(one);
    let again = within(&clock, Duration::from_secs(5), sem.acquire()).await;
    assert!(
        matches!(again, Some(Ok(_))),
        "the handle is dead: {again:?}"
    );
}

/// One heartbeat write that panics (a backend bug). All of a client's
/// heartbeats run in its one keeper task; unguarded, the panic killed it
/// (review finding): every lease stopped being renewed and no lost signal
/// fired, so another process acquired a lock this client's guard still
/// reported held. Now the keeper counts the panicked heartbeat as failed
/// (`unless_panicked`) and retries: the other lease stays held.
#[tokio::test(start_paused = true)]
async fn a_panic_in_one_heartbeat_stops_no_other_lease() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    let store = faulty(mem.clone(), &clock);
    let a = client(store.clone(), &clock, "a");
    let b = client(mem.clone(), &clock, "b");
    let gx = a.create_lock("x").acquire().await.unwrap();
    let gy = a.create_lock("y").acquire().await.unwrap();
    store.inject(Some(Op::Write), Some("x"), Fault::Panic, Some(1));
    // b waits for y, which a holds and (should) keep renewing.
    let stolen = within(
        &clock,
        Duration::from_secs(90),
        b.create_lock("y").acquire(),
    )
    .await;
    assert_eq!(store.injected_by_kind().panic, 1, "no heartbeat panicked");
    assert!(
        stolen.is_none() || gy.is_lost(),
        "b acquired y while a's guard of y is not lost (is_lost={}, x is_lost={})",
        gy.is_lost(),
        gx.is_lost()
    );
}

// ---------------------------------------------------------------------------
// Change 2: `Engine::caller_deadline`.
// ---------------------------------------------------------------------------

/// `fut`, or `None` after `d` of real time (on the current runtime).
async fn within_sys<T>(d: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = fut => Some(out),
        _ = lynk_core::SystemClock.sleep(d) => None,
    }
}

fn home_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// `acquire_timeout` from a runtime without timers, on a client whose clock
/// (`TestClock`) builds tokio's `Sleep` when asked: the time limit's sleep is
/// made and awaited by a task on the client's runtime (`caller_deadline`), so
/// it works with any `Clock` (review finding: the sleep was built in the
/// caller's context and panicked with "timers are disabled").
#[test]
fn acquire_timeout_with_a_test_clock_from_a_runtime_without_timers() {
    let home = home_runtime();
    let mem = MemoryBackend::new();
    mem.put_raw(record("x", "elsewhere", L, 1, false));
    let c = home.block_on(async {
        LockClient::builder(mem.clone())
            .clock(TestClock::new())
            .build()
            .unwrap()
    });
    let bare = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bare.block_on(
            c.create_lock("x")
                .acquire_timeout(Duration::from_millis(50)),
        )
    }));
    match out {
        Ok(r) => assert!(matches!(r, Err(LockError::NotGranted { .. })), "{r:?}"),
        Err(p) => panic!(
            "acquire_timeout panicked on a runtime without timers: {:?}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or(p.downcast_ref::<&str>().copied())
        ),
    }
}

/// The same from outside tokio (`futures`' executor): `acquire_timeout` on a
/// `TestClock` client waits instead of panicking ("no reactor running").
#[test]
fn acquire_timeout_with_a_test_clock_outside_tokio() {
    let home = home_runtime();
    let mem = MemoryBackend::new();
    mem.put_raw(record("x", "elsewhere", L, 1, false));
    let c = home.block_on(async {
        LockClient::builder(mem.clone())
            .clock(TestClock::new())
            .build()
            .unwrap()
    });
    let lock = c.create_lock("x");
    let out = std::thread::spawn(move || {
        futures::executor::block_on(lock.acquire_timeout(Duration::from_millis(50)))
    })
    .join();
    match out {
        Ok(r) => assert!(matches!(r, Err(LockError::NotGranted { .. })), "{r:?}"),
        Err(_) => panic!("acquire_timeout panicked outside tokio"),
    }
}

/// A semaphore's `acquire_timeout` from a runtime without timers: the name's
/// task runs on the client's runtime (`Engine::spawn_untracked`; review
/// finding: it was started with `tokio::spawn` on the caller's runtime, whose
/// missing timers failed it), so the caller gets `NotGranted`.
#[test]
fn semaphore_acquire_timeout_from_a_runtime_without_timers() {
    let home = home_runtime();
    let mem = MemoryBackend::new();
    let c = home.block_on(async { LockClient::builder(mem.clone()).build().unwrap() });
    // Both permits held by another client of the same store.
    let other = home.block_on(async { LockClient::builder(mem.clone()).build().unwrap() });
    let (_p1, _p2) = home.block_on(async {
        let s = other.semaphore("s", 2);
        (s.acquire().await.unwrap(), s.acquire().await.unwrap())
    });
    let bare = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sem = c.semaphore("s", 2);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bare.block_on(sem.acquire_timeout(Duration::from_millis(300)))
            .map(|_| ())
    }));
    assert!(
        matches!(out, Ok(Err(LockError::NotGranted { .. }))),
        "{:?}",
        out.as_ref().map_err(|_| "panicked")
    );
}

/// A semaphore used from outside tokio (`futures`' executor) works, as locks
/// do (review finding: `tokio::spawn` panicked in the caller).
#[test]
fn semaphore_from_a_non_tokio_executor() {
    let home = home_runtime();
    let mem = MemoryBackend::new();
    let c = home.block_on(async { LockClient::builder(mem.clone()).build().unwrap() });
    let sem = c.semaphore("s", 2);
    let out = std::thread::spawn(move || {
        futures::executor::block_on(async {
            let p = sem.acquire().await?;
            p.release().await
        })
    })
    .join();
    assert!(
        matches!(out, Ok(Ok(()))),
        "{:?}",
        out.as_ref().map_err(|_| "panicked")
    );
}

/// A semaphore first used from a short-lived runtime (a `block_on` in a
/// helper, a per-request runtime), then from the client's own: its task runs
/// on the client's runtime, so it outlives the first one (review finding: it
/// died with it, and every later acquire said `ShutDown`).
#[test]
fn semaphore_first_used_from_a_dropped_runtime_still_works() {
    let home = home_runtime();
    let mem = MemoryBackend::new();
    let c = home.block_on(async { LockClient::builder(mem.clone()).build().unwrap() });
    let keep = c.semaphore("s", 2);
    {
        let short = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let p = short.block_on(keep.acquire()).unwrap();
        short.block_on(p.release()).unwrap();
    }
    let out = home.block_on(async {
        let p = keep.acquire_timeout(Duration::from_secs(2)).await?;
        p.release().await
    });
    assert!(out.is_ok(), "{out:?}");
}

/// `acquire_timeout` on the engine's own paused runtime with `TestClock`
/// (the usual test setting): the limit fires at the clock's deadline, not
/// early, not late, and the abandoned wait leaves no waiter behind (the
/// next try_acquire after the holder releases succeeds at once).
#[tokio::test(start_paused = true)]
async fn caller_deadline_on_paused_time_fires_at_the_deadline() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    mem.put_raw(record("x", "elsewhere", L, 1, false));
    let c = client(mem.clone(), &clock, "a");
    let t0 = clock.now();
    let out = c
        .create_lock("x")
        .acquire_timeout(Duration::from_millis(1500))
        .await;
    let waited = clock.now() - t0;
    assert!(matches!(out, Err(LockError::NotGranted { .. })), "{out:?}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(1600),
        "{waited:?}"
    );
    mem.put_raw(record("x", "elsewhere", L, 2, true));
    let g = c.create_lock("x").try_acquire().await.unwrap();
    g.expect("free lock busy").release().await.unwrap();
}

/// Dropping an `acquire_timeout` future mid-wait from a foreign runtime
/// (with timers) does not wedge the name: a later acquire from the client's
/// runtime gets it as soon as it is free.
#[test]
fn dropping_an_acquire_timeout_mid_wait_from_another_runtime_leaves_nothing() {
    let home = home_runtime();
    let mem = MemoryBackend::new();
    mem.put_raw(record("x", "elsewhere", Duration::from_secs(1), 1, false));
    let c = home.block_on(async { LockClient::builder(mem.clone()).build().unwrap() });
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lock = c.create_lock("x");
    other.block_on(async {
        let mut fut = Box::pin(lock.acquire_timeout(Duration::from_secs(30)));
        let polled = within_sys(Duration::from_millis(50), &mut fut).await;
        assert!(polled.is_none(), "finished early: {polled:?}");
        drop(fut);
    });
    drop(other);
    mem.put_raw(record("x", "elsewhere", Duration::from_secs(1), 2, true));
    let g = home
        .block_on(within_sys(Duration::from_secs(5), lock.acquire()))
        .expect("wedged")
        .unwrap();
    home.block_on(g.release()).unwrap();
}

/// A client whose runtime is gone (a blocking `LockFactory` dropped while a
/// clone of its async client lives on), used from another runtime:
/// `acquire_timeout` returns an error the caller can handle, not a panic
/// (review finding: entering the dead runtime to poll the limit panicked).
#[test]
fn acquire_timeout_on_a_client_whose_runtime_is_gone_is_an_error() {
    let mem = MemoryBackend::new();
    mem.put_raw(record("x", "elsewhere", L, 1, false));
    let factory = {
        let mem = mem.clone();
        lynk_core::blocking::LockFactory::new(move || LockClient::builder(mem).build()).unwrap()
    };
    let client = factory.client().clone();
    drop(factory);
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        other.block_on(
            client
                .create_lock("x")
                .acquire_timeout(Duration::from_millis(100)),
        )
    }));
    match out {
        Ok(r) => assert!(r.is_err(), "{:?}", r.map(|g| g.fencing_token())),
        Err(p) => panic!(
            "acquire_timeout panicked: {:?}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or(p.downcast_ref::<&str>().copied())
        ),
    }
}

/// A `MultiGuard` release (each lock's release in a task of its own, the
/// lock path) where one lock's write panics: the result is that lock's
/// `Internal`, the other lock is released in the store, and both can be
/// taken again (the panicking one once its lease ran out).
#[tokio::test(start_paused = true)]
async fn a_multi_guard_release_with_one_panicking_lock() {
    let (mem, clock, store, c) = faulty_client("a");
    let m = c.multi_lock(["p", "q"]).acquire().await.unwrap();
    store.inject(Some(Op::Write), Some("q"), Fault::Panic, Some(1));
    let out = m.release().await;
    assert!(
        matches!(&out, Err(LockError::Internal { name, during: "release" }) if name == "q"),
        "{out:?}"
    );
    assert!(mem.get("p").unwrap().released);
    assert!(!mem.get("q").unwrap().released);
    let again = within(
        &clock,
        Duration::from_secs(60),
        c.multi_lock(["p", "q"]).acquire(),
    )
    .await
    .expect("wedged")
    .unwrap();
    again.release().await.unwrap();
}
