//! Figures of the primitives built on the lock engine: leader failover
//! (after a resignation and after a crash) and semaphore throughput.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;

use crate::env::Env;
use crate::util::{now, p50_p99_ms, sleep, Report};

const NAME: &str = "lynk";

/// Every primitive figure on `env`'s server.
pub async fn run(env: &Env, server: &str, smoke: bool, report: &Report) {
    let rounds = if smoke { 2 } else { 10 };
    failover_after_resign(env, server, rounds, report).await;
    failover_after_crash(env, server, if smoke { 1 } else { 3 }, report).await;
    let window = if smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    semaphore_throughput(env, server, 1, window, report).await;
    semaphore_throughput(env, server, 2, window, report).await;
}

/// A leader resigns while a candidate of another client waits: resign →
/// the candidate's `campaign` returning (the grant is read at the
/// candidate's next poll).
async fn failover_after_resign(env: &Env, s: &str, rounds: usize, report: &Report) {
    let (a, _) = env.client(None).await;
    let (b, _) = env.client(None).await;
    let name = crate::env::unique("leader-resign");
    let mut leader = a.election(&name).campaign().await.expect("campaign");
    let mut clients = [a, b];
    let mut samples = Vec::with_capacity(rounds);
    let mut last_term = leader.term();
    for _ in 0..rounds {
        let follower = clients[1].election(&name);
        let candidate = tokio::spawn(async move {
            let l = follower.campaign().await.expect("campaign");
            (now(), l)
        });
        // Resign at a random point of the candidate's polling.
        let wait = rand::thread_rng().gen_range(100..1_600);
        sleep(Duration::from_millis(wait)).await;
        let t0 = now();
        leader.resign().await.expect("resign");
        let (t1, next) = candidate.await.expect("join");
        assert!(next.term() > last_term, "terms only go up");
        last_term = next.term();
        samples.push(t1.saturating_duration_since(t0));
        leader = next;
        clients.swap(0, 1);
    }
    leader.resign().await.expect("resign");
    let (p50, p99) = p50_p99_ms(&mut samples);
    let note = format!(
        "{rounds} resignations with a candidate of another client waiting (default poll 1.5 s, resigned at a random point of it)"
    );
    report.figure(NAME, s, "leader_failover_resign_p50_ms", p50, "ms", &note);
    report.figure(NAME, s, "leader_failover_resign_p99_ms", p99, "ms", &note);
    for c in clients {
        c.shutdown().await;
    }
}

/// A leader crashes (stops heartbeating without resigning) while a
/// candidate of another client waits: crash → the candidate's `campaign`
/// returning. Bound: lease × (1 + d) + one poll after its last heartbeat.
async fn failover_after_crash(env: &Env, s: &str, rounds: usize, report: &Report) {
    let lease = Duration::from_secs(2);
    let mut samples = Vec::with_capacity(rounds);
    let mut bound = Duration::ZERO;
    for _ in 0..rounds {
        let (a, _) = env.client(Some(lease)).await;
        let (b, _) = env.client(Some(lease)).await;
        let config = b.config().clone();
        bound =
            config.takeover_after(lease).expect("short lease") + config.poll_interval_for(lease);
        let name = crate::env::unique("leader-crash");
        let leader = a.election(&name).campaign().await.expect("campaign");
        let follower = b.election(&name);
        let candidate = tokio::spawn(async move {
            let l = follower.campaign().await.expect("campaign");
            (now(), l)
        });
        sleep(Duration::from_millis(300)).await;
        let term = leader.term();
        let t0 = now();
        leader.into_guard().detach(); // the crash: no more heartbeats, no release
        let (t1, next) = candidate.await.expect("join");
        assert!(next.term() > term, "the new leader has a higher term");
        samples.push(t1.saturating_duration_since(t0));
        next.resign().await.expect("resign");
        a.shutdown().await;
        b.shutdown().await;
    }
    let (p50, p99) = p50_p99_ms(&mut samples);
    let note = format!(
        "{rounds} crashes of a leader with lease 2 s, a candidate of another client waiting; from the crash (its lease runs from its last heartbeat, up to 0.67 s earlier); bound lease × 1.01 + one poll = {:.0} ms",
        bound.as_secs_f64() * 1e3
    );
    report.figure(NAME, s, "leader_failover_crash_p50_ms", p50, "ms", &note);
    report.figure(NAME, s, "leader_failover_crash_max_ms", p99, "ms", &note);
}

/// Six tasks cycling through a semaphore of three permits (acquire,
/// release) for `window`, on one client or split over two: permits granted
/// per second and requests per permit.
async fn semaphore_throughput(
    env: &Env,
    s: &str,
    clients: usize,
    window: Duration,
    report: &Report,
) {
    const PERMITS: u32 = 3;
    const TASKS: usize = 6;
    let name = crate::env::unique("semaphore");
    let mut made = Vec::new();
    for _ in 0..clients {
        made.push(env.client(None).await);
    }
    let before: u64 = made.iter().map(|(_, c)| c.get()).sum();
    let granted = Arc::new(AtomicU64::new(0));
    let t0 = now();
    let end = t0 + window;
    let tasks = (0..TASKS).map(|i| {
        let sem = made[i % clients].0.semaphore(&name, PERMITS);
        let granted = granted.clone();
        async move {
            while now() < end {
                let left = end.saturating_duration_since(now());
                match sem.acquire_timeout(left).await {
                    Ok(p) => {
                        granted.fetch_add(1, Ordering::Relaxed);
                        p.release().await.expect("release");
                    }
                    Err(_) => break,
                }
            }
        }
    });
    join_all(tasks).await;
    let elapsed = now() - t0;
    let after: u64 = made.iter().map(|(_, c)| c.get()).sum();
    let n = granted.load(Ordering::Relaxed);
    let note = format!(
        "{TASKS} tasks on {clients} client(s) cycling acquire + release on {PERMITS} permits for {:.0} s",
        window.as_secs_f64()
    );
    let metric = format!("semaphore_permits_per_s_{clients}c");
    report.figure(
        NAME,
        s,
        &metric,
        n as f64 / elapsed.as_secs_f64(),
        "permits/s",
        &note,
    );
    let metric = format!("semaphore_req_per_permit_{clients}c");
    let per = (after - before) as f64 / n.max(1) as f64;
    report.figure(NAME, s, &metric, per, "req", &note);
    for (c, _) in made {
        c.shutdown().await;
    }
}
