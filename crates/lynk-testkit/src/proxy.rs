//! A fault-injecting HTTP/1.1 proxy on loopback, for testing a real client
//! (such as the AWS SDK) against a real server under network faults.

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
        };
        let faults = proxy.faults.clone();
        let stats = proxy.stats.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(
                    conn,
                    upstream,
                    faults.clone(),
                    rng.clone(),
                    stats.clone(),
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

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: Arc<Mutex<ProxyFaults>>,
    rng: Arc<Mutex<StdRng>>,
    stats: Arc<Stats>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cbuf, mut sbuf) = (Vec::new(), Vec::new());
    while let Some(request) = read_message(&mut client, &mut cbuf).await {
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
                if client.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        if server.write_all(&request).await.is_err() {
            return;
        }
        let Some(response) = read_message(&mut server, &mut sbuf).await else {
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
        if client.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 message (head plus a `Content-Length` body); `None` at
/// end of stream. `buf` keeps bytes read past the message.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
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
                read_more(stream, buf).await?;
            }
            return Some(buf.drain(..total).collect());
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}
