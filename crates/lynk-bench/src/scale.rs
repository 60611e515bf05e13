//! Many locks held at once by one client on the in-memory backend.

use std::time::Duration;

use futures::stream::{self, StreamExt};

use crate::env::{Env, Server};
use crate::util::{cpu_time, now, rss_bytes, sleep, Report};

pub async fn run(locks: usize, lease: Duration, hold: Duration, report: &Report) {
    let env = Env::new(Server::Memory, None).await;
    let rss0 = rss_bytes();
    let (client, _) = env.client(Some(lease)).await;
    let t0 = now();
    let guards: Vec<_> = stream::iter(0..locks)
        .map(|i| {
            let lock = client.create_lock(format!("scale-{i}"));
            async move {
                lock.try_acquire()
                    .await
                    .expect("try_acquire")
                    .expect("free")
            }
        })
        .buffer_unordered(1024)
        .collect()
        .await;
    let acquire_time = now() - t0;
    let rss1 = rss_bytes();
    let m0 = client.metrics();
    let c0 = cpu_time();
    sleep(hold).await;
    let m1 = client.metrics();
    let cpu = cpu_time() - c0;
    let lost = guards.iter().filter(|g| g.is_lost()).count();
    let s = "memory";
    let note = format!(
        "lease {:.1} s (heartbeat every {:.1} s), held {:.1} s",
        lease.as_secs_f64(),
        lease.as_secs_f64() / 3.0,
        hold.as_secs_f64()
    );
    report.figure(
        "lynk",
        s,
        "scale_locks_held",
        guards.len() as f64,
        "locks",
        &note,
    );
    report.figure(
        "lynk",
        s,
        "scale_acquire_per_s",
        locks as f64 / acquire_time.as_secs_f64(),
        "locks/s",
        "try_acquire of distinct locks, 1024 in flight",
    );
    report.figure(
        "lynk",
        s,
        "scale_bytes_per_lock",
        (rss1.saturating_sub(rss0)) as f64 / locks as f64,
        "bytes",
        "RSS delta / locks (client state + the in-memory store's record)",
    );
    report.figure(
        "lynk",
        s,
        "scale_heartbeats",
        (m1.heartbeats - m0.heartbeats) as f64,
        "hb",
        &note,
    );
    report.figure(
        "lynk",
        s,
        "scale_hb_cpu_us",
        cpu.as_secs_f64() * 1e6 / (m1.heartbeats - m0.heartbeats).max(1) as f64,
        "us/hb",
        "process CPU per heartbeat (engine + in-memory store)",
    );
    report.figure(
        "lynk",
        s,
        "scale_max_hb_lag_ms",
        m1.max_heartbeat_lag.as_secs_f64() * 1e3,
        "ms",
        "client.metrics().max_heartbeat_lag (due time -> send)",
    );
    report.figure(
        "lynk",
        s,
        "scale_lost_leases",
        (lost as u64 + m1.lost_leases) as f64,
        "leases",
        "must be 0",
    );
    let t0 = now();
    drop(guards);
    let shut = client.shutdown().await;
    let _ = (shut, now() - t0);
}
