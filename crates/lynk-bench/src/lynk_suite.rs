//! lynk's figures on one server: requests per operation, in-process
//! handover, throughput and client CPU per cycle.

use std::time::Duration;

use futures::future::join_all;
use lynk_core::LockClient;
use rand::Rng;

use crate::env::{Env, Server};
use crate::util::{cpu_time, now, p50_p99_ms, sleep, Report};

/// Iteration counts.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub cycles_one_lock: u64,
    pub many_locks: u64,
    pub cycles_per_lock: u64,
    pub handovers: usize,
    pub window: Duration,
}

impl Sizes {
    pub fn for_server(server: Server, smoke: bool) -> Sizes {
        match (server, smoke) {
            (_, true) => Sizes {
                cycles_one_lock: 20,
                many_locks: 4,
                cycles_per_lock: 5,
                handovers: 5,
                window: Duration::from_millis(1500),
            },
            (Server::Memory, false) => Sizes {
                cycles_one_lock: 50_000,
                many_locks: 64,
                cycles_per_lock: 1_000,
                handovers: 1_000,
                window: Duration::from_secs(60),
            },
            (_, false) => Sizes {
                cycles_one_lock: 400,
                many_locks: 16,
                cycles_per_lock: 40,
                handovers: 100,
                window: Duration::from_millis(7_500),
            },
        }
    }
}

const IMP: &str = "lynk";

pub async fn run(env: &Env, sizes: Sizes, report: &Report) {
    requests(env, report).await;
    if env.server != Server::Memory {
        // The memory backend's per-minute figures are counted over a whole
        // minute of paused (virtual) time in `per_minute_virtual`.
        per_minute_real(env, sizes.window, report).await;
    }
    handover_in_process(env, sizes.handovers, report).await;
    throughput(env, sizes, report).await;
}

/// Requests per uncontended cycle, per contended try, per contended acquire
/// that waits through another client's hold, and per local handover.
async fn requests(env: &Env, report: &Report) {
    let s = env.server.label();
    let (a, ca) = env.client(None).await;
    let (b, cb) = env.client(None).await;

    // Uncontended acquire + release, averaged over 10 cycles.
    let lock = a.create_lock("req-cycle");
    let before = ca.get();
    for _ in 0..10 {
        lock.acquire()
            .await
            .expect("acquire")
            .release()
            .await
            .expect("release");
    }
    let per = (ca.get() - before) as f64 / 10.0;
    report.figure(
        IMP,
        s,
        "req_cycle",
        per,
        "req",
        "uncontended acquire + release",
    );

    // A contended try_acquire from another client.
    let held = a
        .create_lock("req-contended")
        .acquire()
        .await
        .expect("acquire");
    let before = cb.get();
    assert!(b
        .create_lock("req-contended")
        .try_acquire()
        .await
        .expect("try")
        .is_none());
    report.figure(
        IMP,
        s,
        "req_contended_try",
        (cb.get() - before) as f64,
        "req",
        "try_acquire on a lock another client holds",
    );

    // A contended acquire that waits 1.5 s for the other client's release.
    let before = cb.get();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.create_lock("req-contended").acquire().await })
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
        "acquire waiting through a 1.5 s hold by another client (default 1 s poll)",
    );
    g.release().await.expect("release");

    // A release that hands over to a waiter of the same client.
    let lock = a.create_lock("req-handover");
    let g = lock.acquire().await.expect("acquire");
    let l2 = lock.clone();
    let waiter = tokio::spawn(async move { l2.acquire().await });
    sleep(Duration::from_millis(20)).await;
    let before = ca.get();
    g.release().await.expect("release");
    let g2 = waiter.await.expect("join").expect("acquire");
    report.figure(
        IMP,
        s,
        "req_local_handover",
        (ca.get() - before) as f64,
        "req",
        "release + grant to a waiter in the same client (waiter sent none)",
    );
    g2.release().await.expect("release");
    a.shutdown().await;
    b.shutdown().await;
}

/// Per held lock and per waiting client, counted over a window of real time
/// with default settings (lease 20 s: heartbeat every 6.7 s; poll every 1 s),
/// from 200 ms after the waiter's first attempt.
async fn per_minute_real(env: &Env, window: Duration, report: &Report) {
    let s = env.server.label();
    let (holder, ch) = env.client(None).await;
    let (waiter, cw) = env.client(None).await;
    let g = holder
        .create_lock("per-minute")
        .acquire()
        .await
        .expect("acquire");
    let w = {
        let waiter = waiter.clone();
        tokio::spawn(async move { waiter.create_lock("per-minute").acquire().await })
    };
    // The waiter's first attempt (a conditional write, and on dynalite the
    // read of the holder's record) is the acquisition, counted in
    // `req_contended_acquire`; count what waiting costs from here, as on the
    // memory backend.
    sleep(Duration::from_millis(200)).await;
    let h0 = ch.get();
    let w0 = cw.get();
    sleep(window).await;
    let held = (ch.get() - h0) as f64;
    let waited = (cw.get() - w0) as f64;
    let per_min = 60.0 / window.as_secs_f64();
    let note = format!(
        "counted over {:.1} s after the waiter's first attempt, default settings",
        window.as_secs_f64()
    );
    report.figure(IMP, s, "req_held_per_min", held * per_min, "req/min", &note);
    report.figure(
        IMP,
        s,
        "req_wait_per_min",
        waited * per_min,
        "req/min",
        &note,
    );
    g.release().await.expect("release");
    if let Ok(Ok(g)) = w.await {
        let _ = g.release().await;
    }
    holder.shutdown().await;
    waiter.shutdown().await;
}

