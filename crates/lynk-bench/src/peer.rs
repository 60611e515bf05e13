//! dynamodb-lease (the Rust peer) as the suite measures it, on an emulator.

use std::time::Duration;

use async_trait::async_trait;
use dynamodb_lease::{Client, Lease};

use crate::counting::Counter;
use crate::env::{counting_sdk, create_peer_table, sdk_config, unique};
use crate::suite::{self, LockImpl, Sizes};
use crate::util::{now, sleep, Report};

/// An emulator endpoint with a table in dynamodb-lease's schema.
pub struct PeerEnv {
    config: aws_config::SdkConfig,
    table: String,
}

/// A lock of dynamodb-lease: a client and a key.
#[derive(Clone)]
pub struct PeerLock {
    client: Client,
    key: String,
}

impl PeerEnv {
    /// Creates a fresh table at `endpoint`.
    pub async fn new(endpoint: &str) -> PeerEnv {
        let env = PeerEnv::existing(endpoint, &unique("peer-bench")).await;
        create_peer_table(&aws_sdk_dynamodb::Client::new(&env.config), &env.table).await;
        env
    }

    /// An existing table at `endpoint`.
    pub async fn existing(endpoint: &str, table: &str) -> PeerEnv {
        let config = sdk_config(endpoint).await;
        let table = table.to_owned();
        PeerEnv { config, table }
    }

    /// A client with the crate's defaults (ttl 60 s, extend every 30 s,
    /// retry every 1 s), or with lease ttl `ttl`.
    pub async fn client(&self, ttl: Option<u32>) -> (Client, Counter) {
        let (sdk, counter) = counting_sdk(&self.config);
        let mut b = Client::builder().table_name(&self.table);
        if let Some(t) = ttl {
            b = b.lease_ttl_seconds(t);
        }
        let client = b
            .build_and_check_db(sdk)
            .await
            .expect("dynamodb-lease client");
        (client, counter)
    }
}

// Throughput: `release` unlocks locally before its delete, so a tight loop
// on one key may find its own delete still in flight: that costs a 1 s
// retry; measured as is.
#[async_trait]
impl LockImpl for PeerEnv {
    const NAME: &'static str = "dynamodb-lease";
    const RETRY: &'static str = "1 s retry";
    const DEFAULTS: &'static str = "default settings (ttl 60 s, extend every 30 s)";
    const HELD_NOTE: &'static str =
        "; the window is shorter than one extension, see req_held_per_min_hb";
    const LOCAL_HANDOVER: bool = false;
    const MAX_HANDOVERS: usize = 20;

    type Client = Client;
    type Lock = PeerLock;
    type Held = Lease;

    async fn new_client(&self) -> (Client, Counter) {
        self.client(None).await
    }

    fn lock(client: &Client, name: &str) -> PeerLock {
        let (client, key) = (client.clone(), name.to_owned());
        PeerLock { client, key }
    }

    async fn acquire(lock: &PeerLock) -> Lease {
        lock.client.acquire(&lock.key).await.expect("acquire")
    }

    async fn try_acquire(lock: &PeerLock) -> Option<Lease> {
        lock.client.try_acquire(&lock.key).await.expect("try")
    }

    async fn release(held: Lease) {
        held.release().await.expect("release");
    }

    /// Heartbeats counted with a 2 s ttl (extend every 1 s), scaled to the
    /// default 30 s period.
    async fn own_figures(&self, s: &str, sizes: Sizes, report: &Report) {
        let (c2, cc2) = self.client(Some(2)).await;
        let g = c2.acquire("per-minute-hb").await.expect("acquire");
        // The rate between the first and the last extension seen: counting
        // over a fixed window would miss the partial period at its start
        // (3 extensions in 4 s read as 0.75/s for a 1/s pace).
        let win = sizes
            .window
            .clamp(Duration::from_secs(4), Duration::from_secs(8));
        let (start, mut last) = (now(), cc2.get());
        let mut seen: Vec<std::time::Instant> = Vec::new();
        while now() - start < win {
            sleep(Duration::from_millis(10)).await;
            let c = cc2.get();
            if c > last {
                seen.push(now());
                last = c;
            }
        }
        let per_s = match (seen.first(), seen.last()) {
            (Some(a), Some(b)) if seen.len() >= 2 && b > a => {
                (seen.len() - 1) as f64 / (*b - *a).as_secs_f64()
            }
            _ => f64::NAN,
        };
        let note = format!(
            "extensions counted with ttl 2 s over {:.1} s ({} seen, {:.2}/s between the first and the last), scaled to the default 30 s period",
            win.as_secs_f64(),
            seen.len(),
            per_s
        );
        let per_min = per_s * 60.0 / 30.0;
        report.figure(
            Self::NAME,
            s,
            "req_held_per_min_hb",
            per_min,
            "req/min",
            &note,
        );
        g.release().await.expect("release");
    }
}

/// dynamodb-lease's figures on the emulator at `endpoint`, labelled `server`.
pub async fn run(endpoint: &str, server: &str, sizes: Sizes, report: &Report) {
    let env = PeerEnv::new(endpoint).await;
    suite::run(&env, server, sizes, report).await;
}
