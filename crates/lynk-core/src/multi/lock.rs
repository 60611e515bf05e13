//! The multi-lock handle and its acquisition.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use tracing::Instrument;

use crate::config::{validate_lease, validate_name, validate_payload};
use crate::{LockClient, LockError, LockGuard, MultiGuard};

/// The most names one [`MultiLock`] may hold: 100, the item limit of one
/// DynamoDB `TransactWriteItems` request, so that a transactional
/// acquisition of the same set stays possible on DynamoDB. More names are
/// refused with [`LockError::InvalidInput`] on every backend.
pub const MAX_MULTI_LOCK_NAMES: usize = 100;

impl LockClient {
    /// A handle to acquire the locks called `names` together, all or
    /// nothing, with the client's default lease. Does no I/O; the names are
    /// checked when the multi-lock is acquired.
    ///
    /// The order of `names` does not matter: they are always acquired in byte
    /// order, so two multi-locks over overlapping sets never deadlock.
    ///
    /// # Example
    ///
    /// ```
    /// use lynk_core::LockClient;
    /// # use std::collections::HashMap;
    /// # use std::sync::Mutex;
    /// # use lynk_core::{BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest};
    /// # #[derive(Debug, Default)] struct MyBackend(Mutex<HashMap<String, LockRecord>>);
    /// # #[async_trait::async_trait] impl LockBackend for MyBackend {
    /// #   async fn read(&self, k: &str) -> Result<Option<LockRecord>, BackendError> { Ok(self.0.lock().unwrap().get(k).cloned()) }
    /// #   async fn write(&self, r: WriteRequest) -> Result<LockRecord, WriteError> {
    /// #     let mut m = self.0.lock().unwrap(); let cur = m.get(&r.key);
    /// #     if !r.condition.holds_for(cur) { return Err(WriteError::ConditionFailed { current: cur.cloned() }); }
    /// #     let rec = r.record_over(cur); m.insert(r.key.clone(), rec.clone()); Ok(rec) }
    /// #   async fn delete(&self, k: &str, v: &Version) -> Result<(), WriteError> {
    /// #     let mut m = self.0.lock().unwrap();
    /// #     if m.get(k).map(|r| &r.version) != Some(v) { return Err(WriteError::ConditionFailed { current: m.get(k).cloned() }); }
    /// #     m.remove(k); Ok(()) }
    /// #   fn capabilities(&self) -> Capabilities { Capabilities::minimal() }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lynk_core::LockError> {
    /// let client = LockClient::new(MyBackend::default())?;
    /// let guard = client
    ///     .multi_lock(["account/bob", "account/alice"]) // any order; taken as alice, bob
    ///     .acquire()
    ///     .await?;
    /// // Each name has its own fencing token: send each with writes to its resource.
    /// let alice = guard.fencing_token("account/alice").expect("held");
    /// let bob = guard.fencing_token("account/bob").expect("held");
    /// guard
    ///     .run(async { /* move money; cancelled if any lock is lost */ })
    ///     .await?;
    /// guard.release().await?; // releases both
    /// # let _ = (alice, bob); Ok(()) }
    /// ```
    pub fn multi_lock(&self, names: impl IntoIterator<Item = impl Into<String>>) -> MultiLock {
        MultiLock {
            client: self.clone(),
            names: names.into_iter().map(Into::into).collect(),
            lease: self.config().default_lease,
            payload: None,
        }
    }
}

/// A handle to several lock names acquired together, all or nothing; made by
/// [`LockClient::multi_lock`]. Creating it does no I/O.
///
/// Acquisition takes the names one after another in byte order (the order
/// of [`str`]'s `Ord`), through the same engine as
/// [`Lock::acquire`](crate::Lock::acquire): while it waits for a later name,
/// it holds the earlier ones. If any name cannot be taken, the names already
/// taken are released (and those releases awaited) before the error is
/// returned.
#[derive(Clone)]
#[must_use = "a multi-lock handle does nothing until acquired"]
pub struct MultiLock {
    client: LockClient,
    /// As given; sorted and checked when acquired.
    names: Vec<String>,
    lease: Duration,
    payload: Option<Bytes>,
}

