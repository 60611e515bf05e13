//! Classifies AWS SDK errors into what the lock engine and people need to
//! know: was anything written, will retrying help, and what to do.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use lynk_core::{BackendError, BackendErrorKind};

use crate::Error;

/// Whether the failed request could have changed the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Effect {
    /// A read, or a request that changes nothing.
    ReadOnly,
    /// A write: an error after the request was sent leaves the outcome unknown.
    Write,
}

/// The SDK error, classified.
#[derive(Debug)]
pub(crate) struct Classified {
    pub(crate) kind: Kind,
    pub(crate) operation: &'static str,
    pub(crate) table: String,
    /// The service's code and message, or the transport error, for people.
    pub(crate) detail: String,
}

/// Finer than [`BackendErrorKind`], so admin errors can say more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Throttled,
    Unreachable,
    OutcomeUnknown,
    TableMissing,
    TableMisconfigured,
    NoCredentials,
    NoRegion,
    AccessDenied,
    InvalidRequest,
    /// A server error on a read-only request (nothing was written).
    ServerError,
    Other,
}

const THROTTLING: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
];

const ACCESS: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "MissingAuthenticationToken",
    "IncompleteSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

/// Classifies `err` from `operation` on `table`.
pub(crate) fn classify<E>(
    err: &SdkError<E, HttpResponse>,
    operation: &'static str,
    table: &str,
    effect: Effect,
) -> Classified
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let mk = |kind, detail: String| Classified {
        kind,
        operation,
        table: table.to_owned(),
        detail,
    };
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("").to_owned();
            let message = e.message().unwrap_or("").to_owned();
            let status = service.raw().status().as_u16();
            let detail = if message.is_empty() {
                format!("{code} (HTTP {status})")
            } else {
                format!("{code}: {message}")
            };
            let code_base = code.rsplit('#').next().unwrap_or(&code);
            let kind = if THROTTLING.contains(&code_base) {
                Kind::Throttled
            } else if code_base == "ResourceNotFoundException" {
                Kind::TableMissing
            } else if ACCESS.contains(&code_base) {
                Kind::AccessDenied
            } else if code_base == "ValidationException" && is_schema_problem(&message) {
                Kind::TableMisconfigured
            } else if code_base == "ValidationException" || code_base == "SerializationException" {
                Kind::InvalidRequest
            } else if status >= 500
                || code_base == "InternalServerError"
                || code_base == "ServiceUnavailable"
            {
                match effect {
                    Effect::Write => Kind::OutcomeUnknown,
                    Effect::ReadOnly => Kind::ServerError,
                }
            } else if status == 403 {
                Kind::AccessDenied
            } else {
                Kind::Other
            };
            mk(kind, detail)
        }
        SdkError::DispatchFailure(failure) => {
            let detail = chain_text(err);
            if let Some(creds) = find_credentials_error(err) {
                return mk(Kind::NoCredentials, creds);
            }
            if mentions_region(&detail) {
                return mk(Kind::NoRegion, detail);
            }
            let not_sent = failure.is_user() || request_not_sent(err);
            let kind = if not_sent || effect == Effect::ReadOnly {
                Kind::Unreachable
            } else {
                Kind::OutcomeUnknown
            };
            mk(kind, detail)
        }
        SdkError::ConstructionFailure(_) => {
            let detail = chain_text(err);
            if let Some(creds) = find_credentials_error(err) {
                mk(Kind::NoCredentials, creds)
            } else if mentions_region(&detail) {
                mk(Kind::NoRegion, detail)
            } else {
                mk(Kind::InvalidRequest, detail)
            }
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            let kind = match effect {
                Effect::Write => Kind::OutcomeUnknown,
                Effect::ReadOnly => Kind::Unreachable,
            };
            mk(kind, chain_text(err))
        }
        _ => mk(Kind::Other, chain_text(err)),
    }
}

/// A validation message that says the table's key schema does not fit.
fn is_schema_problem(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("key element does not match the schema")
        || (m.contains("key") && m.contains("schema"))
        || m.contains("missing the key")
}

fn mentions_region(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("region must be set") || d.contains("no region") || d.contains("region is required")
}

/// The error and its sources, joined for people.
pub(crate) fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn sources<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

fn find_credentials_error(err: &(dyn StdError + 'static)) -> Option<String> {
    sources(err)
        .find_map(|e| e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>())
        .map(|c| chain_text(c))
}

/// `true` when the transport failed before sending the request: the
/// connection (including DNS) could not be made.
fn request_not_sent(err: &(dyn StdError + 'static)) -> bool {
    sources(err).any(|e| {
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            return h.is_connect();
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            );
        }
        false
    })
}

impl Classified {
    /// The classification as the lock engine sees it.
    pub(crate) fn backend_kind(&self) -> BackendErrorKind {
        match self.kind {
            Kind::Throttled => BackendErrorKind::Throttled,
            Kind::Unreachable | Kind::ServerError => BackendErrorKind::Unavailable,
            Kind::OutcomeUnknown => BackendErrorKind::OutcomeUnknown,
            Kind::TableMissing => BackendErrorKind::TableMissing,
            Kind::TableMisconfigured => BackendErrorKind::TableMisconfigured,
            Kind::NoCredentials | Kind::AccessDenied => BackendErrorKind::AccessDenied,
            Kind::InvalidRequest => BackendErrorKind::InvalidRequest,
            Kind::NoRegion | Kind::Other => BackendErrorKind::Other,
        }
    }

