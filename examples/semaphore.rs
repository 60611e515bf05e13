//! A semaphore limiting how many jobs run at once, across processes.
//!
//! Three "machines" (clients sharing one store) each try to run four jobs;
//! the semaphore lets at most two jobs run at any moment, whoever runs them.
//! Each job carries its permit's fencing token, so a job that outlived its
//! permit could be refused by the resource it writes to (see the `fencing`
//! example).
//!
//! ```text
//! cargo run -p lynk-examples --example semaphore
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lynk_core::{LockClient, LockError};
use lynk_testkit::MemoryBackend;

const PERMITS: u32 = 2;

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let store = MemoryBackend::new();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut machines = Vec::new();
    for m in 0..3 {
        let client = LockClient::builder(store.clone())
            .host_identifier(format!("machine-{m}"))
            .build()?;
        for j in 0..4 {
            let jobs = client.semaphore("semaphore/report-jobs", PERMITS);
            let (running, most) = (running.clone(), most.clone());
            let clock = client.clock().clone();
            machines.push(tokio::spawn(async move {
                let permit = jobs.acquire().await?;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                println!(
                    "machine-{m} job {j}: running with permit token {} ({now} running)",
                    permit.fencing_token()
                );
                permit.run(clock.sleep(Duration::from_millis(50))).await?;
                running.fetch_sub(1, Ordering::SeqCst);
                permit.release().await
            }));
        }
    }
    for job in machines {
        job.await.expect("job task")?;
    }
    let most = most.load(Ordering::SeqCst);
    println!("12 jobs done; at most {most} ran at once (limit {PERMITS})");
    assert!(most <= PERMITS as usize);
    Ok(())
}
