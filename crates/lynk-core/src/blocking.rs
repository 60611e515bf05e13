//! A blocking facade for code that does not use async, such as the original
//! lynk's two-thread quickstart.
//!
//! A [`LockFactory`] owns a small tokio runtime (one worker thread) that runs
//! heartbeats and store requests; every method blocks the calling thread
//! until its async counterpart completes. Share the factory between threads
//! by cloning it.
//!
//! ```
//! use lynk_core::blocking::LockFactory;
//! use lynk_core::LockClient;
//! # use lynk_core::{BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest};
//! # #[derive(Debug, Default)] struct MyBackend(std::sync::Mutex<Option<LockRecord>>);
//! # #[async_trait::async_trait] impl LockBackend for MyBackend {
//! #   async fn read(&self, _: &str) -> Result<Option<LockRecord>, BackendError> { Ok(self.0.lock().unwrap().clone()) }
//! #   async fn write(&self, r: WriteRequest) -> Result<LockRecord, WriteError> {
//! #     let mut s = self.0.lock().unwrap();
//! #     if !r.condition.holds_for(s.as_ref()) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
//! #     let rec = r.record_over(s.as_ref()); *s = Some(rec.clone()); Ok(rec) }
//! #   async fn delete(&self, _: &str, v: &Version) -> Result<(), WriteError> {
//! #     let mut s = self.0.lock().unwrap();
//! #     if s.as_ref().map(|r| &r.version) != Some(v) { return Err(WriteError::ConditionFailed { current: s.clone() }); }
//! #     *s = None; Ok(()) }
//! #   fn capabilities(&self) -> Capabilities { Capabilities::minimal() }
//! # }
//!
//! # fn main() -> Result<(), lynk_core::LockError> {
//! let factory = LockFactory::new(|| LockClient::new(MyBackend::default()))?;
//! let worker = {
//!     let factory = factory.clone();
//!     std::thread::spawn(move || -> Result<(), lynk_core::LockError> {
//!         let lock = factory.create_lock("my lock");
//!         let guard = lock.acquire()?;
//!         // ... work ...
//!         guard.release()
//!     })
//! };
//! worker.join().unwrap()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{FencingToken, LockClient, LockError, LostReason, ShutdownReport};

struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("runtime taken only on drop"))
    }

    /// Runs `f` on this runtime, blocking the calling thread. Called from
    /// inside another tokio runtime (where blocking in place would panic),
    /// it blocks on a helper thread instead: the caller's worker thread is
    /// still blocked, as a blocking call must, but nothing panics.
    fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let rt = self.get();
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(f);
        }
        std::thread::scope(|scope| {
            match std::thread::Builder::new()
                .name("lynk-blocking".into())
                .spawn_scoped(scope, || rt.block_on(f))
            {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(e) => panic!("lynk could not start a thread to block on: {e}"),
            }
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            // Safe to drop from anywhere, including inside another runtime.
            rt.shutdown_background();
        }
    }
}

/// A blocking lock factory: the original lynk's `LockFactory`.
#[derive(Clone)]
pub struct LockFactory {
    client: LockClient,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for LockFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFactory")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl LockFactory {
    /// Starts the factory's runtime and builds the client with `make`, which
    /// runs inside that runtime (so `LockClient::builder(..).build()` works
    /// there). Must not be called from async code.
    pub fn new(make: impl FnOnce() -> Result<LockClient, LockError>) -> Result<Self, LockError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lynk-runtime")
            .enable_all()
            .build()
            .map_err(|e| LockError::invalid("runtime", format!("could not start one: {e}")))?;
        let client = {
            let _enter = rt.enter();
            make()?
        };
        Ok(LockFactory {
            client,
            runtime: Arc::new(Runtime(Some(rt))),
        })
    }

    /// Runs `future` to completion on the factory's runtime, blocking this
    /// thread. Useful to build an async client that needs I/O to start.
    ///
    /// Like every method of this module it may be called from inside a tokio
    /// runtime too (it then blocks that runtime's thread, as any blocking
    /// call does); async code should use the async [`LockClient`] instead.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        self.runtime.block_on(future)
    }

    /// A blocking handle to the lock called `name`. Does no I/O.
    pub fn create_lock(&self, name: impl Into<String>) -> Lock {
        Lock {
            lock: self.client.create_lock(name),
            runtime: self.runtime.clone(),
        }
    }

    /// The async client underneath.
    pub fn client(&self) -> &LockClient {
        &self.client
    }

    /// Releases every held lock; see [`LockClient::shutdown`].
    pub fn shutdown(&self) -> ShutdownReport {
        self.runtime.block_on(self.client.shutdown())
    }
}

/// A blocking handle to one lock name.
#[derive(Clone)]
pub struct Lock {
    lock: crate::Lock,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lock.fmt(f)
    }
}

impl Lock {
    /// Uses `lease` instead of the default lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lock = self.lock.with_lease(lease);
        self
    }

    /// Holds the lock without background heartbeats; see
    /// [`crate::Lock::without_heartbeat`].
    pub fn without_heartbeat(mut self) -> Self {
        self.lock = self.lock.without_heartbeat();
        self
    }

    /// Attaches `payload` to the record while held.
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.lock = self.lock.with_payload(payload);
        self
    }

    /// Blocks until the lock is acquired; see [`crate::Lock::acquire`].
    pub fn acquire(&self) -> Result<LockGuard, LockError> {
        self.wrap(self.runtime.block_on(self.lock.acquire()))
    }

    /// Blocks at most `wait`; see [`crate::Lock::acquire_timeout`].
    pub fn acquire_timeout(&self, wait: Duration) -> Result<LockGuard, LockError> {
        self.wrap(self.runtime.block_on(self.lock.acquire_timeout(wait)))
    }

    /// One attempt; `Ok(None)` if the lock is held. See [`crate::Lock::try_acquire`].
    pub fn try_acquire(&self) -> Result<Option<LockGuard>, LockError> {
        let guard = self.runtime.block_on(self.lock.try_acquire())?;
        Ok(guard.map(|g| LockGuard {
            guard: Some(g),
            runtime: self.runtime.clone(),
        }))
    }

    fn wrap(&self, r: Result<crate::LockGuard, LockError>) -> Result<LockGuard, LockError> {
        r.map(|g| LockGuard {
            guard: Some(g),
            runtime: self.runtime.clone(),
        })
    }
}

/// A blocking guard. Dropping it releases the lock and waits for the release
/// to be written (when dropped outside async code).
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    guard: Option<crate::LockGuard>,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.guard.fmt(f)
    }
}

impl LockGuard {
    fn get(&self) -> &crate::LockGuard {
        self.guard
            .as_ref()
            .unwrap_or_else(|| unreachable!("guard taken only by release and drop"))
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        self.get().name()
    }

    /// This acquisition's fencing token.
    pub fn fencing_token(&self) -> FencingToken {
        self.get().fencing_token()
    }

    /// `true` once the lease is lost.
    pub fn is_lost(&self) -> bool {
        self.get().is_lost()
    }

    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.get().lost_reason()
    }

    /// The async guard, e.g. for its lost-lease token.
    pub fn as_async(&self) -> &crate::LockGuard {
        self.get()
    }

    /// Releases the lock and waits until the release is written.
    pub fn release(mut self) -> Result<(), LockError> {
        match self.guard.take() {
            Some(g) => self.runtime.block_on(g.release()),
            None => Ok(()),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                drop(g); // inside async code: release in the background
            } else if let Err(e) = self.runtime.block_on(g.release()) {
                tracing::warn!(error = %e, "release on drop failed");
            }
        }
    }
}
