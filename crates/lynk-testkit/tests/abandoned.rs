//! A caller that abandons its acquire or release: the store work it started
//! goes on in the engine's tasks and ends cleanly; a panic in a store call (a
//! backend bug, `Fault::Panic`) fails the call, not the caller; a shutdown
//! waits for work under way; a client works from another runtime.

use std::time::Duration;

use lynk_core::{Clock, LockClient, LockError};
use lynk_testkit::{Fault, MemoryBackend, Op};

mod common;
use common::{faulty_client, next_write, settle, within};

/// The caller gives up while its first attempt is in flight; the attempt
/// applied. The attempt must go on without the caller and release the lock
/// it won for nobody, at once, not a lease later.
#[tokio::test(start_paused = true)]
async fn an_abandoned_first_attempt_goes_on_and_releases_what_it_won() {
    let (mem, clock, store, c) = faulty_client("a");
    next_write(&store, Fault::DelayResponse(Duration::from_secs(5)));
    let out = c
        .create_lock("x")
        .acquire_timeout(Duration::from_secs(1))
        .await;
    assert!(matches!(out, Err(LockError::NotGranted { .. })), "{out:?}");
    let stored = mem.get("x").expect("the first attempt applied at once");
    assert!(!stored.released, "held by the attempt still in flight");
    clock.advance(Duration::from_secs(5)).await;
    settle().await;
    let stored = mem.get("x").unwrap();
    assert!(
        stored.released,
        "the abandoned attempt's lock was not released when its answer came: {stored:?}"
    );
}

/// A second waiter of the same client queued behind a first attempt whose
/// caller then left gets the lock when that attempt's answer comes.
#[tokio::test(start_paused = true)]
async fn a_waiter_behind_an_abandoned_first_attempt_gets_the_lock() {
    let (_mem, clock, store, c) = faulty_client("a");
    next_write(&store, Fault::DelayResponse(Duration::from_secs(5)));
    let first = c.create_lock("x");
    let first = tokio::spawn(async move { first.acquire().await });
    settle().await;
    let second = c.create_lock("x");
    let second = tokio::spawn(async move { second.acquire().await });
    settle().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let t0 = clock.now();
    let got = within(&clock, Duration::from_secs(10), second).await;
    let guard = got
        .expect("the second waiter was never granted the lock")
        .unwrap()
        .unwrap();
    assert!(clock.now() - t0 <= Duration::from_secs(6), "granted late");
    assert!(!guard.is_lost());
    guard.release().await.unwrap();
}

/// A backend that panics during the first attempt fails that acquire with
/// `Internal` (the acquirer's `ResetOnPanic`); the caller goes on, and the
/// next acquire of the lock works.
#[tokio::test(start_paused = true)]
async fn a_panic_in_the_first_attempt_fails_the_acquire_not_the_caller() {
    let (_mem, _clock, store, c) = faulty_client("a");
    next_write(&store, Fault::Panic);
    let out = c.create_lock("x").acquire().await;
    assert!(
        matches!(
            &out,
            Err(LockError::Internal {
                during: "acquire",
                ..
            })
        ),
        "{out:?}"
    );
    let guard = c.create_lock("x").try_acquire().await.unwrap();
    let guard = guard.expect("the lock is free after the panic");
    guard.release().await.unwrap();
}

/// A backend that panics during an awaited release fails that release with
/// `Internal` (not `ShutDown`, as a panicked release task was reported
/// before), not the caller.
#[tokio::test(start_paused = true)]
async fn a_panic_in_an_awaited_release_fails_the_release_not_the_caller() {
    let (_mem, _clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    next_write(&store, Fault::Panic);
    let out = guard.release().await;
    assert!(
        matches!(
            &out,
            Err(LockError::Internal {
                during: "release",
                ..
            })
        ),
        "{out:?}"
    );
    // The caller goes on: another lock of the same client still works.
    let other = c.create_lock("y").acquire().await.unwrap();
    other.release().await.unwrap();
}

/// A shutdown that begins while a first attempt is in flight waits for that
/// attempt, and releases what it won.
#[tokio::test(start_paused = true)]
async fn a_shutdown_waits_for_a_first_attempt_in_flight() {
    let (mem, _clock, store, c) = faulty_client("a");
    next_write(&store, Fault::DelayResponse(Duration::from_secs(5)));
    let lock = c.create_lock("x");
    let waiter = tokio::spawn(async move { lock.acquire().await });
    settle().await;
    assert!(mem.get("x").is_some(), "the first attempt applied");
    let report = c.shutdown().await;
    let stored = mem.get("x").unwrap();
    assert!(
        stored.released,
        "shutdown returned with the first attempt's lock still held: {stored:?} ({report:?})"
    );
    let out = waiter.await.unwrap();
    assert!(matches!(out, Err(LockError::ShutDown)), "{out:?}");
}

/// A client built on one runtime and used from another (here one with no
/// timers at all): the engine's work runs on the client's runtime.
#[test]
fn a_client_used_from_another_runtime_acquires_and_releases() {
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mem = MemoryBackend::new();
    // Writes that take a moment, so the calls' time limits arm their timers.
    let store = lynk_testkit::FaultyBackend::new(mem.clone());
    let slow = Fault::Delay(Duration::from_millis(5));
    store.inject(Some(Op::Write), None, slow, None);
    let c = home.block_on(async { LockClient::builder(store).build().unwrap() });
    let bare = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    bare.block_on(async {
        let guard = c.create_lock("x").acquire().await.unwrap();
        assert!(!mem.get("x").unwrap().released);
        guard.release().await.unwrap();
    });
    assert!(mem.get("x").unwrap().released);
}
