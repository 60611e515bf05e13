//! One lock handle of a simulated host: a task that acquires (blocking,
//! with a timeout, or `try_acquire`), holds while writing to the oracle
//! resource, and releases; or pauses or crashes its host while it holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lynk_core::{Clock, LockError, LockGuard};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::host::{Host, Incarnation};
use super::world::{Holding, Wait, World};
use super::LOCK;

/// One handle's context.
struct Handle {
    world: Arc<World>,
    host: Arc<Host>,
    inc: Arc<Incarnation>,
    index: usize,
    /// The lease this handle asks for.
    lease: Duration,
    rng: StdRng,
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
    let mut h = Handle {
        world: world.clone(),
        host,
        inc,
        index,
        lease,
        rng,
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
        let Some(guard) = h.attempt(&payload).await else {
            return;
        };
        if let Some(guard) = guard {
            if !h.hold(guard, &payload).await {
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
    /// the guard if granted.
    async fn attempt(&mut self, payload: &Bytes) -> Option<Option<LockGuard>> {
        let world = self.world.clone();
        let config = &world.config;
        let lock = self
            .inc
            .client
            .create_lock(LOCK)
            .with_lease(self.lease)
            .with_payload(payload.clone());
        let roll: f64 = self.rng.gen();
        if roll < config.try_acquire_probability {
            let answer = self.inc.or_crash(lock.try_acquire()).await?;
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
        let clock = &self.host.clock;
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
        let answer = self.inc.or_crash(lock.acquire_until(Some(deadline))).await;
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

    /// Holds a granted lock; `false` if the host crashed.
    async fn hold(&mut self, guard: LockGuard, payload: &Bytes) -> bool {
        let world = self.world.clone();
        let config = &world.config;
        let (host, clock) = (self.host.clone(), self.host.clock.clone());
        let token = guard.fencing_token().get();
        let watch = guard.watch();
        let index = {
            let mut h = world.history();
            h.counts.payload_checks += 1;
            if guard.payload() != Some(payload) || guard.lease_duration() != self.lease {
                h.problems.push(format!(
                    "wrong grant: host {} handle {} asked for lease {:?} and payload {:?}, got lease {:?} and payload {:?} (token {token})",
                    host.index, self.index, self.lease, payload, guard.lease_duration(), guard.payload()
                ));
            }
            h.holdings.push(Holding {
                host: host.index,
                handle: self.index,
                token,
                acquired: world.now(),
                released_at: None,
                lost_at: None,
                watch: watch.clone(),
                clock: clock.clone(),
                restart: self.inc.seen.restart_of(token),
                lineage: self.inc.seen.lineage_of(token),
            });
            h.holdings.len() - 1
        };
        world.watch_lost(index, watch.clone(), clock.clone());
        let roll: f64 = self.rng.gen();
        if roll < config.pause_probability && host.link.pause() {
            // The whole host stops for longer than the lease right after one
            // write; on waking the holder writes once more without checking
            // its lease, as buggy code does. Fencing must refuse that write.
            if !watch.is_lost() && clock.now() < watch.safe_deadline() {
                world.write(host.index, token);
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
            world.write(host.index, token);
            let now = world.now();
            world.history().holdings[index].released_at = Some(now);
            drop(guard); // released (or found lost) in the background
            return true;
        }
        if roll < config.pause_probability + config.crash_probability {
            let mut h = world.history();
            h.counts.crashes += 1;
            let now = world.now();
            h.freed.push((now, host.index, "crash of the holder"));
            h.zombies.push(guard);
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
                world.history().zombies.push(guard);
                return false;
            }
            // The holder's own accounting: not lost, before its safe deadline.
            if watch.is_lost() || clock.now() >= watch.safe_deadline() {
                break;
            }
            world.write(host.index, token);
        }
        let released_at = world.now();
        world.history().holdings[index].released_at = Some(released_at);
        match self.inc.or_crash(guard.release()).await {
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
}
