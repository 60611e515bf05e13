//! Lock-table administration: create, list, check and delete tables, and
//! list the locks in one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ProvisionedThroughput,
    ScalarAttributeType, TableDescription, TableStatus, Tag, TimeToLiveSpecification,
};
use lynk_core::{Clock, LockRecord, SystemClock};

use crate::classify::{admin_error, fix_schema};
use crate::item::{expires_at, record_from_item, EXPIRES_AT, LOCK_KEY};
use crate::{AwsOptions, Error};

/// The tag key lynk puts on the tables it creates (as the original does).
pub const LYNK_TAG_KEY: &str = "lynk";
/// The tag value lynk puts on the tables it creates.
pub const LYNK_TAG_VALUE: &str = "lock-table";

/// How a new table is billed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Billing {
    /// Pay per request, no capacity to manage (the default).
    #[default]
    OnDemand,
    /// Fixed read and write capacity units (the original lynk used 5 and 5).
    Provisioned {
        /// Read capacity units.
        read: i64,
        /// Write capacity units.
        write: i64,
    },
}

/// Options of [`TableAdmin::create_table`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Billing mode (default on-demand).
    pub billing: Billing,
    /// Wait until the table is ACTIVE (default `true`).
    pub wait: bool,
    /// Enable DynamoDB TTL on `expiresAt` (default `true`). Needs `wait`.
    pub ttl: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            billing: Billing::OnDemand,
            wait: true,
            ttl: true,
        }
    }
}

impl CreateOptions {
    /// The defaults: on-demand, wait, TTL on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the billing mode.
    pub fn billing(mut self, billing: Billing) -> Self {
        self.billing = billing;
        self
    }

    /// Whether to wait until the table is ACTIVE.
    pub fn wait(mut self, yes: bool) -> Self {
        self.wait = yes;
        self
    }

    /// Whether to enable TTL on `expiresAt`.
    pub fn ttl(mut self, yes: bool) -> Self {
        self.ttl = yes;
        self
    }
}

/// What [`TableAdmin::create_table`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreateOutcome {
    /// The table name.
    pub table: String,
    /// Whether the table is known to be ACTIVE.
    pub active: bool,
    /// Whether TTL on `expiresAt` was enabled.
    pub ttl_enabled: bool,
    /// Things that did not work but leave the table usable (e.g. a server
    /// without `UpdateTimeToLive`).
    pub warnings: Vec<String>,
}

/// What [`TableAdmin::check_table`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TableInfo {
    /// The table name.
    pub name: String,
    /// The table's ARN, if the server reports one.
    pub arn: Option<String>,
    /// The table status (ACTIVE, CREATING, ...).
    pub status: String,
    /// `PAY_PER_REQUEST` or `PROVISIONED`.
    pub billing: String,
    /// DynamoDB's approximate item count (updated about every six hours).
    pub item_count: Option<i64>,
    /// Whether the table carries the tag `lynk=lock-table`. `None` if the
    /// server could not say.
    pub tagged: Option<bool>,
    /// The TTL status and attribute (e.g. `ENABLED on expiresAt`), or `None`
    /// if the server does not report TTL.
    pub ttl: Option<String>,
}

/// One lock in a table, as listed by [`TableAdmin::list_locks`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LockEntry {
    /// The stored record (holder, lease, version, token, payload, released).
    pub record: LockRecord,
    /// The TTL attribute, epoch seconds, if the record has one (records of
    /// the original Python client have none).
    pub expires_at: Option<u64>,
}

/// The locks in a table.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LockListing {
    /// Readable lock records, sorted by name.
    pub locks: Vec<LockEntry>,
    /// Items that are not lock records, with what is wrong.
    pub malformed: Vec<String>,
}

/// Administration of lock tables: create, list, check, delete, list locks.
///
/// ```no_run
/// # async fn f() -> Result<(), lynk_dynamo::Error> {
/// use lynk_dynamo::{CreateOptions, TableAdmin};
/// let admin = TableAdmin::connect(&Default::default()).await?;
/// admin.create_table("my-locks", &CreateOptions::new()).await?;
/// for table in admin.list_tables().await? {
///     println!("{table}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TableAdmin {
    client: aws_sdk_dynamodb::Client,
    clock: Arc<dyn Clock>,
    wait_timeout: Duration,
}

/// Why an optional step of table creation (TTL) did not happen.
enum Optional {
    /// DynamoDB did not answer, or could not be reached: reported as an error.
    Transport(Error),
    /// The server refused or lacks it: reported as a warning.
    Refused(String),
}

