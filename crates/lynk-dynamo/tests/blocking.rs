//! The blocking facade: `lynk_dynamo::get_lock_factory(table)`, as the
//! original's `lynk.get_lock_factory('table')`, configured from the
//! environment (here `AWS_ENDPOINT_URL_DYNAMODB`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Server;

#[test]
fn two_threads_share_a_lock_via_get_lock_factory() {
    let Some(endpoint) = Server::Moto.endpoint("two_threads_share_a_lock_via_get_lock_factory")
    else {
        return;
    };
    let table = common::unique_table("blocking");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = rt.block_on(common::create_table(&endpoint, &table));
    // The only test in this binary, so changing the environment is safe;
    // the SDK reads it when the factory loads its configuration.
    std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", &endpoint);

    let factory = lynk_dynamo::get_lock_factory(&table).expect("factory from the environment");
    let inside = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let factory = factory.clone();
            let inside = inside.clone();
            std::thread::spawn(move || {
                let lock = factory
                    .create_lock("my lock")
                    .with_lease(Duration::from_secs(2));
                for _ in 0..3 {
                    let guard = lock.acquire().unwrap();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    factory.block_on(lynk_core::Clock::sleep(
                        &lynk_core::SystemClock,
                        Duration::from_millis(30),
                    ));
                    inside.store(false, Ordering::SeqCst);
                    guard.release().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(factory.shutdown().is_clean());
    rt.block_on(admin.delete_table(&table, false, true))
        .unwrap();
}
