//! Classifies AWS SDK errors into what the lock engine and people need to
//! know: was anything written, will retrying help, and what to do.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use lynk_core::BackendError;
#[cfg(doc)]
use lynk_core::BackendErrorKind;

use crate::Error;

/// Whether the failed request could have changed the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Effect {
    /// A read, or a request that changes nothing.
    ReadOnly,
    /// A write: an error after the request was sent leaves the outcome unknown.
    Write,
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

/// Classifies `err` from `operation` on `table` into the crate [`Error`]
/// that says what happened and what to do. This is lynk-dynamo's one
/// classification of SDK errors: the lock engine's [`BackendErrorKind`]
/// follows from it ([`Error::kind`]).
pub(crate) fn classify<E>(
    err: &SdkError<E, HttpResponse>,
    operation: &'static str,
    table: &str,
    effect: Effect,
) -> Error
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let operation_s = operation.to_owned();
    let table_s = table.to_owned();
    // What a request that failed in transit means: a write may have applied.
    let in_transit = |detail: String| match effect {
        Effect::Write => Error::OutcomeUnknown {
            operation: operation.to_owned(),
            table: table.to_owned(),
            detail,
        },
        Effect::ReadOnly => Error::Unreachable {
            operation: operation.to_owned(),
            detail,
        },
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
            let (operation, table) = (operation_s, table_s);
            if THROTTLING.contains(&code_base) {
                Error::Throttled {
                    operation,
                    table,
                    detail,
                }
            } else if code_base == "ResourceNotFoundException" {
                Error::TableMissing { table }
            } else if ACCESS.contains(&code_base) {
                Error::AccessDenied {
                    operation,
                    table,
                    detail,
                }
            } else if code_base == "ValidationException" && is_schema_problem(&message) {
                Error::TableMisconfigured {
                    fix: fix_schema(&table),
                    table,
                    problem: detail,
                }
            } else if code_base == "ValidationException" || code_base == "SerializationException" {
                Error::InvalidRequest {
                    operation,
                    table,
                    detail,
                }
            } else if status >= 500
                || code_base == "InternalServerError"
                || code_base == "ServiceUnavailable"
            {
                match effect {
                    Effect::Write => in_transit(detail),
                    // Nothing was written: a server error, retryable.
                    Effect::ReadOnly => Error::Service {
                        operation,
                        table,
                        detail,
                        retryable: true,
                    },
                }
            } else if status == 403 {
                Error::AccessDenied {
                    operation,
                    table,
                    detail,
                }
            } else {
                Error::Service {
                    operation,
                    table,
                    detail,
                    retryable: false,
                }
            }
        }
        SdkError::DispatchFailure(failure) => {
            let detail = chain_text(err);
            if let Some(detail) = find_credentials_error(err) {
                return Error::NoCredentials { detail };
            }
            if mentions_region(&detail) {
                return Error::NoRegion;
            }
            if failure.is_user() || request_not_sent(err) {
                return Error::Unreachable {
                    operation: operation_s,
                    detail,
                };
            }
            in_transit(detail)
        }
        SdkError::ConstructionFailure(_) => {
            let detail = chain_text(err);
            if let Some(detail) = find_credentials_error(err) {
                Error::NoCredentials { detail }
            } else if mentions_region(&detail) {
                Error::NoRegion
            } else {
                Error::InvalidRequest {
                    operation: operation_s,
                    table: table_s,
                    detail,
                }
            }
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => in_transit(chain_text(err)),
        _ => Error::Service {
            operation: operation_s,
            table: table_s,
            detail: chain_text(err),
            retryable: false,
        },
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

/// How to fix a table whose key schema is wrong.
pub(crate) fn fix_schema(table: &str) -> String {
    format!(
        "a lock table needs exactly one key, the hash key `lockKey` of type S (string), and no sort key (with a table layout: the layout's keys; `lynk check-table` says which differs); \
         DynamoDB cannot change a key schema, so use another table name, or delete `{table}` and recreate it with `lynk create-table {table}`"
    )
}

/// Counts the attempts of one request (the SDK's retries included) that
/// were sent: that reached the transport and did not fail to connect. Send
/// the request inside [`Attempts::count`], on a client that carries the
/// [`AttemptCounter`] retry classifier (every
/// [`DynamoBackend`](crate::DynamoBackend)'s does).
///
/// The error of a failed request is the last attempt's: a write whose last
/// attempt could not even connect may still have been applied by an earlier
/// attempt that timed out, so it is only "not sent" if no attempt was.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempts(Arc<AttemptState>);

#[derive(Debug, Default)]
struct AttemptState {
    /// Attempts that may have reached the store: all but those that failed
    /// to connect.
    sent: AtomicU32,
    /// Sent attempts that may have applied: no answer, or an answer other
    /// than a 4xx (which says the request was refused: a failed condition,
    /// throttling, validation).
    uncertain: AtomicU32,
}

tokio::task_local! {
    /// The attempts of the request this task is sending, while it is sent
    /// inside [`Attempts::count`].
    static COUNTING: Attempts;
}

impl Attempts {
    /// Attempts that were (or may have been) sent. An attempt cut off by
    /// the operation's own timeout is not seen; its request then fails
    /// with that timeout, which is of unknown outcome whatever the count.
    pub(crate) fn sent(&self) -> u32 {
        self.0.sent.load(Ordering::Relaxed)
    }

    /// Sent attempts that may have applied (see `AttemptState::uncertain`).
    /// Read after the request ended: the last attempt's own answer is
    /// counted too, so a failed condition's attempt is not among them.
    pub(crate) fn uncertain(&self) -> u32 {
        self.0.uncertain.load(Ordering::Relaxed)
    }

    /// Runs `send` (one SDK request's future) with its attempts counted
    /// here by the client's [`AttemptCounter`].
    pub(crate) async fn count<F: Future>(&self, send: F) -> F::Output {
        COUNTING.scope(self.clone(), Box::pin(send)).await
    }
}

/// The client-level retry classifier behind [`Attempts`]: the SDK asks its
/// retry classifiers about every attempt's outcome, so this one sees each
/// attempt of a request sent inside [`Attempts::count`], counts it, and
/// leaves the retry decision to the others (`NoActionIndicated`). Requests
/// sent outside a count are left alone.
///
/// A classifier, not an interceptor: the SDK asks every interceptor whether
/// it is enabled at each of about twenty hooks of every request (a look-up
/// in the request's configuration each time), and one more interceptor cost
/// about 10,000 instructions a request (callgrind; `docs/benchmarks.md`,
/// "Floor"); a classifier is called once an attempt.
#[derive(Debug)]
pub(crate) struct AttemptCounter;

impl AttemptCounter {
    /// `client` with this classifier added (same configuration, HTTP client
    /// and connection pool; its own classifiers and interceptors are kept).
    pub(crate) fn add_to(client: aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        let config = client
            .config()
            .to_builder()
            .retry_classifier(AttemptCounter)
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// How one finished attempt counts: `None` if it was not sent (it
    /// could not connect), else whether it may have applied.
    fn sent_and_uncertain(ctx: &InterceptorContext) -> Option<bool> {
        if let Some(response) = ctx.response() {
            return Some(!response.status().is_client_error());
        }
        match ctx.output_or_error() {
            Some(Err(e)) => match e.as_connector_error() {
                Some(c) if c.is_user() || request_not_sent(c) => None,
                // Sent and unanswered (a timeout, a lost connection), or a
                // failure this classifier cannot place: may have applied.
                _ => Some(true),
            },
            _ => Some(true),
        }
    }
}

impl ClassifyRetry for AttemptCounter {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let _ = COUNTING.try_with(|a| {
            if let Some(uncertain) = Self::sent_and_uncertain(ctx) {
                a.0.sent.fetch_add(1, Ordering::Relaxed);
                if uncertain {
                    a.0.uncertain.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "lynk::AttemptCounter"
    }

    /// First, so that no classifier that forbids a retry hides an attempt.
    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_before(RetryClassifierPriority::http_status_code_classifier())
    }
}

/// The error of a write whose condition failed on a retry after an earlier
/// attempt was sent and may have applied: the condition may have failed
/// over this very write's effect (and someone's after it), so nothing can be
/// said of the outcome. `None` when no earlier attempt may have applied.
pub(crate) fn retried_conflict(
    operation: &'static str,
    table: &str,
    attempts: &Attempts,
) -> Option<BackendError> {
    (attempts.uncertain() > 0).then(|| {
        BackendError::from(Error::OutcomeUnknown {
            operation: operation.to_owned(),
            table: table.to_owned(),
            detail: format!(
                "the SDK retried the {operation} and its condition failed, but an earlier attempt was sent and may have applied (the record may have changed since)"
            ),
        })
    })
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
    let classified = match classify(&err, operation, table, Effect::Write) {
        Error::Unreachable { operation, detail } if attempts.sent() > 0 => Error::OutcomeUnknown {
            operation,
            table: table.to_owned(),
            detail: format!(
                "{detail} (the last attempt was not sent, but an earlier one was and may have applied)"
            ),
        },
        other => other,
    };
    BackendError::from(classified).with_source(err)
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
    BackendError::from(classify(&err, operation, table, effect)).with_source(err)
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
    classify(&err, operation, table, effect)
}
