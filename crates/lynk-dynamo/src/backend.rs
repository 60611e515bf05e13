//! [`DynamoBackend`]: lynk's [`LockBackend`] on DynamoDB conditional writes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use lynk_core::{
    BackendError, BackendErrorKind, Capabilities, Clock, LockBackend, LockRecord, QueueRequest,
    SystemClock, Version, WriteError, WriteRequest,
};

use crate::classify::{
    backend_error, retried_conflict, write_error, AttemptCounter, Attempts, Effect,
};
use crate::item::{
    delete_condition, queue_expressions, record_from_item, write_expressions, Expressions,
};
use crate::{AwsOptions, Error, TableLayout};

/// How long a record stays in the table after its last write before
/// DynamoDB's TTL may delete it, by default (seven days, on top of the lease).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// lynk's lock backend on one DynamoDB table.
///
/// Every write is **one** `UpdateItem` with a condition expression, so an
/// uncontended acquire, heartbeat or release costs one request. A failed
/// condition returns the stored item in the same response
/// (`ReturnValuesOnConditionCheckFailure=ALL_OLD`) where the server supports
/// it; reads are strongly consistent `GetItem`s.
///
/// The item keeps the original Python lynk's attributes (`lockKey`,
/// `leaseDuration`, `versionNumber`, `hostIdentifier`), so both clients can
/// share a table, and adds `fencingToken`, `payload`, `released`, the TTL
/// attribute `expiresAt` and the wait queue (`waitQueue`, `queueRevision`,
/// `grantedTo`; see the [`item`](crate::item) module). A queue write
/// ([`LockBackend::write_queue`]) is one `UpdateItem` too.
///
/// That is the default [`TableLayout`]; with
/// [`DynamoBackendBuilder::layout`] the locks live in a table of your own
/// design (other key names, a key prefix, a sort key, lock groups, renamed
/// attributes), next to your items, which lynk never writes.
///
/// Cloning is cheap and shares the SDK client.
///
/// ```no_run
/// # async fn f() -> Result<(), lynk_dynamo::Error> {
/// use lynk_dynamo::DynamoBackend;
/// let backend = DynamoBackend::builder("my-locks").region("eu-west-1").build().await?;
/// let client = lynk_core::LockClient::new(backend)?;
/// let guard = client.create_lock("nightly-job").acquire().await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DynamoBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_dynamodb::Client,
    table: String,
    clock: Arc<dyn Clock>,
    retention: Duration,
    capabilities: Capabilities,
    layout: TableLayout,
}

