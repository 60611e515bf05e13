//! The table administration API against moto and dynalite.

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use common::Server;
use lynk_core::{BackendErrorKind, LockBackend, LockClient, LockError};
use lynk_dynamo::{
    Billing, CreateOptions, Error, LynkAttribute, TableAdmin, TableBilling, TableLayout,
    TableStatus, TtlStatus,
};

async fn table_lifecycle(server: Server, test: &str) {
    let Some(endpoint) = server.endpoint(test) else {
        return;
    };
    let admin = TableAdmin::connect(&common::options(&endpoint))
        .await
        .unwrap();
    let table = common::unique_table("admin");

    // A missing table: lock operations say so and how to fix it.
    let backend = common::backend(server, &endpoint, &table).await;
    let err = backend.read("x").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::TableMissing, "{err}");
    assert!(
        err.message()
            .contains(&format!("lynk create-table {table}")),
        "{err}"
    );
    assert!(matches!(
        admin.check_table(&table).await,
        Err(Error::TableMissing { .. })
    ));

    // Create, on-demand, tagged, with TTL where the server has it.
    let outcome = admin
        .create_table(&table, &CreateOptions::new())
        .await
        .unwrap();
    println!("{server:?} create: {outcome:?}");
    assert!(outcome.active);
    assert_eq!(outcome.ttl_enabled, server == Server::Moto, "{outcome:?}");
    let again = admin.create_table(&table, &CreateOptions::new()).await;
    assert!(matches!(again, Err(Error::TableExists { .. })), "{again:?}");

    let info = admin.check_table(&table).await.unwrap();
    println!("{server:?} check: {info:?}");
    assert_eq!(info.status, TableStatus::Active);
    assert_eq!(info.billing, TableBilling::PayPerRequest);
    assert_eq!(info.tagged, Some(true));
    if server == Server::Moto {
        let ttl = info.ttl.as_ref().expect("moto reports TTL");
        assert_eq!(ttl.status, TtlStatus::Enabled);
        assert_eq!(ttl.to_string(), "ENABLED on expiresAt");
    }
    assert!(admin.list_tables().await.unwrap().contains(&table));

    // Locks in the table.
    let client = LockClient::builder(backend.clone())
        .host_identifier("admin-test")
        .build()
        .unwrap();
    let guard = client
        .create_lock("held")
        .with_payload(&b"leader at 10.0.0.1"[..])
        .acquire()
        .await
        .unwrap();
    client
        .create_lock("released")
        .acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let listing = admin.list_locks(&table).await.unwrap();
    let names: Vec<&str> = listing
        .locks
        .iter()
        .map(|l| l.record.key.as_str())
        .collect();
    assert_eq!(names, ["held", "released"]);
    let held = &listing.locks[0];
    assert_eq!(held.record.host, "admin-test");
    assert_eq!(held.record.fencing_token, Some(guard.fencing_token()));
    assert_eq!(held.record.payload.as_ref().map(|p| p.len()), Some(18));
    assert!(!held.record.released);
    assert!(held.expires_at.is_some());
    assert!(listing.locks[1].record.released);
    assert_eq!(listing.locks[1].record.lease_duration, Duration::ZERO);
    assert!(listing.malformed.is_empty());
    guard.release().await.unwrap();
    client.shutdown().await;

    // Delete waits until gone; a second delete says the table is missing.
    admin.delete_table(&table, false, true).await.unwrap();
    assert!(!admin.list_all_tables().await.unwrap().contains(&table));
    assert!(matches!(
        admin.delete_table(&table, false, true).await,
        Err(Error::TableMissing { .. })
    ));
    let err = LockClient::new(backend)
        .unwrap()
        .create_lock("x")
        .try_acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Backend { .. }), "{err}");
    assert!(err.to_string().contains("create-table"), "{err}");
}

async fn foreign_tables(server: Server, test: &str) {
    let Some(endpoint) = server.endpoint(test) else {
        return;
    };
    let admin = TableAdmin::connect(&common::options(&endpoint))
        .await
        .unwrap();
    // A table lynk did not create, with the wrong key schema.
    let table = common::unique_table("foreign");
    admin
        .client()
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::N)
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
    let err = admin.check_table(&table).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::TableMisconfigured { .. }), "{text}");
    assert!(text.contains("hash key is `id`, not `lockKey`"), "{text}");
    assert!(text.contains("lynk create-table"), "{text}");
    assert!(!admin.list_tables().await.unwrap().contains(&table));

    // Lock operations on it are classified as a misconfigured table.
    let backend = common::backend(server, &endpoint, &table).await;
    let err = backend.read("x").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::TableMisconfigured, "{err}");

    // Delete refuses an untagged table unless forced.
    let refused = admin.delete_table(&table, false, true).await;
    assert!(
        matches!(refused, Err(Error::NotALockTable { .. })),
        "{refused:?}"
    );
    admin.delete_table(&table, true, true).await.unwrap();

    // Provisioned billing, no wait.
    let table = common::unique_table("prov");
    let outcome = admin
        .create_table(
            &table,
            &CreateOptions::new()
                .billing(Billing::Provisioned { read: 5, write: 5 })
                .wait(false),
        )
        .await
        .unwrap();
    assert!(!outcome.ttl_enabled);
    assert!(!outcome.warnings.is_empty());
    let admin = admin.with_wait_timeout(Duration::from_secs(30));
    let mut info = admin.check_table(&table).await.unwrap();
    for _ in 0..50 {
        if info.status == TableStatus::Active {
            break;
        }
        lynk_core::Clock::sleep(&lynk_core::SystemClock, Duration::from_millis(100)).await;
        info = admin.check_table(&table).await.unwrap();
    }
    assert_eq!(info.billing, TableBilling::Provisioned);
    admin.delete_table(&table, false, true).await.unwrap();
}

