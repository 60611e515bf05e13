//! The locks in a table: reading one, listing all of them (a `Scan`) or one
//! group's (a `Query`), and force-releasing a group.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use lynk_core::{BackendErrorKind, LockClient, LockRecord, WriteError};

use crate::classify::admin_error;
use crate::expression::Placeholders;
use crate::item::{expires_at, record_from_item};
use crate::{DynamoBackend, Error, TableAdmin, TableLayout};

/// One lock in a table, as listed by [`TableAdmin::list_locks`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LockEntry {
    /// The stored record (holder, lease, version, token, payload, released).
    /// Its `key` is the lock name (under a [layout](TableLayout) with a
    /// prefix or a sort key, the name the keys stand for).
    pub record: LockRecord,
    /// The TTL attribute, epoch seconds: when DynamoDB's TTL may delete the
    /// item (long after the lease ends; it is clean-up, not the lease), if
    /// the record has one (records of the original Python client have none).
    pub expires_at: Option<u64>,
}

/// The locks in a table (or in one lock group).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LockListing {
    /// Readable lock records, sorted by name.
    pub locks: Vec<LockEntry>,
    /// Lock items that are not readable lock records, with what is wrong
    /// (e.g. a `leaseDuration` that is not a number).
    pub malformed: Vec<String>,
    /// Items that are not lock items under the layout and were skipped: in
    /// a table shared with your own items, yours (a key without the layout's
    /// prefix or with another fixed sort key value, or no `versionNumber`).
    /// Only counted, never read as locks nor written.
    pub skipped: usize,
}

impl LockListing {
    /// Adds the items of one page: lock records, malformed lock items, and
    /// the count of other items.
    fn add(&mut self, layout: &TableLayout, items: &[HashMap<String, AttributeValue>]) {
        for item in items {
            if !layout.is_lock_item(item) {
                self.skipped += 1;
                continue;
            }
            match record_from_item(layout, item) {
                Ok(record) => self.locks.push(LockEntry {
                    record,
                    expires_at: expires_at(layout, item),
                }),
                Err(e) => self.malformed.push(e.to_string()),
            }
        }
    }

    fn sort(mut self) -> Self {
        self.locks.sort_by(|a, b| a.record.key.cmp(&b.record.key));
        self
    }
}

/// What [`TableAdmin::release_group`] did to one lock.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GroupRelease {
    /// The lock name.
    pub name: String,
    /// What happened.
    pub outcome: ReleaseOutcome,
}

/// What a force release did to one lock.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ReleaseOutcome {
    /// It was held (or granted to a waiter) and is now released; `previous`
    /// is the record it had (holder, token).
    Released {
        /// The record before the release.
        previous: LockRecord,
    },
    /// It was already released; nothing was written.
    NotHeld,
    /// Another acquisition took it (or it was released or deleted) between
    /// reading and releasing; nothing was written. `current` is its record
    /// now, if it has one. Run the release again to release the new holder.
    Changed {
        /// The record found instead.
        current: Option<LockRecord>,
    },
    /// The release failed (e.g. DynamoDB could not be reached, or the
    /// outcome is unknown); `error` says what and what to do.
    Failed {
        /// The classified kind (retryable or not).
        kind: BackendErrorKind,
        /// The error message.
        error: String,
    },
}

impl TableAdmin {
    /// Reads lock `name` of `table` (one consistent `GetItem`) with its TTL
    /// attribute; `None` if there is no item. An item that is not a lock
    /// record is an error saying what is wrong with it. The key is the
    /// admin's [layout](TableAdmin::with_layout)'s
    /// ([`Error::InvalidLockName`] if the name does not fit it).
    pub async fn describe_lock(&self, table: &str, name: &str) -> Result<Option<LockEntry>, Error> {
        let layout = self.layout();
        let out = self
            .client()
            .get_item()
            .table_name(table)
            .set_key(Some(layout.key_of(name)?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| admin_error(e, "GetItem", table))?;
        let Some(item) = out.item().filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        let record = record_from_item(layout, item).map_err(|e| Error::Service {
            operation: "GetItem".into(),
            table: table.to_owned(),
            detail: if layout.is_default() {
                format!("the item {name:?} is not a lock record: {e}")
            } else {
                format!(
                    "the item at lock {name:?}'s key is not a lock record ({e}); if it is an item of yours, its key collides with this lock name under the table layout: use another name"
                )
            },
            retryable: false,
        })?;
        Ok(Some(LockEntry {
            record,
            expires_at: expires_at(layout, item),
        }))
    }

    /// Lists the locks in `table` (a consistent scan of all pages), sorted
    /// by name. Costs one read unit per 4 KB scanned, your own items
    /// included in a shared table: list one group with
    /// [`list_group`](TableAdmin::list_group) instead where the layout has
    /// groups.
    ///
    /// Items that are not lock items under the layout (see
    /// [`TableLayout::is_lock_item`]) are counted in
    /// [`LockListing::skipped`], not reported as errors; lock items that
    /// cannot be read are in [`LockListing::malformed`].
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
            listing.add(self.layout(), out.items());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(listing.sort())
    }

