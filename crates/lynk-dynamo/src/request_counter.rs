//! Counting the requests an SDK client sends, per DynamoDB operation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// An SDK interceptor that counts every HTTP attempt a DynamoDB client sends
/// (retries included), per operation (`GetItem`, `UpdateItem`, ...): what
/// DynamoDB bills, as seen from the client. Clones share the counts.
///
/// ```no_run
/// # async fn f() -> Result<(), lynk_dynamo::Error> {
/// let counter = lynk_dynamo::RequestCounter::default();
/// let config = lynk_dynamo::AwsOptions::new().load_config().await?;
/// let conf = aws_sdk_dynamodb::config::Builder::from(&config)
///     .interceptor(counter.clone())
///     .build();
/// let client = aws_sdk_dynamodb::Client::from_conf(conf);
/// // ... use `client`, e.g. with DynamoBackend::from_client ...
/// println!("{} requests: {:?}", counter.total(), counter.snapshot());
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl RequestCounter {
    fn counts(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests so far, per operation.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts().clone()
    }

    /// Requests so far, all operations.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    /// Starts counting from zero again.
    pub fn reset(&self) {
        self.counts().clear();
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "lynk_dynamo::RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        *self.counts().entry(operation).or_default() += 1;
        Ok(())
    }
}
