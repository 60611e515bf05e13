//! A half-open network between lynk and DynamoDB (moto): connections stay
//! open, no bytes move. Nothing may hang, and nothing may lie:
//!
//! - the holder's lost-lease signal fires before its safe deadline, that
//!   is, before anyone could take the lease over;
//! - a waiter with a 5 s deadline gives up within a few seconds of it;
//! - once the network heals, a new waiter takes the abandoned lock over
//!   within lease × (1 + drift) + one poll.
//!
//! Every client reaches moto through one `FaultProxy`, which goes half-open
//! and heals. The test runs in real time, about 15 s.

mod common;

use std::time::Duration;

use common::Server;
use lynk_core::{Clock, LockClient, LockError, LostReason, SystemClock};
use lynk_dynamo::{DynamoBackend, Timeouts};
use lynk_testkit::proxy::{FaultProxy, ProxyFaults};

const LEASE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(5);

/// SDK limits for a 3 s lease (see docs/dynamodb.md): the engine's own
/// per-call limit (a quarter of the lease) is shorter still.
const SDK: Timeouts = Timeouts {
    connect: Duration::from_secs(1),
    read: Duration::from_secs(1),
    attempt: Duration::from_secs(1),
    operation: Duration::from_secs(2),
};

fn no_faults() -> ProxyFaults {
    ProxyFaults {
        seed: 10,
        reset_before: 0.0,
        drop_response: 0.0,
        delay_response: 0.0,
        max_delay: Duration::ZERO,
        throttle: 0.0,
        server_error: 0.0,
        only: Vec::new(),
    }
}

async fn client(proxy: &FaultProxy, table: &str, host: &str) -> LockClient {
    let backend = DynamoBackend::builder(table)
        .options(common::options(&proxy.endpoint()))
        .timeouts(SDK)
        .build()
        .await
        .expect("backend");
    LockClient::builder(backend)
        .default_lease(LEASE)
        .host_identifier(host)
        .build()
        .expect("client")
}

/// `future`, or `None` if it has not finished `within` (so a hang fails the
/// test instead of hanging it).
async fn bounded<T>(within: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = future => Some(out),
        _ = SystemClock.sleep(within) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_network_neither_hangs_nor_lies() {
    let Some(endpoint) = Server::Moto.endpoint("a_half_open_network_neither_hangs_nor_lies") else {
        return;
    };
    let clock = SystemClock;
    let table = common::unique_table("half-open");
    let admin = common::create_table(&endpoint, &table).await;
    let proxy = FaultProxy::start(common::socket_addr(&endpoint), no_faults())
        .await
        .expect("proxy");

    // A holder with a 3 s lease, heartbeating through the proxy.
    let holder = client(&proxy, &table, "holder").await;
    let guard = holder.create_lock("job").acquire().await.expect("acquire");
    let config = holder.config().clone();
    let poll = config.poll_interval_for(LEASE);
    clock.sleep(LEASE / 2).await; // a heartbeat or so goes through
    assert!(!guard.is_lost());

    // The network goes half-open.
    proxy.set_half_open(true);
    let cut = clock.now();
    let watch = guard.watch();

    // A waiter arrives during the outage, willing to wait 5 s.
    let waiter = client(&proxy, &table, "waiter-1").await;
    let waiting = tokio::spawn(async move {
        let start = SystemClock.now();
        let result = waiter.create_lock("job").acquire_timeout(WAIT).await;
        let took = SystemClock.now() - start;
        (result.map(|g| g.fencing_token()), took, waiter)
    });

    // The holder learns it lost the lease before anyone could take it over.
    bounded(LEASE * 2, watch.lost())
        .await
        .expect("the lost-lease signal fires during the outage");
    let lost_at = clock.now();
    let safe_deadline = guard.watch().safe_deadline();
    println!(
        "holder: lost signal {:?} after the cut, {:?} before its safe deadline ({:?})",
        lost_at - cut,
        safe_deadline.saturating_duration_since(lost_at),
        guard.lost_reason()
    );
    assert!(
        lost_at < safe_deadline,
        "the lost signal ({lost_at:?}) must fire before the safe deadline ({safe_deadline:?})"
    );
    assert!(
        matches!(
            guard.lost_reason(),
            Some(LostReason::HeartbeatsFailed { .. })
        ),
        "{:?}",
        guard.lost_reason()
    );

    // The waiter gives up within a few seconds of its deadline: at most two
    // call limits late (the engine's, a quarter of the lease, or the SDK's
    // per-call limit, whichever is longer).
    let call_limit = (LEASE / 4).max(SDK.operation);
    let (result, took, waiter) = bounded(WAIT + call_limit * 4, waiting)
        .await
        .expect("the waiter gives up")
        .expect("the waiter's task");
    println!("waiter-1: gave up after {took:?}: {result:?}");
    match &result {
        Err(LockError::NotGranted { .. })
        | Err(LockError::Unavailable { .. })
        | Err(LockError::OutcomeUnknown { .. })
        | Err(LockError::Throttled { .. }) => {}
        other => panic!("waiter-1 should give up with NotGranted or a store error: {other:?}"),
    }
    assert!(
        took < WAIT + call_limit * 2,
        "waiter-1 took {took:?}, more than {WAIT:?} + 2 × {call_limit:?}"
    );

    // The network heals. What the outage held is delivered late (a heartbeat
    // sent into it may apply now); give that a moment, then a new waiter
    // must take the abandoned lock over within lease × (1 + d) + one poll.
    proxy.set_half_open(false);
    clock.sleep(Duration::from_millis(300)).await;
    let newcomer = client(&proxy, &table, "waiter-2").await;
    let start = clock.now();
    let takeover = LEASE.mul_f64(1.0 + config.drift_allowance) + config.lock_delay;
    let slack = Duration::from_millis(1500);
    let bound = takeover + poll.mul_f64(1.2) + slack;
    let taken = bounded(bound * 2, newcomer.create_lock("job").acquire())
        .await
        .expect("the abandoned lock is taken over after healing")
        .expect("acquire after healing");
    let took = clock.now() - start;
    println!(
        "waiter-2: took the lock over {took:?} after it started (lease × (1 + d) = {takeover:?}, poll {poll:?}); token {} after the holder's {}",
        taken.fencing_token(),
        guard.fencing_token()
    );
    assert!(taken.fencing_token() > guard.fencing_token());
    assert!(
        took <= bound,
        "takeover after {took:?}, more than lease × (1 + d) + 1.2 polls + {slack:?} = {bound:?}"
    );

    // Everyone finishes, nothing hangs.
    bounded(Duration::from_secs(10), taken.release())
        .await
        .expect("release returns")
        .expect("release");
    drop(guard);
    for c in [holder, waiter, newcomer] {
        bounded(Duration::from_secs(15), c.shutdown())
            .await
            .expect("shutdown returns");
    }
    admin.delete_table(&table, false, true).await.ok();
}
