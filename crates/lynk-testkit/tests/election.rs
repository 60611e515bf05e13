//! Leader election on the controllable clock: terms, resignation and
//! failover bounds, payload replacement without losing leadership, and the
//! leader observers' cost and view.

use std::time::Duration;

use futures::StreamExt;
use lynk_core::{
    BackendErrorKind, Clock, Leader, LeaderStream, LeaderWatch, LockClient, LockError,
};
use lynk_testkit::{CountingBackend, Fault, MemoryBackend, Op, TestClock};

mod common;
use common::settle;

const LEASE: Duration = Duration::from_secs(10);
/// The steady poll interval for a 10 s lease (the default 1.5 s) with its
/// jitter of up to 20 %.
const POLL: Duration = Duration::from_millis(1_500);
const POLL_JITTERED: Duration = Duration::from_millis(1_800);
/// `lease × (1 + d)` with the default drift allowance of 1 %.
const STALE_AFTER: Duration = Duration::from_millis(10_100);

fn client(backend: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(backend, clock, host, LEASE, 11)
        .build()
        .expect("valid config")
}

/// The next change `watch` reports, within a minute (a broken observer fails
/// the test instead of polling forever on the paused clock).
async fn change(clock: &TestClock, watch: &mut LeaderWatch) -> Result<Option<Leader>, LockError> {
    common::within(clock, Duration::from_secs(60), watch.changed())
        .await
        .expect("no change reported within a minute")
}

/// The next item of `stream`, within a minute.
async fn next(
    clock: &TestClock,
    stream: &mut LeaderStream,
) -> Option<Result<Option<Leader>, LockError>> {
    common::within(clock, Duration::from_secs(60), stream.next())
        .await
        .expect("no item within a minute")
}

/// Waits on `clock` until `task` finishes, checking every 10 ms; returns how
/// long that took.
async fn finish_time<T>(clock: &TestClock, task: &tokio::task::JoinHandle<T>) -> Duration {
    let start = clock.now();
    while !task.is_finished() {
        clock.sleep(Duration::from_millis(10)).await;
        assert!(clock.now() - start < LEASE * 10, "never finished");
    }
    clock.now() - start
}

