//! Request counts: a client's backend calls (through lynk-testkit's
//! `CountingBackend`) or, for clients on aws-sdk-dynamodb, every HTTP
//! attempt (an SDK interceptor; retries included).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use lynk_testkit::CountingBackend;

/// The requests one client has made so far.
#[derive(Clone, Debug)]
pub enum Counter {
    /// Every backend call of a lynk client (the in-memory backend).
    Backend(CountingBackend),
    /// Every HTTP attempt of an SDK client (the emulators).
    Sdk(SdkCounter),
}

impl Counter {
    pub fn get(&self) -> u64 {
        match self {
            Counter::Backend(b) => b.counts().total(),
            Counter::Sdk(s) => s.0.load(Ordering::Relaxed),
        }
    }
}

/// Counts every HTTP attempt an SDK client sends.
#[derive(Clone, Debug, Default)]
pub struct SdkCounter(Arc<AtomicU64>);

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
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
