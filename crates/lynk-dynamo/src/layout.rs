//! Table layouts: where lynk's lock items live in a table, so locks can share
//! a table with your own items (a single-table design) instead of needing a
//! table of their own.
//!
//! A [`TableLayout`] says
//!
//! * which attribute is the table's **partition key** (default `lockKey`)
//!   and an optional **prefix** written before its value (e.g. `LOCK#`, so
//!   lock items are recognisable and an IAM `dynamodb:LeadingKeys` condition
//!   can scope a policy to them);
//! * whether the table has a **sort key**, and how a lock name maps onto the
//!   two keys:
//!   - [`SortKey::None`]: the whole name in the partition key (the original
//!     Python lynk's layout, the default);
//!   - [`SortKey::Fixed`]: the whole name in the partition key, and the same
//!     fixed value in the sort key of every lock item;
//!   - [`SortKey::Grouped`]: a **lock group** in the partition key and the
//!     rest of the name in the sort key: with the separator `/`, lock
//!     `orders/42` is partition key `orders` (after the prefix), sort key
//!     `42`. The locks of one group are then listed with one `Query`
//!     ([`TableAdmin::list_group`](crate::TableAdmin::list_group)) and can be
//!     released together ([`TableAdmin::release_group`](crate::TableAdmin::release_group));
//! * the names of lynk's own attributes ([`LynkAttribute`]), renameable
//!   where they would collide with yours.
//!
//! The default layout is the original's, so the Python client still shares
//! default tables. All clients of one lock must use the same layout: under
//! another layout the same name is another item, and two clients on
//! different layouts never exclude each other.
//!
//! ```
//! use lynk_dynamo::{LynkAttribute, TableLayout};
//!
//! // An existing single-table design with keys `PK` and `SK`.
//! let layout = TableLayout::new()
//!     .partition_key("PK")
//!     .key_prefix("LOCK#")
//!     .sort_key_grouped("SK")
//!     .attribute(LynkAttribute::ExpiresAt, "ttl");
//! layout.validate()?;
//! assert_eq!(layout.group_of("orders/42")?, "orders");
//! let key = layout.key_of("orders/42")?;
//! assert_eq!(key["PK"].as_s().unwrap(), "LOCK#orders");
//! assert_eq!(key["SK"].as_s().unwrap(), "42");
//! assert_eq!(layout.name_of(&key).as_deref(), Some("orders/42"));
//!
//! // A name without the separator is refused, saying why.
//! let err = layout.key_of("orders").unwrap_err();
//! assert!(err.to_string().contains("separator"));
//! # Ok::<(), lynk_dynamo::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item;
use crate::Error;

/// The separator of [`TableLayout::sort_key_grouped`] unless
/// [`TableLayout::group_separator`] sets another.
pub const DEFAULT_SEPARATOR: &str = "/";

/// DynamoDB's limit on a partition key value, in bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// DynamoDB's limit on a sort key value, in bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// DynamoDB's limit on the name of a key attribute, in bytes.
const MAX_KEY_ATTRIBUTE_BYTES: usize = 255;

/// One of lynk's own attributes of a lock item (everything but the key),
/// renameable with [`TableLayout::attribute`].
///
/// The first three are the original Python lynk's: rename them only if no
/// Python client shares the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LynkAttribute {
    /// The lease in seconds (N), default `leaseDuration`.
    LeaseDuration,
    /// The record version (S), default `versionNumber`. Its presence is what
    /// tells a lock item from another item.
    VersionNumber,
    /// The writer's host identifier (S), default `hostIdentifier`.
    HostIdentifier,
    /// The fencing token (N), default `fencingToken`.
    FencingToken,
    /// The holder's payload (B), default `payload`.
    Payload,
    /// The released marker (BOOL), default `released`.
    Released,
    /// The TTL attribute (N, epoch seconds), default `expiresAt`. Name it as
    /// the table's TTL attribute if the table already has one.
    ExpiresAt,
    /// The wait queue (L), default `waitQueue`.
    WaitQueue,
    /// The wait queue's revision (S), default `queueRevision`.
    QueueRevision,
    /// The queue entry a release granted the lock to (S), default `grantedTo`.
    GrantedTo,
    /// What tells holders on one host apart (S), default `holderDetail`.
    HolderDetail,
}

