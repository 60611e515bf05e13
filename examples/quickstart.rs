//! The original lynk quickstart, in Rust: two threads contend for one lock.
//!
//! ```text
//! cargo run -p lynk-examples --example quickstart
//! ```
//!
//! It uses the in-memory table `lynk-quickstart`; with `lynk_dynamo::get_lock_factory`
//! instead of `lynk_testkit::get_lock_factory` the same code runs on DynamoDB.
//! `LYNK_EXAMPLE_HOLD_MS` shortens the 10 s hold.

use std::thread;
use std::time::Duration;

use lynk_core::blocking::LockFactory;
use lynk_core::LockError;

fn worker(factory: LockFactory, hold: Duration) -> Result<(), LockError> {
    let me = thread::current().name().unwrap_or("worker").to_owned();
    println!("{me} - Starting");
    let lock = factory.create_lock("my lock");
    let guard = lock.acquire()?;
    println!("{me} - Lock acquired");
    #[allow(clippy::disallowed_methods)] // the protected work; lynk's own timing uses its clock
    thread::sleep(hold);
    guard.release()?;
    println!("{me} - Lock released");
    Ok(())
}

fn main() -> Result<(), LockError> {
    let hold = lynk_examples::duration_from_env("LYNK_EXAMPLE_HOLD_MS", Duration::from_secs(10));
    let factory = lynk_testkit::get_lock_factory("lynk-quickstart")?;
    let threads: Vec<_> = (1..=2)
        .map(|i| {
            let factory = factory.clone();
            thread::Builder::new()
                .name(format!("Thread-{i}"))
                .spawn(move || worker(factory, hold))
                .expect("spawn a thread")
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread")?;
    }
    Ok(())
}
