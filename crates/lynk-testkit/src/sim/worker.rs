//! One lock handle of a simulated host: a task that acquires (blocking,
//! with a timeout, or `try_acquire`) through the run's primitive (a lock, an
//! election, a semaphore or a multi-lock), holds while writing to the oracle
//! resource, and releases; or pauses or crashes its host while it holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lynk_core::{Clock, Leadership, LockError, LockGuard, MultiGuard, Permit, Semaphore};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use super::host::{Host, Incarnation};
use super::world::{Holding, Safe, Wait, World, Zombie};
use super::{SimPrimitive, LOCK};

/// What one granted attempt holds.
enum Held {
    Guard(LockGuard),
    Leader(Leadership),
    Permit(Arc<Permit>),
    /// With the names' indices (into `World::names`), in the guard's order.
    Multi(MultiGuard, Vec<usize>),
}

impl Held {
    /// The holder's own accounting: every lease it holds is not lost and
    /// before its safe deadline (for a multi-lock, all of them).
    fn holds(&self, now: Instant) -> bool {
        match self {
            Held::Guard(g) => !g.is_lost() && now < g.safe_deadline(),
            Held::Leader(l) => !l.is_lost() && now < l.safe_deadline(),
            Held::Permit(p) => !p.is_lost() && now < p.safe_deadline(),
            Held::Multi(m, _) => !m.is_lost() && m.guards().iter().all(|g| now < g.safe_deadline()),
        }
    }

    /// (name, token) of each lease, for the oracle resources. A permit
    /// writes to none: its holders hold together, so no resource can refuse
    /// a lower token.
    fn writes(&self) -> Vec<(usize, u64)> {
        match self {
            Held::Guard(g) => vec![(0, g.fencing_token().get())],
            Held::Leader(l) => vec![(0, l.term().get())],
            Held::Permit(_) => Vec::new(),
            Held::Multi(m, names) => names
                .iter()
                .zip(m.guards())
                .map(|(&n, g)| (n, g.fencing_token().get()))
                .collect(),
        }
    }

    fn zombie(self) -> Zombie {
        match self {
            Held::Guard(g) => Box::new(g),
            Held::Leader(l) => Box::new(l),
            Held::Permit(p) => Box::new(p),
            Held::Multi(m, _) => Box::new(m),
        }
    }

    async fn release(self) -> Result<(), LockError> {
        match self {
            Held::Guard(g) => g.release().await,
            Held::Leader(l) => l.resign().await,
            Held::Permit(p) => match Arc::try_unwrap(p) {
                Ok(p) => p.release().await,
                Err(_) => unreachable!("only the holder keeps its permit"),
            },
            Held::Multi(m, _) => m.release().await,
        }
    }
}

/// One handle's context.
struct Handle {
    world: Arc<World>,
    host: Arc<Host>,
    inc: Arc<Incarnation>,
    index: usize,
    /// The lease this handle asks for.
    lease: Duration,
    rng: StdRng,
    /// The semaphore handle, for a semaphore run (one per handle and
    /// incarnation, as an application keeps one).
    semaphore: Option<Semaphore>,
}

pub(super) async fn run(
    world: Arc<World>,
    host: Arc<Host>,
    inc: Arc<Incarnation>,
    index: usize,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let config = &world.config;
    let lease = config
        .lease
        .mul_f64(1.0 + config.lease_spread.max(0.0) * rng.gen::<f64>());
    let semaphore = match config.primitive {
        SimPrimitive::Semaphore { permits } => Some(
            inc.client
                .semaphore(world.names[0].clone(), permits)
                .with_lease(lease),
        ),
        _ => None,
    };
    let mut h = Handle {
        world: world.clone(),
        host,
        inc,
        index,
        lease,
        rng,
        semaphore,
    };
    let mut attempt = 0u64;
    loop {
        if h.inc.or_crash(h.host.link.awake()).await.is_none() || world.now() >= world.end {
            return;
        }
        attempt += 1;
        let payload = Bytes::from(format!(
            "host-{}.{}/handle-{index}/attempt-{attempt}",
            h.host.index, h.inc.number
        ));
        let started = world.now();
        let Some(held) = h.attempt(&payload).await else {
            return;
        };
        if let Some(held) = held {
            if !h.hold(held, &payload, started).await {
                return;
            }
        }
        // Think time between attempts.
        let think = config.lease.mul_f64(h.rng.gen_range(0.0..0.5));
        if h.inc.or_crash(h.host.clock.sleep(think)).await.is_none() {
            return;
        }
    }
}

