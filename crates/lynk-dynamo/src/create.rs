//! Creating a lock table: [`TableAdmin::create_table`] and its options.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ProvisionedThroughput,
    ScalarAttributeType, Tag, TimeToLiveSpecification,
};

use crate::classify::admin_error;
use crate::{Error, TableAdmin, LYNK_TAG_KEY, LYNK_TAG_VALUE};

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
    /// Enable DynamoDB TTL on the layout's TTL attribute (default `true`,
    /// `expiresAt` in the default layout). Needs `wait`.
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

/// Why an optional step of table creation (TTL) did not happen.
enum Optional {
    /// DynamoDB did not answer, or could not be reached: reported as an error.
    Transport(Error),
    /// The server refused or lacks it: reported as a warning.
    Refused(String),
}

impl TableAdmin {
    /// Creates lock table `table` with the admin's [layout](TableAdmin::with_layout)'s
    /// keys (by default the hash key `lockKey` (S) alone; with a sort key, the
    /// partition key as hash key and the sort key as range key, both S),
    /// tagged `lynk=lock-table`, then (by default) waits until it is ACTIVE
    /// and enables TTL on the layout's TTL attribute (`expiresAt`).
    ///
    /// Fails with [`Error::TableExists`] if the table already exists (it is
    /// not changed). A server without `UpdateTimeToLive` gives a warning in
    /// the outcome, not an error.
    pub async fn create_table(
        &self,
        table: &str,
        options: &CreateOptions,
    ) -> Result<CreateOutcome, Error> {
        let layout = self.layout();
        let mut keys = vec![(layout.partition_key_attribute(), KeyType::Hash)];
        if let Some(sort) = layout.sort_key_attribute() {
            keys.push((sort, KeyType::Range));
        }
        let mut req = self.client().create_table().table_name(table);
        for (attribute, kind) in keys {
            req = req
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attribute)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| build_error(table, e))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(attribute)
                        .key_type(kind)
                        .build()
                        .map_err(|e| build_error(table, e))?,
                );
        }
        let mut req = req.tags(lynk_tag(table)?);
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
        let ttl_attribute = self.layout().ttl_attribute();
        if options.ttl {
            if !options.wait {
                outcome.warnings.push(format!(
                    "TTL on `{ttl_attribute}` was not enabled because the table may still be CREATING; enable it later (aws dynamodb update-time-to-live --table-name {table} --time-to-live-specification Enabled=true,AttributeName={ttl_attribute})"
                ));
            } else {
                match self.enable_ttl(table).await {
                    Ok(()) => outcome.ttl_enabled = true,
                    Err(Optional::Transport(e)) => return Err(e),
                    Err(Optional::Refused(e)) => {
                        tracing::warn!(table, error = %e, "could not enable TTL");
                        outcome.warnings.push(format!(
                            "TTL on `{ttl_attribute}` could not be enabled ({e}); the table works without it, but released locks are never cleaned up"
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
        self.client()
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
            .attribute_name(self.layout().ttl_attribute())
            .build()
            .map_err(|e| Optional::Refused(e.to_string()))?;
        self.client()
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
