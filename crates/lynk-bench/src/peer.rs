//! dynamodb-lease (the Rust peer) on the same emulator, same measurements.

use std::time::Duration;

use dynamodb_lease::Client;
use futures::future::join_all;
use rand::Rng;

use crate::counting::Counter;
use crate::env::{counting_sdk, create_peer_table, sdk_config, unique};
use crate::lynk_suite::Sizes;
use crate::util::{cpu_time, now, p50_p99_ms, sleep, Report};

const IMP: &str = "dynamodb-lease";

pub struct PeerEnv {
    config: aws_config::SdkConfig,
    pub table: String,
}

impl PeerEnv {
    pub async fn new(endpoint: &str) -> PeerEnv {
        let config = sdk_config(endpoint).await;
        let table = unique("peer-bench");
        create_peer_table(&aws_sdk_dynamodb::Client::new(&config), &table).await;
        PeerEnv { config, table }
    }

    /// A client with the crate's defaults (ttl 60 s, extend every 30 s, retry every 1 s).
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

pub async fn run(endpoint: &str, server: &str, sizes: Sizes, report: &Report) {
    let env = PeerEnv::new(endpoint).await;
    let s = server;
    let (a, ca) = env.client(None).await;
    let (b, cb) = env.client(None).await;

    let before = ca.get();
    for _ in 0..10 {
        a.acquire("req-cycle")
            .await
            .expect("acquire")
            .release()
            .await
            .expect("release");
    }
    report.figure(
        IMP,
        s,
        "req_cycle",
        (ca.get() - before) as f64 / 10.0,
        "req",
        "uncontended acquire + release",
    );

    let held = a.acquire("req-contended").await.expect("acquire");
    let before = cb.get();
    assert!(b.try_acquire("req-contended").await.expect("try").is_none());
    report.figure(
        IMP,
        s,
        "req_contended_try",
        (cb.get() - before) as f64,
        "req",
        "try_acquire on a lock another client holds",
    );
    let before = cb.get();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire("req-contended").await })
    };
    sleep(Duration::from_millis(1500)).await;
    held.release().await.expect("release");
    let g = waiter.await.expect("join").expect("acquire");
    report.figure(
        IMP,
        s,
        "req_contended_acquire",
        (cb.get() - before) as f64,
        "req",
        "acquire waiting through a 1.5 s hold by another client (1 s retry)",
    );
    g.release().await.expect("release");

    // Per held lock / per waiting client per minute, default settings.
    let g = a.acquire("per-minute").await.expect("acquire");
    let w = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire("per-minute").await })
    };
    // From after the waiter's first attempt, as for lynk.
    sleep(Duration::from_millis(200)).await;
    let (h0, w0) = (ca.get(), cb.get());
    sleep(sizes.window).await;
    let per_min = 60.0 / sizes.window.as_secs_f64();
    let note = format!(
        "counted over {:.1} s after the waiter's first attempt, default settings (ttl 60 s, extend every 30 s)",
        sizes.window.as_secs_f64()
    );
    report.figure(
        IMP,
        s,
        "req_held_per_min",
        (ca.get() - h0) as f64 * per_min,
        "req/min",
        &format!("{note}; the window is shorter than one extension, see req_held_per_min_hb"),
    );
    report.figure(
        IMP,
        s,
        "req_wait_per_min",
        (cb.get() - w0) as f64 * per_min,
        "req/min",
        &note,
    );
    w.abort();
    g.release().await.expect("release");
    // Heartbeats counted with a 2 s ttl (extend every 1 s), scaled to the default 30 s period.
    let (c2, cc2) = env.client(Some(2)).await;
    let g = c2.acquire("per-minute-hb").await.expect("acquire");
    let h0 = cc2.get();
    let win = sizes.window.min(Duration::from_secs(4));
    sleep(win).await;
    let per_s = (cc2.get() - h0) as f64 / win.as_secs_f64();
    report.figure(IMP, s, "req_held_per_min_hb", per_s * 60.0 / 30.0, "req/min",
        &format!("extensions counted with ttl 2 s over {:.1} s ({:.2}/s), scaled to the default 30 s period", win.as_secs_f64(), per_s));
    g.release().await.expect("release");

    // In-process handover between two tasks of one client.
    let mut samples = Vec::new();
    let mut guard = a.acquire("handover").await.expect("acquire");
    for _ in 0..sizes.handovers.min(20) {
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            let g = a2.acquire("handover").await.expect("acquire");
            (now(), g)
        });
        sleep(Duration::from_millis(rand::thread_rng().gen_range(1..4))).await;
        let t = now();
        guard.release().await.expect("release");
        let (ta, g) = waiter.await.expect("join");
        samples.push(ta.saturating_duration_since(t));
        guard = g;
    }
    guard.release().await.expect("release");
    let n = samples.len();
    let (p50, p99) = p50_p99_ms(&mut samples);
    let note = format!("{n} handovers between two tasks of one client");
    report.figure(IMP, s, "handover_inproc_p50_ms", p50, "ms", &note);
    report.figure(IMP, s, "handover_inproc_p99_ms", p99, "ms", &note);

    // Throughput and CPU. (`release` unlocks locally before its delete, so a
    // tight loop on one key may find its own delete still in flight: that
    // costs a 1 s retry; measured as is.)
    let (t0, c0) = (now(), cpu_time());
    let n = sizes.cycles_one_lock;
    for _ in 0..n {
        a.acquire("one-lock")
            .await
            .expect("acquire")
            .release()
            .await
            .expect("release");
    }
    let (el, cpu) = (now() - t0, cpu_time() - c0);
    report.figure(
        IMP,
        s,
        "cycles_per_s_one_lock",
        n as f64 / el.as_secs_f64(),
        "cycles/s",
        &format!("emulator-bound; {n} sequential acquire+release"),
    );
    report.figure(
        IMP,
        s,
        "cpu_us_per_cycle",
        cpu.as_secs_f64() * 1e6 / n as f64,
        "us",
        "client process CPU (user+sys, getrusage) per cycle, one lock",
    );
    let (t0, c0) = (now(), cpu_time());
    join_all((0..sizes.many_locks).map(|i| {
        let a = a.clone();
        async move {
            for _ in 0..sizes.cycles_per_lock {
                a.acquire(format!("many-{i}"))
                    .await
                    .expect("acquire")
                    .release()
                    .await
                    .expect("release");
            }
        }
    }))
    .await;
    let (el, cpu) = (now() - t0, cpu_time() - c0);
    let n = (sizes.many_locks * sizes.cycles_per_lock) as f64;
    report.figure(
        IMP,
        s,
        "cycles_per_s_many_locks",
        n / el.as_secs_f64(),
        "cycles/s",
        &format!(
            "emulator-bound; {} locks concurrently, one client",
            sizes.many_locks
        ),
    );
    report.figure(
        IMP,
        s,
        "cpu_us_per_cycle_many",
        cpu.as_secs_f64() * 1e6 / n,
        "us",
        "client process CPU per cycle, many locks",
    );
}