impl LynkAttribute {
    /// Every attribute, in a fixed order.
    pub const ALL: [LynkAttribute; 11] = [
        LynkAttribute::LeaseDuration,
        LynkAttribute::VersionNumber,
        LynkAttribute::HostIdentifier,
        LynkAttribute::FencingToken,
        LynkAttribute::Payload,
        LynkAttribute::Released,
        LynkAttribute::ExpiresAt,
        LynkAttribute::WaitQueue,
        LynkAttribute::QueueRevision,
        LynkAttribute::GrantedTo,
        LynkAttribute::HolderDetail,
    ];

    /// The attribute's name in the default layout (e.g. `fencingToken`).
    pub const fn default_name(self) -> &'static str {
        match self {
            LynkAttribute::LeaseDuration => item::LEASE_DURATION,
            LynkAttribute::VersionNumber => item::VERSION_NUMBER,
            LynkAttribute::HostIdentifier => item::HOST_IDENTIFIER,
            LynkAttribute::FencingToken => item::FENCING_TOKEN,
            LynkAttribute::Payload => item::PAYLOAD,
            LynkAttribute::Released => item::RELEASED,
            LynkAttribute::ExpiresAt => item::EXPIRES_AT,
            LynkAttribute::WaitQueue => item::WAIT_QUEUE,
            LynkAttribute::QueueRevision => item::QUEUE_REVISION,
            LynkAttribute::GrantedTo => item::GRANTED_TO,
            LynkAttribute::HolderDetail => item::HOLDER_DETAIL,
        }
    }

    /// The attribute for its default name (`"fencingToken"` gives
    /// [`FencingToken`](LynkAttribute::FencingToken)); `None` for any other text.
    pub fn from_default_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.default_name() == name)
    }

    /// Whether the original Python lynk reads and writes this attribute
    /// (renaming it keeps Python clients out of the table).
    pub const fn is_original(self) -> bool {
        matches!(
            self,
            LynkAttribute::LeaseDuration
                | LynkAttribute::VersionNumber
                | LynkAttribute::HostIdentifier
        )
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LynkAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_name())
    }
}

/// How a layout uses the table's sort key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SortKey {
    /// The table has no sort key: the whole name is in the partition key.
    None,
    /// The whole name is in the partition key; the sort key `attribute`
    /// holds `value` on every lock item.
    Fixed {
        /// The sort key attribute.
        attribute: String,
        /// The value every lock item's sort key holds.
        value: String,
    },
    /// The name's group (up to the first separator) is in the partition key,
    /// the rest of the name in the sort key `attribute`.
    Grouped {
        /// The sort key attribute.
        attribute: String,
    },
}

/// Where lock items live in a table and what their attributes are called;
/// see the [module documentation](self).
///
/// Build one with the methods below, starting from [`TableLayout::new`]
/// (the default: partition key `lockKey` holding the whole name, no sort key,
/// lynk's attribute names), then give it to
/// [`DynamoBackendBuilder::layout`](crate::DynamoBackendBuilder::layout) and
/// [`TableAdmin::with_layout`](crate::TableAdmin::with_layout), which check
/// it with [`validate`](TableLayout::validate).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableLayout {
    partition_key: String,
    prefix: String,
    sort_key: SortKey,
    /// Set explicitly with `group_separator` (checked by `validate`: only
    /// grouped layouts have one).
    separator: Option<String>,
    attributes: [String; 11],
}

impl Default for TableLayout {
    fn default() -> Self {
        TableLayout {
            partition_key: item::LOCK_KEY.to_owned(),
            prefix: String::new(),
            sort_key: SortKey::None,
            separator: None,
            attributes: LynkAttribute::ALL.map(|a| a.default_name().to_owned()),
        }
    }
}

