//! lynk in a table shared with the user's own items (issue 15): nothing of
//! the user's is ever written or deleted, and a lock whose key is an item of
//! the user's fails with a clear error instead of overwriting it.
//!
//! Two layouts, on moto and dynalite: lock groups in a `PK`/`SK` table
//! without a prefix (a lock `orders/1` is `PK=orders, SK=1`, right next to
//! the user's `PK=orders, SK=meta`), and a fixed sort key (`PK=orders/1,
//! SK=LOCK`, next to the user's `PK=orders/1, SK=PROFILE`). The user's items
//! sit in the locks' partitions, at the very keys of some lock names, and
//! some carry lynk-looking attributes (`released = true`, `leaseDuration`,
//! `hostIdentifier`, `fencingToken`, `lockKey`) without a `versionNumber`.
//! lynk acquires, heartbeats, releases (keeping the record and deleting
//! it), takes the other calls (release_version, delete, queue write) to the
//! colliding keys, lists and (grouped) lists and releases the group; then
//! every item of the user's is compared, attribute for attribute, with what
//! was written.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::Server;
use lynk_core::{
    LockBackend, LockClient, QueueRequest, ReleaseMode, Version, WaitQueue, WriteError,
};
use lynk_dynamo::{ReleaseOutcome, TableLayout};

type Item = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

/// The lock names lynk uses freely.
const LOCKS: [&str; 3] = ["orders/1", "orders/2", "orders/3"];
/// Lock names whose keys are items of the user's.
const COLLIDING: [&str; 3] = ["orders/meta", "orders/taken", "orders/plain"];

/// The user's items under `layout`: at the keys of the colliding names
/// (one plain, one with lynk's attributes but no version, one with
/// `lockKey` and `fencingToken`), next to the locks in their partition, and
/// elsewhere.
fn user_items(layout: &TableLayout) -> Vec<Item> {
    let at = |name: &str, extra: &[(&str, AttributeValue)]| {
        let mut item = layout.key_of(name).expect("names fit the layout");
        for (k, v) in extra {
            item.insert((*k).to_owned(), v.clone());
        }
        item
    };
    let pk = layout.partition_key_attribute();
    let sk = layout.sort_key_attribute().expect("a sort key");
    // The partition key value of lock orders/1: the group `orders`, or the
    // whole name with a fixed sort key.
    let lock_pk = layout.key_of(LOCKS[0]).unwrap()[pk].clone();
    let neighbour = |sort: &str, extra: &[(&str, AttributeValue)]| {
        let mut item = HashMap::from([(pk.to_owned(), lock_pk.clone()), (sk.to_owned(), s(sort))]);
        for (k, v) in extra {
            item.insert((*k).to_owned(), v.clone());
        }
        item
    };
    vec![
        at(COLLIDING[0], &[("data", s("the user's order metadata"))]),
        at(
            COLLIDING[1],
            &[
                ("released", AttributeValue::Bool(true)),
                ("leaseDuration", n("20")),
                ("hostIdentifier", s("the user's host")),
                ("fencingToken", n("7")),
            ],
        ),
        at(
            COLLIDING[2],
            &[
                ("lockKey", s("orders/plain")),
                ("fencingToken", n("5")),
                ("payload", AttributeValue::B(vec![1, 2, 3].into())),
            ],
        ),
        neighbour("PROFILE", &[("name", s("Ada"))]),
        neighbour("1#note", &[("released", AttributeValue::Bool(true))]),
        HashMap::from([(pk.to_owned(), s("customers")), (sk.to_owned(), s("c-1"))]),
    ]
}

/// Every item of the table, by a consistent scan.
async fn scan(admin: &lynk_dynamo::TableAdmin, table: &str) -> Vec<Item> {
    let out = admin
        .client()
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan");
    assert!(out.last_evaluated_key().is_none(), "one page");
    out.items().to_vec()
}

fn key_text(layout: &TableLayout, item: &Item) -> String {
    let pk = layout.partition_key_attribute();
    let sk = layout.sort_key_attribute().unwrap_or_default();
    format!("{:?}/{:?}", item.get(pk), item.get(sk))
}

