//! A semaphore's stored state, as [`Semaphore::describe`](crate::Semaphore::describe) reads it.

use std::time::Duration;

use super::table::{ParseError, PermitTable};
use crate::{FencingToken, LockError, LockRecord, Version};

/// One held permit, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermitHolder {
    /// The permit's id.
    pub id: String,
    /// The host that holds it.
    pub host: String,
    /// Its fencing token.
    pub fencing_token: FencingToken,
    /// Its lease.
    pub lease: Duration,
}

/// A semaphore's record: its permit count, holders and waiting clients.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemaphoreState {
    /// The number of permits stored with the semaphore.
    pub permits: u32,
    /// The permits held now (as far as the record says; a line of a dead
    /// holder stays until a client sees it stand still for its lease).
    pub holders: Vec<PermitHolder>,
    /// Hosts of the clients queued for a permit, in arrival order.
    pub waiting: Vec<String>,
    /// The record's version.
    pub version: Version,
}

impl SemaphoreState {
    pub(crate) fn from_record(
        name: &str,
        record: Option<LockRecord>,
    ) -> Result<Option<Self>, LockError> {
        let Some(record) = record else {
            return Ok(None);
        };
        match PermitTable::parse(record.payload.as_deref()) {
            Ok(table) => Ok(Some(SemaphoreState {
                permits: table.permits,
                holders: table
                    .held
                    .into_iter()
                    .map(|h| PermitHolder {
                        id: h.id,
                        host: h.host,
                        fencing_token: h.token,
                        lease: h.lease,
                    })
                    .collect(),
                waiting: table.waiting.into_iter().map(|w| w.host).collect(),
                version: record.version,
            })),
            Err(ParseError::NotATable) => Err(LockError::invalid(
                "semaphore name",
                format!("the record {name:?} is not a semaphore (it is a lock's record, held by {}); pick another name", record.host),
            )),
            Err(ParseError::Malformed(why)) => Err(LockError::invalid(
                "semaphore record",
                format!("the record {name:?} is a damaged semaphore table ({why}); delete it when no permit is in use"),
            )),
        }
    }
}
