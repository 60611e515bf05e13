//! Wake-up datagrams, over real UDP on loopback and the system clock: a
//! release wakes the granted waiter at once; datagrams for other scopes,
//! other locks or from a flood change nothing but (rate-limited) timing.

use std::net::UdpSocket;
use std::time::Duration;

use lynk_core::{encode_wake, Clock, LockClient, SystemClock, WakeUps};
use lynk_testkit::MemoryBackend;

const SCOPE: &str = "locks-table";

/// A client polling slowly (so a wake-up is what makes it fast), listening on
/// a free loopback port.
fn waiter(backend: &MemoryBackend, host: &str) -> LockClient {
    LockClient::builder(backend.clone())
        .host_identifier(host)
        .default_lease(Duration::from_secs(20))
        .poll_interval(Duration::from_secs(10))
        .wake_ups(WakeUps::new("127.0.0.1:0".parse().unwrap()).scope(SCOPE))
        .build()
        .unwrap()
}

fn holder(backend: &MemoryBackend) -> LockClient {
    LockClient::builder(backend.clone())
        .host_identifier("holder")
        .default_lease(Duration::from_secs(20))
        .wake_ups(WakeUps::new("127.0.0.1:0".parse().unwrap()).scope(SCOPE))
        .build()
        .unwrap()
}

/// Waits (on the real clock) until the stored queue of `name` has `n` entries.
async fn queued(backend: &MemoryBackend, name: &str, n: usize) -> Vec<lynk_core::QueueEntry> {
    for _ in 0..200 {
        if let Some(r) = backend.get(name) {
            if r.queue.entries.len() == n {
                return r.queue.entries;
            }
        }
        SystemClock.sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the queue of {name} never had {n} entries: {:?}",
        backend.get(name)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_the_granted_waiter_instead_of_its_next_poll() {
    let backend = MemoryBackend::new();
    let h = holder(&backend);
    let w = waiter(&backend, "waiter");
    let guard = h.create_lock("job").acquire().await.unwrap();
    let waiting = tokio::spawn({
        let lock = w.create_lock("job");
        async move {
            let g = lock.acquire().await.unwrap();
            (SystemClock.now(), g)
        }
    });
    let entries = queued(&backend, "job", 1).await;
    assert!(
        entries[0]
            .wake
            .as_deref()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "the waiter advertises its address: {entries:?}"
    );
    // Let the waiter's poll gaps grow (0.1, 0.2, 0.4, 0.8, 1.6 s, ...): its
    // next poll is now at least a second away.
    SystemClock.sleep(Duration::from_millis(1600)).await;
    let polls_before = w.metrics().polls;
    let released = SystemClock.now();
    guard.release().await.unwrap();
    let (acquired, g) = waiting.await.unwrap();
    let latency = acquired - released;
    let m = w.metrics();
    assert_eq!(m.wakeups, 1, "one wake-up led to one early poll: {m:?}");
    assert_eq!(m.confirmed_grants, 1, "the lock came by grant: {m:?}");
    assert_eq!(
        m.polls,
        polls_before + 1,
        "the wake-up's poll was the only one after the release: {m:?}"
    );
    assert!(
        latency < Duration::from_millis(900),
        "handed over in {latency:?}: woken, not at the next poll"
    );
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_wakeups_only_cost_rate_limited_polls() {
    let backend = MemoryBackend::new();
    let h = holder(&backend);
    let w = waiter(&backend, "waiter");
    let guard = h.create_lock("job").acquire().await.unwrap();
    let waiting = tokio::spawn({
        let lock = w.create_lock("job");
        async move { lock.acquire_timeout(Duration::from_secs(4)).await.map(drop) }
    });
    let entries = queued(&backend, "job", 1).await;
    let to = entries[0].wake.clone().expect("advertised");
    SystemClock.sleep(Duration::from_millis(300)).await;
    let polls_before = w.metrics().polls;
    let started = SystemClock.now();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Datagrams go out in batches with a pause between, so that the
    // listener drains its socket: a flood sent in one go overflows the
    // kernel's receive buffer on a busy machine, and then the datagrams that
    // name the lock never arrive at all (CI saw `wakeups: 0`).
    // Other scopes, other locks, garbage: ignored.
    for i in 0..100 {
        if i % 20 == 0 {
            SystemClock.sleep(Duration::from_millis(5)).await;
        }
        socket
            .send_to(encode_wake("another-table", "job").unwrap().as_bytes(), &to)
            .unwrap();
        socket
            .send_to(
                encode_wake(SCOPE, "not-waited-for").unwrap().as_bytes(),
                &to,
            )
            .unwrap();
        socket.send_to(b"lynk-wake/1 garbage", &to).unwrap();
    }
    // A flood naming the lock: at most two early polls at once, then one
    // per poll interval (10 s here).
    for i in 0..1000 {
        if i % 100 == 0 {
            SystemClock.sleep(Duration::from_millis(5)).await;
        }
        socket
            .send_to(encode_wake(SCOPE, "job").unwrap().as_bytes(), &to)
            .unwrap();
    }
    SystemClock.sleep(Duration::from_millis(500)).await;
    let m = w.metrics();
    let elapsed = SystemClock.now() - started;
    assert!(m.wakeups >= 1, "the flood reached the waiter: {m:?}");
    assert!(
        m.wakeups <= 2,
        "a flood is limited to the burst: {} wake-ups in {elapsed:?}",
        m.wakeups
    );
    // Polls: the wake-ups' plus at most the schedule's own few.
    assert!(
        m.polls - polls_before <= m.wakeups + 2,
        "{} polls for {} wake-ups",
        m.polls - polls_before,
        m.wakeups
    );
    assert!(!guard.is_lost(), "nothing a wake-up does takes the lock");
    assert!(
        waiting.await.unwrap().is_err(),
        "no wake-up grants: the waiter still waits for the holder"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unspecified_listen_address_needs_an_advertised_one() {
    let err = LockClient::builder(MemoryBackend::new())
        .wake_ups(WakeUps::new("0.0.0.0:0".parse().unwrap()))
        .build()
        .expect_err("others cannot send to 0.0.0.0");
    let text = err.to_string();
    assert!(
        text.contains("wake-ups") && text.contains("advertise"),
        "{text}"
    );
    let ok = LockClient::builder(MemoryBackend::new())
        .wake_ups(
            WakeUps::new("0.0.0.0:0".parse().unwrap()).advertise("127.0.0.1:0".parse().unwrap()),
        )
        .build();
    assert!(ok.is_ok(), "with an advertised address it listens");
}
