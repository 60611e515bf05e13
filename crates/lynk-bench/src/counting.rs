//! Request counters: a wrapper around any `LockBackend` (counts every call the
//! engine makes), and an SDK interceptor (counts every HTTP attempt,
//! retries included) for clients on aws-sdk-dynamodb.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use lynk_core::{
    BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest,
};

/// A shared request count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts every backend call of one client.
#[derive(Debug)]
pub struct CountingBackend {
    inner: Arc<dyn LockBackend>,
    counter: Counter,
}

impl CountingBackend {
    pub fn new(inner: Arc<dyn LockBackend>) -> (Self, Counter) {
        let counter = Counter::default();
        (
            CountingBackend {
                inner,
                counter: counter.clone(),
            },
            counter,
        )
    }
}

#[async_trait]
impl LockBackend for CountingBackend {
    async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
        self.counter.inc();
        self.inner.read(key).await
    }

    async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
        self.counter.inc();
        self.inner.write(request).await
    }

    async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
        self.counter.inc();
        self.inner.delete(key, expected).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// Counts every HTTP attempt an SDK client sends.
#[derive(Clone, Debug, Default)]
pub struct SdkCounter(pub Counter);

impl Intercept for SdkCounter {
    fn name(&self) -> &'static str {
        "lynk-bench request counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.inc();
        Ok(())
    }
}