impl TableLayout {
    /// The default layout, the original Python lynk's: partition key
    /// `lockKey` holding the whole lock name, no sort key, no prefix, lynk's
    /// attribute names.
    pub fn new() -> Self {
        Self::default()
    }

    // ---- building ---------------------------------------------------------

    /// Names the partition key attribute (default `lockKey`).
    #[must_use]
    pub fn partition_key(mut self, attribute: impl Into<String>) -> Self {
        self.partition_key = attribute.into();
        self
    }

    /// Writes `prefix` before the partition key value of every lock item
    /// (default none): e.g. `LOCK#` makes lock `a` the partition key value
    /// `LOCK#a`. Lock items are then recognisable in a shared table, and an
    /// IAM policy can allow lynk only items whose partition key starts with
    /// it (`dynamodb:LeadingKeys` `LOCK#*`).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The table has sort key `attribute`; every lock item's sort key holds
    /// `value`, and the whole name (after the prefix) is in the partition key.
    #[must_use]
    pub fn sort_key_fixed(
        mut self,
        attribute: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.sort_key = SortKey::Fixed {
            attribute: attribute.into(),
            value: value.into(),
        };
        self
    }

    /// The table has sort key `attribute`; a lock name is a **group** and a
    /// name within it, split at the first separator (default `/`): lock
    /// `orders/42` is partition key `orders` (after the prefix), sort key
    /// `42`. Names without the separator are refused.
    #[must_use]
    pub fn sort_key_grouped(mut self, attribute: impl Into<String>) -> Self {
        self.sort_key = SortKey::Grouped {
            attribute: attribute.into(),
        };
        self
    }

