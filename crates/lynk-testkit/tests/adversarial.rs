//! Adversarial review of the lock engine: each test tries to break one of the
//! guarantees in `docs/concepts.md` through the public API.
//!
//! Tests named in the report as *findings* fail on the engine as reviewed;
//! the others are attacks the engine held, kept as regression guards.
//!
//! Run: `cargo test -p lynk-testkit --test adversarial`

use std::time::Duration;

use lynk_core::{ClientConfig, Clock, LockClient, LockError};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

mod common;
use common::{settle, within};

const L: Duration = Duration::from_secs(20);
const SEED: u64 = 11;

fn client(b: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(b, clock, host, L, SEED).build().unwrap()
}

fn client_with(
    b: impl lynk_core::LockBackend,
    clock: &TestClock,
    host: &str,
    config: ClientConfig,
) -> LockClient {
    let config = ClientConfig {
        host_identifier: host.to_owned(),
        jitter_seed: Some(SEED),
        ..config
    };
    common::builder(b, clock, host, L, SEED)
        .config(config)
        .build()
        .unwrap()
}

fn faulty(mem: &MemoryBackend, clock: &TestClock) -> FaultyBackend<MemoryBackend> {
    common::faulty(mem.clone(), clock)
}

// ---------------------------------------------------------------------------
// Findings (these fail on the engine as reviewed)
// ---------------------------------------------------------------------------

/// FINDING 1a. A handover whose response was lost is resolved only after the
/// release's retries (here: a few throttled attempts, ~1.6 s of backoff). The
/// release path then hands the waiter a lease timed from the *first*
/// attempt's send, with no freshness check: for a 1 s lease the guard
/// arrives with its safe deadline already in the past, and its lost signal
/// fires only afterwards (on registration with the keeper).
///
/// Bug: violates "a holder that cannot renew is told before its safe
/// deadline" and the doc's promise that a resolved write past its
/// lost-signal instant "is never handed out as it is" (the acquirer checks
/// `fresh`; `release.rs`'s `Outcome::HandedOver(r, at)` does not).
#[tokio::test(start_paused = true)]
async fn a_late_resolved_handover_is_not_handed_out_past_its_safe_deadline() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock);
    let c = client(f.clone(), &clock, "a");
    let g1 = c.create_lock("x").acquire().await.unwrap();
    let short = c.create_lock("x").with_lease(Duration::from_secs(1));
    let w2 = tokio::spawn(async move { short.acquire().await });
    settle().await;
    // The handover applies but its answer is lost; the next attempts are
    // throttled, so the release resolves it only after ~1.6 s of backoff.
    f.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    f.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(lynk_core::BackendErrorKind::Throttled),
        Some(6),
    );
    let release = tokio::spawn(g1.release());
    let g2 = w2.await.unwrap().expect("handed over");
    let now = clock.now();
    let watch = g2.watch();
    assert!(
        now < g2.safe_deadline(),
        "acquire returned a guard {:?} past its own safe deadline (lost signal fired yet: {})",
        now - g2.safe_deadline(),
        watch.is_lost()
    );
    drop(g2);
    let _ = release.await;
}

/// FINDING 1b. Same root cause on the acquirer's direct path: with an
/// explicit `call_timeout` longer than a lock's lease (allowed: it is one
/// setting per client, leases are per lock), an acquire write that applied
/// at once but whose response took 1.5 s is granted as a 1 s lease timed
/// from its send. The guard is born past its safe deadline; its lost signal
/// fires after it.
///
/// Bug: a lost signal after the safe deadline. Fix for 1a and 1b: in
/// `grant`/`deliver` (or `new_lease`), refuse to hand out a lease whose
/// `valid_from + signal_after(lease)` has passed: re-write it (the version
/// condition proves it is still ours) as the acquirer already does for
/// resolved own writes; and/or cap each acquisition call at
/// `signal_after(spec.lease)` as heartbeats are capped.
#[tokio::test(start_paused = true)]
async fn a_slow_acquire_response_is_not_handed_out_past_its_safe_deadline() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock);
    let c = client_with(
        f.clone(),
        &clock,
        "a",
        ClientConfig {
            default_lease: L,
            call_timeout: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
        },
    );
    f.inject(
        Some(Op::Write),
        None,
        Fault::DelayResponse(Duration::from_millis(1500)),
        Some(1),
    );
    let g = c
        .create_lock("x")
        .with_lease(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap();
    let now = clock.now();
    assert!(
        now < g.safe_deadline(),
        "granted {:?} after its safe deadline",
        now - g.safe_deadline()
    );
}

/// FINDING 2. `shutdown()` stops at its deadline (`release_timeout` + one
/// call timeout of the *default* lease = 15 s here) without a last look at
/// the client's leases. A lock with a longer lease (60 s: call timeout 10 s)
/// whose acquisition response arrives 9 s into the shutdown is granted,
/// refused and released in the background; that release hangs past the
/// shutdown's deadline. The lease was never added to `seen`, so the report
/// is empty and `is_clean()` says every held lock was released, while the
/// store still holds our unreleased record.
///
/// Bug: shutdown reports something untrue ("reports every lease incl.
/// grants after it"). Fix: after the loop (also when it broke at the
/// deadline) sweep `live_leases()` once more, `begin_release` any new one
/// and report it as failed/unconfirmed; or bound the wait by the largest
/// call timeout any acquirer may be using.
#[tokio::test(start_paused = true)]
async fn shutdown_reports_a_lock_granted_late_in_its_wait() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock);
    let c = client(f.clone(), &clock, "a");
    f.inject(
        Some(Op::Write),
        None,
        Fault::DelayResponse(Duration::from_secs(9)),
        Some(1),
    );
    f.inject(Some(Op::Write), None, Fault::Stall, None);
    let lock = c.create_lock("x").with_lease(Duration::from_secs(60));
    let waiter = tokio::spawn(async move { lock.acquire().await });
    settle().await;
    let report = c.shutdown().await;
    assert!(matches!(waiter.await.unwrap(), Err(LockError::ShutDown)));
    let stored = mem.get("x").expect("the acquire applied");
    assert!(!stored.released, "precondition: the record is still held");
    assert!(
        !report.is_clean(),
        "shutdown reported a clean release of everything ({report:?}) while the store holds our unreleased lock {stored:?}"
    );
}

