//! Shutting a client down: every lease released (or waited for) within a
//! bound, and reported as it really ended.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::keeper::KeeperCommand;
use super::lease::{LeaseShared, ReleaseStart};
use super::{release, Engine};
use crate::{BackendError, BackendErrorKind, LockError, LostReason};

/// The outcome of [`LockClient::shutdown`](crate::LockClient::shutdown):
/// which locks were released and which could not be.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Names of locks released cleanly.
    pub released: Vec<String>,
    /// Names of locks whose release failed or was not confirmed before the
    /// shutdown's deadline, with the error. Their leases expire on their own.
    pub failed: Vec<(String, LockError)>,
}

impl ShutdownReport {
    /// `true` if every held lock was released.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty()
    }
}

impl Engine {
    /// See [`LockClient::shutdown`](crate::LockClient::shutdown).
    pub(crate) async fn shutdown(self: &Arc<Self>) -> ShutdownReport {
        self.closed.store(true, Ordering::Release);
        self.slots.shut_down();
        // Long enough for any acquirer's store call in flight (a derived
        // call timeout is at most 10 s) and then its release.
        let config = &self.config;
        let longest_call = config.call_timeout.unwrap_or(Duration::from_secs(10));
        let deadline = self.clock.now() + longest_call + config.release_timeout;
        let mut seen: HashMap<u64, Arc<LeaseShared>> = HashMap::new();
        self.tasks.close();
        loop {
            for lease in self.live_leases() {
                self.release_for_shutdown(&lease);
                seen.insert(lease.id, lease);
            }
            // Acquirers still in a store call may yet grant (and then
            // release) a lock: wait for every task, then look again.
            let done = tokio::select! {
                biased;
                _ = self.tasks.wait() => true,
                _ = self.clock.sleep_until(deadline) => false,
            };
            if !done || self.live_leases().iter().all(|l| seen.contains_key(&l.id)) {
                break;
            }
        }
        // Leases that appeared at the very end are released too, and
        // reported as not (yet) confirmed.
        for lease in self.live_leases() {
            self.release_for_shutdown(&lease);
            seen.entry(lease.id).or_insert(lease);
        }
        let _ = self.keeper.send(KeeperCommand::Shutdown);
        self.leases_map().retain(|id, _| !seen.contains_key(id));
        report(seen)
    }

    fn live_leases(&self) -> Vec<Arc<LeaseShared>> {
        self.leases_map().values().cloned().collect()
    }

    /// Starts releasing `lease` in a task of its own (telling the work under
    /// it to stop), unless a release of it already runs.
    fn release_for_shutdown(self: &Arc<Self>, lease: &Arc<LeaseShared>) {
        if let ReleaseStart::Started { .. } = lease.begin_release(Some(LostReason::ClientShutDown))
        {
            let (engine, lease) = (self.clone(), lease.clone());
            drop(self.spawn_tracked(async move {
                let _ = release::run_release(&engine, &lease, false).await;
            }));
        }
    }
}

fn report(seen: HashMap<u64, Arc<LeaseShared>>) -> ShutdownReport {
    let mut report = ShutdownReport::default();
    let mut leases: Vec<Arc<LeaseShared>> = seen.into_values().collect();
    leases.sort_by_key(|l| l.id);
    for lease in leases {
        let name = lease.name.clone();
        match lease.release_outcome_now() {
            Some(Ok(())) => report.released.push(name),
            Some(Err(e)) => report.failed.push((name, e)),
            None => {
                let source = BackendError::new(
                    BackendErrorKind::OutcomeUnknown,
                    "the release was not confirmed before the shutdown's deadline",
                );
                let error = LockError::OutcomeUnknown {
                    name: name.clone(),
                    operation: "release",
                    source,
                };
                report.failed.push((name, error));
            }
        }
    }
    report
}
