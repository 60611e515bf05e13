//! Review of `LockGuard::set_payload` / `Leadership::set_payload` (commit
//! 90f2ab9): a heartbeat-like conditional write carrying a new payload,
//! serialized with the keeper's heartbeats and the release by the lease's
//! core lock.
//!
//! Tests marked "Regression for finding N" failed on the first version of
//! `set_payload` (engine/payload.rs, engine/keeper.rs) and pass since the
//! fixes; the other tests are probes that held up.

use std::time::{Duration, Instant};

use lynk_core::{BackendErrorKind, Clock, LockClient, LockError};
use lynk_testkit::{Fault, MemoryBackend, Op, TestClock};

mod common;
use common::settle;

/// Lease 10 s: heartbeats every 3.33 s, lost signal 8.9 s after a renewal's
/// send, safe deadline 9.9 s after it, call time limit 2.5 s.
const LEASE: Duration = Duration::from_secs(10);
const SIGNAL_AFTER: Duration = Duration::from_millis(8_900);
const SAFE_FOR: Duration = Duration::from_millis(9_900);
const CALL_LIMIT: Duration = Duration::from_millis(2_500);

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 23)
        .build()
        .expect("valid config")
}

/// Sleeps on `clock` until `at`.
async fn sleep_until(clock: &TestClock, at: Instant) {
    let now = clock.now();
    if at > now {
        clock.sleep(at - now).await;
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Finding 1: a successful `set_payload` renews the lease (`valid_from`,
/// hence `safe_deadline()`), but the keeper's `Entry::signal_at` is only
/// moved by the keeper's own `Beat::Renewed` (keeper.rs `on_beat`); the
/// keeper's `on_timer` fires the lost signal at `signal_at` without looking
/// at `lease.valid_from()`. So after a payload change the lost signal fires
/// at the *previous heartbeat's* instant, up to a heartbeat period early,
/// while `safe_deadline()` still says the lease is good: a leader abdicates
/// (its work dropped) though, by the docs, "it renews the lease like a
/// heartbeat" and the signal fires only "if no heartbeat has succeeded by
/// sent + L × (1 − d − 0.1)".
///
/// Interleaving: heartbeat at 3.33 s (keeper: signal at 12.23 s);
/// set_payload at 5 s succeeds (lease valid from 5 s: signal due 13.9 s,
/// safe deadline 14.9 s); every write fails from then on; the keeper fires
/// `HeartbeatsFailed` at 12.23 s.
#[tokio::test(start_paused = true)]
// Regression for finding 1 of the payload review (fixed).
async fn a_payload_change_renews_the_lost_signal_like_a_heartbeat() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(faulty.clone(), &clock, "a");
    let start = clock.now();
    let mut leadership = a
        .election("leader")
        .with_payload("old")
        .campaign()
        .await
        .unwrap();
    sleep_until(&clock, start + Duration::from_secs(5)).await;
    assert_eq!(a.metrics().heartbeats, 1, "the heartbeat at 3.33 s ran");
    leadership.set_payload("new").await.unwrap();
    let renewed_at = clock.now();
    assert_eq!(
        leadership.safe_deadline(),
        renewed_at + SAFE_FOR,
        "the change renewed the lease from its send"
    );
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    // Just before the signal instant of the renewal at 5 s (13.9 s).
    sleep_until(
        &clock,
        renewed_at + SIGNAL_AFTER - Duration::from_millis(300),
    )
    .await;
    assert!(
        !leadership.is_lost(),
        "lost ({:?}) {:.2} s after the payload change renewed the lease, \
         with safe_deadline() still {:.2} s ahead",
        leadership.lost_reason(),
        secs(clock.now() - renewed_at),
        secs(leadership.safe_deadline() - clock.now()),
    );
    faulty.clear();
}

/// Finding 2 (made reachable by finding 1): `Engine::set_payload` times its attempts by
/// `lease.valid_from()` (payload.rs, `signal_at = lease.valid_from() + ...`)
/// and never checks `lease.is_ended()` between attempts, so once the keeper
/// has fired the lost signal early (finding 1) a payload change in its
/// retry loop goes on writing the record of a lease its holder was told it
/// lost, and returns `Ok(())` for it (payload.rs: the loop's only exits are
/// `now >= signal_at`, the give-up, `Stored` and `Lost`; `is_ended()` is
/// checked once, before the first attempt).
///
/// Interleaving: as in finding 1 (heartbeat 3.33 s, payload change at 5 s,
/// store failing from then on); a second payload change starts at 11 s and
/// retries; the keeper fires the lost signal at 12.23 s; the store recovers
/// at 12.6 s; the change's next attempt is applied and answered `Ok`.
#[tokio::test(start_paused = true)]
// Regression for finding 2 of the payload review (fixed).
async fn a_payload_change_never_succeeds_on_a_lost_lease() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(faulty.clone(), &clock, "a");
    let start = clock.now();
    let mut leadership = a
        .election("leader")
        .with_payload("old")
        .campaign()
        .await
        .unwrap();
    sleep_until(&clock, start + Duration::from_secs(5)).await;
    leadership.set_payload("p1").await.unwrap();
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    sleep_until(&clock, start + Duration::from_secs(11)).await;
    let healer = {
        let (clock, faulty) = (clock.clone(), faulty.clone());
        tokio::spawn(async move {
            sleep_until(&clock, start + Duration::from_millis(12_600)).await;
            faulty.clear();
        })
    };
    let result = common::within(
        &clock,
        Duration::from_secs(20),
        leadership.set_payload("p2"),
    )
    .await
    .expect("set_payload answers");
    healer.await.unwrap();
    let stored = store.get("leader").unwrap();
    assert!(
        !(result.is_ok() && leadership.is_lost()),
        "set_payload returned Ok on a lease whose lost signal had fired ({:?}); \
         the store shows payload {:?}, written after the holder was told to stop",
        leadership.lost_reason(),
        stored.payload,
    );
}

/// Probe (held): a payload change issued while a heartbeat's write is stuck
/// (applied, never answered) waits for that heartbeat only up to its call
/// time limit, then finds the heartbeat's record, adopts it, writes over it,
/// and succeeds well before the lost-signal instant. Later heartbeats carry
/// the new payload (no revert), the term and leadership are kept.
#[tokio::test(start_paused = true)]
async fn a_payload_change_behind_a_stuck_heartbeat_succeeds_in_time() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(faulty.clone(), &clock, "a");
    let start = clock.now();
    let mut leadership = a
        .election("leader")
        .with_payload("old")
        .campaign()
        .await
        .unwrap();
    let term = leadership.term();
    // The heartbeat at 3.33 s applies and is never answered.
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::StallAfterApply,
        Some(1),
    );
    sleep_until(&clock, start + Duration::from_millis(3_500)).await;
    assert_eq!(faulty.injected(), 1, "the heartbeat is stuck");
    let signal_at = leadership.safe_deadline() - SAFE_FOR + SIGNAL_AFTER;
    let called = clock.now();
    leadership.set_payload("new").await.unwrap();
    let took = clock.now() - called;
    assert!(
        took <= CALL_LIMIT,
        "waited {:.2} s for the stuck heartbeat",
        secs(took)
    );
    assert!(clock.now() < signal_at);
    let stored = store.get("leader").unwrap();
    assert_eq!(stored.payload.as_deref(), Some(&b"new"[..]));
    assert_eq!(stored.fencing_token, Some(term));
    assert!(a.metrics().ambiguous_resolved >= 1, "{:?}", a.metrics());
    for _ in 0..3 {
        clock.sleep(LEASE).await;
        assert!(!leadership.is_lost(), "{:?}", leadership.lost_reason());
        let stored = store.get("leader").unwrap();
        assert_eq!(stored.payload.as_deref(), Some(&b"new"[..]), "no revert");
        assert_eq!(stored.fencing_token, Some(term));
    }
    leadership.resign().await.unwrap();
}

