//! Review of `write_no_return` (releases and grants that ask DynamoDB for no
//! record back): lost release and grant responses retried by the SDK while
//! another client acts in between, and `list_group` over several pages of
//! Query results with the placeholders it now moves out once.
//!
//! The four FINDING tests fail: with the SDK's retries (the default), a
//! write whose first attempt applied and whose retry then fails its
//! condition over another client's record is answered `ConditionFailed`
//! ("nothing was written"), and the engine reports a release or grant that
//! applied as `Lost { Stolen }`. The root is `DynamoBackend::update`, which
//! `write` shares, so it predates `write_no_return`; the change keeps it on
//! the release and grant paths, which are the ones where another client can
//! write between the two attempts (the release frees the lock).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use common::Server;
use lynk_core::{
    BackendErrorKind, Clock, Condition, LockBackend, LockClient, LockError, SystemClock,
    TokenUpdate, Version, WriteError, WriteRequest,
};
use lynk_dynamo::{DynamoBackend, TableLayout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A proxy that, on the `target`-th `UpdateItem` (1-based) whose body
/// contains `marker` (lower case; [`NO_RETURN`] picks the writes that ask for
/// no record back: releases and grants), forwards it to
/// the server (which applies it), tells the test (`applied`), waits for the
/// test's go-ahead (`resume`) and then closes the connection without the
/// response: the client saw its write applied by nobody, and the test got
/// to act in between.
#[derive(Clone)]
struct Proxy {
    addr: SocketAddr,
    seen_updates: Arc<AtomicUsize>,
    target: usize,
    marker: Arc<String>,
    applied: Arc<Notify>,
    resume: Arc<Notify>,
}

impl Proxy {
    async fn start(upstream: &str, marker: &str, target: usize) -> Proxy {
        let upstream = common::socket_addr(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            seen_updates: Arc::default(),
            target,
            marker: Arc::new(marker.to_ascii_lowercase()),
            applied: Arc::default(),
            resume: Arc::default(),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(conn, upstream, p.clone()));
            }
        });
        proxy
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What the body of an `UpdateItem` asking for no record back contains.
const NO_RETURN: &str = r#""returnvalues":"none""#;

async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf.drain(..total).collect());
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, proxy: Proxy) {
    let mut cbuf = Vec::new();
    while let Some(request) = read_message(&mut client, &mut cbuf).await {
        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
        let is_update =
            text.contains("dynamodb_20120810.updateitem") && text.contains(proxy.marker.as_str());
        let mut server = TcpStream::connect(upstream).await.unwrap();
        server.write_all(&request).await.unwrap();
        let mut sbuf = Vec::new();
        let Some(response) = read_message(&mut server, &mut sbuf).await else {
            return;
        };
        if is_update {
            let n = proxy.seen_updates.fetch_add(1, Ordering::SeqCst) + 1;
            if n == proxy.target {
                // The server applied it; let the test act, then lose it.
                proxy.applied.notify_one();
                proxy.resume.notified().await;
                return;
            }
        }
        if client.write_all(&response).await.is_err() {
            return;
        }
    }
}

async fn backend_via(proxy: &Proxy, table: &str, sdk_retries: bool) -> DynamoBackend {
    let config = common::options(&proxy.endpoint())
        .load_config()
        .await
        .unwrap();
    let mut conf = aws_sdk_dynamodb::config::Builder::from(&config);
    if !sdk_retries {
        conf = conf.retry_config(RetryConfig::disabled());
    }
    DynamoBackend::builder(table)
        .client(aws_sdk_dynamodb::Client::from_conf(conf.build()))
        .returns_current_on_conflict(true)
        .build()
        .await
        .unwrap()
}

/// What a release whose write DID apply may answer: Ok, or (when the client
/// cannot tell) an outcome-unknown error. Never `Lost`: that tells the user
/// the lock was taken from them before the release, i.e. that their
/// critical section may have overlapped another holder's.
fn assert_not_lost(result: &Result<(), LockError>, what: &str) {
    match result {
        Ok(()) => {}
        Err(LockError::OutcomeUnknown { .. }) => {}
        Err(e) => panic!(
            "{what}: the release applied (the store holds its record, then the next holder's), \
             yet release() reported {e:?}"
        ),
    }
}

