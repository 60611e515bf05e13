//! A review of the counting semaphore (crates/lynk-core/src/semaphore/):
//! attempts to break its safety (more than N holders by their own
//! accounting, tokens, lost signals), its liveness (stuck waiters and
//! releases, the cross-process queue) and its interop with the mutex.
//!
//! Tests marked "Regression for finding N" each failed on the first
//! version of the semaphore: each was a bug, explained next to the test, and
//! fixed in `semaphore/core.rs` (the fix cites the finding). The others are
//! probes of the riskiest paths that held up, kept as regressions.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lynk_core::{
    async_trait, BackendError, BackendErrorKind, Capabilities, Clock, FencingToken, LockBackend,
    LockClient, LockError, LockRecord, LostReason, Version, WriteError, WriteRequest,
};
use lynk_testkit::{Fault, MemoryBackend, Op, RandomFaults, TestClock};

mod common;

const LEASE: Duration = Duration::from_secs(10);

fn client(backend: impl LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 11)
        .build()
        .expect("valid config")
}

fn table_record(key: &str, permits: u32, token: u64, lines: &str) -> LockRecord {
    LockRecord {
        key: key.to_owned(),
        version: Version::random(),
        lease_duration: LEASE,
        host: "someone".to_owned(),
        fencing_token: Some(FencingToken::new(token)),
        payload: Some(format!("lynk-semaphore 1\npermits {permits}\n{lines}").into()),
        released: lines.is_empty(),
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

fn lines(backend: &MemoryBackend, key: &str, kind: &str) -> Vec<String> {
    let Some(record) = backend.get(key) else {
        return Vec::new();
    };
    let Some(payload) = record.payload else {
        return Vec::new();
    };
    String::from_utf8(payload.to_vec())
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(kind))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// Finding 1 (high, safety contract): the lost signal can fire after the safe
// deadline when the store hangs.
//
// core.rs `call_deadline()` gives every read and write `now + call_timeout`
// (a quarter of the lease), never capped at the lost-signal instant of the
// permits held, and `expire()` (which fires the signal) only runs at the top
// of the task's loop, i.e. not while `read()`/`write()` are awaiting. With a
// 10 s lease and a store that stops answering: renewal at 3.3 s hangs until
// 5.8 s, a read/write from ~5.9 s hangs until ~8.4 s, the next call is sent
// at ~8.5 s and hangs until ~11 s; the signal (due at 8.9 s) fires only then,
// after the safe deadline (9.9 s). The mutex caps heartbeats at the signal
// instant ("A heartbeat is also never allowed past its lease's lost-signal
// instant", docs/concepts.md); the semaphore does not.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
// Regression for finding 1 of the review (fixed).
async fn lost_signal_fires_before_the_safe_deadline_when_the_store_hangs() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    let p = c.semaphore("jobs", 2).acquire().await.unwrap();
    let safe = p.safe_deadline();
    // The store stops answering anything (a half-open connection).
    faulty.inject(None, None, Fault::Stall, None);
    common::within(&clock, LEASE * 3, p.lost())
        .await
        .expect("the lost signal fires");
    let late = clock.now().saturating_duration_since(safe);
    assert!(
        clock.now() < safe,
        "the lost signal fired {late:?} after the permit's safe deadline: the holder could \
         not stop in time, another client may already hold the permit"
    );
}

// ---------------------------------------------------------------------------
// Finding 2 (medium, liveness): try_acquire never answers while the store is
// unreachable.
//
// core.rs `failed()` keeps every waiter for a retryable error (Unavailable,
// Throttled, OutcomeUnknown, and a read that timed out is Unavailable), and
// `next_step()` answers a try-only head only after a *successful* store
// answer (`self.answers > asked_at`). `Semaphore::try_acquire` has no
// deadline of its own (`ask(true, None)`). So while reads fail, the task
// retries with backoff for ever and `try_acquire().await` hangs, contrary to
// "try_acquire answers within one call timeout" (docs/concepts.md).
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
// Regression for finding 2 of the review (fixed).
async fn try_acquire_answers_while_the_store_is_down() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    faulty.inject(None, None, Fault::Stall, None);
    let limit = c.config().call_timeout_for(LEASE) * 2;
    let out = common::within(&clock, limit, c.semaphore("jobs", 2).try_acquire()).await;
    let out = out.unwrap_or_else(|| {
        panic!("try_acquire did not answer within {limit:?} while the store hangs")
    });
    assert!(out.is_err(), "the store never answered: {out:?}");
}

