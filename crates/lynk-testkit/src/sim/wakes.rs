//! Wake-ups in the simulation: a lossy, duplicating, delaying network
//! between the clients, through lynk's [`WakeTransport`] seam. Seeded, so a
//! run replays exactly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lynk_core::{Clock, LockClient, WakeTransport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::TestClock;

/// What the wake-up network does to each datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WakeFaults {
    /// Probability a wake-up is lost.
    pub loss: f64,
    /// Probability a delivered wake-up arrives twice.
    pub duplicate: f64,
    /// Each copy arrives after a delay uniform in `[0, max_delay)`.
    pub max_delay: Duration,
}

impl Default for WakeFaults {
    fn default() -> Self {
        WakeFaults {
            loss: 0.2,
            duplicate: 0.2,
            max_delay: Duration::from_secs(3),
        }
    }
}

/// Counts of what the network did.
#[derive(Debug, Default)]
pub(super) struct WakeCounts {
    pub(super) sent: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) duplicated: AtomicU64,
    pub(super) delivered: AtomicU64,
}

/// The network: clients by the address they advertise.
#[derive(Debug)]
pub(super) struct SimWakes {
    faults: WakeFaults,
    clock: TestClock,
    rng: Mutex<StdRng>,
    clients: Mutex<HashMap<String, LockClient>>,
    pub(super) counts: WakeCounts,
}

impl SimWakes {
    pub(super) fn new(faults: WakeFaults, clock: TestClock, seed: u64) -> Arc<Self> {
        Arc::new(SimWakes {
            faults,
            clock,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            clients: Mutex::default(),
            counts: WakeCounts::default(),
        })
    }

    /// `client` receives the wake-ups sent to `address`.
    pub(super) fn register(&self, address: String, client: LockClient) {
        self.map().insert(address, client);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, LockClient>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The transport one client sends through.
#[derive(Debug)]
pub(super) struct SimWakeTransport(pub(super) Arc<SimWakes>);

impl WakeTransport for SimWakeTransport {
    fn send(&self, to: &str, _scope: &str, name: &str) {
        let net = &self.0;
        net.counts.sent.fetch_add(1, Ordering::Relaxed);
        let delays: Vec<Duration> = {
            let mut rng = net.rng.lock().unwrap_or_else(|e| e.into_inner());
            if rng.gen_bool(net.faults.loss.clamp(0.0, 1.0)) {
                net.counts.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let copies = if rng.gen_bool(net.faults.duplicate.clamp(0.0, 1.0)) {
                net.counts.duplicated.fetch_add(1, Ordering::Relaxed);
                2
            } else {
                1
            };
            (0..copies)
                .map(|_| net.faults.max_delay.mul_f64(rng.gen_range(0.0..1.0)))
                .collect()
        };
        for delay in delays {
            let (net, to, name) = (net.clone(), to.to_owned(), name.to_owned());
            tokio::spawn(async move {
                net.clock.sleep(delay).await;
                let client = net.map().get(&to).cloned();
                if let Some(client) = client {
                    net.counts.delivered.fetch_add(1, Ordering::Relaxed);
                    client.wake(&name);
                }
            });
        }
    }
}
