//! The task that receives wake-up datagrams for one client and turns the
//! ones that name a lock it waits for into an early poll (rate-limited).

use std::sync::Weak;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::wake::WakeListener;

/// How long the listener pauses after a receive error before it listens
/// again (waiters poll meanwhile).
const AFTER_ERROR: Duration = Duration::from_secs(1);

/// Receives until `stop` is cancelled or the engine is gone.
pub(crate) async fn listen(engine: Weak<Engine>, listener: WakeListener, stop: CancellationToken) {
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = listener.next() => received,
        };
        let Some(engine) = engine.upgrade() else {
            return;
        };
        match received {
            Ok(wake) => {
                let scope = engine
                    .config
                    .wake_ups
                    .as_ref()
                    .map_or("", |w| w.scope.as_str());
                // An empty scope comes from a holder that does not listen
                // itself (it has no scope configured): accept it too; the
                // name check and the limiter still apply.
                if wake.scope == scope || wake.scope.is_empty() {
                    engine.on_wake(&wake.name);
                } else {
                    tracing::trace!(scope = %wake.scope, from = %wake.from, "wake-up for another scope ignored");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "wake-up listener failed; waiters poll, listening again in 1 s");
                let clock = engine.clock.clone();
                drop(engine);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = clock.sleep(AFTER_ERROR) => {}
                }
            }
        }
    }
}
