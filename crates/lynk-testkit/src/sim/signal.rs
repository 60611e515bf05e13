//! A value tasks can wait on, waking them in a fixed order.
//!
//! tokio's `watch` channel registers each waiter on one of eight internal
//! notifiers chosen at random, so the order in which waiters wake (and so
//! the order the simulated hosts act in) would differ from run to run. A
//! run must be a pure function of its seed; this signal wakes waiters in
//! the order they started waiting.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug)]
pub(super) struct Signal<T> {
    value: Mutex<T>,
    changed: Notify,
}

impl<T: Copy + PartialEq> Signal<T> {
    pub(super) fn new(value: T) -> Self {
        Signal {
            value: Mutex::new(value),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self) -> T {
        *self.lock()
    }

    pub(super) fn set(&self, value: T) {
        *self.lock() = value;
        self.changed.notify_waiters();
    }

    /// Sets `value` unless it is set already; `false` if it was.
    pub(super) fn set_if_not(&self, value: T) -> bool {
        let mut v = self.lock();
        if *v == value {
            return false;
        }
        *v = value;
        drop(v);
        self.changed.notify_waiters();
        true
    }

    /// Waits until the value satisfies `ready`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(super) async fn wait_for(&self, ready: impl Fn(T) -> bool) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let v = self.get();
            if ready(v) {
                return v;
            }
            notified.await;
        }
    }
}
