//! The lock item: how a [`LockRecord`] is laid out as DynamoDB attributes.
//!
//! The first four attributes are the original Python lynk's item, so both
//! clients can share a table; the rest are lynk's additions, which the
//! original ignores (and drops when it takes a lock over).
//!
//! | attribute        | type | meaning                                              |
//! |------------------|------|------------------------------------------------------|
//! | `lockKey`        | S    | the lock name (the table's hash key)                 |
//! | `leaseDuration`  | N    | seconds; whole numbers written without decimals      |
//! | `versionNumber`  | S    | a fresh UUID on every write                          |
//! | `hostIdentifier` | S    | who wrote the record                                 |
//! | `fencingToken`   | N    | the acquisition's fencing token                      |
//! | `payload`        | B    | the holder's payload, if any                         |
//! | `released`       | BOOL | present (and `true`) only on released records        |
//! | `expiresAt`      | N    | epoch seconds after which DynamoDB's TTL may delete  |
//! | `waitQueue`      | L    | waiters of other processes, in order: each an M of `id` S, `host` S, optional `wake` S, optional `pollMs` N (how often the waiter reads while queued, whole milliseconds rounded up); absent when empty |
//! | `queueRevision`  | S    | a fresh UUID on every write of the queue             |
//! | `grantedTo`      | S    | the queue entry id a release handed the lock to      |
//!
//! These are the default names; a [`TableLayout`] can move the lock name to
//! other key attributes (with a prefix, a sort key, lock groups) and rename
//! lynk's attributes, and every function here takes the layout.
//!
//! This module is the whole mapping: the attribute names, reading an item
//! into a [`LockRecord`], and every update and condition expression lynk
//! sends (the protocol's writes, the delete condition and the fence of a
//! fenced write). `backend.rs` and `fenced.rs` only send the requests; the
//! item's key is [`TableLayout::key_of`].
//!
//! **No write touches an item that is not a lock record**, so lynk can share
//! a table with your items: a write creates an item only where none exists
//! (`attribute_not_exists(<partition key>)`), and otherwise applies only to
//! an item carrying a version lynk read or wrote (`versionNumber = :v`), or
//! to a released lock record (`released = true` together with
//! `versionNumber` and `leaseDuration`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use lynk_core::{
    Condition, FencingToken, LockRecord, QueueEntry, QueueRequest, QueueUpdate, TokenUpdate,
    Version, WaitQueue, WriteRequest,
};

use crate::expression::{Placeholders, UpdateText};
use crate::layout::{LynkAttribute as A, TableLayout};

/// The hash key attribute of the default layout: the lock name.
pub const LOCK_KEY: &str = "lockKey";
/// The lease in seconds (N).
pub const LEASE_DURATION: &str = "leaseDuration";
/// The record version (S).
pub const VERSION_NUMBER: &str = "versionNumber";
/// The writer's host identifier (S).
pub const HOST_IDENTIFIER: &str = "hostIdentifier";
/// The fencing token (N).
pub const FENCING_TOKEN: &str = "fencingToken";
/// The payload (B).
pub const PAYLOAD: &str = "payload";
/// The released marker (BOOL, only ever stored as `true`).
pub const RELEASED: &str = "released";
/// The TTL attribute (N, epoch seconds).
pub const EXPIRES_AT: &str = "expiresAt";
/// The wait queue (L of M; absent when empty).
pub const WAIT_QUEUE: &str = "waitQueue";
/// The wait queue's revision (S).
pub const QUEUE_REVISION: &str = "queueRevision";
/// The queue entry id a releasing holder granted the lock to (S).
pub const GRANTED_TO: &str = "grantedTo";
/// What tells holders on one host apart (`pid N label`), lynk's own.
pub const HOLDER_DETAIL: &str = "holderDetail";
/// In a `waitQueue` entry: the entry id (S).
const ENTRY_ID: &str = "id";
/// In a `waitQueue` entry: the waiter's host identifier (S).
const ENTRY_HOST: &str = "host";
/// In a `waitQueue` entry: the waiter's wake-up address (S, optional).
const ENTRY_WAKE: &str = "wake";
/// In a `waitQueue` entry: how often the waiter reads while queued
/// ([`QueueEntry::poll`]), whole milliseconds rounded up (N, optional;
/// absent in entries of lynk versions before it).
const ENTRY_POLL_MS: &str = "pollMs";

/// Why a stored item is not a readable lock record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedItem {
    pub(crate) key: Option<String>,
    pub(crate) problem: String,
}

impl std::fmt::Display for MalformedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(
                f,
                "the item for lock {k:?} is not a lock record: {}",
                self.problem
            ),
            None => write!(f, "an item is not a lock record: {}", self.problem),
        }
    }
}