/// FINDING 3a. `acquire_timeout(Duration::MAX)` ("wait forever") panics in
/// the caller: `clock.now() + wait` overflows `Instant`.
///
/// Bug: a panic on an odd but reasonable input. Fix: `checked_add`, and
/// treat an unrepresentable deadline as `None` (no deadline).
#[tokio::test(start_paused = true)]
async fn acquire_timeout_of_duration_max_does_not_panic() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(mem, &clock, "a");
    let lock = c.create_lock("x");
    let got = tokio::spawn(async move { lock.acquire_timeout(Duration::MAX).await }).await;
    match got {
        Err(e) if e.is_panic() => panic!("acquire_timeout(Duration::MAX) panicked"),
        Err(e) => panic!("{e}"),
        Ok(r) => {
            let _guard = r.expect("a free lock is granted");
        }
    }
}

/// FINDING 3b. `ClientConfig::validate` accepts `call_timeout:
/// Some(Duration::MAX)` ("no limit"), and then every acquire fails: the
/// acquirer panics on `now + call_timeout` and `ResetOnPanic` answers "the
/// lock engine failed while acquiring it (a bug: please report it)";
/// `describe()` panics in the caller. The keeper computes the same sum, so a
/// value that only overflows there would kill the heartbeat task and with it
/// every lost signal of the client.
///
/// Bug: a validated configuration that panics the engine. Fix: reject (or
/// clamp) `call_timeout` and `release_timeout` above e.g. `MAX_LEASE` in
/// `validate`, and compute deadlines with `checked_add` / saturation.
#[tokio::test(start_paused = true)]
async fn a_validated_huge_call_timeout_does_not_break_acquire() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let config = ClientConfig {
        default_lease: L,
        call_timeout: Some(Duration::MAX),
        ..ClientConfig::default()
    };
    // Fixed by refusing it up front, with a message naming the setting.
    let err = config
        .validate()
        .expect_err("an unrepresentable call timeout");
    assert!(err.to_string().contains("call timeout"), "{err}");
    let refused = LockClient::builder(mem)
        .clock(clock.clone())
        .config(config)
        .build();
    assert!(refused.is_err());
}

/// FINDING 3c. `release_timeout: Duration::MAX` ("keep trying") passes
/// validation; then a release panics inside its task (`now +
/// release_timeout`), never publishes an outcome and never clears the slot's
/// holder. `release()` answers `ShutDown` (a `JoinError`), and the next local
/// waiter is stranded forever although the lock is free in the store's
/// eyes as soon as its lease lapses.
///
/// Bug: waiters stranded (an unbounded wait), and a wrong error. Fix as 3b.
#[tokio::test(start_paused = true)]
async fn a_validated_huge_release_timeout_does_not_strand_waiters() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let config = ClientConfig {
        default_lease: L,
        release_timeout: Duration::MAX,
        ..ClientConfig::default()
    };
    // Fixed by refusing it up front; the longest accepted value still
    // serves the next waiter.
    let err = config
        .validate()
        .expect_err("an unrepresentable release timeout");
    assert!(err.to_string().contains("release timeout"), "{err}");
    let config = ClientConfig {
        release_timeout: lynk_core::MAX_LEASE,
        ..config
    };
    let c = client_with(mem.clone(), &clock, "a", config);
    let g1 = c.create_lock("x").acquire().await.unwrap();
    let lock = c.create_lock("x");
    let w2 = tokio::spawn(async move { lock.acquire().await });
    settle().await;
    let released = g1.release().await;
    let served = within(&clock, Duration::from_secs(600), w2).await;
    assert!(
        matches!(served, Some(Ok(Ok(_)))),
        "release() = {released:?}; the next local waiter was not served within 10 minutes"
    );
}

/// FINDING 4. The holder's record is deleted by an operator (the premise of
/// review finding 4), another host acquires *and releases* it, then the
/// holder releases. Every attempt of the release was answered, and the
/// record it finds carries another host's name and a higher fencing token:
/// the lock was taken from this holder during its lease, exactly the case
/// `release()` promises to report as `Lost`. Because that record is marked
/// released, `release_inner` treats it as "already free" and returns `Ok`.
///
/// Bug: `release()` returns `Ok` over a proven overlap (the doc: a release
/// that finds another holder's record "is never a quiet success"). Fix: in
/// the `Some(r) if r.released` arm, if `r.version` is not ours and
/// `r.fencing_token > lease.token` (or `r.host` differs) and no attempt was
/// unanswered, return `held_by_another`/`Lost`.
#[tokio::test(start_paused = true)]
async fn a_release_that_finds_another_holders_released_record_is_not_ok() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(mem.clone(), &clock, "a");
    let b = client(mem.clone(), &clock, "b");
    let ga = a.create_lock("x").acquire().await.unwrap();
    mem.remove_raw("x");
    clock.advance(Duration::from_millis(5)).await;
    let gb = b.create_lock("x").acquire().await.unwrap();
    assert!(gb.fencing_token() > ga.fencing_token());
    gb.release().await.unwrap();
    let released = ga.release().await;
    assert!(
        matches!(&released, Err(LockError::Lost { .. })),
        "b held the lock during a's lease, yet a's release said {released:?}"
    );
}
