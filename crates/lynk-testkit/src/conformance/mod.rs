//! The conformance suite: checks that a [`LockBackend`] keeps the trait's
//! contract. Every backend in the lynk repository runs it; run it on yours.
//!
//! ```
//! use std::sync::Arc;
//! use lynk_testkit::{conformance, MemoryBackend};
//!
//! #[tokio::main]
//! async fn main() {
//!     let report = conformance::run_all(Arc::new(MemoryBackend::new())).await;
//!     println!("{report}");
//!     report.assert_ok();
//! }
//! ```
//!
//! Cases use lock names with a random prefix, so one table can serve many
//! runs. Cases that need a capability the backend does not declare are
//! reported as skipped, with the reason, never silently dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lynk_core::{Capabilities, LockBackend, Version};

/// Returns `Err(message)` from a case unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

mod concurrency;
mod conditions;
mod ctx;
mod fencing;
mod fields;
mod queue;
mod report;
mod transactions;

use concurrency::{concurrent_cas_has_one_winner, race_counter_is_exact};
use conditions::{
    absent_fails_when_present, conditional_delete, conflict_returns_current, create_when_absent,
    vacant_semantics, version_condition, write_no_return_is_write,
};
use ctx::Ctx;
use fencing::fencing_tokens_strictly_increase;
use fields::{fields_round_trip, long_and_unicode_keys, read_missing_is_none, token_arithmetic};
use queue::{
    concurrent_queue_writes_have_one_winner, granted_to_round_trips,
    protocol_write_keeps_or_sets_the_queue, queue_entries_round_trip, queue_is_condition,
    write_queue_applies_on_version_and_revision, write_queue_changes_only_the_queue,
    write_queue_fails_on_absent_record, write_queue_fails_on_wrong_revision,
    write_queue_fails_on_wrong_version,
};
pub use report::Report;
use transactions::{
    write_all_applies_every_request, write_all_applies_none_on_one_failed_condition,
    write_all_checks_versions,
};

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
type CaseFn = for<'a> fn(&'a Ctx) -> CaseFuture<'a>;

/// A case of the suite.
struct Case {
    name: &'static str,
    needs: fn(&Capabilities) -> Option<&'static str>,
    run: CaseFn,
}

fn always(_: &Capabilities) -> Option<&'static str> {
    None
}

fn needs_current(c: &Capabilities) -> Option<&'static str> {
    (!c.returns_current_on_conflict)
        .then_some("backend does not return the current record on a failed condition")
}

fn needs_transactions(c: &Capabilities) -> Option<&'static str> {
    (!c.transactions).then_some("backend has no transactions (Capabilities::transactions is false)")
}

fn needs_queue(c: &Capabilities) -> Option<&'static str> {
    (!c.wait_queue).then_some("backend keeps no wait queue (Capabilities::wait_queue is false)")
}

macro_rules! case {
    ($name:ident) => {
        Case {
            name: stringify!($name),
            needs: always,
            run: |ctx| Box::pin($name(ctx)),
        }
    };
    ($name:ident, $needs:expr) => {
        Case {
            name: stringify!($name),
            needs: $needs,
            run: |ctx| Box::pin($name(ctx)),
        }
    };
}

fn cases() -> Vec<Case> {
    vec![
        case!(read_missing_is_none),
        case!(create_when_absent),
        case!(absent_fails_when_present),
        case!(vacant_semantics),
        case!(version_condition),
        case!(token_arithmetic),
        case!(fields_round_trip),
        case!(conditional_delete),
        case!(write_no_return_is_write),
        case!(conflict_returns_current, needs_current),
        case!(long_and_unicode_keys),
        case!(concurrent_cas_has_one_winner),
        case!(race_counter_is_exact),
        case!(fencing_tokens_strictly_increase),
        case!(write_queue_applies_on_version_and_revision, needs_queue),
        case!(write_queue_fails_on_wrong_version, needs_queue),
        case!(write_queue_fails_on_wrong_revision, needs_queue),
        case!(write_queue_fails_on_absent_record, needs_queue),
        case!(write_queue_changes_only_the_queue, needs_queue),
        case!(queue_entries_round_trip, needs_queue),
        case!(protocol_write_keeps_or_sets_the_queue, needs_queue),
        case!(queue_is_condition, needs_queue),
        case!(granted_to_round_trips, needs_queue),
        case!(concurrent_queue_writes_have_one_winner, needs_queue),
        case!(write_all_applies_every_request, needs_transactions),
        case!(
            write_all_applies_none_on_one_failed_condition,
            needs_transactions
        ),
        case!(write_all_checks_versions, needs_transactions),
    ]
}

/// The names of every case, in run order.
pub fn case_names() -> Vec<&'static str> {
    cases().iter().map(|c| c.name).collect()
}

/// How the suite names its locks, for backends that map names onto keys
/// with limits or a structure of their own (e.g. lynk-dynamo's table
/// layouts with lock groups). The cases are the same whatever the options.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Put before every lock name the suite uses (default none): e.g.
    /// `"conformance/"` for a backend whose names are `GROUP/NAME`.
    pub name_prefix: String,
    /// The longest name (in bytes, the prefix included) the long-key case
    /// writes (default [`lynk_core::MAX_NAME_BYTES`]): lower it for a
    /// backend whose keys hold less, e.g. a key prefix or a sort key.
    pub max_name_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name_prefix: String::new(),
            max_name_bytes: lynk_core::MAX_NAME_BYTES,
        }
    }
}

impl Options {
    /// Sets [`name_prefix`](Options::name_prefix).
    #[must_use]
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Sets [`max_name_bytes`](Options::max_name_bytes).
    #[must_use]
    pub fn max_name_bytes(mut self, bytes: usize) -> Self {
        self.max_name_bytes = bytes;
        self
    }
}

/// Runs every case against `backend` and reports.
pub async fn run_all(backend: Arc<dyn LockBackend>) -> Report {
    run_selected(backend, |_| true).await
}

/// Runs every case against `backend` with `options` and reports.
pub async fn run_all_with(backend: Arc<dyn LockBackend>, options: Options) -> Report {
    run_selected_with(backend, options, |_| true).await
}

/// Runs the cases whose name `filter` accepts.
pub async fn run_selected(backend: Arc<dyn LockBackend>, filter: impl Fn(&str) -> bool) -> Report {
    run_selected_with(backend, Options::default(), filter).await
}

/// Runs the cases whose name `filter` accepts, with `options`.
pub async fn run_selected_with(
    backend: Arc<dyn LockBackend>,
    options: Options,
    filter: impl Fn(&str) -> bool,
) -> Report {
    let caps = backend.capabilities();
    let prefix = format!(
        "{}conf-{}",
        options.name_prefix,
        &Version::random().as_str()[..8]
    );
    let ctx = Ctx {
        backend,
        prefix,
        max_name_bytes: options.max_name_bytes,
    };
    let mut report = Report::default();
    for case in cases() {
        if !filter(case.name) {
            continue;
        }
        if let Some(why) = (case.needs)(&caps) {
            report.skipped.push((case.name, why.to_owned()));
            continue;
        }
        match (case.run)(&ctx).await {
            Ok(()) => report.passed.push(case.name),
            Err(e) => report.failed.push((case.name, e)),
        }
    }
    report
}