#[tokio::test(start_paused = true)]
async fn terms_increase_across_leaders_and_the_payload_is_stored() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let b = client(backend.clone(), &clock, "b");
    let mut last = None;
    for round in 0..3 {
        for (c, addr) in [(&a, "10.0.0.1:80"), (&b, "10.0.0.2:80")] {
            let leadership = c
                .election("leader")
                .with_payload(addr)
                .campaign()
                .await
                .unwrap();
            let term = leadership.term();
            assert!(
                last.is_none_or(|l| term > l),
                "round {round}: {term} after {last:?}"
            );
            last = Some(term);
            let stored = backend.get("leader").unwrap();
            assert_eq!(
                stored.fencing_token,
                Some(term),
                "the term is the fencing token"
            );
            assert_eq!(stored.payload.as_deref(), Some(addr.as_bytes()));
            assert_eq!(leadership.payload().map(|p| &p[..]), Some(addr.as_bytes()));
            assert_eq!(leadership.watch().fencing_token(), term);
            clock.sleep(LEASE).await; // heartbeats do not change the term
            assert_eq!(backend.get("leader").unwrap().fencing_token, Some(term));
            leadership.resign().await.unwrap();
            assert!(backend.get("leader").unwrap().released);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn try_campaign_and_campaign_timeout_behind_a_leader() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let b = client(backend.clone(), &clock, "b");
    let leader = a.election("leader").campaign().await.unwrap();
    assert!(b.election("leader").try_campaign().await.unwrap().is_none());
    let err = b
        .election("leader")
        .campaign_timeout(Duration::from_secs(30))
        .await
        .expect_err("a live leader keeps leading");
    assert!(
        matches!(err, LockError::NotGranted { ref holder, .. } if holder.as_deref() == Some("a")),
        "{err}"
    );
    assert!(!leader.is_lost());
    leader.resign().await.unwrap();
    let next = b
        .election("leader")
        .try_campaign()
        .await
        .unwrap()
        .expect("free");
    assert_eq!(next.name(), "leader");
    next.resign().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn resign_hands_over_to_a_local_candidate_at_once() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let clock = TestClock::new();
    let c = client(backend.clone(), &clock, "node");
    let first = c
        .election("leader")
        .with_payload("first")
        .campaign()
        .await
        .unwrap();
    let second = {
        let election = c.election("leader").with_payload("second");
        tokio::spawn(async move { election.campaign().await })
    };
    clock.sleep(Duration::from_secs(30)).await;
    assert!(!second.is_finished(), "one leader at a time");
    let before = backend.counts();
    let t0 = clock.now();
    first.resign().await.unwrap();
    let next = second.await.unwrap().unwrap();
    assert_eq!(clock.now(), t0, "at once: no poll, no waiting");
    let cost = backend.counts().since(before);
    assert_eq!(cost.total(), 1, "one write hands over: {cost:?}");
    assert_eq!(next.payload().map(|p| &p[..]), Some(&b"second"[..]));
    assert_eq!(
        backend.inner().get("leader").unwrap().payload.as_deref(),
        Some(&b"second"[..])
    );
    next.resign().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn resign_is_taken_by_a_remote_candidate_within_one_poll() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let b = client(backend.clone(), &clock, "b");
    let first = a.election("leader").campaign().await.unwrap();
    let term = first.term();
    let candidate = {
        let election = b.election("leader");
        tokio::spawn(async move { election.campaign().await })
    };
    // Long enough for the candidate's quick polls to be over: it polls at
    // the steady interval, and it is queued in the record.
    clock.sleep(Duration::from_secs(30)).await;
    let queued = backend.get("leader").unwrap().queue.entries;
    assert_eq!(queued.len(), 1, "the remote candidate queued: {queued:?}");
    first.resign().await.unwrap();
    let took = finish_time(&clock, &candidate).await;
    let next = candidate.await.unwrap().unwrap();
    eprintln!("a remote candidate led {took:?} after the resignation");
    assert!(took <= POLL_JITTERED, "within one poll: {took:?}");
    assert!(next.term() > term);
    next.resign().await.unwrap();
}

/// A leader that stops heartbeating (it crashed, or it is paused) without
/// resigning: a candidate of another process takes over within
/// `lease × (1 + d)` plus one poll of the last heartbeat, with a higher
/// term; and not before `lease × (1 + d)` after it.
#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_within_lease_times_one_plus_drift_plus_one_poll() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let b = client(backend.clone(), &clock, "b");
    let leadership = a.election("leader").campaign().await.unwrap();
    let term = leadership.term();
    let candidate = {
        let election = b.election("leader").with_payload("b:80");
        tokio::spawn(async move { election.campaign().await })
    };
    clock.sleep(Duration::from_secs(25)).await;
    assert!(!candidate.is_finished());
    // The crash: heartbeats stop, nothing is released. The last heartbeat
    // was at most lease/3 ago.
    let last_beat = backend.get("leader").unwrap().version;
    leadership.into_guard().detach();
    let took = finish_time(&clock, &candidate).await;
    let next = candidate.await.unwrap().unwrap();
    eprintln!("a remote candidate led {took:?} after the leader crashed");
    assert!(
        took <= STALE_AFTER + POLL_JITTERED,
        "took over {took:?} after the crash"
    );
    assert!(
        took >= STALE_AFTER - LEASE / 3,
        "not before the lease ran out: {took:?}"
    );
    assert!(next.term() > term, "a higher term");
    let stored = backend.get("leader").unwrap();
    assert_ne!(stored.version, last_beat);
    assert_eq!(stored.payload.as_deref(), Some(&b"b:80"[..]));
    next.resign().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn set_payload_keeps_leadership_and_observers_see_the_new_payload() {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(backend.clone(), &clock, "a");
    let follower = client(backend.clone(), &clock, "follower");
    let b = client(backend.clone(), &clock, "b");
    let mut leadership = a
        .election("leader")
        .with_payload("10.0.0.1:80")
        .campaign()
        .await
        .unwrap();
    let term = leadership.term();
    // A remote candidate waits in the queue meanwhile.
    let candidate = {
        let election = b.election("leader");
        tokio::spawn(async move { election.campaign().await })
    };
    let mut watch = follower.observe_leader("leader");
    let seen = change(&clock, &mut watch).await.unwrap().expect("a leader");
    assert_eq!((seen.term, seen.host.as_str()), (term, "a"));
    assert_eq!(seen.payload.as_deref(), Some(&b"10.0.0.1:80"[..]));
    clock.sleep(Duration::from_secs(5)).await;
    let queue = backend.get("leader").unwrap().queue;
    assert_eq!(queue.entries.len(), 1);

    leadership.set_payload("10.0.0.1:90").await.unwrap();
    let stored = backend.get("leader").unwrap();
    assert_eq!(
        stored.payload.as_deref(),
        Some(&b"10.0.0.1:90"[..]),
        "written now"
    );
    assert_eq!(stored.fencing_token, Some(term), "same term");
    assert_eq!(stored.queue, queue, "the candidates' queue untouched");
    assert!(!stored.released);
    let after_change = stored.version.clone();
    assert_eq!(leadership.term(), term);
    assert_eq!(
        leadership.payload().map(|p| &p[..]),
        Some(&b"10.0.0.1:90"[..])
    );
    assert_eq!(
        leadership.guard().payload().map(|p| &p[..]),
        Some(&b"10.0.0.1:90"[..])
    );

    let t0 = clock.now();
    let seen = change(&clock, &mut watch)
        .await
        .unwrap()
        .expect("still a leader");
    assert!(clock.now() - t0 <= POLL, "seen at the next poll");
    assert_eq!(seen.term, term, "same term");
    assert_eq!(seen.payload.as_deref(), Some(&b"10.0.0.1:90"[..]));

    // Heartbeats go on, carrying the new payload, and conflict with nothing.
    clock.sleep(LEASE * 6).await;
    assert!(!leadership.is_lost(), "{:?}", leadership.lost_reason());
    let stored = backend.get("leader").unwrap();
    assert_ne!(stored.version, after_change, "heartbeats went on");
    assert_eq!(
        stored.payload.as_deref(),
        Some(&b"10.0.0.1:90"[..]),
        "heartbeats carry it"
    );
    assert_eq!(stored.fencing_token, Some(term));
    assert!(!candidate.is_finished(), "nobody else led meanwhile");
    leadership.resign().await.unwrap();
    let next = candidate.await.unwrap().unwrap();
    assert!(next.term() > term);
    next.resign().await.unwrap();
}

/// A payload change whose response is lost is resolved the way a lost
/// heartbeat is: the retry finds the record carrying the lost attempt's
/// version, adopts it, and the holder goes on from that version (a wrong
/// version would make its next heartbeat find "someone else's" record and
/// fire the lost signal).
#[tokio::test(start_paused = true)]
async fn a_payload_change_with_a_lost_response_keeps_leadership() {
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
    for (i, fault) in [Fault::LoseResponse, Fault::StallAfterApply]
        .into_iter()
        .enumerate()
    {
        clock.sleep(Duration::from_secs(1)).await;
        faulty.inject(Some(Op::Write), Some("leader"), fault.clone(), Some(1));
        let payload = format!("new-{i}");
        leadership.set_payload(payload.clone()).await.unwrap();
        let stored = store.get("leader").unwrap();
        assert_eq!(
            stored.payload.as_deref(),
            Some(payload.as_bytes()),
            "{fault:?}"
        );
        assert_eq!(stored.fencing_token, Some(term));
        clock.sleep(LEASE * 3).await;
        assert!(
            !leadership.is_lost(),
            "{fault:?}: {:?}",
            leadership.lost_reason()
        );
        assert_eq!(
            store.get("leader").unwrap().payload.as_deref(),
            Some(payload.as_bytes())
        );
    }
    assert_eq!(faulty.injected(), 2);
    assert!(a.metrics().ambiguous_resolved >= 2, "{:?}", a.metrics());

    // A heartbeat's response is lost just before a payload change: the
    // change's first attempt finds the heartbeat's record, adopts it, and
    // writes again over it (not taking the heartbeat, which carried the old
    // payload, for its own).
    faulty.inject(
        Some(Op::Write),
        Some("leader"),
        Fault::LoseResponse,
        Some(1),
    );
    while faulty.injected() < 3 {
        clock.sleep(Duration::from_millis(1)).await;
    }
    let resolved = a.metrics().ambiguous_resolved;
    leadership
        .set_payload("after-a-lost-heartbeat")
        .await
        .unwrap();
    assert_eq!(
        a.metrics().ambiguous_resolved,
        resolved + 1,
        "the heartbeat was adopted"
    );
    assert_eq!(
        store.get("leader").unwrap().payload.as_deref(),
        Some(&b"after-a-lost-heartbeat"[..])
    );
    clock.sleep(LEASE * 3).await;
    assert!(!leadership.is_lost(), "{:?}", leadership.lost_reason());
    leadership.resign().await.unwrap();
}

/// Payload changes and heartbeats are one sequence of writes, each
/// conditioned on the previous one's version: with every write answered
/// late, by varying delays (so heartbeats are often in flight when a change
/// starts, and the other way round), none of them ever conflicts with
/// another, and the holder never takes a stale answer's version for the
/// stored one.
#[tokio::test(start_paused = true)]
async fn payload_changes_never_conflict_with_heartbeats() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(faulty.clone(), &clock, "a");
    let mut leadership = a.election("leader").campaign().await.unwrap();
    // Every write reaches the store (or is answered after reaching it) 50 to
    // 1200 ms after it was sent, so two writes in flight at once would apply
    // and be answered out of order.
    for i in 0..400u64 {
        let late = Duration::from_millis([100, 900, 400, 1200, 50, 700, 300][(i % 7) as usize]);
        let fault = if i % 2 == 0 {
            Fault::Delay(late)
        } else {
            Fault::DelayResponse(late)
        };
        faulty.inject(Some(Op::Write), None, fault, Some(1));
    }
    for i in 0..40u32 {
        clock
            .sleep(Duration::from_millis(300 + 137 * u64::from(i % 7)))
            .await;
        leadership.set_payload(format!("p{i}")).await.unwrap();
        assert_eq!(
            store.get("leader").unwrap().payload.as_deref(),
            Some(format!("p{i}").as_bytes())
        );
    }
    // A payload change renews the lease like a heartbeat, so the keeper
    // beats only once none came for a third of the lease: over the next
    // lease, at least twice.
    let before = a.metrics().heartbeats;
    clock.sleep(LEASE).await;
    assert!(!leadership.is_lost(), "{:?}", leadership.lost_reason());
    assert!(
        a.metrics().heartbeats >= before + 2,
        "heartbeats went on: {:?}",
        a.metrics()
    );
    assert_eq!(a.metrics().heartbeat_failures, 0, "{:?}", a.metrics());
    faulty.clear();
    leadership.resign().await.unwrap();
}

