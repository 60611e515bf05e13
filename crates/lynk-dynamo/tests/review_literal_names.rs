//! Review of 011b158: DynamoDB requests spell lynk's default attribute names
//! as they are (no `#` placeholder, no `ExpressionAttributeNames` for the
//! default layout) and keep placeholders for any other name.
//!
//! A literal name and a placeholder for the same attribute mean the same to
//! DynamoDB as long as the literal is a plain, non-reserved name; so the
//! attack is on layouts where lynk's default spellings land on *other*
//! attributes (swapped names, a key called like a default name), mixed with
//! reserved words and placeholder-shaped names, over every request kind:
//! acquire (Absent and Vacant), heartbeat, handover, queue writes and grants,
//! release, delete, the admin's scan/query/release, the semaphore, the
//! transactional multi-lock and the fence (moto: transactions).
//!
//! Each check runs on dynalite (strict about reserved words and unused
//! names/values) and on moto.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem,
};
use common::Server;
use lynk_core::{Clock, LockClient, ReleaseMode, SystemClock};
use lynk_dynamo::{LynkAttribute as A, ReleaseOutcome, TableAdmin, TableLayout};

type Item = HashMap<String, AttributeValue>;

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

async fn sleep(ms: u64) {
    SystemClock.sleep(Duration::from_millis(ms)).await;
}

/// lynk's attributes swapped among lynk's own default spellings: every
/// literal default name in a request now refers to another of lynk's
/// attributes (released <-> payload, fencingToken <-> expiresAt,
/// grantedTo <-> holderDetail), with the default key.
fn swapped() -> TableLayout {
    TableLayout::new()
        .attribute(A::Released, "payload")
        .attribute(A::Payload, "released")
        .attribute(A::FencingToken, "expiresAt")
        .attribute(A::ExpiresAt, "fencingToken")
        .attribute(A::GrantedTo, "holderDetail")
        .attribute(A::HolderDetail, "grantedTo")
}

/// Keys called like lynk's default attributes (partition key
/// `versionNumber`, grouped sort key `waitQueue`), lynk's version attribute
/// called `lockKey`, and the rest reserved words (`name`, `size`, `key`,
/// `status`, `ttl`, `duration`, `value`) and a placeholder-shaped name.
fn keys_and_reserved() -> TableLayout {
    TableLayout::new()
        .partition_key("versionNumber")
        .sort_key_grouped("waitQueue")
        .attribute(A::VersionNumber, "lockKey")
        .attribute(A::WaitQueue, "name")
        .attribute(A::QueueRevision, "size")
        .attribute(A::GrantedTo, "key")
        .attribute(A::HolderDetail, "status")
        .attribute(A::ExpiresAt, "ttl")
        .attribute(A::LeaseDuration, "duration")
        .attribute(A::Payload, "value")
        .attribute(A::HostIdentifier, "n0")
        .attribute(A::FencingToken, "lynk-token")
}

/// A fixed sort key called `released` (a default name, literal in
/// requests), lynk's released marker called `Released` (a placeholder), the
/// partition key `lockKey`'s case variant `LockKey` for the payload.
fn fixed_and_case() -> TableLayout {
    TableLayout::new()
        .partition_key("PK")
        .key_prefix("LOCK#")
        .sort_key_fixed("released", "LOCK")
        .attribute(A::Released, "Released")
        .attribute(A::Payload, "LockKey")
        .attribute(A::FencingToken, "TTL")
}

