//! Followers: who leads an election, as one poller per name and client sees
//! it.
//!
//! The poller reads the election's record once per poll interval (the
//! client's [`poll_interval`](crate::ClientConfig::poll_interval), shortened
//! to a quarter of the leader's lease for short leases, as a waiter's) and
//! publishes what it concludes through a `watch` channel that every
//! [`LeaderWatch`] of that name in the client shares. It stops when the last
//! watch is dropped.
//!
//! "No leader" is concluded from the record alone and this client's own
//! clock, never from another host's: the record is absent, released, or a
//! grant (a resigning leader handed the lock to a candidate that has not
//! confirmed yet), or the poller has seen the same record version
//! continuously for `lease × (1 + drift)`, timed from the first response
//! that showed it (the rule a waiting candidate applies before it takes
//! over, without the lock delay).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::{FencingToken, LockClient, LockError, LockRecord, Version};

/// Consecutive failed reads after which a retryable error is reported to
/// the watches (a non-retryable one is reported at once). One failed read
/// is retried at the next poll without a word.
const REPORT_AFTER_FAILURES: u32 = 3;

/// The leader of an election, as a [`LeaderWatch`] last read it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's host identifier (`hostIdentifier`).
    pub host: String,
    /// The leader's payload, e.g. its address.
    pub payload: Option<Bytes>,
    /// The leader's term: its fencing token, higher than every earlier
    /// leader's. `0` for a record without a token (written by the original
    /// Python lynk, which knows no terms).
    pub term: FencingToken,
    /// The record version read last. It changes with every heartbeat of the
    /// leader; a new version alone is not a change of leader, and
    /// [`LeaderWatch::changed`] does not report it.
    pub version: Version,
    /// The leader's lease: it is considered gone once its record has not
    /// changed for `lease × (1 + drift)`.
    pub lease: Duration,
}

impl Leader {
    fn from_record(record: &LockRecord) -> Self {
        Leader {
            host: record.host.clone(),
            payload: record.payload.clone(),
            term: record.fencing_token.unwrap_or(FencingToken::new(0)),
            version: record.version.clone(),
            lease: record.lease_duration,
        }
    }

    /// The same leadership, as far as a follower cares: all but the version.
    fn same_as(&self, other: &Leader) -> bool {
        self.term == other.term
            && self.host == other.host
            && self.payload == other.payload
            && self.lease == other.lease
    }
}

fn same(a: &Option<Leader>, b: &Option<Leader>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_as(b),
        _ => false,
    }
}

/// What the poller of one name publishes.
#[derive(Clone, Debug, Default)]
struct Published {
    /// `false` until the first read is answered.
    known: bool,
    /// The leader as last concluded.
    leader: Option<Leader>,
    /// The current run of failed reads, once it is reported: its number
    /// (counting runs from 1) and the last error.
    failing: Option<(u64, LockError)>,
    /// Observation ended for good (the client was shut down, or the name is
    /// invalid): the error every call returns.
    ended: Option<LockError>,
}

/// The shared poller of one name in one client (kept in the client's
/// registry while a watch holds it): stops its task when dropped.
pub(crate) struct LeaderPoller {
    rx: watch::Receiver<Published>,
    stop: CancellationToken,
}

