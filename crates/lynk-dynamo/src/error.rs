//! The errors of lynk-dynamo: configuration, table administration and fenced
//! writes. Lock operations report [`lynk_core::LockError`], whose backend
//! errors carry the same explanations.

use std::time::Duration;

use lynk_core::{BackendError, BackendErrorKind, LockError};

/// An error from lynk-dynamo's configuration, table administration or
/// fenced writes. Every message names the cause and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No AWS region is configured.
    #[error("no AWS region is configured; set AWS_REGION (or `region` in ~/.aws/config for your profile), or pass a region explicitly (e.g. `--region us-east-1`)")]
    NoRegion,
    /// No AWS credentials could be found.
    #[error("no AWS credentials were found ({detail}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pick a profile with AWS_PROFILE, run `aws sso login`, or run where an instance or task role is available")]
    NoCredentials {
        /// What the credentials chain reported.
        detail: String,
    },
    /// The credentials were refused or lack a permission.
    #[error("AWS refused {operation} on table `{table}` ({detail}); check that the credentials are valid for this account and region and that their policy allows dynamodb:{operation}")]
    AccessDenied {
        /// The DynamoDB operation.
        operation: String,
        /// The table.
        table: String,
        /// The service's message.
        detail: String,
    },
    /// DynamoDB could not be reached.
    #[error("could not reach DynamoDB for {operation} ({detail}); check the network, the region, and any endpoint override (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB, --endpoint-url)")]
    Unreachable {
        /// The DynamoDB operation.
        operation: String,
        /// The transport error.
        detail: String,
    },
    /// DynamoDB throttled the request and the SDK's retries did not get through.
    #[error("DynamoDB throttled {operation} on table `{table}` ({detail}); retry later, or raise the table's capacity (on-demand tables adapt by themselves)")]
    Throttled {
        /// The DynamoDB operation.
        operation: String,
        /// The table.
        table: String,
        /// The service's message.
        detail: String,
    },
    /// The request was sent, but no answer came back: it may or may not have applied.
    #[error("{operation} on table `{table}` may or may not have applied: {detail}; check the table's state and retry")]
    OutcomeUnknown {
        /// The DynamoDB operation.
        operation: String,
        /// The table.
        table: String,
        /// What went wrong.
        detail: String,
    },
    /// The table does not exist.
    #[error("table `{table}` does not exist; create it with `lynk create-table {table}`")]
    TableMissing {
        /// The table.
        table: String,
    },
    /// The table already exists (on create).
    #[error("table `{table}` already exists; use it as is, check it with `lynk check-table {table}`, or pick another name")]
    TableExists {
        /// The table.
        table: String,
    },
    /// The table exists but cannot hold lynk locks.
    #[error("table `{table}` cannot be used as a lock table: {problem}; {fix}")]
    TableMisconfigured {
        /// The table.
        table: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A delete was refused because lynk did not create the table.
    #[error("refusing to delete table `{table}`: it does not carry the tag lynk=lock-table, so lynk did not create it; check the name, or force the delete if you really mean it")]
    NotALockTable {
        /// The table.
        table: String,
    },
    /// Waiting for a table to change state took too long.
    #[error("table `{table}` did not become {state} within {waited:?}; check it in the AWS console or with `lynk check-table {table}`")]
    WaitTimedOut {
        /// The table.
        table: String,
        /// The awaited state.
        state: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// A fenced write needs transactions, which this backend was told the server lacks.
    #[error("fenced writes need DynamoDB transactions (TransactWriteItems), which this backend is configured without (dynalite, for one, has none); use DynamoDB or a server with transactions")]
    TransactionsUnsupported,
    /// A fenced write found that the guard no longer holds the lock; nothing was written.
    #[error("lock {name:?} is no longer held with fencing token {token} (it was taken over, released or expired); the fenced write was not applied: stop, and acquire the lock again")]
    LockLost {
        /// The lock name.
        name: String,
        /// The fencing token the write was fenced with.
        token: u64,
    },
    /// A fenced write's own condition failed (the lock was still held); nothing was written.
    #[error("the fenced write's own condition on table `{table}` failed ({detail}); the lock is still held, nothing was written")]
    WriteConditionFailed {
        /// The table of the user's write.
        table: String,
        /// The reason DynamoDB gave.
        detail: String,
    },
    /// DynamoDB (or the SDK, before sending) rejected the request as
    /// malformed, e.g. a lock name too long for a key. Retrying will not help.
    #[error("DynamoDB {operation} on table `{table}` failed: {detail}")]
    InvalidRequest {
        /// The DynamoDB operation.
        operation: String,
        /// The table.
        table: String,
        /// The error code and message.
        detail: String,
    },
    /// A [`TableLayout`](crate::TableLayout) is not usable (two attributes
    /// with one name, an empty name, ...). Nothing was sent.
    #[error("invalid table layout: {problem}")]
    InvalidLayout {
        /// Every problem found, and how to fix it.
        problem: String,
    },
    /// A lock name (or group) does not fit the table layout: no group
    /// separator in a grouped layout, or a key beyond DynamoDB's limits.
    /// Nothing was sent.
    #[error("lock name {name:?} does not fit the table layout: {problem}")]
    InvalidLockName {
        /// The lock name (or group), shortened if very long.
        name: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Any other error from DynamoDB.
    #[error("DynamoDB {operation} on table `{table}` failed: {detail}")]
    Service {
        /// The DynamoDB operation.
        operation: String,
        /// The table.
        table: String,
        /// The error code and message.
        detail: String,
        /// Whether retrying may help.
        retryable: bool,
    },
    /// An error from the lock engine.
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Lock(e) => e.is_retryable(),
            _ => self.kind().is_retryable(),
        }
    }

    /// Whether DynamoDB could not be reached or did not answer (in time):
    /// the request failed in transit, not on DynamoDB's say.
    pub(crate) fn is_transport(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. } | Error::OutcomeUnknown { .. }
        )
    }

    /// The [`BackendErrorKind`] of this error: the one table from
    /// lynk-dynamo's errors to the kinds the lock engine (and the `lynk`
    /// CLI's exit codes) act on. AWS configuration problems (no region, no
    /// credentials, access refused) are [`AccessDenied`](BackendErrorKind::AccessDenied);
    /// a table that is not a lock table is
    /// [`TableMisconfigured`](BackendErrorKind::TableMisconfigured); a wait
    /// that ran out, or a retryable server error, is
    /// [`Unavailable`](BackendErrorKind::Unavailable). An [`Error::Lock`] is
    /// [`Other`](BackendErrorKind::Other): look at the [`LockError`] itself.
    pub fn kind(&self) -> BackendErrorKind {
        match self {
            Error::NoRegion | Error::NoCredentials { .. } | Error::AccessDenied { .. } => {
                BackendErrorKind::AccessDenied
            }
            Error::Unreachable { .. } | Error::WaitTimedOut { .. } => BackendErrorKind::Unavailable,
            Error::Service { retryable, .. } if *retryable => BackendErrorKind::Unavailable,
            Error::Throttled { .. } => BackendErrorKind::Throttled,
            Error::OutcomeUnknown { .. } => BackendErrorKind::OutcomeUnknown,
            Error::TableMissing { .. } => BackendErrorKind::TableMissing,
            Error::TableMisconfigured { .. } | Error::NotALockTable { .. } => {
                BackendErrorKind::TableMisconfigured
            }
            Error::InvalidRequest { .. }
            | Error::InvalidLayout { .. }
            | Error::InvalidLockName { .. } => BackendErrorKind::InvalidRequest,
            _ => BackendErrorKind::Other,
        }
    }
}

impl From<Error> for BackendError {
    fn from(e: Error) -> Self {
        BackendError::new(e.kind(), e.to_string())
    }
}
