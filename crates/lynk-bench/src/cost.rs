//! Cost in money (issue 14, point 4): requests and capacity units per held
//! lock per hour and per waiting client per hour.
//!
//! lynk's figures are **counted**: one hour of tokio's paused (virtual) time
//! on the in-memory backend, every backend call of each client counted by
//! lynk-testkit's `CountingBackend`, reads (`GetItem` on DynamoDB) apart from
//! writes (`UpdateItem`, `DeleteItem`, queue writes). One run per setting:
//! the defaults, the settings docs/dynamodb.md recommends to cost-sensitive
//! users, and one knob changed at a time (the knobs table of
//! docs/benchmarks.md).
//!
//! The other clients' figures are **computed** from their sources and
//! defaults ([`PEERS`]), and printed with the server column `computed`.
//!
//! Units: a request on an item of `b` bytes costs `ceil(b / 1 KB)` write
//! units or `ceil(b / 4 KB)` read units (strongly consistent), a failed
//! conditional write at least one write unit. lynk's item size is estimated
//! with DynamoDB's sizing rules from the record the hour left in the store
//! ([`item_bytes`]). Prices are applied by `scripts/bench/report.py` (the
//! one place they are written down).

use std::sync::Arc;
use std::time::Duration;

use lynk_core::{ClientConfig, LockBackend, LockClient, LockRecord, WakeUps};
use lynk_dynamo::item;
use lynk_testkit::{CountingBackend, MemoryBackend, RequestCounts};

use crate::util::{sleep, Report};

/// One hour.
const HOUR: Duration = Duration::from_secs(3600);
/// The lock's name: a realistic one, for the item size.
const NAME: &str = "orders/nightly-export";
/// A realistic EC2 host name, for the item size (`hostIdentifier` and the
/// queue entry's `host`).
const HOST: &str = "ip-10-0-3-7.eu-west-1.compute.internal";
/// DynamoDB's write and read unit sizes (strongly consistent reads).
const WRITE_UNIT_BYTES: u64 = 1024;
const READ_UNIT_BYTES: u64 = 4096;

/// A setting lynk's cost is counted at.
#[derive(Clone, Debug)]
struct Setting {
    /// The metrics' suffix (empty for the defaults).
    suffix: &'static str,
    /// What it is, for the notes.
    what: &'static str,
    lease: Duration,
    heartbeat_fraction: f64,
    poll_interval: Duration,
    wake_ups: bool,
}

impl Setting {
    fn defaults() -> Setting {
        let d = ClientConfig::default();
        Setting {
            suffix: "",
            what: "lynk defaults: lease 20 s, heartbeat every lease/3, poll 1.5 s (+0-20 % jitter), no wake-ups",
            lease: d.default_lease,
            heartbeat_fraction: d.heartbeat_fraction,
            poll_interval: d.poll_interval,
            wake_ups: false,
        }
    }

    /// The cost-sensitive recommendation of docs/dynamodb.md ("Capacity and cost").
    fn recommended() -> Setting {
        Setting {
            suffix: "_recommended",
            what: "recommended for cost: lease 60 s (heartbeat every 20 s), poll 5 s, wake-ups on",
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            wake_ups: true,
            ..Setting::defaults()
        }
    }

    /// One knob changed from the defaults (the knobs table).
    fn knobs() -> Vec<Setting> {
        let d = Setting::defaults();
        vec![
            Setting {
                suffix: "_lease60",
                what: "lease 60 s (heartbeat every 20 s), otherwise defaults",
                lease: Duration::from_secs(60),
                ..d.clone()
            },
            Setting {
                suffix: "_lease120",
                what: "lease 120 s (heartbeat every 40 s), otherwise defaults",
                lease: Duration::from_secs(120),
                ..d.clone()
            },
            Setting {
                suffix: "_hb_half",
                what: "heartbeat every lease/2 (heartbeat_fraction 0.5), otherwise defaults",
                heartbeat_fraction: 0.5,
                ..d.clone()
            },
            Setting {
                suffix: "_poll1s",
                what: "poll_interval 1 s, otherwise defaults",
                poll_interval: Duration::from_secs(1),
                ..d.clone()
            },
            Setting {
                suffix: "_poll5s",
                what:
                    "poll_interval 5 s (the most a 20 s lease allows: lease/4), otherwise defaults",
                poll_interval: Duration::from_secs(5),
                ..d.clone()
            },
            Setting {
                suffix: "_wake",
                what: "wake-ups on, otherwise defaults",
                wake_ups: true,
                ..d
            },
        ]
    }

