//! The semaphore's task: one per client and name. It is the only writer of
//! the name's record in this process, so this process's writes never
//! conflict with each other; every write it makes renews all the permits
//! this client holds under the name, claims a free permit for the first
//! local waiter, removes released and abandoned permits, and keeps this
//! process's place in the name's wait queue.
//!
//! Safety follows the mutex's rules, per permit line (see `table.rs`):
//!
//! * a permit is valid from the **send** instant of the write that last
//!   renewed it, for `lease × (1 − d)` on this client's clock; its lost
//!   signal fires `lease × lost_signal_margin` earlier;
//! * another client removes a line only after it has seen the same beat
//!   continuously for `lease × (1 + d) + lock_delay` on its own clock;
//! * every write is conditioned on the version it was planned from, and
//!   carries a fresh version that becomes the beat of the lines it renewed,
//!   so a write whose response was lost is recognised later by those beats;
//! * a permit's token is the record's token after the write that claimed
//!   it, and each write claims at most one permit (the record's token goes
//!   up by one per claim), so permit tokens only go up.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::permit::PermitShared;
use super::table::{HeldLine, ParseError, PermitTable, WaitLine};
use crate::engine::{unless_panicked, Engine};
use crate::{
    BackendError, BackendErrorKind, Condition, FencingToken, LockError, LockRecord, LostReason,
    QueueUpdate, TokenUpdate, Version, WriteError, WriteRequest,
};

/// What a permit handle asks of the task.
pub(crate) enum Command {
    Acquire(Waiter),
    Release {
        id: String,
        reply: Option<oneshot::Sender<Result<(), LockError>>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A local acquire waiting for a permit.
pub(crate) struct Waiter {
    pub(crate) permits: u32,
    pub(crate) lease: Duration,
    pub(crate) try_only: bool,
    pub(crate) reply: oneshot::Sender<Result<Option<Arc<PermitShared>>, LockError>>,
}

/// The per-client, per-name handle to the task.
#[derive(Debug)]
pub(crate) struct SemaphoreCore {
    tx: mpsc::UnboundedSender<Command>,
}

impl SemaphoreCore {
    /// Starts the task for `name` on the engine's runtime.
    pub(crate) fn start(engine: Arc<Engine>, name: String) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = Task::new(engine.clone(), name, rx);
        // Not one of the engine's tracked tasks: it lives as long as a
        // permit or a waiter of this name, and the client's shutdown stops
        // it before the engine's.
        drop(engine.spawn_untracked(task.run()));
        Arc::new(SemaphoreCore { tx })
    }

    /// Sends `command`; `false` if the task is gone.
    pub(crate) fn send(&self, command: Command) -> bool {
        self.tx.send(command).is_ok()
    }

    /// Fails this name's waiters with [`LockError::ShutDown`], fires the
    /// lost signal of its permits and releases them; returns once the
    /// releases are written or have run out of time.
    pub(crate) async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown { reply }) {
            let _ = done.await;
        }
    }
}

struct Holder {
    shared: Arc<PermitShared>,
    /// The beat of our line as we last wrote or saw it.
    beat: String,
    valid_from: Instant,
    lost: bool,
    releasing: Vec<oneshot::Sender<Result<(), LockError>>>,
    release_started: Option<Instant>,
    wants_release: bool,
}

/// The head waiter's claim: the line id it will hold once a write lands.
struct Claim {
    id: String,
}

struct Seen {
    record: Option<LockRecord>,
}

enum Reading {
    Table(PermitTable),
    /// A record that is not a permit table (a mutex's, the original
    /// client's, a malformed table): free only once released or stale.
    Foreign {
        free: bool,
    },
}

struct Plan {
    request: WriteRequest,
}

