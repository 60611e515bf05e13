//! Findings of the simulation (`tests/simulation.rs`) in the new primitives,
//! each reduced to a small deterministic test. Each failed when it was
//! written and passes since the fix its comment names.

use std::time::Duration;

use lynk_core::{BackendErrorKind, Clock, LockClient};
use lynk_testkit::sim::{run, SimConfig, SimPrimitive};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};

mod common;

const LEASE: Duration = Duration::from_secs(10);

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 7)
        .build()
        .expect("valid config")
}

/// Finding (multi-lock, "lost on arrival"): `MultiLock::acquire` holds its
/// earlier names while it waits for a later one; if an earlier name's lease
/// is lost meanwhile (its heartbeats fail, e.g. a partition or a paused
/// host), `acquire` still returns `Ok` with a guard whose lost signal has
/// already fired. Nothing is unsafe (the signal has fired, `run` refuses to
/// start, the per-name checks hold), but the caller gets a dead guard after
/// waiting for it, and `docs/multi-lock.md` does not say that can happen.
/// In the simulation's main multi-lock configuration, 2508 of the name
/// holdings of 300 seeds were handed out this way.
///
/// Ignored: fails on the current code (the guard is handed out lost).
#[tokio::test(start_paused = true)]
// Regression for the simulation's finding (fixed: a name lost while acquiring the others sends the multi-lock back to the start).
async fn multi_lock_acquire_does_not_hand_out_a_guard_already_lost() {
    let memory = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(memory.clone(), &clock);
    let waiter = client(faulty.clone(), &clock, "waiter");
    let holder = client(memory.clone(), &clock, "holder");
    // Another client holds "b".
    let b = holder.create_lock("b").acquire().await.unwrap();
    // The multi-lock takes "a", then waits for "b".
    let multi = waiter.multi_lock(["a", "b"]);
    let acquiring = tokio::spawn(async move { multi.acquire_timeout(LEASE * 6).await });
    common::settle().await;
    // "a"'s heartbeats fail (a partition of that name's writes) until its
    // lease is lost; then the store answers again and "b" is released.
    faulty.inject(
        Some(Op::Write),
        Some("a"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    clock.sleep(LEASE * 2).await;
    faulty.clear();
    b.release().await.unwrap();
    let answer = acquiring.await.unwrap();
    match answer {
        Ok(guard) => assert!(
            !guard.is_lost(),
            "acquire returned a guard already lost: {:?}",
            guard.lost_reason()
        ),
        Err(e) => println!("acquire failed instead (acceptable): {e}"),
    }
}

/// The same finding in the simulation: the main multi-lock configuration
/// (2 to 3 of 4 names) under the fault model, seed 1.
#[test]
// Regression for the simulation's finding (fixed: a name lost while acquiring the others sends the multi-lock back to the start).
fn no_multi_guard_is_handed_out_lost_in_the_simulation() {
    let report = run(&SimConfig {
        seed: 1,
        primitive: SimPrimitive::MultiLock { names: 3, pool: 4 },
        ..SimConfig::default()
    });
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.lost_on_arrival, 0, "{report}");
}