impl fmt::Debug for DynamoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoBackend")
            .field("table", &self.inner.table)
            .field("retention", &self.inner.retention)
            .field("capabilities", &self.inner.capabilities)
            .field("layout", &self.inner.layout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DynamoBackend`]; see [`DynamoBackend::builder`].
#[derive(Debug)]
#[must_use = "call .build().await to get the backend"]
pub struct DynamoBackendBuilder {
    table: String,
    options: AwsOptions,
    client: Option<aws_sdk_dynamodb::Client>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    returns_current_on_conflict: bool,
    transactions: bool,
    layout: TableLayout,
}

impl DynamoBackendBuilder {
    /// Uses `region` instead of the standard chain's.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.options.region = Some(region.into());
        self
    }

    /// Sends requests to `url` instead of AWS's endpoint (or the one in
    /// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_DYNAMODB`, which the SDK honours).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.options.endpoint_url = Some(url.into());
        self
    }

    /// Uses the named profile of the shared AWS config files.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.options.profile = Some(profile.into());
        self
    }

    /// Time limits on each request (default [`Timeouts::DEFAULT`](crate::Timeouts::DEFAULT)).
    /// Ignored with [`client`](DynamoBackendBuilder::client): set them on that
    /// client's configuration instead ([`Timeouts::to_sdk`](crate::Timeouts::to_sdk)).
    pub fn timeouts(mut self, timeouts: crate::Timeouts) -> Self {
        self.options.timeouts = Some(timeouts);
        self
    }

    /// Replaces all connection options at once.
    pub fn options(mut self, options: AwsOptions) -> Self {
        self.options = options;
        self
    }

    /// Uses an existing SDK client; region, endpoint, profile and timeouts are
    /// then ignored (the client's own apply). The backend keeps a copy of it
    /// with one interceptor added (which counts the attempts of lynk's
    /// writes, to tell a write that was never sent from one that may have
    /// applied); the copy shares the client's connection pool.
    pub fn client(mut self, client: aws_sdk_dynamodb::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The clock whose wall time sets the TTL attribute (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long after its last write (beyond the lease) a record may be
    /// deleted by the table's TTL (default [`DEFAULT_RETENTION`]). Held
    /// locks are rewritten by every heartbeat, so they never come near it.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Whether the server returns the stored item when a condition fails
    /// (default `true`: DynamoDB and moto do; dynalite does not). Declared to
    /// the engine and the conformance suite; with `false`, the engine reads
    /// the record after a conflict.
    pub fn returns_current_on_conflict(mut self, yes: bool) -> Self {
        self.returns_current_on_conflict = yes;
        self
    }

    /// Whether the server supports `TransactWriteItems` (default `true`;
    /// dynalite does not). Needed for [fenced writes](DynamoBackend::fenced_write).
    pub fn transactions(mut self, yes: bool) -> Self {
        self.transactions = yes;
        self
    }

    /// Where the locks live in the table and what their attributes are
    /// called (default [`TableLayout::default`], the original Python lynk's:
    /// partition key `lockKey`, no sort key). Every client of a lock must
    /// use the same layout. Checked by [`build`](DynamoBackendBuilder::build).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), lynk_dynamo::Error> {
    /// use lynk_dynamo::{DynamoBackend, TableLayout};
    /// let layout = TableLayout::new().partition_key("PK").key_prefix("LOCK#").sort_key_grouped("SK");
    /// let backend = DynamoBackend::builder("app-table").layout(layout).build().await?;
    /// let client = lynk_core::LockClient::new(backend)?;
    /// let guard = client.create_lock("orders/42").acquire().await?; // PK "LOCK#orders", SK "42"
    /// # Ok(()) }
    /// ```
    pub fn layout(mut self, layout: TableLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Loads the AWS configuration (unless a client was given) and builds
    /// the backend. Does not contact the table; use
    /// [`TableAdmin::check_table`](crate::TableAdmin::check_table) for that.
    /// Fails with [`Error::InvalidLayout`] if the [layout](DynamoBackendBuilder::layout)
    /// is not usable.
    pub async fn build(mut self) -> Result<DynamoBackend, Error> {
        self.layout.validate()?;
        let client = match self.client.take() {
            Some(c) => c,
            None => self.options.load_client().await?,
        };
        Ok(self.finish(client))
    }

    /// The backend over `client`, with this builder's settings.
    fn finish(self, client: aws_sdk_dynamodb::Client) -> DynamoBackend {
        DynamoBackend {
            inner: Arc::new(Inner {
                client: AttemptCounter::add_to(client),
                table: self.table,
                clock: self.clock,
                retention: self.retention,
                capabilities: Capabilities::minimal()
                    .with_returns_current_on_conflict(self.returns_current_on_conflict)
                    .with_transactions(self.transactions)
                    .with_wait_queue(true),
                layout: self.layout,
            }),
        }
    }
}

impl DynamoBackend {
    /// Starts building a backend for `table`, configured from the standard
    /// AWS chain.
    pub fn builder(table: impl Into<String>) -> DynamoBackendBuilder {
        DynamoBackendBuilder {
            table: table.into(),
            options: AwsOptions::default(),
            client: None,
            clock: Arc::new(SystemClock),
            retention: DEFAULT_RETENTION,
            returns_current_on_conflict: true,
            transactions: true,
            layout: TableLayout::default(),
        }
    }

    /// A backend for `table` over an existing SDK client, with the
    /// builder's default settings (DynamoDB's capabilities, seven days of
    /// retention, the system clock). For other settings, use
    /// [`builder`](DynamoBackend::builder) with
    /// [`client`](DynamoBackendBuilder::client).
    pub fn from_client(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self::builder(table).finish(client)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.inner.client
    }

    /// The table layout.
    pub fn layout(&self) -> &TableLayout {
        &self.inner.layout
    }

    /// Table administration over the same client, clock and layout.
    pub fn admin(&self) -> crate::TableAdmin {
        crate::TableAdmin::new(self.inner.client.clone())
            .with_clock(self.inner.clock.clone())
            .with_valid_layout(self.inner.layout.clone())
    }

    /// The `Key` of lock `name` under the layout; a name that does not fit
    /// is an [`InvalidRequest`](BackendErrorKind::InvalidRequest) error
    /// saying why (nothing is sent).
    fn key(&self, name: &str) -> Result<HashMap<String, AttributeValue>, BackendError> {
        self.inner.layout.key_of(name).map_err(BackendError::from)
    }

    /// The `expiresAt` value for a record written now with `lease`.
    fn expires_at(&self, lease: Duration) -> u64 {
        let now = self
            .inner
            .clock
            .wall_now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        now.saturating_add(self.inner.retention.as_secs())
            .saturating_add(lease.as_secs())
            .saturating_add(1)
    }

    fn malformed(&self, problem: impl fmt::Display) -> BackendError {
        let advice = if self.inner.layout.is_default() {
            "fix the item or delete it (e.g. with the AWS console or `aws dynamodb delete-item`)"
        } else {
            "lynk leaves it alone: if it is an item of yours, its key is this lock's key under the table layout, so use another lock name (or a key prefix such as `LOCK#`); if it is a damaged lock record, fix or delete it"
        };
        BackendError::new(
            BackendErrorKind::Other,
            format!("in table `{}`, {problem}; {advice}", self.inner.table),
        )
    }

    fn record(&self, item: &HashMap<String, AttributeValue>) -> Result<LockRecord, BackendError> {
        record_from_item(&self.inner.layout, item).map_err(|e| self.malformed(e))
    }

    /// Sends one conditional `UpdateItem` of `key` with `expr`. With
    /// `want_record`, returns the record it stored (`ReturnValues=ALL_NEW`);
    /// without, asks for nothing back (`NONE`) and returns `None`. A failed
    /// condition returns the stored record where the server sends it
    /// (`ReturnValuesOnConditionCheckFailure=ALL_OLD`, either way). `own`
    /// recognises a stored record that this very request wrote (an earlier
    /// attempt that applied, its response lost, then retried by the SDK):
    /// that is a success.
    async fn update(
        &self,
        key: &str,
        mut expr: Expressions,
        own: impl Fn(&LockRecord) -> bool,
        want_record: bool,
    ) -> Result<Option<LockRecord>, WriteError> {
        let key = self.key(key)?;
        let attempts = Attempts::default();
        let send = self
            .inner
            .client
            .update_item()
            .table_name(&self.inner.table)
            .set_key(Some(key))
            .set_update_expression(expr.update)
            .condition_expression(expr.condition)
            .set_expression_attribute_names(expr.placeholders.take_names())
            .set_expression_attribute_values(expr.placeholders.take_values())
            .return_values(if want_record {
                ReturnValue::AllNew
            } else {
                ReturnValue::None
            })
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send();
        let result = attempts.count(send).await;
        match result {
            Ok(_) if !want_record => Ok(None),
            Ok(out) => match out.attributes() {
                Some(item) => Ok(Some(self.record(item)?)),
                None => Err(self.no_item().into()),
            },
            Err(e) => match e.as_service_error() {
                // The write did not apply; a malformed stored item is reported
                // (as `read` does) rather than hidden behind the failed condition.
                // No item back means "not returned" (dynalite never returns
                // it; DynamoDB returns none when the record is absent): the
                // engine reads the record then.
                // A retried write whose earlier attempt may have applied
                // proves nothing by a failed condition (it may have failed
                // over this write's own effect, changed since): unknown.
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    match self.stored(c.item())? {
                        Some(current) if own(&current) => Ok(Some(current)),
                        current => {
                            match retried_conflict("UpdateItem", &self.inner.table, &attempts) {
                                Some(unknown) => Err(unknown.into()),
                                None => Err(WriteError::ConditionFailed { current }),
                            }
                        }
                    }
                }
                _ => Err(write_error(e, "UpdateItem", &self.inner.table, &attempts).into()),
            },
        }
    }

    /// The expressions of `request` and the test recognising a stored record
    /// it wrote itself: the SDK may have retried a write whose first attempt
    /// applied, and a stored record carrying this request's fresh version
    /// can only have been written by this request.
    fn write_parts(&self, request: &WriteRequest) -> (Expressions, impl Fn(&LockRecord) -> bool) {
        let expr = write_expressions(
            &self.inner.layout,
            request,
            self.expires_at(request.lease_duration),
        );
        let version = request.version.clone();
        (expr, move |current: &LockRecord| current.version == version)
    }

    /// A successful `UpdateItem` that returned no item although asked to.
    fn no_item(&self) -> BackendError {
        BackendError::new(
            BackendErrorKind::OutcomeUnknown,
            format!(
                "UpdateItem on table `{}` succeeded but returned no item; the server ignores ReturnValues=ALL_NEW",
                self.inner.table
            ),
        )
    }

    /// The stored record a failed condition returned, if any.
    fn stored(
        &self,
        item: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<Option<LockRecord>, BackendError> {
        match item {
            Some(item) if !item.is_empty() => self.record(item).map(Some),
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl LockBackend for DynamoBackend {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        // DynamoDB never shows a half-written item (and the tests' moto,
        // started by scripts/moto_linearizable.py, applies requests one at a
        // time): a malformed item is somebody's bad write, reported at once.
        let out = self
            .inner
            .client
            .get_item()
            .table_name(&self.inner.table)
            .set_key(Some(self.key(key)?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend_error(e, "GetItem", &self.inner.table, Effect::ReadOnly))?;
        self.stored(out.item())
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        let (expr, own) = self.write_parts(&request);
        let record = self.update(&request.key, expr, own, true).await?;
        record.ok_or_else(|| self.no_item().into())
    }

    async fn write_no_return(&self, request: WriteRequest) -> Result<(), WriteError> {
        let (expr, own) = self.write_parts(&request);
        self.update(&request.key, expr, own, false)
            .await
            .map(|_| ())
    }

    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        let expr = queue_expressions(&self.inner.layout, &request);
        // As in `write`, by the queue's fresh revision: only this request
        // stores it (a queue without a revision is never recognised).
        let own = |current: &LockRecord| {
            request.queue.revision.is_some() && current.queue.revision == request.queue.revision
        };
        let record = self.update(&request.key, expr, own, true).await?;
        record.ok_or_else(|| self.no_item().into())
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        let mut expr = delete_condition(&self.inner.layout, expected);
        let key = self.key(key)?;
        let attempts = Attempts::default();
        let send = self
            .inner
            .client
            .delete_item()
            .table_name(&self.inner.table)
            .set_key(Some(key))
            .condition_expression(expr.condition)
            .set_expression_attribute_names(expr.placeholders.take_names())
            .set_expression_attribute_values(expr.placeholders.take_values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send();
        let result = attempts.count(send).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(c)) => {
                    let current = self.stored(c.item())?;
                    match retried_conflict("DeleteItem", &self.inner.table, &attempts) {
                        Some(unknown) => Err(unknown.into()),
                        None => Err(WriteError::ConditionFailed { current }),
                    }
                }
                _ => Err(write_error(e, "DeleteItem", &self.inner.table, &attempts).into()),
            },
        }
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        let table = &self.inner.table;
        let mut items = Vec::with_capacity(requests.len());
        for r in &requests {
            let mut expr =
                write_expressions(&self.inner.layout, r, self.expires_at(r.lease_duration));
            let update = Update::builder()
                .table_name(table)
                .set_key(Some(self.key(&r.key)?))
                .set_update_expression(expr.update)
                .condition_expression(expr.condition)
                .set_expression_attribute_names(expr.placeholders.take_names())
                .set_expression_attribute_values(expr.placeholders.take_values())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| {
                    BackendError::new(
                        BackendErrorKind::Other,
                        format!("building a TransactWriteItems update failed: {e}"),
                    )
                })?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        // The first request's fresh version (a UUID, 36 characters) makes a
        // resent transaction idempotent for ten minutes: DynamoDB answers a
        // retry of an applied one with success.
        let token = requests.first().map(|r| r.version.as_str().to_owned());
        let attempts = Attempts::default();
        let send = self
            .inner
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(token)
            .send();
        let result = attempts.count(send).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    let reasons = c.cancellation_reasons();
                    if let Some(r) = reasons
                        .iter()
                        .find(|r| r.code() == Some("ConditionalCheckFailed"))
                    {
                        let current = self.stored(r.item())?;
                        return Err(WriteError::ConditionFailed { current });
                    }
                    let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
                    // Cancelled for another reason (a concurrent transaction
                    // on an item, throttling): nothing was written.
                    Err(BackendError::new(
                        BackendErrorKind::Throttled,
                        format!(
                            "TransactWriteItems on table `{table}` was cancelled ({}); nothing was written",
                            codes.join(", ")
                        ),
                    )
                    .into())
                }
                _ => Err(write_error(e, "TransactWriteItems", table, &attempts).into()),
            },
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }
}
