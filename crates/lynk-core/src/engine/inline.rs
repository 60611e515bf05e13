//! Engine work run in the caller's task while the caller waits for it, and
//! in a task of its own from the moment the caller stops waiting.
//!
//! An acquirer's first attempt and an awaited release used to run in spawned
//! tasks, so that a caller dropping its future never leaves a write
//! unresolved. A spawn costs little, but waking a worker thread for it and
//! the waiter's thread for its answer costs the process several wake-ups of
//! the runtime per lock cycle (measured in `docs/benchmarks.md`, "Floor").
//! [`Inline`] keeps the guarantee without them: it polls the work in the
//! caller's task, and if it is dropped before the work finished, it hands
//! the unfinished work, as it stands, to a task of its own. Either way the
//! work runs to its end exactly once.
//!
//! The work is polled inside the engine's runtime context (so its timers and
//! sockets belong to the engine's runtime even when the caller runs on
//! another one), and the client's shutdown waits for it as for a spawned
//! task. A panic in the work is caught, as a task's would be, and reported as
//! `None`.
//!
//! The one difference from a spawned task: the work advances only while the
//! caller polls. A caller that holds the future without polling it (a
//! `select!` arm left pending while another arm's body runs) delays the
//! work, and any waiter of the same lock in this client that depends on it.
//! That is why only short work runs inline: an acquirer's first attempt (one
//! write, bounded by the call timeout), after which the acquirer moves to a
//! task of its own, and a release the caller awaits.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Engine;

type Work<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Engine work the caller drives by awaiting; see the module docs.
#[must_use = "dropping it hands the work to a task of its own at once"]
pub(crate) struct Inline<T: Send + 'static> {
    engine: Arc<Engine>,
    /// `None` once the work finished (or panicked).
    work: Option<Work<T>>,
    /// Counts as a task of the engine's until the work finishes or moves to
    /// a spawned task, so a shutdown waits for it.
    _tracked: TaskTrackerToken,
}

impl<T: Send + 'static> Inline<T> {
    pub(crate) fn new<F>(engine: Arc<Engine>, work: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        Inline {
            _tracked: engine.tasks.token(),
            engine,
            work: Some(Box::pin(work)),
        }
    }
}

impl<T: Send + 'static> Future for Inline<T> {
    /// The work's output, or `None` if it panicked.
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        let Some(work) = this.work.as_mut() else {
            // Polled after it finished: an engine bug; never resolve twice.
            debug_assert!(false, "Inline polled after it finished");
            return Poll::Pending;
        };
        let _runtime = this.engine.runtime.enter();
        match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                this.work = None;
                Poll::Ready(Some(out))
            }
            Err(_) => {
                // The work's own guards (the acquirer's `ResetOnPanic`) ran
                // while unwinding; what is left of it cannot be resumed.
                this.work = None;
                Poll::Ready(None)
            }
        }
    }
}

impl<T: Send + 'static> Drop for Inline<T> {
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            // The caller stopped waiting: the work goes on without it. If the
            // runtime is gone, the work is dropped with it, as a spawned
            // task's would be.
            drop(self.engine.spawn_tracked(async move {
                let _ = work.await;
            }));
        }
    }
}
