//! The semaphore handle: a name, a permit count and a lease.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::core::{Command, SemaphoreCore, Waiter};
use super::permit::Permit;
use super::state::SemaphoreState;
use crate::config::{validate_lease, validate_name};
use crate::{LockClient, LockError};

/// The most permits one semaphore may have. Every permit is a line in the
/// semaphore's one record, which every renewal rewrites: 100 lines are about
/// 12 KB, 12 DynamoDB write units per write.
pub const MAX_PERMITS: u32 = 100;

/// A counting semaphore: at most `permits` holders of the name at once,
/// across every process that uses it. Made by [`LockClient::semaphore`];
/// creating it does no I/O.
///
/// Each [`Permit`] has its own fencing token, renewal, lost-lease signal and
/// clock-free takeover when its holder dies, as a mutex's lease does. All
/// permits of a name live in one record (see `docs/semaphore.md`), so a free
/// permit costs at most two requests (a read and the claiming write), one
/// write renews every permit a client holds under the name, and waiting
/// costs one read per poll interval per name however many tasks of the
/// client wait. Waiters of one client queue in FIFO order; clients queue in
/// the record in arrival order, and a free permit goes to the first of them.
#[derive(Clone, Debug)]
pub struct Semaphore {
    client: LockClient,
    /// This name's task, once used: kept while the handle lives, so what it
    /// observed (how long each permit line has stood still) carries over
    /// from one acquire to the next.
    core: Arc<OnceLock<Arc<SemaphoreCore>>>,
    name: String,
    permits: u32,
    lease: Duration,
}

impl LockClient {
    /// A counting semaphore called `name` with `permits` permits, held with
    /// the client's default lease.
    ///
    /// Every user of the name must give the same count: the count is stored
    /// with the permits, and an acquire that asks for another count fails
    /// with [`LockError::InvalidInput`] naming both. A count of zero or above
    /// [`MAX_PERMITS`] fails the same way when used.
    ///
    /// ```
    /// # use lynk_core::LockClient;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lynk_core::LockError> {
    /// # let client = LockClient::new(lynk_testkit_free_backend())?;
    /// let jobs = client.semaphore("nightly-jobs", 2);
    /// let first = jobs.acquire().await?;
    /// let second = jobs.acquire().await?;
    /// assert!(jobs.try_acquire().await?.is_none()); // both permits are taken
    /// assert!(first.fencing_token() < second.fencing_token());
    /// first.release().await?;
    /// # drop(second);
    /// # Ok(()) }
    /// # fn lynk_testkit_free_backend() -> impl lynk_core::LockBackend {
    /// #   use lynk_core::*;
    /// #   #[derive(Debug, Default)] struct B(std::sync::Mutex<Option<LockRecord>>);
    /// #   #[async_trait] impl LockBackend for B {
    /// #     async fn read(&self, _: &str) -> Result<Option<LockRecord>, BackendError> { Ok(self.0.lock().unwrap().clone()) }
    /// #     async fn write(&self, r: WriteRequest) -> Result<LockRecord, WriteError> {
    /// #       let mut s = self.0.lock().unwrap();
    /// #       if !r.condition.holds_for(s.as_ref()) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
    /// #       let rec = r.record_over(s.as_ref()); *s = Some(rec.clone()); Ok(rec) }
    /// #     async fn delete(&self, _: &str, v: &Version) -> Result<(), WriteError> { *self.0.lock().unwrap() = None; Ok(()) }
    /// #     fn capabilities(&self) -> Capabilities { Capabilities::minimal() }
    /// #   }
    /// #   B::default()
    /// # }
    /// ```
    pub fn semaphore(&self, name: impl Into<String>, permits: u32) -> Semaphore {
        Semaphore {
            client: self.clone(),
            core: Arc::default(),
            name: name.into(),
            permits,
            lease: self.engine.config.default_lease,
        }
    }
}

