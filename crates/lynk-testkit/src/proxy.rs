//! A fault-injecting HTTP/1.1 proxy on loopback, for testing a real client
//! (such as the AWS SDK) against a real server under network faults.
//!
//! Per request, drawn from a seed ([`ProxyFaults`]): connection resets before
//! forwarding, responses dropped after the server acted, delayed responses,
//! injected throttling and server errors. At any time, for every connection:
//! a **half-open** network ([`FaultProxy::set_half_open`]), where connections
//! stay open but no bytes move, until it heals.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lynk_core::{Clock, SystemClock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which faults the proxy injects, per request, drawn from a seed.
///
/// Requests arrive over real connections, so the order in which they draw
/// from the seed (and so the exact faults) can vary between runs; the
/// in-memory simulation is the exactly replayable one.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyFaults {
    /// The seed.
    pub seed: u64,
    /// Probability of closing the connection before forwarding the request
    /// (the server never sees it).
    pub reset_before: f64,
    /// Probability of forwarding the request, letting the server act, and
    /// closing the connection instead of returning the response.
    pub drop_response: f64,
    /// Probability of holding the response for up to
    /// [`max_delay`](ProxyFaults::max_delay).
    pub delay_response: f64,
    /// The longest delay.
    pub max_delay: Duration,
    /// Probability of answering, without forwarding, DynamoDB's throttling
    /// error (`400 ThrottlingException`).
    pub throttle: f64,
    /// Probability of answering, without forwarding, a server error
    /// (`500 InternalServerError`).
    pub server_error: f64,
    /// Only requests whose text contains one of these strings (e.g. an
    /// `X-Amz-Target` like `DynamoDB_20120810.UpdateItem`) get faults; all if
    /// empty.
    pub only: Vec<String>,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    resets: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    refused: AtomicU64,
}

/// A running proxy. It stops when the runtime that started it shuts down.
#[derive(Clone, Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    faults: Arc<Mutex<ProxyFaults>>,
    /// `true` while the network is half-open.
    half_open: Arc<watch::Sender<bool>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, faults: ProxyFaults) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(faults.seed)));
        let proxy = FaultProxy {
            addr: listener.local_addr()?,
            stats: Arc::default(),
            faults: Arc::new(Mutex::new(faults)),
            half_open: Arc::new(watch::channel(false).0),
        };
        let faults = proxy.faults.clone();
        let stats = proxy.stats.clone();
        // Held by the accept loop, so the network can be healed for as long as
        // the proxy runs, even after every handle is dropped.
        let half_open = proxy.half_open.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(
                    conn,
                    upstream,
                    faults.clone(),
                    rng.clone(),
                    stats.clone(),
                    Gate(half_open.subscribe()),
                ));
            }
        });
        Ok(proxy)
    }

    /// The proxy's URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the fault plan from the next request on (the random sequence
    /// continues).
    pub fn set_faults(&self, faults: ProxyFaults) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Makes the network half-open (`true`) or heals it (`false`).
    ///
    /// While half-open, connections (existing ones, and new ones, which are
    /// still accepted) stay open but no bytes move in either direction: what
    /// a client sends is not forwarded, what the server answers is not
    /// returned, and a close on either side is not passed on, as with a
    /// dropped route, a stuck NAT or a dead load balancer. A client notices
    /// only through its own timeouts.
    ///
    /// When healed, everything held moves on, as TCP's retransmissions
    /// would deliver it: a request sent during the outage reaches the server
    /// late (and applies, even if its client has given up on it since), and
    /// its response goes back to the client if that connection is still open.
    pub fn set_half_open(&self, half_open: bool) {
        self.half_open.send_replace(half_open);
    }

    /// Whether the network is half-open now.
    pub fn is_half_open(&self) -> bool {
        *self.half_open.borrow()
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// Faults injected (resets, dropped responses and delays).
    pub fn injected(&self) -> u64 {
        self.stats.resets.load(Ordering::Relaxed)
            + self.stats.dropped.load(Ordering::Relaxed)
            + self.stats.delayed.load(Ordering::Relaxed)
            + self.stats.refused.load(Ordering::Relaxed)
    }

    /// Responses dropped after the server acted.
    pub fn dropped_responses(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }
}

enum Action {
    Pass,
    Reset,
    Drop,
    Delay(Duration),
    Answer(&'static str, &'static str),
}

