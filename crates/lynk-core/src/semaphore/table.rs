//! The permit table: what a semaphore's one record holds in its payload.
//!
//! ```text
//! lynk-semaphore 1
//! permits 3
//! h <id> <token> <beat> <lease-ms> <host...>
//! w <id> <beat> <lease-ms> <host...>
//! ```
//!
//! One `h` line per held permit: its id (random, chosen by the holder), its
//! fencing token, its **beat** (the version of the last write that renewed
//! it) and its lease; one `w` line per waiting process, in arrival order,
//! with a beat of its own. Writers copy every other line unchanged, so a
//! line's beat changes only when its owner renews it: an observer that sees
//! the same beat for a lease × (1 + d) may remove the line, exactly as a
//! waiter takes over a mutex whose version stood still.

use std::time::Duration;

use crate::FencingToken;

/// The first line of every permit table.
pub(crate) const MAGIC: &str = "lynk-semaphore 1";

/// One held permit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeldLine {
    pub(crate) id: String,
    pub(crate) token: FencingToken,
    pub(crate) beat: String,
    pub(crate) lease: Duration,
    pub(crate) host: String,
}

/// One waiting process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WaitLine {
    pub(crate) id: String,
    pub(crate) beat: String,
    pub(crate) lease: Duration,
    pub(crate) host: String,
}

/// A semaphore's permits, holders and waiting processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PermitTable {
    pub(crate) permits: u32,
    pub(crate) held: Vec<HeldLine>,
    pub(crate) waiting: Vec<WaitLine>,
}

/// Why a payload is not a permit table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not a semaphore record at all (a mutex's record, the original
    /// client's, or no payload).
    NotATable,
    /// It starts like a permit table but a line is malformed.
    Malformed(String),
}

fn clean_host(host: &str) -> String {
    host.replace(['\n', '\r'], " ")
}

impl PermitTable {
    pub(crate) fn empty(permits: u32) -> Self {
        PermitTable {
            permits,
            held: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// The payload bytes of this table.
    pub(crate) fn encode(&self) -> String {
        let mut out = format!("{MAGIC}\npermits {}\n", self.permits);
        for h in &self.held {
            out.push_str(&format!(
                "h {} {} {} {} {}\n",
                h.id,
                h.token.get(),
                h.beat,
                h.lease.as_millis(),
                clean_host(&h.host)
            ));
        }
        for w in &self.waiting {
            out.push_str(&format!(
                "w {} {} {} {}\n",
                w.id,
                w.beat,
                w.lease.as_millis(),
                clean_host(&w.host)
            ));
        }
        out
    }

    /// Parses a record's payload.
    pub(crate) fn parse(payload: Option<&[u8]>) -> Result<PermitTable, ParseError> {
        let text = payload
            .and_then(|p| std::str::from_utf8(p).ok())
            .ok_or(ParseError::NotATable)?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(ParseError::NotATable);
        }
        let bad = |line: &str| ParseError::Malformed(format!("bad line {line:?}"));
        let permits_line = lines.next().unwrap_or("");
        let permits = permits_line
            .strip_prefix("permits ")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| bad(permits_line))?;
        let mut table = PermitTable::empty(permits);
        for line in lines.filter(|l| !l.is_empty()) {
            let mut f = line.splitn(6, ' ');
            match f.next() {
                Some("h") => {
                    let id = f.next().ok_or_else(|| bad(line))?.to_owned();
                    let token = f
                        .next()
                        .and_then(|t| t.parse::<u64>().ok())
                        .ok_or_else(|| bad(line))?;
                    let beat = f.next().ok_or_else(|| bad(line))?.to_owned();
                    let lease = f
                        .next()
                        .and_then(|t| t.parse::<u64>().ok())
                        .ok_or_else(|| bad(line))?;
                    let host = f.next().unwrap_or("").to_owned();
                    table.held.push(HeldLine {
                        id,
                        token: FencingToken::new(token),
                        beat,
                        lease: Duration::from_millis(lease),
                        host,
                    });
                }
                Some("w") => {
                    let mut f = line.splitn(5, ' ').skip(1);
                    let id = f.next().ok_or_else(|| bad(line))?.to_owned();
                    let beat = f.next().ok_or_else(|| bad(line))?.to_owned();
                    let lease = f
                        .next()
                        .and_then(|t| t.parse::<u64>().ok())
                        .ok_or_else(|| bad(line))?;
                    let host = f.next().unwrap_or("").to_owned();
                    table.waiting.push(WaitLine {
                        id,
                        beat,
                        lease: Duration::from_millis(lease),
                        host,
                    });
                }
                _ => return Err(bad(line)),
            }
        }
        Ok(table)
    }

    /// The number of permits nobody holds.
    pub(crate) fn free(&self) -> u32 {
        self.permits
            .saturating_sub(u32::try_from(self.held.len()).unwrap_or(u32::MAX))
    }

    /// The longest lease of any line (`fallback` if there is none): the lease
    /// the record itself carries, so that a client reading it as a mutex
    /// never takes it over while a permit may still be held.
    pub(crate) fn longest_lease(&self, fallback: Duration) -> Duration {
        self.held
            .iter()
            .map(|h| h.lease)
            .chain(self.waiting.iter().map(|w| w.lease))
            .max()
            .unwrap_or(fallback)
            .max(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let table = PermitTable {
            permits: 3,
            held: vec![HeldLine {
                id: "a1".into(),
                token: FencingToken::new(17),
                beat: "v9".into(),
                lease: Duration::from_millis(20_000),
                host: "web 1\nx".into(),
            }],
            waiting: vec![WaitLine {
                id: "w1".into(),
                beat: "v3".into(),
                lease: Duration::from_millis(5_000),
                host: "box".into(),
            }],
        };
        let parsed = PermitTable::parse(Some(table.encode().as_bytes())).unwrap();
        assert_eq!(parsed.permits, 3);
        assert_eq!(parsed.held[0].host, "web 1 x");
        assert_eq!(parsed.held[0].token.get(), 17);
        assert_eq!(parsed.waiting, table.waiting);
        assert_eq!(parsed.free(), 2);
        assert_eq!(
            parsed.longest_lease(Duration::from_secs(1)),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn foreign_payloads_are_not_tables() {
        assert_eq!(PermitTable::parse(None), Err(ParseError::NotATable));
        assert_eq!(
            PermitTable::parse(Some(b"10.0.0.1:8080")),
            Err(ParseError::NotATable)
        );
        assert!(matches!(
            PermitTable::parse(Some(format!("{MAGIC}\npermits x\n").as_bytes())),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            PermitTable::parse(Some(format!("{MAGIC}\npermits 2\nq 1\n").as_bytes())),
            Err(ParseError::Malformed(_))
        ));
    }
}
