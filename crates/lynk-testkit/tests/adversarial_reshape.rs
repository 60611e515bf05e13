//! Adversarial review of the engine reshape (issue 11: `lynk-core/src/engine/`,
//! `LeaseHandle`, `LockGuard::record_version` / `detach`,
//! `LockClient::release_version`), against the engine before it (3bc26b5).
//!
//! Tests named `finding_*` fail on the reshaped engine; each says what the
//! engine before the reshape did. The `held_*` tests are attacks the reshaped
//! engine held, kept as regression guards.
//!
//! Run: `cargo test -p lynk-testkit --test adversarial_reshape`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lynk_core::{
    async_trait, BackendError, BackendErrorKind, Capabilities, ClientConfig, FencingToken,
    LockBackend, LockClient, LockError, LockRecord, Version, WriteError, WriteRequest,
};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

mod common;
use common::{faulty, settle, within};

const L: Duration = Duration::from_secs(20);
const SEED: u64 = 23;

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
        default_lease: L,
        jitter_seed: Some(SEED),
        ..config
    };
    common::builder(b, clock, host, L, SEED)
        .config(config)
        .build()
        .unwrap()
}

/// Lets time pass in 1 ms steps until `faulty` has injected `n` faults.
async fn until_injected<B: LockBackend>(clock: &TestClock, f: &FaultyBackend<B>, n: u64) {
    for _ in 0..100_000 {
        if f.injected() >= n {
            settle().await;
            return;
        }
        clock.advance(Duration::from_millis(1)).await;
    }
    panic!("only {} of {n} faults were injected", f.injected());
}

/// A store that never returns the stored record with a failed condition (as
/// a backend without `returns_current_on_conflict`), and whose next reads can
/// be made to fail with a chosen kind.
#[derive(Clone, Debug)]
struct Recordless<B> {
    inner: B,
    failing_reads: Arc<Mutex<Vec<BackendErrorKind>>>,
}

impl<B> Recordless<B> {
    fn new(inner: B) -> Self {
        Recordless {
            inner,
            failing_reads: Arc::default(),
        }
    }

    fn fail_next_read(&self, kind: BackendErrorKind) {
        self.failing_reads.lock().unwrap().push(kind);
    }
}

#[async_trait]
impl<B: LockBackend> LockBackend for Recordless<B> {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        let fail = self.failing_reads.lock().unwrap().pop();
        if let Some(kind) = fail {
            return Err(BackendError::new(
                kind,
                format!("injected read fault: {kind}"),
            ));
        }
        self.inner.read(key).await
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.inner.write(request).await.map_err(|e| match e {
            WriteError::ConditionFailed { .. } => WriteError::ConditionFailed { current: None },
            e => e,
        })
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.inner.delete(key, expected).await.map_err(|e| match e {
            WriteError::ConditionFailed { .. } => WriteError::ConditionFailed { current: None },
            e => e,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::minimal()
    }
}

// ---------------------------------------------------------------------------
// Findings (these fail on the reshaped engine)
// ---------------------------------------------------------------------------

/// FINDING 1. A heartbeat applies but its response is lost; the store then
/// fails the next 70 heartbeats before they reach it (a one-minute outage,
/// well inside a 10-minute lease's lost-signal window at the default
/// backoff). When the store answers again, the next heartbeat's condition
/// fails over the record of that first heartbeat: this client's own write.
///
/// Before the reshape `LeaseCore::pending` was an unbounded `Vec`: the
/// heartbeat was adopted and the lease renewed. Now `pending` is an
/// `OwnWrites`, which keeps only the newest 64; the applied heartbeat has been
/// forgotten, the keeper takes the client's own record for another holder's
/// (`LostReason::Stolen { by: Some(<this host>) }`), fires the lost signal
/// although nobody else can hold the lock, and the guard's release then finds
/// "another holder" (itself) and leaves the record to expire: the name is
/// stranded for a whole lease.
#[tokio::test(start_paused = true)]
async fn finding_an_applied_heartbeat_is_adopted_after_many_failed_retries() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let lease = Duration::from_secs(600);
    let g = c
        .create_lock("x")
        .with_lease(lease)
        .acquire()
        .await
        .unwrap();
    f.inject(Some(Op::Write), Some("x"), Fault::LoseResponse, Some(1));
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        Some(70),
    );
    // First heartbeat at 200 s; 70 retries at <= 1.2 s each; then one more.
    clock.advance(Duration::from_secs(200 + 120)).await;
    assert_eq!(f.injected(), 71, "every scripted fault hit a heartbeat");
    assert!(
        !g.is_lost(),
        "the client's own applied heartbeat was taken for another holder: {:?}",
        g.lost_reason()
    );
    let stored = mem.get("x").unwrap();
    assert_eq!(stored.host, "a");
    g.release().await.unwrap();
    assert!(mem.get("x").unwrap().released);
}

