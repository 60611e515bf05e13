//! Client configuration: leases, heartbeats, polling and the safety margins.

use std::time::Duration;

use crate::LockError;

/// The shortest lease lynk accepts.
pub const MIN_LEASE: Duration = Duration::from_millis(100);
/// The longest lease lynk accepts (seven days).
pub const MAX_LEASE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest lock name, in bytes (DynamoDB's limit for a partition key).
pub const MAX_NAME_BYTES: usize = 2048;
/// The largest payload, in bytes (DynamoDB items are limited to 400 KB in all).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// What a release does to the stored record.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ReleaseMode {
    /// Keep the record, marked released, so the next acquisition continues
    /// its fencing token (the default). A released record is free at once.
    #[default]
    KeepRecord,
    /// Delete the record, as the original Python lynk does. The next
    /// acquisition restarts the fencing token from the wall clock (see
    /// [`TokenUpdate::Next`](crate::TokenUpdate::Next)).
    Delete,
}

/// Settings of a [`LockClient`](crate::LockClient); build one with
/// [`LockClient::builder`](crate::LockClient::builder).
///
/// # Timing
///
/// For a lease `L` written at monotonic instant `t` (taken *before* the write
/// was sent), with drift allowance `d`:
///
/// * heartbeats are sent every `L × heartbeat_fraction`;
/// * the holder's **safe deadline** is `t + L × (1 − d)`: after it, the
///   holder can no longer be sure nobody else holds the lock;
/// * the **lost-lease signal** fires at `t + L × (1 − d − lost_signal_margin)`
///   if no later heartbeat succeeded, so the holder has
///   `L × lost_signal_margin` to stop before the safe deadline;
/// * a waiter that has seen the same record version continuously since
///   instant `s` (taken *after* the response arrived) may take over at
///   `s + L × (1 + d) + lock_delay`.
///
/// `d` bounds how much faster one host's monotonic clock may run than
/// another's over one lease. Quartz clocks drift by parts per million; the
/// default of 1 % also covers NTP slewing and virtual machine migrations. It
/// does **not** cover a holder that is paused (GC, swap, a stopped VM): no
/// lease can. Fencing tokens cover that.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Written as `hostIdentifier`; defaults to the machine's host name.
    pub host_identifier: String,
    /// The lease of locks created without one (default 20 s, as the original).
    pub default_lease: Duration,
    /// Heartbeat period as a fraction of the lease (default 1/3).
    pub heartbeat_fraction: f64,
    /// The drift allowance `d` (default 0.01).
    pub drift_allowance: f64,
    /// Fraction of the lease between the lost-lease signal and the safe deadline (default 0.1).
    pub lost_signal_margin: f64,
    /// How often a waiter reads a held lock once its first, quick polls are
    /// done (default 1.5 s; shortened to a quarter of the holder's lease for
    /// short leases, see [`ClientConfig::poll_interval_for`]).
    ///
    /// A waiter polls [`first_poll`](ClientConfig::first_poll) after its first
    /// attempt, then at doubling gaps while under half this one, then at this
    /// one (the steady gaps jittered +0-20 %), and starts over when the lock
    /// changes hands (see `engine/poll.rs`). With the defaults (0.1 s, 0.2 s,
    /// 0.4 s, then 1.5 s) a short critical section hands over within about
    /// 0.1 to 0.2 s, and a 10 s wait costs at most 10 requests: the quick
    /// polls are paid for by a steady period longer than 1 s.
    pub poll_interval: Duration,
    /// The first poll after a failed attempt (default 100 ms, at most the poll
    /// interval); see [`poll_interval`](ClientConfig::poll_interval).
    pub first_poll: Duration,
    /// How long a waiter that a releasing holder granted the lock to (see
    /// [`LockRecord::granted_to`](crate::LockRecord::granted_to)) has to
    /// confirm it with its own write (default 5 s) before the other waiters
    /// skip it. It is the grant record's lease, at least three of the
    /// grantee's poll intervals, which its queue entry carries (see
    /// [`grant_lease_for`](ClientConfig::grant_lease_for)).
    pub grant_timeout: Duration,
    /// Wake-up datagrams (off by default): listen on an address advertised
    /// in the store's wait queue, so a releasing holder can tell this client
    /// to poll at once. See [`WakeUps`].
    pub wake_ups: Option<WakeUps>,
    /// Extra time a lock stays unavailable after its holder vanished without
    /// releasing it (default zero). Clean releases are free at once.
    pub lock_delay: Duration,
    /// What release does to the record.
    pub release_mode: ReleaseMode,
    /// First backoff after a throttled or failed request (default 25 ms);
    /// doubles up to [`max_backoff`](ClientConfig::max_backoff).
    pub initial_backoff: Duration,
    /// Largest backoff (default 1 s).
    pub max_backoff: Duration,
    /// Seed for the jitter of polls and backoffs; `None` seeds from the OS.
    pub jitter_seed: Option<u64>,
    /// A label written with this client's records after its process id
    /// ([`LockRecord::holder_detail`](crate::LockRecord::holder_detail)), so
    /// people reading the table can tell holders on one host apart (e.g. a
    /// job's name). At most 128 characters, no line breaks. Default: none.
    pub holder_label: Option<String>,
    /// The longest one store call may take before the engine gives up on it
    /// and treats its outcome as unknown (a write) or as a failed read.
    /// `None` (the default) derives it from the lease: a quarter of it, at
    /// most 10 s; see [`ClientConfig::call_timeout_for`]. A heartbeat never
    /// waits past its lease's lost-signal instant, whatever this says.
    pub call_timeout: Option<Duration>,
    /// How long a release (by `release()`, a dropped guard or `shutdown()`)
    /// keeps retrying a failing store before it gives up and leaves the
    /// lease to expire on its own (default 10 s; never past the lease's safe
    /// deadline).
    pub release_timeout: Duration,
    /// Deliberate protocol bugs, for the negative controls of lynk's own
    /// tests only. Never set this.
    #[doc(hidden)]
    pub mutations: Mutations,
}