    fn config(&self, seed: u64) -> ClientConfig {
        ClientConfig {
            host_identifier: HOST.to_owned(),
            default_lease: self.lease,
            heartbeat_fraction: self.heartbeat_fraction,
            poll_interval: self.poll_interval,
            wake_ups: self
                .wake_ups
                .then(|| WakeUps::new(([127, 0, 0, 1], 0).into()).scope("lynk-cost")),
            // Fixed seeds: the same counts on every run.
            jitter_seed: Some(seed),
            ..ClientConfig::default()
        }
    }
}

/// What one hour cost: the holder's requests after its acquisition, the
/// waiter's from its first attempt, and the record the hour left.
#[derive(Clone, Debug)]
struct Hour {
    held: RequestCounts,
    wait: RequestCounts,
    record: LockRecord,
}

/// A client over its own counted view of `memory`.
fn client(memory: &MemoryBackend, config: ClientConfig) -> (LockClient, CountingBackend) {
    let shared: Arc<dyn LockBackend> = Arc::new(memory.clone());
    let counted = CountingBackend::new(shared);
    let client = LockClient::builder_shared(Arc::new(counted.clone()))
        .config(config)
        .build()
        .expect("client");
    (client, counted)
}

/// One hour of a held lock with another process's client waiting for it, in
/// paused time (call on a runtime with the clock paused).
async fn count_hour(setting: &Setting) -> Hour {
    let memory = MemoryBackend::new();
    let (holder, ch) = client(&memory, setting.config(1));
    let (waiter, cw) = client(&memory, setting.config(2));
    let guard = holder.create_lock(NAME).acquire().await.expect("acquire");
    let h0 = ch.counts();
    let w0 = cw.counts();
    let lock = waiter.create_lock(NAME);
    let waiting = tokio::spawn(async move { lock.acquire().await });
    sleep(HOUR).await;
    let hour = Hour {
        held: ch.counts().since(h0),
        wait: cw.counts().since(w0),
        record: memory.get(NAME).expect("the held record"),
    };
    assert!(!waiting.is_finished(), "the waiter got a held lock");
    guard.release().await.expect("release");
    waiting
        .await
        .expect("join")
        .expect("the waiter's acquire")
        .release()
        .await
        .expect("release");
    holder.shutdown().await;
    waiter.shutdown().await;
    hour
}

/// Runs `f` on a current-thread runtime of its own with the clock paused, on
/// a thread of its own (the caller may be inside another runtime).
fn paused<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("the paused-time thread")
}

/// Bytes of a DynamoDB number: about one per two significant digits, plus one.
fn number_bytes(n: &str) -> u64 {
    let digits = n
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .trim_matches('0')
        .len()
        .max(1) as u64;
    digits.div_ceil(2) + 1
}

/// The size DynamoDB bills for `record` as lynk-dynamo stores it (attribute
/// names plus values, per "Item sizes and formats" in the DynamoDB developer
/// guide: strings their UTF-8 length, numbers about a byte per two
/// significant digits plus one, booleans one byte, lists and maps 3 bytes
/// plus one per element plus the elements). An estimate by those rules, not
/// a figure DynamoDB returned.
fn item_bytes(record: &LockRecord) -> u64 {
    let s = |name: &str, value: &str| (name.len() + value.len()) as u64;
    let n = |name: &str, value: &str| name.len() as u64 + number_bytes(value);
    let expires_at = (crate::util::wall_micros() / 1_000_000
        + lynk_dynamo::DEFAULT_RETENTION.as_secs()
        + record.lease_duration.as_secs()
        + 1)
    .to_string();
    let mut bytes = s(item::LOCK_KEY, &record.key)
        + n(
            item::LEASE_DURATION,
            &item::format_lease(record.lease_duration),
        )
        + s(item::VERSION_NUMBER, record.version.as_str())
        + s(item::HOST_IDENTIFIER, &record.host)
        + n(item::EXPIRES_AT, &expires_at);
    if let Some(t) = record.fencing_token {
        bytes += n(item::FENCING_TOKEN, &t.get().to_string());
    }
    if let Some(p) = &record.payload {
        bytes += (item::PAYLOAD.len() + p.len()) as u64;
    }
    if record.released {
        bytes += item::RELEASED.len() as u64 + 1;
    }
    if let Some(g) = &record.granted_to {
        bytes += s(item::GRANTED_TO, g);
    }
    if let Some(d) = &record.holder_detail {
        bytes += s(item::HOLDER_DETAIL, d);
    }
    if let Some(r) = &record.queue.revision {
        bytes += s(item::QUEUE_REVISION, r.as_str());
    }
    if !record.queue.entries.is_empty() {
        bytes += item::WAIT_QUEUE.len() as u64 + 3;
        bytes += record
            .queue
            .entries
            .iter()
            .map(queue_entry_bytes)
            .sum::<u64>();
    }
    bytes
}

