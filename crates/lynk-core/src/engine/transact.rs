//! Taking several free locks in one transaction: the fast path of a
//! multi-lock on a backend with [`write_all`](crate::LockBackend::write_all).
//!
//! The names are reserved in this client's slots first (only names with no
//! local holder, waiter, acquirer or write of unknown outcome), read, and
//! if every record is free (absent, or released with nobody queued and no
//! grant), written in one transaction, each conditioned on exactly the record
//! read, so the stored records are known without the store returning them.
//! On success each name gets a lease timed from the transaction's send
//! instant, as a single acquisition's is. Anything else (a name busy here or
//! in the store, a conflict, an error) ends the reservations and the caller
//! falls back to ordered acquisition; a transaction of unknown outcome leaves
//! its versions to the next acquirer of each name, which recognises the
//! records as its own if the transaction applied.

use std::sync::Arc;

use futures::future::join_all;

use super::handle::LeaseHandle;
use super::writes::OwnWrites;
use super::{AcquireSpec, Engine};
use crate::metrics::Metrics;
use crate::{Condition, FencingToken, LockRecord, QueueUpdate, WriteError};

impl Engine {
    /// Takes every name of `names` (distinct) in one transaction if each is
    /// free; `None` when this fast path does not apply and the caller should
    /// acquire one by one.
    pub(crate) async fn acquire_all_at_once(
        self: &Arc<Self>,
        names: &[String],
        spec: &AcquireSpec,
    ) -> Option<Vec<LeaseHandle>> {
        if names.len() < 2
            || !self.backend.capabilities().transactions
            || self.is_closed()
            || !self.slots.reserve(names)
        {
            return None;
        }
        let deadline = self.clock.now() + self.config.call_timeout_for(spec.lease);
        let reads = join_all(names.iter().map(|n| self.read_by(n, deadline))).await;
        let mut seen: Vec<Option<LockRecord>> = Vec::with_capacity(names.len());
        for read in reads {
            match read {
                Ok(record) if record.as_ref().is_none_or(free) => seen.push(record),
                _ => return self.end_all(names),
            }
        }
        if seen.iter().any(|r| {
            r.as_ref()
                .and_then(|r| r.fencing_token)
                .is_some_and(|t| t.get() >= u64::MAX - 1)
        }) {
            return self.end_all(names);
        }
        let outgoing: Vec<_> = names
            .iter()
            .zip(&seen)
            .map(|(name, record)| {
                let condition = match record {
                    Some(r) => Condition::VersionIs(r.version.clone()),
                    None => Condition::Absent,
                };
                self.acquire_request(name, condition, QueueUpdate::Keep, spec)
            })
            .collect();
        let requests = outgoing.iter().map(|o| o.request.clone()).collect();
        let deadline = self.clock.now() + self.config.call_timeout_for(spec.lease);
        let out = tokio::select! {
            biased;
            out = self.backend.write_all(requests) => Some(out),
            _ = self.clock.sleep_until(deadline) => None,
        };
        match out {
            Some(Ok(())) => {
                let mut handles = Vec::with_capacity(names.len());
                for (o, record) in outgoing.iter().zip(&seen) {
                    let stored = o.request.record_over(record.as_ref());
                    self.observe_token(&stored);
                    Metrics::inc(&self.metrics.acquired);
                    let lease =
                        self.new_lease(&stored, o.sent, FencingToken::new(0), spec.heartbeat);
                    let start = self.slots.end_reservation(
                        &stored.key,
                        Some(&lease),
                        &OwnWrites::default(),
                    );
                    self.start_acquirer(start);
                    handles.push(self.adopt(lease));
                }
                Some(handles)
            }
            Some(Err(WriteError::ConditionFailed { .. })) => self.end_all(names),
            Some(Err(WriteError::Backend(e)))
                if e.kind() != crate::BackendErrorKind::OutcomeUnknown =>
            {
                self.end_all(names)
            }
            // Unknown outcome: each name's next acquirer treats the version
            // as its own, so an applied transaction is recognised.
            _ => {
                for (name, o) in names.iter().zip(&outgoing) {
                    let mine = OwnWrites::one(o.version.clone(), o.sent);
                    let start = self.slots.end_reservation(name, None, &mine);
                    self.start_acquirer(start);
                }
                None
            }
        }
    }

    /// Ends every reservation without taking anything.
    fn end_all(self: &Arc<Self>, names: &[String]) -> Option<Vec<LeaseHandle>> {
        for name in names {
            let start = self
                .slots
                .end_reservation(name, None, &OwnWrites::default());
            self.start_acquirer(start);
        }
        None
    }
}

/// A record a transaction may take: released, not granted to anyone, and
/// with no process queued for it.
fn free(r: &LockRecord) -> bool {
    r.released && r.granted_to.is_none() && r.queue.is_empty()
}