/// A payload change that finds another holder's record fires the lost
/// signal and says so.
#[tokio::test(start_paused = true)]
async fn a_payload_change_after_a_takeover_reports_the_loss() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(store.clone(), &clock, "a");
    let mut leadership = a.election("leader").campaign().await.unwrap();
    let mut usurper = store.get("leader").unwrap();
    usurper.version = lynk_core::Version::random();
    usurper.host = "usurper".into();
    store.put_raw(usurper);
    let err = leadership.set_payload("x").await.expect_err("not ours");
    assert!(matches!(err, LockError::Lost { .. }), "{err}");
    assert!(leadership.is_lost());
    assert_eq!(
        store.get("leader").unwrap().host,
        "usurper",
        "nothing written"
    );
}

#[tokio::test(start_paused = true)]
async fn observers_of_one_name_share_one_read_per_poll() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let counted = CountingBackend::new(store.clone());
    let a = client(store.clone(), &clock, "a");
    let follower = client(counted.clone(), &clock, "follower");
    let leadership = a.election("leader").campaign().await.unwrap();
    let mut watches: Vec<_> = (0..10).map(|_| follower.observe_leader("leader")).collect();
    watches.push(watches[0].clone());
    watches.push(follower.election("leader").observe());
    for w in watches.iter_mut() {
        assert_eq!(
            change(&clock, w).await.unwrap().unwrap().term,
            leadership.term()
        );
    }
    let before = counted.counts();
    clock.sleep(POLL * 40).await;
    let reads = counted.counts().since(before);
    assert!(
        (39..=41).contains(&reads.reads) && reads.total() == reads.reads,
        "one read per poll for 12 watches: {reads:?}"
    );
    // Another name has a poller of its own.
    let other = follower.observe_leader("other");
    let before = counted.counts();
    clock.sleep(POLL * 10).await;
    let reads = counted.counts().since(before).reads;
    assert!(
        (19..=21).contains(&reads),
        "two names, two reads per poll: {reads}"
    );
    // When the last watch of a name goes, its poller stops.
    drop(watches);
    drop(other);
    settle().await;
    let before = counted.counts();
    clock.sleep(POLL * 10).await;
    assert_eq!(
        counted.counts().since(before).total(),
        0,
        "no watch, no reads"
    );
    // And a new watch starts one again.
    let mut again = follower.observe_leader("leader");
    assert!(change(&clock, &mut again).await.unwrap().is_some());
    leadership.resign().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn observers_see_each_leader_and_none_after_a_resignation() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(store.clone(), &clock, "a");
    let b = client(store.clone(), &clock, "b");
    let follower = client(store.clone(), &clock, "follower");
    let mut watch = follower.observe_leader("leader");
    assert_eq!(
        change(&clock, &mut watch).await.unwrap(),
        None,
        "no record: no leader"
    );
    assert!(watch.is_known());

    let first = a
        .election("leader")
        .with_payload("a:80")
        .campaign()
        .await
        .unwrap();
    let t0 = clock.now();
    let seen = change(&clock, &mut watch).await.unwrap().expect("a leads");
    assert!(clock.now() - t0 <= POLL);
    assert_eq!((seen.host.as_str(), seen.term), ("a", first.term()));
    assert_eq!(seen.payload.as_deref(), Some(&b"a:80"[..]));
    assert_eq!(seen.lease, LEASE);
    assert_eq!(watch.current(), Some(seen.clone()));
    let first_term = first.term();

    // Heartbeats are not changes.
    let quiet = common::within(&clock, LEASE * 3, watch.changed()).await;
    assert!(quiet.is_none(), "heartbeats reported as changes: {quiet:?}");
    assert_ne!(
        watch.current().unwrap().version,
        seen.version,
        "current() is up to date"
    );

    first.resign().await.unwrap();
    let t0 = clock.now();
    assert_eq!(
        change(&clock, &mut watch).await.unwrap(),
        None,
        "resigned: no leader"
    );
    assert!(clock.now() - t0 <= POLL);

    let second = b
        .election("leader")
        .with_payload("b:80")
        .campaign()
        .await
        .unwrap();
    let seen = change(&clock, &mut watch).await.unwrap().expect("b leads");
    assert_eq!(seen.host, "b");
    assert!(seen.term > first_term);
    assert_eq!(seen.term, second.term());
    second.resign().await.unwrap();
    assert_eq!(change(&clock, &mut watch).await.unwrap(), None);
}

