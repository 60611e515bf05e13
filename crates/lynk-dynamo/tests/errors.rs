//! Error classification: unreachable endpoints, malformed items and refused
//! credentials.

mod common;

use common::Server;
use lynk_core::{
    BackendErrorKind, Condition, LockBackend, LockClient, LockError, TokenUpdate, Version,
    WriteError, WriteRequest,
};
use lynk_dynamo::aws_sdk_dynamodb::types::AttributeValue;
use lynk_dynamo::{DynamoBackend, Error, TableAdmin};

fn request() -> WriteRequest {
    WriteRequest {
        key: "k".into(),
        condition: Condition::Absent,
        version: Version::random(),
        lease_duration: std::time::Duration::from_secs(20),
        host: "h".into(),
        token: TokenUpdate::Next { initial: 1 },
        payload: None,
        released: false,
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_not_unknown() {
    // Nothing listens on a port we bound and closed: connections are refused,
    // so nothing was sent and a write is certainly not applied.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let backend = DynamoBackend::builder("t")
        .options(common::options(&endpoint))
        .build()
        .await
        .unwrap();
    let err = backend.read("k").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    match backend.write(request()).await {
        Err(WriteError::Backend(e)) => {
            assert_eq!(e.kind(), BackendErrorKind::Unavailable, "{e}");
            assert!(e.message().contains("endpoint"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let admin = TableAdmin::connect(&common::options(&endpoint))
        .await
        .unwrap();
    let err = admin.list_tables().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.is_retryable());
    println!("{err}");
}

#[tokio::test]
async fn missing_table_names_the_fix() {
    let Some(endpoint) = Server::Moto.endpoint("missing_table_names_the_fix") else {
        return;
    };
    let backend = common::backend(Server::Moto, &endpoint, "no-such-lynk-table").await;
    let client = LockClient::new(backend).unwrap();
    let err = client.create_lock("x").try_acquire().await.unwrap_err();
    let LockError::Backend { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(source.kind(), BackendErrorKind::TableMissing);
    assert!(
        err.to_string()
            .contains("create it with `lynk create-table no-such-lynk-table`"),
        "{err}"
    );
    println!("{err}");
    client.shutdown().await;
}

#[tokio::test]
async fn a_malformed_item_is_reported_at_once() {
    let Some(endpoint) = Server::Moto.endpoint("a_malformed_item_is_reported_at_once") else {
        return;
    };
    let table = common::unique_table("malformed");
    let admin = common::create_table(&endpoint, &table).await;
    // An item someone else wrote: a lease but no version.
    admin
        .client()
        .put_item()
        .table_name(&table)
        .item("lockKey", AttributeValue::S("bad".into()))
        .item("leaseDuration", AttributeValue::N("20".into()))
        .send()
        .await
        .unwrap();
    let (client, counter) = common::counting_client(&endpoint).await;
    let backend = DynamoBackend::from_client(client, &table);

    let err = backend.read("bad").await.unwrap_err();
    println!("{err}");
    assert_eq!(err.kind(), BackendErrorKind::Other);
    assert!(err.message().contains("versionNumber"), "{err}");
    assert!(err.message().contains("delete it"), "{err}");
    assert_eq!(counter.total(), 1, "read once, not re-read");

    // A write over it fails its condition and reports the item, rather
    // than hiding it behind the failed condition.
    let mut over = request();
    over.key = "bad".into();
    over.condition = Condition::VersionIs(Version::random());
    match backend.write(over).await {
        Err(WriteError::Backend(e)) => assert!(e.message().contains("versionNumber"), "{e}"),
        other => panic!("{other:?}"),
    }
    match backend.delete("bad", &Version::random()).await {
        Err(WriteError::Backend(e)) => assert!(e.message().contains("versionNumber"), "{e}"),
        other => panic!("{other:?}"),
    }
    admin.delete_table(&table, false, true).await.ok();
}
