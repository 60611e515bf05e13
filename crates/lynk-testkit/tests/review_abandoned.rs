//! A fresh-eyes review of running an acquirer's first attempt and an awaited
//! release in the caller's task (commit c1e8848, reverted): with the work
//! inline, a caller that holds its future without polling it froze the work,
//! so a shutdown left a won lock held, a release blocked the next local
//! waiter without bound, and the futures were no longer `Sync`. lynk runs
//! that work in tasks of its own again; these tests keep it that way (each
//! failed with c1e8848). Two older findings, fixed with them: a panic in a
//! release wedged the lock in its client, and `acquire_timeout` panicked on
//! a runtime without timers. The rest pin cancellation at every point under
//! faults, ordering behind an abandoned attempt, and foreign executors.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use lynk_core::{Clock, LockClient, LockError};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};

mod common;
use common::{faulty, faulty_client, next_write, record, settle, within};

const L: Duration = Duration::from_secs(20);

fn client(b: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(b, clock, host, L, 7).build().unwrap()
}

/// Polls `fut` (without consuming it) for `d` of the clock's time; `None`
/// if it did not finish. The future stays alive for the caller.
async fn poll_for<F: Future + Unpin>(
    clock: &TestClock,
    d: Duration,
    fut: &mut F,
) -> Option<F::Output> {
    within(clock, d, fut).await
}

/// A caller polls `acquire()` once (its first write applied, the answer 5 s
/// away), then shuts the client down in the same task with the acquire future
/// still alive and unpolled. The attempt runs in a task of its own: it gets
/// its answer, sees the client closed and releases the lock, and the shutdown
/// waits for that. (With the attempt inline, c1e8848, it froze in the unpolled
/// future: the shutdown returned a clean report after 20 s with the lock still
/// held in the store.)
#[tokio::test(start_paused = true)]
async fn a_shutdown_with_a_held_unpolled_acquire_releases_what_it_won() {
    let (mem, clock, store, c) = faulty_client("a");
    next_write(&store, Fault::DelayResponse(Duration::from_secs(5)));
    let lock = c.create_lock("x");
    let mut acquire = Box::pin(lock.acquire());
    assert!(poll_for(&clock, Duration::from_millis(10), &mut acquire)
        .await
        .is_none());
    assert!(mem.get("x").is_some(), "the first attempt applied");
    let t0 = clock.now();
    let report = c.shutdown().await;
    let took = clock.now() - t0;
    let stored = mem.get("x").unwrap();
    let released = stored.released;
    drop(acquire);
    assert!(
        released,
        "shutdown returned after {took:?} with a clean={} report ({report:?}) while the store \
         still holds this client's lock: {stored:?}",
        report.is_clean()
    );
    assert!(took <= Duration::from_secs(6), "shutdown took {took:?}");
}