    /// Lists the locks of group `group` (the part of their names before the
    /// first separator) in `table`: one consistent `Query` on the partition
    /// key (all pages), so it reads only that group's items, not the table.
    /// Needs a layout with lock groups ([`TableLayout::sort_key_grouped`];
    /// [`Error::InvalidLayout`] otherwise). Your own items in the same
    /// partition are counted in [`LockListing::skipped`].
    pub async fn list_group(&self, table: &str, group: &str) -> Result<LockListing, Error> {
        let layout = self.layout();
        let value = layout.group_key(group)?;
        let mut p = Placeholders::default();
        let condition = format!(
            "{} = {}",
            p.name(layout.partition_key_attribute()),
            p.value("group", value)
        );
        // Every page's Query sends the same placeholders.
        let (names, values) = (p.take_names(), p.take_values());
        let mut listing = LockListing::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(table)
                .consistent_read(true)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(names.clone())
                .set_expression_attribute_values(values.clone())
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| admin_error(e, "Query", table))?;
            listing.add(layout, out.items());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(listing.sort())
    }

    /// Force-releases every lock of group `group` in `table`, whoever holds
    /// it, as `lynk release --force` releases one: lists the group
    /// ([`list_group`](TableAdmin::list_group)), then writes each held
    /// lock's released record (the fencing token kept) conditioned on the
    /// version just read ([`LockClient::release_version`]). A holder's
    /// heartbeat in between (same acquisition, new version) is followed, up
    /// to five times; another acquisition, or a release, in between leaves
    /// the lock alone and is reported as [`ReleaseOutcome::Changed`].
    ///
    /// Returns what happened to each lock, in name order; one lock's failure
    /// does not stop the others. The holders are not told: their heartbeats
    /// fail and their lost-lease signals fire.
    ///
    /// Fails as a whole only when the group cannot be listed (or the layout
    /// has no groups).
    pub async fn release_group(
        &self,
        table: &str,
        group: &str,
    ) -> Result<Vec<GroupRelease>, Error> {
        let listing = self.list_group(table, group).await?;
        let backend = DynamoBackend::builder(table)
            .client(self.client().clone())
            .clock(self.clock().clone())
            .layout(self.layout().clone())
            .build()
            .await?;
        let client = LockClient::builder(backend.clone())
            .shared_clock(self.clock().clone())
            .build()?;
        let mut report = Vec::with_capacity(listing.locks.len());
        for entry in listing.locks {
            let name = entry.record.key.clone();
            let outcome = release_one(&client, &backend, entry.record).await;
            report.push(GroupRelease { name, outcome });
        }
        client.shutdown().await;
        Ok(report)
    }
}

/// Releases `record`'s lock if it is held, following its holder's
/// heartbeats (same token and host, new version).
async fn release_one(
    client: &LockClient,
    backend: &DynamoBackend,
    mut held: LockRecord,
) -> ReleaseOutcome {
    use lynk_core::LockBackend;
    let failed = |e: lynk_core::BackendError| ReleaseOutcome::Failed {
        kind: e.kind(),
        error: e.to_string(),
    };
    if held.released {
        return ReleaseOutcome::NotHeld;
    }
    for _ in 0..5 {
        let current = match client.release_version(&held.key, &held.version).await {
            Ok(_) => return ReleaseOutcome::Released { previous: held },
            Err(WriteError::Backend(e)) => return failed(e),
            Err(WriteError::ConditionFailed { current: Some(c) }) => Some(c),
            Err(WriteError::ConditionFailed { current: None }) => {
                match backend.read(&held.key).await {
                    Ok(c) => c,
                    Err(e) => return failed(e),
                }
            }
        };
        match current {
            Some(c)
                if !c.released && c.fencing_token == held.fencing_token && c.host == held.host =>
            {
                held = c; // a heartbeat: the same acquisition, a new version
            }
            current => return ReleaseOutcome::Changed { current },
        }
    }
    ReleaseOutcome::Changed {
        current: Some(held),
    }
}
