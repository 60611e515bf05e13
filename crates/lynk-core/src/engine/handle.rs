//! A granted lease, owned: what the engine hands a waiter, and what
//! [`LockGuard`](crate::LockGuard) wraps.

use std::sync::Arc;

use super::lease::LeaseShared;
use super::{release, Engine};
use crate::{LockError, Version};

/// Ownership of one held lease. Dropping it releases the lease in the
/// background (or hands it to the next local waiter), unless it was released
/// or detached first; so a lease granted to a waiter that already left is
/// never stranded.
#[derive(Debug)]
pub(crate) struct LeaseHandle {
    engine: Arc<Engine>,
    lease: Arc<LeaseShared>,
    done: bool,
}

impl LeaseHandle {
    pub(crate) fn new(engine: Arc<Engine>, lease: Arc<LeaseShared>) -> Self {
        LeaseHandle {
            engine,
            lease,
            done: false,
        }
    }

    pub(crate) fn lease(&self) -> &Arc<LeaseShared> {
        &self.lease
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The version the store holds for this lease, as far as the client
    /// knows (a heartbeat in flight is waited for).
    pub(crate) async fn version(&self) -> Version {
        let mut core = self.lease.core.lock().await;
        if !core.pending.is_empty() {
            // A heartbeat of unknown outcome may have applied: settle it
            // with one read, so the version returned is the stored one.
            let engine = &self.engine;
            let by = engine.clock.now() + engine.config.call_timeout_for(self.lease.lease);
            if let Ok(Some(stored)) = engine.read_by(&self.lease.name, by).await {
                if let Some(from) = engine.adopt_heartbeat(&mut core, &stored) {
                    self.lease.set_valid_from(from);
                }
            }
        }
        core.version.clone()
    }

    /// Replaces the payload of the held lease, in the store and in every
    /// later heartbeat (see [`Engine::set_payload`]), in a task of its own
    /// (so dropping the returned future does not stop it).
    pub(crate) async fn set_payload(&self, payload: Option<bytes::Bytes>) -> Result<(), LockError> {
        let (engine, lease) = (self.engine.clone(), self.lease.clone());
        let name = lease.name.clone();
        let task = self
            .engine
            .spawn_tracked(async move { engine.set_payload(&lease, payload).await });
        task.await.unwrap_or(Err(LockError::Internal {
            name,
            during: "payload change",
        }))
    }

    /// Releases the lease in a task of its own (so dropping the returned
    /// future does not stop it) and waits for the outcome.
    pub(crate) async fn release(mut self) -> Result<(), LockError> {
        self.done = true;
        let (engine, lease) = (self.engine.clone(), self.lease.clone());
        let task = self
            .engine
            .spawn_tracked(async move { release::release_guard(&engine, lease).await });
        match task.await {
            Ok(result) => result,
            // A panic in the release (a backend bug) fails it; the release
            // freed the lock's slot as it unwound.
            Err(e) if e.is_panic() => Err(LockError::Internal {
                name: self.lease.name.clone(),
                during: "release",
            }),
            Err(_) => Err(LockError::ShutDown),
        }
    }

    /// Stops renewing the lease and forgets it, without releasing: the
    /// record stays as it is and expires after its lease unless someone
    /// releases it by its version.
    pub(crate) fn detach(mut self) {
        self.done = true;
        self.engine.detach(&self.lease);
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (engine, lease) = (self.engine.clone(), self.lease.clone());
        // Best effort: if the runtime is gone the lease expires on its own.
        drop(self.engine.spawn_tracked(async move {
            if let Err(e) = release::release_guard(&engine, lease).await {
                tracing::warn!(error = %e, "release on drop failed");
            }
        }));
    }
}