/// `release()` polled once (its write 1 s from the store), then held
/// unpolled while the task does 30 s of other work: the release goes on in
/// its own task and the next local waiter gets the lock by handover at about
/// 1 s. (Inline, c1e8848: frozen for as long as the future was held, no
/// heartbeats, the waiter blocked.)
#[tokio::test(start_paused = true)]
async fn a_held_unpolled_release_does_not_block_the_next_local_waiter() {
    let (_mem, clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    let next = c.create_lock("x");
    let next = tokio::spawn(async move { next.acquire().await });
    settle().await;
    next_write(&store, Fault::Delay(Duration::from_secs(1)));
    let mut release = Box::pin(guard.release());
    assert!(poll_for(&clock, Duration::from_millis(10), &mut release)
        .await
        .is_none());
    // The caller's task does other work, holding the release future.
    let t0 = clock.now();
    let got = within(&clock, Duration::from_secs(30), next).await;
    let waited = clock.now() - t0;
    drop(release);
    let guard = got.expect("the next local waiter was not granted the lock within 30 s");
    assert!(
        waited <= Duration::from_secs(2),
        "granted only after {waited:?}"
    );
    guard.unwrap().unwrap().release().await.unwrap();
}

/// Detects `T: Sync` at run time (inherent method preferred over the trait's
/// fallback when its bound holds), so a missing `Sync` fails one test instead
/// of the file's build.
struct Probe<T>(PhantomData<T>);
trait NotSync {
    fn is_sync(&self) -> bool {
        false
    }
}
impl<T> NotSync for Probe<T> {}
impl<T: Sync> Probe<T> {
    fn is_sync(&self) -> bool {
        true
    }
}
fn probe<T>(_: &T) -> Probe<T> {
    Probe(PhantomData)
}

/// The futures of `Lock::try_acquire` and `LockGuard::release` (and those
/// built on them) are `Sync`: they hold a `oneshot::Receiver` / `JoinHandle`.
/// The auto traits of a public async fn's future are part of its API (c1e8848
/// lost `Sync` by holding a boxed `Send` future).
#[tokio::test(start_paused = true)]
async fn try_acquire_and_release_futures_are_sync() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    let c = client(mem.clone(), &clock, "a");
    let lock = c.create_lock("x");
    let try_acquire = lock.try_acquire();
    let try_sync = probe(&try_acquire).is_sync();
    let guard = try_acquire.await.unwrap().unwrap();
    let release = guard.release();
    let release_sync = probe(&release).is_sync();
    release.await.unwrap();
    // The probe itself: a oneshot receiver is Sync, a boxed Send future not.
    let (_tx, rx) = tokio::sync::oneshot::channel::<u8>();
    assert!(probe(&rx).is_sync());
    let boxed: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async {});
    assert!(!probe(&boxed).is_sync());
    assert!(
        try_sync && release_sync,
        "try_acquire() future Sync: {try_sync}, release() future Sync: {release_sync}"
    );
}

/// A release polled once (its write 1 s from the store) and held unpolled
/// while the same task shuts the client down: the release finishes in its own
/// task and the shutdown reports the lock released. (Inline, c1e8848: reported
/// unconfirmed after 20 s, the lock still held in the store.)
#[tokio::test(start_paused = true)]
async fn a_shutdown_with_a_held_unpolled_release_reports_it_released() {
    let (mem, clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    next_write(&store, Fault::Delay(Duration::from_secs(1)));
    let mut release = Box::pin(guard.release());
    assert!(poll_for(&clock, Duration::from_millis(10), &mut release)
        .await
        .is_none());
    let t0 = clock.now();
    let report = c.shutdown().await;
    let took = clock.now() - t0;
    let stored = mem.get("x").unwrap();
    drop(release);
    assert!(
        report.released == vec!["x".to_owned()] && stored.released,
        "after {took:?}: {report:?}; stored: {stored:?}"
    );
    assert!(took <= Duration::from_secs(2), "shutdown took {took:?}");
}

/// A held, unpolled acquire future of a lock held elsewhere does not hold
/// up a shutdown (its acquirer polls in a task of its own, which the
/// shutdown stops). A shutdown waiting on the future would take 20 s.
#[tokio::test(start_paused = true)]
async fn a_held_acquire_whose_first_attempt_finished_does_not_delay_shutdown() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    mem.put_raw(record("x", "elsewhere", L, 1, false));
    let c = client(mem.clone(), &clock, "a");
    let lock = c.create_lock("x");
    let mut acquire = Box::pin(lock.acquire());
    assert!(poll_for(&clock, Duration::from_secs(3), &mut acquire)
        .await
        .is_none());
    assert!(
        mem.counts().reads >= 1,
        "the acquirer polls on its own by now"
    );
    let t0 = clock.now();
    let report = c.shutdown().await;
    let took = clock.now() - t0;
    assert!(report.is_clean(), "{report:?}");
    assert!(took < Duration::from_secs(1), "shutdown waited {took:?}");
    let out = acquire.await;
    assert!(matches!(out, Err(LockError::ShutDown)), "{out:?}");
}

