//! Graceful shutdown: on a stop signal, release every lock the process holds
//! and report per lock, instead of leaving them to expire.
//!
//! ```text
//! cargo run -p lynk-examples --example graceful_shutdown
//! ```
//!
//! A real service would wait for `tokio::signal::ctrl_c()`; this example
//! sends itself the signal after a moment so it can run unattended.

use std::time::Duration;

use lynk_core::{Clock, LockClient, LockError, SystemClock};
use lynk_testkit::MemoryBackend;

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone())?;
    let mut workers = Vec::new();
    for partition in ["partition-1", "partition-2", "partition-3"] {
        let guard = client.create_lock(partition).acquire().await?;
        // Each worker runs until its lease is lost (or shutdown releases it).
        workers.push(tokio::spawn(async move {
            let outcome = guard.run(std::future::pending::<()>()).await;
            println!(
                "{} worker stopped: {}",
                guard.name(),
                outcome.err().map(|e| e.to_string()).unwrap_or_default()
            );
        }));
    }
    println!("holding {:?}", client.held_locks());

    let stop = lynk_examples::duration_from_env("LYNK_EXAMPLE_HOLD_MS", Duration::from_millis(500));
    SystemClock.sleep(stop).await; // stands for tokio::signal::ctrl_c().await

    let report = client.shutdown().await;
    println!("released {:?}; failed {:?}", report.released, report.failed);
    for w in workers {
        w.await.expect("worker");
    }
    assert!(report.is_clean());
    assert!(
        backend.snapshot().iter().all(|r| r.released),
        "every record released"
    );
    Ok(())
}
