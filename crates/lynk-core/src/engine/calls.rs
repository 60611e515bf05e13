//! The engine's store calls, each with a time limit.
//!
//! A store call that does not answer (a half-open connection, a stuck load
//! balancer) must not hang a heartbeat, a waiter or a release. Every call the
//! engine makes goes through here with a deadline on the client's clock; a
//! call still running at its deadline is dropped (backends' futures are
//! cancel safe, see [`LockBackend`](crate::LockBackend)) and reported as
//! [`OutcomeUnknown`](crate::BackendErrorKind::OutcomeUnknown) for a write,
//! whose effect is then resolved by its version like a lost response, or as
//! [`Unavailable`](crate::BackendErrorKind::Unavailable) for a read.

use std::future::Future;
use std::time::Instant;

use super::Engine;
use crate::{BackendError, BackendErrorKind, LockRecord, Version, WriteError, WriteRequest};

/// Runs `call`, a store call made by one of the engine's background tasks
/// (a heartbeat, a semaphore's task), with a panic in it (a bug in the
/// backend) turned into the error `on_panic` makes: the task goes on and
/// treats the call as failed, where an unguarded panic would end the task
/// and with it every lease or permit it serves. Calls made for a caller (an
/// acquire, a release) are not wrapped: their tasks' own guards answer the
/// caller with `LockError::Internal`.
pub(crate) async fn unless_panicked<T>(
    call: impl Future<Output = T>,
    on_panic: impl FnOnce(BackendError) -> T,
) -> T {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(call).catch_unwind().await {
        Ok(out) => out,
        Err(_) => {
            tracing::error!("the store call panicked (a bug in the backend); treating it as a call of unknown outcome");
            on_panic(BackendError::new(
                BackendErrorKind::OutcomeUnknown,
                "the backend panicked during the call (a bug in the backend: please report it); whether it applied is unknown",
            ))
        }
    }
}

impl Engine {
    /// Runs `call` until `deadline`; `None` if the deadline came first.
    async fn within<T>(&self, deadline: Instant, call: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            out = call => Some(out),
            _ = self.clock.sleep_until(deadline) => None,
        }
    }

    fn no_answer(&self, kind: BackendErrorKind, what: &str, name: &str) -> BackendError {
        BackendError::new(
            kind,
            format!(
                "the store did not answer the {what} of lock {name:?} in time; check the network path to the store"
            ),
        )
    }

    /// A strongly consistent read of `name`, given up at `deadline`.
    pub(crate) async fn read_by(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<LockRecord>, BackendError> {
        let out = self
            .within(deadline, self.backend.read(name))
            .await
            .unwrap_or_else(|| Err(self.no_answer(BackendErrorKind::Unavailable, "read", name)));
        if let Ok(Some(record)) = &out {
            self.observe_token(record);
        }
        out
    }

    /// A conditional write, given up at `deadline` (then of unknown outcome).
    pub(crate) async fn write_by(
        &self,
        request: WriteRequest,
        deadline: Instant,
    ) -> Result<LockRecord, WriteError> {
        let name = request.key.clone();
        let out = match self.within(deadline, self.backend.write(request)).await {
            Some(out) => out,
            None => Err(self
                .no_answer(BackendErrorKind::OutcomeUnknown, "write", &name)
                .into()),
        };
        self.observe_write(&out);
        out
    }

    /// A conditional write whose stored record the caller does not need
    /// ([`LockBackend::write_no_return`](crate::LockBackend::write_no_return)),
    /// given up at `deadline` (then of unknown outcome).
    pub(crate) async fn write_no_return_by(
        &self,
        request: WriteRequest,
        deadline: Instant,
    ) -> Result<(), WriteError> {
        let name = request.key.clone();
        let out = match self
            .within(deadline, self.backend.write_no_return(request))
            .await
        {
            Some(out) => out,
            None => Err(self
                .no_answer(BackendErrorKind::OutcomeUnknown, "write", &name)
                .into()),
        };
        self.observe_conflict(&out);
        out
    }

    /// A write of the wait queue, given up at `deadline` (then of unknown
    /// outcome).
    pub(crate) async fn write_queue_by(
        &self,
        request: crate::QueueRequest,
        deadline: Instant,
    ) -> Result<LockRecord, WriteError> {
        let name = request.key.clone();
        let out = match self
            .within(deadline, self.backend.write_queue(request))
            .await
        {
            Some(out) => out,
            None => Err(self
                .no_answer(BackendErrorKind::OutcomeUnknown, "queue write", &name)
                .into()),
        };
        self.observe_write(&out);
        out
    }

    /// A conditional delete, given up at `deadline` (then of unknown outcome).
    pub(crate) async fn delete_by(
        &self,
        name: &str,
        expected: &Version,
        deadline: Instant,
    ) -> Result<(), WriteError> {
        let out = match self
            .within(deadline, self.backend.delete(name, expected))
            .await
        {
            Some(out) => out,
            None => Err(self
                .no_answer(BackendErrorKind::OutcomeUnknown, "delete", name)
                .into()),
        };
        self.observe_conflict(&out);
        out
    }

    /// Observes the token of the stored record a failed condition returned.
    fn observe_conflict<T>(&self, out: &Result<T, WriteError>) {
        if let Err(WriteError::ConditionFailed {
            current: Some(record),
        }) = out
        {
            self.observe_token(record);
        }
    }

    fn observe_write(&self, out: &Result<LockRecord, WriteError>) {
        match out {
            Ok(record) => self.observe_token(record),
            Err(_) => self.observe_conflict(out),
        }
    }
}