/// A plain release (`write_no_return`, `ReturnValues=NONE`) applies on moto,
/// its response is lost, and before the SDK's retry another client acquires
/// the released lock. The SDK's retry then fails its condition over the
/// other client's record, which the backend reports as a plain
/// `ConditionFailed` (the attempt count is not consulted on a condition
/// failure), so the engine, with no attempt of unknown outcome on record,
/// concludes `Lost { Stolen }`: "the lock was taken from this holder before
/// its release". It was not: the release applied first.
async fn lost_release_then_acquired(sdk_retries: bool, test: &str) {
    let Some(endpoint) = Server::Moto.endpoint(test) else {
        return;
    };
    let table = common::unique_table("rv-rel");
    let admin = common::create_table(&endpoint, &table).await;
    let direct = common::backend(Server::Moto, &endpoint, &table).await;
    let proxy = Proxy::start(&endpoint, NO_RETURN, 1).await;
    let backend = backend_via(&proxy, &table, sdk_retries).await;
    let a = LockClient::builder(backend)
        .host_identifier("a")
        .build()
        .unwrap();
    let b = LockClient::builder(direct.clone())
        .host_identifier("b")
        .build()
        .unwrap();
    let guard = a.create_lock("job").acquire().await.unwrap();
    let token = guard.fencing_token();
    let release = tokio::spawn(async move { guard.release().await });
    timeout(Duration::from_secs(10), proxy.applied.notified())
        .await
        .expect("the release reached moto");
    let stored = direct.read("job").await.unwrap().unwrap();
    assert!(stored.released, "the release applied: {stored:?}");
    // Another client takes the free lock before A's write is retried.
    let next = b
        .create_lock("job")
        .try_acquire()
        .await
        .unwrap()
        .expect("the released lock is free");
    assert!(next.fencing_token() > token);
    proxy.resume.notify_one();
    let result = timeout(Duration::from_secs(15), release)
        .await
        .expect("release finished")
        .unwrap();
    println!("release (SDK retries {sdk_retries}) answered {result:?}");
    assert_not_lost(&result, "plain release");
    drop(next);
    a.shutdown().await;
    b.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

/// FINDING (with the SDK's retries, the default): fails with
/// `Lost { Stolen { by: "b" } }`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_release_response_then_acquired_with_sdk_retries() {
    lost_release_then_acquired(true, "lost_release_response_then_acquired_with_sdk_retries").await;
}

/// Control: without the SDK's retries the engine sees the lost response
/// itself (`OutcomeUnknown`) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_release_response_then_acquired_without_sdk_retries() {
    lost_release_then_acquired(
        false,
        "lost_release_response_then_acquired_without_sdk_retries",
    )
    .await;
}