const THROTTLED: &str = "400 Bad Request";
const THROTTLE_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput (injected by lynk's FaultProxy)."}"#;
const SERVER_ERROR: &str = "500 Internal Server Error";
const SERVER_ERROR_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error (injected by lynk's FaultProxy)."}"#;

fn draw(faults: &Mutex<ProxyFaults>, rng: &Mutex<StdRng>, request: &[u8]) -> Action {
    let faults = faults.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let text = String::from_utf8_lossy(request);
    if !faults.only.is_empty() && !faults.only.iter().any(|s| text.contains(s.as_str())) {
        return Action::Pass;
    }
    let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
    let roll: f64 = rng.gen();
    let roll = roll - faults.throttle;
    if roll < 0.0 {
        return Action::Answer(THROTTLED, THROTTLE_BODY);
    }
    let roll = roll - faults.server_error;
    if roll < 0.0 {
        return Action::Answer(SERVER_ERROR, SERVER_ERROR_BODY);
    }
    if roll < faults.reset_before {
        Action::Reset
    } else if roll < faults.reset_before + faults.drop_response {
        Action::Drop
    } else if roll < faults.reset_before + faults.drop_response + faults.delay_response {
        Action::Delay(faults.max_delay.mul_f64(rng.gen()))
    } else {
        Action::Pass
    }
}

/// Holds every byte (and close) while the network is half-open.
struct Gate(watch::Receiver<bool>);

impl Gate {
    /// Waits until the network is not half-open; `false` if the proxy is
    /// gone (its runtime is shutting down).
    async fn pass(&mut self) -> bool {
        self.0.wait_for(|half_open| !*half_open).await.is_ok()
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: Arc<Mutex<ProxyFaults>>,
    rng: Arc<Mutex<StdRng>>,
    stats: Arc<Stats>,
    mut gate: Gate,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cbuf, mut sbuf) = (Vec::new(), Vec::new());
    while let Some(request) = read_message(&mut client, &mut cbuf, &mut gate).await {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let action = draw(&faults, &rng, &request);
        match action {
            Action::Reset => {
                stats.resets.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Action::Answer(status, body) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if !gate.pass().await || client.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        if !gate.pass().await || server.write_all(&request).await.is_err() {
            return;
        }
        let Some(response) = read_message(&mut server, &mut sbuf, &mut gate).await else {
            return;
        };
        match action {
            Action::Drop => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return; // the server acted; the client never hears of it
            }
            Action::Delay(d) => {
                stats.delayed.fetch_add(1, Ordering::Relaxed);
                SystemClock.sleep(d).await;
            }
            Action::Pass | Action::Reset | Action::Answer(..) => {}
        }
        if !gate.pass().await || client.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 message (head plus a `Content-Length` body); `None` at
/// end of stream. `buf` keeps bytes read past the message. Whatever a read
/// returns (bytes, end of stream, an error) is held while the network is
/// half-open.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    gate: &mut Gate,
) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                read_more(stream, buf, gate).await?;
            }
            return Some(buf.drain(..total).collect());
        }
        read_more(stream, buf, gate).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, gate: &mut Gate) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    let read = stream.read(&mut chunk).await;
    if !gate.pass().await {
        return None;
    }
    match read {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny HTTP/1.1 server on loopback that answers every request with
    /// its body, and counts the requests it received.
    async fn upstream() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut gate = never_half_open();
                    while let Some(request) = read_message(&mut conn, &mut buf, &mut gate).await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = body_of(&request);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn never_half_open() -> Gate {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx); // never closed, never half-open
        Gate(rx)
    }

    fn body_of(message: &[u8]) -> String {
        let text = String::from_utf8_lossy(message);
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    async fn send(conn: &mut TcpStream, body: &str) {
        let request = format!(
            "POST / HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
    }

    /// The next response's body, or `None` if none arrives within `wait`.
    async fn response(conn: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Option<String> {
        let mut gate = never_half_open();
        tokio::select! {
            m = read_message(conn, buf, &mut gate) => m.map(|m| body_of(&m)),
            _ = SystemClock.sleep(wait) => None,
        }
    }

    fn no_faults() -> ProxyFaults {
        ProxyFaults {
            seed: 1,
            reset_before: 0.0,
            drop_response: 0.0,
            delay_response: 0.0,
            max_delay: Duration::ZERO,
            throttle: 0.0,
            server_error: 0.0,
            only: Vec::new(),
        }
    }

    #[tokio::test]
    async fn half_open_holds_every_byte_until_healed() {
        let (addr, seen) = upstream().await;
        let proxy = FaultProxy::start(addr, no_faults()).await.unwrap();
        let long = Duration::from_secs(5);
        let quiet = Duration::from_millis(400);

        // Before: requests go through.
        let mut a = TcpStream::connect(proxy.addr).await.unwrap();
        let mut abuf = Vec::new();
        send(&mut a, "one").await;
        assert_eq!(
            response(&mut a, &mut abuf, long).await.as_deref(),
            Some("one")
        );
        assert!(!proxy.is_half_open());

        proxy.set_half_open(true);
        assert!(proxy.is_half_open());
        // An existing connection: stays open, its request goes nowhere.
        send(&mut a, "two").await;
        // A new connection is accepted, but nothing moves on it either.
        let mut b = TcpStream::connect(proxy.addr).await.unwrap();
        let mut bbuf = Vec::new();
        send(&mut b, "three").await;
        // A client that sends and gives up: its close is held too.
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        send(&mut c, "four").await;
        drop(c);
        assert_eq!(response(&mut a, &mut abuf, quiet).await, None);
        assert_eq!(response(&mut b, &mut bbuf, quiet).await, None);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "no request reached the server"
        );
        assert_eq!(proxy.requests(), 1);

        // Healed: what was held moves on, on the same connections.
        proxy.set_half_open(false);
        assert_eq!(
            response(&mut a, &mut abuf, long).await.as_deref(),
            Some("two")
        );
        assert_eq!(
            response(&mut b, &mut bbuf, long).await.as_deref(),
            Some("three")
        );
        // The abandoned request is delivered late, as TCP would.
        let start = SystemClock.now();
        while seen.load(Ordering::SeqCst) < 4 && SystemClock.now() - start < long {
            SystemClock.sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen.load(Ordering::SeqCst), 4);

        // And it can go half-open again, and heal again.
        proxy.set_half_open(true);
        send(&mut a, "five").await;
        assert_eq!(response(&mut a, &mut abuf, quiet).await, None);
        proxy.set_half_open(false);
        assert_eq!(
            response(&mut a, &mut abuf, long).await.as_deref(),
            Some("five")
        );
        assert_eq!(seen.load(Ordering::SeqCst), 5);
    }
}
