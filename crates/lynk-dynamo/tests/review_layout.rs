//! Review of the table layouts (issue 15): attempts to break safety.
//!
//! - the name-to-key mapping: no two lock names share a key, on any layout,
//!   and `name_of` gives back the name written;
//! - `name_of` as the inverse of `key_of` for any stored key (finding:
//!   a self-overlapping separator such as `::`);
//! - the `Vacant` guard on an item of the user's carrying lynk's attribute
//!   names with other types (finding: the guard checks presence only);
//! - `release_group` with a write by somebody else between its `Query` and
//!   its release (injected by an SDK interceptor on the admin's client): a
//!   heartbeat is followed, a new acquisition or a release is left alone.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use common::Server;
use lynk_core::{LockClient, LockError};
use lynk_dynamo::{LynkAttribute, ReleaseOutcome, TableAdmin, TableLayout};

type Item = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

fn layouts() -> Vec<TableLayout> {
    vec![
        TableLayout::new(),
        TableLayout::new().partition_key("PK").key_prefix("LOCK#"),
        TableLayout::new()
            .partition_key("PK")
            .key_prefix("LOCK#")
            .sort_key_fixed("SK", "LOCK"),
        TableLayout::new()
            .partition_key("PK")
            .sort_key_fixed("SK", "a/b"),
        TableLayout::new()
            .partition_key("PK")
            .key_prefix("LOCK#")
            .sort_key_grouped("SK"),
        TableLayout::new()
            .partition_key("PK")
            .sort_key_grouped("SK"),
        TableLayout::new()
            .partition_key("PK")
            .sort_key_grouped("SK")
            .group_separator("#"),
        TableLayout::new()
            .partition_key("PK")
            .key_prefix("L-")
            .sort_key_grouped("SK")
            .group_separator("::"),
    ]
}

const NAMES: &[&str] = &[
    "a",
    "LOCK",
    "LOCK#",
    "LOCK#a",
    "LOCK#LOCK#a",
    "a/b",
    "a//b",
    "a/b/c",
    "a/b/",
    "a/",
    "/a",
    "/",
    "//",
    "a#b",
    "a##b",
    "a#b#c",
    "#a",
    "a#",
    "a:b",
    "a::b",
    "a:::b",
    "a::::b",
    "a::b::c",
    "::a",
    "a::",
    ":::",
    "x:/y",
    "x/:y",
    "LOCK/LOCK",
    "LOCK#a/b",
    "L-a/b",
    "L-a::b",
    "é/x",
    "e\u{301}/x",
    "🔒/🔑",
    "🔒::🔑",
    "a\u{0}/b",
    "a /b",
    "a/ b",
    " /b",
];

/// No two lock names share a DynamoDB key on any layout, and every key
/// reads back as the name written (the engine compares record keys).
#[test]
fn names_map_to_distinct_keys_and_back() {
    for layout in layouts() {
        layout.validate().unwrap();
        let mut seen: HashMap<Vec<(String, String)>, &str> = HashMap::new();
        for name in NAMES {
            let Ok(key) = layout.key_of(name) else {
                continue;
            };
            assert_eq!(layout.name_of(&key).as_deref(), Some(*name), "{layout}");
            let mut flat: Vec<(String, String)> = key
                .iter()
                .map(|(k, v)| (k.clone(), v.as_s().unwrap().clone()))
                .collect();
            flat.sort();
            if let Some(other) = seen.insert(flat.clone(), name) {
                panic!("{layout}: {other:?} and {name:?} share the key {flat:?}");
            }
            if layout.has_groups() {
                // The group is the part before the first separator.
                let sep = layout.separator().unwrap();
                let group = layout.group_of(name).unwrap();
                assert!(name.starts_with(&format!("{group}{sep}")), "{layout}");
                assert!(!group.contains(sep), "{layout}: {name}");
            }
        }
        // The fixed sort key value is only ever the sort key.
        if let lynk_dynamo::SortKey::Fixed { value, .. } = layout.sort_key() {
            let key = layout.key_of(value).unwrap();
            assert_eq!(layout.name_of(&key).as_deref(), Some(value.as_str()));
        }
    }
}