    /// The classification as a crate [`Error`].
    pub(crate) fn into_error(self) -> Error {
        let Classified {
            kind,
            operation,
            table,
            detail,
        } = self;
        let operation_s = operation.to_owned();
        match kind {
            Kind::Throttled => Error::Throttled {
                operation: operation_s,
                table,
                detail,
            },
            Kind::Unreachable => Error::Unreachable {
                operation: operation_s,
                detail,
            },
            Kind::OutcomeUnknown => Error::OutcomeUnknown {
                operation: operation_s,
                table,
                detail,
            },
            Kind::TableMissing => Error::TableMissing { table },
            Kind::TableMisconfigured => Error::TableMisconfigured {
                table: table.clone(),
                problem: detail,
                fix: fix_schema(&table),
            },
            Kind::NoCredentials => Error::NoCredentials { detail },
            Kind::NoRegion => Error::NoRegion,
            Kind::AccessDenied => Error::AccessDenied {
                operation: operation_s,
                table,
                detail,
            },
            Kind::InvalidRequest | Kind::ServerError | Kind::Other => Error::Service {
                operation: operation_s,
                table,
                detail,
                retryable: kind == Kind::ServerError,
            },
        }
    }

    /// The classification as a [`BackendError`], with a message that says
    /// what to do.
    pub(crate) fn into_backend_error(self) -> BackendError {
        let kind = self.backend_kind();
        BackendError::new(kind, self.into_error().to_string())
    }
}

/// How to fix a table whose key schema is wrong.
pub(crate) fn fix_schema(table: &str) -> String {
    format!(
        "a lock table needs exactly one key, the hash key `lockKey` of type S (string), and no sort key; \
         DynamoDB cannot change a key schema, so use another table name, or delete `{table}` and recreate it with `lynk create-table {table}`"
    )
}

/// Counts the attempts of one request (the SDK's retries included) that
/// were sent: that reached the transport and did not fail to connect. Add it
/// with `.customize().interceptor(..)`.
///
/// The error of a failed request is the last attempt's: a write whose last
/// attempt could not even connect may still have been applied by an earlier
/// attempt that timed out, so it is only "not sent" if no attempt was.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempts(Arc<AttemptState>);

#[derive(Debug, Default)]
struct AttemptState {
    /// The current attempt reached the transport.
    transmitting: AtomicBool,
    /// Attempts that reached the transport and did not fail to connect.
    sent: AtomicU32,
}

impl Attempts {
    /// Attempts that were (or may have been) sent, including one still in
    /// flight when the operation timed out.
    pub(crate) fn sent(&self) -> u32 {
        self.0.sent.load(Ordering::Relaxed) + u32::from(self.0.transmitting.load(Ordering::Relaxed))
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "lynk::Attempts"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.transmitting.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.transmitting.swap(false, Ordering::Relaxed) {
            let not_sent = matches!(
                context.output_or_error(),
                Some(Err(e)) if e
                    .as_connector_error()
                    .is_some_and(|c| c.is_user() || request_not_sent(c))
            );
            if !not_sent {
                self.0.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Classifies a failed write made with [`Attempts`] counting its attempts.
pub(crate) fn write_error<E>(
    err: SdkError<E, HttpResponse>,
    operation: &'static str,
    table: &str,
    attempts: &Attempts,
) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let mut classified = classify(&err, operation, table, Effect::Write);
    if classified.kind == Kind::Unreachable && attempts.sent() > 0 {
        classified.kind = Kind::OutcomeUnknown;
        classified.detail = format!(
            "{} (the last attempt was not sent, but an earlier one was and may have applied)",
            classified.detail
        );
    }
    classified.into_backend_error().with_source(err)
}

/// Shorthand: classify and convert into a [`BackendError`].
pub(crate) fn backend_error<E>(
    err: SdkError<E, HttpResponse>,
    operation: &'static str,
    table: &str,
    effect: Effect,
) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let classified = classify(&err, operation, table, effect);
    classified.into_backend_error().with_source(err)
}

/// DynamoDB operations the admin and fenced-write code sends that change nothing.
const READ_ONLY_OPERATIONS: &[&str] = &[
    "DescribeTable",
    "DescribeTimeToLive",
    "GetItem",
    "ListTables",
    "ListTagsOfResource",
    "Scan",
];

/// Shorthand: classify and convert into a crate [`Error`]. A read-only
/// operation that fails in transit (timeout, lost connection) is
/// [`Error::Unreachable`]; a write, [`Error::OutcomeUnknown`].
pub(crate) fn admin_error<E>(
    err: SdkError<E, HttpResponse>,
    operation: &'static str,
    table: &str,
) -> Error
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let effect = if READ_ONLY_OPERATIONS.contains(&operation) {
        Effect::ReadOnly
    } else {
        Effect::Write
    };
    classify(&err, operation, table, effect).into_error()
}