struct Task {
    engine: Arc<Engine>,
    name: String,
    rx: mpsc::UnboundedReceiver<Command>,
    rx_open: bool,
    seen: Option<Seen>,
    /// Per line id: the beat last seen and when it was first seen.
    beats: HashMap<String, (String, Instant)>,
    /// A foreign record's version and when it was first seen.
    foreign_since: Option<(Version, Instant)>,
    holders: HashMap<String, Holder>,
    waiters: VecDeque<Waiter>,
    claim: Option<Claim>,
    /// Ids of claims abandoned while their write's outcome was unknown:
    /// their lines, if any, are ours to remove.
    orphans: Vec<String>,
    /// Fresh for try-only waiters: bumped at every store answer.
    answers: u64,
    /// The answer count when the try-only head arrived: it gets its "no"
    /// once a later store answer shows no permit free.
    try_asked_at: Option<u64>,
    /// Our line in the wait queue: its id, beat and when it was last renewed.
    queue_id: String,
    queued: Option<(String, Instant)>,
    /// Our writes whose outcome is not known yet, with their send instants.
    pending: Vec<(Version, Instant)>,
    next_poll: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
    last_error: Option<BackendError>,
    shutdown: Vec<oneshot::Sender<()>>,
    closing: bool,
}

impl Task {
    fn new(engine: Arc<Engine>, name: String, rx: mpsc::UnboundedReceiver<Command>) -> Self {
        Task {
            engine,
            name,
            rx,
            rx_open: true,
            seen: None,
            beats: HashMap::new(),
            foreign_since: None,
            holders: HashMap::new(),
            waiters: VecDeque::new(),
            claim: None,
            orphans: Vec::new(),
            answers: 0,
            try_asked_at: None,
            queue_id: Version::random().as_str().to_owned(),
            queued: None,
            pending: Vec::new(),
            next_poll: None,
            retry_at: None,
            failures: 0,
            last_error: None,
            shutdown: Vec::new(),
            closing: false,
        }
    }

    fn now(&self) -> Instant {
        self.engine.clock.now()
    }

    async fn run(mut self) {
        loop {
            while let Ok(cmd) = self.rx.try_recv() {
                self.on_command(cmd);
            }
            let now = self.now();
            self.expire(now);
            self.answer_waiters_without_store();
            if self.finished() {
                for reply in self.shutdown.drain(..) {
                    let _ = reply.send(());
                }
                if !self.rx_open || self.closing {
                    return;
                }
            }
            match self.next_step(now) {
                Step::Read => self.read().await,
                Step::Write(plan) => self.write(*plan).await,
                Step::Sleep(until) => {
                    let sleep = until.map(|t| self.engine.clock.sleep_until(t));
                    tokio::select! {
                        cmd = self.rx.recv(), if self.rx_open => match cmd {
                            Some(cmd) => self.on_command(cmd),
                            None => self.rx_open = false,
                        },
                        _ = async { match sleep { Some(s) => s.await, None => std::future::pending().await } } => {}
                    }
                }
            }
        }
    }

    /// Nothing held, nothing waiting, nothing to clean up.
    fn finished(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty() && self.queued.is_none()
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Acquire(waiter) => {
                if self.closing || self.engine.is_closed() {
                    let _ = waiter.reply.send(Err(LockError::ShutDown));
                    return;
                }
                if waiter.try_only && !self.waiters.is_empty() {
                    let _ = waiter.reply.send(Ok(None));
                    return;
                }
                if waiter.try_only {
                    self.try_asked_at = Some(self.answers);
                }
                self.waiters.push_back(waiter);
                if self.next_poll.is_none() {
                    self.next_poll = Some(self.now());
                }
            }
            Command::Release { id, reply } => match self.holders.get_mut(&id) {
                Some(h) => {
                    h.wants_release = true;
                    if h.release_started.is_none() {
                        h.release_started = Some(self.engine.clock.now());
                    }
                    if let Some(r) = reply {
                        h.releasing.push(r);
                    }
                }
                None => {
                    if let Some(r) = reply {
                        let _ = r.send(Ok(()));
                    }
                }
            },
            Command::Shutdown { reply } => {
                self.closing = true;
                self.shutdown.push(reply);
                for w in self.waiters.drain(..) {
                    let _ = w.reply.send(Err(LockError::ShutDown));
                }
                self.abandon_claim();
                for h in self.holders.values_mut() {
                    h.shared.mark_lost(LostReason::ClientShutDown);
                    h.wants_release = true;
                    h.release_started.get_or_insert(self.engine.clock.now());
                }
            }
        }
    }

    /// Fires the lost signal of permits whose renewals came too late, and
    /// gives up releases past their time limit.
    fn expire(&mut self, now: Instant) {
        let config = &self.engine.config;
        let mut gone = Vec::new();
        for (id, h) in &mut self.holders {
            if !h.lost && now >= h.valid_from + config.signal_after(h.shared.lease) {
                h.lost = true;
                h.shared.mark_lost(LostReason::HeartbeatsFailed {
                    last_error: self.last_error.clone(),
                });
            }
            let past_safe = now >= h.valid_from + config.safe_for(h.shared.lease);
            let release_over = h
                .release_started
                .is_some_and(|t| now >= t + config.release_timeout);
            if past_safe || (h.wants_release && release_over) {
                // Its line will go stale on its own; others remove it.
                let replies: Vec<_> = h.releasing.drain(..).collect();
                for r in replies {
                    let _ = r.send(Err(release_error(&self.name, &self.last_error, h)));
                }
                if past_safe || (self.closing && release_over) {
                    gone.push(id.clone());
                }
            }
        }
        for id in gone {
            self.holders.remove(&id);
        }
    }
}

