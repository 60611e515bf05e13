//! Wake-ups: a UDP hint that makes a waiting client read a lock sooner.
//!
//! A waiter in another process may listen on a UDP address and advertise it
//! in its [`QueueEntry::wake`](crate::QueueEntry::wake). A releasing holder
//! that hands the lock to that waiter then sends it one small datagram, so
//! the waiter reads the record at once instead of at its next poll.
//!
//! **A wake-up grants nothing.** It only makes the waiter read the lock
//! record sooner; the record alone decides who holds the lock. A lost,
//! duplicated, delayed or forged datagram therefore changes only timing, and
//! a [`WakeLimiter`] keeps a flood of them from multiplying a waiter's reads.
//!
//! The pieces:
//!
//! * the datagram format: [`encode_wake`] and [`parse_wake`];
//! * [`WakeSender`]: fire-and-forget sends from one unbound-port socket;
//! * [`WakeListener`]: receives datagrams, skipping malformed ones;
//! * [`WakeLimiter`]: a per-key token bucket on a [`Clock`], with bounded
//!   memory.
//!
//! # Datagram format
//!
//! One UTF-8 text datagram, at most [`MAX_WAKE_DATAGRAM_BYTES`] bytes:
//!
//! ```text
//! lynk-wake/1 <scope length> <scope> <name length> <name>
//! ```
//!
//! Lengths are in bytes, in decimal without leading zeros, and each field
//! is followed by exactly one space except the last, which ends the
//! datagram. The lengths make any scope and name (spaces included)
//! unambiguous and reject truncated or padded datagrams. The scope is an
//! opaque string naming the lock namespace (such as a table name) and may be
//! empty; the name is the lock name and may not be. A receiver ignores every
//! datagram that is not exactly this (another version included), so a future
//! `lynk-wake/2` is ignored by old waiters, which then simply poll.
//!
//! ```
//! use lynk_core::{encode_wake, parse_wake};
//! let datagram = encode_wake("locks", "nightly job").unwrap();
//! assert_eq!(datagram, "lynk-wake/1 5 locks 11 nightly job");
//! assert_eq!(parse_wake(datagram.as_bytes()), Some(("locks", "nightly job")));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::clock::Clock;

/// The protocol tag every wake-up datagram starts with (followed by a space).
pub const WAKE_PROTOCOL: &str = "lynk-wake/1";

/// The largest wake-up datagram, in bytes.
///
/// Under 1200 bytes, so a datagram fits in one packet at IPv6's minimum MTU
/// (1280 bytes, less 48 bytes of IPv6 and UDP headers) and is never
/// fragmented. Lock names too long to fit get no wake-ups: [`encode_wake`]
/// and [`WakeSender::send`] refuse them, and the waiter finds the lock by
/// polling as it would without wake-ups.
pub const MAX_WAKE_DATAGRAM_BYTES: usize = 1199;

/// The default number of keys a [`WakeLimiter`] tracks at once.
pub const DEFAULT_WAKE_LIMITER_KEYS: usize = 1024;