/// Probe (held): with every write hanging, a payload change answers no
/// later than the lease's lost-signal instant, with an error, and the lost
/// signal fires no later than that instant.
#[tokio::test(start_paused = true)]
async fn a_payload_change_in_an_outage_ends_by_the_lost_signal() {
    for fault in [Fault::Stall, Fault::StallAfterApply] {
        let store = MemoryBackend::new();
        let clock = TestClock::new();
        let faulty = common::faulty(store.clone(), &clock);
        let a = client(faulty.clone(), &clock, "a");
        let start = clock.now();
        let mut leadership = a
            .election("leader")
            .with_payload("old")
            .campaign()
            .await
            .unwrap();
        sleep_until(&clock, start + Duration::from_secs(4)).await;
        let signal_at = leadership.safe_deadline() - SAFE_FOR + SIGNAL_AFTER;
        faulty.inject(Some(Op::Write), Some("leader"), fault.clone(), None);
        faulty.inject(Some(Op::Read), Some("leader"), Fault::Stall, None);
        let result = common::within(&clock, Duration::from_secs(30), leadership.set_payload("x"))
            .await
            .expect("set_payload answered");
        let late = clock.now().saturating_duration_since(signal_at);
        assert!(
            late <= Duration::from_millis(5),
            "{fault:?}: answered {:.3} s after the lost-signal instant",
            secs(late)
        );
        assert!(result.is_err(), "{fault:?}: {result:?}");
        assert!(leadership.is_lost(), "{fault:?}");
        faulty.clear();
    }
}