/// Every write kind of the protocol under `layout` on `server`, then the
/// admin's reads and release: nothing is refused and every value lands in
/// the attribute the layout names.
async fn every_request(server: Server, layout: TableLayout, label: &str) {
    let test = format!("every_request_{label}_{server:?}");
    let Some(endpoint) = server.endpoint(&test) else {
        return;
    };
    let table = common::unique_table("literal");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    let build = |host: &str| {
        LockClient::builder(backend.clone())
            .host_identifier(host)
            .default_lease(Duration::from_millis(1200))
            .poll_interval(Duration::from_millis(100))
            .holder_label(format!("{host}-label"))
            .build()
            .unwrap()
    };
    let (a, b) = (build("a"), build("b"));
    let name = "g/x";
    let mut problems: Vec<String> = Vec::new();

    // Acquire (Absent) with a payload, heartbeats across a lease.
    let g = a
        .create_lock(name)
        .with_payload("p1")
        .acquire()
        .await
        .expect("first acquire");
    let t1 = g.fencing_token().get();
    sleep(1500).await;
    if g.is_lost() {
        problems.push(format!("heartbeats failed: {:?}", g.lost_reason()));
    }
    // A local waiter (handover) and another process (queue write, grant).
    let local = {
        let lock = a.create_lock(name).with_payload("p2");
        tokio::spawn(async move { lock.acquire().await })
    };
    sleep(100).await;
    let remote = {
        let lock = b.create_lock(name);
        tokio::spawn(async move { lock.acquire().await })
    };
    // Until b's entry is stored (its first poll is 100 ms after its first
    // attempt).
    let q_attr = layout.attribute_name(A::WaitQueue);
    let mut queued = Vec::new();
    for _ in 0..30 {
        sleep(100).await;
        queued = scan(&admin, &table).await;
        if queued.iter().any(|i| {
            i.get(q_attr)
                .is_some_and(|v| v.as_l().is_ok_and(|l| !l.is_empty()))
        }) {
            break;
        }
    }
    g.release().await.expect("release with waiters");
    // Whoever got it first (grant or handover), then the other.
    let mut tokens = vec![t1];
    let first = tokio::select! {
        r = local => ("local", r.unwrap().expect("local waiter")),
        r = remote => ("remote", r.unwrap().expect("remote waiter")),
    };
    tokens.push(first.1.fencing_token().get());
    let who = first.0;
    first
        .1
        .release()
        .await
        .expect("release of the first waiter");
    let second = a
        .create_lock(name)
        .acquire_timeout(Duration::from_secs(10))
        .await;
    match second {
        Ok(g) => {
            tokens.push(g.fencing_token().get());
            g.release().await.expect("release");
        }
        Err(e) => problems.push(format!("re-acquire after {who}: {e}")),
    }
    if !tokens.windows(2).all(|w| w[0] < w[1]) {
        problems.push(format!("tokens not rising: {tokens:?}"));
    }
    // A fresh acquire over the released record (Vacant), released again.
    let g = b.create_lock(name).acquire().await.expect("Vacant acquire");
    if g.fencing_token().get() <= *tokens.last().unwrap() {
        problems.push("Vacant acquire did not raise the token".into());
    }
    let last_token = g.fencing_token().get();

    // The stored item: every value under the layout's name.
    let items = scan(&admin, &table).await;
    let lock_items: Vec<&Item> = items.iter().filter(|i| layout.is_lock_item(i)).collect();
    if lock_items.len() != 1 {
        problems.push(format!("lock items: {items:?}"));
    } else {
        let item = lock_items[0];
        let token_attr = layout.attribute_name(A::FencingToken);
        if item.get(token_attr) != Some(&AttributeValue::N(last_token.to_string())) {
            problems.push(format!("token not under `{token_attr}`: {item:?}"));
        }
        let host_attr = layout.attribute_name(A::HostIdentifier);
        if item.get(host_attr) != Some(&AttributeValue::S("b".into())) {
            problems.push(format!("host not under `{host_attr}`: {item:?}"));
        }
        let released_attr = layout.attribute_name(A::Released);
        if item.contains_key(released_attr) {
            problems.push(format!("held record has `{released_attr}`: {item:?}"));
        }
        let expires_attr = layout.attribute_name(A::ExpiresAt);
        if item.get(expires_attr).is_none_or(|v| v.as_n().is_err()) {
            problems.push(format!("no TTL under `{expires_attr}`: {item:?}"));
        }
        let mut allowed: HashSet<&str> = A::ALL.iter().map(|a| layout.attribute_name(*a)).collect();
        allowed.insert(layout.partition_key_attribute());
        if let Some(sk) = layout.sort_key_attribute() {
            allowed.insert(sk);
        }
        for k in item.keys() {
            if !allowed.contains(k.as_str()) {
                problems.push(format!("stray attribute `{k}`: {item:?}"));
            }
        }
    }
    // While b queued, its entry was stored under the layout's queue name.
    if !queued.iter().any(|i| {
        i.get(q_attr)
            .is_some_and(|v| v.as_l().is_ok_and(|l| !l.is_empty()))
    }) {
        problems.push(format!(
            "no queue under `{q_attr}` while b waited: {queued:?}"
        ));
    }

    // The admin: list (scan), list_group (query) when grouped, describe,
    // release_group (a release by version).
    let admin = admin.with_layout(layout.clone()).unwrap();
    match admin.list_locks(&table).await {
        Ok(l) if l.locks.len() == 1 && l.malformed.is_empty() => {
            if l.locks[0].record.host != "b" || l.locks[0].record.released {
                problems.push(format!("list_locks read {:?}", l.locks[0]));
            }
        }
        other => problems.push(format!("list_locks: {other:?}")),
    }
    if layout.has_groups() {
        match admin.list_group(&table, "g").await {
            Ok(l) if l.locks.len() == 1 => {}
            other => problems.push(format!("list_group: {other:?}")),
        }
        match admin.release_group(&table, "g").await {
            Ok(r) if r.len() == 1 && matches!(r[0].outcome, ReleaseOutcome::Released { .. }) => {}
            other => problems.push(format!("release_group: {other:?}")),
        }
        // Released by an operator, nobody else holds it: the guard's own
        // release finds it released (Ok) or its heartbeat found it lost.
        let _ = g.release().await;
    } else {
        g.release().await.expect("last release");
    }
    a.shutdown().await;
    b.shutdown().await;

    // Semaphore (one record of permit lines) and delete-mode releases.
    let c = LockClient::builder(backend.clone())
        .host_identifier("c")
        .release_mode(ReleaseMode::Delete)
        .build()
        .unwrap();
    let sem = c.semaphore("g/sem", 2);
    match sem.acquire().await {
        Ok(p) => {
            if let Err(e) = p.release().await {
                problems.push(format!("semaphore release: {e}"));
            }
        }
        Err(e) => problems.push(format!("semaphore acquire: {e}")),
    }
    match c.create_lock("g/del").acquire().await {
        Ok(g) => {
            if let Err(e) = g.release().await {
                problems.push(format!("delete release: {e}"));
            }
        }
        Err(e) => problems.push(format!("acquire before delete: {e}")),
    }
    c.shutdown().await;
    if server == Server::Moto {
        transactional(&endpoint, &table, &layout, &mut problems).await;
    }
    admin.delete_table(&table, true, true).await.unwrap();
    assert!(problems.is_empty(), "{label} on {server:?}: {problems:#?}");
}

