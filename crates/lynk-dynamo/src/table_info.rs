//! Checking a lock table: [`TableAdmin::check_table`] and what it reports,
//! with DynamoDB's table status, billing mode and TTL status as types.

use std::fmt;

use aws_sdk_dynamodb::types::{
    BillingMode, KeyType, ScalarAttributeType, TableDescription, TableStatus as SdkTableStatus,
    TimeToLiveStatus,
};

use crate::classify::{admin_error, fix_schema};
use crate::item::LOCK_KEY;
use crate::{Error, TableAdmin};

/// What [`TableAdmin::check_table`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TableInfo {
    /// The table name.
    pub name: String,
    /// The table's ARN, if the server reports one.
    pub arn: Option<String>,
    /// The table status ([`TableStatus::Active`], [`TableStatus::Creating`], ...).
    pub status: TableStatus,
    /// The billing mode.
    pub billing: TableBilling,
    /// DynamoDB's approximate item count (updated about every six hours).
    pub item_count: Option<i64>,
    /// Whether the table carries the tag `lynk=lock-table`. `None` if the
    /// server could not say.
    pub tagged: Option<bool>,
    /// The TTL status and attribute (shown as e.g. `ENABLED on expiresAt`),
    /// or `None` if the server does not report TTL.
    pub ttl: Option<Ttl>,
}

/// Defines a DynamoDB enum mirror: known values, an `Other` fallback, and
/// `Display` as DynamoDB's own text (e.g. `ACTIVE`).
macro_rules! dynamo_enum {
    ($(#[$doc:meta])* $name:ident from $sdk:ty { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A value this version of lynk does not know, as DynamoDB spelled it.
            Other(String),
        }

        impl $name {
            /// DynamoDB's text for this value (e.g. `ACTIVE`).
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                }
            }

            /// The value for DynamoDB's `text`; unknown text gives `Other`.
            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }

            fn from_sdk(value: &$sdk) -> Self {
                Self::parse(value.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

dynamo_enum! {
    /// A table's status, as DynamoDB reports it.
    TableStatus from SdkTableStatus {
        /// Ready for use.
        Active = "ACTIVE",
        /// Being created; not usable yet.
        Creating = "CREATING",
        /// Being updated (e.g. capacity); still serves reads and writes.
        Updating = "UPDATING",
        /// Being deleted.
        Deleting = "DELETING",
        /// Its KMS key is inaccessible.
        InaccessibleEncryptionCredentials = "INACCESSIBLE_ENCRYPTION_CREDENTIALS",
        /// Being archived.
        Archiving = "ARCHIVING",
        /// Archived.
        Archived = "ARCHIVED",
    }
}

impl TableStatus {
    /// Whether the table serves reads and writes in this state
    /// ([`Active`](TableStatus::Active) or [`Updating`](TableStatus::Updating)).
    pub fn is_usable(&self) -> bool {
        matches!(self, TableStatus::Active | TableStatus::Updating)
    }
}

dynamo_enum! {
    /// A table's billing mode, as DynamoDB reports it.
    TableBilling from BillingMode {
        /// On demand (`PAY_PER_REQUEST`).
        PayPerRequest = "PAY_PER_REQUEST",
        /// Provisioned capacity (`PROVISIONED`).
        Provisioned = "PROVISIONED",
    }
}

dynamo_enum! {
    /// The status of a table's TTL, as DynamoDB reports it.
    TtlStatus from TimeToLiveStatus {
        /// TTL is on.
        Enabled = "ENABLED",
        /// TTL is being turned on.
        Enabling = "ENABLING",
        /// TTL is off.
        Disabled = "DISABLED",
        /// TTL is being turned off.
        Disabling = "DISABLING",
    }
}

/// A table's TTL setting: its status and attribute. Displays as DynamoDB's
/// status, then ` on <attribute>` if there is one (e.g. `ENABLED on expiresAt`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ttl {
    /// The TTL status.
    pub status: TtlStatus,
    /// The TTL attribute, if the server names one.
    pub attribute: Option<String>,
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            Some(a) => write!(f, "{} on {a}", self.status),
            None => write!(f, "{}", self.status),
        }
    }
}

impl TableAdmin {
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
            .client()
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
        {
            Ok(out) => out.time_to_live_description().map(|t| Ttl {
                status: t
                    .time_to_live_status()
                    .map_or_else(|| TtlStatus::Other("UNKNOWN".into()), TtlStatus::from_sdk),
                attribute: t.attribute_name().map(str::to_owned),
            }),
            Err(e) => {
                let e = admin_error(e, "DescribeTimeToLive", table);
                if e.is_transport() {
                    return Err(e);
                }
                None
            }
        };
        // A table without a billing summary is provisioned (the API's default).
        let billing = desc
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map_or(TableBilling::Provisioned, TableBilling::from_sdk);
        Ok(TableInfo {
            name: table.to_owned(),
            arn: desc.table_arn().map(str::to_owned),
            status: desc.table_status().map_or_else(
                || TableStatus::Other("UNKNOWN".into()),
                TableStatus::from_sdk,
            ),
            billing,
            item_count: desc.item_count(),
            tagged,
            ttl,
        })
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
