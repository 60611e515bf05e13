//! Replacing a held lease's payload without giving up the lease: a heartbeat
//! that carries the new payload.
//!
//! The write is a heartbeat in every respect that matters to safety:
//!
//! - it is sent under the lease's [`core`](LeaseShared::core) lock, so it is
//!   the only write of the lease in flight (the keeper's heartbeats skip
//!   while it runs, and a release waits for it), and it is conditioned on
//!   the version the previous write stored (`VersionIs(ours)`); the token is
//!   kept, the lease duration too;
//! - its version goes into the lease's pending writes before it is sent, so
//!   a lost response (or an answer given up at its time limit) is resolved
//!   later exactly as a heartbeat's is: a record carrying that version was
//!   written by it, and the lease is valid from its send
//!   ([`Engine::adopt_heartbeat`]). The holder never takes a version for its
//!   own unless the store showed it;
//! - each attempt is given up by the lease's lost-signal instant, as a
//!   heartbeat is, and a success renews the lease from its send instant.
//!
//! The new payload becomes the lease's payload (the one every later
//! heartbeat writes) before the first attempt is sent, under the same lock,
//! and stays so whatever the attempts come to: the store ends up holding it
//! with this write or with the next heartbeat that succeeds, and never goes
//! back to the old payload (which a write of unknown outcome followed by a
//! heartbeat carrying the old payload could otherwise do). The caller's
//! result says whether the store has confirmed it yet.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::keeper::lose;
use super::lease::LeaseShared;
use super::writes::OwnWrites;
use super::Engine;
use crate::{BackendError, BackendErrorKind, LockError, LostReason, WriteError};

/// What one attempt came to.
enum Step {
    /// The store holds the new payload, renewed from this send instant.
    Stored(Instant),
    /// A heartbeat of unknown outcome turned out to have applied (with the
    /// old payload): send again, over its version.
    Again,
    /// Worth retrying after a backoff.
    Retry(BackendError),
    /// The lease is gone.
    Lost(LostReason),
    /// The store failed in a way retrying cannot fix.
    Fatal(BackendError),
}