/// A grant to the first queued waiter (`write_no_return`) applies on moto,
/// its response is lost, and the waiter confirms the grant before the
/// SDK's retry. The retry fails over the waiter's confirmed record: the
/// granting holder is told `Lost { Stolen }` although it handed the lock to
/// the queue exactly as it should.
async fn lost_grant_then_confirmed(sdk_retries: bool, test: &str) {
    let Some(endpoint) = Server::Moto.endpoint(test) else {
        return;
    };
    let table = common::unique_table("rv-grant");
    let admin = common::create_table(&endpoint, &table).await;
    let direct = common::backend(Server::Moto, &endpoint, &table).await;
    // A's first write asking for no record back is a release over the queue
    // it last saw (empty), which fails its condition (B queued since); the
    // second, over the queue read back, is the grant to B.
    let proxy = Proxy::start(&endpoint, NO_RETURN, 2).await;
    let backend = backend_via(&proxy, &table, sdk_retries).await;
    let a = LockClient::builder(backend)
        .host_identifier("a")
        .default_lease(Duration::from_secs(10))
        .build()
        .unwrap();
    let b = LockClient::builder(direct.clone())
        .host_identifier("b")
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let guard = a.create_lock("job").acquire().await.unwrap();
    let token = guard.fencing_token();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.create_lock("job")
                .acquire_timeout(Duration::from_secs(15))
                .await
        })
    };
    // B is queued in the store.
    let queued = async {
        loop {
            let r = direct.read("job").await.unwrap().unwrap();
            if !r.queue.entries.is_empty() {
                return;
            }
            SystemClock.sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(Duration::from_secs(10), queued)
        .await
        .expect("B queued");
    let release = tokio::spawn(async move { guard.release().await });
    timeout(Duration::from_secs(10), proxy.applied.notified())
        .await
        .expect("the grant reached moto");
    let granted = direct.read("job").await.unwrap().unwrap();
    assert!(granted.granted_to.is_some(), "a grant: {granted:?}");
    // B confirms the grant (it polls) before A's write is retried.
    let next = timeout(Duration::from_secs(10), waiter)
        .await
        .expect("B confirmed the grant")
        .unwrap()
        .expect("B acquired");
    assert!(next.fencing_token() > token);
    proxy.resume.notify_one();
    let result = timeout(Duration::from_secs(15), release)
        .await
        .expect("release finished")
        .unwrap();
    println!("grant (SDK retries {sdk_retries}) answered {result:?}");
    assert_not_lost(&result, "grant to the queued waiter");
    drop(next);
    a.shutdown().await;
    b.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

/// FINDING (with the SDK's retries, the default): fails with
/// `Lost { Stolen { by: "b" } }`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_grant_response_then_confirmed_with_sdk_retries() {
    lost_grant_then_confirmed(true, "lost_grant_response_then_confirmed_with_sdk_retries").await;
}

/// Control: without the SDK's retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_grant_response_then_confirmed_without_sdk_retries() {
    lost_grant_then_confirmed(
        false,
        "lost_grant_response_then_confirmed_without_sdk_retries",
    )
    .await;
}

