//! Parsers of command-line values: names, leases and durations, checked
//! before anything is sent. The limits are lynk-core's.

use std::time::Duration;

use lynk_core::{MAX_LEASE, MAX_NAME_BYTES, MAX_PERMITS, MIN_LEASE};

use crate::output::fmt_duration;

/// The longest wait or grace period accepted (a year), so deadlines cannot overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a duration as [humantime] does (`250ms`, `20s`, `2m`, `1h`, `7d`,
/// `1h 30m`), plus what it does not take: a fraction (`1.5s`, `0.5h`) or a
/// bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let not_a_duration =
        || format!("{text:?} is not a duration; write it like 20s, 500ms, 2m or 1h");
    let unknown_unit =
        |unit: &str| format!("unknown unit {unit:?} in {text:?}; use ms, s, m, h or d");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    if !(number.contains('.') || unit.is_empty()) {
        return humantime::parse_duration(t).map_err(|e| match e {
            humantime::DurationError::UnknownUnit { unit, .. } => unknown_unit(&unit),
            _ => not_a_duration(),
        });
    }
    // A fraction or a bare number: one of the unit, scaled.
    let value: f64 = number.parse().map_err(|_| not_a_duration())?;
    let one = match unit {
        "" => Duration::from_secs(1),
        u => humantime::parse_duration(&format!("1{u}")).map_err(|_| unknown_unit(u))?,
    };
    Duration::try_from_secs_f64(one.as_secs_f64() * value)
        .map_err(|_| format!("{text:?} is not a usable duration"))
}

/// A wait, hold or grace duration: any duration up to [`MAX_WAIT`].
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > MAX_WAIT {
        return Err(format!(
            "{text:?} is too long; the limit is 366 days (leave --wait out to wait forever)"
        ));
    }
    Ok(d)
}

/// A lease: between [`MIN_LEASE`] and [`MAX_LEASE`].
pub fn parse_lease(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < MIN_LEASE || d > MAX_LEASE {
        return Err(format!(
            "invalid lease {text:?}: a lease must be between {} and {} days; e.g. 20s, or for `lynk acquire` a little longer than the work",
            fmt_duration(MIN_LEASE),
            MAX_LEASE.as_secs() / 86400,
        ));
    }
    Ok(d)
}

/// A waiter's poll interval: between 10 ms and 1 hour.
pub fn parse_poll(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err(format!(
            "invalid poll interval {text:?}: it must be between 10ms and 1h; the default is 1.5s (waiters still poll at least four times per lease)"
        ));
    }
    Ok(d)
}

/// A DynamoDB table name: 3 to 255 characters of `A-Z a-z 0-9 _ . -`.
pub fn parse_table_name(text: &str) -> Result<String, String> {
    let ok_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(3..=255).contains(&text.len()) || !ok_chars {
        return Err(format!(
            "invalid table name {text:?}: DynamoDB table names are 3 to 255 characters of A-Z a-z 0-9 _ . -"
        ));
    }
    Ok(text.to_owned())
}

/// A lock name: 1 to [`MAX_NAME_BYTES`] bytes (DynamoDB's key limit).
pub fn parse_lock_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(
            "invalid lock name: it is empty; give the lock a name such as \"my lock\"".into(),
        );
    }
    if text.len() > MAX_NAME_BYTES {
        return Err(format!(
            "invalid lock name: it is {} bytes long, and the limit is {MAX_NAME_BYTES} bytes (DynamoDB's key limit); use a shorter name, e.g. a hash of it",
            text.len()
        ));
    }
    Ok(text.to_owned())
}

/// A semaphore's permit count: 1 to [`MAX_PERMITS`].
pub fn parse_permits(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let range = format!("a semaphore has 1 to {MAX_PERMITS} permits");
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "invalid permit count {text:?}: give a whole number; {range}"
        ));
    }
    match t.parse::<u32>() {
        Ok(0) => Err(format!(
            "invalid permit count 0: {range} (to let one command run at a time, leave --permits out: a lock is cheaper)"
        )),
        Ok(n) if n <= MAX_PERMITS => Ok(n),
        _ => Err(format!(
            "invalid permit count {t}: {range} (every permit is a line of the semaphore's one record, which every renewal rewrites)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.5h"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("3secs"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("ten").unwrap_err().contains("20s"));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("1.5x").unwrap_err().contains("unknown unit"));
        assert!(parse_wait("9999999999999999999").is_err());
    }

    #[test]
    fn leases_are_bounded() {
        assert!(parse_lease("0s").unwrap_err().contains("invalid lease"));
        assert!(parse_lease("8d").is_err());
        assert_eq!(parse_lease("7d"), Ok(MAX_LEASE));
        assert_eq!(parse_lease("100ms"), Ok(MIN_LEASE));
    }

    #[test]
    fn permits_are_bounded() {
        assert_eq!(parse_permits("1"), Ok(1));
        assert_eq!(parse_permits("100"), Ok(MAX_PERMITS));
        assert!(parse_permits("0").unwrap_err().contains("1 to 100"));
        assert!(parse_permits("101").unwrap_err().contains("1 to 100"));
        assert!(parse_permits("99999999999999999999")
            .unwrap_err()
            .contains("1 to 100"));
        assert!(parse_permits("-1").unwrap_err().contains("whole number"));
        assert!(parse_permits("two").unwrap_err().contains("whole number"));
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_table_name("ab").is_err());
        assert!(parse_table_name("a b c").is_err());
        assert!(parse_table_name(&"a".repeat(256)).is_err());
        assert!(parse_table_name("lynk-quickstart_1.x").is_ok());
        assert!(parse_lock_name("").is_err());
        assert!(parse_lock_name(&"é".repeat(1025)).is_err());
        assert!(parse_lock_name(&"a".repeat(MAX_NAME_BYTES)).is_ok());
    }
}
