//! The real SDK under network faults: the simulation of `lynk_testkit::sim`
//! (drifting clients, pauses, crashes, an oracle resource and the checker)
//! against moto, through a loopback proxy that resets connections, drops
//! responses after moto acted, and delays responses, with the SDK's own
//! retries on.
//!
//! `LYNK_PROXY_SIM_SECONDS` lengthens the run (default 20 s).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Server;
use lynk_testkit::proxy::{FaultProxy, ProxyFaults};
use lynk_testkit::sim::{simulate_on, SimConfig};
use lynk_testkit::RandomFaults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_violations_through_a_faulty_network_to_moto() {
    let Some(endpoint) = Server::Moto.endpoint("no_violations_through_a_faulty_network_to_moto")
    else {
        return;
    };
    let seconds: u64 = std::env::var("LYNK_PROXY_SIM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let table = common::unique_table("proxy-sim");
    let admin = common::create_table(&endpoint, &table).await;
    let upstream = common::socket_addr(&endpoint);
    let proxy = FaultProxy::start(
        upstream,
        ProxyFaults {
            seed: 5,
            reset_before: 0.03,
            drop_response: 0.05,
            delay_response: 0.05,
            max_delay: Duration::from_millis(300),
            throttle: 0.03,
            server_error: 0.02,
            only: vec![
                "DynamoDB_20120810.UpdateItem".into(),
                "DynamoDB_20120810.GetItem".into(),
                "DynamoDB_20120810.DeleteItem".into(),
            ],
        },
    )
    .await
    .expect("proxy");
    // SDK retries stay on (the default standard mode).
    let backend = common::backend(Server::Moto, &proxy.endpoint(), &table).await;
    let config = SimConfig {
        seed: 11,
        clients: 3,
        duration: Duration::from_secs(seconds),
        lease: Duration::from_secs(2),
        faults: RandomFaults::none(0),
        ..SimConfig::default()
    };
    let report = simulate_on(config, Arc::new(backend)).await;
    println!(
        "proxy run against moto: {report}; proxy saw {} requests, injected {} faults ({} responses dropped after moto acted)",
        proxy.requests(),
        proxy.injected(),
        proxy.dropped_responses()
    );
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.acquisitions > 3, "the run made progress: {report}");
    assert!(proxy.injected() > 0, "faults were injected");
    admin.delete_table(&table, false, true).await.ok();
}