    /// The separator between a lock's group and the rest of its name
    /// (default [`DEFAULT_SEPARATOR`], `/`). Only for
    /// [`sort_key_grouped`](TableLayout::sort_key_grouped) layouts.
    #[must_use]
    pub fn group_separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = Some(separator.into());
        self
    }

    /// Names one of lynk's own attributes, e.g. where the table already has
    /// an attribute called `payload`:
    /// `.attribute(LynkAttribute::Payload, "lockPayload")`.
    #[must_use]
    pub fn attribute(mut self, attribute: LynkAttribute, name: impl Into<String>) -> Self {
        self.attributes[attribute.index()] = name.into();
        self
    }

    // ---- reading ----------------------------------------------------------

    /// The partition key attribute.
    pub fn partition_key_attribute(&self) -> &str {
        &self.partition_key
    }

    /// The prefix of every lock item's partition key value (empty: none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How the sort key is used.
    pub fn sort_key(&self) -> &SortKey {
        &self.sort_key
    }

    /// The sort key attribute, if the layout has one.
    pub fn sort_key_attribute(&self) -> Option<&str> {
        match &self.sort_key {
            SortKey::None => None,
            SortKey::Fixed { attribute, .. } | SortKey::Grouped { attribute } => Some(attribute),
        }
    }

    /// The group separator of a grouped layout; `None` for the others.
    pub fn separator(&self) -> Option<&str> {
        match self.sort_key {
            SortKey::Grouped { .. } => Some(self.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR)),
            _ => None,
        }
    }

    /// Whether lock names have groups (a
    /// [`sort_key_grouped`](TableLayout::sort_key_grouped) layout).
    pub fn has_groups(&self) -> bool {
        matches!(self.sort_key, SortKey::Grouped { .. })
    }

    /// The name of lynk's attribute `attribute` in this layout.
    pub fn attribute_name(&self, attribute: LynkAttribute) -> &str {
        &self.attributes[attribute.index()]
    }

    /// The TTL attribute (the name of [`LynkAttribute::ExpiresAt`]).
    pub fn ttl_attribute(&self) -> &str {
        self.attribute_name(LynkAttribute::ExpiresAt)
    }

    /// Whether this is the default layout (the original Python lynk's).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the original Python lynk can share tables with this layout:
    /// partition key `lockKey` holding the whole name, no sort key, the
    /// original's three attribute names. (lynk's other attributes may be
    /// renamed; the Python client ignores them.)
    pub fn is_python_compatible(&self) -> bool {
        self.partition_key == item::LOCK_KEY
            && self.prefix.is_empty()
            && self.sort_key == SortKey::None
            && LynkAttribute::ALL
                .iter()
                .filter(|a| a.is_original())
                .all(|a| self.attribute_name(*a) == a.default_name())
    }

    // ---- checking ---------------------------------------------------------

    /// Checks the layout: no empty names, every attribute name used once
    /// (lynk's attributes, the partition key and the sort key all differ),
    /// key attribute names within DynamoDB's 255 bytes, a non-empty fixed
    /// sort key value, a non-empty separator not contained in the prefix,
    /// and a separator only on a grouped layout.
    ///
    /// Fails with [`Error::InvalidLayout`] naming every problem and the fix.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        let mut keys = vec![("partition key", self.partition_key.as_str())];
        match &self.sort_key {
            SortKey::None => {}
            SortKey::Fixed { attribute, value } => {
                keys.push(("sort key", attribute));
                if value.is_empty() {
                    problems.push(
                        "the fixed sort key value is empty (DynamoDB refuses empty key values); give it a value such as `LOCK`"
                            .to_owned(),
                    );
                }
                if value.len() > MAX_SORT_KEY_BYTES {
                    problems.push(format!(
                        "the fixed sort key value is {} bytes; DynamoDB allows {MAX_SORT_KEY_BYTES} bytes for a sort key",
                        value.len()
                    ));
                }
            }
            SortKey::Grouped { attribute } => keys.push(("sort key", attribute)),
        }
        let mut names: Vec<(String, &str)> = Vec::new();
        for (what, name) in keys {
            if name.is_empty() {
                problems.push(format!("the {what} attribute name is empty; name it"));
            } else if name.len() > MAX_KEY_ATTRIBUTE_BYTES {
                problems.push(format!(
                    "the {what} attribute name is {} bytes; DynamoDB allows {MAX_KEY_ATTRIBUTE_BYTES} bytes for a key attribute",
                    name.len()
                ));
            }
            names.push((format!("the {what}"), name));
        }
        for a in LynkAttribute::ALL {
            let name = self.attribute_name(a);
            if name.is_empty() {
                problems.push(format!(
                    "lynk's attribute `{a}` is renamed to an empty name; give it a name or keep `{a}`"
                ));
            }
            names.push((format!("lynk's attribute `{a}`"), name));
        }
        let names_before = names.len();
        for i in 0..names_before {
            for j in (i + 1)..names_before {
                let ((a, name), (b, _)) = (&names[i], &names[j]);
                if !name.is_empty() && *name == names[j].1 {
                    problems.push(format!(
                        "{a} and {b} are both called `{name}`; every attribute needs its own name: rename lynk's attribute with TableLayout::attribute"
                    ));
                }
            }
        }
        match (&self.sort_key, &self.separator) {
            (SortKey::Grouped { .. }, Some(sep)) if sep.is_empty() => problems.push(
                "the group separator is empty; use a character that lock names put between group and name, such as `/`"
                    .to_owned(),
            ),
            (SortKey::Grouped { .. }, _) => {}
            (_, Some(sep)) => problems.push(format!(
                "a group separator (`{sep}`) is set, but only a layout with lock groups (sort_key_grouped) has one; remove it or use sort_key_grouped"
            )),
            (_, None) => {}
        }
        if let Some(sep) = self.separator().filter(|s| !s.is_empty()) {
            if self.prefix.contains(sep) {
                problems.push(format!(
                    "the key prefix `{}` contains the group separator `{sep}`; use a prefix without it (e.g. `LOCK#`)",
                    self.prefix
                ));
            }
        }
        if self.prefix.len() >= MAX_PARTITION_KEY_BYTES {
            problems.push(format!(
                "the key prefix is {} bytes, leaving no room for lock names in DynamoDB's {MAX_PARTITION_KEY_BYTES}-byte partition key",
                self.prefix.len()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidLayout {
                problem: problems.join("; "),
            })
        }
    }

    // ---- mapping names to keys --------------------------------------------

    /// The group of lock `name` in a grouped layout: the part before the
    /// first separator (`orders` for `orders/42`).
    ///
    /// Fails with [`Error::InvalidLockName`] when the name has no separator,
    /// or with [`Error::InvalidLayout`] when the layout has no groups.
    pub fn group_of(&self, name: &str) -> Result<String, Error> {
        self.split(name).map(|(group, _)| group.to_owned())
    }

    /// The lock name's group and the rest of it, in a grouped layout.
    fn split<'n>(&self, name: &'n str) -> Result<(&'n str, &'n str), Error> {
        let Some(sep) = self.separator() else {
            return Err(self.no_groups());
        };
        let bad = |problem: String| Error::InvalidLockName {
            name: name.to_owned(),
            problem,
        };
        let Some((group, rest)) = name.split_once(sep) else {
            return Err(bad(format!(
                "the table layout keeps locks in groups, and a name is `GROUP{sep}NAME`, but this name has no `{sep}` (the group separator); add a group (e.g. `jobs{sep}{name}`)"
            )));
        };
        if group.is_empty() {
            return Err(bad(format!(
                "its group (the part before the first `{sep}`) is empty; put a group before it (e.g. `jobs{name}`)"
            )));
        }
        if rest.is_empty() {
            return Err(bad(format!(
                "the part after the first `{sep}` is empty (DynamoDB refuses an empty sort key); name the lock within its group (e.g. `{name}job`)"
            )));
        }
        Ok((group, rest))
    }

    fn no_groups(&self) -> Error {
        Error::InvalidLayout {
            problem: format!(
                "this table layout has no lock groups ({self}); groups need a layout with a grouped sort key (TableLayout::sort_key_grouped)"
            ),
        }
    }

    /// The partition key value of `group` in a grouped layout (the prefix
    /// and the group), for a `Query` of the group's locks.
    pub fn group_key(&self, group: &str) -> Result<AttributeValue, Error> {
        if !self.has_groups() {
            return Err(self.no_groups());
        }
        let sep = self.separator().unwrap_or(DEFAULT_SEPARATOR);
        let bad = |problem: String| Error::InvalidLockName {
            name: group.to_owned(),
            problem,
        };
        if group.is_empty() {
            return Err(bad("the group is empty; name a group".to_owned()));
        }
        if group.contains(sep) {
            return Err(bad(format!(
                "a group cannot contain the separator `{sep}` (lock `a{sep}b{sep}c` is in group `a`); give the part before the first `{sep}`"
            )));
        }
        let value = format!("{}{group}", self.prefix);
        if value.len() > MAX_PARTITION_KEY_BYTES {
            return Err(bad(format!(
                "with the prefix its partition key value is {} bytes; DynamoDB allows {MAX_PARTITION_KEY_BYTES}",
                value.len()
            )));
        }
        Ok(AttributeValue::S(value))
    }

    /// The DynamoDB `Key` of lock `name`: the partition key (and sort key)
    /// with their values under this layout.
    ///
    /// Fails with [`Error::InvalidLockName`] when the name does not fit: no
    /// group separator in a grouped layout, or a key value beyond DynamoDB's
    /// limits (2048 bytes for a partition key, 1024 for a sort key).
    pub fn key_of(&self, name: &str) -> Result<HashMap<String, AttributeValue>, Error> {
        let too_long = |what: &str, len: usize, limit: usize| {
            Error::InvalidLockName {
            name: abbreviate(name),
            problem: format!(
                "under the table layout its {what} value is {len} bytes, and DynamoDB allows {limit} bytes; use a shorter name (or hash long ones)"
            ),
        }
        };
        if name.is_empty() {
            return Err(Error::InvalidLockName {
                name: String::new(),
                problem: "it is empty; give the lock a name".to_owned(),
            });
        }
        let (pk, sk) = match &self.sort_key {
            SortKey::None => (format!("{}{name}", self.prefix), None),
            SortKey::Fixed { attribute, value } => (
                format!("{}{name}", self.prefix),
                Some((attribute, value.clone())),
            ),
            SortKey::Grouped { attribute } => {
                let (group, rest) = self.split(name)?;
                (
                    format!("{}{group}", self.prefix),
                    Some((attribute, rest.to_owned())),
                )
            }
        };
        if pk.len() > MAX_PARTITION_KEY_BYTES {
            return Err(too_long("partition key", pk.len(), MAX_PARTITION_KEY_BYTES));
        }
        let mut key = HashMap::from([(self.partition_key.clone(), AttributeValue::S(pk))]);
        if let Some((attribute, value)) = sk {
            if value.len() > MAX_SORT_KEY_BYTES {
                return Err(too_long("sort key", value.len(), MAX_SORT_KEY_BYTES));
            }
            key.insert(attribute.clone(), AttributeValue::S(value));
        }
        Ok(key)
    }

    /// The longest lock name (in bytes) whose key fits DynamoDB's limits
    /// under this layout, for names of one group (`group_bytes`, ignored in
    /// layouts without groups; count the separator in the name).
    pub fn max_name_bytes(&self, group_bytes: usize) -> usize {
        let pk_room = MAX_PARTITION_KEY_BYTES.saturating_sub(self.prefix.len());
        match &self.sort_key {
            SortKey::None | SortKey::Fixed { .. } => pk_room,
            SortKey::Grouped { .. } => {
                let sep = self.separator().unwrap_or(DEFAULT_SEPARATOR).len();
                group_bytes.min(pk_room) + sep + MAX_SORT_KEY_BYTES
            }
        }
    }

    /// The lock name an item's key stands for under this layout (the
    /// inverse of [`key_of`](TableLayout::key_of)), or `None` when the item's
    /// key is not a lock item's: a key attribute missing or not a string, no
    /// prefix, another fixed sort key value, an empty group or sort key.
    ///
    /// Only the key is looked at; whether the item is a lock *record* is for
    /// [`is_lock_item`](TableLayout::is_lock_item).
    pub fn name_of(&self, item: &HashMap<String, AttributeValue>) -> Option<String> {
        let pk = match item.get(&self.partition_key) {
            Some(AttributeValue::S(s)) => s.strip_prefix(self.prefix.as_str())?,
            _ => return None,
        };
        match &self.sort_key {
            SortKey::None => (!pk.is_empty()).then(|| pk.to_owned()),
            SortKey::Fixed { attribute, value } => match item.get(attribute) {
                Some(AttributeValue::S(s)) if s == value && !pk.is_empty() => Some(pk.to_owned()),
                _ => None,
            },
            SortKey::Grouped { attribute } => {
                let sep = self.separator().unwrap_or(DEFAULT_SEPARATOR);
                match item.get(attribute) {
                    // Only a key `key_of` writes: the name's first separator
                    // must be the one between group and rest (with a
                    // self-overlapping separator such as `::`, `x:` + `y`
                    // would read as `x:::y`, whose key is `x` + `:y`).
                    Some(AttributeValue::S(s)) if !s.is_empty() && !pk.is_empty() => {
                        let name = format!("{pk}{sep}{s}");
                        (name.find(sep) == Some(pk.len())).then_some(name)
                    }
                    _ => None,
                }
            }
        }
    }

    /// Whether `item` is one of lynk's lock items under this layout: its key
    /// is a lock item's ([`name_of`](TableLayout::name_of)) and it has the
    /// version attribute. Other items (your own, in a shared table) are
    /// never read as locks, listed, or written by lynk.
    pub fn is_lock_item(&self, item: &HashMap<String, AttributeValue>) -> bool {
        self.name_of(item).is_some()
            && item.contains_key(self.attribute_name(LynkAttribute::VersionNumber))
    }
}

