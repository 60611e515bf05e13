//! Protecting a resource with fencing tokens.
//!
//! A holder pauses (think: a long GC pause) past its lease; another client
//! takes the lock over and writes. When the first holder wakes and writes
//! with its old token, the resource refuses it. Without the token check the
//! stale write would silently win.
//!
//! ```text
//! cargo run -p lynk-testkit --example fencing
//! ```

use std::sync::Mutex;
use std::time::Duration;

use lynk_core::{FencingToken, LockClient, LockError};
use lynk_testkit::{MemoryBackend, TestClock};

/// A storage service that accepts a write only with a token at least as high
/// as any it has accepted.
#[derive(Default)]
struct FencedStore {
    highest: Mutex<Option<FencingToken>>,
    value: Mutex<String>,
}

impl FencedStore {
    fn write(&self, token: FencingToken, value: &str) -> Result<(), String> {
        let mut highest = self.highest.lock().unwrap();
        if highest.is_some_and(|h| token < h) {
            return Err(format!(
                "rejected write with stale token {token} (seen {})",
                highest.unwrap()
            ));
        }
        *highest = Some(token);
        *self.value.lock().unwrap() = value.to_owned();
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), LockError> {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let store = FencedStore::default();
    let client = |host: &str| {
        LockClient::builder(backend.clone())
            .clock(clock.clone())
            .host_identifier(host)
            .default_lease(Duration::from_secs(10))
            .build()
    };
    let (a, b) = (client("a")?, client("b")?);

    let guard_a = a.create_lock("report").acquire().await?;
    let token_a = guard_a.fencing_token();
    store.write(token_a, "a: first").expect("a holds the lock");

    // `a` stops heartbeating (its process is paused); simulate by shutting
    // down only its heartbeats while keeping the record as it was.
    let record = backend.get("report").expect("record");
    drop(a.shutdown().await);
    backend.put_raw(record);

    let guard_b = b.create_lock("report").acquire().await?; // takes over after the lease
    println!(
        "b took over with token {} (a had {token_a})",
        guard_b.fencing_token()
    );
    store
        .write(guard_b.fencing_token(), "b: second")
        .expect("b holds the lock");

    // `a` wakes up and, not having checked its lost-lease signal, writes.
    match store.write(token_a, "a: stale") {
        Err(e) => println!("fenced: {e}"),
        Ok(()) => panic!("a stale write was accepted"),
    }
    assert_eq!(*store.value.lock().unwrap(), "b: second");
    drop(guard_a);
    guard_b.release().await
}