/// Probe (held): a guard dropped while its payload change is in flight
/// (the write delayed, or applied and unanswered) is still released: a
/// candidate of another process leads soon after, with a higher term, and
/// the old leader is not reported lost.
#[tokio::test(start_paused = true)]
async fn dropping_the_leader_during_a_payload_change_still_hands_over() {
    for fault in [
        Fault::Delay(Duration::from_secs(2)),
        Fault::StallAfterApply,
        Fault::LoseResponse,
    ] {
        let store = MemoryBackend::new();
        let clock = TestClock::new();
        let faulty = common::faulty(store.clone(), &clock);
        let a = client(faulty.clone(), &clock, "a");
        let b = client(store.clone(), &clock, "b");
        let mut leadership = a
            .election("leader")
            .with_payload("old")
            .campaign()
            .await
            .unwrap();
        let term = leadership.term();
        let lost = leadership.watch();
        let candidate = {
            let election = b.election("leader");
            tokio::spawn(async move { election.campaign().await })
        };
        clock.sleep(Duration::from_secs(1)).await;
        faulty.inject(Some(Op::Write), Some("leader"), fault.clone(), Some(1));
        let cancelled = common::within(
            &clock,
            Duration::from_millis(100),
            leadership.set_payload("new"),
        )
        .await;
        if matches!(fault, Fault::LoseResponse) {
            // Resolved by its retry at once.
            cancelled.expect("answered").unwrap();
        } else {
            assert!(cancelled.is_none(), "{fault:?}: still in flight");
        }
        let dropped_at = clock.now();
        drop(leadership);
        settle().await;
        let next = common::within(&clock, Duration::from_secs(8), candidate)
            .await
            .unwrap_or_else(|| panic!("{fault:?}: the candidate never led"))
            .unwrap()
            .unwrap();
        assert!(next.term() > term, "{fault:?}");
        assert!(
            clock.now() - dropped_at <= CALL_LIMIT + Duration::from_secs(3),
            "{fault:?}: {:.2} s",
            secs(clock.now() - dropped_at)
        );
        assert!(!lost.is_lost(), "{fault:?}: {:?}", lost.lost_reason());
        assert_eq!(store.get("leader").unwrap().host, "b");
        next.resign().await.unwrap();
    }
}

/// Probe (held): a payload change that gives up (store failing, but for
/// less than the lease) leaves the holder's view consistent: the next
/// heartbeat after the store recovers succeeds without a conflict loss and
/// writes the new payload; the error is not `Lost` and not a lost signal.
#[tokio::test(start_paused = true)]
async fn a_payload_change_that_gives_up_is_carried_by_the_next_heartbeat() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let config = lynk_core::ClientConfig {
        default_lease: LEASE,
        release_timeout: Duration::from_secs(2),
        ..lynk_core::ClientConfig::default()
    };
    let a = LockClient::builder(faulty.clone())
        .config(config)
        .clock(clock.clone())
        .host_identifier("a")
        .jitter_seed(23)
        .build()
        .unwrap();
    let mut leadership = a
        .election("leader")
        .with_payload("old")
        .campaign()
        .await
        .unwrap();
    clock.sleep(Duration::from_millis(3_500)).await;
    // The first attempt applies and its answer is lost; every retry fails
    // before the store.
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::LoseResponse,
        Some(1),
    );
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    let err = leadership.set_payload("new").await.expect_err("gave up");
    assert!(!matches!(err, LockError::Lost { .. }), "{err}");
    assert!(!leadership.is_lost());
    faulty.clear();
    clock.sleep(LEASE * 2).await;
    assert!(!leadership.is_lost(), "{:?}", leadership.lost_reason());
    assert_eq!(
        store.get("leader").unwrap().payload.as_deref(),
        Some(&b"new"[..])
    );
    leadership.resign().await.unwrap();
}

