//! The lock record: what a backend stores for one lock name.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// A record version: a fresh random UUID written by every acquire, heartbeat
/// and release (the `versionNumber` attribute of the original lynk).
///
/// A version is the **liveness signal** of a lock: a waiter that keeps seeing
/// the same version for longer than the lease knows the holder stopped
/// heartbeating. Versions have no order and cannot fence; see
/// [`FencingToken`] for that.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(String);

impl Version {
    /// A new random version (a UUID v4 in hyphenated form, as the original writes).
    pub fn random() -> Self {
        // A version 4 UUID from the thread's cryptographically strong
        // generator (`rand::thread_rng`, seeded from the OS once), not from
        // `Uuid::new_v4`, which asks the OS (a system call) for every one.
        let bytes: [u8; 16] = rand::random();
        Version(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        )
    }

    /// Wraps a version read from a store. Any non-empty string is accepted,
    /// so records written by other clients can be compared.
    pub fn from_string(version: impl Into<String>) -> Self {
        Version(version.into())
    }

    /// The version as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fencing token: an integer that strictly increases with every acquisition
/// of one lock name, across releases, handovers and takeovers.
///
/// Pass it with every write to the resource the lock protects, and have the
/// resource reject a write whose token is lower than one it has already
/// accepted. That turns "a paused holder woke up and wrote after its lease
/// ran out" from silent corruption into a rejected write.
///
/// ```
/// use lynk_core::FencingToken;
/// assert!(FencingToken::new(7) < FencingToken::new(8));
/// assert_eq!(FencingToken::new(7).get(), 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token value.
    pub const fn new(value: u64) -> Self {
        FencingToken(value)
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One stored lock record.
///
/// The first four fields are the original lynk's item (`lockKey`,
/// `versionNumber`, `leaseDuration`, `hostIdentifier`); the rest are lynk's
/// additions, which the original client ignores.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LockRecord {
    /// The lock name (`lockKey`).
    pub key: String,
    /// The version written by the last write (`versionNumber`).
    pub version: Version,
    /// How long the writer may go without a heartbeat (`leaseDuration`).
    pub lease_duration: Duration,
    /// Who wrote the record, for people reading the table (`hostIdentifier`).
    pub host: String,
    /// The fencing token of the current (or last) acquisition, if the record
    /// has one. Records written by the original Python client have none.
    pub fencing_token: Option<FencingToken>,
    /// Application data the holder attached, such as a leader's address.
    pub payload: Option<Bytes>,
    /// `true` when the holder released the lock but the record was kept so the
    /// fencing token survives. A released record is free to acquire at once.
    pub released: bool,
    /// The waiters of other processes, in arrival order (see
    /// [`WaitQueue`]). Empty on records written by the original client.
    pub queue: WaitQueue,
    /// The [`QueueEntry::id`] of the waiter a releasing holder handed the lock
    /// to. Such a record is a **grant**: nobody holds the lock, and only that
    /// waiter may take it (by its own write, conditioned on the grant's
    /// version) until the grant's lease goes stale like any other lease.
    pub granted_to: Option<String>,
    /// What tells holders on one host apart, written by lynk next to
    /// `hostIdentifier` (which stays as the original writes it): the holder's
    /// process id and the label its client was given, e.g. `pid 4242 nightly`
    /// (see [`ClientConfig::holder_label`](crate::ClientConfig::holder_label)).
    /// `None` on records of the original client and on grants.
    pub holder_detail: Option<String>,
}

impl LockRecord {
    /// `true` if nobody holds the lock this record describes.
    pub fn is_released(&self) -> bool {
        self.released
    }
}

/// One waiting client's place in a lock's [`WaitQueue`].
///
/// A client has at most one entry per lock name, whatever the number of its
/// local waiters (they queue behind it, in process).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QueueEntry {
    /// Identifies this wait of this client: a fresh random UUID per wait.
    pub id: String,
    /// The waiter's host identifier, for people reading the table.
    pub host: String,
    /// Where the waiter listens for wake-up datagrams (`ip:port`), if it does.
    /// A wake-up only makes the waiter read sooner; it never grants.
    pub wake: Option<String>,
    /// How often the waiter reads the record while queued: its
    /// [`poll_interval_for`](crate::ClientConfig::poll_interval_for) the
    /// lease of the record it queued on; while it waits it sleeps no longer
    /// than this plus its 20 % jitter, backoffs included. A grant to this
    /// waiter lasts at least three of them, so the waiter sees its grant in
    /// time however slowly it polls
    /// ([`ClientConfig::grant_lease_for`](crate::ClientConfig::grant_lease_for)).
    /// `None` for entries written by lynk versions before it: the granter
    /// then assumes its own poll interval.
    pub poll: Option<Duration>,
}

/// The waiters of one lock in other processes, in arrival order, kept in the
/// lock's record next to the holder's fields.
///
/// A waiter appends its entry with a [`QueueRequest`](crate::QueueRequest),
/// which changes only the queue (not the holder's version, so the holder's
/// heartbeats and other waiters' staleness timers are not disturbed). A
/// releasing holder grants the lock to the first entry in its release write.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct WaitQueue {
    /// Changes with every write of the queue (a fresh random version), so a
    /// queue write can be conditioned on the queue it read; `None` on a record
    /// whose queue was never written.
    pub revision: Option<Version>,
    /// The entries, first come first.
    pub entries: Vec<QueueEntry>,
}

impl WaitQueue {
    /// The position of the entry with this id, if it is queued.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }

    /// `true` when nobody is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// This queue without the entry `id`, under a new revision.
    pub fn without(&self, id: &str) -> WaitQueue {
        WaitQueue {
            revision: Some(Version::random()),
            entries: self
                .entries
                .iter()
                .filter(|e| e.id != id)
                .cloned()
                .collect(),
        }
    }

    /// This queue with `entry` appended (once), under a new revision.
    pub fn with(&self, entry: QueueEntry) -> WaitQueue {
        let mut entries = self.entries.clone();
        if !entries.iter().any(|e| e.id == entry.id) {
            entries.push(entry);
        }
        WaitQueue {
            revision: Some(Version::random()),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    /// `Version::random` is a hyphenated UUID of version 4 (random), RFC 4122
    /// variant, as the original writes, and two are never alike.
    #[test]
    fn random_versions_are_uuid_v4() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let v = Version::random();
            let u = uuid::Uuid::parse_str(v.as_str()).expect("a UUID");
            assert_eq!(u.get_version_num(), 4, "{v:?}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{v:?}");
            assert_eq!(v.as_str(), u.hyphenated().to_string());
            assert!(seen.insert(v), "a version repeated");
        }
    }
}
