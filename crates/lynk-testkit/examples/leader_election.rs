//! Leader election: three candidates campaign, one leads with its address as
//! payload, a follower watches who leads; the leader moves, then crashes,
//! and a candidate takes over with a higher term; it resigns, and the last
//! candidate leads within a poll.
//!
//! Runs on the in-memory backend with the test clock, so a minute of
//! simulated leases takes milliseconds.
//!
//! ```text
//! cargo run -p lynk-testkit --example leader_election
//! ```

use std::time::Duration;

use lynk_core::{Clock, Leadership, LockClient, LockError};
use lynk_testkit::{MemoryBackend, TestClock};
use tokio::task::JoinHandle;

const LEASE: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), LockError> {
    let (backend, clock) = (MemoryBackend::new(), TestClock::new());
    let client = |host: &str| {
        LockClient::builder(backend.clone())
            .clock(clock.clone())
            .host_identifier(host)
            .default_lease(LEASE)
            .build()
    };

    // Three processes campaign; the first to write leads, the others wait.
    let mut campaigns: Vec<JoinHandle<Result<Leadership, LockError>>> = Vec::new();
    for i in 1..=3 {
        let election = client(&format!("node-{i}"))?
            .election("scheduler")
            .with_payload(format!("10.0.0.{i}:8080"));
        campaigns.push(tokio::spawn(async move { election.campaign().await }));
    }
    let mut leader = next_leader(&clock, &mut campaigns).await?;
    // A follower watches who leads (its first `changed` is the leader now).
    let mut watch = client("follower")?.observe_leader("scheduler");
    let seen = watch.changed().await?.expect("a leader");
    println!(
        "{} leads, term {}, at {:?}",
        seen.host,
        seen.term,
        String::from_utf8_lossy(&seen.payload.unwrap())
    );

    // The leader moves: same term, new address, no election.
    leader.set_payload("10.0.0.9:8080").await?;
    let seen = watch.changed().await?.expect("still leading");
    assert_eq!(seen.term, leader.term());
    println!(
        "{} moved to {:?}, term {}",
        seen.host,
        String::from_utf8_lossy(&seen.payload.unwrap()),
        seen.term
    );

    // The leader crashes: heartbeats stop, nothing is released.
    let old_term = leader.term();
    leader.into_guard().detach();
    let crashed = clock.now();
    let leader = next_leader(&clock, &mut campaigns).await?;
    println!(
        "crash: a candidate led {:?} later (bound: lease × 1.01 + one poll), term {} > {old_term}",
        clock.now() - crashed,
        leader.term()
    );
    assert!(leader.term() > old_term);

    // It resigns: the last candidate, in another process, leads within a poll.
    let resigned = clock.now();
    leader.resign().await?;
    let last = next_leader(&clock, &mut campaigns).await?;
    println!(
        "resignation: the next leader led {:?} later",
        clock.now() - resigned
    );
    // The follower saw every change it polled in between.
    loop {
        match watch.changed().await? {
            Some(l) if l.term == last.term() => break,
            Some(l) => println!("follower: {} leads, term {}", l.host, l.term),
            None => println!("follower: no leader"),
        }
    }
    println!(
        "follower: {} leads, term {}",
        watch.current().unwrap().host,
        last.term()
    );
    last.resign().await?;
    assert_eq!(watch.changed().await?, None);
    println!("no leader");
    Ok(())
}

/// The campaign that wins next.
async fn next_leader(
    clock: &TestClock,
    campaigns: &mut Vec<JoinHandle<Result<Leadership, LockError>>>,
) -> Result<Leadership, LockError> {
    loop {
        if let Some(i) = campaigns.iter().position(|c| c.is_finished()) {
            return campaigns.remove(i).await.expect("campaign task");
        }
        clock.sleep(Duration::from_millis(10)).await;
    }
}
