//! Fault injection: a wrapper that makes any backend fail on cue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lynk_core::{
    BackendError, BackendErrorKind, Capabilities, Clock, LockBackend, LockRecord, Version,
    WriteError, WriteRequest,
};

/// The kind of backend call a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `delete`.
    Delete,
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Fail before the call reaches the store (nothing is written) with an
    /// error of this kind, e.g. `Throttled` or `Unavailable`.
    FailBefore(BackendErrorKind),
    /// Let the call reach the store and apply, then lose the response: the
    /// caller gets `OutcomeUnknown`.
    LoseResponse,
    /// Never answer (the future stays pending), as a hung connection.
    Stall,
    /// Answer after this much time on the wrapper's clock.
    Delay(Duration),
}

#[derive(Debug)]
struct Rule {
    op: Option<Op>,
    key: Option<String>,
    fault: Fault,
    /// How many more calls it applies to; `None` is forever.
    remaining: Option<u64>,
}

/// Wraps a backend and injects [`Fault`]s into chosen calls.
///
/// Rules are matched in the order they were added; the first that matches a
/// call's operation (and key, if given) applies. Clones share the rules.
///
/// ```
/// use lynk_testkit::{FaultyBackend, MemoryBackend, Fault, Op};
/// use lynk_core::BackendErrorKind;
/// let faulty = FaultyBackend::new(MemoryBackend::new());
/// faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1)); // next write: applied, response lost
/// faulty.inject(Some(Op::Read), None, Fault::FailBefore(BackendErrorKind::Throttled), None); // all reads throttled
/// faulty.clear();
/// ```
#[derive(Clone, Debug)]
pub struct FaultyBackend<B> {
    inner: Arc<B>,
    rules: Arc<Mutex<VecDeque<Rule>>>,
    injected: Arc<AtomicU64>,
    clock: Option<Arc<dyn Clock>>,
}

impl<B: LockBackend> FaultyBackend<B> {
    /// Wraps `inner` with no faults.
    pub fn new(inner: B) -> Self {
        FaultyBackend {
            inner: Arc::new(inner),
            rules: Arc::default(),
            injected: Arc::default(),
            clock: None,
        }
    }

    /// Uses `clock` for [`Fault::Delay`] (default: the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Adds a rule: `fault` for the next `times` calls (forever if `None`) of
    /// `op` (any if `None`) on `key` (any if `None`).
    pub fn inject(&self, op: Option<Op>, key: Option<&str>, fault: Fault, times: Option<u64>) {
        self.rules().push_back(Rule {
            op,
            key: key.map(str::to_owned),
            fault,
            remaining: times,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules().clear();
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, VecDeque<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_fault(&self, op: Op, key: &str) -> Option<Fault> {
        let mut rules = self.rules();
        let i = rules.iter().position(|r| {
            r.op.is_none_or(|o| o == op) && r.key.as_deref().is_none_or(|k| k == key)
        })?;
        let fault = rules[i].fault.clone();
        if let Some(n) = rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
            }
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }

    async fn before(&self, fault: &Option<Fault>) -> Result<(), BackendError> {
        match fault {
            Some(Fault::FailBefore(kind)) => Err(BackendError::new(*kind, "injected fault")),
            Some(Fault::Stall) => std::future::pending().await,
            Some(Fault::Delay(d)) => {
                match &self.clock {
                    Some(c) => c.sleep(*d).await,
                    None => lynk_core::SystemClock.sleep(*d).await,
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn lost() -> BackendError {
    BackendError::new(
        BackendErrorKind::OutcomeUnknown,
        "injected fault: response lost after the store applied the request",
    )
}

#[async_trait]
impl<B: LockBackend> LockBackend for FaultyBackend<B> {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        let fault = self.take_fault(Op::Read, key);
        self.before(&fault).await?;
        let out = self.inner.read(key).await;
        if fault == Some(Fault::LoseResponse) {
            return Err(lost());
        }
        out
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        let fault = self.take_fault(Op::Write, &request.key);
        self.before(&fault).await?;
        let out = self.inner.write(request).await;
        if fault == Some(Fault::LoseResponse) {
            return Err(lost().into());
        }
        out
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        let fault = self.take_fault(Op::Delete, key);
        self.before(&fault).await?;
        let out = self.inner.delete(key, expected).await;
        if fault == Some(Fault::LoseResponse) {
            return Err(lost().into());
        }
        out
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
