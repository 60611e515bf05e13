//! A custom backend: lynk on a store that is not DynamoDB.
//!
//! The store here is a key-value store with compare-and-swap on a revision
//! number, the primitive etcd, Consul, ZooKeeper and most SQL tables offer
//! (`UPDATE ... WHERE revision = ?`). The adapter maps lynk's three
//! conditions onto it; the engine above it (waiting, heartbeats, takeover,
//! fencing, local queuing) comes for free. Then the conformance suite checks
//! the adapter keeps `LockBackend`'s contract.
//!
//! ```text
//! cargo run -p lynk-examples --example custom_backend
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lynk_core::{
    BackendError, BackendErrorKind, Capabilities, FencingToken, LockBackend, LockClient,
    LockRecord, Version, WriteError, WriteRequest,
};

/// The "other store": values with a revision that every write bumps.
#[derive(Debug, Default)]
struct KvStore {
    data: Mutex<HashMap<String, (u64, String)>>,
}

impl KvStore {
    fn get(&self, key: &str) -> Option<(u64, String)> {
        self.data.lock().unwrap().get(key).cloned()
    }

    /// Writes `value` if the current revision is `expected` (`None`: absent).
    fn compare_and_swap(&self, key: &str, expected: Option<u64>, value: String) -> bool {
        let mut data = self.data.lock().unwrap();
        let current = data.get(key).map(|(rev, _)| *rev);
        if current != expected {
            return false;
        }
        data.insert(key.to_owned(), (current.unwrap_or(0) + 1, value));
        true
    }

    fn delete_if(&self, key: &str, expected: u64) -> bool {
        let mut data = self.data.lock().unwrap();
        if data.get(key).map(|(rev, _)| *rev) != Some(expected) {
            return false;
        }
        data.remove(key);
        true
    }
}

/// A record as one line of text:
/// `version|lease_ms|host|token|released|payload-hex|holder-detail`.
fn encode(r: &LockRecord) -> String {
    let token = r
        .fencing_token
        .map_or(String::new(), |t| t.get().to_string());
    let payload = r.payload.as_ref().map_or(String::from("-"), |p| {
        p.iter().map(|b| format!("{b:02x}")).collect()
    });
    let detail = r
        .holder_detail
        .as_ref()
        .map_or(String::from("-"), |d| d.replace('|', "/"));
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        r.version,
        r.lease_duration.as_millis(),
        r.host.replace('|', "/"),
        token,
        r.released,
        payload,
        detail
    )
}

fn decode(key: &str, text: &str) -> Result<LockRecord, BackendError> {
    let bad = || {
        BackendError::new(
            BackendErrorKind::Other,
            format!("record of {key:?} is corrupt: {text:?}"),
        )
    };
    let f: Vec<&str> = text.split('|').collect();
    if f.len() != 7 {
        return Err(bad());
    }
    let payload = if f[5] == "-" {
        None
    } else {
        let bytes: Result<Vec<u8>, _> = (0..f[5].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&f[5][i..i + 2], 16))
            .collect();
        Some(Bytes::from(bytes.map_err(|_| bad())?))
    };
    Ok(LockRecord {
        key: key.to_owned(),
        version: Version::from_string(f[0]),
        lease_duration: Duration::from_millis(f[1].parse().map_err(|_| bad())?),
        host: f[2].to_owned(),
        fencing_token: if f[3].is_empty() {
            None
        } else {
            Some(FencingToken::new(f[3].parse().map_err(|_| bad())?))
        },
        released: f[4].parse().map_err(|_| bad())?,
        queue: Default::default(),
        granted_to: None,
        holder_detail: (f[6] != "-").then(|| f[6].to_owned()),
        payload,
    })
}

/// The adapter: `LockBackend` over the compare-and-swap store.
#[derive(Debug, Default)]
struct KvBackend {
    store: KvStore,
}

#[async_trait]
impl LockBackend for KvBackend {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.store
            .get(key)
            .map(|(_, v)| decode(key, &v))
            .transpose()
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        // Read, check lynk's condition, then compare-and-swap on the revision
        // we read: if anyone wrote in between, read again. The swap makes the
        // check and the write one atomic step, as the contract demands.
        loop {
            let current = self.store.get(&request.key);
            let record = current
                .as_ref()
                .map(|(_, v)| decode(&request.key, v))
                .transpose()?;
            if !request.condition.holds_for(record.as_ref()) {
                return Err(WriteError::ConditionFailed { current: record });
            }
            let new = request.record_over(record.as_ref());
            if self
                .store
                .compare_and_swap(&request.key, current.map(|(rev, _)| rev), encode(&new))
            {
                return Ok(new);
            }
        }
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        loop {
            let Some((rev, value)) = self.store.get(key) else {
                return Err(WriteError::ConditionFailed { current: None });
            };
            let record = decode(key, &value)?;
            if &record.version != expected {
                return Err(WriteError::ConditionFailed {
                    current: Some(record),
                });
            }
            if self.store.delete_if(key, rev) {
                return Ok(());
            }
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::minimal().with_returns_current_on_conflict(true)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The adapter keeps the contract.
    let report = lynk_testkit::conformance::run_all(Arc::new(KvBackend::default())).await;
    println!("{report}");
    report.assert_ok();

    // 2. And the whole engine works on it.
    let client = LockClient::new(KvBackend::default())?;
    let guard = client
        .create_lock("nightly-report")
        .with_payload("worker-7")
        .acquire()
        .await?;
    println!(
        "holding {:?} with fencing token {}",
        guard.name(),
        guard.fencing_token()
    );
    guard.release().await?;
    Ok(())
}