/// Where a client listens for wake-up datagrams, and the address it
/// advertises in the store's wait queue.
///
/// A releasing holder that grants the lock to a queued waiter sends it one
/// small UDP datagram naming the lock; the waiter then polls at once instead
/// of at its next poll. A wake-up only makes a waiter read sooner: it never
/// grants anything, so a lost, duplicated, late or forged one changes only
/// timing, and the reads wake-ups trigger are rate-limited per lock (two at
/// once, then one per poll interval), so a flood cannot multiply a waiter's
/// requests.
///
/// The holders must be able to reach the advertised address: the same VPC
/// or network, and a security group or firewall that lets UDP in on the
/// port from the other clients. Without that, waiters work as before, by
/// polling.
///
/// ```
/// use lynk_core::WakeUps;
/// let wake = WakeUps::new("10.0.3.7:7400".parse().unwrap()).scope("my-locks-table");
/// assert_eq!(wake.scope, "my-locks-table");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WakeUps {
    /// The address to bind (`0.0.0.0:7400`, or port 0 for any free port).
    pub listen: std::net::SocketAddr,
    /// The address other clients send to, if not `listen` (required when
    /// `listen` is an unspecified address such as `0.0.0.0`; a port of 0
    /// means the bound port).
    pub advertise: Option<std::net::SocketAddr>,
    /// Names the lock namespace in datagrams (such as the table name), so
    /// clients of different tables sharing a port ignore each other's.
    pub scope: String,
}

impl WakeUps {
    /// Listen on `listen` and advertise it; empty scope.
    pub fn new(listen: std::net::SocketAddr) -> Self {
        WakeUps {
            listen,
            advertise: None,
            scope: String::new(),
        }
    }

    /// Advertise `address` instead of the bound one.
    pub fn advertise(mut self, address: std::net::SocketAddr) -> Self {
        self.advertise = Some(address);
        self
    }

    /// Sets the scope (for example the table name).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }
}

/// Deliberate protocol bugs that lynk's negative-control tests switch on to
/// prove their checkers can fail. Every field defaults to `false`; nothing
/// outside those tests should set one.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Time a lease from the write's *response* instead of its send.
    pub time_lease_from_response: bool,
    /// Seed a token-less record's fencing token from the wall clock alone,
    /// ignoring the highest token this client has seen for the name.
    pub no_token_floor: bool,
    /// Hand a lock over to a local waiter without conditioning the write on
    /// the releasing holder's version.
    pub unconditional_handover: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            host_identifier: default_host_identifier(),
            default_lease: Duration::from_secs(20),
            heartbeat_fraction: 1.0 / 3.0,
            drift_allowance: 0.01,
            lost_signal_margin: 0.1,
            poll_interval: Duration::from_millis(1500),
            first_poll: Duration::from_millis(100),
            grant_timeout: Duration::from_secs(5),
            wake_ups: None,
            lock_delay: Duration::ZERO,
            release_mode: ReleaseMode::KeepRecord,
            initial_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            jitter_seed: None,
            holder_label: None,
            call_timeout: None,
            release_timeout: Duration::from_secs(10),
            mutations: Mutations::default(),
        }
    }
}

