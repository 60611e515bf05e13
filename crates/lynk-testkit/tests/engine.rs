//! The lock engine on the controllable clock: every timing claim checked to
//! the instant, with tokio's paused time.

use std::time::Duration;

use lynk_core::{
    BackendErrorKind, Clock, LockClient, LockError, LockRecord, LostReason, ReleaseMode, Version,
};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};

const LEASE: Duration = Duration::from_secs(10);

mod common;

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 7)
        .build()
        .expect("valid config")
}

/// A record left by a holder that crashed: never heartbeated, never released.
fn abandoned(key: &str, lease: Duration) -> LockRecord {
    LockRecord {
        key: key.to_owned(),
        version: Version::random(),
        lease_duration: lease,
        host: "crashed-host".to_owned(),
        fencing_token: Some(lynk_core::FencingToken::new(41)),
        payload: None,
        released: false,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

#[tokio::test(start_paused = true)]
async fn takeover_after_abandoned_lease_and_not_a_moment_before() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "waiter");
    let stale = abandoned("job", LEASE);
    backend.put_raw(stale.clone());
    let takeover_after = c
        .config()
        .takeover_after(LEASE)
        .expect("a 10 s lease is representable");
    assert_eq!(
        takeover_after,
        Duration::from_millis(10_100),
        "lease × (1 + 1% drift)"
    );

    // Waiting one millisecond less than the takeover time is not enough.
    let start = clock.now();
    let err = c
        .create_lock("job")
        .acquire_timeout(takeover_after - Duration::from_millis(1))
        .await
        .expect_err("must not take over early");
    assert!(
        matches!(err, LockError::NotGranted { ref holder, .. } if holder.as_deref() == Some("crashed-host")),
        "{err}"
    );
    // The holder's fields are untouched; the waiter queued (a queue write
    // keeps the version), and its acquirer stays queued for the process.
    let now = backend.get("job").expect("record kept");
    assert_eq!(
        (
            &now.version,
            now.fencing_token,
            &now.host,
            now.released,
            &now.granted_to
        ),
        (
            &stale.version,
            stale.fencing_token,
            &stale.host,
            false,
            &None
        ),
        "holder's fields untouched"
    );
    let hosts: Vec<_> = now.queue.entries.iter().map(|e| e.host.as_str()).collect();
    assert_eq!(hosts, ["waiter"], "the waiter queued once");

    // The next waiter of this process joins the same observation and takes
    // over exactly on time, counted from the first sight of the version.
    let guard = c.create_lock("job").acquire().await.expect("takeover");
    assert_eq!(
        clock.now() - start,
        takeover_after,
        "takeover at lease × (1 + drift), not earlier, not later"
    );
    assert_eq!(
        guard.fencing_token().get(),
        42,
        "takeover continues the token"
    );
    assert_eq!(c.metrics().takeovers, 1);
    let held = backend.get("job").expect("record");
    assert!(
        held.queue.is_empty(),
        "the takeover took the waiter out of the queue: {:?}",
        held.queue
    );
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_live_holder_is_never_taken_over() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let holder = client(backend.clone(), &clock, "holder");
    let waiter = client(backend.clone(), &clock, "waiter");
    let guard = holder.create_lock("job").acquire().await.unwrap();
    // Four more waiters of the same process queue locally: still one poller.
    let queued: Vec<_> = (0..4)
        .map(|_| {
            let lock = waiter.create_lock("job");
            tokio::spawn(async move { lock.acquire_timeout(LEASE * 5).await.map(drop) })
        })
        .collect();
    let err = waiter
        .create_lock("job")
        .acquire_timeout(LEASE * 5)
        .await
        .expect_err("heartbeats keep the lock");
    assert!(matches!(err, LockError::NotGranted { .. }));
    assert!(!guard.is_lost());
    assert!(
        holder.metrics().heartbeats >= 14,
        "heartbeats every lease/3: {:?}",
        holder.metrics()
    );
    // One waiting client costs one read per poll interval (1.5 s by default,
    // +0-20% jitter) after four quick polls (0.1, 0.2, 0.4, 0.8 s apart).
    let polls = waiter.metrics().polls;
    assert!(
        (4 + 27..=4 + 33).contains(&polls),
        "{polls} polls in 50 s, for five local waiters"
    );
    for q in queued {
        assert!(matches!(
            q.await.unwrap(),
            Err(LockError::NotGranted { .. })
        ));
    }
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn clean_release_is_free_at_once_but_an_abandoned_lock_waits_out_the_lock_delay() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let delay = Duration::from_secs(5);
    let c = LockClient::builder(backend.clone())
        .clock(clock.clone())
        .default_lease(LEASE)
        .lock_delay(delay)
        .build()
        .unwrap();
    // Abandoned: lease × (1 + drift) + lock delay.
    backend.put_raw(abandoned("job", LEASE));
    let start = clock.now();
    let guard = c.create_lock("job").acquire().await.unwrap();
    assert_eq!(clock.now() - start, Duration::from_millis(10_100) + delay);
    guard.release().await.unwrap();
    // Released cleanly by another client: free immediately, one write.
    let other = client(backend.clone(), &clock, "other");
    let before = backend.counts();
    let start = clock.now();
    let guard = other.create_lock("job").acquire().await.unwrap();
    assert_eq!(clock.now(), start, "no waiting after a clean release");
    assert_eq!(
        backend.counts().since(before).total(),
        1,
        "one request per uncontended acquire"
    );
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn lost_signal_fires_before_the_safe_deadline_when_heartbeats_fail() {
    let clock = TestClock::new();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let c = client(faulty.clone(), &clock, "holder");
    let guard = c.create_lock("job").acquire().await.unwrap();
    let safe = guard.safe_deadline();
    assert_eq!(
        safe - clock.now(),
        Duration::from_millis(9_900),
        "safe deadline = lease × (1 − drift)"
    );
    faulty.inject(
        Some(Op::Write),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    guard.lost().await;
    let fired = clock.now();
    assert!(
        fired < safe,
        "lost signal at {:?} must precede the safe deadline",
        safe - fired
    );
    assert_eq!(
        safe - fired,
        Duration::from_secs(1),
        "fired lease × margin (10%) before the safe deadline"
    );
    assert!(
        matches!(
            guard.lost_reason(),
            Some(LostReason::HeartbeatsFailed {
                last_error: Some(_)
            })
        ),
        "{:?}",
        guard.lost_reason()
    );
    assert!(
        c.metrics().heartbeat_failures >= 2,
        "failed heartbeats were retried: {:?}",
        c.metrics()
    );
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
}

#[tokio::test(start_paused = true)]
async fn lost_signal_fires_before_the_safe_deadline_when_heartbeats_stall() {
    let clock = TestClock::new();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let c = client(faulty.clone(), &clock, "holder");
    let guard = c.create_lock("job").acquire().await.unwrap();
    // Let one heartbeat succeed, then every write hangs forever.
    clock.advance(LEASE / 2).await;
    let safe = guard.safe_deadline();
    assert!(c.metrics().heartbeats >= 1);
    faulty.inject(Some(Op::Write), None, Fault::Stall, None);
    let worked = guard.run(std::future::pending::<()>()).await;
    // Each hung heartbeat is given up after its call timeout, so the signal
    // names the silence rather than nothing at all.
    assert!(
        matches!(
            worked,
            Err(LockError::Lost {
                reason: LostReason::HeartbeatsFailed { last_error: Some(ref e) },
                ..
            }) if e.message().contains("did not answer")
        ),
        "{worked:?}"
    );
    assert!(
        c.metrics().heartbeat_failures >= 2,
        "a hung heartbeat does not block the next one"
    );
    assert!(clock.now() < safe, "fired before the safe deadline");
    assert_eq!(safe - clock.now(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_stolen_lock_is_signalled_at_the_next_heartbeat() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "holder");
    let guard = c.create_lock("job").acquire().await.unwrap();
    backend.put_raw(abandoned("job", LEASE)); // an operator (or a rogue client) overwrote it
    let start = clock.now();
    guard.lost().await;
    assert!(
        clock.now() - start <= c.config().heartbeat_every(LEASE) + Duration::from_millis(1),
        "lost after {:?}",
        clock.now() - start
    );
    assert_eq!(
        guard.lost_reason(),
        Some(LostReason::Stolen {
            by: Some("crashed-host".into())
        })
    );
}

#[tokio::test(start_paused = true)]
async fn fencing_tokens_strictly_increase_across_release_takeover_rewrite_and_deletion() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let keep = client(backend.clone(), &clock, "keep");
    let delete = LockClient::builder(backend.clone())
        .clock(clock.clone())
        .default_lease(LEASE)
        .release_mode(ReleaseMode::Delete)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for round in 0..3 {
        // acquire + release, keeping the record
        let g = keep.create_lock("job").acquire().await.unwrap();
        tokens.push(g.fencing_token());
        g.release().await.unwrap();
        // takeover of a crashed holder's lease
        let g = keep.create_lock("job").acquire().await.unwrap();
        tokens.push(g.fencing_token());
        let crashed = backend.get("job").unwrap();
        g.release().await.unwrap();
        backend.put_raw(crashed); // as if the holder had crashed instead of releasing
        let g = delete.create_lock("job").acquire().await.unwrap();
        tokens.push(g.fencing_token());
        // delete-on-release: the record vanishes
        g.release().await.unwrap();
        assert!(backend.get("job").is_none());
        clock.advance(Duration::from_millis(3)).await;
        let g = delete.create_lock("job").acquire().await.unwrap();
        tokens.push(g.fencing_token());
        // the original Python client rewrites the record without a token
        g.release().await.unwrap();
        let mut python = abandoned("job", Duration::from_secs(1));
        python.fencing_token = None;
        python.host = format!("python-{round}");
        backend.put_raw(python);
        clock.advance(Duration::from_secs(2)).await;
        let g = keep.create_lock("job").acquire().await.unwrap();
        tokens.push(g.fencing_token());
        g.release().await.unwrap();
        // a TTL deletion of the released record
        backend.remove_raw("job");
        clock.advance(Duration::from_millis(1)).await;
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens must strictly increase: {tokens:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_response_on_acquire_is_resolved_as_held() {
    let clock = TestClock::new();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let c = client(faulty.clone(), &clock, "me");
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    let start = clock.now();
    let guard = c.create_lock("job").acquire().await.expect("resolved");
    assert!(
        clock.now() - start < Duration::from_secs(1),
        "no lease-long wait for our own record"
    );
    assert_eq!(c.metrics().ambiguous_resolved, 1);
    let stored = faulty.inner().get("job").unwrap();
    assert_eq!(stored.host, "me");
    assert_eq!(
        stored.fencing_token,
        Some(guard.fencing_token()),
        "the applied attempt's token, not a second increment"
    );
    // Heartbeat and release responses lost too: still consistent.
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    clock.advance(LEASE).await;
    assert!(!guard.is_lost());
    assert_eq!(c.metrics().ambiguous_resolved, 2, "{:?}", c.metrics());
    faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1));
    guard.release().await.expect("release resolved");
    assert!(faulty.inner().get("job").unwrap().released);
}