/// A name cut to a readable length for error messages.
fn abbreviate(name: &str) -> String {
    const SHOWN: usize = 80;
    if name.len() <= SHOWN {
        return name.to_owned();
    }
    let mut end = SHOWN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &name[..end], name.len())
}

impl fmt::Display for TableLayout {
    /// One line, e.g. `partition key PK = "LOCK#" + group, sort key SK =
    /// name after the first "/"`, then any renamed attributes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pk_value = |what: &str| {
            if self.prefix.is_empty() {
                what.to_owned()
            } else {
                format!("{:?} + {what}", self.prefix)
            }
        };
        match &self.sort_key {
            SortKey::None => write!(
                f,
                "partition key {} = {}, no sort key",
                self.partition_key,
                pk_value("lock name")
            )?,
            SortKey::Fixed { attribute, value } => write!(
                f,
                "partition key {} = {}, sort key {attribute} = {value:?}",
                self.partition_key,
                pk_value("lock name")
            )?,
            SortKey::Grouped { attribute } => write!(
                f,
                "partition key {} = {}, sort key {attribute} = the name after the first {:?}",
                self.partition_key,
                pk_value("group"),
                self.separator().unwrap_or(DEFAULT_SEPARATOR)
            )?,
        }
        let renamed: Vec<String> = LynkAttribute::ALL
            .iter()
            .filter(|a| self.attribute_name(**a) != a.default_name())
            .map(|a| format!("{a} as {}", self.attribute_name(*a)))
            .collect();
        if !renamed.is_empty() {
            write!(f, "; {}", renamed.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    #[test]
    fn default_is_the_originals() {
        let l = TableLayout::default();
        assert!(l.is_default() && l.is_python_compatible());
        assert_eq!(l.partition_key_attribute(), "lockKey");
        assert_eq!(l.sort_key_attribute(), None);
        assert_eq!(
            l.key_of("a b").unwrap(),
            HashMap::from([("lockKey".into(), s("a b"))])
        );
        assert_eq!(
            l.attribute_name(LynkAttribute::FencingToken),
            "fencingToken"
        );
        assert_eq!(l.ttl_attribute(), "expiresAt");
        l.validate().unwrap();
        assert_eq!(
            l.to_string(),
            "partition key lockKey = lock name, no sort key"
        );
    }

    #[test]
    fn names_round_trip_through_keys() {
        let layouts = [
            TableLayout::new(),
            TableLayout::new().partition_key("PK").key_prefix("LOCK#"),
            TableLayout::new()
                .partition_key("PK")
                .sort_key_fixed("SK", "LOCK"),
            TableLayout::new()
                .partition_key("PK")
                .key_prefix("LOCK#")
                .sort_key_grouped("SK"),
            TableLayout::new()
                .sort_key_grouped("SK")
                .group_separator("::"),
        ];
        for l in &layouts {
            l.validate().unwrap();
            for name in ["orders/42", "a/b/c", "clé 🔒/x", "g::n::m"] {
                let Ok(key) = l.key_of(name) else {
                    assert!(l.has_groups(), "{l}: {name}");
                    continue;
                };
                assert_eq!(l.name_of(&key).as_deref(), Some(name), "{l}");
            }
        }
        let grouped = &layouts[3];
        let key = grouped.key_of("a/b/c").unwrap();
        assert_eq!(key["PK"], s("LOCK#a"));
        assert_eq!(key["SK"], s("b/c"));
        assert_eq!(grouped.group_of("a/b/c").unwrap(), "a");
        let key = layouts[4].key_of("g::n::m").unwrap();
        assert_eq!((&key["lockKey"], &key["SK"]), (&s("g"), &s("n::m")));
    }

    #[test]
    fn names_that_do_not_fit_are_refused_with_the_fix() {
        let l = TableLayout::new().sort_key_grouped("SK");
        for (name, says) in [
            (
                "orders",
                "has no `/` (the group separator); add a group (e.g. `jobs/orders`)",
            ),
            ("/42", "group (the part before the first `/`) is empty"),
            ("orders/", "the part after the first `/` is empty"),
        ] {
            let e = l.key_of(name).unwrap_err();
            assert!(matches!(e, Error::InvalidLockName { .. }), "{e}");
            let text = e.to_string();
            assert!(text.contains(&format!("{name:?}")), "{text}");
            assert!(text.contains(says), "{text}");
        }
        let e = TableLayout::new().group_of("a/b").unwrap_err().to_string();
        assert!(
            e.contains("no lock groups") && e.contains("sort_key_grouped"),
            "{e}"
        );
        let long = "x".repeat(2048);
        let e = TableLayout::new()
            .key_prefix("L#")
            .key_of(&long)
            .unwrap_err();
        assert!(e.to_string().contains("2050 bytes"), "{e}");
        let e = l.key_of(&format!("g/{}", "x".repeat(1025))).unwrap_err();
        assert!(
            e.to_string().contains("sort key value is 1025 bytes"),
            "{e}"
        );
        assert_eq!(TableLayout::new().key_prefix("L#").max_name_bytes(0), 2046);
        assert_eq!(l.max_name_bytes(10), 10 + 1 + 1024);
    }

    #[test]
    fn other_items_are_not_lock_items() {
        let l = TableLayout::new()
            .partition_key("PK")
            .key_prefix("LOCK#")
            .sort_key_fixed("SK", "LOCK");
        let item = |pk: &str, sk: &str, version: bool| {
            let mut m = HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))]);
            if version {
                m.insert("versionNumber".into(), s("v"));
            }
            m
        };
        assert!(l.is_lock_item(&item("LOCK#a", "LOCK", true)));
        assert!(
            !l.is_lock_item(&item("LOCK#a", "LOCK", false)),
            "no version"
        );
        assert!(!l.is_lock_item(&item("USER#a", "LOCK", true)), "no prefix");
        assert!(
            !l.is_lock_item(&item("LOCK#a", "PROFILE", true)),
            "other sort key"
        );
        assert!(!l.is_lock_item(&item("LOCK#", "LOCK", true)), "empty name");
        let mut n = item("LOCK#a", "LOCK", true);
        n.insert("PK".into(), AttributeValue::N("1".into()));
        assert!(!l.is_lock_item(&n), "a number key");
    }

    #[test]
    fn validate_names_every_collision() {
        let cases = [
            (
                TableLayout::new().attribute(LynkAttribute::Payload, "fencingToken"),
                "lynk's attribute `fencingToken` and lynk's attribute `payload` are both called `fencingToken`",
            ),
            (
                TableLayout::new().partition_key("payload"),
                "the partition key and lynk's attribute `payload` are both called `payload`",
            ),
            (
                TableLayout::new().sort_key_grouped("lockKey"),
                "the partition key and the sort key are both called `lockKey`",
            ),
            (TableLayout::new().partition_key(""), "the partition key attribute name is empty"),
            (
                TableLayout::new().attribute(LynkAttribute::Released, ""),
                "`released` is renamed to an empty name",
            ),
            (
                TableLayout::new().sort_key_fixed("SK", ""),
                "the fixed sort key value is empty",
            ),
            (
                TableLayout::new().sort_key_grouped("SK").key_prefix("L/"),
                "the key prefix `L/` contains the group separator `/`",
            ),
            (
                TableLayout::new().sort_key_grouped("SK").group_separator(""),
                "the group separator is empty",
            ),
            (
                TableLayout::new().group_separator(":"),
                "only a layout with lock groups (sort_key_grouped) has one",
            ),
            (
                TableLayout::new().partition_key("k".repeat(256)),
                "DynamoDB allows 255 bytes for a key attribute",
            ),
        ];
        for (layout, says) in cases {
            let e = layout.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidLayout { .. }));
            assert!(e.to_string().contains(says), "{layout:?}: {e}");
        }
    }

    #[test]
    fn display_names_renamed_attributes() {
        let l = TableLayout::new()
            .partition_key("PK")
            .key_prefix("LOCK#")
            .sort_key_grouped("SK")
            .attribute(LynkAttribute::ExpiresAt, "ttl");
        assert_eq!(
            l.to_string(),
            "partition key PK = \"LOCK#\" + group, sort key SK = the name after the first \"/\"; expiresAt as ttl"
        );
        assert!(!l.is_python_compatible());
        assert!(TableLayout::new()
            .attribute(LynkAttribute::Payload, "p")
            .is_python_compatible());
        assert_eq!(
            LynkAttribute::from_default_name("grantedTo"),
            Some(LynkAttribute::GrantedTo)
        );
    }
}