/// `name_of` is documented as the inverse of `key_of`, and listings use it
/// to name the locks they find (`release_group` then releases that name's
/// key). For any stored key it names, that name's key must be the key it
/// was read from; else a listing of group `x:` reports (and
/// `release_group` writes to) a lock of group `x`.
#[test]
fn name_of_names_only_keys_key_of_writes() {
    for (sep, pk, sk) in [("::", "x:", "y"), ("aa", "xa", "y"), ("aba", "xab", "y")] {
        let layout = TableLayout::new()
            .partition_key("PK")
            .sort_key_grouped("SK")
            .group_separator(sep);
        layout.validate().unwrap();
        let item: Item = HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))]);
        if let Some(name) = layout.name_of(&item) {
            let key = layout.key_of(&name);
            assert_eq!(
                key.as_ref().ok(),
                Some(&item),
                "separator {sep:?}: the item {item:?} reads as lock {name:?}, whose key is {key:?}"
            );
        }
    }
}

/// Every item of the table.
async fn scan(admin: &TableAdmin, table: &str) -> Vec<Item> {
    admin
        .client()
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan")
        .items()
        .to_vec()
}

async fn get(admin: &TableAdmin, table: &str, key: Item) -> Option<Item> {
    admin
        .client()
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item()
        .cloned()
}

async fn put(admin: &TableAdmin, table: &str, item: Item) {
    admin
        .client()
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put a user item");
}