impl Handle {
    /// One attempt to acquire: `None` if the host crashed meanwhile, else
    /// what was granted, if anything.
    async fn attempt(&mut self, payload: &Bytes) -> Option<Option<Held>> {
        let world = self.world.clone();
        let config = &world.config;
        let roll: f64 = self.rng.gen();
        if roll < config.try_acquire_probability {
            let inc = self.inc.clone();
            let answer = inc.or_crash(self.try_once(payload)).await?;
            let mut h = world.history();
            return Some(match answer {
                Ok(Some(g)) => {
                    h.counts.try_granted += 1;
                    Some(g)
                }
                Ok(None) => {
                    h.counts.try_busy += 1;
                    None
                }
                Err(_) => {
                    h.counts.try_errors += 1;
                    None
                }
            });
        }
        let since = world.now();
        let clock = self.host.clock.clone();
        let run_end = clock.now() + (world.end - since).mul_f64(self.host.rate);
        let timed = roll < config.try_acquire_probability + config.acquire_timeout_probability;
        let deadline = if timed {
            (clock.now() + self.lease.mul_f64(self.rng.gen_range(0.2..2.0))).min(run_end)
        } else {
            run_end
        };
        let wait = {
            let mut h = world.history();
            h.waits.push(Wait {
                host: self.host.index,
                since,
                until: None,
            });
            h.waits.len() - 1
        };
        let inc = self.inc.clone();
        let answer = inc.or_crash(self.acquire_until(payload, deadline)).await;
        let ended = world.now();
        let (granted, failed) = {
            let mut h = world.history();
            match answer {
                None => {
                    h.waits[wait].until = Some(ended);
                    return None;
                }
                Some(Ok(g)) => {
                    h.waits[wait].until = Some(ended);
                    (Some(g), false)
                }
                // The run is over; the wait stays open.
                Some(Err(LockError::NotGranted { .. })) if deadline == run_end => (None, false),
                Some(Err(LockError::NotGranted { .. })) => {
                    h.waits[wait].until = Some(ended);
                    h.counts.acquire_timeouts += 1;
                    (None, false)
                }
                Some(Err(e)) => {
                    // An availability problem, not a safety violation: count
                    // it and try again after a while, as an application would.
                    tracing::debug!(host = self.host.index, error = %e, "simulated acquire failed");
                    h.waits[wait].until = Some(ended);
                    h.counts.acquire_errors += 1;
                    (None, true)
                }
            }
        };
        if failed {
            self.inc.or_crash(clock.sleep(config.lease / 10)).await?;
        }
        Some(granted)
    }

    /// The names a multi-lock attempt takes: 2 to `names` of the pool (1
    /// if `names` is 1), drawn at random, in index order.
    fn draw_names(&mut self, names: usize, pool: usize) -> Vec<usize> {
        let pool = pool.max(1);
        let most = names.clamp(1, pool);
        let k = self.rng.gen_range(most.min(2)..=most);
        let mut chosen = sample(&mut self.rng, pool, k).into_vec();
        chosen.sort_unstable();
        chosen
    }

    fn lock(&self, name: &str, payload: &Bytes) -> lynk_core::Lock {
        self.inc
            .client
            .create_lock(name)
            .with_lease(self.lease)
            .with_payload(payload.clone())
    }