/// `try_acquire` on a lock held elsewhere answers "busy" as soon as its one
/// write failed, not after the acquirer's first poll gap (100 ms).
#[tokio::test(start_paused = true)]
async fn try_acquire_answers_busy_without_waiting_for_the_attempts_poll_gap() {
    let (mem, clock) = (MemoryBackend::new(), TestClock::new());
    mem.put_raw(record("x", "elsewhere", L, 1, false));
    let c = client(mem.clone(), &clock, "a");
    let t0 = clock.now();
    let out = c.create_lock("x").try_acquire().await.unwrap();
    assert!(out.is_none());
    assert_eq!(clock.now(), t0, "try_acquire answered late");
    // And the acquirer it started stops (nobody waits) instead of polling.
    clock.advance(Duration::from_secs(5)).await;
    settle().await;
    let reads = mem.counts().reads;
    clock.advance(Duration::from_secs(10)).await;
    assert_eq!(
        mem.counts().reads,
        reads,
        "an acquirer kept polling for nobody"
    );
}

/// Several local waiters arrive while the first attempt (started by the
/// first of them) is in flight; the first then gives up (its deadline). The
/// attempt goes on in a task of its own, and the others are granted one
/// after another, in arrival order, with strictly increasing tokens and
/// never two at once.
#[tokio::test(start_paused = true)]
async fn waiters_behind_an_abandoned_first_attempt_are_served_in_order() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let (mem, clock, store, c) = faulty_client("a");
    next_write(&store, Fault::DelayResponse(Duration::from_secs(3)));
    let inside = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let first = {
        let lock = c.create_lock("x");
        tokio::spawn(async move { lock.acquire_timeout(Duration::from_millis(500)).await })
    };
    settle().await;
    let mut others = Vec::new();
    for i in 0..4u32 {
        let (lock, inside, log, clock) = (
            c.create_lock("x").with_payload(format!("w{i}")),
            inside.clone(),
            log.clone(),
            clock.clone(),
        );
        others.push(tokio::spawn(async move {
            let g = lock.acquire().await.unwrap();
            assert_eq!(
                inside.fetch_add(1, Ordering::SeqCst),
                0,
                "two holders at once"
            );
            log.lock().unwrap().push((i, g.fencing_token().get()));
            clock.sleep(Duration::from_millis(300)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            g.release().await.unwrap();
        }));
        settle().await;
    }
    let out = first.await.unwrap();
    assert!(matches!(out, Err(LockError::NotGranted { .. })), "{out:?}");
    for o in others {
        within(&clock, Duration::from_secs(30), o)
            .await
            .expect("a waiter was never served")
            .unwrap();
    }
    let log = log.lock().unwrap().clone();
    let order: Vec<u32> = log.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, vec![0, 1, 2, 3], "{log:?}");
    assert!(log.windows(2).all(|w| w[0].1 < w[1].1), "tokens: {log:?}");
    assert!(mem.get("x").unwrap().released);
}

