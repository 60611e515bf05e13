//! The errors of the lock engine.

use std::fmt;
use std::time::Duration;

use crate::{BackendError, BackendErrorKind};

/// Why a held lease ended without the holder releasing it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// Heartbeats failed or stalled, and the lease reached the point where the
    /// holder can no longer be sure nobody else holds the lock.
    HeartbeatsFailed {
        /// The last heartbeat error, if one was seen (none means they stalled).
        last_error: Option<BackendError>,
    },
    /// Another client's record replaced ours: the lock was **taken over**
    /// (by a waiter that saw the lease stand still, e.g. after a pause).
    Stolen {
        /// The host identifier of the record found instead of ours, if any.
        by: Option<String>,
    },
    /// Somebody else marked the lock released (an operator's
    /// `lynk release --force`, or `LockClient::release_version`) or granted
    /// it to a queued waiter: nobody took it over.
    ReleasedByOther {
        /// The host identifier the releasing write left in the record.
        by: String,
    },
    /// The lock's record was deleted (by an operator, a TTL, or a client
    /// releasing with `ReleaseMode::Delete`).
    Deleted,
    /// The store reported an error that retrying cannot fix (e.g. the table
    /// was deleted).
    BackendFailed {
        /// The error.
        error: BackendError,
    },
    /// [`LockClient::shutdown`](crate::LockClient::shutdown) released the lock.
    ClientShutDown,
    /// The lock was held without heartbeats
    /// ([`Lock::without_heartbeat`](crate::Lock::without_heartbeat)) and its
    /// lease is running out.
    LeaseRanOut,
    /// The acquisition got the largest possible fencing token and was
    /// released at once; see [`LockError::TokenExhausted`].
    TokenExhausted,
}

impl LostReason {
    /// Why a lease ended, from the record found instead of the holder's own:
    /// none (deleted), a released record or a grant (released by someone
    /// else), or another holder's record (taken over).
    pub(crate) fn replaced_by(current: Option<&crate::LockRecord>) -> Self {
        match current {
            None => LostReason::Deleted,
            Some(r) if r.released || r.granted_to.is_some() => {
                LostReason::ReleasedByOther { by: r.host.clone() }
            }
            Some(r) => LostReason::Stolen {
                by: Some(r.host.clone()),
            },
        }
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::HeartbeatsFailed {
                last_error: Some(e),
            } => write!(
                f,
                "heartbeats failed until the lease ran out (last error: {e})"
            ),
            LostReason::HeartbeatsFailed { last_error: None } => {
                f.write_str("heartbeats stalled until the lease ran out")
            }
            LostReason::Stolen { by: Some(by) } => write!(f, "the lock was taken over by {by}"),
            LostReason::Stolen { by: None } => f.write_str("the lock record was removed"),
            LostReason::ReleasedByOther { by } => write!(
                f,
                "the lock was released by someone else (the record now says released, written by {by}), e.g. by `lynk release --force`"
            ),
            LostReason::Deleted => f.write_str("the lock record was deleted"),
            LostReason::BackendFailed { error } => write!(f, "the store failed: {error}"),
            LostReason::ClientShutDown => f.write_str("the client was shut down"),
            LostReason::LeaseRanOut => {
                f.write_str("the lease ran out (held without heartbeats); finish sooner or choose a longer lease")
            }
            LostReason::TokenExhausted => f.write_str("its fencing token is exhausted"),
        }
    }
}

/// An error from the lock engine.
///
/// Match on the variant to learn what happened; call
/// [`is_retryable`](LockError::is_retryable) to learn whether trying the same
/// thing again may help.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// `acquire` waited as long as it was allowed to and the lock was not granted.
    #[error("{}", not_granted(name, *waited, holder.as_deref(), last_error.as_ref()))]
    NotGranted {
        /// The lock name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
        /// The holder's host identifier, if known.
        holder: Option<String>,
        /// The last store error seen while waiting, if the store was failing
        /// (the wait may have been spent retrying it rather than behind a holder).
        last_error: Option<BackendError>,
    },
    /// The lease was lost: stop touching the protected resource.
    #[error(
        "lock {name:?} was lost: {reason}; stop using the protected resource and acquire again"
    )]
    Lost {
        /// The lock name.
        name: String,
        /// Why.
        reason: LostReason,
    },
    /// The store throttled the request and retries within the budget did not succeed.
    #[error("lock {name:?}: the store is throttling requests ({source}); retry later, or raise the table's capacity")]
    Throttled {
        /// The lock name.
        name: String,
        /// The backend's error.
        source: BackendError,
    },
    /// The store could not be reached.
    #[error("lock {name:?}: the store is unavailable ({source}); check the endpoint and network, then retry")]
    Unavailable {
        /// The lock name.
        name: String,
        /// The backend's error.
        source: BackendError,
    },
    /// The outcome of a write could not be confirmed.
    #[error("lock {name:?}: could not confirm whether the {operation} was applied ({source}); the lease will expire on its own if it was")]
    OutcomeUnknown {
        /// The lock name.
        name: String,
        /// The operation, e.g. "release".
        operation: &'static str,
        /// The backend's error.
        source: BackendError,
    },
    /// Any other store error (missing table, access denied, ...). The message
    /// says what to fix.
    #[error("lock {name:?}: {source}")]
    Backend {
        /// The lock name.
        name: String,
        /// The backend's error.
        source: BackendError,
    },
    /// An argument was invalid; nothing was sent to the store.
    #[error("invalid {what}: {problem}")]
    InvalidInput {
        /// What was invalid, e.g. "lock name".
        what: &'static str,
        /// What is wrong and what to do instead.
        problem: String,
    },
    /// The client was shut down; create a new one.
    #[error("the lock client was shut down; create a new client to acquire locks")]
    ShutDown,
    /// The lock's fencing token reached `u64::MAX`: no higher token can be
    /// handed out, so the lock is refused rather than granted with a token
    /// that does not increase. Nothing short of a new lock name fixes it.
    #[error("lock {name:?}: its fencing token reached the largest possible value ({}), so no acquisition can get a higher one; use a new lock name (and let the protected resource know the new name's tokens)", u64::MAX)]
    TokenExhausted {
        /// The lock name.
        name: String,
    },
    /// The lock engine failed (a bug in lynk: please report it). Nothing is
    /// held; trying again starts afresh.
    #[error("lock {name:?}: the lock engine failed during {during} (a bug in lynk: please report it); try again")]
    Internal {
        /// The lock name.
        name: String,
        /// What the engine was doing, e.g. "acquire".
        during: &'static str,
    },
}

