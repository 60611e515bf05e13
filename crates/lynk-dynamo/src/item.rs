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
//!
//! This module is the whole mapping: the attribute names, reading an item
//! into a [`LockRecord`], and every update and condition expression lynk
//! sends (the protocol's writes, the delete condition and the fence of a
//! fenced write). `backend.rs` and `fenced.rs` only send the requests.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use lynk_core::{Condition, FencingToken, LockRecord, TokenUpdate, Version, WriteRequest};

use crate::expression::Placeholders;

/// The hash key attribute: the lock name.
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
    item: &HashMap<String, AttributeValue>,
) -> Result<LockRecord, MalformedItem> {
    let key = match item.get(LOCK_KEY) {
        Some(AttributeValue::S(s)) => s.clone(),
        Some(_) => {
            return Err(MalformedItem {
                key: None,
                problem: format!("`{LOCK_KEY}` is not a string"),
            })
        }
        None => {
            return Err(MalformedItem {
                key: None,
                problem: format!("it has no `{LOCK_KEY}`"),
            })
        }
    };
    let bad = |problem: String| MalformedItem {
        key: Some(key.clone()),
        problem,
    };
    let version = match item.get(VERSION_NUMBER) {
        Some(AttributeValue::S(s)) if !s.is_empty() => Version::from_string(s.clone()),
        Some(AttributeValue::S(_)) => return Err(bad(format!("`{VERSION_NUMBER}` is empty"))),
        Some(_) => return Err(bad(format!("`{VERSION_NUMBER}` is not a string (S)"))),
        None => return Err(bad(format!("it has no `{VERSION_NUMBER}`"))),
    };
    let lease_duration = match item.get(LEASE_DURATION) {
        Some(AttributeValue::N(n)) => parse_lease(n).ok_or_else(|| {
            bad(format!(
                "`{LEASE_DURATION}` {n:?} is not a number of seconds"
            ))
        })?,
        Some(_) => return Err(bad(format!("`{LEASE_DURATION}` is not a number (N)"))),
        None => return Err(bad(format!("it has no `{LEASE_DURATION}`"))),
    };
    let host = match item.get(HOST_IDENTIFIER) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    let fencing_token = match item.get(FENCING_TOKEN) {
        Some(AttributeValue::N(n)) => Some(
            parse_token(n)
                .ok_or_else(|| bad(format!("`{FENCING_TOKEN}` {n:?} is not a whole number")))?,
        ),
        Some(_) => return Err(bad(format!("`{FENCING_TOKEN}` is not a number (N)"))),
        None => None,
    };
    let payload = match item.get(PAYLOAD) {
        Some(AttributeValue::B(b)) => Some(bytes::Bytes::from(b.clone().into_inner())),
        Some(_) => return Err(bad(format!("`{PAYLOAD}` is not binary (B)"))),
        None => None,
    };
    let released = matches!(item.get(RELEASED), Some(AttributeValue::Bool(true)));
    Ok(LockRecord {
        key,
        version,
        lease_duration,
        host,
        fencing_token,
        payload,
        released,
        queue: Default::default(),
        granted_to: None,
    })
}

/// The epoch seconds stored in `expiresAt`, if the item has one.
pub(crate) fn expires_at(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    match item.get(EXPIRES_AT) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

/// The `Key` map for lock `name`.
pub(crate) fn key_of(name: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(LOCK_KEY.to_owned(), AttributeValue::S(name.to_owned()))])
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

/// `#attr = :label`, registering both.
fn assign(p: &mut Placeholders, attr: &str, label: &str, value: AttributeValue) -> String {
    format!("{} = {}", p.name(attr), p.value(label, value))
}