/// An acquire cancelled (by its deadline) at many points of a first attempt
/// under each fault, then the same client and another one acquiring: each
/// gets the lock (the abandoned attempt resolves and frees or hands over
/// what it won), tokens strictly increase, and no two holders overlap.
#[tokio::test(start_paused = true)]
async fn first_attempts_cancelled_anywhere_under_faults_leave_nothing_stuck() {
    let faults = [
        Fault::LoseResponse,
        Fault::StallAfterApply,
        Fault::Stall,
        Fault::DelayResponse(Duration::from_secs(3)),
        Fault::Delay(Duration::from_secs(3)),
        Fault::FailBefore(lynk_core::BackendErrorKind::Throttled),
    ];
    let cancels = [0u64, 1, 30, 120, 2_000, 4_000, 6_000];
    for fault in &faults {
        for &ms in &cancels {
            for try_once in [false, true] {
                let what = format!("{fault:?} cancelled at {ms} ms (try_acquire: {try_once})");
                let (mem, clock) = (MemoryBackend::new(), TestClock::new());
                let store = faulty(mem.clone(), &clock);
                let a = client(store.clone(), &clock, "a");
                let b = client(mem.clone(), &clock, "b");
                store.inject(Some(Op::Write), None, fault.clone(), Some(1));
                let lock = a.create_lock("x");
                let mut last = 0u64;
                let got = if try_once {
                    within(&clock, Duration::from_millis(ms), lock.try_acquire())
                        .await
                        .and_then(|r| r.ok().flatten())
                } else {
                    lock.acquire_timeout(Duration::from_millis(ms)).await.ok()
                };
                if let Some(g) = got {
                    last = g.fencing_token().get();
                    g.release().await.unwrap();
                }
                let g = within(&clock, Duration::from_secs(60), lock.acquire())
                    .await
                    .unwrap_or_else(|| panic!("{what}: the same client never got the lock"))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    g.fencing_token().get() > last,
                    "{what}: token did not increase"
                );
                last = g.fencing_token().get();
                let held = mem.get("x").unwrap();
                assert!(!held.released && held.host == "a", "{what}: {held:?}");
                g.release().await.unwrap();
                let g = within(
                    &clock,
                    Duration::from_secs(60),
                    b.create_lock("x").acquire(),
                )
                .await
                .unwrap_or_else(|| panic!("{what}: the other client never got the lock"))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    g.fencing_token().get() > last,
                    "{what}: token did not increase"
                );
                g.release().await.unwrap();
                // Nothing left running: a shutdown has nothing to release.
                let report = a.shutdown().await;
                assert!(
                    report.released.is_empty() && report.is_clean(),
                    "{what}: {report:?}"
                );
            }
        }
    }
}

/// `release()` dropped while its write is delayed goes on in a task of its
/// own: the next local waiter gets the lock by handover when the write lands,
/// with a higher token.
#[tokio::test(start_paused = true)]
async fn a_release_dropped_midway_completes_and_hands_over() {
    let (mem, clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    let t1 = guard.fencing_token();
    let next = c.create_lock("x");
    let next = tokio::spawn(async move { next.acquire().await });
    settle().await;
    next_write(&store, Fault::DelayResponse(Duration::from_secs(3)));
    assert!(within(&clock, Duration::from_millis(10), guard.release())
        .await
        .is_none());
    let t0 = clock.now();
    let g = within(&clock, Duration::from_secs(10), next)
        .await
        .expect("no handover")
        .unwrap()
        .unwrap();
    assert!(clock.now() - t0 <= Duration::from_secs(4));
    assert!(g.fencing_token() > t1);
    g.release().await.unwrap();
    assert!(mem.get("x").unwrap().released);
}

/// A shutdown racing a release that runs (and is polled) in a caller's task
/// waits for it and reports the lock released.
#[tokio::test(start_paused = true)]
async fn a_shutdown_waits_for_a_release_being_awaited() {
    let (mem, _clock, store, c) = faulty_client("a");
    let guard = c.create_lock("x").acquire().await.unwrap();
    next_write(&store, Fault::Delay(Duration::from_secs(3)));
    let release = tokio::spawn(guard.release());
    settle().await;
    let report = c.shutdown().await;
    assert_eq!(report.released, vec!["x".to_owned()], "{report:?}");
    assert!(mem.get("x").unwrap().released);
    release.await.unwrap().unwrap();
}

/// The blocking facade: an `acquire_timeout` that gives up during its first
/// attempt (polled by `block_on` on the calling thread) hands the attempt to
/// the factory's runtime, which releases what it won; blocking acquire and
/// release then work as before.
#[test]
fn blocking_acquire_timeout_abandoning_a_first_attempt_releases_it() {
    let mem = MemoryBackend::new();
    let store = lynk_testkit::FaultyBackend::new(mem.clone());
    let slow = Fault::DelayResponse(Duration::from_millis(200));
    store.inject(Some(Op::Write), None, slow, Some(1));
    let factory =
        lynk_core::blocking::LockFactory::new(|| LockClient::builder(store).build()).unwrap();
    let lock = factory.create_lock("x");
    let out = lock.acquire_timeout(Duration::from_millis(20));
    assert!(matches!(out, Err(LockError::NotGranted { .. })), "{out:?}");
    assert!(!mem.get("x").unwrap().released);
    factory.block_on(lynk_core::SystemClock.sleep(Duration::from_millis(600)));
    assert!(
        mem.get("x").unwrap().released,
        "abandoned attempt not released"
    );
    let g = lock.acquire().unwrap();
    assert!(!mem.get("x").unwrap().released);
    g.release().unwrap();
    assert!(mem.get("x").unwrap().released);
}

/// `acquire_timeout` used from a runtime without timers: its time limit is
/// polled inside the client's runtime (`Engine::caller_deadline`), as the
/// engine's own waits are. It panicked with "timers are disabled" before (an
/// older finding of this review).
#[test]
fn acquire_timeout_from_a_runtime_without_timers_works() {
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mem = MemoryBackend::new();
    // Held elsewhere, so the wait (and its deadline's sleep) is polled.
    mem.put_raw(record("x", "elsewhere", L, 1, false));
    let c = home.block_on(async { LockClient::builder(mem.clone()).build().unwrap() });
    let bare = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bare.block_on(async {
            let out = c
                .create_lock("x")
                .acquire_timeout(Duration::from_millis(50))
                .await;
            assert!(matches!(out, Err(LockError::NotGranted { .. })), "{out:?}");
        })
    }));
    assert!(
        out.is_ok(),
        "acquire_timeout panicked on a runtime without timers"
    );
}

