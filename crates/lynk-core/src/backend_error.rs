//! Errors a backend reports, classified so the engine knows what to do next.

use std::error::Error as StdError;
use std::fmt;

/// The kind of a [`BackendError`]: what happened, and so whether to retry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The store refused the request for load (e.g. DynamoDB throttling).
    /// Nothing was written. Retry after a backoff.
    Throttled,
    /// The store could not be reached or answered with a server error, and the
    /// request was certainly not applied (e.g. connection refused). Retry.
    Unavailable,
    /// The request may or may not have been applied (e.g. a timeout after the
    /// request was sent, a lost response). Retry; the engine resolves the
    /// outcome by the versions it wrote.
    OutcomeUnknown,
    /// The table (or equivalent container) does not exist.
    TableMissing,
    /// The table exists but is not usable as a lock table (e.g. wrong key
    /// schema). Retrying will not help.
    TableMisconfigured,
    /// The caller's credentials are missing, invalid or not allowed to do this.
    AccessDenied,
    /// The store rejected the request as malformed (e.g. a key too long).
    InvalidRequest,
    /// Anything else. Not retried.
    Other,
}

impl BackendErrorKind {
    /// Whether retrying the operation may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            BackendErrorKind::Throttled
                | BackendErrorKind::Unavailable
                | BackendErrorKind::OutcomeUnknown
        )
    }
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendErrorKind::Throttled => "throttled",
            BackendErrorKind::Unavailable => "unavailable",
            BackendErrorKind::OutcomeUnknown => "outcome unknown",
            BackendErrorKind::TableMissing => "table missing",
            BackendErrorKind::TableMisconfigured => "table misconfigured",
            BackendErrorKind::AccessDenied => "access denied",
            BackendErrorKind::InvalidRequest => "invalid request",
            BackendErrorKind::Other => "backend error",
        })
    }
}

/// An error from a [`LockBackend`](crate::LockBackend).
///
/// Carries a [`kind`](BackendError::kind) the engine acts on and a message
/// for people, which should say what to do next (e.g. "create it with
/// `lynk create-table NAME`").
///
/// ```
/// use lynk_core::{BackendError, BackendErrorKind};
/// let err = BackendError::new(BackendErrorKind::TableMissing, "table `locks` does not exist; create it with `lynk create-table locks`");
/// assert!(!err.is_retryable());
/// assert_eq!(err.kind(), BackendErrorKind::TableMissing);
/// ```
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl BackendError {
    /// A new error of `kind` with a message for people.
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What happened.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Display for BackendError {
    /// The message, which is written for people; the kind is in
    /// [`kind`](BackendError::kind). An empty message shows the kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl PartialEq for BackendError {
    /// Equal kind and message (the source chain is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for BackendError {}

impl Clone for BackendError {
    /// Clones kind and message; the source chain is flattened into the message.
    fn clone(&self) -> Self {
        let message = match &self.source {
            Some(s) => format!("{} ({s})", self.message),
            None => self.message.clone(),
        };
        BackendError::new(self.kind, message)
    }
}