impl fmt::Debug for MultiLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLock")
            .field("names", &self.names)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl MultiLock {
    /// Uses `lease` for every name instead of the client's default lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Writes `payload` into every name's record while held (as
    /// [`Lock::with_payload`](crate::Lock::with_payload)).
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// The lease each name is acquired with.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The names as given (the acquisition order is their byte order).
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter().map(String::as_str)
    }

    /// Acquires every name, waiting as long as it takes.
    ///
    /// Names are taken in byte order, each as
    /// [`Lock::acquire`](crate::Lock::acquire) would take it; the earlier
    /// names stay held while a later one is waited for. On an error, the
    /// names already taken are released (the releases are awaited; one that
    /// fails is logged and its lease expires on its own) and the error is
    /// returned: it is the engine's error for the name that could not be
    /// taken, and names it.
    ///
    /// Bad inputs (no names, more than [`MAX_MULTI_LOCK_NAMES`], a name
    /// repeated, an invalid name, lease or payload) are
    /// [`LockError::InvalidInput`], before anything is sent to the store.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped half way, the guards of the
    /// names already taken are dropped, which releases them in the
    /// background, and the wait for the current name is left as
    /// [`Lock::acquire`](crate::Lock::acquire) leaves it. Nothing stays held
    /// beyond those background releases. If it is dropped while releasing
    /// after a failure, those releases complete in tasks of their own.
    pub async fn acquire(&self) -> Result<MultiGuard, LockError> {
        self.acquire_until(None).await
    }

    /// Acquires every name, waiting at most `wait` in all: the deadline is
    /// shared by all names, not granted to each. After it, the names taken
    /// are released and the result is [`LockError::NotGranted`] for the name
    /// that was still being waited for, with `waited` counted from the start
    /// of this call.
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](MultiLock::acquire).
    pub async fn acquire_timeout(&self, wait: Duration) -> Result<MultiGuard, LockError> {
        // A wait too long to represent (e.g. `Duration::MAX`) is no limit.
        let deadline = self.client.clock().now().checked_add(wait);
        self.acquire_until(deadline).await
    }

    /// Acquires every name, waiting until `deadline` on the client's clock
    /// (`None`: no limit), as [`acquire_timeout`](MultiLock::acquire_timeout).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](MultiLock::acquire).
    pub async fn acquire_until(&self, deadline: Option<Instant>) -> Result<MultiGuard, LockError> {
        let names = self.checked_names()?;
        let span = tracing::info_span!("lynk.multi_acquire", locks = names.len());
        async {
            let started = self.client.clock().now();
            if let Some(all) = self.all_at_once(&names).await {
                return Ok(all);
            }
            // A name taken earlier can be lost while a later one is waited
            // for (its heartbeats failed): a guard is never handed out lost,
            // so everything is given back and taken again, in order.
            'again: loop {
                let mut held: Vec<LockGuard> = Vec::with_capacity(names.len());
                for name in &names {
                    match self.lock(name).acquire_until(deadline).await {
                        Ok(guard) => held.push(guard),
                        Err(mut e) => {
                            if let LockError::NotGranted { waited, .. } = &mut e {
                                *waited =
                                    self.client.clock().now().saturating_duration_since(started);
                            }
                            tracing::debug!(lock = %name, error = %e, released = held.len(), "multi-lock not acquired; releasing the names taken");
                            release_all(held).await;
                            return Err(e);
                        }
                    }
                    if let Some(lost) = held.iter().find(|g| g.is_lost()) {
                        tracing::debug!(lock = %lost.name(), "a name of the multi-lock was lost while acquiring the others; starting over");
                        release_all(held).await;
                        continue 'again;
                    }
                }
                return Ok(MultiGuard::new(held));
            }
        }
        .instrument(span)
        .await
    }

    /// Tries to acquire every name without waiting for any: `Ok(None)` if
    /// one of them is held (by another client, or by another handle of this
    /// process); the names taken before it are then released first.
    ///
    /// Names are tried in byte order, each as
    /// [`Lock::try_acquire`](crate::Lock::try_acquire) tries it (at most one
    /// conditional write each). An error is handled as in
    /// [`acquire`](MultiLock::acquire).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](MultiLock::acquire).
    pub async fn try_acquire(&self) -> Result<Option<MultiGuard>, LockError> {
        let names = self.checked_names()?;
        let span = tracing::info_span!("lynk.multi_try_acquire", locks = names.len());
        async {
            if let Some(all) = self.all_at_once(&names).await {
                return Ok(Some(all));
            }
            let mut held: Vec<LockGuard> = Vec::with_capacity(names.len());
            for name in &names {
                let outcome = self.lock(name).try_acquire().await;
                match outcome {
                    Ok(Some(guard)) => held.push(guard),
                    Ok(None) => {
                        tracing::debug!(lock = %name, released = held.len(), "multi-lock busy; releasing the names taken");
                        release_all(held).await;
                        return Ok(None);
                    }
                    Err(e) => {
                        tracing::debug!(lock = %name, error = %e, released = held.len(), "multi-lock not acquired; releasing the names taken");
                        release_all(held).await;
                        return Err(e);
                    }
                }
            }
            if held.iter().any(LockGuard::is_lost) {
                // Lost while the others were tried: not a guard to hand out.
                release_all(held).await;
                return Ok(None);
            }
            Ok(Some(MultiGuard::new(held)))
        }
        .instrument(span)
        .await
    }

    /// The fast path on a backend with transactions: every name free (here
    /// and in the store) is taken in one transaction (see
    /// `engine/transact.rs`). `None`: acquire one by one.
    async fn all_at_once(&self, names: &[String]) -> Option<MultiGuard> {
        let spec = crate::engine::AcquireSpec {
            lease: self.lease,
            payload: self.payload.clone(),
            heartbeat: true,
        };
        // In a task of its own: if this future is dropped half way, the
        // transaction still ends its reservations (local waiters of these
        // names would otherwise wait for ever), and leases it won for nobody
        // are dropped, which releases them.
        let engine = self.client.engine.clone();
        let names = names.to_vec();
        let task = self
            .client
            .engine
            .spawn_tracked(async move { engine.acquire_all_at_once(&names, &spec).await });
        let handles = task.await.ok().flatten()?;
        Some(MultiGuard::new(
            handles.into_iter().map(LockGuard::new).collect(),
        ))
    }

    fn lock(&self, name: &str) -> crate::Lock {
        let lock = self.client.create_lock(name).with_lease(self.lease);
        match &self.payload {
            Some(p) => lock.with_payload(p.clone()),
            None => lock,
        }
    }

    /// The names in acquisition (byte) order, after checking every input.
    fn checked_names(&self) -> Result<Vec<String>, LockError> {
        const WHAT: &str = "lock names";
        if self.names.is_empty() {
            return Err(LockError::invalid(
                WHAT,
                "the multi-lock has no names; give it at least one lock name",
            ));
        }
        if self.names.len() > MAX_MULTI_LOCK_NAMES {
            return Err(LockError::invalid(
                WHAT,
                format!(
                    "the multi-lock has {} names; the limit is {MAX_MULTI_LOCK_NAMES} (MAX_MULTI_LOCK_NAMES, the item limit of one DynamoDB TransactWriteItems); lock fewer names, e.g. one name that stands for a group",
                    self.names.len()
                ),
            ));
        }
        for (i, name) in self.names.iter().enumerate() {
            if let Err(LockError::InvalidInput { what, problem }) = validate_name(name) {
                return Err(LockError::invalid(
                    what,
                    format!("name {} of the multi-lock: {problem}", i + 1),
                ));
            }
        }
        let mut sorted = self.names.clone();
        sorted.sort_unstable();
        if let Some(twice) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(LockError::invalid(
                WHAT,
                format!(
                    "name {:?} appears twice in the multi-lock; list each name once",
                    twice[0]
                ),
            ));
        }
        validate_lease(self.lease)?;
        if let Some(p) = &self.payload {
            validate_payload(p)?;
        }
        Ok(sorted)
    }
}

/// Releases `guards` concurrently and waits for all of them. A failed
/// release is logged: its lease runs out on its own.
async fn release_all(guards: Vec<LockGuard>) {
    let names: Vec<String> = guards.iter().map(|g| g.name().to_owned()).collect();
    let results = join_all(guards.into_iter().map(LockGuard::release)).await;
    for (name, result) in names.iter().zip(results) {
        if let Err(e) = result {
            tracing::warn!(lock = %name, error = %e, "releasing a name of a multi-lock that was not acquired failed; its lease will run out");
        }
    }
}