/// A leader that stops heartbeating: observers report no leader once they
/// have seen its record unchanged for `lease × (1 + d)` on their own clock,
/// at the first poll after that; not before.
#[tokio::test(start_paused = true)]
async fn observers_report_no_leader_once_the_record_is_stale() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(store.clone(), &clock, "a");
    let follower = client(store.clone(), &clock, "follower");
    let leadership = a.election("leader").campaign().await.unwrap();
    let mut watch = follower.observe_leader("leader");
    assert!(change(&clock, &mut watch).await.unwrap().is_some());
    clock.sleep(Duration::from_secs(7)).await;
    leadership.into_guard().detach();
    let crashed = clock.now();
    assert_eq!(
        change(&clock, &mut watch).await.unwrap(),
        None,
        "stale: no leader"
    );
    let took = clock.now() - crashed;
    eprintln!("the observer saw no leader {took:?} after the crash");
    // The last heartbeat was at most lease/3 before the crash, and the
    // observer saw it at most a poll after it was written.
    assert!(
        took >= STALE_AFTER - LEASE / 3 && took <= STALE_AFTER + POLL,
        "no leader {took:?} after the crash"
    );
    assert_eq!(watch.current(), None);
    // A new leader shows again.
    let b = client(store.clone(), &clock, "b");
    let next = b.election("leader").campaign().await.unwrap();
    let seen = change(&clock, &mut watch).await.unwrap().expect("b leads");
    assert_eq!((seen.host.as_str(), seen.term), ("b", next.term()));
    next.resign().await.unwrap();
}

