//! Lock-table administration: [`TableAdmin`], waiting for table states,
//! listing and deleting tables. Creating a table is in `create.rs`, checking
//! one in `table_info.rs`, listing its locks in `locks.rs`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{TableDescription, TableStatus};
use lynk_core::{Clock, SystemClock};

use crate::classify::admin_error;
use crate::{AwsOptions, Error, TableLayout};

/// The tag key lynk puts on the tables it creates (as the original does).
pub const LYNK_TAG_KEY: &str = "lynk";
/// The tag value lynk puts on the tables it creates.
pub const LYNK_TAG_VALUE: &str = "lock-table";

/// Administration of lock tables: create, list, check, delete, list locks.
///
/// Creating, checking and every lock operation follow the admin's
/// [`TableLayout`] ([`with_layout`](TableAdmin::with_layout); default: the
/// original Python lynk's, partition key `lockKey` and no sort key).
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
    layout: TableLayout,
}

impl TableAdmin {
    /// Administration over an existing SDK client.
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        TableAdmin {
            client,
            clock: Arc::new(SystemClock),
            wait_timeout: Duration::from_secs(600),
            layout: TableLayout::default(),
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

    /// Uses `layout` for creating and checking tables and for every lock
    /// operation ([`describe_lock`](TableAdmin::describe_lock),
    /// [`list_locks`](TableAdmin::list_locks), [`list_group`](TableAdmin::list_group),
    /// [`release_group`](TableAdmin::release_group)). Fails with
    /// [`Error::InvalidLayout`] if the layout is not usable
    /// ([`TableLayout::validate`]).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), lynk_dynamo::Error> {
    /// use lynk_dynamo::{CreateOptions, TableAdmin, TableLayout};
    /// let layout = TableLayout::new().partition_key("PK").key_prefix("LOCK#").sort_key_grouped("SK");
    /// let admin = TableAdmin::connect(&Default::default()).await?.with_layout(layout)?;
    /// admin.check_table("app-table").await?; // says which key differs, if one does
    /// for lock in admin.list_group("app-table", "orders").await?.locks {
    ///     println!("{} held by {}", lock.record.key, lock.record.host);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn with_layout(self, layout: TableLayout) -> Result<Self, Error> {
        layout.validate()?;
        Ok(self.with_valid_layout(layout))
    }

    /// Uses `layout`, already validated.
    pub(crate) fn with_valid_layout(mut self, layout: TableLayout) -> Self {
        self.layout = layout;
        self
    }

    /// The table layout.
    pub fn layout(&self) -> &TableLayout {
        &self.layout
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// Describes `table`; `Ok(None)` if it does not exist.
    pub(crate) async fn describe(&self, table: &str) -> Result<Option<TableDescription>, Error> {
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

    pub(crate) async fn wait_until_active(&self, table: &str) -> Result<(), Error> {
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
    pub(crate) async fn is_tagged(&self, table: &str, arn: &str) -> Result<bool, Error> {
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
}