fn release_error(name: &str, last_error: &Option<BackendError>, h: &Holder) -> LockError {
    if let Some(reason) = h
        .shared
        .lost_reason()
        .filter(|r| *r != LostReason::ClientShutDown)
    {
        return LockError::Lost {
            name: name.to_owned(),
            reason,
        };
    }
    match last_error {
        Some(e) => LockError::from_backend(name, "release", e.clone()),
        None => LockError::OutcomeUnknown {
            name: name.to_owned(),
            operation: "release",
            source: BackendError::new(
                BackendErrorKind::OutcomeUnknown,
                "the release was not confirmed in time; the permit's lease expires on its own",
            ),
        },
    }
}

impl Task {
    /// Drops waiters that gave up, answers try-only waiters that cannot be
    /// served, and fails waiters whose permit count differs from the stored.
    fn answer_waiters_without_store(&mut self) {
        while let Some(head) = self.waiters.front() {
            if head.reply.is_closed() {
                self.waiters.pop_front();
                self.abandon_claim();
                self.try_asked_at = None;
                continue;
            }
            break;
        }
    }

    fn reading(&self, now: Instant) -> Option<Reading> {
        let seen = self.seen.as_ref()?;
        Some(match &seen.record {
            None => Reading::Table(PermitTable::empty(self.head_permits().unwrap_or(1))),
            Some(record) => match PermitTable::parse(record.payload.as_deref()) {
                Ok(table) => Reading::Table(table),
                Err(ParseError::NotATable) | Err(ParseError::Malformed(_)) => {
                    let stale = self.foreign_since.as_ref().is_some_and(|(v, since)| {
                        *v == record.version
                            && self
                                .engine
                                .config
                                .takeover_after(record.lease_duration)
                                .is_some_and(|after| now >= *since + after)
                    });
                    Reading::Foreign {
                        free: (record.released && record.granted_to.is_none()) || stale,
                    }
                }
            },
        })
    }

    /// Forgets the head's claim; if a write carrying it may still apply
    /// (or did), its line is ours to remove (finding 8).
    fn abandon_claim(&mut self) {
        if let Some(claim) = self.claim.take() {
            if !self.pending.is_empty() {
                self.orphans.push(claim.id);
            }
        }
    }

    fn head_permits(&self) -> Option<u32> {
        self.waiters.front().map(|w| w.permits)
    }

    fn line_stale(&self, id: &str, beat: &str, lease: Duration, now: Instant) -> bool {
        let Some((seen_beat, since)) = self.beats.get(id) else {
            return false;
        };
        seen_beat == beat
            && self
                .engine
                .config
                .takeover_after(lease)
                .is_some_and(|after| now >= *since + after)
    }