    /// A `try_acquire` through the run's primitive.
    async fn try_once(&mut self, payload: &Bytes) -> Result<Option<Held>, LockError> {
        let world = self.world.clone();
        match world.config.primitive {
            SimPrimitive::Mutex => Ok(self
                .lock(LOCK, payload)
                .try_acquire()
                .await?
                .map(Held::Guard)),
            SimPrimitive::Election => {
                let election = self
                    .inc
                    .client
                    .election(LOCK)
                    .with_lease(self.lease)
                    .with_payload(payload.clone());
                Ok(election.try_campaign().await?.map(Held::Leader))
            }
            SimPrimitive::Semaphore { .. } => {
                let semaphore = self.semaphore.as_ref().expect("a semaphore run");
                Ok(semaphore
                    .try_acquire()
                    .await?
                    .map(|p| Held::Permit(Arc::new(p))))
            }
            SimPrimitive::MultiLock { names, pool } => {
                let chosen = self.draw_names(names, pool);
                let multi = self.multi(&chosen, payload);
                Ok(multi.try_acquire().await?.map(|m| Held::Multi(m, chosen)))
            }
        }
    }

    fn multi(&self, chosen: &[usize], payload: &Bytes) -> lynk_core::MultiLock {
        self.inc
            .client
            .multi_lock(chosen.iter().map(|&i| self.world.names[i].clone()))
            .with_lease(self.lease)
            .with_payload(payload.clone())
    }

    /// A blocking acquire (until `deadline` on the host's clock) through the
    /// run's primitive.
    async fn acquire_until(
        &mut self,
        payload: &Bytes,
        deadline: Instant,
    ) -> Result<Held, LockError> {
        let world = self.world.clone();
        let deadline = Some(deadline);
        match world.config.primitive {
            SimPrimitive::Mutex => self
                .lock(LOCK, payload)
                .acquire_until(deadline)
                .await
                .map(Held::Guard),
            SimPrimitive::Election => {
                let election = self
                    .inc
                    .client
                    .election(LOCK)
                    .with_lease(self.lease)
                    .with_payload(payload.clone());
                election.campaign_until(deadline).await.map(Held::Leader)
            }
            SimPrimitive::Semaphore { .. } => {
                let semaphore = self.semaphore.as_ref().expect("a semaphore run");
                let permit = semaphore.acquire_until(deadline).await?;
                Ok(Held::Permit(Arc::new(permit)))
            }
            SimPrimitive::MultiLock { names, pool } => {
                let chosen = self.draw_names(names, pool);
                let multi = self.multi(&chosen, payload);
                multi
                    .acquire_until(deadline)
                    .await
                    .map(|m| Held::Multi(m, chosen))
            }
        }
    }