/// On moto (transactions): the multi-lock's transaction (acquire of free
/// records) and a fenced write under the layout.
async fn transactional(
    endpoint: &str,
    table: &str,
    layout: &TableLayout,
    problems: &mut Vec<String>,
) {
    let backend = common::backend_with(Server::Moto, endpoint, table, layout.clone()).await;
    let client = LockClient::builder(backend.clone()).build().unwrap();
    match client.multi_lock(["g/m1", "g/m2"]).acquire().await {
        Ok(m) => {
            if let Err(e) = m.release().await {
                problems.push(format!("multi release: {e}"));
            }
        }
        Err(e) => problems.push(format!("multi acquire: {e}")),
    }
    // Again, over the released records.
    match client.multi_lock(["g/m1", "g/m2"]).acquire().await {
        Ok(m) => m
            .release()
            .await
            .unwrap_or_else(|e| problems.push(format!("{e}"))),
        Err(e) => problems.push(format!("multi re-acquire: {e}")),
    }
    let data = common::unique_table("literal-data");
    backend
        .client()
        .create_table()
        .table_name(&data)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let put = |v: &str| {
        Put::builder()
            .table_name(&data)
            .item("id", AttributeValue::S("1".into()))
            .item("v", AttributeValue::S(v.into()))
            .build()
            .unwrap()
    };
    let g = client.create_lock("g/f").acquire().await.unwrap();
    if let Err(e) = backend.fenced_write(&g, put("held")).await {
        problems.push(format!("fenced write while held: {e}"));
    }
    let token = g.fencing_token();
    let stale = backend.fence(&g).unwrap();
    g.release().await.unwrap();
    let g2 = client.create_lock("g/f").acquire().await.unwrap();
    if g2.fencing_token() <= token {
        problems.push("fence token did not rise".into());
    }
    // The old holder's fence must fail now (it checks the layout's token and
    // released attributes, not whatever a default spelling names).
    let stale_write = backend
        .client()
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().condition_check(stale).build())
        .transact_items(TransactWriteItem::builder().put(put("stale")).build())
        .send()
        .await;
    if stale_write.is_ok() {
        problems.push("a stale holder's fence passed".into());
    }
    let fence = backend.fence(&g2).unwrap();
    if fence.expression_attribute_names().is_some() && layout.is_default() {
        problems.push(format!("default layout fence carries names: {fence:?}"));
    }
    if let Err(e) = backend.fenced_write(&g2, put("held2")).await {
        problems.push(format!("fenced write of the new holder: {e}"));
    }
    g2.release().await.unwrap();
    client.shutdown().await;
}

macro_rules! both {
    ($name:ident, $layout:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynalite() {
                every_request(Server::Dynalite, $layout, stringify!($name)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn moto() {
                every_request(Server::Moto, $layout, stringify!($name)).await;
            }
        }
    };
}

both!(default_layout, TableLayout::new());
both!(
    grouped_default_names,
    TableLayout::new().sort_key_grouped("SK")
);
both!(swapped_default_names, swapped());
both!(
    keys_named_like_defaults_and_reserved_words,
    keys_and_reserved()
);
both!(fixed_sort_key_named_released, fixed_and_case());