/// The `UpdateItem` expressions of a protocol write (acquire, takeover,
/// heartbeat, handover, release): `request`'s condition, and an update that
/// writes its record with the TTL attribute set to `expires_at`.
pub(crate) fn write_expressions(request: &WriteRequest, expires_at: u64) -> Expressions {
    let mut p = Placeholders::default();
    let condition = match &request.condition {
        Condition::Absent => format!("attribute_not_exists({})", p.name(LOCK_KEY)),
        Condition::Vacant => format!(
            "attribute_not_exists({}) OR {}",
            p.name(LOCK_KEY),
            assign(&mut p, RELEASED, "true", AttributeValue::Bool(true))
        ),
        Condition::VersionIs(v) => version_is(&mut p, v),
        Condition::QueueIs { version, .. } => {
            // TODO(issue 12): the queue revision (lynk-dynamo does not store
            // queues yet: Capabilities::wait_queue is false).
            version_is(&mut p, version)
        }
    };
    let version = AttributeValue::S(request.version.as_str().to_owned());
    let lease = AttributeValue::N(format_lease(request.lease_duration));
    let mut set = vec![
        assign(&mut p, VERSION_NUMBER, "version", version),
        assign(&mut p, LEASE_DURATION, "lease", lease),
        assign(
            &mut p,
            HOST_IDENTIFIER,
            "host",
            AttributeValue::S(request.host.clone()),
        ),
        assign(
            &mut p,
            EXPIRES_AT,
            "expires",
            AttributeValue::N(expires_at.to_string()),
        ),
    ];
    let mut remove = Vec::new();
    if let TokenUpdate::Next { initial } = request.token {
        // stored + 1 if a token exists, else exactly `initial`.
        let base = i128::from(initial) - 1;
        let t = p.name(FENCING_TOKEN);
        set.push(format!(
            "{t} = if_not_exists({t}, {}) + {}",
            p.value("base", AttributeValue::N(base.to_string())),
            p.value("one", AttributeValue::N("1".into()))
        ));
    }
    match &request.payload {
        Some(b) => set.push(assign(
            &mut p,
            PAYLOAD,
            "payload",
            AttributeValue::B(Blob::new(b.to_vec())),
        )),
        None => remove.push(p.name(PAYLOAD)),
    }
    if request.released {
        set.push(assign(&mut p, RELEASED, "true", AttributeValue::Bool(true)));
    } else {
        remove.push(p.name(RELEASED));
    }
    let mut update = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        update.push_str(" REMOVE ");
        update.push_str(&remove.join(", "));
    }
    Expressions {
        update: Some(update),
        condition,
        placeholders: p,
    }
}

/// `versionNumber = :expected`.
fn version_is(p: &mut Placeholders, expected: &Version) -> String {
    let value = AttributeValue::S(expected.as_str().to_owned());
    assign(p, VERSION_NUMBER, "expected", value)
}

/// The condition of a conditional delete: the record is still at `expected`.
pub(crate) fn delete_condition(expected: &Version) -> Expressions {
    let mut p = Placeholders::default();
    let condition = version_is(&mut p, expected);
    Expressions {
        update: None,
        condition,
        placeholders: p,
    }
}

/// The fence of a fenced write: the record still carries `token` and is not
/// released (`fencingToken = :token AND attribute_not_exists(released)`).
pub(crate) fn fence_condition(token: FencingToken) -> Expressions {
    let mut p = Placeholders::default();
    let token = AttributeValue::N(token.get().to_string());
    let condition = format!(
        "{} AND attribute_not_exists({})",
        assign(&mut p, FENCING_TOKEN, "token", token),
        p.name(RELEASED)
    );
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
        let r = record_from_item(&item).unwrap();
        assert_eq!(r.lease_duration, Duration::from_secs(20));
        assert!(!r.released);
        assert_eq!(r.fencing_token, None);
        assert_eq!(r.payload, None);
    }

    #[test]
    fn missing_version_is_malformed() {
        let item = HashMap::from([
            (LOCK_KEY.to_owned(), AttributeValue::S("L".into())),
            (LEASE_DURATION.to_owned(), AttributeValue::N("20".into())),
        ]);
        let e = record_from_item(&item).unwrap_err();
        assert!(e.to_string().contains("versionNumber"), "{e}");
    }
}