impl TableAdmin {
    /// Administration over an existing SDK client.
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        TableAdmin {
            client,
            clock: Arc::new(SystemClock),
            wait_timeout: Duration::from_secs(600),
        }
    }

    /// Loads the AWS configuration with `options` and connects.
    pub async fn connect(options: &AwsOptions) -> Result<Self, Error> {
        Ok(Self::new(options.load_client().await?))
    }

    /// Uses `clock` for waiting (default [`SystemClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Gives up waiting for a table state after `timeout` (default 10 minutes).
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// Creates lock table `table`: hash key `lockKey` (S), tagged
    /// `lynk=lock-table`, then (by default) waits until it is ACTIVE and
    /// enables TTL on `expiresAt`.
    ///
    /// Fails with [`Error::TableExists`] if the table already exists (it is
    /// not changed). A server without `UpdateTimeToLive` gives a warning in
    /// the outcome, not an error.
    pub async fn create_table(
        &self,
        table: &str,
        options: &CreateOptions,
    ) -> Result<CreateOutcome, Error> {
        let mut req = self
            .client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(LOCK_KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| build_error(table, e))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(LOCK_KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| build_error(table, e))?,
            )
            .tags(lynk_tag(table)?);
        req = match options.billing {
            Billing::OnDemand => req.billing_mode(BillingMode::PayPerRequest),
            Billing::Provisioned { read, write } => req
                .billing_mode(BillingMode::Provisioned)
                .provisioned_throughput(
                    ProvisionedThroughput::builder()
                        .read_capacity_units(read)
                        .write_capacity_units(write)
                        .build()
                        .map_err(|e| build_error(table, e))?,
                ),
        };
        let arn = match req.send().await {
            Ok(out) => out
                .table_description()
                .and_then(|d| d.table_arn())
                .map(str::to_owned),
            Err(SdkError::ServiceError(s))
                if matches!(s.err(), CreateTableError::ResourceInUseException(_)) =>
            {
                return Err(Error::TableExists {
                    table: table.to_owned(),
                })
            }
            Err(e) => return Err(admin_error(e, "CreateTable", table)),
        };
        let mut outcome = CreateOutcome {
            table: table.to_owned(),
            active: false,
            ttl_enabled: false,
            warnings: Vec::new(),
        };
        if options.wait {
            self.wait_until_active(table).await?;
            outcome.active = true;
        }
        // DynamoDB applies CreateTable's tags; some servers (dynalite)
        // ignore them, so check, and tag afterwards where needed.
        if let Some(arn) = &arn {
            if let Err(e) = self.ensure_tagged(table, arn).await {
                if e.is_transport() {
                    // DynamoDB stopped answering: report it, rather than
                    // wait out every remaining step's timeout.
                    return Err(e);
                }
                tracing::warn!(table, error = %e, "could not tag the table");
                outcome.warnings.push(format!(
                    "the table could not be tagged {LYNK_TAG_KEY}={LYNK_TAG_VALUE} ({e}); `lynk list-tables` will not show it and `lynk delete-table` will need --force"
                ));
            }
        }
        if options.ttl {
            if !options.wait {
                outcome.warnings.push(format!(
                    "TTL on `{EXPIRES_AT}` was not enabled because the table may still be CREATING; enable it later (aws dynamodb update-time-to-live --table-name {table} --time-to-live-specification Enabled=true,AttributeName={EXPIRES_AT})"
                ));
            } else {
                match self.enable_ttl(table).await {
                    Ok(()) => outcome.ttl_enabled = true,
                    Err(Optional::Transport(e)) => return Err(e),
                    Err(Optional::Refused(e)) => {
                        tracing::warn!(table, error = %e, "could not enable TTL");
                        outcome.warnings.push(format!(
                            "TTL on `{EXPIRES_AT}` could not be enabled ({e}); the table works without it, but released locks are never cleaned up"
                        ));
                    }
                }
            }
        }
        Ok(outcome)
    }

    async fn ensure_tagged(&self, table: &str, arn: &str) -> Result<(), Error> {
        if self.is_tagged(table, arn).await? {
            return Ok(());
        }
        self.client
            .tag_resource()
            .resource_arn(arn)
            .tags(lynk_tag(table)?)
            .send()
            .await
            .map_err(|e| admin_error(e, "TagResource", table))?;
        Ok(())
    }

    async fn enable_ttl(&self, table: &str) -> Result<(), Optional> {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(EXPIRES_AT)
            .build()
            .map_err(|e| Optional::Refused(e.to_string()))?;
        self.client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match &e {
                SdkError::ServiceError(s) => {
                    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
                    Optional::Refused(format!(
                        "{}: {}",
                        s.err().code().unwrap_or("error"),
                        s.err()
                            .message()
                            .unwrap_or("the server does not support it")
                    ))
                }
                _ => {
                    let error = admin_error(e, "UpdateTimeToLive", table);
                    if error.is_transport() {
                        Optional::Transport(error)
                    } else {
                        Optional::Refused(error.to_string())
                    }
                }
            })
    }

    /// Describes `table`; `Ok(None)` if it does not exist.
    async fn describe(&self, table: &str) -> Result<Option<TableDescription>, Error> {
        match self.client.describe_table().table_name(table).send().await {
            Ok(out) => Ok(out.table().cloned()),
            Err(SdkError::ServiceError(s))
                if matches!(s.err(), DescribeTableError::ResourceNotFoundException(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(admin_error(e, "DescribeTable", table)),
        }
    }

    async fn wait_until_active(&self, table: &str) -> Result<(), Error> {
        self.wait_for(table, "ACTIVE", |d| {
            d.and_then(|d| d.table_status().cloned()) == Some(TableStatus::Active)
        })
        .await
    }

    async fn wait_for(
        &self,
        table: &str,
        state: &'static str,
        done: impl Fn(Option<&TableDescription>) -> bool,
    ) -> Result<(), Error> {
        let start = self.clock.now();
        let mut pause = Duration::from_millis(100);
        loop {
            let d = self.describe(table).await?;
            if done(d.as_ref()) {
                return Ok(());
            }
            let waited = self.clock.now().saturating_duration_since(start);
            if waited >= self.wait_timeout {
                return Err(Error::WaitTimedOut {
                    table: table.to_owned(),
                    state,
                    waited,
                });
            }
            self.clock.sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Whether `arn` carries the tag `lynk=lock-table` (all tag pages).
    async fn is_tagged(&self, table: &str, arn: &str) -> Result<bool, Error> {
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_tags_of_resource()
                .resource_arn(arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| admin_error(e, "ListTagsOfResource", table))?;
            if out
                .tags()
                .iter()
                .any(|t| t.key() == LYNK_TAG_KEY && t.value() == LYNK_TAG_VALUE)
            {
                return Ok(true);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(false),
            }
        }
    }

    /// All table names in the account and region, across all pages.
    pub async fn list_all_tables(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .list_tables()
                .set_exclusive_start_table_name(start.take())
                .send()
                .await
                .map_err(|e| admin_error(e, "ListTables", "*"))?;
            names.extend(out.table_names().iter().cloned());
            match out.last_evaluated_table_name() {
                Some(last) if !last.is_empty() => start = Some(last.to_owned()),
                _ => break,
            }
        }
        Ok(names)
    }

    /// The tables lynk created (tagged `lynk=lock-table`), sorted, across all
    /// pages. Uses `ListTables` and `ListTagsOfResource`, so it needs only
    /// DynamoDB permissions (the original used the Resource Groups Tagging API).
    pub async fn list_tables(&self) -> Result<Vec<String>, Error> {
        let mut tagged = Vec::new();
        for name in self.list_all_tables().await? {
            let Some(desc) = self.describe(&name).await? else {
                continue; // deleted meanwhile
            };
            let Some(arn) = desc.table_arn() else {
                continue;
            };
            if self.is_tagged(&name, arn).await? {
                tagged.push(name);
            }
        }
        tagged.sort();
        Ok(tagged)
    }

    /// Deletes `table` and (if `wait`) waits until it is gone.
    ///
    /// Refuses, with [`Error::NotALockTable`], a table without the tag
    /// `lynk=lock-table` unless `force`, so a typo cannot destroy other data.
    /// Fails with [`Error::TableMissing`] if there is no such table.
    pub async fn delete_table(&self, table: &str, force: bool, wait: bool) -> Result<(), Error> {
        let Some(desc) = self.describe(table).await? else {
            return Err(Error::TableMissing {
                table: table.to_owned(),
            });
        };
        if !force {
            let tagged = match desc.table_arn() {
                Some(arn) => self.is_tagged(table, arn).await?,
                None => false,
            };
            if !tagged {
                return Err(Error::NotALockTable {
                    table: table.to_owned(),
                });
            }
        }
        match self.client.delete_table().table_name(table).send().await {
            Ok(_) => {}
            Err(SdkError::ServiceError(s))
                if matches!(
                    s.err(),
                    aws_sdk_dynamodb::operation::delete_table::DeleteTableError::ResourceNotFoundException(_)
                ) =>
            {
                return Err(Error::TableMissing {
                    table: table.to_owned(),
                })
            }
            Err(e) => return Err(admin_error(e, "DeleteTable", table)),
        }
        if wait {
            self.wait_for(table, "deleted", |d| d.is_none()).await?;
        }
        Ok(())
    }

    /// Checks that `table` exists and can hold lynk locks, and describes it.
    ///
    /// A wrong key schema gives [`Error::TableMisconfigured`] saying what is
    /// wrong and how to fix it; a missing table gives [`Error::TableMissing`].
    pub async fn check_table(&self, table: &str) -> Result<TableInfo, Error> {
        let Some(desc) = self.describe(table).await? else {
            return Err(Error::TableMissing {
                table: table.to_owned(),
            });
        };
        if let Some(problem) = schema_problem(&desc) {
            return Err(Error::TableMisconfigured {
                table: table.to_owned(),
                problem,
                fix: fix_schema(table),
            });
        }
        // Tags and TTL are shown when the server (and the caller's policy)
        // allow reading them; but if DynamoDB stopped answering, say so.
        let tagged = match desc.table_arn() {
            Some(arn) => match self.is_tagged(table, arn).await {
                Ok(t) => Some(t),
                Err(e) if e.is_transport() => return Err(e),
                Err(_) => None,
            },
            None => None,
        };
        let ttl = match self
            .client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
        {
            Ok(out) => out.time_to_live_description().map(|t| {
                let status = t
                    .time_to_live_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|| "UNKNOWN".into());
                match t.attribute_name() {
                    Some(a) => format!("{status} on {a}"),
                    None => status,
                }
            }),
            Err(e) => {
                let e = admin_error(e, "DescribeTimeToLive", table);
                if e.is_transport() {
                    return Err(e);
                }
                None
            }
        };
        let billing = desc
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str().to_owned())
            .unwrap_or_else(|| "PROVISIONED".into());
        Ok(TableInfo {
            name: table.to_owned(),
            arn: desc.table_arn().map(str::to_owned),
            status: desc
                .table_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "UNKNOWN".into()),
            billing,
            item_count: desc.item_count(),
            tagged,
            ttl,
        })
    }

    /// Lists the locks in `table` (a consistent scan of all pages), sorted
    /// by name. Costs one read unit per 4 KB scanned.
    pub async fn list_locks(&self, table: &str) -> Result<LockListing, Error> {
        let mut listing = LockListing::default();
        let mut start: Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| admin_error(e, "Scan", table))?;
            for item in out.items() {
                match record_from_item(item) {
                    Ok(record) => listing.locks.push(LockEntry {
                        record,
                        expires_at: expires_at(item),
                    }),
                    Err(e) => listing.malformed.push(e.to_string()),
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        listing
            .locks
            .sort_by(|a, b| a.record.key.cmp(&b.record.key));
        Ok(listing)
    }
}

