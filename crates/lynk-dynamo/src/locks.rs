//! Listing the locks in a table.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use lynk_core::LockRecord;

use crate::classify::admin_error;
use crate::item::{expires_at, key_of, record_from_item};
use crate::{Error, TableAdmin};

/// One lock in a table, as listed by [`TableAdmin::list_locks`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LockEntry {
    /// The stored record (holder, lease, version, token, payload, released).
    pub record: LockRecord,
    /// The TTL attribute, epoch seconds: when DynamoDB's TTL may delete the
    /// item (long after the lease ends; it is clean-up, not the lease), if
    /// the record has one (records of the original Python client have none).
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

impl TableAdmin {
    /// Reads lock `name` of `table` (one consistent `GetItem`) with its TTL
    /// attribute; `None` if there is no item. An item that is not a lock
    /// record is an error saying what is wrong with it.
    pub async fn describe_lock(&self, table: &str, name: &str) -> Result<Option<LockEntry>, Error> {
        let out = self
            .client()
            .get_item()
            .table_name(table)
            .set_key(Some(key_of(name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| admin_error(e, "GetItem", table))?;
        let Some(item) = out.item().filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        let record = record_from_item(item).map_err(|e| Error::Service {
            operation: "GetItem".into(),
            table: table.to_owned(),
            detail: format!("the item {name:?} is not a lock record: {e}"),
            retryable: false,
        })?;
        Ok(Some(LockEntry {
            record,
            expires_at: expires_at(item),
        }))
    }

    /// Lists the locks in `table` (a consistent scan of all pages), sorted
    /// by name. Costs one read unit per 4 KB scanned.
    pub async fn list_locks(&self, table: &str) -> Result<LockListing, Error> {
        let mut listing = LockListing::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client()
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