/// A release that panics (a backend bug) after its release began: the
/// `Releasing` guard frees the slot as it unwinds, so this client acquires the
/// lock again once it is free (older finding of this review: the slot kept the
/// dead lease as its holder for ever, and every later acquire of the name in
/// this client waited for ever).
#[tokio::test(start_paused = true)]
async fn a_panic_in_release_does_not_wedge_the_lock_in_this_client() {
    let (mem, clock, store, c) = faulty_client("a");
    let other = client(mem.clone(), &clock, "b");
    let guard = c.create_lock("x").acquire().await.unwrap();
    next_write(&store, Fault::Panic);
    let out = guard.release().await;
    assert!(matches!(out, Err(LockError::Internal { .. })), "{out:?}");
    // Another client gets the lock once the unrenewed lease ran out.
    let g = within(
        &clock,
        Duration::from_secs(60),
        other.create_lock("x").acquire(),
    )
    .await
    .expect("the other client never got the lock")
    .unwrap();
    g.release().await.unwrap();
    // This client never does.
    let again = within(
        &clock,
        Duration::from_secs(60),
        c.create_lock("x").acquire(),
    )
    .await;
    assert!(
        matches!(again, Some(Ok(_))),
        "this client could not acquire the lock a minute after it was released: {:?}",
        again.map(|r| r.map(|g| g.fencing_token()))
    );
}

/// A client driven from outside tokio altogether (`futures`' executor on a
/// plain thread), with writes slow enough that the acquire and the release
/// wait for the engine runtime's timers and wake-ups: both complete, and the
/// release is in the store.
#[test]
fn a_client_driven_by_a_non_tokio_executor_acquires_and_releases() {
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mem = MemoryBackend::new();
    let store = lynk_testkit::FaultyBackend::new(mem.clone());
    store.inject(
        Some(Op::Write),
        None,
        Fault::Delay(Duration::from_millis(5)),
        None,
    );
    let c = home.block_on(async { LockClient::builder(store).build().unwrap() });
    let lock = c.create_lock("x");
    std::thread::spawn(move || {
        futures::executor::block_on(async {
            let g = lock.acquire().await.unwrap();
            assert!(lock.try_acquire().await.unwrap().is_none());
            g.release().await.unwrap();
        })
    })
    .join()
    .unwrap();
    assert!(mem.get("x").unwrap().released);
}