/// Formats a lease as DynamoDB number text in seconds: `"20"` for whole
/// seconds (what the original client writes and reads best), `"2.5"` for
/// fractions, never with trailing zeros.
pub fn format_lease(lease: Duration) -> String {
    let secs = lease.as_secs();
    let nanos = lease.subsec_nanos();
    if nanos == 0 {
        return secs.to_string();
    }
    let frac = format!("{nanos:09}");
    format!("{secs}.{}", frac.trim_end_matches('0'))
}

/// Parses DynamoDB number text in seconds into a lease. Accepts integers,
/// decimals (`"2.5"`) and exponents (`"2E+1"`); rejects negative values.
pub fn parse_lease(text: &str) -> Option<Duration> {
    let t = text.trim();
    if t.starts_with('-') {
        // "-0" is harmless; anything else negative is not a lease.
        return t
            .trim_start_matches('-')
            .chars()
            .all(|c| c == '0' || c == '.')
            .then_some(Duration::ZERO);
    }
    if !t.contains(['e', 'E']) {
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if !int.is_empty() || !frac.is_empty() {
            let int_ok = int.chars().all(|c| c.is_ascii_digit());
            let frac_ok = frac.chars().all(|c| c.is_ascii_digit());
            if int_ok && frac_ok {
                let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
                let mut digits: String = frac.chars().take(9).collect();
                while digits.len() < 9 {
                    digits.push('0');
                }
                let nanos: u32 = digits.parse().ok()?;
                return Some(Duration::new(secs, nanos));
            }
        }
    }
    let f: f64 = t.parse().ok()?;
    Duration::try_from_secs_f64(f).ok()
}

/// Parses a stored fencing token. Values beyond `u64` saturate.
pub fn parse_token(text: &str) -> Option<FencingToken> {
    let t = text.trim();
    if let Ok(v) = t.parse::<u64>() {
        return Some(FencingToken::new(v));
    }
    // "12.0", "1.2E+3", or a value beyond u64 (only reachable by hand edits).
    let f: f64 = t.parse().ok()?;
    if f.is_nan() || f < 0.0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(FencingToken::new(if f >= u64::MAX as f64 {
        u64::MAX
    } else {
        f as u64
    }))
}

