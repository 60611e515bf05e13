//! Contention: concurrent compare-and-sets on one version, and clients
//! racing on a shared read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lynk_core::{Condition, LockRecord, ReleaseMode, WriteError};

use super::ctx::{client, must_read, must_write, next, request, update, Ctx};

pub(super) async fn concurrent_cas_has_one_winner(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("cas");
    let base = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    let attempts = (0..16).map(|_| {
        let backend = ctx.backend.clone();
        let req = update(&key, &base, next());
        async move { backend.write(req).await }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<&LockRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    ensure!(
        winners.len() == 1,
        "{} of 16 concurrent writes on one version applied; exactly one must",
        winners.len()
    );
    for r in &results {
        if let Err(WriteError::Backend(e)) = r {
            return Err(format!("backend error under contention: {e}"));
        }
    }
    must_read(ctx, &key, winners[0], "the winner's record").await
}

pub(super) async fn race_counter_is_exact(ctx: &Ctx) -> Result<(), String> {
    const CLIENTS: usize = 3;
    const TASKS: usize = 3;
    const ROUNDS: usize = 3;
    let key = ctx.key("race");
    let counter = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for c in 0..CLIENTS {
        let client = client(ctx, &format!("racer-{c}"), ReleaseMode::KeepRecord)?;
        for _ in 0..TASKS {
            let (client, key, counter, inside) =
                (client.clone(), key.clone(), counter.clone(), inside.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let guard = client
                        .create_lock(key.clone())
                        .acquire()
                        .await
                        .map_err(|e| e.to_string())?;
                    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                        return Err("two holders at once".to_owned());
                    }
                    // A read-modify-write that loses updates unless exclusive.
                    let seen = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(seen + 1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            }));
        }
    }
    for h in handles {
        h.await.map_err(|e| format!("task panicked: {e}"))??;
    }
    let total = counter.load(Ordering::SeqCst);
    let expected = (CLIENTS * TASKS * ROUNDS) as u64;
    ensure!(
        total == expected,
        "counter is {total}, expected {expected}: mutual exclusion broke"
    );
    Ok(())
}
