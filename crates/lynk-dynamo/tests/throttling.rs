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