impl Drop for LeaderPoller {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl LockClient {
    /// Watches who leads the election `name`, as this client reads it.
    ///
    /// Every watch of one name in one client (and its clones) shares one
    /// poller: one strongly consistent read per poll interval
    /// ([`ClientConfig::poll_interval`](crate::ClientConfig::poll_interval),
    /// shortened to a quarter of the leader's lease for short leases),
    /// however many watches there are. The poller starts with the first
    /// watch and stops when the last one is dropped. Each read has the
    /// engine's call time limit; a failed read is retried at the next poll.
    ///
    /// The leader is "none" when the record is absent or released, when a
    /// resigning leader has granted leadership to a candidate that has not
    /// taken it yet, or when this client has seen the same record version
    /// for `lease × (1 + drift)` on its own clock (the leader stopped
    /// heartbeating; no clocks of other hosts are compared).
    ///
    /// Does no I/O itself. An invalid name gives a watch whose every call
    /// returns the [`LockError::InvalidInput`].
    pub fn observe_leader(&self, name: impl Into<String>) -> LeaderWatch {
        let name = name.into();
        let poller = self
            .registry
            .shared::<LeaderPoller>(&name, || Arc::new(start(&self.engine, &name)));
        LeaderWatch::new(name, poller)
    }
}

/// Starts the poller of `name` (or, for an invalid name, a poller that has
/// ended with the error).
fn start(engine: &Arc<Engine>, name: &str) -> LeaderPoller {
    let stop = CancellationToken::new();
    if let Err(e) = crate::config::validate_name(name) {
        let (_, rx) = watch::channel(Published {
            ended: Some(e),
            ..Published::default()
        });
        return LeaderPoller { rx, stop };
    }
    let (tx, rx) = watch::channel(Published::default());
    let span = tracing::debug_span!("lynk.observe_leader", lock = %name);
    let task = poll(engine.clone(), name.to_owned(), tx, stop.clone());
    drop(engine.spawn_untracked(tracing::Instrument::instrument(task, span)));
    LeaderPoller { rx, stop }
}

/// The poller's loop: read, conclude, publish, sleep; until stopped.
async fn poll(
    engine: Arc<Engine>,
    name: String,
    tx: watch::Sender<Published>,
    stop: CancellationToken,
) {
    let config = &engine.config;
    // The version seen last (of a record with a leader) and when it was
    // first seen, on this client's clock, after the response that showed it.
    let mut seen: Option<(Version, Instant)> = None;
    let mut failures: u32 = 0;
    let mut runs: u64 = 0;
    let mut lease = config.default_lease;
    let mut next = engine.clock.now();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = engine.clock.sleep_until(next) => {}
        }
        if engine.is_closed() {
            tx.send_modify(|p| p.ended = Some(LockError::ShutDown));
            return;
        }
        let sent = engine.clock.now();
        let by = sent + config.call_timeout_for(config.default_lease);
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            read = engine.read_by(&name, by) => read,
        };
        match read {
            Ok(record) => {
                failures = 0;
                if let Some(r) = &record {
                    lease = r.lease_duration;
                }
                let leader = conclude(&engine, record, &mut seen);
                tx.send_if_modified(|p| {
                    let notify = !p.known || p.failing.is_some() || !same(&p.leader, &leader);
                    p.known = true;
                    p.failing = None;
                    p.leader = leader;
                    notify
                });
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(error = %e, failures, "leader observer's read failed; retrying at the next poll");
                let error = LockError::from_backend(&name, "read", e);
                let report = failures >= REPORT_AFTER_FAILURES || !error.is_retryable();
                tx.send_if_modified(|p| match &mut p.failing {
                    // The run is reported already: keep its last error, quietly.
                    Some((_, last)) => {
                        *last = error;
                        false
                    }
                    None if report => {
                        runs += 1;
                        p.failing = Some((runs, error));
                        true
                    }
                    None => false,
                });
            }
        }
        next = sent + config.poll_interval_for(lease);
    }
}

/// Who leads, from the record just read and what was seen before.
fn conclude(
    engine: &Engine,
    record: Option<LockRecord>,
    seen: &mut Option<(Version, Instant)>,
) -> Option<Leader> {
    let Some(r) = record.filter(|r| !r.released && r.granted_to.is_none()) else {
        *seen = None;
        return None;
    };
    let now = engine.clock.now();
    match seen {
        Some((version, since)) if *version == r.version => {
            let stale_after = Duration::try_from_secs_f64(
                r.lease_duration.as_secs_f64() * (1.0 + engine.config.drift_allowance),
            );
            // A lease too long to represent never goes stale.
            if stale_after.is_ok_and(|d| now.saturating_duration_since(*since) >= d) {
                return None;
            }
        }
        _ => *seen = Some((r.version.clone(), now)),
    }
    Some(Leader::from_record(&r))
}

/// A follower's view of an election: who leads, and a way to wait for the
/// next change. Made by [`LockClient::observe_leader`] or
/// [`Election::observe`](crate::Election::observe).
///
/// All watches of one name in one client share one poller (one read per
/// poll interval); cloning a watch is cheap. Each watch remembers what it
/// last returned, so [`changed`](LeaderWatch::changed) reports each change
/// once per watch.
pub struct LeaderWatch {
    name: String,
    poller: Arc<LeaderPoller>,
    rx: watch::Receiver<Published>,
    /// What `changed` returned last (`None`: nothing yet).
    last: Option<Option<Leader>>,
    /// The last run of failed reads `changed` reported.
    reported_run: u64,
}

impl Clone for LeaderWatch {
    fn clone(&self) -> Self {
        LeaderWatch::new(self.name.clone(), self.poller.clone())
    }
}