// ---------------------------------------------------------------------------
// Finding 3 (low-medium, API contract): release() of a permit that was lost
// returns Ok(()).
//
// When a permit passes its safe deadline, core.rs `expire()` removes it from
// `holders` (`past_safe` → `gone`); a permit taken over is removed in
// `observe()`. A later `Permit::release()` sends `Command::Release` for an id
// not in `holders`, and `on_command` answers `Ok(())` (core.rs, `None =>
// r.send(Ok(()))`). Permit::release documents "`Ok` means the store confirmed
// it; LockError::Lost means the permit had been lost before" — here nothing
// was confirmed and the permit was lost (its line is still in the store).
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
// Regression for finding 3 of the review (fixed).
async fn releasing_a_lost_permit_is_not_ok() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    let p = c.semaphore("jobs", 2).acquire().await.unwrap();
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    common::within(&clock, LEASE * 2, p.lost())
        .await
        .expect("lost");
    clock.advance(LEASE).await; // well past the safe deadline
    assert_eq!(
        lines(&backend, "jobs", "h ").len(),
        1,
        "its line is still stored"
    );
    let out = p.release().await;
    assert!(
        matches!(out, Err(LockError::Lost { .. })),
        "release of a lost, never-released permit answered {out:?}"
    );
}

// ---------------------------------------------------------------------------
// Finding 4 (medium): a claim resolved late is handed out although its lease
// is already over.
//
// A claiming write whose response is lost stays in `pending` with its send
// instant; if reads then fail for most of a lease, the read that finally
// shows the claimed line makes `observe()` (core.rs, "The head waiter's
// claim") build the permit with `valid_from = sent` and deliver it to the
// waiter without checking it is still within its lost-signal instant.
// `acquire()` then returns a permit whose safe deadline has already passed
// (and whose lost signal fires on the task's next turn). The mutex never
// hands out a resolved write past its lost-signal instant (docs/concepts.md,
// "Ambiguous outcomes"); it takes its record over afresh instead, which the
// semaphore could do by renewing the line before answering.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
// Regression for finding 4 of the review (fixed).
async fn a_late_resolved_claim_is_not_handed_out_expired() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    let sem = c.semaphore("jobs", 2);
    let t0 = clock.now();
    let got = Arc::new(Mutex::new(None));
    let task = {
        let got = got.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let p = sem.acquire().await.unwrap();
            // Checked the moment acquire returns.
            *got.lock().unwrap() = Some((clock.now(), p.safe_deadline(), p.is_lost()));
            p
        })
    };
    common::settle().await; // read, then the claim applied with its response lost
    assert_eq!(lines(&backend, "jobs", "h ").len(), 1, "the claim applied");
    faulty.inject(
        Some(Op::Read),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    clock.advance(LEASE).await;
    faulty.clear();
    let p = common::within(&clock, LEASE, task)
        .await
        .expect("acquire answers once reads work")
        .unwrap();
    let (at, safe, lost) = got.lock().unwrap().take().unwrap();
    assert!(
        !lost && at < safe,
        "acquire returned at {:?} a permit whose safe deadline was {:?} (lost: {lost})",
        at - t0,
        safe - t0
    );
    drop(p);
}