/// One queue entry in the `waitQueue` list: a map of `id`, `host`, `wake`
/// and `pollMs`.
fn queue_entry_bytes(e: &lynk_core::QueueEntry) -> u64 {
    let field = |name: &str, value: &str| (name.len() + value.len()) as u64 + 1;
    let wake = e.wake.as_deref().map_or(0, |w| field("wake", w));
    let poll = e.poll.map_or(0, |p| {
        "pollMs".len() as u64 + number_bytes(&p.as_millis().to_string()) + 1
    });
    1 + 3 + field("id", &e.id) + field("host", &e.host) + wake + poll
}

/// Units of one request on an item of `bytes` bytes.
fn units(bytes: u64, unit: u64) -> u64 {
    bytes.div_ceil(unit).max(1)
}

fn writes(c: &RequestCounts) -> u64 {
    c.writes + c.deletes + c.queue_writes
}

fn kinds(c: &RequestCounts) -> String {
    format!(
        "reads {}, writes {}, queue writes {}, deletes {}",
        c.reads, c.writes, c.queue_writes, c.deletes
    )
}

fn report_hour(setting: &Setting, hour: &Hour, report: &Report) {
    let bytes = item_bytes(&hour.record);
    let (wru, rru) = (
        units(bytes, WRITE_UNIT_BYTES),
        units(bytes, READ_UNIT_BYTES),
    );
    let sfx = setting.suffix;
    let note = |who: &str, c: &RequestCounts| {
        format!(
            "counted over 1 h of virtual time, {who}; {}; {} ({}); item ~{bytes} B: {wru} WRU per write, {rru} RRU per read",
            setting.what,
            kinds(c),
            if who == "held" { "heartbeats; the acquisition not counted" } else { "from its first attempt" },
        )
    };
    for (who, c) in [("held", &hour.held), ("wait", &hour.wait)] {
        let n = note(if who == "held" { "held" } else { "waiting" }, c);
        let (r, w) = (c.reads as f64, writes(c) as f64);
        let m = |what: &str| format!("cost_{who}_{what}_per_h{sfx}");
        report.figure("lynk", "memory", &m("reads"), r, "req/h", &n);
        report.figure("lynk", "memory", &m("writes"), w, "req/h", &n);
        report.figure("lynk", "memory", &m("rru"), r * rru as f64, "RRU/h", &n);
        report.figure("lynk", "memory", &m("wru"), w * wru as f64, "WRU/h", &n);
    }
    if sfx.is_empty() {
        let entry = hour
            .record
            .queue
            .entries
            .first()
            .map_or(0, queue_entry_bytes);
        let note = format!(
            "estimated by DynamoDB's sizing rules from the held record after 1 h (lock name {} B, \
             host {} B, one queue entry of {entry} B); a write costs 2 WRU past 1024 B",
            NAME.len(),
            HOST.len()
        );
        report.figure(
            "lynk",
            "memory",
            "cost_item_bytes",
            bytes as f64,
            "B",
            &note,
        );
        let note = "each process queued for the lock adds this to every write of the record, heartbeats included";
        report.figure(
            "lynk",
            "memory",
            "cost_item_bytes_per_queue_entry",
            entry as f64,
            "B",
            note,
        );
    }
}

/// Another client's cost, computed from its source and defaults: requests
/// per hour held and waiting, each costing one unit (their items are well
/// under 1 KB without user data).
struct Peer {
    imp: &'static str,
    held_writes: f64,
    wait_reads: f64,
    wait_writes: f64,
    note: &'static str,
}

const PEERS: &[Peer] = &[
    Peer {
        imp: "python-lynk",
        // lynk 0.3.1: lock.py starts a LockRefresher every
        // lease × _REFRESH_PERIOD_RATIO (3/4) = 15 s at the default
        // acquire(lease_duration=20): one conditional UpdateItem each.
        held_writes: 3600.0 / 15.0,
        // techniques.py: a waiter's attempt is a conditional PutItem that
        // fails (1 WRU) and a consistent GetItem of the holder's lease
        // (1 RRU), then it sleeps that lease (20 s).
        wait_reads: 3600.0 / 20.0,
        wait_writes: 3600.0 / 20.0,
        note: "computed from its defaults (lynk 0.3.1 source: refresh every 0.75 x lease = 15 s; a waiter \
               sends a conditional PutItem + a consistent GetItem per lease of 20 s; acquire gives up after \
               max_wait_seconds=300, counted as if the caller called it again)",
    },
    Peer {
        imp: "java-lock-client",
        // AmazonDynamoDBLockClientOptions: leaseDuration 20 s,
        // heartbeatPeriod 5 s: one conditional UpdateItem per held lock.
        held_writes: 3600.0 / 5.0,
        // AmazonDynamoDBLockClient.acquireLock: a consistent GetItem, then
        // Thread.sleep(refreshPeriod = 1 s), while the lock is held.
        wait_reads: 3600.0,
        wait_writes: 0.0,
        note: "computed from its documented defaults (awslabs/amazon-dynamodb-lock-client: heartbeat UpdateItem \
               every 5 s; acquireLock reads the lock with a consistent GetItem every refreshPeriod = 1 s; \
               it writes only when it finds the lock free or expired)",
    },
    Peer {
        imp: "dynamodb-lease",
        // builder.rs: ttl 60 s, extend_period ttl/2 = 30 s: one
        // conditional UpdateItem (extend_lease) each.
        held_writes: 3600.0 / 30.0,
        // client.rs acquire: put_lease (a conditional PutItem that fails,
        // 1 WRU) then sleep(acquire_cooldown = 1 s), in a loop.
        wait_reads: 0.0,
        wait_writes: 3600.0,
        note: "computed from its defaults (dynamodb-lease 0.22.1 source: extend every ttl/2 = 30 s; a waiter \
               retries a conditional PutItem every 1 s, and a failed conditional write costs a WRU; \
               the bench counted 10 PutItem in 10 s at the server)",
    },
];