/// A holder that comes back after a pause that only looked like a crash to
/// a slow observer is a leader again at its next heartbeat; and a live
/// leader never looks stale, however long it leads.
#[tokio::test(start_paused = true)]
async fn a_live_leader_never_looks_stale() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(store.clone(), &clock, "a");
    let follower = client(store.clone(), &clock, "follower");
    let leadership = a.election("leader").campaign().await.unwrap();
    let mut watch = follower.observe_leader("leader");
    assert!(change(&clock, &mut watch).await.unwrap().is_some());
    let quiet = common::within(&clock, LEASE * 30, watch.changed()).await;
    assert!(
        quiet.is_none(),
        "a live leader reported as a change: {quiet:?}"
    );
    leadership.resign().await.unwrap();
}

/// Reads that keep failing are reported once per run of failures; the
/// watch goes on, and sees the next change once the store answers again.
#[tokio::test(start_paused = true)]
async fn persistent_read_errors_are_reported_once_and_do_not_end_the_stream() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let faulty = common::faulty(store.clone(), &clock);
    let a = client(store.clone(), &clock, "a");
    let follower = client(faulty.clone(), &clock, "follower");
    let first = a.election("leader").campaign().await.unwrap();
    let mut stream = follower.observe_leader("leader").into_stream();
    let seen = next(&clock, &mut stream)
        .await
        .unwrap()
        .unwrap()
        .expect("a leads");
    assert_eq!(seen.term, first.term());

    // One failed read is retried quietly.
    faulty.inject(
        Some(Op::Read),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        Some(1),
    );
    let quiet = common::within(&clock, POLL * 5, stream.next()).await;
    assert!(quiet.is_none(), "{quiet:?}");

    // A run of them is reported, once.
    faulty.inject(
        Some(Op::Read),
        None,
        Fault::FailBefore(BackendErrorKind::Unavailable),
        None,
    );
    let err = next(&clock, &mut stream)
        .await
        .unwrap()
        .expect_err("reads keep failing");
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    let quiet = common::within(&clock, POLL * 10, stream.next()).await;
    assert!(quiet.is_none(), "reported once per run: {quiet:?}");

    // Meanwhile the leader changes; once reads succeed, the stream says so.
    first.resign().await.unwrap();
    let second = a.election("leader").campaign().await.unwrap();
    faulty.clear();
    let seen = next(&clock, &mut stream)
        .await
        .unwrap()
        .unwrap()
        .expect("a leads again");
    assert_eq!(seen.term, second.term());
    second.resign().await.unwrap();
    assert_eq!(next(&clock, &mut stream).await.unwrap().unwrap(), None);
}