    fn next_step(&mut self, now: Instant) -> Step {
        if let Some(at) = self.retry_at {
            if now < at {
                return Step::Sleep(Some(at.min(self.next_timer(now).unwrap_or(at))));
            }
            self.retry_at = None;
        }
        let Some(reading) = self.reading(now) else {
            if self.finished() && !self.closing {
                return Step::Sleep(None);
            }
            return Step::Read;
        };
        // A head waiter asking for another count than the stored one.
        if let (Reading::Table(t), Some(head)) = (&reading, self.waiters.front()) {
            if self.seen.as_ref().is_some_and(|s| s.record.is_some()) && head.permits != t.permits {
                let head = self.waiters.pop_front().expect("head exists");
                self.abandon_claim();
                let _ = head.reply.send(Err(LockError::invalid(
                    "permits",
                    format!(
                        "semaphore {:?} has {} permits in the store, but this handle asks for {}; use the same count everywhere (to change it, stop every user and delete the record)",
                        self.name, t.permits, head.permits
                    ),
                )));
                return self.next_step(now);
            }
        }
        if let Some(plan) = self.plan(&reading, now) {
            return Step::Write(Box::new(plan));
        }
        // Nothing to write: a try-only head that has seen a fresh answer
        // gets its "no".
        if let Some(head) = self.waiters.front() {
            if head.try_only {
                let asked_at = self.try_asked_at.unwrap_or(0);
                if self.answers > asked_at {
                    let head = self.waiters.pop_front().expect("head exists");
                    self.abandon_claim();
                    self.try_asked_at = None;
                    let _ = head.reply.send(Ok(None));
                    return self.next_step(now);
                }
                return Step::Read;
            }
            let poll = self.next_poll.unwrap_or(now);
            if now >= poll {
                return Step::Read;
            }
        }
        Step::Sleep(self.next_timer(now))
    }

