//! The monitor the adversarial queue tests share: it records every
//! acquisition and flags two processes holding at once, or a fencing token
//! not above every earlier one.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use lynk_core::{LeaseWatch, LockGuard};

#[derive(Default)]
pub struct Seen {
    held: Vec<(String, LeaseWatch)>,
    log: Vec<(String, Instant, u64)>,
    violations: Vec<String>,
}

/// Watches every acquisition: two processes holding at once, or a fencing
/// token not above every earlier one, is a violation.
#[derive(Clone, Default)]
pub struct Monitor(Arc<Mutex<Seen>>);

impl Monitor {
    pub fn acquired(&self, host: &str, g: &LockGuard, now: Instant) {
        let mut s = self.0.lock().unwrap();
        let token = g.fencing_token().get();
        let mut found = Vec::new();
        for (h, w) in &s.held {
            // Within one process a handover delivers the next lease just
            // before the old one is marked ended: compare processes only.
            if h != host && w.is_held() && !w.is_lost() {
                found.push(format!(
                    "{host} acquired (token {token}) while {h} still holds (token {})",
                    w.fencing_token()
                ));
            }
            if w.fencing_token().get() >= token {
                found.push(format!(
                    "{host} acquired token {token}, not above {h}'s earlier token {}",
                    w.fencing_token()
                ));
            }
        }
        s.violations.extend(found);
        s.held.push((host.to_owned(), g.watch()));
        s.log.push((host.to_owned(), now, token));
    }

    pub fn violations(&self) -> Vec<String> {
        self.0.lock().unwrap().violations.clone()
    }

    pub fn order(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .map(|(h, _, _)| h.clone())
            .collect()
    }

    /// When `host` acquired for the `nth` time (0-based).
    pub fn when(&self, host: &str, nth: usize) -> Option<Instant> {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(h, _, _)| h == host)
            .nth(nth)
            .map(|(_, at, _)| *at)
    }

    /// (host, ms since `t0`, token) of every acquisition.
    pub fn log(&self, t0: Instant) -> Vec<(String, u128, u64)> {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .map(|(h, at, t)| (h.clone(), (*at - t0).as_millis(), *t))
            .collect()
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap().log.len()
    }

    /// How many times `host` acquired.
    pub fn count_of(&self, host: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(h, _, _)| h == host)
            .count()
    }
}
