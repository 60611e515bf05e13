//! Throttling and server errors from DynamoDB, injected by a loopback proxy
//! in front of moto: retried with backoff inside the lease budget, and when
//! the lease cannot be kept, the lost-lease signal fires before the safe
//! deadline.

mod common;

use std::time::Duration;

use common::Server;
use lynk_core::{BackendErrorKind, Clock, LockClient, LostReason, SystemClock};
use lynk_testkit::proxy::{FaultProxy, ProxyFaults};

fn faults(throttle: f64, server_error: f64) -> ProxyFaults {
    ProxyFaults {
        seed: 3,
        reset_before: 0.0,
        drop_response: 0.0,
        delay_response: 0.0,
        max_delay: Duration::ZERO,
        throttle,
        server_error,
        only: vec!["DynamoDB_20120810.UpdateItem".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_within_the_lease() {
    let Some(endpoint) =
        Server::Moto.endpoint("throttling_and_server_errors_are_retried_within_the_lease")
    else {
        return;
    };
    let table = common::unique_table("throttle");
    let admin = common::create_table(&endpoint, &table).await;
    // Half of all writes fail: a third throttled, a sixth server errors.
    let proxy = FaultProxy::start(common::socket_addr(&endpoint), faults(0.35, 0.15))
        .await
        .unwrap();
    let backend = common::backend(Server::Moto, &proxy.endpoint(), &table).await;
    let client = LockClient::builder(backend)
        .default_lease(Duration::from_secs(3))
        .build()
        .unwrap();
    let guard = client
        .create_lock("busy")
        .acquire_timeout(Duration::from_secs(20))
        .await
        .unwrap();
    SystemClock.sleep(Duration::from_secs(7)).await;
    assert!(
        !guard.is_lost(),
        "retries kept the lease: {:?}",
        guard.lost_reason()
    );
    println!(
        "throttled/5xx: {} requests, {} refused by the proxy; lynk metrics {:?}",
        proxy.requests(),
        proxy.injected(),
        client.metrics()
    );
    assert!(proxy.injected() > 0);
    assert!(client.metrics().heartbeats >= 3);
    guard.release().await.unwrap();
    admin.delete_table(&table, false, true).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_signal_fires_in_time_when_every_write_is_throttled() {
    let Some(endpoint) =
        Server::Moto.endpoint("lost_signal_fires_in_time_when_every_write_is_throttled")
    else {
        return;
    };
    let table = common::unique_table("throttle-all");
    let admin = common::create_table(&endpoint, &table).await;
    let proxy = FaultProxy::start(common::socket_addr(&endpoint), faults(0.0, 0.0))
        .await
        .unwrap();
    let backend = common::backend(Server::Moto, &proxy.endpoint(), &table).await;
    let client = LockClient::builder(backend)
        .default_lease(Duration::from_secs(3))
        .build()
        .unwrap();
    let guard = client.create_lock("doomed").acquire().await.unwrap();
    // From now on DynamoDB throttles every write.
    proxy.set_faults(faults(1.0, 0.0));
    let safe = guard.safe_deadline();
    guard.lost().await;
    let fired = SystemClock.now();
    println!(
        "every heartbeat throttled: lost signal {:?} before the safe deadline; reason: {:?}",
        safe.saturating_duration_since(fired),
        guard.lost_reason()
    );
    assert!(
        fired < safe,
        "the lost-lease signal came {:?} after the safe deadline",
        fired - safe
    );
    // Either a throttled heartbeat came back (and is named), or the SDK was
    // still retrying it when the engine's per-call limit (a quarter of the
    // lease) or the signal cut it short: all are failed heartbeats.
    match guard.lost_reason() {
        Some(LostReason::HeartbeatsFailed { last_error }) => {
            assert!(
                last_error
                    .as_ref()
                    .is_none_or(|e| e.message().contains("throttl")
                        || (e.kind() == BackendErrorKind::OutcomeUnknown
                            && e.message().contains("did not answer"))),
                "{last_error:?}"
            );
        }
        other => panic!("expected failed heartbeats, got {other:?}"),
    }
    assert!(proxy.injected() > 0);
    client.shutdown().await;
    admin.delete_table(&table, false, true).await.ok();
}

/// A write the SDK retried after a throttled attempt (a 400: refused, not
/// applied) and whose retry then failed its condition did not apply: it is
/// `ConditionFailed`, not "outcome unknown" (that is only for a retry after
/// an attempt that may have applied; tests/review_no_return.rs). A server
/// error (500) before the conflict, though, may have applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_after_throttled_attempts_is_a_plain_conflict() {
    use lynk_core::{Condition, LockBackend, TokenUpdate, Version, WriteError, WriteRequest};
    let Some(endpoint) =
        Server::Moto.endpoint("a_conflict_after_throttled_attempts_is_a_plain_conflict")
    else {
        return;
    };
    let table = common::unique_table("throttle-conflict");
    let admin = common::create_table(&endpoint, &table).await;
    let proxy = FaultProxy::start(common::socket_addr(&endpoint), faults(0.5, 0.0))
        .await
        .unwrap();
    let backend = common::backend(Server::Moto, &proxy.endpoint(), &table).await;
    let conflicting = || WriteRequest {
        key: "k".into(),
        condition: Condition::VersionIs(Version::random()),
        version: Version::random(),
        lease_duration: Duration::from_secs(20),
        host: "h".into(),
        token: TokenUpdate::Keep,
        payload: None,
        released: true,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    };
    let (mut conflicts, mut throttled) = (0, 0);
    for i in 0..16 {
        let result = if i % 2 == 0 {
            backend.write(conflicting()).await.map(|_| ())
        } else {
            backend.write_no_return(conflicting()).await
        };
        match result {
            Err(WriteError::ConditionFailed { .. }) => conflicts += 1,
            Err(WriteError::Backend(e)) if e.kind() == BackendErrorKind::Throttled => throttled += 1,
            other => panic!("write {i}: {other:?}; a conflict after throttled attempts must be a plain conflict"),
        }
    }
    println!(
        "{conflicts} conflicts, {throttled} throttled throughout, {} throttles injected",
        proxy.injected()
    );
    assert!(
        conflicts >= 8,
        "too few writes got through to their conflict"
    );
    assert!(
        proxy.injected() >= 4,
        "too few throttles to have preceded a conflict"
    );

    // A server error may have applied: a conflict after one is unknown.
    proxy.set_faults(ProxyFaults {
        only: vec!["DynamoDB_20120810.UpdateItem".into()],
        ..faults(0.0, 0.5)
    });
    let mut unknown = 0;
    for i in 0..16 {
        match backend.write(conflicting()).await {
            Err(WriteError::ConditionFailed { .. }) => {}
            Err(WriteError::Backend(e)) if e.kind() == BackendErrorKind::OutcomeUnknown => {
                unknown += 1
            }
            other => panic!("write {i}: {other:?}"),
        }
    }
    assert!(
        unknown > 0,
        "no conflict after a server error was reported as unknown"
    );
    admin.delete_table(&table, false, true).await.unwrap();
}