/// What went wrong sending, receiving or configuring wake-ups.
///
/// None of these affect correctness: without wake-ups a waiter polls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WakeError {
    /// A wake address (from a queue entry) is not a usable `ip:port`.
    #[error("wake address {address:?} is not usable: {reason}; a wake address is an IP socket address such as \"10.0.0.5:7070\" or \"[fd00::5]:7070\" (no host names)")]
    BadAddress {
        /// The address as given.
        address: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The lock name is empty; wake-ups are for named locks only.
    #[error("cannot encode a wake-up for an empty lock name; give the lock a name")]
    EmptyName,
    /// The datagram for this scope and name would exceed
    /// [`MAX_WAKE_DATAGRAM_BYTES`].
    #[error("a wake-up for this lock would be {bytes} bytes, over the limit of {limit} bytes; it is not sent, and the waiter will find the lock by polling (use shorter lock names to get wake-ups)")]
    TooLong {
        /// The size the datagram would have.
        bytes: usize,
        /// [`MAX_WAKE_DATAGRAM_BYTES`].
        limit: usize,
    },
    /// The sender could not create its socket for this address family.
    #[error("cannot open a UDP socket to send wake-ups over {family} ({source}); check that this host has {family} networking, or do not advertise {family} wake addresses")]
    SenderSocket {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The datagram could not be sent (it was dropped).
    #[error(
        "could not send a wake-up to {to} ({source}); the waiter will find the lock by polling"
    )]
    Send {
        /// The destination.
        to: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The listener could not bind its address.
    #[error("cannot listen for wake-ups on {address} ({source}); pick a free port (0 lets the system choose) on an address of this host")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The listener would advertise an address others cannot send to.
    #[error("wake listener: {problem}; set an advertise address: this host's IP as other clients reach it (its port may be 0, meaning the bound port)")]
    NoReachableAddress {
        /// What is wrong with the address.
        problem: String,
    },
    /// Receiving failed with an error that retrying would not fix.
    #[error("wake listener on {address}: receiving failed ({source}); stop listening and fall back to polling, or bind a new listener")]
    Receive {
        /// The listener's bound address.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A [`WakeLimits`] value is out of range.
    #[error("wake limiter: {0}")]
    BadLimits(&'static str),
}

// ---------------------------------------------------------------------------
// The datagram format

/// Encodes the wake-up datagram for lock `name` in namespace `scope`.
///
/// # Errors
///
/// [`WakeError::EmptyName`] for an empty name, and [`WakeError::TooLong`]
/// when the datagram would exceed [`MAX_WAKE_DATAGRAM_BYTES`] (do not send
/// one; the waiter polls).
pub fn encode_wake(scope: &str, name: &str) -> Result<String, WakeError> {
    if name.is_empty() {
        return Err(WakeError::EmptyName);
    }
    let datagram = format!(
        "{WAKE_PROTOCOL} {} {scope} {} {name}",
        scope.len(),
        name.len()
    );
    if datagram.len() > MAX_WAKE_DATAGRAM_BYTES {
        return Err(WakeError::TooLong {
            bytes: datagram.len(),
            limit: MAX_WAKE_DATAGRAM_BYTES,
        });
    }
    Ok(datagram)
}

/// Parses a wake-up datagram into `(scope, name)`.
///
/// Returns `None` for anything but a datagram [`encode_wake`] could have
/// produced: not UTF-8, another protocol or version, a length that is not
/// canonical decimal or does not match, a missing or extra byte, an empty
/// name, or more than [`MAX_WAKE_DATAGRAM_BYTES`] bytes. It never panics.
pub fn parse_wake(datagram: &[u8]) -> Option<(&str, &str)> {
    if datagram.len() > MAX_WAKE_DATAGRAM_BYTES {
        return None;
    }
    let text = std::str::from_utf8(datagram).ok()?;
    let rest = text.strip_prefix(WAKE_PROTOCOL)?.strip_prefix(' ')?;
    let (scope, rest) = length_prefixed(rest)?;
    let rest = rest.strip_prefix(' ')?;
    let (name, rest) = length_prefixed(rest)?;
    if !rest.is_empty() || name.is_empty() {
        return None;
    }
    Some((scope, name))
}

/// Splits `"<len> <field>..."` into the field of `len` bytes and what follows.
fn length_prefixed(text: &str) -> Option<(&str, &str)> {
    let (digits, rest) = text.split_once(' ')?;
    // Canonical decimal only: no sign, no leading zeros, and short enough
    // that it cannot overflow (any field is shorter than a datagram).
    let canonical = !digits.is_empty()
        && digits.len() <= 4
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    let len: usize = digits.parse().ok()?;
    // `get` is None past the end and off a character boundary.
    let field = rest.get(..len)?;
    Some((field, &rest[len..]))
}

/// Parses a wake address from a queue entry: an IP socket address, not
/// unspecified, with a non-zero port.
fn parse_wake_address(address: &str) -> Result<SocketAddr, WakeError> {
    let bad = |reason: &str| WakeError::BadAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let addr: SocketAddr = address
        .parse()
        .map_err(|_| bad("it is not an ip:port socket address"))?;
    if addr.ip().is_unspecified() {
        return Err(bad(
            "its IP is unspecified (0.0.0.0 or ::), which nobody listens on",
        ));
    }
    if addr.port() == 0 {
        return Err(bad("its port is 0"));
    }
    Ok(addr)
}

// ---------------------------------------------------------------------------
// Sending

/// Sends wake-up datagrams, fire and forget.
///
/// Holds at most one UDP socket per address family, bound to an ephemeral
/// port on the unspecified address and created on the first send to that
/// family (a failed creation is retried on the next send). The sockets are
/// non-blocking, so [`send`](WakeSender::send) never waits: a datagram the
/// system cannot take at once is dropped and reported. It needs no async
/// runtime and may be shared between threads.
#[derive(Debug, Default)]
pub struct WakeSender {
    v4: OnceLock<UdpSocket>,
    v6: OnceLock<UdpSocket>,
}

impl WakeSender {
    /// A sender with no sockets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the wake-up for lock `name` in namespace `scope` to `to`, an
    /// `ip:port` from a [`QueueEntry::wake`](crate::QueueEntry::wake)
    /// (`[ip]:port` for IPv6). Never blocks; no host names are resolved.
    ///
    /// A wake-up is a hint, so a failure needs no handling beyond a
    /// debug-level log: the waiter reads the lock at its next poll anyway.
    ///
    /// # Errors
    ///
    /// [`WakeError::BadAddress`] (naming the address) when `to` is not a
    /// usable IP socket address, [`WakeError::EmptyName`] or
    /// [`WakeError::TooLong`] as for [`encode_wake`],
    /// [`WakeError::SenderSocket`] when no socket could be opened for the
    /// address family, and [`WakeError::Send`] when the system refused or
    /// could not immediately take the datagram.
    pub fn send(&self, to: &str, scope: &str, name: &str) -> Result<(), WakeError> {
        let addr = parse_wake_address(to)?;
        let datagram = encode_wake(scope, name)?;
        let socket = self.socket_for(&addr)?;
        socket
            .send_to(datagram.as_bytes(), addr)
            .map(drop)
            .map_err(|source| WakeError::Send { to: addr, source })
    }

    fn socket_for(&self, addr: &SocketAddr) -> Result<&UdpSocket, WakeError> {
        let (cell, unspecified, family) = match addr {
            SocketAddr::V4(_) => (&self.v4, IpAddr::V4(Ipv4Addr::UNSPECIFIED), "IPv4"),
            SocketAddr::V6(_) => (&self.v6, IpAddr::V6(Ipv6Addr::UNSPECIFIED), "IPv6"),
        };
        if let Some(socket) = cell.get() {
            return Ok(socket);
        }
        let open = || -> io::Result<UdpSocket> {
            let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        };
        let socket = open().map_err(|source| WakeError::SenderSocket { family, source })?;
        // Two first sends racing each open a socket; one is kept.
        let _ = cell.set(socket);
        Ok(cell.get().expect("the cell was just set"))
    }
}

// ---------------------------------------------------------------------------
// Receiving

/// One wake-up received by a [`WakeListener`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Wake {
    /// The lock namespace the sender named (may be empty).
    pub scope: String,
    /// The lock name.
    pub name: String,
    /// Where the datagram came from (unauthenticated: for logs only).
    pub from: SocketAddr,
}

/// Receives wake-up datagrams on one UDP socket.
///
/// [`bind`](WakeListener::bind) needs no async runtime (so a synchronous
/// builder can create one); the socket joins the tokio runtime on the first
/// [`next`](WakeListener::next), which must run inside a tokio runtime with
/// I/O enabled.
///
/// Anyone who can reach the port can send to it: treat every [`Wake`] as a
/// hint, check that it names a lock this process waits for, and pass it
/// through a [`WakeLimiter`] before reading the lock.
#[derive(Debug)]
pub struct WakeListener {
    socket: UdpSocket,
    io: OnceLock<tokio::net::UdpSocket>,
    local: SocketAddr,
    advertise: SocketAddr,
}

impl WakeListener {
    /// Binds `address` (port 0 lets the system choose) and works out the
    /// address to advertise in queue entries: `advertise` if given (a port
    /// of 0 there means the bound port), else the bound address.
    ///
    /// # Errors
    ///
    /// [`WakeError::Bind`] if the address cannot be bound, and
    /// [`WakeError::NoReachableAddress`] if the address to advertise would
    /// be unspecified (binding `0.0.0.0` or `::` without an `advertise`
    /// address): other hosts cannot send to `0.0.0.0`, so say which of this
    /// host's addresses they should use.
    pub fn bind(address: SocketAddr, advertise: Option<SocketAddr>) -> Result<Self, WakeError> {
        let bind_error = |source| WakeError::Bind { address, source };
        let socket = UdpSocket::bind(address).map_err(bind_error)?;
        socket.set_nonblocking(true).map_err(bind_error)?;
        let local = socket.local_addr().map_err(bind_error)?;
        let advertise = match advertise {
            Some(mut advertised) => {
                if advertised.ip().is_unspecified() {
                    return Err(WakeError::NoReachableAddress {
                        problem: format!(
                            "the advertise address {advertised} is unspecified, which other clients cannot send to"
                        ),
                    });
                }
                if advertised.port() == 0 {
                    advertised.set_port(local.port());
                }
                advertised
            }
            None if local.ip().is_unspecified() => {
                return Err(WakeError::NoReachableAddress {
                    problem: format!(
                        "it is bound to {local}, an unspecified address, which other clients cannot send to"
                    ),
                });
            }
            None => local,
        };
        Ok(WakeListener {
            socket,
            io: OnceLock::new(),
            local,
            advertise,
        })
    }

    /// The address the socket is bound to (with the system's port if 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address others should send wake-ups to. Put
    /// `advertise().to_string()` in [`QueueEntry::wake`](crate::QueueEntry::wake);
    /// [`WakeSender::send`] parses that form back.
    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// Waits for the next well-formed wake-up, skipping malformed datagrams
    /// (and oversized ones, which are truncated on receipt and then fail to
    /// parse).
    ///
    /// May be called from several tasks at once; each datagram goes to one
    /// of them.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe. It awaits only tokio's
    /// `UdpSocket::recv_from`, which is cancel safe, and a datagram it
    /// receives is returned without another await. If the future is dropped
    /// (say, by losing a `select!`), no well-formed wake-up has been taken
    /// from the socket; only malformed datagrams may have been discarded.
    ///
    /// # Errors
    ///
    /// [`WakeError::Receive`] for a receive error that is not transient
    /// (transient ones, such as an ICMP-reported unreachable peer, are
    /// skipped), or if the socket could not join the runtime. Stop
    /// listening and rely on polling, or retry after a delay on the
    /// engine's clock.
    ///
    /// # Panics
    ///
    /// If first called outside a tokio runtime with I/O enabled (as any
    /// tokio socket does).
    pub async fn next(&self) -> Result<Wake, WakeError> {
        let socket = self.io_socket()?;
        // One byte more than the largest datagram, so an oversized datagram
        // (truncated to the buffer) is seen as oversized and rejected.
        let mut buf = [0u8; MAX_WAKE_DATAGRAM_BYTES + 1];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((len, from)) => {
                    if let Some((scope, name)) = parse_wake(&buf[..len]) {
                        return Ok(Wake {
                            scope: scope.to_owned(),
                            name: name.to_owned(),
                            from,
                        });
                    }
                    tracing::trace!(%from, len, "ignored a malformed wake-up datagram");
                }
                Err(e) if is_transient(&e) => {
                    tracing::trace!(error = %e, "wake listener: transient receive error");
                }
                Err(source) => {
                    return Err(WakeError::Receive {
                        address: self.local,
                        source,
                    })
                }
            }
        }
    }

    /// The socket registered with the runtime (a duplicate of `socket`, so a
    /// failed registration can be retried).
    fn io_socket(&self) -> Result<&tokio::net::UdpSocket, WakeError> {
        if let Some(socket) = self.io.get() {
            return Ok(socket);
        }
        let receive_error = |source| WakeError::Receive {
            address: self.local,
            source,
        };
        let duplicate = self.socket.try_clone().map_err(receive_error)?;
        let socket = tokio::net::UdpSocket::from_std(duplicate).map_err(receive_error)?;
        // Two first calls racing each register a duplicate; one is kept.
        let _ = self.io.set(socket);
        Ok(self.io.get().expect("the cell was just set"))
    }
}

