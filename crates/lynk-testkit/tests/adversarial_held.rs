//! Adversarial review of the lock engine: each test tries to break one of the
//! guarantees in `docs/concepts.md` through the public API.
//!
//! This file: the attacks the engine held, kept as regression guards (the
//! findings, each fixed, are in the file without `_held`).
//!
//! Run: `cargo test -p lynk-testkit --test adversarial_held`

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
// Attacks the engine held (these pass)
// ---------------------------------------------------------------------------

/// HELD. Heartbeats hang (every write stalls) and `call_timeout` is set far
/// beyond the lease: the heartbeat is still cut at the lost-signal instant,
/// and the signal fires `lease × margin` before the safe deadline.
#[tokio::test(start_paused = true)]
async fn held_the_lost_signal_beats_the_safe_deadline_with_a_huge_call_timeout() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock);
    let c = client_with(
        f.clone(),
        &clock,
        "a",
        ClientConfig {
            default_lease: L,
            call_timeout: Some(Duration::from_secs(3600)),
            ..ClientConfig::default()
        },
    );
    let g = c.create_lock("x").acquire().await.unwrap();
    let safe = g.safe_deadline();
    f.inject(Some(Op::Write), None, Fault::Stall, None);
    g.lost().await;
    let at = clock.now();
    assert!(
        at + L.mul_f64(0.1) <= safe + Duration::from_millis(1),
        "lost at {:?} before the safe deadline, expected >= 2 s",
        safe.saturating_duration_since(at)
    );
}

/// HELD. The lost signal and a release due at the very same instant (paused
/// time; heartbeats throttled): exactly one acts. Either the release is
/// clean (`Ok`, no signal) or the loss came first (`Lost`, signal fired).
#[tokio::test(start_paused = true)]
async fn held_a_release_at_the_lost_instant_is_either_clean_or_lost() {
    for offset_us in [0u64, 1, 2, 1000] {
        let mem = MemoryBackend::new();
        let clock = TestClock::new();
        let f = faulty(&mem, &clock);
        let c = client(f.clone(), &clock, "a");
        let g = c.create_lock("x").acquire().await.unwrap();
        let watch = g.watch();
        // Signal instant: sent + L × 0.89, sent == acquisition instant here.
        let signal = g.safe_deadline() - L.mul_f64(0.1);
        f.inject(
            Some(Op::Write),
            None,
            Fault::FailBefore(lynk_core::BackendErrorKind::Unavailable),
            None,
        );
        let at = signal - Duration::from_micros(offset_us);
        clock.sleep_until(at).await;
        f.clear();
        let released = g.release().await;
        match released {
            Ok(()) => assert!(!watch.is_lost(), "clean release fired the signal"),
            Err(LockError::Lost { .. }) => assert!(watch.is_lost()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(mem.get("x").unwrap().released, "record released either way");
    }
}

/// HELD. `try_acquire` whose write applied but whose answer was lost says
/// `OutcomeUnknown`; the next acquire of the same client recognises the
/// record as its own at once (no lease-long wait) and keeps its token.
#[tokio::test(start_paused = true)]
async fn held_an_ambiguous_try_acquire_is_recognised_by_the_next_acquire() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock);
    let c = client(f.clone(), &clock, "a");
    f.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    let first = c.create_lock("x").try_acquire().await;
    assert!(
        matches!(first, Err(LockError::OutcomeUnknown { .. })),
        "{first:?}"
    );
    let stored = mem.get("x").unwrap();
    let start = clock.now();
    let g = c
        .create_lock("x")
        .acquire_timeout(Duration::from_secs(1))
        .await
        .expect("own record recognised");
    assert!(clock.now() - start < Duration::from_millis(100));
    assert_eq!(Some(g.fencing_token()), stored.fencing_token);
    g.release().await.unwrap();
}