// ---------------------------------------------------------------------------
// Finding 5 (low): permit tokens repeat at u64::MAX.
//
// core.rs `plan()` computes the claim's token as
// `base.saturating_add(1)` and writes `TokenUpdate::Next`, which saturates
// too: once the record's token is u64::MAX every further permit gets
// u64::MAX. The mutex fails such an acquisition with
// `LockError::TokenExhausted` ("Tokens never wrap or repeat",
// docs/concepts.md); the semaphore hands out equal tokens, so a fenced
// resource cannot tell the permits apart.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
// Regression for finding 5 of the review (fixed).
async fn permit_tokens_never_repeat_at_the_top() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    backend.put_raw(table_record("jobs", 3, u64::MAX - 1, ""));
    let c = client(backend.clone(), &clock, "a");
    let sem = c.semaphore("jobs", 3);
    let p1 = sem.acquire().await.unwrap();
    assert_eq!(p1.fencing_token().get(), u64::MAX);
    match sem.acquire().await {
        Ok(p2) => assert!(
            p2.fencing_token() > p1.fencing_token(),
            "two permits share token {}",
            p2.fencing_token()
        ),
        Err(e) => assert!(matches!(e, LockError::TokenExhausted { .. }), "{e}"),
    }
}

// ---------------------------------------------------------------------------
// Finding 6 (medium, liveness/contract): a write the store client retried
// internally is not recognised as applied.
//
// The backend contract allows retrying the *same* request internally (the
// AWS SDK does): the first attempt applies, the retry fails its condition and
// returns the stored record, whose version is the request's own. core.rs
// `write()` handles `ConditionFailed` by removing the version from `pending`
// *before* `observe(current)`, so `observe` cannot match the line's beat to
// a pending write: a claim takes the "cannot happen; leave it to go stale"
// branch (`let Some(sent) = sent else { return; }`), the claimed line is
// orphaned, and the waiter claims again. With one permit it waits a whole
// lease × (1 + d) for its own orphan to go stale. docs/concepts.md: "When an
// attempt's condition fails and the stored record carries a version this
// client wrote, that earlier attempt applied ... Such an outcome is success".
// ---------------------------------------------------------------------------

/// Applies the next `n` writes, then sends each again, as a store client that
/// retries internally after a lost response: the caller sees the retry's
/// failed condition with the record its first attempt stored.
#[derive(Clone, Debug)]
struct RetriesInternally {
    inner: MemoryBackend,
    left: Arc<AtomicU64>,
}

#[async_trait]
impl LockBackend for RetriesInternally {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.inner.read(key).await
    }
    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        let retry = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let out = self.inner.write(request.clone()).await;
        if retry && out.is_ok() {
            return self.inner.write(request).await;
        }
        out
    }
    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.inner.delete(key, expected).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

#[tokio::test(start_paused = true)]
// Regression for finding 6 of the review (fixed).
async fn a_claim_retried_inside_the_store_client_is_ours() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let retrying = RetriesInternally {
        inner: backend.clone(),
        left: Arc::new(AtomicU64::new(1)),
    };
    let c = client(retrying, &clock, "a");
    let start = clock.now();
    let p = common::within(&clock, LEASE / 2, c.semaphore("jobs", 1).acquire())
        .await
        .unwrap_or_else(|| {
            panic!(
                "a free permit whose claim applied was not granted within {:?}: held lines {:?}",
                LEASE / 2,
                lines(&backend, "jobs", "h ")
            )
        })
        .unwrap();
    assert!(clock.now() - start < LEASE / 2);
    assert_eq!(lines(&backend, "jobs", "h ").len(), 1, "no orphan line");
    drop(p);
}

