//! A simulated host: its clock, its link to the store, its incarnations
//! (one `LockClient` each, restarted after a crash) and the chaos that
//! befalls it (partitions, pauses at random moments, wall-clock steps).

use std::sync::Arc;
use std::time::Duration;

use super::net::{HostLink, HostNet, NoCurrentOnConflict, Partition, SeenTokens};
use super::signal::Signal;
use super::worker;
use super::world::World;
use crate::{FaultyBackend, TestClock};
use lynk_core::{ClientConfig, Clock, LockBackend, LockClient, LockError, ReleaseMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What does not change across a host's restarts.
pub(super) struct Host {
    pub(super) index: usize,
    pub(super) clock: TestClock,
    /// The clock's rate against real time.
    pub(super) rate: f64,
    pub(super) link: Arc<HostLink>,
    release_mode: ReleaseMode,
    no_current: bool,
    handles: usize,
}

/// One life of a host, from start to crash (or to the end of the run).
pub(super) struct Incarnation {
    pub(super) number: u64,
    pub(super) client: LockClient,
    pub(super) seen: Arc<SeenTokens>,
    alive: Arc<Signal<bool>>,
}

impl Incarnation {
    pub(super) fn is_alive(&self) -> bool {
        self.alive.get()
    }

    /// The host crashes: its handles stop and nothing it sent or was sent
    /// moves any more.
    pub(super) fn crash(&self) {
        self.alive.set(false);
    }

    /// Runs `work` unless the host crashes first (then `None`).
    pub(super) async fn or_crash<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.alive.wait_for(|a| !a) => None,
            out = work => Some(out),
        }
    }
}

fn mix(seed: u64, i: u64) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(i)
}

pub(super) async fn run(world: Arc<World>, index: usize) {
    let config = world.config.clone();
    let mut rng = StdRng::seed_from_u64(mix(config.seed, index as u64));
    let rate = 1.0 + rng.gen_range(-config.drift_bound..=config.drift_bound);
    let clock = TestClock::new()
        .with_drift(rate)
        .with_wall_offset(config.max_wall_offset.mul_f64(rng.gen()), rng.gen_bool(0.5));
    let host = Arc::new(Host {
        index,
        clock,
        rate,
        link: Arc::new(HostLink::new()),
        release_mode: if rng.gen_bool(config.delete_hosts.clamp(0.0, 1.0)) {
            ReleaseMode::Delete
        } else {
            ReleaseMode::KeepRecord
        },
        no_current: rng.gen_bool(config.no_current_hosts.clamp(0.0, 1.0)),
        handles: rng.gen_range(1..=config.handles_per_host.max(1)),
    });
    world.history().rates.push(rate);
    world
        .links
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(host.link.clone());
    let chaos = [
        tokio::spawn(partitions(world.clone(), host.clone(), rng.gen())),
        tokio::spawn(pauses(world.clone(), host.clone(), rng.gen())),
        tokio::spawn(wall_steps(world.clone(), host.clone(), rng.gen())),
    ];
    let mut number = 0;
    loop {
        host.link.awake().await;
        if world.now() >= world.end {
            break;
        }
        let inc = match incarnation(&world, &host, number, &mut rng) {
            Ok(inc) => inc,
            Err(e) => {
                world.problem(format!("bad simulation config: {e}"));
                break;
            }
        };
        let handles: Vec<_> = (0..host.handles)
            .map(|h| {
                let task = worker::run(world.clone(), host.clone(), inc.clone(), h, rng.gen());
                tokio::spawn(task)
            })
            .collect();
        for h in handles {
            if let Err(e) = h.await {
                world.problem(format!("a handle task of host {index} failed: {e}"));
            }
        }
        if inc.is_alive() {
            break; // the run is over
        }
        // Crashed: the host comes back after a while, with a new client.
        host.clock
            .sleep(config.lease.mul_f64(rng.gen_range(0.0..1.0)))
            .await;
        number += 1;
    }
    for c in chaos {
        if let Err(e) = c.await {
            world.problem(format!("a chaos task of host {index} failed: {e}"));
        }
    }
}

