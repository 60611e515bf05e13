//! The benchmark suite, written once for any lock implementation
//! ([`LockImpl`]: lynk or dynamodb-lease): requests per operation, requests
//! per minute held and waiting, in-process handover, throughput and client
//! CPU per cycle.

use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rand::Rng;
use tokio::task::JoinHandle;

use crate::counting::Counter;
use crate::env::Server;
use crate::util::{cpu_time, now, p50_p99_ms, sleep, Report};

/// A lock implementation under measurement, as the suite and the
/// cross-process worker drive it. Its calls panic on an error: a benchmark
/// has no use for a failed run.
#[async_trait]
pub trait LockImpl: Send + Sync + 'static {
    /// The figures' `impl` column.
    const NAME: &'static str;
    /// How a waiter retries, for the notes.
    const RETRY: &'static str;
    /// The settings the per-minute figures are counted at, for their notes.
    const DEFAULTS: &'static str;
    /// Added to the note of `req_held_per_min`.
    const HELD_NOTE: &'static str = "";
    /// Whether a release hands over to a waiter of the same client in its
    /// own write (then `req_local_handover` is measured).
    const LOCAL_HANDOVER: bool;
    /// At most this many in-process handovers.
    const MAX_HANDOVERS: usize = usize::MAX;

    type Client: Clone + Send + Sync + 'static;
    type Lock: Clone + Send + Sync + 'static;
    type Held: Send + 'static;

    /// A client with default settings, and its request counter.
    async fn new_client(&self) -> (Self::Client, Counter);
    /// The lock called `name`, through `client`.
    fn lock(client: &Self::Client, name: &str) -> Self::Lock;
    /// Waits until the lock is held.
    async fn acquire(lock: &Self::Lock) -> Self::Held;
    /// One attempt: `None` when another holds the lock.
    async fn try_acquire(lock: &Self::Lock) -> Option<Self::Held>;
    async fn release(held: Self::Held);
    /// Ends a client's work (nothing, where there is none to end).
    async fn shutdown(_client: Self::Client) {}
    /// Figures of this implementation's own, after the per-minute ones.
    async fn own_figures(&self, _server: &str, _sizes: Sizes, _report: &Report) {}
    /// The client's own counters, as `key=value` words (the cross-process
    /// worker's `metrics` answer); empty where the implementation has none.
    fn metrics_words(_client: &Self::Client) -> String {
        String::new()
    }
}

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
                // The "10 s wait" (the first polls come quicker).
                window: Duration::from_secs(10),
            },
        }
    }
}

const MEMORY: &str = "memory";

/// Every figure of `imp` on `server`. On the in-memory backend the
/// per-minute figures are counted apart, over a minute of paused (virtual)
/// time ([`per_minute`] on a paused runtime).
pub async fn run<I: LockImpl>(imp: &I, server: &str, sizes: Sizes, report: &Report) {
    requests(imp, server, report).await;
    if server != MEMORY {
        let note = format!(
            "counted over {:.1} s after the waiter's first attempt, {}",
            sizes.window.as_secs_f64(),
            I::DEFAULTS
        );
        // The waiter's first attempt is the acquisition, counted in
        // `req_contended_acquire`; count what waiting costs from 200 ms on.
        let settle = Duration::from_millis(200);
        per_minute(imp, server, settle, sizes.window, &note, report).await;
        imp.own_figures(server, sizes, report).await;
    }
    let rounds = sizes.handovers.min(I::MAX_HANDOVERS);
    handover_in_process(imp, server, rounds, report).await;
    throughput(imp, server, sizes, report).await;
}

fn spawn_acquire<I: LockImpl>(lock: I::Lock) -> JoinHandle<I::Held> {
    tokio::spawn(async move { I::acquire(&lock).await })
}

/// Queues a waiter on `lock`, releases `held` after `hold`: the waiter's
/// grant, and the requests `counter` counted from before the waiter started.
async fn wait_out<I: LockImpl>(
    held: I::Held,
    lock: I::Lock,
    hold: Duration,
    counter: &Counter,
) -> (I::Held, f64) {
    let before = counter.get();
    let waiter = spawn_acquire::<I>(lock);
    sleep(hold).await;
    I::release(held).await;
    let g = waiter.await.expect("join");
    (g, (counter.get() - before) as f64)
}

async fn cycles<I: LockImpl>(client: &I::Client, name: &str, n: u64) {
    let lock = I::lock(client, name);
    for _ in 0..n {
        I::release(I::acquire(&lock).await).await;
    }
}