impl Semaphore {
    /// Uses `lease` for the permits this handle acquires.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The semaphore's name (the key of its record).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of permits.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The lease of the permits this handle acquires.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn validate(&self) -> Result<(), LockError> {
        validate_name(&self.name)?;
        validate_lease(self.lease)?;
        if self.permits == 0 || self.permits > MAX_PERMITS {
            return Err(LockError::invalid(
                "permits",
                format!(
                    "semaphore {:?} asks for {} permits; give between 1 and {MAX_PERMITS} (for one permit a mutex is cheaper: LockClient::create_lock)",
                    self.name, self.permits
                ),
            ));
        }
        if self.client.engine.is_closed() {
            return Err(LockError::ShutDown);
        }
        Ok(())
    }

    fn core(&self) -> Arc<SemaphoreCore> {
        self.core
            .get_or_init(|| {
                let engine = self.client.engine.clone();
                let name = self.name.clone();
                self.client
                    .registry
                    .shared(&self.name, move || SemaphoreCore::start(engine, name))
            })
            .clone()
    }

    async fn ask(
        &self,
        try_only: bool,
        deadline: Option<Instant>,
    ) -> Result<Option<Permit>, LockError> {
        self.validate()?;
        let core = self.core();
        let (reply, answer) = oneshot::channel();
        let sent = core.send(Command::Acquire(Waiter {
            permits: self.permits,
            lease: self.lease,
            try_only,
            reply,
        }));
        if !sent {
            return Err(LockError::ShutDown);
        }
        let started = self.client.engine.clock.now();
        let answer = match deadline {
            None => answer.await,
            Some(deadline) => {
                tokio::select! {
                    biased;
                    out = answer => out,
                    fired = self.client.engine.caller_deadline(deadline) => {
                        if !fired {
                            return Err(LockError::ShutDown);
                        }
                        return Err(LockError::NotGranted {
                            name: self.name.clone(),
                            waited: self.client.engine.clock.now().saturating_duration_since(started),
                            holder: None,
                            last_error: None,
                        });
                    }
                }
            }
        };
        match answer {
            Ok(Ok(Some(shared))) => Ok(Some(Permit {
                core,
                shared,
                released: false,
            })),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LockError::ShutDown),
        }
    }

    /// Waits for a permit.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a permit granted as the future is dropped is released.
    pub async fn acquire(&self) -> Result<Permit, LockError> {
        self.acquire_until(None).await
    }

    /// Waits at most `wait` for a permit; [`LockError::NotGranted`] after.
    ///
    /// # Cancel safety
    ///
    /// As for [`acquire`](Self::acquire).
    pub async fn acquire_timeout(&self, wait: Duration) -> Result<Permit, LockError> {
        let deadline = self.client.engine.clock.now() + wait;
        self.acquire_until(Some(deadline)).await
    }

    /// Waits for a permit until `deadline` (on the client's clock), or for
    /// ever with `None`.
    ///
    /// # Cancel safety
    ///
    /// As for [`acquire`](Self::acquire).
    pub async fn acquire_until(&self, deadline: Option<Instant>) -> Result<Permit, LockError> {
        match self.ask(false, deadline).await? {
            Some(permit) => Ok(permit),
            None => Err(LockError::Internal {
                name: self.name.clone(),
                during: "semaphore acquire",
            }),
        }
    }

    /// Takes a permit if one is free now (at most two requests when one is);
    /// `None` if every permit is held, or other tasks of this client are
    /// already waiting.
    ///
    /// # Cancel safety
    ///
    /// As for [`acquire`](Self::acquire).
    pub async fn try_acquire(&self) -> Result<Option<Permit>, LockError> {
        self.ask(true, None).await
    }

    /// Reads the semaphore's record: its permit count and who holds a permit.
    /// `None` if nothing is stored under the name.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn describe(&self) -> Result<Option<SemaphoreState>, LockError> {
        validate_name(&self.name)?;
        let record = self.client.engine.describe(&self.name).await?;
        SemaphoreState::from_record(&self.name, record)
    }
}