/// FINDING 2. The same bound on a handover: the release's first attempt
/// hands the lock to the local waiter (applied, response lost), the next 70
/// attempts fail before reaching the store, and the 72nd finds the waiter's
/// record, written by that first attempt.
///
/// Before the reshape the release's own attempts (`mine`) were an unbounded
/// `Vec`: the handover was recognised, the waiter got the lock at once and
/// `release()` was `Ok`. Now `mine` keeps the newest 64 only: `release()`
/// says `OutcomeUnknown` ("the lock is now held by a" -- itself), and the
/// waiter, requeued with a seed that no longer holds that version, waits a
/// full takeover (`L × (1 + d)`) for a record its own client wrote for it.
#[tokio::test(start_paused = true)]
async fn finding_a_handover_is_recognised_after_many_failed_retries() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let config = ClientConfig {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
        ..ClientConfig::default()
    };
    let c = client_with(f.clone(), &clock, "a", config);
    let g = c.create_lock("x").acquire().await.unwrap();
    let t1 = g.fencing_token();
    let lock = c.create_lock("x");
    let waiter = tokio::spawn(async move { lock.acquire().await });
    settle().await;
    f.inject(Some(Op::Write), Some("x"), Fault::LoseResponse, Some(1));
    f.inject(
        Some(Op::Write),
        Some("x"),
        Fault::FailBefore(BackendErrorKind::Unavailable),
        Some(70),
    );
    let released = g.release().await;
    assert!(
        released.is_ok(),
        "the handover applied, by this very release: {released:?}"
    );
    let w = within(&clock, Duration::from_secs(1), waiter)
        .await
        .expect("the waiter was handed the lock by the release, not left to take it over")
        .unwrap()
        .unwrap();
    assert!(w.fencing_token() > t1);
    w.release().await.unwrap();
}

/// FINDING 3. A heartbeat applies but its response is lost; its retry's
/// condition fails over a store that does not return the record, and the
/// read that should resolve it fails once with `AccessDenied` (e.g. an
/// expired session token, refreshed a moment later).
///
/// Before the reshape any failure of that read was retried
/// (`Beat::Retry`), the next heartbeat found the first one's record and
/// adopted it: the lease was never lost. Now the read's error goes through
/// `after_conflict`, and a non-retryable kind ends the lease at once with
/// `LostReason::BackendFailed`, although the record is still this lease's.
#[tokio::test(start_paused = true)]
async fn finding_a_failed_read_after_a_heartbeat_conflict_is_retried() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let recordless = Recordless::new(mem.clone());
    let f = faulty(recordless.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    f.inject(Some(Op::Write), Some("x"), Fault::LoseResponse, Some(1));
    recordless.fail_next_read(BackendErrorKind::AccessDenied);
    // Heartbeat at L/3 applies (response lost); its retry conflicts, the
    // resolving read is denied once; the next retry resolves it.
    clock.advance(L / 3 + Duration::from_secs(1)).await;
    assert_eq!(f.injected(), 1);
    assert!(
        !g.is_lost(),
        "a lease whose record is still its own was given up: {:?}",
        g.lost_reason()
    );
    g.release().await.unwrap();
    assert!(mem.get("x").unwrap().released);
}

/// FINDING 4. `MetricsSnapshot::polls` ("reads a waiter sent while the lock
/// was held"). An acquire whose first write fails its condition on a store
/// that does not return the record reads it. Before the reshape that read
/// was counted as a poll; now `after_conflict` reads without counting, so on
/// such stores (`returns_current_on_conflict == false`) the poll count is
/// short by one per failed acquisition write.
#[tokio::test(start_paused = true)]
async fn finding_the_read_after_a_recordless_conflict_is_a_poll() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    mem.put_raw(LockRecord {
        key: "x".into(),
        version: Version::random(),
        lease_duration: L,
        host: "b".into(),
        fencing_token: Some(FencingToken::new(5)),
        payload: None,
        released: false,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    });
    let c = client(Recordless::new(mem.clone()), &clock, "a");
    let reads_before = mem.counts().reads;
    let r = c
        .create_lock("x")
        .acquire_timeout(Duration::from_millis(100))
        .await;
    assert!(matches!(r, Err(LockError::NotGranted { .. })), "{r:?}");
    assert_eq!(mem.counts().reads - reads_before, 1, "one read was sent");
    assert_eq!(c.metrics().polls, 1, "and it is not counted as a poll");
}

/// FINDING 5 (new API). `record_version` says it returns "the version the
/// store holds for this lease, as far as this client knows", to release a
/// detached lock later. A heartbeat applied but its response was lost; its
/// retry is 25 ms away. `record_version` returns the version before that
/// heartbeat (the one still in `LeaseCore::version`, with the applied one in
/// `pending`), `detach` then stops the retry that would have resolved it, and
/// `release_version` with the returned version fails: nobody can release the
/// detached lock by its version, and it stays held for a whole lease.
/// Suggested fix: `record_version` (or `detach`) resolves `pending` first
/// (one read; adopt a pending version the store holds), or `detach` returns
/// the resolved version.
#[tokio::test(start_paused = true)]
async fn finding_record_version_after_an_unresolved_heartbeat_releases_the_detached_lock() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let f = faulty(mem.clone(), &clock);
    let c = client(f.clone(), &clock, "a");
    let g = c.create_lock("x").acquire().await.unwrap();
    f.inject(Some(Op::Write), Some("x"), Fault::LoseResponse, Some(1));
    clock.advance(L / 3 - Duration::from_millis(5)).await;
    until_injected(&clock, &f, 1).await;
    let version = g.record_version().await;
    g.detach();
    let released = c.release_version("x", &version).await;
    assert!(
        released.is_ok(),
        "the version record_version gave cannot release the detached lock: {released:?} (store holds {:?})",
        mem.get("x").map(|r| r.version)
    );
}
