//! Fault injection: a wrapper that makes any backend fail on cue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lynk_core::{
    BackendError, BackendErrorKind, Capabilities, Clock, LockBackend, LockRecord, QueueRequest,
    Version, WriteError, WriteRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The kind of backend call a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `delete`.
    Delete,
    /// `write_queue`.
    WriteQueue,
}

/// What goes wrong.
///
/// ```
/// use std::time::Duration;
/// use lynk_core::{Clock, Condition, LockBackend, TokenUpdate, Version, WriteRequest};
/// use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};
///
/// #[tokio::main(flavor = "current_thread", start_paused = true)]
/// async fn main() {
///     let (store, clock) = (MemoryBackend::new(), TestClock::new());
///     let faulty = FaultyBackend::new(store.clone()).with_clock(std::sync::Arc::new(clock.clone()));
///     faulty.inject(Some(Op::Write), None, Fault::DelayResponse(Duration::from_secs(2)), Some(1));
///     let request = WriteRequest {
///         key: "job".into(), condition: Condition::Absent, version: Version::random(),
///         lease_duration: Duration::from_secs(10), host: "a".into(),
///         token: TokenUpdate::Next { initial: 1 }, payload: None, released: false,
///         queue: Default::default(), granted_to: None, holder_detail: None,
///     };
///     let t0 = clock.now();
///     let write = tokio::spawn(async move { faulty.write(request).await });
///     tokio::task::yield_now().await;
///     assert!(store.get("job").is_some(), "applied at once");
///     assert!(!write.is_finished(), "but not answered yet");
///     write.await.unwrap().unwrap();
///     assert_eq!(clock.now() - t0, Duration::from_secs(2));
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Fail before the call reaches the store (nothing is written) with an
    /// error of this kind, e.g. `Throttled` or `Unavailable`.
    FailBefore(BackendErrorKind),
    /// Let the call reach the store and apply, then lose the response: the
    /// caller gets `OutcomeUnknown`.
    LoseResponse,
    /// Never answer (the future stays pending), as a hung connection; the
    /// call never reaches the store.
    Stall,
    /// Answer after this much time on the wrapper's clock; the call reaches
    /// the store at the end of the delay.
    Delay(Duration),
    /// Let the call reach the store and apply at once, then answer only after
    /// this much time on the wrapper's clock: a slow response. The write is
    /// in force before its caller hears of it, so this is the fault that
    /// tells a lease timed from the send (safe) from one timed from the
    /// response (unsafe) apart.
    DelayResponse(Duration),
    /// Let the call reach the store and apply, then never answer: a
    /// connection that hangs after the request went through.
    StallAfterApply,
    /// Panic before the call reaches the store: a bug in a backend. The
    /// engine must survive it (the waiter or releaser gets
    /// `LockError::Internal`) wherever the call runs, in a task of the
    /// engine's or in the caller's own.
    Panic,
}

/// How many faults of each kind a [`FaultyBackend`] injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// [`Fault::FailBefore`].
    pub fail_before: u64,
    /// [`Fault::LoseResponse`].
    pub lose_response: u64,
    /// [`Fault::Stall`].
    pub stall: u64,
    /// [`Fault::StallAfterApply`].
    pub stall_after_apply: u64,
    /// [`Fault::Delay`].
    pub delay: u64,
    /// [`Fault::DelayResponse`].
    pub delay_response: u64,
    /// [`Fault::Panic`].
    pub panic: u64,
}

impl FaultCounts {
    /// All faults.
    pub fn total(&self) -> u64 {
        self.fail_before
            + self.lose_response
            + self.stall
            + self.stall_after_apply
            + self.delay
            + self.delay_response
            + self.panic
    }

    fn count(&mut self, fault: &Fault) {
        let n = match fault {
            Fault::FailBefore(_) => &mut self.fail_before,
            Fault::LoseResponse => &mut self.lose_response,
            Fault::Stall => &mut self.stall,
            Fault::StallAfterApply => &mut self.stall_after_apply,
            Fault::Delay(_) => &mut self.delay,
            Fault::DelayResponse(_) => &mut self.delay_response,
            Fault::Panic => &mut self.panic,
        };
        *n += 1;
    }
}