/// Reads a lock record from a DynamoDB item.
///
/// Items written by the original Python client (no token, payload or
/// `released`) are read as held records without a token. A missing
/// `hostIdentifier` reads as an empty host. A missing or malformed
/// `versionNumber` or `leaseDuration` is an error: nobody could safely take
/// such a lock over.
pub(crate) fn record_from_item(
    layout: &TableLayout,
    item: &HashMap<String, AttributeValue>,
) -> Result<LockRecord, MalformedItem> {
    let Some(key) = layout.name_of(item) else {
        return Err(MalformedItem {
            key: None,
            problem: key_problem(layout, item),
        });
    };
    let [n_lease, n_version, n_host, n_token, n_payload, n_released, _, n_queue, n_revision, n_granted, n_detail] =
        A::ALL.map(|a| layout.attribute_name(a));
    let bad = |problem: String| MalformedItem {
        key: Some(key.clone()),
        problem,
    };
    let version = match item.get(n_version) {
        Some(AttributeValue::S(s)) if !s.is_empty() => Version::from_string(s.clone()),
        Some(AttributeValue::S(_)) => return Err(bad(format!("`{n_version}` is empty"))),
        Some(_) => return Err(bad(format!("`{n_version}` is not a string (S)"))),
        None => return Err(bad(format!("it has no `{n_version}`"))),
    };
    let lease_duration = match item.get(n_lease) {
        Some(AttributeValue::N(n)) => parse_lease(n)
            .ok_or_else(|| bad(format!("`{n_lease}` {n:?} is not a number of seconds")))?,
        Some(_) => return Err(bad(format!("`{n_lease}` is not a number (N)"))),
        None => return Err(bad(format!("it has no `{n_lease}`"))),
    };
    let host = match item.get(n_host) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    let fencing_token = match item.get(n_token) {
        Some(AttributeValue::N(n)) => Some(
            parse_token(n)
                .ok_or_else(|| bad(format!("`{n_token}` {n:?} is not a whole number")))?,
        ),
        Some(_) => return Err(bad(format!("`{n_token}` is not a number (N)"))),
        None => None,
    };
    let payload = match item.get(n_payload) {
        Some(AttributeValue::B(b)) => Some(bytes::Bytes::from(b.clone().into_inner())),
        Some(_) => return Err(bad(format!("`{n_payload}` is not binary (B)"))),
        None => None,
    };
    let released = matches!(item.get(n_released), Some(AttributeValue::Bool(true)));
    let entries = match item.get(n_queue) {
        Some(AttributeValue::L(list)) => list
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                queue_entry(entry).map_err(|why| bad(format!("`{n_queue}` entry {i} {why}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(bad(format!("`{n_queue}` is not a list (L)"))),
        None => Vec::new(),
    };
    let revision = match item.get(n_revision) {
        Some(AttributeValue::S(s)) if !s.is_empty() => Some(Version::from_string(s.clone())),
        Some(AttributeValue::S(_)) => return Err(bad(format!("`{n_revision}` is empty"))),
        Some(_) => return Err(bad(format!("`{n_revision}` is not a string (S)"))),
        None => None,
    };
    let granted_to = match item.get(n_granted) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        Some(_) => return Err(bad(format!("`{n_granted}` is not a string (S)"))),
        None => None,
    };
    let holder_detail = match item.get(n_detail) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        Some(_) => return Err(bad(format!("`{n_detail}` is not a string (S)"))),
        None => None,
    };
    Ok(LockRecord {
        key,
        version,
        lease_duration,
        host,
        fencing_token,
        payload,
        released,
        queue: WaitQueue { revision, entries },
        granted_to,
        holder_detail,
    })
}

/// Why `item`'s key is not a lock item's under `layout`.
fn key_problem(layout: &TableLayout, item: &HashMap<String, AttributeValue>) -> String {
    let pk = layout.partition_key_attribute();
    match item.get(pk) {
        None => return format!("it has no `{pk}`"),
        Some(AttributeValue::S(v)) if !v.starts_with(layout.prefix()) => {
            return format!(
                "its `{pk}` {v:?} does not start with the layout's prefix {:?}",
                layout.prefix()
            )
        }
        Some(AttributeValue::S(_)) => {}
        Some(_) => return format!("`{pk}` is not a string"),
    }
    match layout.sort_key_attribute() {
        Some(sk) => format!(
            "its key (`{pk}`, `{sk}`) is not a lock's key under the table layout ({layout})"
        ),
        None => format!("its `{pk}` is not a lock's key under the table layout ({layout})"),
    }
}

/// Reads one `waitQueue` entry; the error completes "`waitQueue` entry N ...".
fn queue_entry(value: &AttributeValue) -> Result<QueueEntry, String> {
    let AttributeValue::M(m) = value else {
        return Err("is not a map (M)".to_owned());
    };
    let string = |name: &str| match m.get(name) {
        Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("has `{name}` that is not a string (S)")),
        None => Ok(None),
    };
    let poll = match m.get(ENTRY_POLL_MS) {
        None => None,
        Some(AttributeValue::N(n)) => {
            Some(n.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                format!("has `{ENTRY_POLL_MS}` {n:?} that is not a whole number of milliseconds")
            })?)
        }
        Some(_) => return Err(format!("has `{ENTRY_POLL_MS}` that is not a number (N)")),
    };
    Ok(QueueEntry {
        id: string(ENTRY_ID)?.ok_or_else(|| format!("has no `{ENTRY_ID}`"))?,
        host: string(ENTRY_HOST)?.ok_or_else(|| format!("has no `{ENTRY_HOST}`"))?,
        wake: string(ENTRY_WAKE)?,
        poll,
    })
}

/// The `waitQueue` value of `entries` (a list of maps, in order).
fn queue_value(entries: &[QueueEntry]) -> AttributeValue {
    AttributeValue::L(
        entries
            .iter()
            .map(|e| {
                let mut m = HashMap::from([
                    (ENTRY_ID.to_owned(), AttributeValue::S(e.id.clone())),
                    (ENTRY_HOST.to_owned(), AttributeValue::S(e.host.clone())),
                ]);
                if let Some(wake) = &e.wake {
                    m.insert(ENTRY_WAKE.to_owned(), AttributeValue::S(wake.clone()));
                }
                if let Some(poll) = e.poll {
                    m.insert(
                        ENTRY_POLL_MS.to_owned(),
                        // Rounded up: a grant must not be shorter than the poll.
                        AttributeValue::N(poll.as_nanos().div_ceil(1_000_000).to_string()),
                    );
                }
                AttributeValue::M(m)
            })
            .collect(),
    )
}

