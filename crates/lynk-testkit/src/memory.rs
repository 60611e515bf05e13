//! An in-memory lock backend with DynamoDB's conditional-write semantics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;
use lynk_core::{
    BackendError, BackendErrorKind, Capabilities, LockBackend, LockRecord, QueueRequest, Version,
    WriteError, WriteRequest, MAX_NAME_BYTES,
};

use crate::counting::{Counters, RequestCounts};
use crate::Op;

#[derive(Debug, Default)]
struct Table {
    records: Mutex<HashMap<String, LockRecord>>,
    counters: Counters,
}

/// A lock table in memory: one compare-and-set per call under a mutex, so
/// every operation is atomic and linearizable, and a failed condition returns
/// the stored record as DynamoDB's `ALL_OLD` does.
///
/// Clones share the table. [`MemoryBackend::shared`] gives the process-wide
/// table of a name, like a DynamoDB table name.
///
/// ```
/// use lynk_testkit::MemoryBackend;
/// use lynk_core::LockClient;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lynk_core::LockError> {
/// let backend = MemoryBackend::new();
/// let client = LockClient::new(backend.clone())?;
/// let guard = client.create_lock("my lock").acquire().await?;
/// assert_eq!(backend.counts().writes, 1); // one request per uncontended acquire
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    table: Arc<Table>,
}

impl MemoryBackend {
    /// A new, empty, private table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide table called `name` (created empty on first use).
    pub fn shared(name: &str) -> Self {
        static TABLES: OnceLock<Mutex<HashMap<String, MemoryBackend>>> = OnceLock::new();
        let tables = TABLES.get_or_init(Default::default);
        let mut tables = tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.entry(name.to_owned()).or_default().clone()
    }

    fn records(&self) -> MutexGuard<'_, HashMap<String, LockRecord>> {
        self.table.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The requests served so far.
    pub fn counts(&self) -> RequestCounts {
        self.table.counters.get()
    }

    /// The stored record of `key`, without counting a request.
    pub fn get(&self, key: &str) -> Option<LockRecord> {
        self.records().get(key).cloned()
    }

    /// Every stored record, sorted by key.
    pub fn snapshot(&self) -> Vec<LockRecord> {
        let mut all: Vec<LockRecord> = self.records().values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Stores `record` unconditionally, as another client (say the original
    /// Python lynk) or an operator might.
    pub fn put_raw(&self, record: LockRecord) {
        self.records().insert(record.key.clone(), record);
    }

    /// Removes `key` unconditionally, as a TTL deletion might.
    pub fn remove_raw(&self, key: &str) -> Option<LockRecord> {
        self.records().remove(key)
    }
}

fn check_key(key: &str) -> Result<(), BackendError> {
    if key.is_empty() || key.len() > MAX_NAME_BYTES {
        return Err(BackendError::new(
            BackendErrorKind::InvalidRequest,
            format!(
                "key of {} bytes; keys must be 1 to {MAX_NAME_BYTES} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

#[async_trait]
impl LockBackend for MemoryBackend {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.table.counters.count(Op::Read);
        check_key(key)?;
        Ok(self.get(key))
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.table.counters.count(Op::Write);
        check_key(&request.key)?;
        let mut records = self.records();
        let current = records.get(&request.key);
        if !request.condition.holds_for(current) {
            return Err(WriteError::ConditionFailed {
                current: current.cloned(),
            });
        }
        let record = request.record_over(current);
        records.insert(request.key.clone(), record.clone());
        Ok(record)
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), WriteError> {
        self.table.counters.count(Op::Write);
        for r in &requests {
            check_key(&r.key)?;
        }
        let mut records = self.records();
        for r in &requests {
            let current = records.get(&r.key);
            if !r.condition.holds_for(current) {
                return Err(WriteError::ConditionFailed {
                    current: current.cloned(),
                });
            }
        }
        for r in &requests {
            let record = r.record_over(records.get(&r.key));
            records.insert(r.key.clone(), record);
        }
        Ok(())
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.table.counters.count(Op::Delete);
        check_key(key)?;
        let mut records = self.records();
        match records.get(key) {
            Some(r) if &r.version == expected => {
                records.remove(key);
                Ok(())
            }
            current => Err(WriteError::ConditionFailed {
                current: current.cloned(),
            }),
        }
    }

    async fn write_queue(&self, request: QueueRequest) -> Result<LockRecord, WriteError> {
        self.table.counters.count(Op::WriteQueue);
        check_key(&request.key)?;
        let mut records = self.records();
        let current = records.get(&request.key);
        let Some(current) = current.filter(|_| request.holds_for(current)) else {
            return Err(WriteError::ConditionFailed {
                current: current.cloned(),
            });
        };
        let record = request.record_over(current);
        records.insert(request.key.clone(), record.clone());
        Ok(record)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::minimal()
            .with_returns_current_on_conflict(true)
            .with_transactions(true)
            .with_wait_queue(true)
    }
}
