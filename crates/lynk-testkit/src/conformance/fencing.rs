//! Fencing tokens strictly increase over release, handover,
//! delete-on-release and takeover.

use std::time::Duration;

use lynk_core::{Clock, ReleaseMode, SystemClock, TokenUpdate};

use super::ctx::{client, must_write, read, update, Ctx};

pub(super) async fn fencing_tokens_strictly_increase(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("fencing");
    let a = client(ctx, "fence-a", ReleaseMode::KeepRecord)?;
    let b = client(ctx, "fence-b", ReleaseMode::Delete)?;
    let mut tokens = Vec::new();
    let err = |e: lynk_core::LockError| e.to_string();
    // Acquire and release on one client, then another.
    let g = a.create_lock(key.clone()).acquire().await.map_err(err)?;
    tokens.push(g.fencing_token());
    g.release().await.map_err(err)?;
    let g = b.create_lock(key.clone()).acquire().await.map_err(err)?;
    tokens.push(g.fencing_token());
    // A local handover: a waiter queued behind the holder.
    let waiter = {
        let b = b.clone();
        let key = key.clone();
        tokio::spawn(async move { b.create_lock(key).acquire().await })
    };
    SystemClock.sleep(Duration::from_millis(20)).await;
    g.release().await.map_err(err)?;
    let g = waiter.await.map_err(|e| e.to_string())?.map_err(err)?;
    tokens.push(g.fencing_token());
    // Delete mode: the record goes away; the next token restarts from the wall clock.
    g.release().await.map_err(err)?;
    let g = a.create_lock(key.clone()).acquire().await.map_err(err)?;
    tokens.push(g.fencing_token());
    // A crashed holder: a record written directly, never heartbeated, then taken over.
    drop(g.release().await);
    let cur = read(ctx, &key).await?.ok_or("record vanished")?;
    let mut crash = update(&key, &cur, TokenUpdate::Next { initial: 1 });
    crash.lease_duration = Duration::from_millis(300);
    crash.host = "crashed".to_owned();
    let crashed = must_write(ctx, crash).await?;
    tokens.push(crashed.fencing_token.ok_or("token missing")?);
    let g = b
        .create_lock(key.clone())
        .acquire_timeout(Duration::from_secs(10))
        .await
        .map_err(err)?;
    tokens.push(g.fencing_token());
    g.release().await.map_err(err)?;
    ensure!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens did not strictly increase: {tokens:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