/// Probe (held): a payload change whose future is dropped while it waits
/// behind a stuck heartbeat, followed by a second change, ends with the
/// second payload stored and carried by every later heartbeat (the first
/// change's task runs first and cannot overwrite the second).
#[tokio::test(start_paused = true)]
async fn a_cancelled_change_followed_by_another_never_reverts() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(faulty.clone(), &clock, "a");
    let start = clock.now();
    let mut leadership = a
        .election("leader")
        .with_payload("old")
        .campaign()
        .await
        .unwrap();
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::StallAfterApply,
        Some(1),
    );
    sleep_until(&clock, start + Duration::from_millis(3_500)).await;
    let first = common::within(
        &clock,
        Duration::from_millis(100),
        leadership.set_payload("p1"),
    )
    .await;
    assert!(first.is_none(), "still waiting behind the heartbeat");
    leadership.set_payload("p2").await.unwrap();
    assert_eq!(leadership.payload().map(|p| &p[..]), Some(&b"p2"[..]));
    for _ in 0..3 {
        assert_eq!(
            store.get("leader").unwrap().payload.as_deref(),
            Some(&b"p2"[..])
        );
        clock.sleep(LEASE).await;
        assert!(!leadership.is_lost(), "{:?}", leadership.lost_reason());
    }
    leadership.resign().await.unwrap();
}

/// Probe (held): a leader dropped while its payload change is stuck hands
/// over to a waiting candidate of the same client in one write.
#[tokio::test(start_paused = true)]
async fn dropping_the_leader_during_a_payload_change_hands_over_locally() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(faulty.clone(), &clock, "a");
    let mut leadership = a
        .election("leader")
        .with_payload("old")
        .campaign()
        .await
        .unwrap();
    let term = leadership.term();
    let candidate = {
        let election = a.election("leader").with_payload("next");
        tokio::spawn(async move { election.campaign().await })
    };
    clock.sleep(Duration::from_secs(1)).await;
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::StallAfterApply,
        Some(1),
    );
    let cancelled = common::within(
        &clock,
        Duration::from_millis(100),
        leadership.set_payload("new"),
    )
    .await;
    assert!(cancelled.is_none());
    let dropped_at = clock.now();
    drop(leadership);
    let next = common::within(&clock, Duration::from_secs(8), candidate)
        .await
        .expect("the local candidate leads")
        .unwrap()
        .unwrap();
    assert!(next.term() > term);
    assert!(clock.now() - dropped_at <= CALL_LIMIT + Duration::from_millis(500));
    let stored = store.get("leader").unwrap();
    assert_eq!(stored.payload.as_deref(), Some(&b"next"[..]));
    assert_eq!(stored.fencing_token, Some(next.term()));
    next.resign().await.unwrap();
}

/// Probe (held): a payload change whose first attempt outlives its call
/// time limit (reaching the store after it was given up, or applied with
/// the answer after the limit) is neither lost nor taken for someone
/// else's write: the change succeeds, the stored version is the holder's
/// (the next heartbeats and the resignation succeed), the term is kept.
#[tokio::test(start_paused = true)]
async fn a_payload_attempt_outliving_its_time_limit_is_resolved() {
    for late in [
        Fault::Delay(Duration::from_millis(2_600)),
        Fault::Delay(Duration::from_secs(4)),
        Fault::DelayResponse(Duration::from_secs(3)),
    ] {
        let store = MemoryBackend::new();
        let clock = TestClock::new();
        let faulty = common::faulty(store.clone(), &clock);
        let a = client(faulty.clone(), &clock, "a");
        let mut leadership = a
            .election("leader")
            .with_payload("old")
            .campaign()
            .await
            .unwrap();
        let term = leadership.term();
        clock.sleep(Duration::from_millis(500)).await;
        faulty.inject(Some(Op::Write), Some("leader"), late.clone(), Some(1));
        leadership.set_payload("new").await.unwrap();
        let stored = store.get("leader").unwrap();
        assert_eq!(stored.payload.as_deref(), Some(&b"new"[..]), "{late:?}");
        assert!(
            leadership.safe_deadline() <= clock.now() + SAFE_FOR,
            "{late:?}"
        );
        clock.sleep(LEASE * 2).await;
        assert!(
            !leadership.is_lost(),
            "{late:?}: {:?}",
            leadership.lost_reason()
        );
        let stored = store.get("leader").unwrap();
        assert_eq!(stored.payload.as_deref(), Some(&b"new"[..]), "{late:?}");
        assert_eq!(stored.fencing_token, Some(term), "{late:?}");
        leadership.resign().await.unwrap();
        assert!(store.get("leader").unwrap().released, "{late:?}");
    }
}

