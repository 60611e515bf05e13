//! Fenced writes: applied while the lock is held, refused after a takeover.

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType,
};
use common::Server;
use lynk_core::{Condition, LockBackend, LockClient, TokenUpdate, Version, WriteRequest};
use lynk_dynamo::{Error, LynkAttribute, TableLayout};

fn put(table: &str, id: &str, value: &str) -> Put {
    Put::builder()
        .table_name(table)
        .item("id", AttributeValue::S(id.into()))
        .item("value", AttributeValue::S(value.into()))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_write_on_moto() {
    fenced_write(TableLayout::default(), "account-42").await;
}

/// The fence under a layout: its `ConditionCheck` uses the layout's key
/// (prefix, group and sort key) and its renamed token and released
/// attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_write_with_a_layout_on_moto() {
    let layout = TableLayout::new()
        .partition_key("PK")
        .key_prefix("LOCK#")
        .sort_key_grouped("SK")
        .attribute(LynkAttribute::FencingToken, "lynk-token")
        .attribute(LynkAttribute::Released, "lynk-released");
    fenced_write(layout, "accounts/42").await;
}

async fn fenced_write(layout: TableLayout, name: &str) {
    let Some(endpoint) = Server::Moto.endpoint("fenced_write_on_moto") else {
        return;
    };
    let locks = common::unique_table("fence-locks");
    let data = common::unique_table("fence-data");
    let admin = common::create_table_with(&endpoint, &locks, layout.clone()).await;
    admin
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
    let backend = common::backend_with(Server::Moto, &endpoint, &locks, layout).await;
    let client = LockClient::builder(backend.clone())
        .default_lease(Duration::from_secs(20))
        .build()
        .unwrap();
    let guard = client.create_lock(name).acquire().await.unwrap();

    // Held: the write applies.
    backend
        .fenced_write(&guard, put(&data, "42", "first"))
        .await
        .unwrap();
    let read = |id: &'static str| {
        let c = admin.client().clone();
        let data = data.clone();
        async move {
            c.get_item()
                .table_name(data)
                .key("id", AttributeValue::S(id.into()))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item()
                .and_then(|i| i.get("value").cloned())
        }
    };
    assert_eq!(read("42").await, Some(AttributeValue::S("first".into())));

    // The write's own condition failing is told apart from a lost lock.
    let conditional = Put::builder()
        .table_name(&data)
        .item("id", AttributeValue::S("42".into()))
        .item("value", AttributeValue::S("dup".into()))
        .condition_expression("attribute_not_exists(id)")
        .build()
        .unwrap();
    let err = backend.fenced_write(&guard, conditional).await.unwrap_err();
    assert!(matches!(err, Error::WriteConditionFailed { .. }), "{err}");

    // Another client takes the lock over (as after an expired lease).
    let current = backend.read(name).await.unwrap().unwrap();
    let stolen = backend
        .write(WriteRequest {
            key: name.into(),
            condition: Condition::VersionIs(current.version.clone()),
            version: Version::random(),
            lease_duration: Duration::from_secs(20),
            host: "thief".into(),
            token: TokenUpdate::Next { initial: 1 },
            payload: None,
            released: false,
            queue: Default::default(),
            granted_to: None,
            holder_detail: None,
        })
        .await
        .unwrap();
    assert!(stolen.fencing_token > current.fencing_token);

    // Taken over: the write is refused, and nothing is written.
    let err = backend
        .fenced_write(&guard, put(&data, "42", "stale"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LockLost { .. }), "{err}");
    assert!(err.to_string().contains("no longer held"), "{err}");
    assert_eq!(read("42").await, Some(AttributeValue::S("first".into())));
    println!("fenced write: applied while held, refused after takeover: {err}");

    drop(guard);
    client.shutdown().await;
    admin.delete_table(&locks, false, true).await.unwrap();
    admin.delete_table(&data, true, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_write_needs_transactions_on_dynalite() {
    let Some(endpoint) = Server::Dynalite.endpoint("fenced_write_needs_transactions_on_dynalite")
    else {
        return;
    };
    eprintln!("SKIP fenced write success/takeover on dynalite: dynalite has no TransactWriteItems; checking the clear error instead");
    let locks = common::unique_table("fence-dl");
    let admin = common::create_table(&endpoint, &locks).await;
    let backend = common::backend(Server::Dynalite, &endpoint, &locks).await;
    let client = LockClient::new(backend.clone()).unwrap();
    let guard = client.create_lock("x").acquire().await.unwrap();
    let err = backend
        .fenced_write(&guard, put("whatever", "1", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TransactionsUnsupported), "{err}");
    guard.release().await.unwrap();
    client.shutdown().await;
    admin.delete_table(&locks, false, true).await.unwrap();
}