async fn shared_table(server: Server, kind: &str) {
    let Some(endpoint) = server.endpoint(&format!("shared_table_{kind}_on_{server:?}")) else {
        return;
    };
    let layout = match kind {
        "grouped" => TableLayout::new()
            .partition_key("PK")
            .sort_key_grouped("SK"),
        _ => TableLayout::new()
            .partition_key("PK")
            .sort_key_fixed("SK", "LOCK"),
    };
    let table = common::unique_table("shared");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    let mine = user_items(&layout);
    for item in &mine {
        admin
            .client()
            .put_item()
            .table_name(&table)
            .set_item(Some(item.clone()))
            .send()
            .await
            .expect("put a user item");
    }
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    let client = |mode: ReleaseMode| {
        LockClient::builder(backend.clone())
            .host_identifier("lynk-test")
            .default_lease(Duration::from_millis(900))
            .poll_interval(Duration::from_millis(50))
            .release_mode(mode)
            .build()
            .expect("client")
    };
    let keep = client(ReleaseMode::KeepRecord);
    let delete = client(ReleaseMode::Delete);

    // Acquire, hold through heartbeats (every 300 ms), release keeping the record.
    let first = keep.create_lock(LOCKS[0]).acquire().await.expect("acquire");
    let token = first.fencing_token();
    lynk_core::Clock::sleep(&lynk_core::SystemClock, Duration::from_millis(1_200)).await;
    assert!(!first.is_lost(), "heartbeats kept the lease");
    first.release().await.expect("release");
    // Acquire again (over the released record) and release by deleting it.
    let again = delete
        .create_lock(LOCKS[0])
        .acquire()
        .await
        .expect("re-acquire");
    assert!(again.fencing_token() > token);
    again.release().await.expect("release, deleting");
    let second = delete
        .create_lock(LOCKS[1])
        .acquire()
        .await
        .expect("acquire");
    second.release().await.expect("release, deleting");
    // Held while the group is released below.
    let third = keep.create_lock(LOCKS[2]).acquire().await.expect("acquire");
    let kept = keep
        .create_lock("orders/kept")
        .acquire()
        .await
        .expect("acquire");
    kept.release().await.expect("release");

    // Every colliding name fails, clearly, and writes nothing.
    for name in COLLIDING {
        for c in [&keep, &delete] {
            let err = c
                .create_lock(name)
                .try_acquire()
                .await
                .expect_err("a user's item is not a free lock");
            let text = err.to_string();
            assert!(text.contains("not a lock record"), "{name}: {text}");
            assert!(text.contains("use another lock name"), "{name}: {text}");
        }
        let err = admin
            .describe_lock(&table, name)
            .await
            .expect_err("describe");
        assert!(err.to_string().contains("not a lock record"), "{err}");
        let v = Version::random();
        assert!(matches!(
            keep.release_version(name, &v).await,
            Err(WriteError::ConditionFailed { .. } | WriteError::Backend(_))
        ));
        assert!(backend.delete(name, &v).await.is_err(), "{name}: delete");
        let queue = QueueRequest {
            key: name.to_owned(),
            version: v.clone(),
            revision: None,
            queue: WaitQueue {
                revision: Some(Version::random()),
                entries: Vec::new(),
            },
        };
        assert!(
            backend.write_queue(queue).await.is_err(),
            "{name}: queue write"
        );
    }

    // Listing: the user's items are skipped and counted, never errors.
    let listing = admin.list_locks(&table).await.expect("list");
    let names: Vec<&str> = listing
        .locks
        .iter()
        .map(|l| l.record.key.as_str())
        .collect();
    assert_eq!(names, ["orders/3", "orders/kept"], "{listing:?}");
    assert!(listing.malformed.is_empty(), "{:?}", listing.malformed);
    assert_eq!(listing.skipped, mine.len());

    if layout.has_groups() {
        let group = admin.list_group(&table, "orders").await.expect("group");
        let names: Vec<&str> = group.locks.iter().map(|l| l.record.key.as_str()).collect();
        assert_eq!(names, ["orders/3", "orders/kept"]);
        // The user's items in the partition `orders`, not `customers`.
        assert_eq!(group.skipped, mine.len() - 1);
        let report = admin
            .release_group(&table, "orders")
            .await
            .expect("release group");
        let outcomes: Vec<(&str, &ReleaseOutcome)> = report
            .iter()
            .map(|r| (r.name.as_str(), &r.outcome))
            .collect();
        assert!(
            matches!(
                outcomes.as_slice(),
                [
                    ("orders/3", ReleaseOutcome::Released { previous }),
                    ("orders/kept", ReleaseOutcome::NotHeld)
                ] if previous.fencing_token == Some(third.fencing_token())
            ),
            "{report:?}"
        );
        let err = admin.list_group(&table, "orders/x").await.unwrap_err();
        assert!(err.to_string().contains("separator"), "{err}");
    }
    drop(third);
    keep.shutdown().await;
    delete.shutdown().await;

    // Everything of the user's is as written; lynk's items are lock items.
    let after = scan(&admin, &table).await;
    let (theirs, ours): (Vec<Item>, Vec<Item>) =
        after.into_iter().partition(|i| !layout.is_lock_item(i));
    let sorted = |mut v: Vec<Item>| {
        v.sort_by_key(|i| key_text(&layout, i));
        v
    };
    assert_eq!(
        sorted(theirs),
        sorted(mine.clone()),
        "the user's items changed"
    );
    let ours: Vec<String> = ours.iter().filter_map(|i| layout.name_of(i)).collect();
    assert_eq!(ours.len(), 2, "orders/3 and orders/kept: {ours:?}");
    admin
        .delete_table(&table, true, true)
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_on_moto() {
    shared_table(Server::Moto, "grouped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_on_dynalite() {
    shared_table(Server::Dynalite, "grouped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_sort_key_on_moto() {
    shared_table(Server::Moto, "fixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_sort_key_on_dynalite() {
    shared_table(Server::Dynalite, "fixed").await;
}