fn default_host_identifier() -> String {
    gethostname::gethostname()
        .into_string()
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

impl ClientConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), LockError> {
        if let Some(label) = &self.holder_label {
            if label.chars().count() > 128 || label.contains(['\n', '\r']) {
                return Err(LockError::invalid(
                    "holder label",
                    format!(
                        "{label:?} is longer than 128 characters or has a line break; give a short name such as the job's"
                    ),
                ));
            }
        }
        validate_lease(self.default_lease)?;
        if self.host_identifier.is_empty() {
            return Err(LockError::invalid(
                "host identifier",
                "it is empty; leave it unset to use the host name",
            ));
        }
        let fraction_ok = |f: f64| f.is_finite() && f > 0.0 && f < 1.0;
        if !fraction_ok(self.heartbeat_fraction) {
            return Err(LockError::invalid(
                "heartbeat fraction",
                format!(
                    "{} is not between 0 and 1 (exclusive); 1/3 is a good value",
                    self.heartbeat_fraction
                ),
            ));
        }
        if !(self.drift_allowance.is_finite() && (0.0..0.5).contains(&self.drift_allowance)) {
            return Err(LockError::invalid(
                "drift allowance",
                format!(
                    "{} is not in [0, 0.5); 0.01 is the default",
                    self.drift_allowance
                ),
            ));
        }
        if !fraction_ok(self.lost_signal_margin) {
            return Err(LockError::invalid(
                "lost-signal margin",
                format!(
                    "{} is not between 0 and 1 (exclusive); 0.1 is the default",
                    self.lost_signal_margin
                ),
            ));
        }
        if self.heartbeat_fraction >= 1.0 - self.drift_allowance - self.lost_signal_margin {
            return Err(LockError::invalid(
                "heartbeat fraction",
                "heartbeats must come before the lost-lease signal: keep heartbeat_fraction below 1 - drift_allowance - lost_signal_margin",
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(LockError::invalid(
                "poll interval",
                "it is zero; use at least a few milliseconds",
            ));
        }
        if self.first_poll.is_zero() {
            return Err(LockError::invalid(
                "first poll",
                "it is zero; 100 ms is the default",
            ));
        }
        if self.grant_timeout < MIN_LEASE || self.grant_timeout > MAX_LEASE {
            return Err(LockError::invalid(
                "grant timeout",
                format!(
                    "{:?} is outside [{MIN_LEASE:?}, {MAX_LEASE:?}]; 5 s is the default",
                    self.grant_timeout
                ),
            ));
        }
        self.validate_limits()?;
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return Err(LockError::invalid(
                "backoff",
                "initial backoff must be positive and no larger than the maximum backoff",
            ));
        }
        Ok(())
    }

    /// Time limits and periods must be representable next to a lease.
    fn validate_limits(&self) -> Result<(), LockError> {
        if let Some(t) = self.call_timeout {
            if t < Duration::from_millis(1) || t > MAX_LEASE {
                return Err(LockError::invalid(
                    "call timeout",
                    format!("{t:?} is outside [1ms, {MAX_LEASE:?}]; leave it unset to derive it from the lease"),
                ));
            }
        }
        if self.release_timeout.is_zero() || self.release_timeout > MAX_LEASE {
            return Err(LockError::invalid(
                "release timeout",
                format!(
                    "{:?} is outside (0, {MAX_LEASE:?}]; a release needs time for at least one request, and 10 s is the default",
                    self.release_timeout
                ),
            ));
        }
        for (what, d) in [
            ("poll interval", self.poll_interval),
            ("lock delay", self.lock_delay),
            ("backoff", self.max_backoff),
        ] {
            if d > MAX_LEASE {
                return Err(LockError::invalid(
                    what,
                    format!("{d:?} is longer than the longest lease ({MAX_LEASE:?})"),
                ));
            }
        }
        Ok(())
    }

    /// How often to poll a lock whose holder wrote `lease`: the configured
    /// poll interval, but at least four times per lease so short leases are
    /// taken over promptly.
    pub fn poll_interval_for(&self, lease: Duration) -> Duration {
        self.poll_interval
            .min(lease / 4)
            .max(Duration::from_millis(1))
    }

    /// The lease of a grant record to a waiter polling at this client's own
    /// [`poll_interval`](ClientConfig::poll_interval): `grant_lease_for(None)`.
    pub fn grant_lease(&self) -> Duration {
        self.grant_lease_for(None)
    }

    /// The lease of a grant record to a waiter whose queue entry says it
    /// polls every `waiter_poll` ([`QueueEntry::poll`](crate::QueueEntry::poll);
    /// `None`: this client's own poll interval):
    /// [`grant_timeout`](ClientConfig::grant_timeout), but at least three of
    /// the waiter's poll intervals, so a live waiter polling at its slowest
    /// still sees the grant in time; at most [`MAX_LEASE`](crate::MAX_LEASE).
    ///
    /// A waiter that polls slowly thus gets long grants: if it has died, the
    /// lock stays granted to it (nobody holds it) for three of its polls.
    pub fn grant_lease_for(&self, waiter_poll: Option<Duration>) -> Duration {
        self.grant_timeout
            .max(waiter_poll.unwrap_or(self.poll_interval).saturating_mul(3))
            .min(MAX_LEASE)
    }