/// Receive errors that say nothing about this socket: ICMP reports about an
/// earlier datagram (Windows reports them on receive) and interruptions.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

// ---------------------------------------------------------------------------
// Rate limiting

/// The settings of a [`WakeLimiter`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WakeLimits {
    /// Reads a key may be woken for in a burst (at least 1).
    pub capacity: u32,
    /// The time one more wake-up read accrues in (non-zero).
    pub refill: Duration,
    /// The most keys tracked at once (at least 1). When all are busy, wake-ups
    /// for new keys are refused until some go idle.
    pub max_keys: usize,
}

impl WakeLimits {
    /// A burst of 2 and one more read per `poll_interval`: wake-ups at most
    /// double a waiter's reads over its polling, however many arrive.
    pub fn per_poll(poll_interval: Duration) -> Self {
        WakeLimits {
            capacity: 2,
            refill: poll_interval,
            max_keys: DEFAULT_WAKE_LIMITER_KEYS,
        }
    }

    fn validate(&self) -> Result<(), WakeError> {
        if self.capacity == 0 {
            return Err(WakeError::BadLimits(
                "capacity is 0, which refuses every wake-up; use at least 1 (or do not listen)",
            ));
        }
        if self.refill.is_zero() {
            return Err(WakeError::BadLimits(
                "refill period is zero, which limits nothing; use the poll interval",
            ));
        }
        if self.max_keys == 0 {
            return Err(WakeError::BadLimits(
                "max_keys is 0, which refuses every wake-up; use at least the number of locks waited for at once",
            ));
        }
        Ok(())
    }
}