    /// Records the holdings of what was granted (one per name), checks it
    /// carries the lease and payload asked for, and watches its lost
    /// signals. Returns the holdings' indices.
    fn record(&self, held: &Held, payload: &Bytes, started: Instant) -> Vec<usize> {
        let world = &self.world;
        let (host, clock) = (&self.host, &self.host.clock);
        let now = world.now();
        let holding = |name: usize, token: u64, safe: Safe| Holding {
            host: host.index,
            handle: self.index,
            name,
            token,
            started,
            acquired: now,
            released_at: None,
            lost_at: None,
            group_lost: None,
            safe,
            clock: clock.clone(),
            restart: self.inc.seen.restart_of(&world.names[name], token),
            lineage: self.inc.seen.lineage_of(&world.names[name], token),
        };
        let mut h = world.history();
        let mut wrong = Vec::new();
        let check = |what: &str, lease: Duration, got: Option<&Bytes>, token: u64| {
            (lease != self.lease || got != Some(payload)).then(|| format!(
                "wrong grant: {what}: host {} handle {} asked for lease {:?} and payload {:?}, got lease {:?} and payload {:?} (token {token})",
                host.index, self.index, self.lease, payload, lease, got
            ))
        };
        let indices = match held {
            Held::Guard(g) => {
                h.counts.payload_checks += 1;
                let token = g.fencing_token().get();
                wrong.extend(check(LOCK, g.lease_duration(), g.payload(), token));
                h.holdings.push(holding(0, token, Safe::Watch(g.watch())));
                vec![(h.holdings.len() - 1, g.watch())]
            }
            Held::Leader(l) => {
                h.counts.payload_checks += 1;
                let token = l.term().get();
                wrong.extend(check("election", l.lease_duration(), l.payload(), token));
                h.holdings.push(holding(0, token, Safe::Watch(l.watch())));
                vec![(h.holdings.len() - 1, l.watch())]
            }
            Held::Permit(p) => {
                h.counts.payload_checks += 1;
                let token = p.fencing_token().get();
                // A permit's lease is stored (and reported) in whole
                // milliseconds: truncated, it errs short, on the safe side.
                let lease = p.lease_duration();
                let ms = Duration::from_millis(self.lease.as_millis() as u64);
                let lease = if lease == ms { self.lease } else { lease };
                wrong.extend(check("permit", lease, Some(payload), token));
                let safe = Safe::Permit {
                    permit: Arc::downgrade(p),
                    last: p.safe_deadline(),
                };
                h.holdings.push(holding(0, token, safe));
                let index = h.holdings.len() - 1;
                drop(h);
                let (weak, lost) = (Arc::downgrade(p), p.lost_token());
                let why = weak.clone();
                world.watch_lost_with(
                    index,
                    async move { lost.cancelled().await },
                    move || weak.upgrade().map(|p| p.safe_deadline()),
                    move || format!("{:?}", why.upgrade().and_then(|p| p.lost_reason())),
                    clock.clone(),
                );
                for w in wrong {
                    world.problem(w);
                }
                return vec![index];
            }
            Held::Multi(m, names) => {
                let held: Vec<&str> = m.names().collect();
                let asked: Vec<&str> = names.iter().map(|&n| world.names[n].as_str()).collect();
                if held != asked {
                    wrong.push(format!(
                        "wrong grant: host {} handle {} asked for {asked:?}, got {held:?}",
                        host.index, self.index
                    ));
                }
                let mut out = Vec::new();
                for (&name, g) in names.iter().zip(m.guards()) {
                    h.counts.payload_checks += 1;
                    let token = g.fencing_token().get();
                    wrong.extend(check(
                        &world.names[name],
                        g.lease_duration(),
                        g.payload(),
                        token,
                    ));
                    h.holdings
                        .push(holding(name, token, Safe::Watch(g.watch())));
                    out.push((h.holdings.len() - 1, g.watch()));
                }
                out
            }
        };
        // A multi-lock holds its earlier names while it waits for the later
        // ones, and one may be lost meanwhile (its heartbeats failed): the
        // guard is then handed out with its lost signal fired already. It
        // holds nothing (the guard's lost signal is its holding's end); when
        // that lock's signal fired is not seen here, so it is not timed.
        let arrived_lost: Vec<bool> = indices.iter().map(|(_, w)| w.is_lost()).collect();
        if matches!(held, Held::Multi(..)) {
            for ((index, _), &lost) in indices.iter().zip(&arrived_lost) {
                if lost {
                    h.holdings[*index].lost_at = Some(now);
                }
            }
        }
        drop(h);
        for w in wrong {
            world.problem(w);
        }
        for ((index, watch), lost) in indices.iter().zip(arrived_lost) {
            if !(lost && matches!(held, Held::Multi(..))) {
                world.watch_lost(*index, watch.clone(), clock.clone());
            }
        }
        let indices: Vec<usize> = indices.into_iter().map(|(i, _)| i).collect();
        if let Held::Multi(m, _) = held {
            let lost = m.lost_token();
            world.watch_group(indices.clone(), async move { lost.cancelled().await });
        }
        indices
    }

    /// Marks the holdings released at `at` (a permit's safe deadline read
    /// now, before it is dropped).
    fn released(&self, indices: &[usize], held: &Held, at: Instant) {
        let mut h = self.world.history();
        for &i in indices {
            h.holdings[i].released_at = Some(at);
            if let (Held::Permit(p), Safe::Permit { last, .. }) = (held, &mut h.holdings[i].safe) {
                *last = p.safe_deadline();
            }
        }
    }

