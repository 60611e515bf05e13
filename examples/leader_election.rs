//! Leader election: one leader among N candidates, followers read who leads
//! from the lock's payload, and a new leader takes over when the leader
//! crashes.
//!
//! Runs on the in-memory backend with the test clock, so a minute of
//! simulated leases takes milliseconds.
//!
//! ```text
//! cargo run -p lynk-examples --example leader_election
//! ```

use std::time::Duration;

use lynk_core::{Clock, LockClient, LockError};
use lynk_testkit::{MemoryBackend, TestClock};

const LEASE: Duration = Duration::from_secs(10);

/// Who leads, as followers see it: the holder's payload.
async fn current_leader(client: &LockClient) -> Result<Option<String>, LockError> {
    Ok(client
        .describe("leader")
        .await?
        .filter(|r| !r.released)
        .and_then(|r| r.payload)
        .map(|p| String::from_utf8_lossy(&p).into_owned()))
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), LockError> {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let candidates: Vec<(String, LockClient)> = (1..=3)
        .map(|i| {
            let addr = format!("10.0.0.{i}:8080");
            let client = LockClient::builder(backend.clone())
                .clock(clock.clone())
                .host_identifier(format!("node-{i}"))
                .default_lease(LEASE)
                .build()?;
            Ok((addr, client))
        })
        .collect::<Result<_, LockError>>()?;

    // Every candidate campaigns; exactly one wins, the others wait.
    let mut campaigns = Vec::new();
    for (addr, client) in &candidates {
        let lock = client.create_lock("leader").with_payload(addr.clone());
        campaigns.push(tokio::spawn(async move { lock.acquire().await }));
    }
    clock.sleep(Duration::from_millis(10)).await;
    let leader = current_leader(&candidates[0].1).await?.expect("a leader");
    println!("leader: {leader}");
    let winner = campaigns
        .iter()
        .position(|c| c.is_finished())
        .expect("one campaign won");
    let guard = campaigns.remove(winner).await.expect("task")?;
    assert_eq!(candidates[winner].0, leader);
    assert_eq!(
        campaigns.iter().filter(|c| c.is_finished()).count(),
        0,
        "one leader only"
    );

    // The leader crashes: it stops heartbeating without releasing.
    let old_token = guard.fencing_token();
    let record = backend.get("leader").expect("record");
    candidates[winner].1.shutdown().await;
    backend.put_raw(record);
    drop(guard);
    let crashed_at = clock.now();

    // A follower takes over once the lease has visibly gone stale.
    let mut next = None;
    while next.is_none() {
        clock.sleep(Duration::from_millis(100)).await;
        if let Some(i) = campaigns.iter().position(|c| c.is_finished()) {
            next = Some(campaigns.remove(i).await.expect("task")?);
        }
    }
    let new_leader = current_leader(&candidates[(winner + 1) % 3].1)
        .await?
        .expect("a new leader");
    println!(
        "{leader} crashed; {new_leader} took over after {:?}",
        clock.now() - crashed_at
    );
    assert_ne!(new_leader, leader);
    assert!(
        clock.now() - crashed_at >= LEASE,
        "not before the lease ran out"
    );
    let next = next.expect("new leader");
    println!(
        "new leader's fencing token {} > old {old_token}",
        next.fencing_token()
    );
    assert!(next.fencing_token() > old_token);
    next.release().await?;
    for c in campaigns {
        c.abort();
    }
    Ok(())
}