impl Default for WakeLimits {
    /// [`WakeLimits::per_poll`] of one second (the default poll interval).
    fn default() -> Self {
        WakeLimits::per_poll(Duration::from_secs(1))
    }
}

/// A per-key token bucket deciding which wake-ups may trigger a read.
///
/// Each key (a lock name, or scope and name) starts with
/// [`capacity`](WakeLimits::capacity) tokens and gains one per
/// [`refill`](WakeLimits::refill) up to the capacity; a wake-up is allowed
/// when it can take a token. So over any span of time `t`, one key is
/// allowed at most `capacity + t / refill` wake-ups, however many arrive.
/// Time comes from the [`Clock`].
///
/// Memory is bounded: a key whose bucket has refilled is forgotten (that
/// loses nothing, as an unknown key starts full), at most
/// [`max_keys`](WakeLimits::max_keys) keys are tracked, and while all of them
/// are busy a wake-up for a new key is refused. Forgetting sweeps at most
/// once per refill period, so a flood of new keys costs no more than that.
#[derive(Debug)]
pub struct WakeLimiter {
    clock: Arc<dyn Clock>,
    limits: WakeLimits,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    buckets: HashMap<String, Bucket>,
    last_sweep: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// The instant from which the next token accrues.
    since: Instant,
}