/// HELD. A handover whose answer is slow (2 s) to a waiter that gives up at
/// 1 s: the lock goes on to the next local waiter, tokens strictly increase,
/// nobody is stranded, and no two local guards are live at once.
#[tokio::test(start_paused = true)]
async fn held_a_handover_to_a_waiter_that_left_serves_the_next() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock);
    let c = client(f.clone(), &clock, "a");
    let g1 = c.create_lock("x").acquire().await.unwrap();
    let t1 = g1.fencing_token();
    let l2 = c.create_lock("x");
    let w2 = tokio::spawn(async move { l2.acquire_timeout(Duration::from_secs(1)).await });
    settle().await;
    let l3 = c.create_lock("x");
    let w3 = tokio::spawn(async move { l3.acquire().await });
    settle().await;
    f.inject(
        Some(Op::Write),
        None,
        Fault::DelayResponse(Duration::from_secs(2)),
        Some(1),
    );
    g1.release().await.unwrap();
    assert!(matches!(
        w2.await.unwrap(),
        Err(LockError::NotGranted { .. })
    ));
    let g3 = within(&clock, Duration::from_secs(60), w3)
        .await
        .expect("w3 served")
        .unwrap()
        .unwrap();
    assert!(
        g3.fencing_token().get() >= t1.get() + 2,
        "{t1} then {}",
        g3.fencing_token()
    );
    assert_eq!(
        mem.get("x").unwrap().fencing_token,
        Some(g3.fencing_token())
    );
    g3.release().await.unwrap();
}

/// HELD. Cancelling `acquire` at many points of a slow acquisition write
/// (the response takes 300 ms; the caller gives up after 0..300 ms in 10 ms
/// steps) never strands the name or double-grants: each next acquire is
/// served promptly, and tokens strictly increase.
#[tokio::test(start_paused = true)]
async fn held_cancelling_acquire_at_any_point_strands_nothing() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock);
    let c = client(f.clone(), &clock, "a");
    let mut last = 0u64;
    for ms in (0..=300).step_by(10) {
        f.inject(
            Some(Op::Write),
            None,
            Fault::DelayResponse(Duration::from_millis(300)),
            Some(1),
        );
        let lock = c.create_lock("x");
        let _ = within(&clock, Duration::from_millis(ms), lock.acquire()).await;
        let g = c
            .create_lock("x")
            .acquire_timeout(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("after cancelling at {ms} ms: {e}"));
        assert!(g.fencing_token().get() > last, "token did not increase");
        last = g.fencing_token().get();
        assert_eq!(c.held_locks(), vec!["x".to_owned()]);
        g.release().await.unwrap();
        settle().await;
    }
}

/// HELD. Two clients contend with lost responses on every fourth write:
/// by each holder's own accounting (acquire returned .. earliest of release,
/// lost signal, safe deadline) no two holds overlap, and tokens strictly
/// increase in grant order. Deterministic: one paused current-thread runtime.
#[tokio::test(start_paused = true)]
async fn held_two_clients_with_lost_responses_never_overlap() {
    use std::sync::{Arc, Mutex};
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(&mem, &clock).with_random(lynk_testkit::RandomFaults {
        lose_response: 0.25,
        ops: vec![Op::Write],
        ..lynk_testkit::RandomFaults::none(5)
    });
    let short = Duration::from_secs(2);
    let holds: Arc<Mutex<Vec<(u64, std::time::Instant, std::time::Instant)>>> = Arc::default();
    let mut tasks = Vec::new();
    for host in ["a", "b"] {
        let c = client_with(
            f.clone(),
            &clock,
            host,
            ClientConfig {
                default_lease: short,
                ..ClientConfig::default()
            },
        );
        let holds = holds.clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15u64 {
                let Ok(g) = c
                    .create_lock("x")
                    .acquire_timeout(Duration::from_secs(30))
                    .await
                else {
                    continue;
                };
                let start = clock.now();
                let work = Duration::from_millis(300 + 200 * (i % 4));
                let _ = g.run(clock.sleep(work)).await;
                let end = clock.now().min(g.safe_deadline());
                holds
                    .lock()
                    .unwrap()
                    .push((g.fencing_token().get(), start, end));
                let _ = g.release().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut h = holds.lock().unwrap().clone();
    assert!(h.len() >= 10, "too few grants: {}", h.len());
    h.sort_by_key(|x| x.1);
    for w in h.windows(2) {
        assert!(w[0].2 <= w[1].1, "overlap: {:?} and {:?}", w[0], w[1]);
        assert!(
            w[0].0 < w[1].0,
            "token not increasing: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}