    /// The next instant something is due without a command.
    fn next_timer(&self, now: Instant) -> Option<Instant> {
        let config = &self.engine.config;
        let mut next: Option<Instant> = None;
        // Only instants still ahead: one already past is either acted on
        // now or waits for a store answer, and sleeping until it would spin.
        let mut at = |t: Instant| {
            if t > now {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for h in self.holders.values() {
            if !h.lost {
                at(h.valid_from + config.heartbeat_every(h.shared.lease));
                at(h.valid_from + config.signal_after(h.shared.lease));
            }
            at(h.valid_from + config.safe_for(h.shared.lease));
            if let Some(t) = h.release_started {
                at(t + config.release_timeout);
            }
        }
        if let (Some((_, renewed)), Some(w)) = (&self.queued, self.waiters.front()) {
            let line_lease = self
                .seen
                .as_ref()
                .and_then(|s| s.record.as_ref())
                .and_then(|r| PermitTable::parse(r.payload.as_deref()).ok())
                .and_then(|t| {
                    t.waiting
                        .iter()
                        .find(|l| l.id == self.queue_id)
                        .map(|l| l.lease)
                })
                .unwrap_or(w.lease);
            at(*renewed + config.heartbeat_every(line_lease.min(w.lease)));
        }
        if !self.waiters.is_empty() {
            if let Some(p) = self.next_poll {
                at(p);
            }
        }
        if !self.holders.is_empty() || !self.waiters.is_empty() {
            // Abandoned lines become removable.
            if let Some(Seen {
                record: Some(record),
            }) = &self.seen
            {
                if let Ok(table) = PermitTable::parse(record.payload.as_deref()) {
                    for (id, beat, lease) in table
                        .held
                        .iter()
                        .map(|h| (&h.id, &h.beat, h.lease))
                        .chain(table.waiting.iter().map(|w| (&w.id, &w.beat, w.lease)))
                    {
                        if let (Some((b, since)), Some(after)) =
                            (self.beats.get(id), config.takeover_after(lease))
                        {
                            if b == beat && *since + after > now {
                                at(*since + after);
                            }
                        }
                    }
                } else if let (Some((_, since)), Some(after)) = (
                    &self.foreign_since,
                    config.takeover_after(record.lease_duration),
                ) {
                    if *since + after > now {
                        at(*since + after);
                    }
                }
            }
        }
        next
    }

    /// The write to make now, if any.
    fn plan(&mut self, reading: &Reading, now: Instant) -> Option<Plan> {
        let config = &self.engine.config;
        let record = self.seen.as_ref().and_then(|s| s.record.clone());
        let (mut table, condition) = match reading {
            Reading::Foreign { free: false } => return None,
            Reading::Foreign { free: true } => {
                let record = record.as_ref()?;
                (
                    PermitTable::empty(self.head_permits()?),
                    Condition::VersionIs(record.version.clone()),
                )
            }
            Reading::Table(t) => match &record {
                Some(r) => (t.clone(), Condition::VersionIs(r.version.clone())),
                None => {
                    // Nothing stored: only worth creating for a waiter.
                    (PermitTable::empty(self.head_permits()?), Condition::Absent)
                }
            },
        };
        let base_token = record.as_ref().and_then(|r| r.fencing_token);
        let version = Version::random();
        let beat = version.as_str().to_owned();
        let mut changed = false;

        // Remove our released or lost lines, and lines of others that stood
        // still for their takeover time.
        let before = table.held.len();
        let holders = &self.holders;
        let stale: Vec<String> = table
            .held
            .iter()
            .filter(|l| !holders.contains_key(&l.id))
            .filter(|l| self.line_stale(&l.id, &l.beat, l.lease, now))
            .map(|l| l.id.clone())
            .collect();
        let orphans = &self.orphans;
        table.held.retain(|l| match holders.get(&l.id) {
            Some(h) => !(h.lost || h.wants_release),
            None => !stale.contains(&l.id) && !orphans.contains(&l.id),
        });
        changed |= table.held.len() != before;
        let before = table.waiting.len();
        let stale_waiting: Vec<String> = table
            .waiting
            .iter()
            .filter(|w| w.id != self.queue_id)
            .filter(|w| self.line_stale(&w.id, &w.beat, w.lease, now))
            .map(|w| w.id.clone())
            .collect();
        table.waiting.retain(|w| !stale_waiting.contains(&w.id));
        changed |= table.waiting.len() != before;

        // Renew our live lines if one is due.
        let mut renew = false;
        for h in self.holders.values() {
            if !h.lost
                && !h.wants_release
                && now >= h.valid_from + config.heartbeat_every(h.shared.lease)
            {
                renew = true;
            }
        }

        // Claim a free permit for the first local waiter, if no process
        // queued before us is owed it.
        let mut token = TokenUpdate::Keep;
        let head = self.waiters.front().filter(|_| !self.closing);
        if let Some(head) = head {
            let ours = table.waiting.iter().position(|w| w.id == self.queue_id);
            let ahead = ours.unwrap_or(table.waiting.len());
            let free = table.free() as usize;
            if head.permits == table.permits && free > ahead {
                let id = match &self.claim {
                    Some(c) => c.id.clone(),
                    None => {
                        let id = Version::random().as_str().to_owned();
                        self.claim = Some(Claim { id: id.clone() });
                        id
                    }
                };
                let next = match base_token {
                    Some(t) if t.get() == u64::MAX => {
                        // No higher token exists (finding 5): refuse.
                        let head = self.waiters.pop_front().expect("head exists");
                        self.abandon_claim();
                        let _ = head.reply.send(Err(LockError::TokenExhausted {
                            name: self.name.clone(),
                        }));
                        return None;
                    }
                    Some(t) => FencingToken::new(t.get() + 1),
                    None => FencingToken::new(self.engine.initial_token(&self.name)),
                };
                table.held.push(HeldLine {
                    id: id.clone(),
                    token: next,
                    beat: beat.clone(),
                    lease: head.lease,
                    host: config.host_identifier.clone(),
                });
                token = TokenUpdate::Next {
                    initial: next.get(),
                };
                changed = true;
                // Our place in the queue: served. Go to the back if more
                // local waiters remain, so other processes get their turn.
                table.waiting.retain(|w| w.id != self.queue_id);
                if self.waiters.len() > 1 {
                    table.waiting.push(self.wait_line(&beat));
                }
            } else if !head.try_only && ours.is_none() {
                table.waiting.push(self.wait_line(&beat));
                changed = true;
            } else if let (Some(i), Some((_, renewed))) = (ours, &self.queued) {
                // Due at the pace of the lease the line carries (others
                // judge it by that one), and then made the head's.
                let line = &mut table.waiting[i];
                if now >= *renewed + config.heartbeat_every(line.lease.min(head.lease)) {
                    line.beat = beat.clone();
                    line.lease = head.lease;
                    changed = true;
                }
            }
        } else if let Some(i) = table.waiting.iter().position(|w| w.id == self.queue_id) {
            table.waiting.remove(i);
            changed = true;
        }

        if !(changed || renew) {
            return None;
        }
        if record.is_none() && table.held.is_empty() && table.waiting.is_empty() {
            return None;
        }
        for line in &mut table.held {
            if let Some(h) = self.holders.get(&line.id) {
                if !h.lost && !h.wants_release {
                    line.beat = beat.clone();
                }
            }
        }
        let fallback = self
            .waiters
            .front()
            .map(|w| w.lease)
            .unwrap_or(config.default_lease);
        let request = WriteRequest {
            key: self.name.clone(),
            condition,
            version,
            lease_duration: table.longest_lease(fallback),
            host: config.host_identifier.clone(),
            token,
            payload: Some(table.encode().into()),
            released: table.held.is_empty(),
            queue: QueueUpdate::Keep,
            granted_to: None,
            holder_detail: Some(self.engine.holder_detail.clone()),
        };
        Some(Plan { request })
    }

    fn wait_line(&self, beat: &str) -> WaitLine {
        WaitLine {
            id: self.queue_id.clone(),
            beat: beat.to_owned(),
            lease: self
                .waiters
                .front()
                .map(|w| w.lease)
                .unwrap_or(self.engine.config.default_lease),
            host: self.engine.config.host_identifier.clone(),
        }
    }

    fn call_deadline(&self) -> Instant {
        let lease = self
            .holders
            .values()
            .map(|h| h.shared.lease)
            .chain(self.waiters.front().map(|w| w.lease))
            .min()
            .unwrap_or(self.engine.config.default_lease);
        let config = &self.engine.config;
        let now = self.now();
        // A call must not outlast a live permit's lost-signal instant: the
        // signal is fired between calls (finding 1 of the review).
        let signal = self
            .holders
            .values()
            .filter(|h| !h.lost)
            .map(|h| h.valid_from + config.signal_after(h.shared.lease))
            .filter(|t| *t > now)
            .min();
        let limit = now + config.call_timeout_for(lease);
        signal.map_or(limit, |t| t.min(limit))
    }

    async fn read(&mut self) {
        let deadline = self.call_deadline();
        let read = self.engine.read_by(&self.name, deadline);
        let out = unless_panicked(read, Err).await;
        let at = self.now();
        self.schedule_poll(at);
        match out {
            Ok(record) => {
                self.failures = 0;
                self.observe(record, at);
            }
            Err(e) => self.failed(e, at),
        }
    }

    // `unless_panicked`'s closure makes the write's `Result`, whose error
    // (`WriteError`, with the record a failed condition returns) is large.
    #[allow(clippy::result_large_err)]
    async fn write(&mut self, plan: Plan) {
        let sent = self.now();
        let version = plan.request.version.clone();
        self.pending.push((version.clone(), sent));
        let deadline = self.call_deadline();
        let write = self.engine.write_by(plan.request, deadline);
        let out = unless_panicked(write, |e| Err(WriteError::Backend(e))).await;
        let at = self.now();
        match out {
            Ok(record) => {
                self.failures = 0;
                self.observe(Some(record), at);
                // Every older write of ours was planned from a version that
                // is gone now: none of them can apply any more, and the
                // lines of abandoned claims were removed by this one.
                self.pending.clear();
                self.orphans.clear();
                self.schedule_poll(at);
            }
            Err(WriteError::ConditionFailed { current }) => {
                // Observe with this write still pending: a store client that
                // resent it shows our own version (finding 6).
                let ours = current.as_ref().is_some_and(|r| r.version == version);
                match current {
                    Some(record) => self.observe(Some(record), at),
                    None => self.seen = None,
                }
                if ours {
                    self.failures = 0;
                    self.pending.clear();
                    self.schedule_poll(at);
                    return;
                }
                self.pending.retain(|(v, _)| *v != version);
                // Someone else wrote meanwhile; plan again at once, with a
                // small backoff if that keeps happening.
                self.failures += 1;
                if self.failures > 2 {
                    self.back_off(at);
                }
            }
            Err(WriteError::Backend(e)) => {
                if e.kind() != BackendErrorKind::OutcomeUnknown {
                    self.pending.retain(|(v, _)| *v != version);
                }
                self.failed(e, at);
            }
        }
    }

    fn schedule_poll(&mut self, at: Instant) {
        let lease = self
            .waiters
            .front()
            .map(|w| w.lease)
            .unwrap_or(self.engine.config.default_lease);
        let every = self.engine.config.poll_interval_for(lease);
        self.next_poll = Some(at + self.engine.jitter(every));
    }

    fn back_off(&mut self, at: Instant) {
        let config = &self.engine.config;
        let exp = self.failures.min(16);
        let backoff = config
            .initial_backoff
            .saturating_mul(1u32 << exp.min(10))
            .min(config.max_backoff);
        self.retry_at = Some(at + self.engine.jitter(backoff));
    }

    fn failed(&mut self, error: BackendError, at: Instant) {
        self.failures += 1;
        // The record may have changed, or our write may have applied: read
        // before the next write.
        self.seen = None;
        // A try-only head gets the error: it asked "now", not "eventually".
        if self.waiters.front().is_some_and(|w| w.try_only) {
            let head = self.waiters.pop_front().expect("head exists");
            self.abandon_claim();
            self.try_asked_at = None;
            let _ = head.reply.send(Err(LockError::from_backend(
                &self.name,
                "acquire",
                error.clone(),
            )));
        }
        if !error.is_retryable() {
            for w in self.waiters.drain(..) {
                let _ = w.reply.send(Err(LockError::from_backend(
                    &self.name,
                    "acquire",
                    error.clone(),
                )));
            }
            self.abandon_claim();
        }
        self.last_error = Some(error);
        self.back_off(at);
    }

    /// Takes in the record as the store showed it at `at`.
    fn observe(&mut self, record: Option<LockRecord>, at: Instant) {
        self.answers += 1;
        self.seen = Some(Seen {
            record: record.clone(),
        });
        let config = self.engine.config.clone();
        let sent_of = |pending: &[(Version, Instant)], beat: &str| {
            pending
                .iter()
                .find(|(v, _)| v.as_str() == beat)
                .map(|(_, s)| *s)
        };
        let table = record
            .as_ref()
            .and_then(|r| PermitTable::parse(r.payload.as_deref()).ok());
        match (&record, &table) {
            (Some(r), None) => {
                if self.foreign_since.as_ref().map(|(v, _)| v) != Some(&r.version) {
                    self.foreign_since = Some((r.version.clone(), at));
                }
                self.beats.clear();
            }
            _ => self.foreign_since = None,
        }
        let empty = PermitTable::empty(0);
        let t = table.as_ref().unwrap_or(&empty);
        // Beats: when each line's current beat was first seen.
        let mut beats = HashMap::new();
        for (id, beat) in t
            .held
            .iter()
            .map(|l| (&l.id, &l.beat))
            .chain(t.waiting.iter().map(|w| (&w.id, &w.beat)))
        {
            let since = match self.beats.get(id) {
                Some((b, since)) if b == beat => *since,
                _ => at,
            };
            beats.insert(id.clone(), (beat.clone(), since));
        }
        self.beats = beats;

        // Our permits.
        let holder_host = record.as_ref().map(|r| r.host.clone());
        let mut gone = Vec::new();
        for (id, h) in &mut self.holders {
            match t.held.iter().find(|l| &l.id == id) {
                Some(line) => {
                    if line.beat != h.beat {
                        if let Some(sent) = sent_of(&self.pending, &line.beat) {
                            h.beat = line.beat.clone();
                            h.valid_from = h.valid_from.max(self.engine.lease_start(sent));
                            h.shared.renewed(h.valid_from);
                        }
                    }
                }
                None => {
                    // Our line is gone: released by our own write, or taken
                    // over (only possible once we could no longer be sure).
                    let still_ours = at < h.valid_from + config.safe_for(h.shared.lease);
                    if h.wants_release && (still_ours || h.lost) {
                        for r in h.releasing.drain(..) {
                            let _ = r.send(
                                if h.lost
                                    && h.shared.lost_reason() != Some(LostReason::ClientShutDown)
                                {
                                    Err(LockError::Lost {
                                        name: self.name.clone(),
                                        reason: h.shared.lost_reason().unwrap_or(
                                            LostReason::HeartbeatsFailed { last_error: None },
                                        ),
                                    })
                                } else {
                                    Ok(())
                                },
                            );
                        }
                    } else {
                        h.shared.mark_lost(LostReason::Stolen {
                            by: holder_host.clone(),
                        });
                        for r in h.releasing.drain(..) {
                            let _ = r.send(Err(LockError::Lost {
                                name: self.name.clone(),
                                reason: LostReason::Stolen {
                                    by: holder_host.clone(),
                                },
                            }));
                        }
                    }
                    gone.push(id.clone());
                }
            }
        }
        for id in gone {
            self.holders.remove(&id);
        }

        // Our queue line.
        match t.waiting.iter().find(|w| w.id == self.queue_id) {
            Some(w) => {
                let renewed = sent_of(&self.pending, &w.beat);
                match (&mut self.queued, renewed) {
                    (Some((beat, at_)), Some(sent)) if *beat != w.beat => {
                        *beat = w.beat.clone();
                        *at_ = sent;
                    }
                    (None, Some(sent)) => self.queued = Some((w.beat.clone(), sent)),
                    (None, None) => self.queued = Some((w.beat.clone(), at)),
                    _ => {}
                }
            }
            None => self.queued = None,
        }

        // The head waiter's claim.
        if let Some(claim) = &self.claim {
            if let Some(line) = t.held.iter().find(|l| l.id == claim.id) {
                let sent = sent_of(&self.pending, &line.beat);
                let id = claim.id.clone();
                self.claim = None;
                self.try_asked_at = None;
                let Some(sent) = sent else {
                    // A line of ours whose write we no longer know: do not
                    // trust its timing; remove it and claim afresh.
                    self.orphans.push(id);
                    return;
                };
                let valid_from = self.engine.lease_start(sent);
                let lease = line.lease;
                // Resolved too late to be of use (finding 4): give the line
                // back and claim afresh for the same waiter.
                let fresh = at < valid_from + config.signal_after(lease);
                let waiter = if fresh {
                    self.waiters.pop_front()
                } else {
                    None
                };
                let shared = Arc::new(PermitShared {
                    name: self.name.clone(),
                    id: id.clone(),
                    token: line.token,
                    lease,
                    valid_from: Mutex::new(valid_from),
                    safe_for: config.safe_for(lease),
                    lost: CancellationToken::new(),
                    reason: Mutex::new(None),
                });
                let mut holder = Holder {
                    shared: shared.clone(),
                    beat: line.beat.clone(),
                    valid_from,
                    lost: false,
                    releasing: Vec::new(),
                    release_started: None,
                    wants_release: false,
                };
                let delivered = match waiter {
                    Some(w) => w.reply.send(Ok(Some(shared))).is_ok(),
                    None => false,
                };
                if !delivered {
                    holder.wants_release = true;
                    holder.release_started = Some(at);
                }
                self.holders.insert(id, holder);
            }
        }
    }
}

enum Step {
    Read,
    Write(Box<Plan>),
    Sleep(Option<Instant>),
}