// ---------------------------------------------------------------------------
// Finding 7 (low-medium, cross-process FIFO): a client's `w` line keeps the
// lease of the waiter that created it, but is renewed at the pace of the
// current head waiter.
//
// core.rs `plan()`: the `w` line is created by `wait_line()` with the head
// waiter's lease; its renewal (`table.waiting[i].beat = beat`) changes only
// the beat, while the renewal is due at `renewed + heartbeat_every(head.lease)`
// of the *current* head. Handles of one name share the task, so when a
// short-lease waiter (which created the line) leaves and a long-lease waiter
// becomes head, the line is renewed every long/3 but others remove it once
// it stood still for short × (1 + d): the client is dropped from the queue
// and re-queues at the back, behind clients that arrived after it.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
// Regression for finding 7 of the review (fixed).
async fn a_queued_client_keeps_its_place_when_its_head_waiter_changes() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let h = client(backend.clone(), &clock, "h");
    let a = client(backend.clone(), &clock, "a");
    let b = client(backend.clone(), &clock, "b");
    let held = h.semaphore("jobs", 1).acquire().await.unwrap();

    // a queues first, through a short-lease handle that gives up soon...
    let short = a.semaphore("jobs", 1).with_lease(Duration::from_secs(2));
    let short_wait =
        tokio::spawn(async move { short.acquire_timeout(Duration::from_secs(1)).await });
    // ...while a long-lease handle of the same client waits behind it.
    let long = a.semaphore("jobs", 1).with_lease(Duration::from_secs(60));
    let a_wait = tokio::spawn(async move { long.acquire().await });
    common::settle().await;
    clock.advance(Duration::from_millis(100)).await;
    let b_sem = b.semaphore("jobs", 1);
    let b_wait = tokio::spawn(async move { b_sem.acquire().await });
    common::settle().await;
    clock.advance(Duration::from_secs(1)).await;
    assert!(
        short_wait.await.unwrap().is_err(),
        "the short waiter gave up"
    );
    let queued = |b: &MemoryBackend| {
        lines(b, "jobs", "w ")
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(queued(&backend), ["a", "b"], "a queued first");
    // a's long waiter is alive and waiting all along.
    for _ in 0..10 {
        clock.advance(Duration::from_secs(1)).await;
        assert_eq!(
            queued(&backend),
            ["a", "b"],
            "a, alive and waiting, lost its place in the queue"
        );
    }
    held.release().await.unwrap();
    let got = common::within(&clock, Duration::from_secs(5), a_wait)
        .await
        .expect("a, queued first, is served first")
        .unwrap()
        .unwrap();
    assert!(!b_wait.is_finished(), "b did not jump a");
    drop(got);
}

// ---------------------------------------------------------------------------
// Finding 8 (low, liveness): a claim that applied after its acquire gave up
// is orphaned: the next acquire of the same client waits a whole lease for
// its own line.
//
// When the head waiter leaves (acquire_timeout, a dropped future) while its
// claiming write is unanswered, `answer_waiters_without_store()` sets
// `self.claim = None`. The write's version and send instant stay in
// `pending`, but `observe()` only matches `pending` against `holders` and the
// current `claim`, so the claimed line (beat = that version) is treated as a
// stranger's line and removed only after standing still for lease × (1 + d).
// With one permit, the next acquire of the very same client waits a lease
// for a permit nobody holds. The mutex recognises such a record as its own
// on the next acquire (docs/concepts.md, "Ambiguous outcomes"); the
// semaphore could adopt the line for the new head (renewing it) or remove it
// at once.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
// Regression for finding 8 of the review (fixed).
async fn a_claim_applied_after_its_acquire_gave_up_is_not_left_to_go_stale() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    let sem = c.semaphore("jobs", 1);
    // The claim applies, then the connection hangs past the caller's wait.
    faulty.inject(Some(Op::Write), None, Fault::StallAfterApply, Some(1));
    let err = sem
        .acquire_timeout(Duration::from_secs(1))
        .await
        .expect_err("no answer in time");
    assert!(matches!(err, LockError::NotGranted { .. }), "{err}");
    assert_eq!(lines(&backend, "jobs", "h ").len(), 1, "the claim applied");
    let start = clock.now();
    let p = common::within(&clock, LEASE / 2, sem.acquire())
        .await
        .unwrap_or_else(|| {
            panic!(
                "the client waited more than {:?} for a permit only its own abandoned claim holds",
                LEASE / 2
            )
        })
        .unwrap();
    assert!(clock.now() - start < LEASE / 2);
    assert_eq!(lines(&backend, "jobs", "h ").len(), 1);
    drop(p);
}

