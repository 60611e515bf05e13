//! lynk as the suite measures it, on the in-memory backend or an emulator.

use std::time::Duration;

use async_trait::async_trait;
use lynk_core::{Lock, LockClient, LockGuard};

use crate::counting::Counter;
use crate::env::{Env, Server};
use crate::suite::{self, LockImpl, Sizes};
use crate::util::Report;

#[async_trait]
impl LockImpl for Env {
    const NAME: &'static str = "lynk";
    const RETRY: &'static str = "default polls: 0.1 s after the first attempt, doubling to 1.5 s";
    const DEFAULTS: &'static str = "default settings";
    const LOCAL_HANDOVER: bool = true;

    type Client = LockClient;
    type Lock = Lock;
    type Held = LockGuard;

    async fn new_client(&self) -> (LockClient, Counter) {
        self.client(None).await
    }

    fn lock(client: &LockClient, name: &str) -> Lock {
        client.create_lock(name)
    }

    async fn acquire(lock: &Lock) -> LockGuard {
        lock.acquire().await.expect("acquire")
    }

    async fn try_acquire(lock: &Lock) -> Option<LockGuard> {
        lock.try_acquire().await.expect("try")
    }

    async fn release(held: LockGuard) {
        held.release().await.expect("release");
    }

    async fn shutdown(client: LockClient) {
        client.shutdown().await;
    }

    fn metrics_words(client: &LockClient) -> String {
        let m = client.metrics();
        format!(
            "acquired={} polls={} grants={} confirmed_grants={} wakeups={} takeovers={}",
            m.acquired, m.polls, m.grants, m.confirmed_grants, m.wakeups, m.takeovers
        )
    }
}

/// lynk's figures on `env`'s server.
pub async fn run(env: &Env, sizes: Sizes, report: &Report) {
    suite::run(env, env.server.label(), sizes, report).await;
}

/// The per-minute figures on the memory backend, over exactly one minute of
/// tokio's paused time (so the default 20 s lease and 1.5 s poll run
/// unchanged, in milliseconds).
pub fn per_minute_virtual(report: &Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let env = Env::new(Server::Memory, None).await;
        let note = format!("counted over 60 s of virtual time, {}", Env::DEFAULTS);
        let settle = Duration::from_millis(10); // the waiter's first (failed) write
        let window = Duration::from_secs(60);
        suite::per_minute(&env, "memory", settle, window, &note, report).await;
    });
}