/// Starts a new client for `host`, over its faulty link to the store.
fn incarnation(
    world: &World,
    host: &Host,
    number: u64,
    rng: &mut StdRng,
) -> Result<Arc<Incarnation>, LockError> {
    let config = &world.config;
    let mut faults = config.faults.clone();
    faults.seed = rng.gen();
    let faulty = FaultyBackend::new(world.store.clone())
        .with_clock(Arc::new(world.real.clone()))
        .with_random(faults);
    world
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(faulty.clone());
    let below: Arc<dyn LockBackend> = if host.no_current {
        Arc::new(NoCurrentOnConflict(Arc::new(faulty)))
    } else {
        Arc::new(faulty)
    };
    let below: Arc<dyn LockBackend> = if config.store_queue {
        below
    } else {
        Arc::new(super::net::NoQueue(below))
    };
    let alive = Arc::new(Signal::new(true));
    let seen = Arc::new(SeenTokens::sharing(world.origins.clone()));
    let net = HostNet {
        inner: below,
        link: host.link.clone(),
        alive: alive.clone(),
        seen: seen.clone(),
    };
    let defaults = ClientConfig::default();
    let address = format!("host-{}.{number}", host.index);
    let mut builder = LockClient::builder(net);
    if let Some(wakes) = &world.wakes {
        let transport = Arc::new(super::wakes::SimWakeTransport(wakes.clone()));
        builder = builder.wake_transport(transport, address.clone());
    }
    let client = builder
        .clock(host.clock.clone())
        .config(ClientConfig {
            host_identifier: format!("host-{}.{number}", host.index),
            default_lease: config.lease,
            drift_allowance: config.drift_allowance,
            lock_delay: config.lock_delay,
            release_mode: host.release_mode,
            jitter_seed: Some(rng.gen()),
            release_timeout: config.release_timeout.unwrap_or(defaults.release_timeout),
            mutations: config.mutations,
            ..defaults
        })
        .build()?;
    if let Some(wakes) = &world.wakes {
        wakes.register(address, client.clone());
    }
    world
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(client.clone());
    Ok(Arc::new(Incarnation {
        number,
        client,
        seen,
        alive,
    }))
}

/// Sleeps a random gap around `every`, but not past the end of the run;
/// `false` once the run is over.
async fn gap(world: &World, every: Duration, rng: &mut StdRng) -> bool {
    let until = (world.now() + every.mul_f64(rng.gen_range(0.0..2.0))).min(world.end);
    world.real.sleep_until(until).await;
    world.now() < world.end
}

/// Cuts the host off from the store now and then.
async fn partitions(world: Arc<World>, host: Arc<Host>, seed: u64) {
    let Some(every) = world.config.partition_every else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    while gap(&world, every, &mut rng).await {
        let mode = match rng.gen_range(0..3) {
            0 => Partition::Fail,
            1 => Partition::Hang,
            _ => Partition::HangDeliverLate,
        };
        let length = world.config.lease.mul_f64(rng.gen_range(0.3..2.5));
        // Not a freeing event: a holder whose lease survives the partition
        // keeps the lock; one whose lease lapses releases or is taken over.
        let from = world.now();
        host.link.set_partition(mode);
        world.real.sleep(length).await;
        host.link.set_partition(Partition::Healed);
        let mut h = world.history();
        h.counts.partitions += 1;
        h.unhealthy.push((host.index, from, world.now()));
    }
}

/// Freezes the whole host now and then, whatever it is doing.
async fn pauses(world: Arc<World>, host: Arc<Host>, seed: u64) {
    let Some(every) = world.config.host_pause_every else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    while gap(&world, every, &mut rng).await {
        let length = world.config.lease.mul_f64(rng.gen_range(0.2..2.0));
        if !host.link.pause() {
            continue; // a holder paused it already
        }
        // Not a freeing event, as for a partition.
        let from = world.now();
        world.real.sleep(length).await;
        host.link.resume();
        let mut h = world.history();
        h.counts.pauses += 1;
        h.unhealthy.push((host.index, from, world.now()));
    }
}

/// Steps the host's wall clock now and then, mostly back.
async fn wall_steps(world: Arc<World>, host: Arc<Host>, seed: u64) {
    let Some(every) = world.config.wall_step_every else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    while gap(&world, every, &mut rng).await {
        let by = world
            .config
            .max_wall_offset
            .mul_f64(rng.gen_range(0.05..1.0));
        host.clock.step_wall(by, rng.gen_bool(1.0 / 3.0));
        world.history().counts.wall_steps += 1;
    }
}