impl std::ops::AddAssign for FaultCounts {
    fn add_assign(&mut self, o: FaultCounts) {
        self.fail_before += o.fail_before;
        self.lose_response += o.lose_response;
        self.stall += o.stall;
        self.stall_after_apply += o.stall_after_apply;
        self.delay += o.delay;
        self.delay_response += o.delay_response;
        self.panic += o.panic;
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed before the store, {} responses lost, {} delayed, {} responses delayed after applying, {} stalled, {} stalled after applying",
            self.fail_before,
            self.lose_response,
            self.delay,
            self.delay_response,
            self.stall,
            self.stall_after_apply
        )
    }
}

/// Faults drawn at random, from a seed, for calls no scripted rule matched.
///
/// The same seed and the same sequence of calls give the same faults, so a
/// failing simulation replays exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomFaults {
    /// The seed.
    pub seed: u64,
    /// Probability that a call fails before reaching the store (half
    /// `Throttled`, half `Unavailable`).
    pub fail_before: f64,
    /// Probability that a call applies and its response is lost.
    pub lose_response: f64,
    /// Probability that a call is delayed by up to
    /// [`max_delay`](RandomFaults::max_delay) before it reaches the store.
    pub delay: f64,
    /// Probability that a call applies at once and its response comes up to
    /// [`max_delay`](RandomFaults::max_delay) later ([`Fault::DelayResponse`]).
    pub delay_response: f64,
    /// Probability that a call never returns (half of them before reaching
    /// the store, [`Fault::Stall`], half after applying,
    /// [`Fault::StallAfterApply`]). Keep it small: the caller must time out.
    pub stall: f64,
    /// The longest injected delay, before or after the store.
    pub max_delay: Duration,
    /// The operations faults apply to (all if empty).
    pub ops: Vec<Op>,
}

