//! Lost responses: a loopback proxy forwards requests to moto and drops the
//! response of chosen `UpdateItem`s after moto applied them. The client must
//! still know correctly that it holds the lock.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use common::Server;
use lynk_core::{Clock, LockBackend, LockClient, SystemClock};
use lynk_dynamo::DynamoBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A proxy that drops the responses of the n-th `UpdateItem`s (1-based).
#[derive(Clone)]
struct Proxy {
    addr: SocketAddr,
    seen_updates: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: &str, drop_updates: &[usize]) -> Proxy {
        let upstream = common::socket_addr(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            seen_updates: Arc::default(),
            dropped: Arc::default(),
        };
        let drop_set: Arc<Mutex<BTreeSet<usize>>> =
            Arc::new(Mutex::new(drop_updates.iter().copied().collect()));
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(conn, upstream, p.clone(), drop_set.clone()));
            }
        });
        proxy
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads one HTTP/1.1 message (headers and a Content-Length body) from
/// `stream`, with `buf` holding bytes already read. `None` at EOF.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
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
            let message: Vec<u8> = buf.drain(..total).collect();
            return Some(message);
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    proxy: Proxy,
    drop_set: Arc<Mutex<BTreeSet<usize>>>,
) {
    let mut cbuf = Vec::new();
    while let Some(request) = read_message(&mut client, &mut cbuf).await {
        let is_update = String::from_utf8_lossy(&request)
            .to_ascii_lowercase()
            .contains("dynamodb_20120810.updateitem");
        let mut server = TcpStream::connect(upstream).await.unwrap();
        server.write_all(&request).await.unwrap();
        let mut sbuf = Vec::new();
        let Some(response) = read_message(&mut server, &mut sbuf).await else {
            return;
        };
        if is_update {
            let n = proxy.seen_updates.fetch_add(1, Ordering::SeqCst) + 1;
            if drop_set.lock().unwrap().remove(&n) {
                // moto applied the write; the client never hears of it.
                proxy.dropped.fetch_add(1, Ordering::SeqCst);
                return; // closes the client connection
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
        .build()
        .await
        .unwrap()
}

async fn lost_acquire_response(sdk_retries: bool, test: &str) {
    let Some(endpoint) = Server::Moto.endpoint(test) else {
        return;
    };
    let table = common::unique_table("lost");
    let admin = common::create_table(&endpoint, &table).await;
    let direct = common::backend(Server::Moto, &endpoint, &table).await;

    // The acquire's first UpdateItem applies, but its response is lost.
    let proxy = Proxy::start(&endpoint, &[1]).await;
    let backend = backend_via(&proxy, &table, sdk_retries).await;
    let client = LockClient::builder(backend)
        .default_lease(Duration::from_secs(3))
        .host_identifier("lossy")
        .build()
        .unwrap();
    let guard = client
        .create_lock("job")
        .acquire_timeout(Duration::from_secs(10))
        .await
        .expect("the client must learn that its first write won");
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1);
    let stored = direct.read("job").await.unwrap().unwrap();
    assert_eq!(stored.host, "lossy");
    assert!(!stored.released);
    assert_eq!(stored.fencing_token, Some(guard.fencing_token()));

    // Nobody else can take it, and it stays held across heartbeats.
    let other = LockClient::new(direct.clone()).unwrap();
    assert!(other
        .create_lock("job")
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    SystemClock.sleep(Duration::from_secs(2)).await;
    assert!(!guard.is_lost());
    guard.release().await.unwrap();
    assert!(direct.read("job").await.unwrap().unwrap().released);
    println!(
        "lost response (SDK retries {}): the client knew it held the lock; {} UpdateItems through the proxy",
        if sdk_retries { "on" } else { "off" },
        proxy.seen_updates.load(Ordering::SeqCst)
    );
    client.shutdown().await;
    other.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acquire_response_with_sdk_retries() {
    lost_acquire_response(true, "lost_acquire_response_with_sdk_retries").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acquire_response_without_sdk_retries() {
    lost_acquire_response(false, "lost_acquire_response_without_sdk_retries").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_heartbeat_response() {
    let Some(endpoint) = Server::Moto.endpoint("lost_heartbeat_response") else {
        return;
    };
    let table = common::unique_table("lost-hb");
    let admin = common::create_table(&endpoint, &table).await;
    let direct = common::backend(Server::Moto, &endpoint, &table).await;
    // UpdateItem 1 is the acquire, 2 the first heartbeat: lose its response.
    let proxy = Proxy::start(&endpoint, &[2]).await;
    let backend = backend_via(&proxy, &table, false).await;
    let client = LockClient::builder(backend)
        .default_lease(Duration::from_millis(1500))
        .build()
        .unwrap();
    let guard = client.create_lock("hb").acquire().await.unwrap();
    SystemClock.sleep(Duration::from_secs(3)).await; // several heartbeats
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1);
    assert!(!guard.is_lost(), "lost: {:?}", guard.lost_reason());
    let stored = direct.read("hb").await.unwrap().unwrap();
    assert_eq!(stored.fencing_token, Some(guard.fencing_token()));
    guard.release().await.unwrap();
    client.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

/// A release asks for no record back (`ReturnValues=NONE`); when its
/// response is lost after moto applied it, the retry (the SDK's, or the
/// engine's after reading the record) must still recognise the release as
/// its own: `release()` is Ok and the record is released, once.
async fn lost_release_response(sdk_retries: bool, test: &str) {
    let Some(endpoint) = Server::Moto.endpoint(test) else {
        return;
    };
    let table = common::unique_table("lost-rel");
    let admin = common::create_table(&endpoint, &table).await;
    let direct = common::backend(Server::Moto, &endpoint, &table).await;
    // UpdateItem 1 is the acquire, 2 the release: lose its response.
    let proxy = Proxy::start(&endpoint, &[2]).await;
    let backend = backend_via(&proxy, &table, sdk_retries).await;
    let client = LockClient::builder(backend)
        .host_identifier("lossy")
        .build()
        .unwrap();
    let guard = client.create_lock("rel").acquire().await.unwrap();
    let token = guard.fencing_token();
    guard
        .release()
        .await
        .expect("a release whose response was lost is still the client's own release");
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1);
    let stored = direct.read("rel").await.unwrap().unwrap();
    assert!(stored.released, "not released: {stored:?}");
    assert_eq!(stored.fencing_token, Some(token));
    // Free for the next one.
    let next = client.create_lock("rel").try_acquire().await.unwrap();
    assert!(next.is_some_and(|g| g.fencing_token() > token));
    client.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_release_response_with_sdk_retries() {
    lost_release_response(true, "lost_release_response_with_sdk_retries").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_release_response_without_sdk_retries() {
    lost_release_response(false, "lost_release_response_without_sdk_retries").await;
}