fn not_granted(
    name: &str,
    waited: Duration,
    holder: Option<&str>,
    last_error: Option<&BackendError>,
) -> String {
    if waited.is_zero() && last_error.is_none() {
        // A single try (`try_acquire`, `--wait 0`): nothing was waited for.
        return match holder {
            Some(h) => format!(
                "lock {name:?} is held by {h} and was not waited for; wait for it, or read its record to see why it is held"
            ),
            None => format!(
                "lock {name:?} is held by another client and was not waited for; wait for it, or read its record to see who holds it"
            ),
        };
    }
    let waited = human_duration(waited);
    match (holder, last_error) {
        (_, Some(e)) => format!(
            "lock {name:?} was not granted within {waited}: the store kept failing ({e}); check the store, then retry"
        ),
        (Some(h), None) => format!(
            "lock {name:?} was not granted within {waited}: held by {h}; wait longer, or read its record to see why"
        ),
        (None, None) => format!(
            "lock {name:?} was not granted within {waited}: another client holds it; wait longer, or read its record to see who"
        ),
    }
}

/// `d` the way people write durations: `0s`, `250ms`, `1.5s`, `3m 5s`,
/// `2h 10m`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return if d.is_zero() {
            "0s".into()
        } else {
            format!("{}µs", d.as_micros())
        };
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        let tenths = (ms % 1_000) / 100;
        return if tenths == 0 {
            format!("{secs}s")
        } else {
            format!("{secs}.{tenths}s")
        };
    }
    if secs < 3_600 {
        let (m, s) = (secs / 60, secs % 60);
        return if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m {s}s")
        };
    }
    let (h, m) = (secs / 3_600, (secs % 3_600) / 60);
    if m == 0 {
        format!("{h}h")
    } else {
        format!("{h}h {m}m")
    }
}

impl LockError {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LockError::NotGranted { .. }
            | LockError::Internal { .. }
            | LockError::Lost { .. }
            | LockError::Throttled { .. }
            | LockError::Unavailable { .. }
            | LockError::OutcomeUnknown { .. } => true,
            LockError::Backend { source, .. } => source.is_retryable(),
            LockError::InvalidInput { .. }
            | LockError::ShutDown
            | LockError::TokenExhausted { .. } => false,
        }
    }

    pub(crate) fn from_backend(name: &str, operation: &'static str, source: BackendError) -> Self {
        let name = name.to_owned();
        match source.kind() {
            BackendErrorKind::Throttled => LockError::Throttled { name, source },
            BackendErrorKind::Unavailable => LockError::Unavailable { name, source },
            BackendErrorKind::OutcomeUnknown => LockError::OutcomeUnknown {
                name,
                operation,
                source,
            },
            _ => LockError::Backend { name, source },
        }
    }

    pub(crate) fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        LockError::InvalidInput {
            what,
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod human_tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(3), "3s"),
            (Duration::from_secs(185), "3m 5s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(7_800), "2h 10m"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn a_single_try_says_it_did_not_wait_and_names_the_holder() {
        let e = LockError::NotGranted {
            name: "job".into(),
            waited: Duration::ZERO,
            holder: Some("web-1".into()),
            last_error: None,
        };
        let text = e.to_string();
        assert!(
            text.contains("held by web-1") && text.contains("not waited for"),
            "{text}"
        );
        assert!(!text.contains("ns"), "{text}");
        let e = LockError::NotGranted {
            name: "job".into(),
            waited: Duration::from_millis(3_040),
            holder: Some("web-1".into()),
            last_error: None,
        };
        assert!(e.to_string().contains("within 3s"), "{e}");
    }
}