impl RandomFaults {
    /// No faults at all, from `seed`.
    pub fn none(seed: u64) -> Self {
        RandomFaults {
            seed,
            fail_before: 0.0,
            lose_response: 0.0,
            delay: 0.0,
            delay_response: 0.0,
            stall: 0.0,
            max_delay: Duration::ZERO,
            ops: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Random {
    plan: RandomFaults,
    rng: StdRng,
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
/// use std::time::Duration;
/// let faulty = FaultyBackend::new(MemoryBackend::new());
/// faulty.inject(Some(Op::Write), None, Fault::LoseResponse, Some(1)); // next write: applied, response lost
/// faulty.inject(Some(Op::Read), None, Fault::FailBefore(BackendErrorKind::Throttled), None); // all reads throttled
/// faulty.inject(Some(Op::Write), Some("job"), Fault::DelayResponse(Duration::from_secs(2)), Some(1)); // applied now, answered in 2 s
/// assert_eq!(faulty.injected_by_kind().total(), 0); // counted when they hit a call
/// faulty.clear();
/// ```
#[derive(Clone, Debug)]
pub struct FaultyBackend<B> {
    inner: Arc<B>,
    rules: Arc<Mutex<VecDeque<Rule>>>,
    injected: Arc<AtomicU64>,
    by_kind: Arc<Mutex<FaultCounts>>,
    clock: Option<Arc<dyn Clock>>,
    random: Option<Arc<Mutex<Random>>>,
}

impl<B: LockBackend> FaultyBackend<B> {
    /// Wraps `inner` with no faults.
    pub fn new(inner: B) -> Self {
        FaultyBackend {
            inner: Arc::new(inner),
            rules: Arc::default(),
            injected: Arc::default(),
            by_kind: Arc::default(),
            clock: None,
            random: None,
        }
    }

    /// Also injects random faults drawn from `plan` into calls that no
    /// scripted rule matches.
    pub fn with_random(mut self, plan: RandomFaults) -> Self {
        let rng = StdRng::seed_from_u64(plan.seed);
        self.random = Some(Arc::new(Mutex::new(Random { plan, rng })));
        self
    }

    /// Uses `clock` for [`Fault::Delay`] and [`Fault::DelayResponse`]
    /// (default: the system clock).
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

    /// How many faults of each kind were injected so far.
    pub fn injected_by_kind(&self) -> FaultCounts {
        *self.by_kind.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, fault: &Fault) {
        self.injected.fetch_add(1, Ordering::Relaxed);
        self.by_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .count(fault);
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, VecDeque<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn random_fault(&self, op: Op) -> Option<Fault> {
        let mut random = self
            .random
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Random { plan, rng } = &mut *random;
        if !plan.ops.is_empty() && !plan.ops.contains(&op) {
            return None;
        }
        let roll: f64 = rng.gen();
        let delayed = plan.fail_before + plan.lose_response + plan.delay;
        let fault = if roll < plan.fail_before {
            Fault::FailBefore(if rng.gen_bool(0.5) {
                BackendErrorKind::Throttled
            } else {
                BackendErrorKind::Unavailable
            })
        } else if roll < plan.fail_before + plan.lose_response {
            Fault::LoseResponse
        } else if roll < delayed {
            Fault::Delay(plan.max_delay.mul_f64(rng.gen()))
        } else if roll < delayed + plan.delay_response {
            Fault::DelayResponse(plan.max_delay.mul_f64(rng.gen()))
        } else if roll < delayed + plan.delay_response + plan.stall {
            if rng.gen_bool(0.5) {
                Fault::Stall
            } else {
                Fault::StallAfterApply
            }
        } else {
            return None;
        };
        self.record(&fault);
        Some(fault)
    }

    fn take_fault(&self, op: Op, key: &str) -> Option<Fault> {
        let mut rules = self.rules();
        let Some(i) = rules.iter().position(|r| {
            r.op.is_none_or(|o| o == op) && r.key.as_deref().is_none_or(|k| k == key)
        }) else {
            drop(rules);
            return self.random_fault(op);
        };
        let fault = rules[i].fault.clone();
        if let Some(n) = rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
            }
        }
        self.record(&fault);
        Some(fault)
    }

    async fn sleep(&self, d: Duration) {
        match &self.clock {
            Some(c) => c.sleep(d).await,
            None => lynk_core::SystemClock.sleep(d).await,
        }
    }

    async fn before(&self, fault: &Option<Fault>) -> Result<(), BackendError> {
        match fault {
            Some(Fault::FailBefore(kind)) => {
                Err(BackendError::new(*kind, format!("injected fault: {kind}")))
            }
            Some(Fault::Stall) => std::future::pending().await,
            Some(Fault::Panic) => panic!("injected fault: the backend panicked"),
            Some(Fault::Delay(d)) => {
                self.sleep(*d).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What happens to the response once the store has acted.
    async fn after(&self, fault: &Option<Fault>) -> Result<(), BackendError> {
        match fault {
            Some(Fault::LoseResponse) => Err(lost()),
            Some(Fault::DelayResponse(d)) => {
                self.sleep(*d).await;
                Ok(())
            }
            Some(Fault::StallAfterApply) => std::future::pending().await,
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
        self.after(&fault).await?;
        out
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        let fault = self.take_fault(Op::Write, &request.key);
        self.before(&fault).await?;
        let out = self.inner.write(request).await;
        self.after(&fault).await?;
        out
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        // A transaction meets the first fault a write of one of its keys
        // would meet.
        let fault = requests
            .iter()
            .find_map(|r| self.take_fault(Op::Write, &r.key));
        self.before(&fault).await?;
        let out = self.inner.write_all(requests).await;
        self.after(&fault).await?;
        out
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        let fault = self.take_fault(Op::Delete, key);
        self.before(&fault).await?;
        let out = self.inner.delete(key, expected).await;
        self.after(&fault).await?;
        out
    }

    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        let fault = self.take_fault(Op::WriteQueue, &request.key);
        self.before(&fault).await?;
        let out = self.inner.write_queue(request).await;
        self.after(&fault).await?;
        out
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