    fn write_all(&self, held: &Held) {
        for (name, token) in held.writes() {
            self.world.write(self.host.index, name, token);
        }
    }

    /// Holds what was granted; `false` if the host crashed.
    async fn hold(&mut self, mut held: Held, payload: &Bytes, started: Instant) -> bool {
        let world = self.world.clone();
        let config = &world.config;
        let (host, clock) = (self.host.clone(), self.host.clock.clone());
        let indices = self.record(&held, payload, started);
        let roll: f64 = self.rng.gen();
        if roll < config.pause_probability && host.link.pause() {
            // The whole host stops for longer than the lease right after one
            // write; on waking the holder writes once more without checking
            // its lease, as buggy code does. Fencing must refuse that write.
            if held.holds(clock.now()) {
                self.write_all(&held);
            }
            let from = world.now();
            {
                let mut h = world.history();
                h.counts.pauses += 1;
                h.freed.push((from, host.index, "pause of the holder"));
            }
            let length = self.lease.mul_f64(self.rng.gen_range(1.2..3.0));
            clock.sleep(length).await;
            host.link.resume();
            world
                .history()
                .unhealthy
                .push((host.index, from, world.now()));
            self.write_all(&held);
            self.released(&indices, &held, world.now());
            drop(held); // released (or found lost) in the background
            return true;
        }
        if roll < config.pause_probability + config.crash_probability {
            let mut h = world.history();
            h.counts.crashes += 1;
            let now = world.now();
            h.freed.push((now, host.index, "crash of the holder"));
            h.zombies.push(held.zombie());
            drop(h);
            self.inc.crash();
            return false;
        }
        let hold = self.lease.mul_f64(self.rng.gen_range(0.1..2.0));
        let steps = self.rng.gen_range(1..=3u32);
        for _ in 0..steps {
            let step = async {
                clock.sleep(hold / steps).await;
                host.link.awake().await;
            };
            if self.inc.or_crash(step).await.is_none() {
                world.history().zombies.push(held.zombie());
                return false;
            }
            // The holder's own accounting: not lost, before its safe deadline.
            if !held.holds(clock.now()) {
                break;
            }
            self.write_all(&held);
            if let Held::Leader(l) = &mut held {
                if self.rng.gen_bool(0.3) && !self.set_payload(l, payload).await {
                    world.history().zombies.push(held.zombie());
                    return false;
                }
            }
        }
        let released_at = world.now();
        self.released(&indices, &held, released_at);
        match self.inc.or_crash(held.release()).await {
            None => return false,
            // Free (or handed over) from the moment the release began.
            Some(Ok(())) => world
                .history()
                .freed
                .push((released_at, host.index, "release")),
            Some(Err(_)) => world.history().counts.release_errors += 1,
        }
        true
    }

    /// A leader replaces its payload: the term and the lease stay, and the
    /// new payload is what it reports. `false` if the host crashed.
    async fn set_payload(&mut self, leader: &mut Leadership, payload: &Bytes) -> bool {
        let world = self.world.clone();
        let term = leader.term();
        let new = Bytes::from(format!(
            "{}/moved-{}",
            String::from_utf8_lossy(payload),
            self.rng.gen::<u16>()
        ));
        let Some(answer) = self.inc.or_crash(leader.set_payload(new.clone())).await else {
            return false;
        };
        let mut h = world.history();
        h.counts.payload_changes += 1;
        if leader.term() != term
            || leader.payload() != Some(&new)
            || leader.lease_duration() != self.lease
        {
            h.problems.push(format!(
                "set_payload changed the leadership: host {} handle {} term {} → {}, payload {:?} (set {:?}), lease {:?} (asked {:?}); answer {answer:?}",
                self.host.index, self.index, term.get(), leader.term().get(), leader.payload(), new, leader.lease_duration(), self.lease
            ));
        }
        true
    }
}
