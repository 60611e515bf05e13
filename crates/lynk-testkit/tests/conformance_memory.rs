//! The conformance suite on the in-memory backend (and through the fault
//! wrapper with no faults, which must be transparent).

use std::sync::Arc;

use lynk_testkit::{conformance, FaultyBackend, MemoryBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_passes_conformance() {
    let report = conformance::run_all(Arc::new(MemoryBackend::new())).await;
    println!("{report}");
    report.assert_ok();
    assert_eq!(
        report.passed.len(),
        conformance::case_names().len(),
        "no case may be skipped on the reference backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_wrapper_without_faults_passes_conformance() {
    let report = conformance::run_all(Arc::new(FaultyBackend::new(MemoryBackend::new()))).await;
    println!("{report}");
    report.assert_ok();
}

/// The suite must be able to fail: a backend that ignores conditions is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_detects_a_broken_backend() {
    use async_trait::async_trait;
    use lynk_core::{
        BackendError, Capabilities, LockBackend, LockRecord, Version, WriteError, WriteRequest,
    };

    #[derive(Debug, Default)]
    struct IgnoresConditions(MemoryBackend);

    #[async_trait]
    impl LockBackend for IgnoresConditions {
        async fn read(&self, key: &str) -> Result<Option<LockRecord>, BackendError> {
            self.0.read(key).await
        }
        async fn write(&self, request: WriteRequest) -> Result<LockRecord, WriteError> {
            let record = request.record_over(self.0.get(&request.key).as_ref());
            self.0.put_raw(record.clone());
            Ok(record)
        }
        async fn delete(&self, key: &str, expected: &Version) -> Result<(), WriteError> {
            self.0.delete(key, expected).await
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
    }

    let report = conformance::run_selected(Arc::new(IgnoresConditions::default()), |name| {
        name != "race_counter_is_exact" && name != "fencing_tokens_strictly_increase"
    })
    .await;
    println!("{report}");
    assert!(
        report
            .failed
            .iter()
            .any(|(n, _)| *n == "absent_fails_when_present"),
        "{report}"
    );
    assert!(
        report
            .failed
            .iter()
            .any(|(n, _)| *n == "concurrent_cas_has_one_winner"),
        "{report}"
    );
}