fn report_peers(report: &Report) {
    for p in PEERS {
        let f = |m: &str, v: f64, unit: &str| report.figure(p.imp, "computed", m, v, unit, p.note);
        f("cost_held_reads_per_h", 0.0, "req/h");
        f("cost_held_writes_per_h", p.held_writes, "req/h");
        f("cost_held_rru_per_h", 0.0, "RRU/h");
        f("cost_held_wru_per_h", p.held_writes, "WRU/h");
        f("cost_wait_reads_per_h", p.wait_reads, "req/h");
        f("cost_wait_writes_per_h", p.wait_writes, "req/h");
        f("cost_wait_rru_per_h", p.wait_reads, "RRU/h");
        f("cost_wait_wru_per_h", p.wait_writes, "WRU/h");
    }
}

/// Every cost figure: lynk's counted at the defaults, the recommendation
/// and the knobs; the other clients' computed.
pub fn run(report: &Report) {
    let mut settings = vec![Setting::defaults(), Setting::recommended()];
    settings.extend(Setting::knobs());
    for setting in settings {
        let s = setting.clone();
        let hour = paused(move || Box::pin(async move { count_hour(&s).await }));
        report_hour(&setting, &hour, report);
    }
    report_peers(report);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(setting: Setting) -> Hour {
        paused(move || Box::pin(async move { count_hour(&setting).await }))
    }

    /// The held lock's writes per hour at the default 20 s lease are what a
    /// heartbeat every third of the lease implies (docs/dynamodb.md: 9 per
    /// minute), within one; a held lock reads nothing. A change to the
    /// heartbeat period (or to what the harness counts) fails here.
    #[test]
    fn held_writes_per_hour_at_the_default_lease_match_the_heartbeat_period() {
        // A heartbeat every third of the 20 s lease: 3600 / (20 / 3) = 540.
        let (lease_s, heartbeats_per_lease) = (20, 3);
        let expected: u64 = 3600 * heartbeats_per_lease / lease_s;
        let h = hour(Setting::defaults());
        assert_eq!(h.held.reads, 0, "{:?}", h.held);
        assert_eq!(h.held.deletes + h.held.queue_writes, 0, "{:?}", h.held);
        let got = writes(&h.held);
        assert!(
            got.abs_diff(expected) <= 1,
            "held writes per hour {got}, expected {expected} (one per {lease_s} s / {heartbeats_per_lease})"
        );
    }

    /// The waiter's reads per hour at the defaults lie between one per poll
    /// interval and one per poll interval plus its largest jitter (20 %),
    /// and it writes only its first attempt and its queue entry.
    #[test]
    fn waiting_reads_per_hour_at_the_defaults_match_the_poll_interval() {
        let h = hour(Setting::defaults());
        let reads = h.wait.reads as f64;
        let (fewest, most) = (3600.0 / (1.5 * 1.2), 3600.0 / 1.5);
        assert!(
            (fewest..=most).contains(&reads),
            "waiting reads per hour {reads}, expected {fewest}..{most}: {:?}",
            h.wait
        );
        assert_eq!((h.wait.writes, h.wait.queue_writes), (1, 1), "{:?}", h.wait);
    }

    /// The recommended settings heartbeat every 20 s.
    #[test]
    fn recommended_heartbeats_every_20_s() {
        let h = hour(Setting::recommended());
        let got = writes(&h.held) as f64;
        assert!((got - 180.0).abs() <= 1.0, "{:?}", h.held);
    }

    /// One lock item costs one unit per request: well under 1 KB with a
    /// queue entry.
    #[test]
    fn a_held_record_with_one_waiter_is_one_unit() {
        let h = hour(Setting::defaults());
        let bytes = item_bytes(&h.record);
        assert_eq!(h.record.queue.entries.len(), 1);
        assert!((150..1024).contains(&bytes), "{bytes} B");
    }
}