/// Finding 1, on a healthy store: a holder that publishes its progress with
/// back-to-back payload changes (each write answered after 50 ms) holds the
/// lease's core lock nearly all the time, so the keeper's `try_lock` finds
/// it taken at each of its beats (`Beat::Skipped`, retried `L/24` later)
/// and its `signal_at` never moves: the lost signal fires 8.9 s after the
/// acquisition, although the changes renew the lease every 50 ms and the
/// store never failed.
#[tokio::test(start_paused = true)]
// Regression for finding 1 of the payload review (fixed).
async fn frequent_payload_changes_never_lose_a_healthy_lease() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(faulty.clone(), &clock, "a");
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::DelayResponse(Duration::from_millis(50)),
        None,
    );
    let start = clock.now();
    let mut leadership = a
        .election("leader")
        .with_payload("p")
        .campaign()
        .await
        .unwrap();
    let mut i = 0u32;
    let mut errors = Vec::new();
    while clock.now() - start < Duration::from_secs(15) && !leadership.is_lost() {
        if let Err(e) = leadership.set_payload(format!("progress {i}")).await {
            errors.push(e.to_string());
        }
        i += 1;
    }
    assert!(
        !leadership.is_lost(),
        "lost ({:?}) {:.2} s after the acquisition, after {i} payload changes \
         (errors: {errors:?}), with safe_deadline() {:.2} s ahead; keeper \
         heartbeats: {}",
        leadership.lost_reason(),
        secs(clock.now() - start),
        secs(
            leadership
                .safe_deadline()
                .saturating_duration_since(clock.now())
        ),
        a.metrics().heartbeats,
    );
    leadership.resign().await.unwrap();
}

/// A store that refuses (non-retryable `InvalidRequest`, nothing written)
/// any record whose payload is over `limit` bytes, as a backend with a
/// smaller item size than `MAX_PAYLOAD_BYTES` does (DynamoDB's 400 KB item
/// limit counts the queue and the other attributes too).
#[derive(Debug, Clone)]
struct RefusesLargePayloads<B>(B, usize);

#[lynk_core::async_trait]
impl<B: lynk_core::LockBackend> lynk_core::LockBackend for RefusesLargePayloads<B> {
    async fn read(
        &self,
        key: &str,
    ) -> Result<Option<lynk_core::LockRecord>, lynk_core::BackendError> {
        self.0.read(key).await
    }
    async fn write(
        &self,
        request: lynk_core::WriteRequest,
    ) -> Result<lynk_core::LockRecord, lynk_core::WriteError> {
        if request.payload.as_ref().is_some_and(|p| p.len() > self.1) {
            return Err(lynk_core::WriteError::Backend(
                lynk_core::BackendError::new(
                    BackendErrorKind::InvalidRequest,
                    "item size has exceeded the maximum allowed size",
                ),
            ));
        }
        self.0.write(request).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: &lynk_core::Version,
    ) -> Result<(), lynk_core::WriteError> {
        self.0.delete(key, expected).await
    }
    fn capabilities(&self) -> lynk_core::Capabilities {
        self.0.capabilities()
    }
}

/// Finding 3: a payload change the store *definitely refused* (a
/// non-retryable error: nothing was written, so no flip-flop is possible)
/// still becomes the payload of every later heartbeat
/// (`lease.replace_payload` runs before the first attempt, payload.rs, and
/// is never undone on `Step::Fatal`). The next heartbeat sends it, gets the
/// same refusal, and the keeper reports the lease lost
/// (`Beat::Lost(BackendFailed)`, keeper.rs `heartbeat`). The error returned
/// by `set_payload` says the opposite ("the lock is still held and its
/// heartbeats carry the new payload, so the store holds it after the next
/// heartbeat that succeeds"): none ever succeeds, and a leader that tried
/// to publish a payload its store cannot take abdicates within `L/3`.
#[tokio::test(start_paused = true)]
// Regression for finding 3 of the payload review (fixed).
async fn a_refused_payload_does_not_cost_the_lease() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(RefusesLargePayloads(store.clone(), 1_000), &clock, "a");
    let mut leadership = a
        .election("leader")
        .with_payload("10.0.0.1:80")
        .campaign()
        .await
        .unwrap();
    clock.sleep(Duration::from_secs(1)).await;
    let err = leadership
        .set_payload(vec![b'x'; 2_000])
        .await
        .expect_err("the store refuses it");
    assert!(!matches!(err, LockError::Lost { .. }), "{err}");
    assert!(!leadership.is_lost());
    clock.sleep(LEASE * 2).await;
    assert!(
        !leadership.is_lost(),
        "set_payload said {err}; then the lease was lost: {:?}",
        leadership.lost_reason()
    );
    assert_eq!(
        store.get("leader").unwrap().payload.as_deref(),
        Some(&b"10.0.0.1:80"[..])
    );
    leadership.resign().await.unwrap();
}
