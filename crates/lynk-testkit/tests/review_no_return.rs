//! Review of `write_no_return` on the in-memory engine: a plain release and
//! a grant no longer get the written record back, so the engine no longer
//! notes its fencing token on success. These pin that the token floor does
//! not need it: the release and the grant keep the holder's token, which
//! the holder noted when it acquired.

use std::time::Duration;

use lynk_core::LockClient;
use lynk_testkit::{CountingBackend, MemoryBackend, TestClock};

mod common;
use common::{record, settle};

const L: Duration = Duration::from_secs(20);

/// A token far above any wall clock in microseconds (year ~2128).
const HIGH: u64 = 5_000_000_000_000_000;

fn client(b: impl lynk_core::LockBackend, clock: &TestClock, host: &str) -> LockClient {
    common::builder(b, clock, host, L, 7).build().unwrap()
}

/// A client takes over a released record whose token is far above its
/// wall clock, releases it (`write_no_return`: nothing comes back), and the
/// record is then deleted by an operator. Its next acquisition starts from
/// its token floor, not its wall clock: the floor was raised when it
/// acquired, and the release (token kept) has nothing higher to show.
#[tokio::test(start_paused = true)]
async fn token_floor_survives_a_release_that_returns_nothing() {
    let mem = MemoryBackend::new();
    let counted = CountingBackend::new(mem.clone());
    let clock = TestClock::new();
    let a = client(counted.clone(), &clock, "a");
    mem.put_raw(record("x", "old", L, HIGH, true));
    let g = a.create_lock("x").acquire().await.unwrap();
    let first = g.fencing_token().get();
    assert_eq!(first, HIGH + 1);
    let before = counted.counts();
    g.release().await.unwrap();
    let release = counted.counts().since(before);
    assert_eq!(
        (release.writes, release.reads),
        (1, 0),
        "one write, seen by the wrapper"
    );
    let stored = mem.get("x").unwrap();
    assert!(stored.released);
    assert_eq!(stored.fencing_token.map(|t| t.get()), Some(first));
    mem.remove_raw("x").expect("an operator deletes the record");
    let again = a.create_lock("x").try_acquire().await.unwrap().unwrap();
    assert!(
        again.fencing_token().get() > first,
        "token went backwards: {first} then {}",
        again.fencing_token().get()
    );
    again.release().await.unwrap();
}

/// The same through a grant: `a` holds (token above its wall clock), `b`
/// queues, `a`'s release grants the lock to `b` (`write_no_return`). After
/// `b` is done and the record is deleted, `a` acquires again above its own
/// old token. (`b`'s token, one above `a`'s, is not known to `a`: it never
/// saw `b`'s record, with or without the change, so `a`'s new token may
/// equal `b`'s; that is the documented wall-clock limit of a deleted
/// record, not this change's.)
#[tokio::test(start_paused = true)]
async fn token_floor_survives_a_grant_that_returns_nothing() {
    let mem = MemoryBackend::new();
    let clock = TestClock::new();
    let a = client(mem.clone(), &clock, "a");
    let b = client(mem.clone(), &clock, "b");
    mem.put_raw(record("x", "old", L, HIGH, true));
    let g = a.create_lock("x").acquire().await.unwrap();
    let ta = g.fencing_token().get();
    let lock_b = b.create_lock("x");
    let waiter = tokio::spawn(async move { lock_b.acquire().await });
    for _ in 0..100 {
        settle().await;
        if !mem.get("x").unwrap().queue.entries.is_empty() {
            break;
        }
        clock.advance(Duration::from_millis(100)).await;
    }
    assert!(
        !mem.get("x").unwrap().queue.entries.is_empty(),
        "b queued in the store"
    );
    // A release over the queue a last saw fails, then grants to b.
    g.release().await.unwrap();
    let granted = mem.get("x").unwrap();
    assert!(granted.granted_to.is_some(), "a grant: {granted:?}");
    assert_eq!(granted.fencing_token.map(|t| t.get()), Some(ta));
    let gb = common::within(&clock, Duration::from_secs(30), waiter)
        .await
        .expect("b confirmed")
        .unwrap()
        .unwrap();
    assert_eq!(gb.fencing_token().get(), ta + 1);
    gb.release().await.unwrap();
    mem.remove_raw("x").expect("an operator deletes the record");
    let again = a.create_lock("x").try_acquire().await.unwrap().unwrap();
    assert!(
        again.fencing_token().get() > ta,
        "token went backwards: {ta} then {}",
        again.fencing_token().get()
    );
    again.release().await.unwrap();
}