// ---------------------------------------------------------------------------
// Probes that held up.
// ---------------------------------------------------------------------------

/// Tracks holders by their own accounting: a holder counts from acquire's
/// return until it releases or its lost signal fires (`run` drops the work).
#[derive(Clone, Default)]
struct Holders {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    tokens: Arc<Mutex<Vec<u64>>>,
}

struct Holding(Arc<AtomicUsize>);

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Holders {
    fn enter(&self, token: u64) -> Holding {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.tokens.lock().unwrap().push(token);
        Holding(self.now.clone())
    }
}

/// Three processes, two tasks each, N = 2, with responses lost, delayed
/// after applying, and failures, on every call: never more than two holders
/// by their own accounting, every token distinct, and everyone served.
#[tokio::test(start_paused = true)]
async fn at_most_n_holders_and_distinct_tokens_under_lost_and_delayed_responses() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let holders = Holders::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, host) in ["a", "b", "c"].into_iter().enumerate() {
        let faulty = common::faulty(backend.clone(), &clock).with_random(RandomFaults {
            seed: 7 + i as u64,
            fail_before: 0.05,
            lose_response: 0.1,
            delay: 0.05,
            delay_response: 0.1,
            stall: 0.0,
            max_delay: Duration::from_secs(2),
            ops: Vec::new(),
        });
        let c = client(faulty, &clock, host);
        for _ in 0..2 {
            let sem = c.semaphore("jobs", 2);
            let holders = holders.clone();
            let clock = clock.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let p = sem.acquire().await.unwrap();
                    let _ = p
                        .run(async {
                            let _h = holders.enter(p.fencing_token().get());
                            clock.sleep(Duration::from_secs(3)).await;
                        })
                        .await;
                    let _ = p.release().await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
    }
    for t in tasks {
        common::within(&clock, Duration::from_secs(600), t)
            .await
            .expect("every task is served five times")
            .unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 30);
    assert!(
        holders.max.load(Ordering::SeqCst) <= 2,
        "{} holders at once",
        holders.max.load(Ordering::SeqCst)
    );
    assert_eq!(
        holders.max.load(Ordering::SeqCst),
        2,
        "both permits were in use at once (the run did contend)"
    );
    let tokens = holders.tokens.lock().unwrap().clone();
    let distinct: HashSet<_> = tokens.iter().collect();
    assert_eq!(distinct.len(), tokens.len(), "a token repeated: {tokens:?}");
}

