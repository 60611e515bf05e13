//! Error classification: unreachable endpoints, endpoints that never answer,
//! malformed items and refused credentials.

mod common;

use std::time::Duration;

use common::Server;
use lynk_core::{
    BackendErrorKind, Clock, Condition, LockBackend, LockClient, LockError, SystemClock,
    TokenUpdate, Version, WriteError, WriteRequest,
};
use lynk_dynamo::aws_sdk_dynamodb::types::AttributeValue;
use lynk_dynamo::{DynamoBackend, Error, TableAdmin, Timeouts};

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
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
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

/// Short limits, so the tests below finish quickly.
const SHORT: Timeouts = Timeouts {
    connect: Duration::from_millis(500),
    read: Duration::from_millis(400),
    attempt: Duration::from_millis(400),
    operation: Duration::from_millis(1000),
};

/// How long a call may take under [`SHORT`]: the operation limit, plus
/// generous slack for a loaded machine.
const SHORT_BOUND: Duration = Duration::from_millis(1000 + 1500);

/// A loopback endpoint that accepts connections and never answers (the
/// connections stay open): what a half-open network looks like to a client.
async fn silent_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_endpoint_that_never_answers_fails_each_call_in_bounded_time() {
    let endpoint = silent_endpoint().await;
    let backend = DynamoBackend::builder("t")
        .options(common::options(&endpoint))
        .timeouts(SHORT)
        .build()
        .await
        .unwrap();
    let clock = SystemClock;

    // A read that times out changed nothing: retryable, not "unknown".
    let start = clock.now();
    let err = backend.read("k").await.unwrap_err();
    let took = clock.now() - start;
    println!("read after {took:?}: {err}");
    assert!(took < SHORT_BOUND, "{took:?}");
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());

    // A write that times out was sent: it may have applied.
    let start = clock.now();
    let result = backend.write(request()).await;
    let took = clock.now() - start;
    println!("write after {took:?}: {result:?}");
    assert!(took < SHORT_BOUND, "{took:?}");
    match result {
        Err(WriteError::Backend(e)) => {
            assert_eq!(e.kind(), BackendErrorKind::OutcomeUnknown, "{e}");
            assert!(e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    let start = clock.now();
    let result = backend.delete("k", &Version::random()).await;
    assert!(clock.now() - start < SHORT_BOUND);
    match result {
        Err(WriteError::Backend(e)) => {
            assert_eq!(e.kind(), BackendErrorKind::OutcomeUnknown, "{e}")
        }
        other => panic!("{other:?}"),
    }

    // Table administration: reads are unreachable, writes unknown.
    let admin = TableAdmin::connect(&common::options(&endpoint).timeouts(SHORT))
        .await
        .unwrap();
    let start = clock.now();
    let err = admin.list_tables().await.unwrap_err();
    assert!(clock.now() - start < SHORT_BOUND);
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.is_retryable());
    let err = admin.check_table("t").await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let start = clock.now();
    let err = admin
        .create_table("t", &lynk_dynamo::CreateOptions::new())
        .await
        .unwrap_err();
    assert!(
        clock.now() - start < SHORT_BOUND * 2,
        "a check, then the create"
    );
    assert!(err.is_retryable(), "{err}");
}

/// A loopback endpoint that accepts one connection and never answers on it,
/// then refuses every other connection.
async fn silent_once_then_refusing() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        drop(listener); // from now on, connections are refused
        std::future::pending::<()>().await;
        drop(conn);
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_write_retried_after_a_timeout_is_unknown_even_if_the_last_attempt_was_refused() {
    // Attempt 1 is sent and times out (it may have applied); the SDK's
    // retries then find the port closed. The last error alone ("connection
    // refused", so not sent) must not make the write look certainly failed.
    // (The operation limit leaves room for the SDK's three attempts and
    // their backoffs, so the last error is the refusal.)
    let timeouts = Timeouts {
        operation: Duration::from_secs(8),
        ..SHORT
    };
    let backend = DynamoBackend::builder("t")
        .options(common::options(&silent_once_then_refusing().await))
        .timeouts(timeouts)
        .build()
        .await
        .unwrap();
    match backend.write(request()).await {
        Err(WriteError::Backend(e)) => {
            println!("{e}");
            assert_eq!(e.kind(), BackendErrorKind::OutcomeUnknown, "{e}");
            assert!(e.message().contains("an earlier one was"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let backend = DynamoBackend::builder("t")
        .options(common::options(&silent_once_then_refusing().await))
        .timeouts(timeouts)
        .build()
        .await
        .unwrap();
    match backend.delete("k", &Version::random()).await {
        Err(WriteError::Backend(e)) => {
            assert_eq!(e.kind(), BackendErrorKind::OutcomeUnknown, "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A release (no record asked back), over a client given by the user.
    let config = common::options(&silent_once_then_refusing().await)
        .timeouts(timeouts)
        .load_config()
        .await
        .unwrap();
    let backend = DynamoBackend::builder("t")
        .client(aws_sdk_dynamodb::Client::new(&config))
        .build()
        .await
        .unwrap();
    match backend.write_no_return(request()).await {
        Err(WriteError::Backend(e)) => {
            assert_eq!(e.kind(), BackendErrorKind::OutcomeUnknown, "{e}");
            assert!(e.message().contains("an earlier one was"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// A loopback endpoint that answers `DescribeTable` (an ACTIVE lock table)
/// and never answers anything else: DynamoDB stopping half way.
async fn answers_only_describe_table() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let describe = text[..end].contains("dynamodb_20120810.describetable");
                    buf.drain(..end + 4 + len);
                    if !describe {
                        std::future::pending::<()>().await; // never answer
                    }
                    let body = r#"{"Table":{"TableName":"t","TableStatus":"ACTIVE","TableArn":"arn:aws:dynamodb:us-east-1:123456789012:table/t","KeySchema":[{"AttributeName":"lockKey","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"lockKey","AttributeType":"S"}]}}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_table_check_reports_dynamodb_stopping_half_way() {
    // DescribeTable answers; the tag and TTL look-ups that follow do not.
    // Those are optional (a policy may forbid them, dynalite lacks TTL), but
    // a timeout is not a refusal: the check reports it instead of waiting
    // out one timeout per remaining step and calling the table fine.
    let admin =
        TableAdmin::connect(&common::options(&answers_only_describe_table().await).timeouts(SHORT))
            .await
            .unwrap();
    let clock = SystemClock;
    let start = clock.now();
    let err = admin.check_table("t").await.unwrap_err();
    let took = clock.now() - start;
    println!("check_table after {took:?}: {err}");
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("ListTagsOfResource"), "{err}");
    assert!(took < SHORT_BOUND, "{took:?}");
}

#[tokio::test]
async fn the_default_timeouts_bound_a_call() {
    // No override: the defaults (operation limit 8 s) apply.
    let endpoint = silent_endpoint().await;
    let backend = DynamoBackend::builder("t")
        .options(common::options(&endpoint))
        .build()
        .await
        .unwrap();
    let clock = SystemClock;
    let start = clock.now();
    let err = backend.read("k").await.unwrap_err();
    let took = clock.now() - start;
    println!("read after {took:?}: {err}");
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    assert!(took >= Timeouts::DEFAULT.attempt, "{took:?}");
    assert!(
        took < Timeouts::DEFAULT.operation + Duration::from_secs(2),
        "{took:?}"
    );
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