    /// The first gap of a waiter's polls: [`first_poll`](ClientConfig::first_poll),
    /// at most the poll interval for `lease`.
    pub fn first_poll_for(&self, lease: Duration) -> Duration {
        self.first_poll.min(self.poll_interval_for(lease))
    }

    /// How long a waiter must see one version before it may take over a lock
    /// whose record says `lease`: `lease × (1 + d) + lock_delay`; `None` when
    /// that is too long to represent (a record may say anything), in which
    /// case the waiter never takes over and keeps polling.
    pub fn takeover_after(&self, lease: Duration) -> Option<Duration> {
        Duration::try_from_secs_f64(lease.as_secs_f64() * (1.0 + self.drift_allowance))
            .ok()?
            .checked_add(self.lock_delay)
    }

    /// The time limit of one store call made for a lease of `lease`: the
    /// configured [`call_timeout`](ClientConfig::call_timeout), or a quarter
    /// of the lease, at most 10 s.
    pub fn call_timeout_for(&self, lease: Duration) -> Duration {
        self.call_timeout
            .unwrap_or_else(|| (lease / 4).min(Duration::from_secs(10)))
    }

    /// What this client writes as [`LockRecord::holder_detail`](crate::LockRecord::holder_detail):
    /// `pid N`, then the [`holder_label`](ClientConfig::holder_label) if any.
    pub fn holder_detail(&self) -> String {
        match &self.holder_label {
            Some(label) if !label.is_empty() => format!("pid {} {label}", std::process::id()),
            _ => format!("pid {}", std::process::id()),
        }
    }

    /// Heartbeat period for `lease` (at least a millisecond).
    pub fn heartbeat_every(&self, lease: Duration) -> Duration {
        lease
            .mul_f64(self.heartbeat_fraction)
            .max(Duration::from_millis(1))
    }

    /// Time from a write's send to the holder's safe deadline: `lease × (1 − d)`.
    pub fn safe_for(&self, lease: Duration) -> Duration {
        lease.mul_f64(1.0 - self.drift_allowance)
    }

    /// Time from a write's send to the lost-lease signal.
    pub fn signal_after(&self, lease: Duration) -> Duration {
        lease.mul_f64(1.0 - self.drift_allowance - self.lost_signal_margin)
    }
}

pub(crate) fn validate_lease(lease: Duration) -> Result<(), LockError> {
    if lease < MIN_LEASE || lease > MAX_LEASE {
        return Err(LockError::invalid(
            "lease",
            format!(
                "{lease:?} is outside [{MIN_LEASE:?}, {MAX_LEASE:?}]; pick a lease a few times longer than a store round trip (lynk heartbeats every third of it)"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn validate_name(name: &str) -> Result<(), LockError> {
    if name.is_empty() {
        return Err(LockError::invalid(
            "lock name",
            "it is empty; give the lock a name such as \"my lock\"",
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(LockError::invalid(
            "lock name",
            format!(
                "it is {} bytes long; the limit is {MAX_NAME_BYTES} bytes (DynamoDB's key limit); hash long names first",
                name.len()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn validate_payload(payload: &[u8]) -> Result<(), LockError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(LockError::invalid(
            "payload",
            format!(
                "it is {} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes; store large data elsewhere and put its address in the payload",
                payload.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_lasts_three_of_the_grantees_polls() {
        let config = ClientConfig::default(); // grant 5 s, poll 1.5 s
        let s = Duration::from_secs;
        assert_eq!(config.grant_lease_for(None), s(5));
        assert_eq!(config.grant_lease(), s(5));
        // A waiter polling every 60 s gets 3 minutes; one polling every
        // 100 ms still gets grant_timeout.
        assert_eq!(config.grant_lease_for(Some(s(60))), s(180));
        assert_eq!(
            config.grant_lease_for(Some(Duration::from_millis(100))),
            s(5)
        );
        // Without the waiter's poll: this client's own.
        let slow = ClientConfig {
            poll_interval: s(10),
            ..ClientConfig::default()
        };
        assert_eq!(slow.grant_lease_for(None), s(30));
        // Never past MAX_LEASE, whatever an entry says.
        assert_eq!(config.grant_lease_for(Some(MAX_LEASE)), MAX_LEASE);
        assert_eq!(config.grant_lease_for(Some(Duration::MAX)), MAX_LEASE);
    }
}
