//! Checking a lock table: [`TableAdmin::check_table`] and what it reports,
//! with DynamoDB's table status, billing mode and TTL status as types.

use std::fmt;

use aws_sdk_dynamodb::types::{
    BillingMode, KeyType, ScalarAttributeType, TableDescription, TableStatus as SdkTableStatus,
    TimeToLiveStatus,
};

use crate::classify::admin_error;
use crate::{Error, TableAdmin, TableLayout};

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
    /// What works but deserves attention, each with what to do: e.g. TTL
    /// enabled on another attribute than the layout's TTL attribute.
    pub warnings: Vec<String>,
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
    /// Checks that `table` exists and can hold lynk locks under the admin's
    /// [layout](TableAdmin::with_layout), and describes it.
    ///
    /// The table's key schema must be the layout's: the partition key as
    /// its hash key, the sort key (if the layout has one) as its range key,
    /// no range key otherwise, both of type S. A difference gives
    /// [`Error::TableMisconfigured`] naming each attribute, kind or type that
    /// differs and how to fix it; a missing table gives
    /// [`Error::TableMissing`]. TTL enabled on another attribute than the
    /// layout's is a [warning](TableInfo::warnings), not an error: locks work,
    /// but released records are not cleaned up.
    pub async fn check_table(&self, table: &str) -> Result<TableInfo, Error> {
        let Some(desc) = self.describe(table).await? else {
            return Err(Error::TableMissing {
                table: table.to_owned(),
            });
        };
        if let Some((problem, fix)) = schema_problem(&desc, self.layout(), table) {
            return Err(Error::TableMisconfigured {
                table: table.to_owned(),
                problem,
                fix,
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
        let mut warnings = Vec::new();
        let wanted = self.layout().ttl_attribute();
        if let Some(Ttl {
            status: TtlStatus::Enabled | TtlStatus::Enabling,
            attribute: Some(attribute),
        }) = &ttl
        {
            if attribute != wanted {
                warnings.push(format!(
                    "the table's TTL is on `{attribute}`, not on lynk's TTL attribute `{wanted}`, so TTL never deletes released lock records; if `{attribute}` holds epoch seconds, name lynk's TTL attribute `{attribute}` in the layout (TableLayout::attribute(LynkAttribute::ExpiresAt, \"{attribute}\")), or delete old released records yourself"
                ));
            }
        }
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
            warnings,
        })
    }
}

/// What is wrong with a table's key schema for `layout`, if anything: the
/// problems and their fixes.
fn schema_problem(
    desc: &TableDescription,
    layout: &TableLayout,
    table: &str,
) -> Option<(String, String)> {
    let keys = desc.key_schema();
    let named = |kind: KeyType| -> Vec<&str> {
        keys.iter()
            .filter(|k| k.key_type() == &kind)
            .map(|k| k.attribute_name())
            .collect()
    };
    let (hash, range) = (named(KeyType::Hash), named(KeyType::Range));
    let type_of = |name: &str| {
        desc.attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map(|a| a.attribute_type().clone())
    };
    // A key of another type than S: lynk cannot use it whatever the layout.
    let not_string = |name: &str| match type_of(name) {
        Some(ty) if ty != ScalarAttributeType::S => Some(ty.as_str().to_owned()),
        _ => None,
    };
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let pk = layout.partition_key_attribute();
    match hash.as_slice() {
        [h] if *h == pk => {
            if let Some(ty) = not_string(h) {
                problems.push(format!("its hash key `{h}` has type {ty}, not S (string)"));
                fixes.push(
                    "lynk keeps lock names in string (S) keys, so use another table".to_owned(),
                );
            }
        }
        [h] => {
            problems.push(format!(
                "its hash key is `{h}`, not `{pk}` (the layout's partition key)"
            ));
            match not_string(h) {
                Some(ty) => fixes.push(format!(
                    "the table's hash key `{h}` has type {ty} and lynk needs a string (S) key, so use another table"
                )),
                None => fixes.push(format!(
                    "set the layout's partition key to `{h}` (TableLayout::partition_key; `--partition-key {h}` with the lynk command)"
                )),
            }
        }
        _ => problems.push("it has no hash key".to_owned()),
    }
    match (range.first(), layout.sort_key_attribute()) {
        (None, None) => {}
        (Some(r), None) => {
            problems.push(format!(
                "it has a sort key `{r}`, and the table layout has none"
            ));
            fixes.push(format!(
                "give the layout the sort key `{r}`: a fixed value on every lock item (TableLayout::sort_key_fixed) or lock groups (TableLayout::sort_key_grouped)"
            ));
        }
        (None, Some(s)) => {
            problems.push(format!(
                "it has no sort key, and the table layout expects the sort key `{s}`"
            ));
            fixes.push("remove the sort key from the layout".to_owned());
        }
        (Some(r), Some(s)) if r != &s => {
            problems.push(format!(
                "its sort key is `{r}`, not `{s}` (the layout's sort key)"
            ));
            fixes.push(format!("name the layout's sort key `{r}`"));
        }
        (Some(r), Some(_)) => {
            if let Some(ty) = not_string(r) {
                problems.push(format!("its sort key `{r}` has type {ty}, not S (string)"));
                fixes.push(
                    "lynk keeps lock names in string (S) keys, so use another table".to_owned(),
                );
            }
        }
    }
    if problems.is_empty() {
        return None;
    }
    let default = if layout.is_default() {
        String::new()
    } else {
        " with the same layout".to_owned()
    };
    fixes.push(format!(
        "DynamoDB cannot change a key schema: otherwise use another table, or a table created by `lynk create-table {table}`{default}"
    ));
    Some((problems.join("; "), fixes.join("; ")))
}