/// `check_table` against a layout: `create_table` makes the layout's keys,
/// and each differing key attribute, kind or type is named with its fix; a
/// TTL on another attribute than the layout's is a warning.
async fn layouts(server: Server, test: &str) {
    let Some(endpoint) = server.endpoint(test) else {
        return;
    };
    let connect = |layout: TableLayout| {
        let endpoint = endpoint.clone();
        async move {
            TableAdmin::connect(&common::options(&endpoint))
                .await
                .unwrap()
                .with_layout(layout)
                .unwrap()
        }
    };
    let grouped = TableLayout::new()
        .partition_key("PK")
        .key_prefix("LOCK#")
        .sort_key_grouped("SK")
        .attribute(LynkAttribute::ExpiresAt, "ttl");
    let table = common::unique_table("layout");
    let admin = common::create_table_with(&endpoint, &table, grouped.clone()).await;
    let info = admin.check_table(&table).await.expect("fits its layout");
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    if server == Server::Moto {
        let ttl = info.ttl.expect("moto reports TTL");
        assert_eq!(
            ttl.attribute.as_deref(),
            Some("ttl"),
            "TTL on the layout's attribute"
        );
    }
    let mismatch = |layout: TableLayout, says: Vec<&'static str>| {
        let connect = &connect;
        let table = &table;
        async move {
            let admin = connect(layout).await;
            let err = admin.check_table(table).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::TableMisconfigured { .. }), "{text}");
            for s in says {
                assert!(text.contains(s), "{s:?} not in {text}");
            }
        }
    };
    mismatch(
        TableLayout::default(),
        vec![
            "its hash key is `PK`, not `lockKey` (the layout's partition key)",
            "it has a sort key `SK`, and the table layout has none",
            "`--partition-key PK`",
            "TableLayout::sort_key_grouped",
        ],
    )
    .await;
    mismatch(
        TableLayout::new()
            .partition_key("PK")
            .sort_key_fixed("sk", "LOCK"),
        vec![
            "its sort key is `SK`, not `sk`",
            "name the layout's sort key `SK`",
        ],
    )
    .await;
    // The same keys with another TTL attribute: usable, with a warning.
    let info = connect(
        TableLayout::new()
            .partition_key("PK")
            .sort_key_grouped("SK"),
    )
    .await
    .check_table(&table)
    .await
    .expect("the keys fit");
    if server == Server::Moto {
        assert!(
            info.warnings
                .iter()
                .any(|w| w.contains("TTL is on `ttl`, not on lynk's TTL attribute `expiresAt`")),
            "{:?}",
            info.warnings
        );
    }
    admin.delete_table(&table, false, true).await.unwrap();

    // A default table checked with a sort key layout; a number key.
    let plain = common::unique_table("layout");
    let admin = common::create_table(&endpoint, &plain).await;
    let admin2 = connect(TableLayout::new().sort_key_grouped("SK")).await;
    let text = admin2.check_table(&plain).await.unwrap_err().to_string();
    assert!(
        text.contains("it has no sort key, and the table layout expects the sort key `SK`"),
        "{text}"
    );
    assert!(text.contains("with the same layout"), "{text}");
    admin.delete_table(&plain, false, true).await.unwrap();
    let numbered = common::unique_table("layout");
    admin
        .client()
        .create_table()
        .table_name(&numbered)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("PK")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("PK")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let text = connect(TableLayout::new().partition_key("PK"))
        .await
        .check_table(&numbered)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("its hash key `PK` has type N, not S (string)"),
        "{text}"
    );
    admin.delete_table(&numbered, true, true).await.unwrap();

    // A layout that is not usable is refused before anything is sent.
    let err = TableAdmin::connect(&common::options(&endpoint))
        .await
        .unwrap()
        .with_layout(TableLayout::new().attribute(LynkAttribute::Payload, "lockKey"))
        .unwrap_err();
    assert!(err.to_string().contains("both called `lockKey`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_on_moto() {
    layouts(Server::Moto, "layouts_on_moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_on_dynalite() {
    layouts(Server::Dynalite, "layouts_on_dynalite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_lifecycle_on_moto() {
    table_lifecycle(Server::Moto, "table_lifecycle_on_moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_lifecycle_on_dynalite() {
    table_lifecycle(Server::Dynalite, "table_lifecycle_on_dynalite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_tables_on_moto() {
    foreign_tables(Server::Moto, "foreign_tables_on_moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_tables_on_dynalite() {
    foreign_tables(Server::Dynalite, "foreign_tables_on_dynalite").await;
}