/// Items of the user's at lock keys, on a prefixed layout without a sort
/// key and a prefixed grouped one: a lynk acquire (the blind `Vacant`
/// write, then the engine's follow-ups) and a release by version leave
/// them alone.
async fn user_items_at_lock_keys(server: Server, typed: bool) {
    let test = format!("user_items_at_lock_keys_{typed}_{server:?}");
    let Some(endpoint) = server.endpoint(&test) else {
        return;
    };
    let cases = [
        TableLayout::new().partition_key("PK").key_prefix("LOCK#"),
        TableLayout::new()
            .partition_key("PK")
            .key_prefix("LOCK#")
            .sort_key_grouped("SK")
            .attribute(LynkAttribute::Released, "isReleased"),
    ];
    for layout in cases {
        let table = common::unique_table("review");
        let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
        let name = if layout.has_groups() { "g/x" } else { "x" };
        let mut item = layout.key_of(name).unwrap();
        let released = layout.attribute_name(LynkAttribute::Released);
        item.insert(released.to_owned(), AttributeValue::Bool(true));
        item.insert("data".to_owned(), s("the user's"));
        if typed {
            // lynk's attribute names, other types: an optimistic-locking
            // counter `versionNumber` (N), a `leaseDuration` as ISO text.
            item.insert("versionNumber".to_owned(), n("3"));
            item.insert("leaseDuration".to_owned(), s("P1D"));
        } else {
            item.insert("leaseDuration".to_owned(), n("20"));
        }
        put(&admin, &table, item.clone()).await;
        let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
        let client = LockClient::builder(backend)
            .host_identifier("review")
            .default_lease(Duration::from_secs(5))
            .build()
            .unwrap();
        let got = client.create_lock(name).try_acquire().await;
        let stored = get(&admin, &table, layout.key_of(name).unwrap()).await;
        assert_eq!(
            stored.as_ref(),
            Some(&item),
            "{layout}: the user's item was written; the acquire gave {:?}",
            got.as_ref().map(|g| g.as_ref().map(|g| g.fencing_token()))
        );
        match got {
            Err(e @ LockError::Backend { .. }) => {
                assert!(e.to_string().contains("not a lock record"), "{e}");
            }
            Err(e) => panic!("{layout}: {e}"),
            Ok(g) => panic!("{layout}: acquired over the user's item: {}", g.is_some()),
        }
        client.shutdown().await;
        assert_eq!(scan(&admin, &table).await, vec![item]);
        admin.delete_table(&table, true, true).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_item_with_released_but_no_version_is_left_alone_moto() {
    user_items_at_lock_keys(Server::Moto, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_item_with_released_but_no_version_is_left_alone_dynalite() {
    user_items_at_lock_keys(Server::Dynalite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_item_with_lynk_names_of_other_types_is_left_alone_moto() {
    user_items_at_lock_keys(Server::Moto, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_item_with_lynk_names_of_other_types_is_left_alone_dynalite() {
    user_items_at_lock_keys(Server::Dynalite, true).await;
}

// ---- release_group with a write in between --------------------------------

type Action = Box<dyn FnOnce() + Send>;

/// Runs `action` (once) just before the client's first `UpdateItem` is
/// sent: the moment between `release_group`'s `Query` and its release.
#[derive(Clone, Default)]
struct BeforeFirstUpdate(Arc<Mutex<Option<Action>>>);

impl std::fmt::Debug for BeforeFirstUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeFirstUpdate")
    }
}

impl Intercept for BeforeFirstUpdate {
    fn name(&self) -> &'static str {
        "review::BeforeFirstUpdate"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let is_update = context
            .request()
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".UpdateItem"));
        if is_update {
            let action = self.0.lock().unwrap().take();
            if let Some(action) = action {
                action();
            }
        }
        Ok(())
    }
}

/// What somebody else writes between the group's `Query` and its release.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Between {
    /// The holder's heartbeat: a new version, the same token and host.
    Heartbeat,
    /// A new acquisition by the same host: a new version and token.
    Reacquired,
    /// The holder's release: a new version, `released`.
    Released,
}

/// Writes `between` to the item at `key` from a thread of its own (the
/// interceptor is synchronous), with a client of its own.
fn write_between(
    endpoint: String,
    table: String,
    key: Item,
    layout: TableLayout,
    between: Between,
) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let admin = TableAdmin::connect(&common::options(&endpoint))
                .await
                .unwrap();
            let item = get(&admin, &table, key.clone())
                .await
                .expect("the lock item");
            let v = layout.attribute_name(LynkAttribute::VersionNumber);
            let t = layout.attribute_name(LynkAttribute::FencingToken);
            let r = layout.attribute_name(LynkAttribute::Released);
            let mut update = admin
                .client()
                .update_item()
                .table_name(&table)
                .set_key(Some(key))
                .expression_attribute_names("#v", v)
                .expression_attribute_values(":v", s(&uuid::Uuid::new_v4().to_string()));
            update = match between {
                Between::Heartbeat => update.update_expression("SET #v = :v"),
                Between::Reacquired => {
                    let token: u64 = item[t].as_n().unwrap().parse().unwrap();
                    update
                        .update_expression("SET #v = :v, #t = :t")
                        .expression_attribute_names("#t", t)
                        .expression_attribute_values(":t", n(&(token + 1).to_string()))
                }
                Between::Released => update
                    .update_expression("SET #v = :v, #r = :r")
                    .expression_attribute_names("#r", r)
                    .expression_attribute_values(":r", AttributeValue::Bool(true)),
            };
            update.send().await.expect("the write in between");
        });
    })
    .join()
    .unwrap();
}