impl Bucket {
    /// Adds the tokens accrued by `now`; returns `true` if the bucket is full.
    fn refill(&mut self, now: Instant, limits: &WakeLimits) -> bool {
        let missing = limits.capacity - self.tokens;
        if missing == 0 {
            self.since = now;
            return true;
        }
        let elapsed = now.saturating_duration_since(self.since);
        let accrued = elapsed.as_nanos() / limits.refill.as_nanos();
        if accrued >= u128::from(missing) {
            self.tokens = limits.capacity;
            self.since = now;
            true
        } else {
            // accrued < missing <= u32::MAX
            let accrued = accrued as u32;
            self.tokens += accrued;
            self.since += limits.refill * accrued;
            false
        }
    }
}

impl WakeLimiter {
    /// A limiter on `clock` with these limits.
    ///
    /// # Errors
    ///
    /// [`WakeError::BadLimits`] if the capacity or `max_keys` is 0 or the
    /// refill period is zero.
    pub fn new(clock: Arc<dyn Clock>, limits: WakeLimits) -> Result<Self, WakeError> {
        limits.validate()?;
        let last_sweep = clock.now();
        Ok(WakeLimiter {
            clock,
            limits,
            state: Mutex::new(LimiterState {
                buckets: HashMap::new(),
                last_sweep,
            }),
        })
    }

    /// The limits this limiter applies.
    pub fn limits(&self) -> WakeLimits {
        self.limits
    }

    /// `true` if a wake-up for `key` may trigger a read now (and takes a
    /// token for it); `false` if it should be ignored.
    pub fn allow(&self, key: &str) -> bool {
        let now = self.clock.now();
        let limits = &self.limits;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let sweep_due = now.saturating_duration_since(state.last_sweep) >= limits.refill;
        if sweep_due {
            state.last_sweep = now;
            state
                .buckets
                .retain(|_, bucket| !bucket.refill(now, limits));
        }
        if let Some(bucket) = state.buckets.get_mut(key) {
            bucket.refill(now, limits);
            if bucket.tokens == 0 {
                return false;
            }
            bucket.tokens -= 1;
            return true;
        }
        if state.buckets.len() >= limits.max_keys {
            return false;
        }
        state.buckets.insert(
            key.to_owned(),
            Bucket {
                tokens: limits.capacity - 1,
                since: now,
            },
        );
        true
    }

    /// How many keys are tracked now (at most
    /// [`max_keys`](WakeLimits::max_keys)); for metrics and tests.
    pub fn tracked_keys(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buckets
            .len()
    }
}

impl fmt::Display for WakeLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "burst {} and one per {:?}, {} keys at most",
            self.capacity, self.refill, self.max_keys
        )
    }
}

// ---------------------------------------------------------------------------
// Transport seam

/// How a client sends wake-ups: UDP datagrams ([`WakeSender`], the default),
/// or anything else that ends in [`LockClient::wake`](crate::LockClient::wake)
/// on the receiving client (a simulation's lossy network, a message bus).
///
/// Sending is fire and forget: a wake-up only makes a waiter poll sooner.
pub trait WakeTransport: Send + Sync + std::fmt::Debug + 'static {
    /// Sends a wake-up for lock `name` of `scope` to the waiter that
    /// advertised `to`. Errors are the transport's to log; nothing depends on
    /// delivery.
    fn send(&self, to: &str, scope: &str, name: &str);
}