/// Requests per uncontended cycle, per contended try, per contended acquire
/// that waits through another client's hold, and per local handover.
async fn requests<I: LockImpl>(imp: &I, s: &str, report: &Report) {
    let (a, ca) = imp.new_client().await;
    let (b, cb) = imp.new_client().await;

    // Uncontended acquire + release, averaged over 10 cycles.
    let before = ca.get();
    cycles::<I>(&a, "req-cycle", 10).await;
    let per = (ca.get() - before) as f64 / 10.0;
    let note = "uncontended acquire + release";
    report.figure(I::NAME, s, "req_cycle", per, "req", note);

    // A contended try_acquire from another client.
    let held = I::acquire(&I::lock(&a, "req-contended")).await;
    let before = cb.get();
    assert!(I::try_acquire(&I::lock(&b, "req-contended"))
        .await
        .is_none());
    let note = "try_acquire on a lock another client holds";
    let n = (cb.get() - before) as f64;
    report.figure(I::NAME, s, "req_contended_try", n, "req", note);

    // A contended acquire that waits 1.5 s for the other client's release.
    let lock = I::lock(&b, "req-contended");
    let (g, n) = wait_out::<I>(held, lock, Duration::from_millis(1500), &cb).await;
    let note = format!(
        "acquire waiting through a 1.5 s hold by another client ({})",
        I::RETRY
    );
    report.figure(I::NAME, s, "req_contended_acquire", n, "req", &note);
    I::release(g).await;

    if I::LOCAL_HANDOVER {
        // A release that hands over to a waiter of the same client.
        let lock = I::lock(&a, "req-handover");
        let g = I::acquire(&lock).await;
        let (g2, n) = wait_out::<I>(g, lock, Duration::from_millis(20), &ca).await;
        let note = "release + grant to a waiter in the same client (waiter sent none)";
        report.figure(I::NAME, s, "req_local_handover", n, "req", note);
        I::release(g2).await;
    }
    I::shutdown(a).await;
    I::shutdown(b).await;
}

/// Requests per held lock and per waiting client, per minute: counted over
/// `window` from `settle` after the waiter's first attempt.
pub async fn per_minute<I: LockImpl>(
    imp: &I,
    s: &str,
    settle: Duration,
    window: Duration,
    note: &str,
    report: &Report,
) {
    let (holder, ch) = imp.new_client().await;
    let (waiter, cw) = imp.new_client().await;
    let g = I::acquire(&I::lock(&holder, "per-minute")).await;
    let w = spawn_acquire::<I>(I::lock(&waiter, "per-minute"));
    sleep(settle).await;
    let (h0, w0) = (ch.get(), cw.get());
    sleep(window).await;
    let per_min = 60.0 / window.as_secs_f64();
    let held = (ch.get() - h0) as f64 * per_min;
    let waited = (cw.get() - w0) as f64 * per_min;
    let held_note = format!("{note}{}", I::HELD_NOTE);
    report.figure(I::NAME, s, "req_held_per_min", held, "req/min", &held_note);
    report.figure(I::NAME, s, "req_wait_per_min", waited, "req/min", note);
    I::release(g).await;
    if let Ok(g) = w.await {
        I::release(g).await;
    }
    I::shutdown(holder).await;
    I::shutdown(waiter).await;
}

/// Release → the next holder's acquire returning, between two tasks of one client.
async fn handover_in_process<I: LockImpl>(imp: &I, s: &str, rounds: usize, report: &Report) {
    let (client, _) = imp.new_client().await;
    let lock = I::lock(&client, "handover");
    let mut guard = I::acquire(&lock).await;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let l2 = lock.clone();
        let waiter = tokio::spawn(async move {
            let g = I::acquire(&l2).await;
            (now(), g)
        });
        let wait_ms = rand::thread_rng().gen_range(1..4);
        sleep(Duration::from_millis(wait_ms)).await; // the waiter is queued
        let t_release = now();
        I::release(guard).await;
        let (t_acquired, g) = waiter.await.expect("join");
        samples.push(t_acquired.saturating_duration_since(t_release));
        guard = g;
    }
    I::release(guard).await;
    let (p50, p99) = p50_p99_ms(&mut samples);
    let note = format!("{rounds} handovers between two tasks of one client");
    report.figure(I::NAME, s, "handover_inproc_p50_ms", p50, "ms", &note);
    report.figure(I::NAME, s, "handover_inproc_p99_ms", p99, "ms", &note);
    I::shutdown(client).await;
}

/// Cycles per second on one lock and across many; client CPU per cycle.
async fn throughput<I: LockImpl>(imp: &I, s: &str, sizes: Sizes, report: &Report) {
    let (client, _) = imp.new_client().await;
    cycles::<I>(&client, "warm-up", 5).await;

    let (t0, c0) = (now(), cpu_time());
    cycles::<I>(&client, "one-lock", sizes.cycles_one_lock).await;
    let (el, cpu) = (now() - t0, cpu_time() - c0);
    let n = sizes.cycles_one_lock as f64;
    let bound = if s == MEMORY { "" } else { "emulator-bound; " };
    report.figure(
        I::NAME,
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
        I::NAME,
        s,
        "cpu_us_per_cycle",
        cpu.as_secs_f64() * 1e6 / n,
        "us",
        "client process CPU (user+sys, getrusage) per cycle, one lock",
    );

    let (t0, c0) = (now(), cpu_time());
    let names: Vec<String> = (0..sizes.many_locks).map(|i| format!("many-{i}")).collect();
    join_all(
        names
            .iter()
            .map(|name| cycles::<I>(&client, name, sizes.cycles_per_lock)),
    )
    .await;
    let (el, cpu) = (now() - t0, cpu_time() - c0);
    let n = (sizes.many_locks * sizes.cycles_per_lock) as f64;
    report.figure(
        I::NAME,
        s,
        "cycles_per_s_many_locks",
        n / el.as_secs_f64(),
        "cycles/s",
        &format!("{bound}{} locks concurrently, one client", sizes.many_locks),
    );
    report.figure(
        I::NAME,
        s,
        "cpu_us_per_cycle_many",
        cpu.as_secs_f64() * 1e6 / n,
        "us",
        "client process CPU per cycle, many locks",
    );
    I::shutdown(client).await;
}