/// The same on the memory backend, over exactly one minute of tokio's paused
/// time (so the default 20 s lease and 1 s poll run unchanged, in milliseconds).
pub fn per_minute_virtual(report: &Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let env = Env::new(Server::Memory, None).await;
        let (holder, ch) = env.client(None).await;
        let (waiter, cw) = env.client(None).await;
        let g = holder
            .create_lock("per-minute")
            .acquire()
            .await
            .expect("acquire");
        let h0 = ch.get();
        let w = {
            let waiter = waiter.clone();
            tokio::spawn(async move { waiter.create_lock("per-minute").acquire().await })
        };
        sleep(Duration::from_millis(10)).await; // the waiter's first (failed) write
        let w0 = cw.get();
        sleep(Duration::from_secs(60)).await;
        let note = "counted over 60 s of virtual time, default settings";
        report.figure(
            IMP,
            "memory",
            "req_held_per_min",
            (ch.get() - h0) as f64,
            "req/min",
            note,
        );
        report.figure(
            IMP,
            "memory",
            "req_wait_per_min",
            (cw.get() - w0) as f64,
            "req/min",
            note,
        );
        g.release().await.expect("release");
        let _ = w.await;
    });
}

/// Release → the next holder's acquire returning, between two tasks of one client.
async fn handover_in_process(env: &Env, rounds: usize, report: &Report) {
    let s = env.server.label();
    let (client, _) = env.client(None).await;
    let lock = client.create_lock("handover");
    let mut guard = lock.acquire().await.expect("acquire");
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let l2 = lock.clone();
        let waiter = tokio::spawn(async move {
            let g = l2.acquire().await.expect("acquire");
            (now(), g)
        });
        let wait_ms = rand::thread_rng().gen_range(1..4);
        sleep(Duration::from_millis(wait_ms)).await; // the waiter is queued
        let t_release = now();
        guard.release().await.expect("release");
        let (t_acquired, g) = waiter.await.expect("join");
        samples.push(t_acquired.saturating_duration_since(t_release));
        guard = g;
    }
    guard.release().await.expect("release");
    let (p50, p99) = p50_p99_ms(&mut samples);
    let note = format!("{rounds} handovers between two tasks of one client");
    report.figure(IMP, s, "handover_inproc_p50_ms", p50, "ms", &note);
    report.figure(IMP, s, "handover_inproc_p99_ms", p99, "ms", &note);
    client.shutdown().await;
}

async fn cycles(client: &LockClient, name: String, n: u64) {
    let lock = client.create_lock(name);
    for _ in 0..n {
        lock.acquire()
            .await
            .expect("acquire")
            .release()
            .await
            .expect("release");
    }
}

/// Cycles per second on one lock and across many; client CPU per cycle.
async fn throughput(env: &Env, sizes: Sizes, report: &Report) {
    let s = env.server.label();
    let (client, _) = env.client(None).await;
    cycles(&client, "warm-up".into(), 5).await;

    let (t0, c0) = (now(), cpu_time());
    cycles(&client, "one-lock".into(), sizes.cycles_one_lock).await;
    let (el, cpu) = (now() - t0, cpu_time() - c0);
    let n = sizes.cycles_one_lock as f64;
    let bound = if env.server == Server::Memory {
        ""
    } else {
        "emulator-bound; "
    };
    report.figure(
        IMP,
        s,
        "cycles_per_s_one_lock",
        n / el.as_secs_f64(),
        "cycles/s",
        &format!(
            "{bound}{} sequential acquire+release",
            sizes.cycles_one_lock
        ),
    );
    report.figure(
        IMP,
        s,
        "cpu_us_per_cycle",
        cpu.as_secs_f64() * 1e6 / n,
        "us",
        "client process CPU (user+sys, getrusage) per cycle, one lock",
    );

    let (t0, c0) = (now(), cpu_time());
    join_all(
        (0..sizes.many_locks).map(|i| cycles(&client, format!("many-{i}"), sizes.cycles_per_lock)),
    )
    .await;
    let (el, cpu) = (now() - t0, cpu_time() - c0);
    let n = (sizes.many_locks * sizes.cycles_per_lock) as f64;
    report.figure(
        IMP,
        s,
        "cycles_per_s_many_locks",
        n / el.as_secs_f64(),
        "cycles/s",
        &format!("{bound}{} locks concurrently, one client", sizes.many_locks),
    );
    report.figure(
        IMP,
        s,
        "cpu_us_per_cycle_many",
        cpu.as_secs_f64() * 1e6 / n,
        "us",
        "client process CPU per cycle, many locks",
    );
    client.shutdown().await;
}
