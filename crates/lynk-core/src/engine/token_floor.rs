//! The highest fencing token a client has seen per lock name: the floor
//! under a token-less record's new token.
//!
//! A record loses its token when it is deleted (`ReleaseMode::Delete`, a TTL,
//! an operator) or rewritten by a client that knows no tokens (the original
//! Python lynk). The next acquisition then starts the token from the wall
//! clock, which only goes up across hosts if their wall clocks agree. Every
//! record this client reads or gets back from a failed condition shows the
//! current token, so the new token is at least one more than the highest
//! seen: on an ordinary handoff the waiter has always seen the previous
//! holder's token, whatever the clocks say.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Engine;
use crate::LockRecord;

/// The most names remembered; beyond it an arbitrary one is forgotten (its
/// next token-less record then falls back on the wall clock alone).
const MAX_NAMES: usize = 65_536;

/// Highest token seen, per lock name.
#[derive(Debug, Default)]
pub(crate) struct TokenFloor(Mutex<HashMap<String, u64>>);

impl TokenFloor {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn observe(&self, name: &str, token: u64) {
        let mut map = self.map();
        if let Some(top) = map.get_mut(name) {
            *top = (*top).max(token);
            return;
        }
        if map.len() >= MAX_NAMES {
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
        map.insert(name.to_owned(), token);
    }

    pub(crate) fn get(&self, name: &str) -> Option<u64> {
        self.map().get(name).copied()
    }
}

impl Engine {
    /// Notes the token of a record seen in the store.
    pub(crate) fn observe_token(&self, record: &LockRecord) {
        if let Some(t) = record.fencing_token {
            self.token_floor.observe(&record.key, t.get());
        }
    }

    /// The token a new acquisition of `name` starts from when the stored
    /// record has none: the wall clock in microseconds, but at least one more
    /// than the highest token this client has seen for the name.
    pub(crate) fn initial_token(&self, name: &str) -> u64 {
        let wall = self.clock.wall_micros();
        if self.config.mutations.no_token_floor {
            return wall;
        }
        match self.token_floor.get(name) {
            Some(top) => wall.max(top.saturating_add(1)),
            None => wall,
        }
    }
}