/// A holder on a slow clock that can no longer reach the store; a waiter on
/// a fast clock: the waiter removes the holder's line only after the
/// holder's safe deadline in real time, and the holder was told first.
#[tokio::test(start_paused = true)]
async fn a_fast_waiter_takes_a_partitioned_slow_holders_permit_only_after_its_safe_deadline() {
    let backend = MemoryBackend::new();
    let real = TestClock::new();
    let slow = TestClock::new().with_drift(0.99);
    let fast = TestClock::new().with_drift(1.01);
    let faulty = common::faulty(backend.clone(), &slow);
    let a = client(faulty.clone(), &slow, "a");
    let b = client(backend.clone(), &fast, "b");
    let p = a.semaphore("jobs", 1).acquire().await.unwrap();
    // b starts watching at once: its first sight is as early as can be.
    let b_sem = b.semaphore("jobs", 1);
    let b_wait = tokio::spawn(async move { b_sem.acquire().await });
    common::settle().await;
    faulty.inject(
        None,
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    let lost_at = Arc::new(Mutex::new(None));
    let watcher = {
        let lost_at = lost_at.clone();
        let real = real.clone();
        let lost = p.lost_token();
        tokio::spawn(async move {
            lost.cancelled().await;
            *lost_at.lock().unwrap() = Some(real.now());
        })
    };
    let q = common::within(&real, LEASE * 3, b_wait)
        .await
        .expect("b takes the abandoned permit")
        .unwrap()
        .unwrap();
    let taken = real.now();
    let safe_real = slow.to_real(p.safe_deadline());
    assert!(
        taken >= safe_real,
        "b took the permit {:?} before a's safe deadline",
        safe_real - taken
    );
    watcher.await.unwrap();
    let lost = lost_at.lock().unwrap().expect("a was told");
    assert!(lost < safe_real && lost <= taken);
    assert!(q.fencing_token() > p.fencing_token());
    assert!(matches!(
        p.lost_reason(),
        Some(LostReason::HeartbeatsFailed { .. })
    ));
}

/// A renewal whose response is lost, then a read showing it: validity runs
/// from that renewal's send, so the permit is renewed on time for many
/// leases with every other write's response lost.
#[tokio::test(start_paused = true)]
async fn renewals_with_every_other_response_lost_keep_the_permit() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    let p = c.semaphore("jobs", 1).acquire().await.unwrap();
    let other = client(backend.clone(), &clock, "b");
    let sem = other.semaphore("jobs", 1);
    let waiter = tokio::spawn(async move { sem.acquire().await });
    for _ in 0..20 {
        faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
        clock.advance(LEASE / 2).await;
        assert!(!p.is_lost(), "renewed");
        assert!(p.safe_deadline() > clock.now());
    }
    assert!(!waiter.is_finished(), "nobody took a renewed permit");
    assert_eq!(lines(&backend, "jobs", "h ").len(), 1);
    p.release().await.unwrap();
    let q = common::within(&clock, Duration::from_secs(5), waiter)
        .await
        .expect("the waiter gets it")
        .unwrap()
        .unwrap();
    drop(q);
}

/// A release whose response is lost is confirmed by the next read, and a
/// release with a local waiter hands the permit over in one write with a
/// higher token.
#[tokio::test(start_paused = true)]
async fn a_lost_release_response_is_confirmed_and_a_handover_raises_the_token() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(backend.clone(), &clock);
    let c = client(faulty.clone(), &clock, "a");
    let sem = c.semaphore("jobs", 1);
    let p = sem.acquire().await.unwrap();
    let t1 = p.fencing_token();
    let sem2 = sem.clone();
    let next = tokio::spawn(async move { sem2.acquire().await });
    common::settle().await;
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    p.release().await.expect("confirmed by a read");
    let q = common::within(&clock, Duration::from_secs(1), next)
        .await
        .expect("handed over")
        .unwrap()
        .unwrap();
    assert!(q.fencing_token() > t1);
    assert_eq!(lines(&backend, "jobs", "h ").len(), 1);
    q.release().await.unwrap();
    assert!(lines(&backend, "jobs", "h ").is_empty());
    assert!(
        lines(&backend, "jobs", "w ").is_empty(),
        "no queue line left"
    );
}

/// A waiter that gives up removes its `w` line; nobody is left queued.
#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_leaves_the_queue() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let h = client(backend.clone(), &clock, "h");
    let p = h.semaphore("jobs", 1).acquire().await.unwrap();
    let w = client(backend.clone(), &clock, "w");
    let err = w
        .semaphore("jobs", 1)
        .acquire_timeout(Duration::from_secs(3))
        .await
        .expect_err("held");
    assert!(matches!(err, LockError::NotGranted { .. }), "{err}");
    clock.advance(Duration::from_secs(2)).await;
    assert!(
        lines(&backend, "jobs", "w ").is_empty(),
        "{:?}",
        lines(&backend, "jobs", "w ")
    );
    drop(p);
}

