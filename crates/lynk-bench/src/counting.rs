//! Request counts: a client's backend calls (through lynk-testkit's
//! `CountingBackend`) or, for clients on aws-sdk-dynamodb, every HTTP
//! attempt (an SDK interceptor; retries included).

use lynk_dynamo::RequestCounter;
use lynk_testkit::CountingBackend;

/// The requests one client has made so far.
#[derive(Clone, Debug)]
pub enum Counter {
    /// Every backend call of a lynk client (the in-memory backend).
    Backend(CountingBackend),
    /// Every HTTP attempt of an SDK client (the emulators).
    Sdk(RequestCounter),
}

impl Counter {
    pub fn get(&self) -> u64 {
        match self {
            Counter::Backend(b) => b.counts().total(),
            Counter::Sdk(s) => s.total(),
        }
    }
}
