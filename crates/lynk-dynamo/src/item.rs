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

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use lynk_core::{FencingToken, LockRecord, Version};

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