/// The epoch seconds stored in the TTL attribute, if the item has one.
pub(crate) fn expires_at(
    layout: &TableLayout,
    item: &HashMap<String, AttributeValue>,
) -> Option<u64> {
    match item.get(layout.ttl_attribute()) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

/// The expressions of one request, with exactly the placeholders they use.
pub(crate) struct Expressions {
    /// The `UpdateExpression`, for `UpdateItem`.
    pub(crate) update: Option<String>,
    /// The `ConditionExpression`.
    pub(crate) condition: String,
    /// The names and values the expressions refer to.
    pub(crate) placeholders: Placeholders,
}

/// The `UpdateItem` expressions of a protocol write (acquire, takeover,
/// heartbeat, handover, release): `request`'s condition, and an update that
/// writes its record with the TTL attribute set to `expires_at`.
///
/// The conditions never hold on an item that is not a lock record:
/// `Absent` needs no item at the key; `Vacant` no item, or a released one
/// that has lynk's version and lease attributes (an item of yours with a
/// `released` attribute of its own does not qualify); `VersionIs` and
/// `QueueIs` a version lynk read from a lock record or wrote itself.
pub(crate) fn write_expressions(
    layout: &TableLayout,
    request: &WriteRequest,
    expires_at: u64,
) -> Expressions {
    let [n_lease, n_version, n_host, n_token, n_payload, n_released, n_expires, _, _, n_granted, n_detail] =
        A::ALL.map(|a| layout.attribute_name(a));
    let mut p = Placeholders::default();
    let pk = layout.partition_key_attribute();
    let mut condition = String::with_capacity(160);
    let c = &mut condition;
    match &request.condition {
        Condition::Absent => attribute_not_exists(&mut p, c, pk),
        // A released record is taken only if it is a lock record as `record_from_item`
        // reads one (a string version, a number lease): a user's item that merely has
        // `released = true` and attributes of those names is never overwritten.
        Condition::Vacant => {
            attribute_not_exists(&mut p, c, pk);
            c.push_str(" OR (");
            p.put_assign(c, n_released, "true", AttributeValue::Bool(true));
            c.push_str(" AND attribute_type(");
            p.put_name(c, n_version);
            c.push_str(", ");
            p.put_value(c, "typeS", AttributeValue::S("S".into()));
            c.push_str(") AND attribute_type(");
            p.put_name(c, n_lease);
            c.push_str(", ");
            p.put_value(c, "typeN", AttributeValue::S("N".into()));
            c.push_str("))");
        }
        Condition::VersionIs(v) => version_is(layout, &mut p, c, v),
        Condition::QueueIs { version, revision } => {
            queue_is(layout, &mut p, c, version, revision.as_ref())
        }
    }
    let mut u = UpdateText::default();
    let version = AttributeValue::S(request.version.as_str().to_owned());
    p.put_assign(u.set(), n_version, "version", version);
    let lease = AttributeValue::N(format_lease(request.lease_duration));
    p.put_assign(u.set(), n_lease, "lease", lease);
    let host = AttributeValue::S(request.host.clone());
    p.put_assign(u.set(), n_host, "host", host);
    let expires = AttributeValue::N(expires_at.to_string());
    p.put_assign(u.set(), n_expires, "expires", expires);
    if let TokenUpdate::Next { initial } = request.token {
        // stored + 1 if a token exists, else exactly `initial`:
        // `#t = if_not_exists(#t, :base) + :one`.
        let base = i128::from(initial) - 1;
        let out = u.set();
        p.put_name(out, n_token);
        out.push_str(" = if_not_exists(");
        p.put_name(out, n_token);
        out.push_str(", ");
        p.put_value(out, "base", AttributeValue::N(base.to_string()));
        out.push_str(") + ");
        p.put_value(out, "one", AttributeValue::N("1".into()));
    }
    match &request.payload {
        Some(b) => {
            let payload = AttributeValue::B(Blob::new(b.to_vec()));
            p.put_assign(u.set(), n_payload, "payload", payload);
        }
        None => p.put_name(u.remove(), n_payload),
    }
    if request.released {
        p.put_assign(u.set(), n_released, "true", AttributeValue::Bool(true));
    } else {
        p.put_name(u.remove(), n_released);
    }
    match &request.queue {
        QueueUpdate::Keep => {}
        QueueUpdate::Set(queue) => set_queue(layout, &mut p, queue, &mut u),
    }
    match &request.granted_to {
        Some(id) => {
            let id = AttributeValue::S(id.clone());
            p.put_assign(u.set(), n_granted, "grantedTo", id);
        }
        None => p.put_name(u.remove(), n_granted),
    }
    match &request.holder_detail {
        Some(detail) => {
            let detail = AttributeValue::S(detail.clone());
            p.put_assign(u.set(), n_detail, "holderDetail", detail);
        }
        None => p.put_name(u.remove(), n_detail),
    }
    Expressions {
        update: Some(u.finish()),
        condition,
        placeholders: p,
    }
}

/// Writes `attribute_not_exists(#attr)`.
fn attribute_not_exists(p: &mut Placeholders, out: &mut String, attr: &str) {
    out.push_str("attribute_not_exists(");
    p.put_name(out, attr);
    out.push(')');
}

/// Stores `queue`: `waitQueue` (removed when empty, which reads back as an
/// empty queue) and `queueRevision` (removed when `None`).
fn set_queue(layout: &TableLayout, p: &mut Placeholders, queue: &WaitQueue, u: &mut UpdateText) {
    let (n_queue, n_revision) = (
        layout.attribute_name(A::WaitQueue),
        layout.attribute_name(A::QueueRevision),
    );
    if queue.entries.is_empty() {
        p.put_name(u.remove(), n_queue);
    } else {
        p.put_assign(u.set(), n_queue, "queue", queue_value(&queue.entries));
    }
    match &queue.revision {
        Some(r) => {
            let r = AttributeValue::S(r.as_str().to_owned());
            p.put_assign(u.set(), n_revision, "revision", r);
        }
        None => p.put_name(u.remove(), n_revision),
    }
}

/// The `UpdateItem` expressions of a queue write: the condition that the
/// record is at `request.version` with queue revision `request.revision`,
/// and an update of `waitQueue` and `queueRevision` alone (nothing else,
/// not even the TTL attribute, changes).
pub(crate) fn queue_expressions(layout: &TableLayout, request: &QueueRequest) -> Expressions {
    let mut p = Placeholders::default();
    let mut condition = String::new();
    let revision = request.revision.as_ref();
    queue_is(layout, &mut p, &mut condition, &request.version, revision);
    let mut u = UpdateText::default();
    set_queue(layout, &mut p, &request.queue, &mut u);
    Expressions {
        update: Some(u.finish()),
        condition,
        placeholders: p,
    }
}

/// Writes `versionNumber = :expected AND queueRevision = :expectedRevision`,
/// or `... AND attribute_not_exists(queueRevision)` when `revision` is `None`.
fn queue_is(
    layout: &TableLayout,
    p: &mut Placeholders,
    out: &mut String,
    version: &Version,
    revision: Option<&Version>,
) {
    let n_revision = layout.attribute_name(A::QueueRevision);
    version_is(layout, p, out, version);
    out.push_str(" AND ");
    match revision {
        Some(r) => {
            let r = AttributeValue::S(r.as_str().to_owned());
            p.put_assign(out, n_revision, "expectedRevision", r);
        }
        None => attribute_not_exists(p, out, n_revision),
    }
}

/// Writes `versionNumber = :expected`.
fn version_is(layout: &TableLayout, p: &mut Placeholders, out: &mut String, expected: &Version) {
    let value = AttributeValue::S(expected.as_str().to_owned());
    p.put_assign(
        out,
        layout.attribute_name(A::VersionNumber),
        "expected",
        value,
    );
}

/// The condition of a conditional delete: the record is still at `expected`.
pub(crate) fn delete_condition(layout: &TableLayout, expected: &Version) -> Expressions {
    let mut p = Placeholders::default();
    let mut condition = String::new();
    version_is(layout, &mut p, &mut condition, expected);
    Expressions {
        update: None,
        condition,
        placeholders: p,
    }
}

/// The fence of a fenced write: the record still carries `token` and is not
/// released (`fencingToken = :token AND attribute_not_exists(released)`).
pub(crate) fn fence_condition(layout: &TableLayout, token: FencingToken) -> Expressions {
    let mut p = Placeholders::default();
    let mut condition = String::new();
    let token = AttributeValue::N(token.get().to_string());
    p.put_assign(
        &mut condition,
        layout.attribute_name(A::FencingToken),
        "token",
        token,
    );
    condition.push_str(" AND ");
    attribute_not_exists(&mut p, &mut condition, layout.attribute_name(A::Released));
    Expressions {
        update: None,
        condition,
        placeholders: p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_text_round_trips() {
        assert_eq!(format_lease(Duration::from_secs(20)), "20");
        assert_eq!(format_lease(Duration::from_millis(2500)), "2.5");
        assert_eq!(format_lease(Duration::from_millis(100)), "0.1");
        assert_eq!(format_lease(Duration::ZERO), "0");
        for text in ["20", "2.5", "0.1", "0", "604800", "0.000000001"] {
            assert_eq!(format_lease(parse_lease(text).unwrap()), text);
        }
        assert_eq!(parse_lease("2E+1"), Some(Duration::from_secs(20)));
        assert_eq!(parse_lease("20.0"), Some(Duration::from_secs(20)));
        assert_eq!(parse_lease("-0"), Some(Duration::ZERO));
        assert_eq!(parse_lease("-1"), None);
        assert_eq!(parse_lease("x"), None);
    }

    #[test]
    fn python_item_reads_as_held_without_token() {
        let item = HashMap::from([
            (LOCK_KEY.to_owned(), AttributeValue::S("L".into())),
            (LEASE_DURATION.to_owned(), AttributeValue::N("20".into())),
            (VERSION_NUMBER.to_owned(), AttributeValue::S("v1".into())),
            (HOST_IDENTIFIER.to_owned(), AttributeValue::S("py".into())),
        ]);
        let r = record_from_item(&TableLayout::default(), &item).unwrap();
        assert_eq!(r.lease_duration, Duration::from_secs(20));
        assert!(!r.released);
        assert_eq!(r.fencing_token, None);
        assert_eq!(r.payload, None);
        assert_eq!(r.queue, WaitQueue::default(), "no queue, no revision");
        assert_eq!(r.granted_to, None);
    }

    fn python_item() -> HashMap<String, AttributeValue> {
        HashMap::from([
            (LOCK_KEY.to_owned(), AttributeValue::S("L".into())),
            (LEASE_DURATION.to_owned(), AttributeValue::N("20".into())),
            (VERSION_NUMBER.to_owned(), AttributeValue::S("v1".into())),
        ])
    }

    fn entry(id: &str, wake: Option<&str>) -> QueueEntry {
        QueueEntry {
            id: id.into(),
            host: format!("host-{id}"),
            wake: wake.map(str::to_owned),
            // Entries with a wake-up address also say how they poll; the
            // others are like entries of lynk versions before `pollMs`.
            poll: wake.map(|_| Duration::from_millis(1500)),
        }
    }

    #[test]
    fn queue_and_grant_read_back() {
        let entries = vec![entry("a", Some("10.0.0.1:7000")), entry("b", None)];
        let mut item = python_item();
        item.insert(WAIT_QUEUE.into(), queue_value(&entries));
        item.insert(QUEUE_REVISION.into(), AttributeValue::S("r1".into()));
        item.insert(GRANTED_TO.into(), AttributeValue::S("a".into()));
        let r = record_from_item(&TableLayout::default(), &item).unwrap();
        assert_eq!(r.queue.entries, entries);
        assert_eq!(r.queue.revision, Some(Version::from_string("r1")));
        assert_eq!(r.granted_to.as_deref(), Some("a"));
    }

    /// `pollMs` is whole milliseconds rounded up (a grant lasts three of
    /// them: rounding down would shorten it), and reads back as written.
    #[test]
    fn queue_entry_poll_is_whole_milliseconds_rounded_up() {
        let mut e = entry("a", None);
        e.poll = Some(Duration::from_micros(1_500_001));
        let AttributeValue::L(list) = queue_value(std::slice::from_ref(&e)) else {
            unreachable!()
        };
        let AttributeValue::M(m) = &list[0] else {
            unreachable!()
        };
        assert_eq!(
            m.get(ENTRY_POLL_MS),
            Some(&AttributeValue::N("1501".into()))
        );
        let back = queue_entry(&list[0]).unwrap();
        assert_eq!(back.poll, Some(Duration::from_millis(1501)));
        // An entry of an older lynk has none.
        assert_eq!(
            queue_entry(&queue_value(&[entry("b", None)]).as_l().unwrap()[0])
                .unwrap()
                .poll,
            None
        );
        for (value, expected) in [
            (
                AttributeValue::N("1.5".into()),
                "`pollMs` \"1.5\" that is not a whole number",
            ),
            (
                AttributeValue::N("-1".into()),
                "`pollMs` \"-1\" that is not a whole number",
            ),
            (
                AttributeValue::S("1500".into()),
                "`pollMs` that is not a number (N)",
            ),
        ] {
            let mut m = m.clone();
            m.insert(ENTRY_POLL_MS.to_owned(), value);
            let why = queue_entry(&AttributeValue::M(m)).unwrap_err();
            assert!(why.contains(expected), "{why}");
        }
    }

    #[test]
    fn malformed_queue_attributes_are_named() {
        let cases = [
            (
                WAIT_QUEUE,
                AttributeValue::S("x".into()),
                "`waitQueue` is not a list",
            ),
            (
                WAIT_QUEUE,
                AttributeValue::L(vec![AttributeValue::S("x".into())]),
                "`waitQueue` entry 0 is not a map",
            ),
            (
                WAIT_QUEUE,
                AttributeValue::L(vec![AttributeValue::M(HashMap::from([(
                    ENTRY_HOST.to_owned(),
                    AttributeValue::S("h".into()),
                )]))]),
                "`waitQueue` entry 0 has no `id`",
            ),
            (
                QUEUE_REVISION,
                AttributeValue::N("1".into()),
                "`queueRevision` is not a string",
            ),
            (
                QUEUE_REVISION,
                AttributeValue::S(String::new()),
                "`queueRevision` is empty",
            ),
            (
                GRANTED_TO,
                AttributeValue::Bool(true),
                "`grantedTo` is not a string",
            ),
        ];
        for (attr, value, expected) in cases {
            let mut item = python_item();
            item.insert(attr.to_owned(), value.clone());
            let e = record_from_item(&TableLayout::default(), &item)
                .unwrap_err()
                .to_string();
            assert!(e.contains(attr), "{attr}={value:?}: {e}");
            assert!(e.contains(expected), "{attr}={value:?}: {e}");
        }
        let mut item = python_item();
        let mut list = match queue_value(&[entry("a", None), entry("b", Some("x"))]) {
            AttributeValue::L(l) => l,
            _ => unreachable!(),
        };
        if let AttributeValue::M(m) = &mut list[1] {
            m.insert(ENTRY_WAKE.to_owned(), AttributeValue::N("1".into()));
        }
        item.insert(WAIT_QUEUE.into(), AttributeValue::L(list));
        let e = record_from_item(&TableLayout::default(), &item)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`waitQueue` entry 1 has `wake` that is not a string"),
            "{e}"
        );
    }

    /// Every `#name` and `:value` a request defines is used by one of its
    /// expressions (dynalite and DynamoDB reject unused ones), and every one
    /// used is defined.
    fn placeholders_match(expr: &mut Expressions) {
        let text = format!(
            "{} {}",
            expr.update.as_deref().unwrap_or(""),
            expr.condition
        );
        let names = expr.placeholders.take_names().unwrap_or_default();
        let values = expr.placeholders.take_values().unwrap_or_default();
        for defined in names.keys().chain(values.keys()) {
            let used = text
                .split(|c: char| !(c.is_alphanumeric() || c == '#' || c == ':'))
                .any(|w| w == defined);
            assert!(used, "{defined} is defined but unused in {text:?}");
        }
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '#' || c == ':')) {
            if word.starts_with('#') {
                assert!(names.contains_key(word), "{word} used but undefined");
            } else if word.starts_with(':') {
                assert!(values.contains_key(word), "{word} used but undefined");
            }
        }
    }

    #[test]
    fn every_placeholder_is_used() {
        let v = Version::from_string("v");
        let queues = [
            QueueUpdate::Keep,
            QueueUpdate::Set(WaitQueue::default()),
            QueueUpdate::Set(WaitQueue::default().with(entry("a", None))),
            QueueUpdate::Set(WaitQueue {
                revision: None,
                entries: vec![entry("a", Some("w"))],
            }),
            QueueUpdate::Set(WaitQueue {
                revision: Some(Version::random()),
                entries: vec![],
            }),
        ];
        let conditions = [
            Condition::Absent,
            Condition::Vacant,
            Condition::VersionIs(v.clone()),
            Condition::QueueIs {
                version: v.clone(),
                revision: None,
            },
            Condition::QueueIs {
                version: v.clone(),
                revision: Some(Version::random()),
            },
        ];
        for condition in &conditions {
            for queue in &queues {
                for granted_to in [None, Some("a".to_owned())] {
                    for released in [false, true] {
                        let request = WriteRequest {
                            key: "L".into(),
                            condition: condition.clone(),
                            version: Version::random(),
                            lease_duration: Duration::from_secs(20),
                            host: "h".into(),
                            token: TokenUpdate::Next { initial: 7 },
                            payload: None,
                            released,
                            queue: queue.clone(),
                            granted_to: granted_to.clone(),
                            holder_detail: None,
                        };
                        placeholders_match(&mut write_expressions(
                            &TableLayout::default(),
                            &request,
                            1,
                        ));
                    }
                }
            }
            for queue in &queues {
                let QueueUpdate::Set(queue) = queue else {
                    continue;
                };
                for revision in [None, Some(Version::random())] {
                    let request = QueueRequest {
                        key: "L".into(),
                        version: v.clone(),
                        revision,
                        queue: queue.clone(),
                    };
                    placeholders_match(&mut queue_expressions(&TableLayout::default(), &request));
                }
            }
        }
    }

    /// The write of an uncontended acquire of lock `L`.
    fn uncontended_acquire() -> WriteRequest {
        WriteRequest {
            key: "L".into(),
            condition: Condition::Vacant,
            version: Version::random(),
            lease_duration: Duration::from_secs(20),
            host: "h".into(),
            token: TokenUpdate::Next { initial: 7 },
            payload: None,
            released: false,
            queue: QueueUpdate::Keep,
            granted_to: None,
            holder_detail: Some("pid 1".into()),
        }
    }

    /// The exact texts of an uncontended acquire and release (captured
    /// from the SDK before the placeholders were rebuilt for speed; since
    /// then only the `#` of the names is gone, lynk's default names being
    /// spelled as they are): a change here is a change of the protocol.
    #[test]
    fn acquire_and_release_texts_are_stable() {
        let mut request = uncontended_acquire();
        let mut acquire = write_expressions(&TableLayout::default(), &request, 1);
        assert_eq!(
            acquire.update.as_deref(),
            Some("SET versionNumber = :version, leaseDuration = :lease, hostIdentifier = :host, expiresAt = :expires, fencingToken = if_not_exists(fencingToken, :base) + :one, holderDetail = :holderDetail REMOVE payload, released, grantedTo")
        );
        assert_eq!(
            acquire.condition,
            "attribute_not_exists(lockKey) OR (released = :true AND attribute_type(versionNumber, :typeS) AND attribute_type(leaseDuration, :typeN))"
        );
        let values = acquire.placeholders.take_values().unwrap();
        assert_eq!(values.len(), 10, "{values:?}");
        assert_eq!(values[":base"], AttributeValue::N("6".into()));
        assert_eq!(values[":typeN"], AttributeValue::S("N".into()));
        assert_eq!(acquire.placeholders.take_names(), None, "no name map");

        request.condition = Condition::QueueIs {
            version: Version::from_string("v"),
            revision: None,
        };
        request.token = TokenUpdate::Keep;
        request.released = true;
        let mut release = write_expressions(&TableLayout::default(), &request, 1);
        assert_eq!(
            release.update.as_deref(),
            Some("SET versionNumber = :version, leaseDuration = :lease, hostIdentifier = :host, expiresAt = :expires, released = :true, holderDetail = :holderDetail REMOVE payload, grantedTo")
        );
        assert_eq!(
            release.condition,
            "versionNumber = :expected AND attribute_not_exists(queueRevision)"
        );
        assert_eq!(release.placeholders.take_names(), None, "no name map");
        assert_eq!(release.placeholders.take_values().unwrap().len(), 7);
        assert_eq!(release.placeholders.take_values(), None, "taken once");
    }

    /// Names of a table layout's own (a reserved word such as `ttl`, a key
    /// named `PK`) still go through placeholders; lynk's default names do
    /// not.
    #[test]
    fn layout_names_get_placeholders() {
        let layout = TableLayout::new()
            .partition_key("PK")
            .attribute(crate::layout::LynkAttribute::ExpiresAt, "ttl");
        let request = WriteRequest {
            holder_detail: None,
            ..uncontended_acquire()
        };
        let mut acquire = write_expressions(&layout, &request, 1);
        let update = acquire.update.clone().unwrap();
        assert!(update.contains(", #ttl = :expires,"), "{update}");
        assert!(
            update.starts_with("SET versionNumber = :version,"),
            "{update}"
        );
        assert!(
            acquire
                .condition
                .starts_with("attribute_not_exists(#PK) OR (released = :true"),
            "{}",
            acquire.condition
        );
        let names = acquire.placeholders.take_names().unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(
            (names["#PK"].as_str(), names["#ttl"].as_str()),
            ("PK", "ttl")
        );
    }

    #[test]
    fn update_text_leaves_out_empty_clauses() {
        let text = |set: &[&str], remove: &[&str]| {
            let mut u = UpdateText::default();
            for a in set {
                u.set().push_str(a);
            }
            for r in remove {
                u.remove().push_str(r);
            }
            u.finish()
        };
        let (a, b) = (["#a = :a"], ["#b", "#c"]);
        assert_eq!(text(&a, &b), "SET #a = :a REMOVE #b, #c");
        assert_eq!(text(&a, &[]), "SET #a = :a");
        assert_eq!(text(&[], &b), "REMOVE #b, #c");
        assert_eq!(text(&[], &[]), "");
    }

    #[test]
    fn placeholders_of_awkward_names_do_not_collide() {
        let mut p = Placeholders::default();
        assert_eq!(p.name("a-b"), "#n0");
        assert_eq!(p.name("a.b"), "#n1");
        assert_eq!(
            p.name("n0"),
            "#n2",
            "a plain name whose placeholder is taken"
        );
        assert_eq!(p.name("a-b"), "#n0", "one attribute, one placeholder");
        assert_eq!(p.value("v", AttributeValue::S("1".into())), ":v");
        assert_eq!(p.value("v", AttributeValue::S("2".into())), ":v");
        let values = p.take_values().unwrap();
        assert_eq!(values.len(), 1);
        assert_eq!(values[":v"], AttributeValue::S("2".into()));
        let names = p.take_names().unwrap();
        assert_eq!(names.len(), 3);
        assert_eq!(names["#n0"], "a-b");
        assert_eq!(names["#n2"], "n0");
    }

    #[test]
    fn queue_expressions_touch_only_the_queue() {
        let request = QueueRequest {
            key: "L".into(),
            version: Version::from_string("v"),
            revision: None,
            queue: WaitQueue::default().with(entry("a", None)),
        };
        let expr = queue_expressions(&TableLayout::default(), &request);
        assert_eq!(
            expr.condition,
            "versionNumber = :expected AND attribute_not_exists(queueRevision)"
        );
        assert_eq!(
            expr.update.as_deref(),
            Some("SET waitQueue = :queue, queueRevision = :revision")
        );
        let request = QueueRequest {
            revision: Some(Version::from_string("r")),
            queue: WaitQueue::default(),
            ..request
        };
        let expr = queue_expressions(&TableLayout::default(), &request);
        assert_eq!(
            expr.condition,
            "versionNumber = :expected AND queueRevision = :expectedRevision"
        );
        assert_eq!(
            expr.update.as_deref(),
            Some("REMOVE waitQueue, queueRevision")
        );
    }

    #[test]
    fn missing_version_is_malformed() {
        let item = HashMap::from([
            (LOCK_KEY.to_owned(), AttributeValue::S("L".into())),
            (LEASE_DURATION.to_owned(), AttributeValue::N("20".into())),
        ]);
        let e = record_from_item(&TableLayout::default(), &item).unwrap_err();
        assert!(e.to_string().contains("versionNumber"), "{e}");
    }
}