/// `list_group` over a group whose items take more than one page of Query
/// results (1 MB each): every page's Query carries the placeholders taken
/// once before the loop (a second `take_names` would send none, which the
/// server rejects), and every lock is listed. Nothing else lists a group of
/// more than one page.
async fn list_group_pages(server: Server, test: &str) {
    let Some(endpoint) = server.endpoint(test) else {
        return;
    };
    let layout = TableLayout::new()
        .partition_key("PK")
        .sort_key_grouped("SK");
    let table = common::unique_table("rv-pages");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    let client = LockClient::builder(backend)
        .host_identifier("pager")
        .build()
        .unwrap();
    // A handful of real lock records of the group...
    let names: Vec<String> = (0..4).map(|i| format!("big/lock-{i:02}")).collect();
    for name in &names {
        let g = client.create_lock(name).acquire().await.unwrap();
        g.release().await.unwrap();
    }
    // ...and enough bulky items of the user's in the same partition for
    // more than one page (each ~100 KB; 14 of them, ~1.4 MB).
    let blob = AttributeValue::B(vec![7u8; 100_000].into());
    for i in 0..14 {
        let mut item: HashMap<String, AttributeValue> = HashMap::new();
        item.insert("PK".into(), AttributeValue::S("big".into()));
        item.insert("SK".into(), AttributeValue::S(format!("user-{i:02}")));
        item.insert("blob".into(), blob.clone());
        admin
            .client()
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .expect("put a bulky user item");
    }
    // One consistent Query of the partition is more than one page.
    let first = admin
        .client()
        .query()
        .table_name(&table)
        .consistent_read(true)
        .key_condition_expression("PK = :g")
        .expression_attribute_values(":g", AttributeValue::S("big".into()))
        .send()
        .await
        .unwrap();
    let paged = first.last_evaluated_key().is_some_and(|k| !k.is_empty());
    println!(
        "{server:?}: first page has {} items, more pages: {paged}",
        first.items().len()
    );
    let listing = admin.list_group(&table, "big").await.expect("list_group");
    let listed: Vec<&str> = listing
        .locks
        .iter()
        .map(|l| l.record.key.as_str())
        .collect();
    assert_eq!(listed, names, "every lock of the group, across pages");
    assert_eq!(listing.skipped, 14, "the user's items, across pages");
    assert!(
        paged,
        "{server:?} did not page the Query: the test did not exercise paging"
    );
    client.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_group_across_pages_on_moto() {
    list_group_pages(Server::Moto, "list_group_across_pages_on_moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_group_across_pages_on_dynalite() {
    list_group_pages(Server::Dynalite, "list_group_across_pages_on_dynalite").await;
}

fn request(condition: Condition, token: TokenUpdate, released: bool) -> WriteRequest {
    WriteRequest {
        key: "job".into(),
        condition,
        version: Version::random(),
        lease_duration: if released {
            Duration::ZERO
        } else {
            Duration::from_secs(20)
        },
        host: "a".into(),
        token,
        payload: None,
        released,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

/// The root of the two findings above, at the backend: a release written
/// through a client with the SDK's retries (the default) applies, its
/// response is lost, another writer changes the record, and the SDK's retry
/// fails its condition. The backend answers `ConditionFailed`, which the
/// trait's contract defines as "nothing was written"; an earlier attempt of
/// this very request was written. It should answer `OutcomeUnknown` (the
/// backend counts the attempts it sent, and already says "an earlier one
/// was" for other errors after a retry). `no_return` picks
/// `write_no_return` (the changed path) or `write` (the same `update` code,
/// so the same answer).
async fn retried_release_over_a_changed_record(no_return: bool, test: &str) {
    let Some(endpoint) = Server::Moto.endpoint(test) else {
        return;
    };
    let table = common::unique_table("rv-back");
    let admin = common::create_table(&endpoint, &table).await;
    let direct = common::backend(Server::Moto, &endpoint, &table).await;
    let acquire = request(Condition::Absent, TokenUpdate::Next { initial: 1 }, false);
    let held = direct.write(acquire).await.unwrap();
    let release = request(
        Condition::VersionIs(held.version.clone()),
        TokenUpdate::Keep,
        true,
    );
    let proxy = Proxy::start(&endpoint, release.version.as_str(), 1).await;
    let backend = backend_via(&proxy, &table, true).await;
    let sent = release.clone();
    let call = tokio::spawn(async move {
        if no_return {
            backend.write_no_return(sent).await
        } else {
            backend.write(sent).await.map(|_| ())
        }
    });
    timeout(Duration::from_secs(10), proxy.applied.notified())
        .await
        .expect("the release reached moto");
    let stored = direct.read("job").await.unwrap().unwrap();
    assert_eq!(stored.version, release.version, "the release applied");
    // Another client acquires the released lock before the SDK's retry.
    let other = request(
        Condition::VersionIs(release.version.clone()),
        TokenUpdate::Next { initial: 1 },
        false,
    );
    direct.write(other).await.unwrap();
    proxy.resume.notify_one();
    let out = timeout(Duration::from_secs(15), call)
        .await
        .expect("answered")
        .unwrap();
    println!("no_return={no_return}: {out:?}");
    match out {
        Ok(()) => {}
        Err(WriteError::Backend(e)) if e.kind() == BackendErrorKind::OutcomeUnknown => {}
        other => panic!(
            "the request applied on its first attempt, yet the backend answered {other:?} \
             (ConditionFailed means nothing was written)"
        ),
    }
    admin.delete_table(&table, false, true).await.unwrap();
}

/// FINDING (backend level, the changed method).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_no_return_retried_by_the_sdk_over_a_changed_record_is_not_condition_failed() {
    retried_release_over_a_changed_record(
        true,
        "write_no_return_retried_by_the_sdk_over_a_changed_record_is_not_condition_failed",
    )
    .await;
}

/// FINDING (backend level, `write`: the same code, so pre-existing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_retried_by_the_sdk_over_a_changed_record_is_not_condition_failed() {
    retried_release_over_a_changed_record(
        false,
        "write_retried_by_the_sdk_over_a_changed_record_is_not_condition_failed",
    )
    .await;
}

/// `fut`, or `Err` once `limit` passed (on the system clock, as lynk's own
/// timers: clippy.toml keeps tokio's timers out of the code).
async fn timeout<F: std::future::Future>(
    limit: Duration,
    fut: F,
) -> Result<F::Output, &'static str> {
    tokio::select! {
        out = fut => Ok(out),
        _ = SystemClock.sleep(limit) => Err("timed out"),
    }
}