async fn release_group_with_write_between(server: Server, between: Between) {
    let test = format!("release_group_{between:?}_{server:?}");
    let Some(endpoint) = server.endpoint(&test) else {
        return;
    };
    let layout = TableLayout::new()
        .partition_key("PK")
        .key_prefix("LOCK#")
        .sort_key_grouped("SK")
        .attribute(LynkAttribute::VersionNumber, "lynk-version")
        .attribute(LynkAttribute::FencingToken, "lynk.token");
    let table = common::unique_table("review");
    common::create_table_with(&endpoint, &table, layout.clone()).await;
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    // A long lease: no heartbeat of the holder's own during the test.
    let holder = LockClient::builder(backend)
        .host_identifier("review-host")
        .default_lease(Duration::from_secs(60))
        .build()
        .unwrap();
    let guard = holder.create_lock("g/a").acquire().await.unwrap();
    let token = guard.fencing_token();

    let hook = BeforeFirstUpdate::default();
    let key = layout.key_of("g/a").unwrap();
    {
        let (endpoint, table, key, layout) =
            (endpoint.clone(), table.clone(), key.clone(), layout.clone());
        *hook.0.lock().unwrap() = Some(Box::new(move || {
            write_between(endpoint, table, key, layout, between);
        }));
    }
    let config = common::options(&endpoint).load_config().await.unwrap();
    let conf = aws_sdk_dynamodb::config::Builder::from(&config)
        .interceptor(hook.clone())
        .build();
    let admin = TableAdmin::new(aws_sdk_dynamodb::Client::from_conf(conf))
        .with_layout(layout.clone())
        .unwrap();

    let before = get(&admin, &table, key.clone()).await.unwrap();
    let report = admin.release_group(&table, "g").await.unwrap();
    assert!(hook.0.lock().unwrap().is_none(), "the write in between ran");
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].name, "g/a");
    let after = get(&admin, &table, key.clone()).await.unwrap();
    let v = layout.attribute_name(LynkAttribute::VersionNumber);
    let t = layout.attribute_name(LynkAttribute::FencingToken);
    let r = layout.attribute_name(LynkAttribute::Released);
    assert_ne!(after[v], before[v]);
    match between {
        Between::Heartbeat => {
            assert!(
                matches!(&report[0].outcome, ReleaseOutcome::Released { previous }
                    if previous.fencing_token == Some(token)),
                "{report:?}"
            );
            assert_eq!(after.get(r), Some(&AttributeValue::Bool(true)));
            assert_eq!(after[t], before[t], "the token is kept");
        }
        Between::Reacquired | Between::Released => {
            assert!(
                matches!(&report[0].outcome, ReleaseOutcome::Changed { .. }),
                "{report:?}"
            );
            // Nothing written after the write in between: the new
            // acquisition stays held, the release as it was.
            let expect_released = between == Between::Released;
            assert_eq!(
                after.get(r) == Some(&AttributeValue::Bool(true)),
                expect_released,
                "{after:?}"
            );
            let listing = admin.list_group(&table, "g").await.unwrap();
            assert_eq!(
                listing.locks[0].record.version.as_str(),
                after[v].as_s().unwrap()
            );
        }
    }
    // Every item is a lock item of the layout.
    let all = scan(&admin, &table).await;
    assert!(all.iter().all(|i| layout.is_lock_item(i)), "{all:?}");
    let names: HashSet<String> = all.iter().filter_map(|i| layout.name_of(i)).collect();
    assert_eq!(names, HashSet::from(["g/a".to_owned()]));
    drop(guard);
    holder.shutdown().await;
    admin.delete_table(&table, true, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_group_follows_a_heartbeat_moto() {
    release_group_with_write_between(Server::Moto, Between::Heartbeat).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_group_leaves_a_new_acquisition_moto() {
    release_group_with_write_between(Server::Moto, Between::Reacquired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_group_leaves_a_release_moto() {
    release_group_with_write_between(Server::Moto, Between::Released).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_group_follows_a_heartbeat_dynalite() {
    release_group_with_write_between(Server::Dynalite, Between::Heartbeat).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_group_leaves_a_new_acquisition_dynalite() {
    release_group_with_write_between(Server::Dynalite, Between::Reacquired).await;
}

// ---- a takeover of an item that only looks like the original's record -----

/// On a layout the Python client cannot use (a sort key), every lock record
/// lynk writes has a `fencingToken`; an item of the user's at a lock key
/// with a string `versionNumber` and a numeric `leaseDuration` but no token
/// is read as a (Python) holder's record, and once its "lease" has passed
/// unchanged, lynk takes it over with `versionNumber = :v`, overwriting it.
async fn user_item_like_a_python_record(server: Server) {
    let Some(endpoint) = server.endpoint(&format!("user_item_like_a_python_record_{server:?}"))
    else {
        return;
    };
    let layout = TableLayout::new()
        .partition_key("PK")
        .sort_key_grouped("SK");
    let table = common::unique_table("review");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    let mut item = layout.key_of("orders/lease").unwrap();
    item.insert("versionNumber".to_owned(), s("v7"));
    item.insert("leaseDuration".to_owned(), n("1"));
    item.insert("data".to_owned(), s("the user's lease row"));
    put(&admin, &table, item.clone()).await;
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    let client = LockClient::builder(backend)
        .host_identifier("review")
        .default_lease(Duration::from_secs(5))
        .poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let got = client
        .create_lock("orders/lease")
        .acquire_timeout(Duration::from_secs(4))
        .await;
    let stored = get(&admin, &table, layout.key_of("orders/lease").unwrap()).await;
    client.shutdown().await;
    assert_eq!(
        stored.as_ref(),
        Some(&item),
        "the user's item was taken over: {:?}",
        got.as_ref().map(|g| g.fencing_token())
    );
    admin.delete_table(&table, true, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finding (design, low): on a non-Python layout an item with versionNumber (S) and leaseDuration (N) but no fencingToken is read as a holder's record and taken over after its lease; lynk's own records always carry fencingToken there"]
async fn user_item_like_a_python_record_is_left_alone_moto() {
    user_item_like_a_python_record(Server::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finding (design, low): as on moto"]
async fn user_item_like_a_python_record_is_left_alone_dynalite() {
    user_item_like_a_python_record(Server::Dynalite).await;
}

// ---- multi-lock (TransactWriteItems) next to an item of the user's ---------

/// A multi-lock whose names include the key of an item of the user's
/// writes nothing, neither the user's item nor the other lock: an item with
/// `released` and `leaseDuration` but no version, or (`typed`) the one the
/// `Vacant` guard lets through (`released`, a numeric `versionNumber`, a
/// text `leaseDuration`). The transaction's reads see that the item is not
/// a lock record; the fallback, one `try_acquire` per name, sends the blind
/// `Vacant` write.
async fn multi_lock_over_a_user_item(typed: bool) {
    let server = Server::Moto;
    let Some(endpoint) = server.endpoint(&format!("multi_lock_over_a_user_item_{typed}")) else {
        return;
    };
    let layout = TableLayout::new()
        .partition_key("PK")
        .key_prefix("LOCK#")
        .sort_key_grouped("SK");
    let table = common::unique_table("review");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    let mut item = layout.key_of("g/user").unwrap();
    item.insert("released".to_owned(), AttributeValue::Bool(true));
    if typed {
        item.insert("versionNumber".to_owned(), n("3"));
        item.insert("leaseDuration".to_owned(), s("P1D"));
    } else {
        item.insert("leaseDuration".to_owned(), n("20"));
    }
    put(&admin, &table, item.clone()).await;
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    let client = LockClient::builder(backend)
        .host_identifier("review")
        .default_lease(Duration::from_secs(5))
        .build()
        .unwrap();
    let multi = client.multi_lock(["g/a", "g/user"]);
    let got = multi.try_acquire().await;
    assert!(!matches!(got, Ok(Some(_))), "acquired over the user's item");
    client.shutdown().await;
    let all = scan(&admin, &table).await;
    // The user's item, found by its key (a typed one has a `versionNumber`,
    // so `is_lock_item` cannot tell it apart), unchanged.
    let key = layout.key_of("g/user").unwrap();
    let theirs: Vec<&Item> = all
        .iter()
        .filter(|i| key.iter().all(|(k, v)| i.get(k) == Some(v)))
        .collect();
    assert_eq!(theirs, vec![&item]);
    admin.delete_table(&table, true, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_lock_over_a_user_item_writes_nothing_moto() {
    multi_lock_over_a_user_item(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_lock_over_a_typed_user_item_writes_nothing_moto() {
    multi_lock_over_a_user_item(true).await;
}

// ---- release_group and a semaphore of the group ----------------------------

/// A semaphore is one record under its name, so a group's listing has it
/// and `release_group` force-releases it. Whatever it does, the permit's
/// holder and a newcomer never both hold the only permit: once the
/// newcomer has it, the first permit is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_group_over_a_semaphore_moto() {
    let server = Server::Moto;
    let Some(endpoint) = server.endpoint("release_group_over_a_semaphore_moto") else {
        return;
    };
    let layout = TableLayout::new()
        .partition_key("PK")
        .key_prefix("LOCK#")
        .sort_key_grouped("SK");
    let table = common::unique_table("review");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    let client = |host: &str| {
        LockClient::builder(backend.clone())
            .host_identifier(host)
            .default_lease(Duration::from_millis(1_500))
            .poll_interval(Duration::from_millis(50))
            .build()
            .unwrap()
    };
    let (a, b) = (client("a"), client("b"));
    let permit = a.semaphore("g/sem", 1).acquire().await.unwrap();
    let report = admin.release_group(&table, "g").await.unwrap();
    eprintln!("release_group: {report:?}");
    // Two of the holder's heartbeats.
    lynk_core::Clock::sleep(&lynk_core::SystemClock, Duration::from_millis(1_200)).await;
    let second = b
        .semaphore("g/sem", 1)
        .acquire_timeout(Duration::from_secs(3))
        .await;
    eprintln!(
        "first lost: {:?}; second: {:?}",
        permit.lost_reason(),
        second.as_ref().map(|p| p.fencing_token())
    );
    if second.is_ok() {
        assert!(
            permit.is_lost(),
            "two holders of the only permit: {report:?}"
        );
    }
    drop(second);
    drop(permit);
    a.shutdown().await;
    b.shutdown().await;
    admin.delete_table(&table, true, true).await.unwrap();
}

// ---- renamed attributes that look like placeholders ------------------------

/// lynk's attributes renamed to names a placeholder scheme could mix up
/// (`n0`, `#n0`, `:expected`, `a.b`, `n1`): acquire, heartbeats, release,
/// a takeover of the released record (the `Vacant` guard) and a second
/// release all apply to the right attributes. (A *key* attribute named
/// like a placeholder, sort key `#n1` next to lease attribute `n1`, trips
/// moto: it reads the heartbeat's `SET #n1 = :lease` as a write of the sort
/// key, "Type mismatch for key #n1"; dynalite takes it. A moto quirk.)
async fn placeholder_like_names(server: Server) {
    let Some(endpoint) = server.endpoint(&format!("placeholder_like_names_{server:?}")) else {
        return;
    };
    let layout = TableLayout::new()
        .partition_key("n0")
        .sort_key_grouped("SK")
        .attribute(LynkAttribute::LeaseDuration, "n1")
        .attribute(LynkAttribute::VersionNumber, "a.b")
        .attribute(LynkAttribute::HostIdentifier, "#n0")
        .attribute(LynkAttribute::FencingToken, ":expected")
        .attribute(LynkAttribute::Released, "n2")
        .attribute(LynkAttribute::ExpiresAt, "#n2");
    let table = common::unique_table("review");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    let client = LockClient::builder(backend)
        .host_identifier("review")
        .default_lease(Duration::from_millis(900))
        .build()
        .unwrap();
    let guard = client.create_lock("g/a").acquire().await.unwrap();
    let token = guard.fencing_token();
    lynk_core::Clock::sleep(&lynk_core::SystemClock, Duration::from_millis(1_000)).await;
    assert!(
        !guard.is_lost(),
        "{:?}: {:?}",
        guard.lost_reason(),
        scan(&admin, &table).await
    );
    guard.release().await.unwrap();
    let again = client.create_lock("g/a").acquire().await.unwrap();
    assert!(again.fencing_token() > token);
    again.release().await.unwrap();
    client.shutdown().await;
    let all = scan(&admin, &table).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let item = &all[0];
    assert_eq!(item["n0"], s("g"));
    assert_eq!(item["SK"], s("a"));
    assert_eq!(item["n2"], AttributeValue::Bool(true));
    assert_eq!(item["#n0"], s("review"));
    assert!(item["a.b"].as_s().is_ok());
    assert!(item["n1"].as_n().is_ok());
    assert!(item["#n2"].as_n().is_ok());
    assert_eq!(
        item[":expected"],
        n(&(token.get() + 1).to_string()),
        "{item:?}"
    );
    let expected: HashSet<&str> = [
        "n0",
        "SK",
        "n1",
        "a.b",
        "#n0",
        ":expected",
        "n2",
        "#n2",
        "holderDetail",
    ]
    .into();
    let got: HashSet<&str> = item.keys().map(String::as_str).collect();
    assert_eq!(got, expected);
    admin.delete_table(&table, true, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_like_names_moto() {
    placeholder_like_names(Server::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_like_names_dynalite() {
    placeholder_like_names(Server::Dynalite).await;
}
