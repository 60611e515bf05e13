//! One request per uncontended acquire, heartbeat and release, counted at
//! the SDK (every attempt, retries included).

mod common;

use std::time::Duration;

use common::Server;
use lynk_core::{Clock, LockBackend, LockClient, SystemClock};
use lynk_dynamo::DynamoBackend;

async fn one_request_each(server: Server, test: &str) {
    let Some(endpoint) = server.endpoint(test) else {
        return;
    };
    let table = common::unique_table("reqs");
    let admin = common::create_table(&endpoint, &table).await;
    let (sdk, counter) = common::counting_client(&endpoint).await;
    let backend = DynamoBackend::builder(&table)
        .client(sdk)
        .returns_current_on_conflict(server.returns_current())
        .transactions(server.has_transactions())
        .build()
        .await
        .unwrap();
    let observer = common::backend(server, &endpoint, &table).await; // not counted
    let lease = Duration::from_secs(6); // heartbeats at 2 s, 4 s, ...
    let client = LockClient::builder(backend.clone())
        .default_lease(lease)
        .build()
        .unwrap();

    // Acquire: one UpdateItem.
    let guard = client.create_lock("counted").acquire().await.unwrap();
    let first = observer.read("counted").await.unwrap().unwrap();
    assert_eq!(
        counter.snapshot(),
        [("UpdateItem".to_owned(), 1)].into(),
        "acquire"
    );

    // One heartbeat: one more UpdateItem, and a new version.
    SystemClock.sleep(Duration::from_millis(2800)).await;
    assert_eq!(
        counter.snapshot(),
        [("UpdateItem".to_owned(), 2)].into(),
        "heartbeat"
    );
    let second = observer.read("counted").await.unwrap().unwrap();
    assert_ne!(
        first.version, second.version,
        "a heartbeat writes a new version"
    );
    assert_eq!(
        first.fencing_token, second.fencing_token,
        "heartbeats keep the token"
    );

    // A contended try: one UpdateItem where the server returns the holder's
    // record with the failure (moto), plus one GetItem where it does not (dynalite).
    counter.reset();
    let other = LockClient::new(backend.clone()).unwrap();
    assert!(other
        .create_lock("counted")
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    let expected_reads = u64::from(!server.returns_current());
    let mut expected = std::collections::BTreeMap::from([("UpdateItem".to_owned(), 1)]);
    if expected_reads > 0 {
        expected.insert("GetItem".to_owned(), expected_reads);
    }
    assert_eq!(counter.snapshot(), expected, "contended try_acquire");

    // Release: one UpdateItem.
    counter.reset();
    guard.release().await.unwrap();
    assert_eq!(
        counter.snapshot(),
        [("UpdateItem".to_owned(), 1)].into(),
        "release"
    );
    assert!(observer.read("counted").await.unwrap().unwrap().released);

    println!("{server:?}: acquire, heartbeat and release cost one request each");
    client.shutdown().await;
    other.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_each_on_moto() {
    one_request_each(Server::Moto, "one_request_each_on_moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_each_on_dynalite() {
    one_request_each(Server::Dynalite, "one_request_each_on_dynalite").await;
}