/// A client's shutdown ends its watches: `changed` returns `ShutDown`, and
/// the stream ends.
#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_watches() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let follower = client(store.clone(), &clock, "follower");
    let mut watch = follower.observe_leader("leader");
    let mut stream = watch.clone().into_stream();
    assert_eq!(change(&clock, &mut watch).await.unwrap(), None);
    assert_eq!(next(&clock, &mut stream).await.unwrap().unwrap(), None);
    follower.shutdown().await;
    assert!(matches!(
        change(&clock, &mut watch).await,
        Err(LockError::ShutDown)
    ));
    assert!(matches!(
        next(&clock, &mut stream).await,
        Some(Err(LockError::ShutDown))
    ));
    assert!(
        next(&clock, &mut stream).await.is_none(),
        "the stream ended"
    );
    // An invalid name is an error at once, and ends a stream too.
    let other = client(store, &clock, "other");
    let mut invalid = other.observe_leader("");
    let err = change(&clock, &mut invalid).await.expect_err("empty name");
    assert!(matches!(err, LockError::InvalidInput { .. }), "{err}");
}

/// A resignation that grants leadership to a candidate of another process
/// leaves a grant record: nobody leads until the candidate confirms it. Here
/// the queued candidate is dead, so the grant is never confirmed.
#[tokio::test(start_paused = true)]
async fn observers_see_no_leader_while_leadership_is_granted() {
    let store = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(store.clone(), &clock, "a");
    let follower = client(store.clone(), &clock, "follower");
    let first = a.election("leader").campaign().await.unwrap();
    let mut watch = follower.observe_leader("leader");
    assert!(change(&clock, &mut watch).await.unwrap().is_some());
    // A candidate of a process that has since died, queued behind the leader.
    let mut record = store.get("leader").unwrap();
    record.queue = record.queue.with(lynk_core::QueueEntry {
        id: "dead-candidate".into(),
        host: "ghost".into(),
        wake: None,
        poll: None,
    });
    store.put_raw(record);
    first.resign().await.unwrap();
    let granted = store.get("leader").unwrap();
    assert_eq!(granted.granted_to.as_deref(), Some("dead-candidate"));
    assert!(!granted.released);
    assert_eq!(
        change(&clock, &mut watch).await.unwrap(),
        None,
        "a grant: no leader"
    );
    let quiet = common::within(&clock, LEASE * 3, watch.changed()).await;
    assert!(quiet.is_none(), "{quiet:?}");
}