impl WakeTransport for WakeSender {
    fn send(&self, to: &str, scope: &str, name: &str) {
        if let Err(e) = WakeSender::send(self, to, scope, name) {
            tracing::debug!(lock = %name, %to, error = %e, "wake-up not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Sleep, SystemClock};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::time::SystemTime;

    // -- format --------------------------------------------------------------

    #[test]
    fn wake_round_trip() {
        let cases = [
            ("locks", "job"),
            ("", "job"),
            ("my table", "a name with  spaces "),
            ("t", " "),
            ("tablé", "ключ 🔒"),
            ("t", "1 2 3"),
            ("lynk-wake/1 3 abc", "x\n\0y"),
        ];
        for (scope, name) in cases {
            let datagram = encode_wake(scope, name).unwrap();
            assert!(datagram.len() <= MAX_WAKE_DATAGRAM_BYTES);
            assert_eq!(
                parse_wake(datagram.as_bytes()),
                Some((scope, name)),
                "{datagram:?}"
            );
        }
        assert_eq!(encode_wake("", "n").unwrap(), "lynk-wake/1 0  1 n");
    }

    #[test]
    fn wake_encode_limits() {
        assert!(matches!(encode_wake("t", ""), Err(WakeError::EmptyName)));
        // Find the longest name that fits, then one byte more.
        let overhead = encode_wake("t", "x").unwrap().len() - 1;
        let mut fits = MAX_WAKE_DATAGRAM_BYTES - overhead;
        while encode_wake("t", &"x".repeat(fits)).is_err() {
            fits -= 1;
        }
        let longest = encode_wake("t", &"x".repeat(fits)).unwrap();
        assert!(longest.len() >= MAX_WAKE_DATAGRAM_BYTES - 1);
        assert_eq!(parse_wake(longest.as_bytes()).unwrap().1.len(), fits);
        let err = encode_wake("t", &"x".repeat(fits + 1)).unwrap_err();
        assert!(matches!(
            err,
            WakeError::TooLong {
                limit: MAX_WAKE_DATAGRAM_BYTES,
                ..
            }
        ));
        assert!(err.to_string().contains("polling"), "{err}");
        assert!(encode_wake("t", &"x".repeat(crate::MAX_NAME_BYTES)).is_err());
    }

    #[test]
    fn wake_malformed_is_ignored() {
        let bad: &[&[u8]] = &[
            b"",
            b"lynk-wake/1",
            b"lynk-wake/1 ",
            b"lynk-wake/1 1 t 3 job ",                   // trailing garbage
            b"lynk-wake/1 1 t 3 jobx",                   // trailing garbage
            b"lynk-wake/1 1 t 3 jo",                     // truncated
            b"lynk-wake/1 1 t 3 job\n",                  // trailing newline
            b"lynk-wake/1 1 t 0 ",                       // empty name
            b"lynk-wake/1 1 t 03 job",                   // leading zero
            b"lynk-wake/1 01 t 3 job",                   // leading zero
            b"lynk-wake/1 +1 t 3 job",                   // sign
            b"lynk-wake/1 -1 t 3 job",                   // sign
            b"lynk-wake/1 1 t 3job",                     // missing space
            b"lynk-wake/1 1 t  3 job",                   // extra space
            b"lynk-wake/1  1 t 3 job",                   // extra space
            b"lynk-wake/1 1t 3 job",                     // missing space
            b"lynk-wake/1 2 t 3 job",                    // scope length wrong
            b"lynk-wake/1 1 t 4 job",                    // name length past the end
            b"lynk-wake/1 99999999999999999999 t 3 job", // overflow
            b"lynk-wake/1 18446744073709551616 t 3 job", // overflow
            b"lynk-wake/1 1 t 3 \xff\xfe\xfd",           // not UTF-8
            b"lynk-wake/1 2 \xc3\xa9 1 x\xc3",           // not UTF-8 at the end
            b"lynk-wake/1 1 \xc3\xa9 1 x",               // length splits a character
            b"lynk-wake/2 1 t 3 job",                    // another version
            b"lynk-wake/10 1 t 3 job",
            b"LYNK-WAKE/1 1 t 3 job",
            b" lynk-wake/1 1 t 3 job",
            b"lynk-wake/1\t1 t 3 job",
            b"lynk-wake/11 t 3 job",
            b"lynk-wake/1 1 t",
            b"lynk-wake/1 1 t ",
            b"lynk-wake/1 1 t 3",
            b"lynk-wake/1 \xd9\xa1 t 3 job",     // non-ASCII digit
            b"lynk-wake/1 \xef\xbc\x91 t 3 job", // fullwidth digit
            b"\0\0\0\0",
        ];
        for datagram in bad {
            assert_eq!(
                parse_wake(datagram),
                None,
                "{:?}",
                String::from_utf8_lossy(datagram)
            );
        }
        // Too long, even if well formed apart from that.
        let name = "x".repeat(MAX_WAKE_DATAGRAM_BYTES);
        let long = format!("{WAKE_PROTOCOL} 1 t {} {name}", name.len());
        assert_eq!(parse_wake(long.as_bytes()), None);
    }

    /// A seeded fuzz (proptest is not a dev-dependency of lynk-core): random
    /// bytes and mutations of valid datagrams never panic, and whatever
    /// parses is canonical (encodes back to the same bytes).
    #[test]
    fn wake_parse_fuzz() {
        let mut rng = StdRng::seed_from_u64(0x5eed_1e55);
        let valid = [
            encode_wake("locks", "nightly job").unwrap(),
            encode_wake("", "x").unwrap(),
            encode_wake("tablé", "ключ").unwrap(),
        ];
        let alphabet = b"lynk-wake/1 0123456789 \xc3\xa9\xff\n";
        let mut parsed = 0;
        for round in 0..50_000 {
            let mut bytes: Vec<u8> = if round % 4 == 0 {
                let len = rng.gen_range(0..40);
                (0..len).map(|_| rng.gen()).collect()
            } else {
                valid[round % valid.len()].as_bytes().to_vec()
            };
            for _ in 0..rng.gen_range(0..4) {
                let at = rng.gen_range(0..=bytes.len());
                let byte = alphabet[rng.gen_range(0..alphabet.len())];
                match rng.gen_range(0..4) {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => bytes[at] = byte,
                    2 if at < bytes.len() => drop(bytes.remove(at)),
                    _ => bytes.truncate(at),
                }
            }
            if let Some((scope, name)) = parse_wake(&bytes) {
                parsed += 1;
                assert_eq!(encode_wake(scope, name).unwrap().as_bytes(), &bytes[..]);
            }
        }
        assert!(parsed > 0, "the fuzz never produced a valid datagram");
    }

    #[test]
    fn wake_bad_addresses_are_named() {
        let sender = WakeSender::new();
        for to in [
            "",
            "localhost:80",
            "10.0.0.1",
            "10.0.0.1:",
            "10.0.0.1:99999",
            "::1:80",
            "0.0.0.0:80",
            "[::]:80",
            "127.0.0.1:0",
        ] {
            let err = sender.send(to, "t", "job").unwrap_err();
            assert!(matches!(err, WakeError::BadAddress { .. }), "{to}: {err}");
            assert!(err.to_string().contains(&format!("{to:?}")), "{err}");
        }
        let too_long = sender
            .send("127.0.0.1:9", "t", &"x".repeat(2000))
            .unwrap_err();
        assert!(matches!(too_long, WakeError::TooLong { .. }));
    }

    // -- sockets --------------------------------------------------------------

    async fn next_within(listener: &WakeListener, secs: u64) -> Wake {
        tokio::select! {
            wake = listener.next() => wake.unwrap(),
            () = SystemClock.sleep(Duration::from_secs(secs)) => panic!("no wake-up within {secs} s"),
        }
    }

    #[tokio::test]
    async fn wake_loopback_send_and_receive() {
        let listener = WakeListener::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        assert_ne!(listener.local_addr().port(), 0);
        assert_eq!(listener.advertise(), listener.local_addr());
        let to = listener.advertise().to_string();

        // Garbage first: the listener skips it and returns the real wake-up.
        let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
        raw.send_to(b"hello", listener.local_addr()).unwrap();
        raw.send_to(b"lynk-wake/1 1 t 3 job!", listener.local_addr())
            .unwrap();
        raw.send_to(&[b'x'; 4000], listener.local_addr()).unwrap();
        let sender = WakeSender::new();
        sender.send(&to, "my table", "nightly job").unwrap();

        let wake = next_within(&listener, 10).await;
        assert_eq!(wake.scope, "my table");
        assert_eq!(wake.name, "nightly job");
        assert!(wake.from.ip().is_loopback());

        // The sender reuses its socket.
        sender.send(&to, "", "second").unwrap();
        let wake2 = next_within(&listener, 10).await;
        assert_eq!((wake2.scope.as_str(), wake2.name.as_str()), ("", "second"));
        assert_eq!(wake2.from.port(), wake.from.port());
    }

    #[tokio::test]
    async fn wake_loopback_ipv6() {
        let Ok(listener) = WakeListener::bind("[::1]:0".parse().unwrap(), None) else {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        };
        let to = listener.advertise().to_string();
        assert!(to.starts_with("[::1]:"), "{to}");
        WakeSender::new().send(&to, "t", "v6").unwrap();
        assert_eq!(next_within(&listener, 10).await.name, "v6");
    }

    #[tokio::test]
    async fn wake_next_is_cancel_safe() {
        let listener = WakeListener::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        // A next() abandoned before anything arrives loses nothing.
        tokio::select! {
            _ = listener.next() => panic!("nothing was sent"),
            () = SystemClock.sleep(Duration::from_millis(20)) => {}
        }
        WakeSender::new()
            .send(&listener.advertise().to_string(), "t", "after")
            .unwrap();
        assert_eq!(next_within(&listener, 10).await.name, "after");
    }

    #[test]
    fn wake_listener_needs_a_reachable_address() {
        let err = WakeListener::bind("0.0.0.0:0".parse().unwrap(), None).unwrap_err();
        assert!(matches!(err, WakeError::NoReachableAddress { .. }));
        assert!(
            err.to_string().contains("set an advertise address"),
            "{err}"
        );

        let err = WakeListener::bind(
            "127.0.0.1:0".parse().unwrap(),
            Some("0.0.0.0:7070".parse().unwrap()),
        )
        .unwrap_err();
        assert!(matches!(err, WakeError::NoReachableAddress { .. }), "{err}");

        // An advertise address with port 0 takes the bound port.
        let listener = WakeListener::bind(
            "0.0.0.0:0".parse().unwrap(),
            Some("192.0.2.7:0".parse().unwrap()),
        )
        .unwrap();
        assert!(listener.local_addr().ip().is_unspecified());
        assert_eq!(
            listener.advertise().ip(),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(listener.advertise().port(), listener.local_addr().port());

        // A port in use is a bind error naming the address.
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = held.local_addr().unwrap();
        let err = WakeListener::bind(address, None).unwrap_err();
        assert!(matches!(err, WakeError::Bind { .. }), "{err}");
        assert!(err.to_string().contains(&address.to_string()), "{err}");
    }

    // -- limiter ---------------------------------------------------------------

    /// A clock that moves only when told to.
    #[derive(Debug)]
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(ManualClock(Mutex::new(SystemClock.now())))
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
        fn wall_now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }
        fn sleep_until(&self, _: Instant) -> Sleep {
            Box::pin(std::future::pending())
        }
    }

    fn limiter(clock: &Arc<ManualClock>, limits: WakeLimits) -> WakeLimiter {
        WakeLimiter::new(clock.clone(), limits).unwrap()
    }

    #[test]
    fn wake_limiter_flood_is_bounded() {
        let clock = ManualClock::new();
        let refill = Duration::from_millis(1000);
        let limits = WakeLimits::per_poll(refill);
        assert_eq!(limits.capacity, 2);
        let limiter = limiter(&clock, limits);

        // 1000 at once: exactly the burst.
        let allowed = (0..1000).filter(|_| limiter.allow("job")).count();
        assert_eq!(allowed, 2);

        // A flood spread over 10.5 refill periods, in steps that do not divide
        // the refill period: at most capacity + elapsed / refill in all, and
        // a token every refill period.
        let step = Duration::from_millis(70);
        let mut total = allowed;
        let mut elapsed = Duration::ZERO;
        while elapsed < refill * 21 / 2 {
            clock.advance(step);
            elapsed += step;
            total += (0..10).filter(|_| limiter.allow("job")).count();
            let bound = 2 + (elapsed.as_nanos() / refill.as_nanos()) as usize;
            assert!(
                total <= bound,
                "{total} allowed after {elapsed:?}; the bound is {bound}"
            );
        }
        assert_eq!(
            total,
            2 + 10,
            "one wake-up per refill period after the burst"
        );

        // Other keys have buckets of their own.
        assert!(limiter.allow("other"));
        assert!(limiter.allow("other"));
        assert!(!limiter.allow("other"));

        // Idle long enough, the burst is back (and no more).
        clock.advance(refill * 100);
        assert_eq!((0..1000).filter(|_| limiter.allow("job")).count(), 2);
    }

    #[test]
    fn wake_limiter_map_is_capped_and_forgets_idle_keys() {
        let clock = ManualClock::new();
        let refill = Duration::from_secs(1);
        let limits = WakeLimits {
            capacity: 2,
            refill,
            max_keys: 8,
        };
        let limiter = limiter(&clock, limits);

        // A flood of forged names: at most max_keys tracked (and allowed).
        let allowed = (0..1000)
            .filter(|i| limiter.allow(&format!("forged {i}")))
            .count();
        assert_eq!(allowed, 8);
        assert_eq!(limiter.tracked_keys(), 8);

        // Within a refill period nothing is forgotten, so nothing new fits...
        clock.advance(refill / 2);
        assert!(!limiter.allow("real"));
        // ...and a known key keeps its bucket.
        assert!(limiter.allow("forged 0"));
        assert!(!limiter.allow("forged 0"));

        // Once the buckets have refilled they are forgotten.
        clock.advance(refill * 3);
        assert!(limiter.allow("real"));
        assert_eq!(limiter.tracked_keys(), 1);

        // A long flood, time moving: the cap always holds.
        for i in 0..10_000 {
            if i % 100 == 0 {
                clock.advance(Duration::from_millis(130));
            }
            limiter.allow(&format!("flood {i}"));
            assert!(limiter.tracked_keys() <= 8);
        }
    }

    #[test]
    fn wake_limits_are_validated() {
        let clock = ManualClock::new();
        let ok = WakeLimits::default();
        assert_eq!(ok.refill, Duration::from_secs(1));
        for bad in [
            WakeLimits { capacity: 0, ..ok },
            WakeLimits {
                refill: Duration::ZERO,
                ..ok
            },
            WakeLimits { max_keys: 0, ..ok },
        ] {
            let err = WakeLimiter::new(clock.clone(), bad).unwrap_err();
            assert!(matches!(err, WakeError::BadLimits(_)), "{bad}: {err}");
        }
        assert_eq!(limiter(&clock, ok).limits(), ok);
    }
}