/// A try_acquire on a free permit from a client whose cached copy of the
/// record is stale (another client wrote since) costs two requests: the
/// failed write returns the current record, and the second write claims.
#[tokio::test(start_paused = true)]
async fn try_acquire_with_a_stale_copy_costs_two_requests() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let counted = lynk_testkit::CountingBackend::new(backend.clone());
    let a = client(counted.clone(), &clock, "a");
    let sem = a.semaphore("jobs", 3);
    let mine = sem.acquire().await.unwrap();
    let b = client(backend.clone(), &clock, "b");
    let theirs = b.semaphore("jobs", 3).acquire().await.unwrap();
    let before = counted.counts();
    let p = sem.try_acquire().await.unwrap().expect("a permit is free");
    let cost = counted.counts().since(before).total();
    assert!(cost <= 2, "try_acquire cost {cost} requests");
    assert!(p.fencing_token() > theirs.fencing_token());
    drop((mine, theirs, p));
}

/// A mutex waiting on a semaphore's name gets the lock soon after the last
/// permit is released, and its token continues above the permits'.
#[tokio::test(start_paused = true)]
async fn a_mutex_waiting_behind_permits_gets_the_lock_after_their_release() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let sem = a.semaphore("shared", 2);
    let p1 = sem.acquire().await.unwrap();
    let p2 = sem.acquire().await.unwrap();
    let top = p2.fencing_token();
    let b = client(backend.clone(), &clock, "b");
    let lock = b.create_lock("shared");
    let waiting = tokio::spawn(async move { lock.acquire().await });
    clock.advance(LEASE * 3).await;
    assert!(!waiting.is_finished(), "permits are renewed");
    p1.release().await.unwrap();
    clock.advance(LEASE).await;
    assert!(!waiting.is_finished(), "one permit is still held");
    p2.release().await.unwrap();
    let g = common::within(&clock, Duration::from_secs(5), waiting)
        .await
        .expect("the mutex gets the released record")
        .unwrap()
        .unwrap();
    assert!(g.fencing_token() > top);
    // And the semaphore waits for the mutex in turn.
    let err = sem.try_acquire().await.expect("answers");
    assert!(err.is_none(), "a held mutex is not a free permit");
    g.release().await.unwrap();
}

/// A foreign record (a crashed mutex holder, never released) is taken over
/// only after it stood still for its own lease × (1 + d), measured from the
/// semaphore's first sight of it.
#[tokio::test(start_paused = true)]
async fn a_crashed_mutex_holders_record_is_taken_only_after_its_lease() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let long = Duration::from_secs(30);
    backend.put_raw(common::record("shared", "crashed", long, 9, false));
    let c = client(backend.clone(), &clock, "a");
    let after = c.config().takeover_after(long).unwrap();
    let start = clock.now();
    let p = c.semaphore("shared", 2).acquire().await.unwrap();
    assert!(
        clock.now() - start >= after,
        "took it after {:?}",
        clock.now() - start
    );
    assert_eq!(p.fencing_token().get(), 10);
}

/// Shutdown releases permits (their lost signal fires with ClientShutDown),
/// fails waiters, removes the queue line and answers.
#[tokio::test(start_paused = true)]
async fn shutdown_releases_permits_and_leaves_no_queue_line() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let h = client(backend.clone(), &clock, "h");
    let held = h.semaphore("jobs", 1).acquire().await.unwrap();
    let c = client(backend.clone(), &clock, "c");
    let mine = c.semaphore("other", 1).acquire().await.unwrap();
    let sem = c.semaphore("jobs", 1);
    let waiting = tokio::spawn(async move { sem.acquire().await });
    clock.advance(Duration::from_secs(2)).await;
    assert_eq!(lines(&backend, "jobs", "w ").len(), 1, "c is queued");
    common::within(&clock, Duration::from_secs(15), c.shutdown())
        .await
        .expect("shutdown answers");
    assert!(matches!(waiting.await.unwrap(), Err(LockError::ShutDown)));
    assert_eq!(mine.lost_reason(), Some(LostReason::ClientShutDown));
    assert!(lines(&backend, "other", "h ").is_empty(), "released");
    assert!(lines(&backend, "jobs", "w ").is_empty(), "dequeued");
    drop(held);
}