/// What is wrong with a table's key schema for lynk, if anything.
fn schema_problem(desc: &TableDescription) -> Option<String> {
    let keys = desc.key_schema();
    let hash: Vec<&str> = keys
        .iter()
        .filter(|k| k.key_type() == &KeyType::Hash)
        .map(|k| k.attribute_name())
        .collect();
    let range: Vec<&str> = keys
        .iter()
        .filter(|k| k.key_type() == &KeyType::Range)
        .map(|k| k.attribute_name())
        .collect();
    let mut problems = Vec::new();
    match hash.as_slice() {
        [LOCK_KEY] => {}
        [other] => problems.push(format!("its hash key is `{other}`, not `{LOCK_KEY}`")),
        _ => problems.push("it has no hash key".to_owned()),
    }
    if let Some(r) = range.first() {
        problems.push(format!(
            "it has a sort key `{r}`, and lock tables must have none"
        ));
    }
    if hash.as_slice() == [LOCK_KEY] {
        let ty = desc
            .attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == LOCK_KEY)
            .map(|a| a.attribute_type().clone());
        if let Some(ty) = ty {
            if ty != ScalarAttributeType::S {
                problems.push(format!(
                    "its hash key `{LOCK_KEY}` has type {}, not S (string)",
                    ty.as_str()
                ));
            }
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

fn lynk_tag(table: &str) -> Result<Tag, Error> {
    Tag::builder()
        .key(LYNK_TAG_KEY)
        .value(LYNK_TAG_VALUE)
        .build()
        .map_err(|e| build_error(table, e))
}

fn build_error(table: &str, e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Service {
        operation: "CreateTable".into(),
        table: table.to_owned(),
        detail: format!("could not build the request: {e}"),
        retryable: false,
    }
}