impl fmt::Debug for LeaderWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderWatch")
            .field("name", &self.name)
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

impl LeaderWatch {
    fn new(name: String, poller: Arc<LeaderPoller>) -> Self {
        let rx = poller.rx.clone();
        LeaderWatch {
            name,
            poller,
            rx,
            last: None,
            reported_run: 0,
        }
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leader as last read, without waiting: `None` when there is no
    /// leader, and also before the poller's first read has been answered
    /// (see [`is_known`](LeaderWatch::is_known)). While reads fail, the
    /// leader last concluded is kept (see [`error`](LeaderWatch::error)).
    pub fn current(&self) -> Option<Leader> {
        self.rx.borrow().leader.clone()
    }

    /// `true` once the poller's first read has been answered, so that
    /// [`current`](LeaderWatch::current) means what it says.
    pub fn is_known(&self) -> bool {
        self.rx.borrow().known
    }

    /// The store error of the current run of failed reads, once it counts
    /// as persistent (a few reads in a row, or one that retrying cannot
    /// fix); `None` while reads succeed.
    pub fn error(&self) -> Option<LockError> {
        let p = self.rx.borrow();
        p.ended
            .clone()
            .or_else(|| p.failing.as_ref().map(|(_, e)| e.clone()))
    }

    /// Waits for the next change and returns the leader after it (`None`:
    /// no leader). The first call returns the leader as soon as it is known
    /// (at once if the poller has read it already); each later call returns
    /// when the leader's host, term, payload or lease differ from what this
    /// watch returned last, or when there is a leader where there was none
    /// or the other way round. Heartbeats (a new record version alone) are
    /// not changes.
    ///
    /// A change that lasts less than a poll interval may be missed: the
    /// poller sees the record once per poll.
    ///
    /// # Errors
    ///
    /// When reads keep failing (three in a row, or one error retrying
    /// cannot fix, such as a missing table), the store's error is returned
    /// once per run of failures; polling goes on, and the next call waits
    /// for the next change as before. Fix what the error names; nothing
    /// needs to be restarted. [`LockError::ShutDown`] (the client was shut
    /// down) and [`LockError::InvalidInput`] (an invalid name) are final:
    /// every later call returns them again.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a change is consumed only when this returns it.
    pub async fn changed(&mut self) -> Result<Option<Leader>, LockError> {
        loop {
            {
                let p = self.rx.borrow_and_update();
                if let Some(e) = &p.ended {
                    return Err(e.clone());
                }
                if let Some((run, e)) = &p.failing {
                    if *run > self.reported_run {
                        self.reported_run = *run;
                        return Err(e.clone());
                    }
                }
                if p.known && self.last.as_ref().is_none_or(|l| !same(l, &p.leader)) {
                    self.last = Some(p.leader.clone());
                    return Ok(p.leader.clone());
                }
            }
            if self.rx.changed().await.is_err() {
                // The poller ended without saying why: it cannot, unless
                // its task panicked.
                return Err(LockError::Internal {
                    name: self.name.clone(),
                    during: "observing the leader",
                });
            }
        }
    }

    /// This watch as a [`Stream`] of [`changed`](LeaderWatch::changed)'s
    /// results: the leader as first known, then each change, and an `Err`
    /// item for each run of failing reads (the stream goes on after it). The
    /// stream ends after its final error ([`LockError::ShutDown`] or
    /// [`LockError::InvalidInput`]).
    pub fn into_stream(self) -> LeaderStream {
        let stream = futures::stream::unfold(Some(self), |watch| async move {
            let mut watch = watch?;
            let item = watch.changed().await;
            let last = matches!(
                item,
                Err(LockError::ShutDown
                    | LockError::InvalidInput { .. }
                    | LockError::Internal { .. })
            );
            Some((item, (!last).then_some(watch)))
        });
        LeaderStream {
            inner: stream.boxed(),
        }
    }
}

/// The [`Stream`] of a [`LeaderWatch`], from
/// [`LeaderWatch::into_stream`]: items are
/// `Result<Option<Leader>, LockError>`, as [`LeaderWatch::changed`] returns.
pub struct LeaderStream {
    inner: BoxStream<'static, Result<Option<Leader>, LockError>>,
}

impl fmt::Debug for LeaderStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderStream").finish_non_exhaustive()
    }
}

impl Stream for LeaderStream {
    type Item = Result<Option<Leader>, LockError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}
