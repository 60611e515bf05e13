//! A short-lived process (a Lambda handler, a cron job) holding a lock
//! without a background heartbeat: one write to acquire, one to release,
//! nothing left running when the process ends.
//!
//! ```text
//! cargo run -p lynk-examples --example short_lived
//! ```

use std::time::Duration;

use lynk_core::{Clock, LockClient, LockError, SystemClock};
use lynk_testkit::MemoryBackend;

/// The handler: does its work only if it can finish inside the lease.
async fn handler(client: &LockClient, work: Duration) -> Result<&'static str, LockError> {
    let lock = client
        .create_lock("daily-export")
        .with_lease(Duration::from_secs(60)) // longer than the work can take
        .without_heartbeat();
    let Some(guard) = lock.try_acquire().await? else {
        return Ok("another invocation is exporting; skipping");
    };
    if SystemClock.now() + work >= guard.safe_deadline() {
        guard.release().await?;
        return Ok("not enough lease left for the work; skipping");
    }
    guard.run(SystemClock.sleep(work)).await?; // the export; cancelled if the lease runs out
    guard.release().await?;
    Ok("exported")
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone())?;
    let work = lynk_examples::duration_from_env("LYNK_EXAMPLE_HOLD_MS", Duration::from_millis(200));
    let (a, b) = tokio::join!(handler(&client, work), async {
        SystemClock.sleep(Duration::from_millis(20)).await;
        handler(&client, work).await
    });
    println!("invocation 1: {}", a?);
    println!("invocation 2: {}", b?);
    let counts = backend.counts();
    println!(
        "store requests: {} writes, {} reads",
        counts.writes, counts.reads
    );
    assert_eq!(
        counts.writes, 2,
        "one write to acquire, one to release, no heartbeats"
    );
    Ok(())
}