impl Engine {
    /// Makes `payload` the payload of the held `lease` (every later heartbeat
    /// writes it) and writes it into the record, conditioned on the lease's
    /// version. Retries retryable errors until the lease's lost-signal
    /// instant or [`ClientConfig::release_timeout`](crate::ClientConfig::release_timeout),
    /// whichever comes first. `Ok` once the store confirmed it.
    pub(crate) async fn set_payload(
        self: &Arc<Self>,
        lease: &Arc<LeaseShared>,
        payload: Option<Bytes>,
    ) -> Result<(), LockError> {
        let config = &self.config;
        // Waits for a heartbeat in flight (bounded by its call time limit)
        // or a release (which ends the lease; bounded by its timeout).
        let mut core = lease.core.lock().await;
        let give_up = self.clock.now() + config.release_timeout;
        if lease.is_ended() {
            return Err(lost_error(lease));
        }
        let previous = lease.payload();
        lease.replace_payload(payload.clone());
        let mut mine = OwnWrites::default();
        let mut backoff = config.initial_backoff;
        let mut last_error: Option<BackendError> = None;
        // An attempt of unknown outcome may have stored the new payload.
        let mut applied_maybe = false;
        loop {
            // Lost (the keeper's signal), or a release or detach began:
            // nothing more may be written for this lease.
            if lease.is_ended() {
                return Err(lost_error(lease));
            }
            let now = self.clock.now();
            let signal_at = lease.valid_from() + config.signal_after(lease.lease);
            if now >= signal_at {
                // No write renewed the lease in time: it is lost, as the
                // keeper would find at this instant.
                drop(core);
                lose(
                    self,
                    lease,
                    LostReason::HeartbeatsFailed {
                        last_error: last_error.clone(),
                    },
                );
                return Err(lost_error(lease));
            }
            let deadline = signal_at.min(give_up);
            let error = if now >= deadline {
                last_error.take()
            } else {
                let by = (now + config.call_timeout_for(lease.lease)).min(deadline);
                let out = self.heartbeat_request(
                    &lease.name,
                    &core.version,
                    lease.lease,
                    payload.clone(),
                );
                core.pending.push(out.version.clone(), out.sent);
                mine.push(out.version, out.sent);
                let step = match self.write_by(out.request, by).await {
                    Ok(record) => {
                        core.queue = record.queue;
                        core.version = record.version;
                        core.pending.clear();
                        Step::Stored(self.lease_start(out.sent))
                    }
                    Err(WriteError::ConditionFailed { current }) => {
                        match self.record_behind(current, &lease.name, by).await {
                            // Unresolved: the stored record is unknown.
                            Err(e) => Step::Retry(e),
                            Ok(None) => Step::Lost(LostReason::replaced_by(None)),
                            Ok(Some(r)) => match self.adopt_heartbeat(&mut core, &r) {
                                Some(from) if mine.sent_at(&r.version).is_some() => {
                                    Step::Stored(from)
                                }
                                Some(from) => {
                                    lease.set_valid_from(from);
                                    Step::Again
                                }
                                None => Step::Lost(LostReason::replaced_by(Some(&r))),
                            },
                        }
                    }
                    Err(WriteError::Backend(e)) if e.is_retryable() => {
                        applied_maybe |= e.kind() == BackendErrorKind::OutcomeUnknown;
                        Step::Retry(e)
                    }
                    Err(WriteError::Backend(e)) => Step::Fatal(e),
                };
                match step {
                    Step::Stored(from) => {
                        lease.set_valid_from(from);
                        if lease.is_ended() {
                            // Written, but the holder was already told the
                            // lease was gone: it is not a success.
                            return Err(lost_error(lease));
                        }
                        return Ok(());
                    }
                    Step::Again => continue,
                    Step::Lost(reason) => {
                        drop(core);
                        lose(self, lease, reason);
                        return Err(lost_error(lease));
                    }
                    Step::Retry(e) if self.clock.now() + backoff < deadline => {
                        tracing::debug!(lock = %lease.name, error = %e, "payload change failed, retrying");
                        last_error = Some(e);
                        self.clock.sleep(self.jitter(backoff)).await;
                        backoff = (backoff * 2).min(config.max_backoff);
                        continue;
                    }
                    Step::Fatal(e) if !applied_maybe => {
                        // Nothing was written and retrying cannot help (the
                        // store refuses this payload): heartbeats go back to
                        // the old one rather than meet the same refusal.
                        lease.replace_payload(previous);
                        return Err(LockError::from_backend(&lease.name, "payload change", e));
                    }
                    Step::Fatal(e) => Some(e),
                    Step::Retry(e) => Some(e),
                }
            };
            return Err(give_up_error(&lease.name, error));
        }
    }
}

/// The error of a lease that ended before or during the payload change.
fn lost_error(lease: &LeaseShared) -> LockError {
    LockError::Lost {
        name: lease.name.clone(),
        reason: lease
            .lost_reason()
            .unwrap_or(LostReason::Stolen { by: None }),
    }
}

/// The error of a payload change that gave up, after `error` (if any). The
/// lease still holds the lock and its heartbeats carry the new payload.
fn give_up_error(name: &str, error: Option<BackendError>) -> LockError {
    const STILL_HELD: &str = "the lock is still held and its heartbeats carry the new payload, so the store holds it after the next heartbeat that succeeds; call set_payload again to confirm";
    let (kind, last) = match &error {
        Some(e) => (e.kind(), e.to_string()),
        None => (
            BackendErrorKind::Unavailable,
            "no answer in time".to_owned(),
        ),
    };
    let source = BackendError::new(
        kind,
        format!("the store did not confirm the new payload ({last}); {STILL_HELD}"),
    );
    match kind {
        // Not `LockError::OutcomeUnknown`: its advice (the lease will expire
        // on its own) is for a release.
        BackendErrorKind::OutcomeUnknown => LockError::Backend {
            name: name.to_owned(),
            source,
        },
        _ => LockError::from_backend(name, "payload change", source),
    }
}
