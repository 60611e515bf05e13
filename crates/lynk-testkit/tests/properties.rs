//! Property tests: the in-memory backend against an independent model of
//! DynamoDB's conditional writes, and the engine's invariants over random
//! operation sequences. `PROPTEST_CASES` raises the number of cases (default
//! 64 per property in CI).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use lynk_core::{
    BackendErrorKind, Clock, Condition, LockBackend, LockClient, LockGuard, LockRecord,
    TokenUpdate, Version, WriteError, WriteRequest,
};
use lynk_testkit::{Fault, FaultyBackend, MemoryBackend, Op, TestClock};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

// ---------------------------------------------------------------------------
// The backend against a model.

/// The model's record: plain fields, compared with the backend's.
#[derive(Clone, Debug, PartialEq)]
struct ModelRecord {
    version: usize,
    token: Option<u64>,
    released: bool,
    payload: Option<u8>,
}

#[derive(Clone, Debug)]
enum BackendOp {
    Write {
        key: usize,
        /// 0 absent, 1 vacant, 2 version-is
        condition: u8,
        /// index into the versions written so far
        version_ref: usize,
        next_token: bool,
        initial: u64,
        released: bool,
        payload: Option<u8>,
    },
    Delete {
        key: usize,
        version_ref: usize,
    },
    Read {
        key: usize,
    },
}

fn backend_op() -> impl Strategy<Value = BackendOp> {
    prop_oneof![
        4 => (0..3usize, 0..3u8, 0..32usize, any::<bool>(), 1..1_000u64, any::<bool>(), proptest::option::of(0..4u8)).prop_map(
            |(key, condition, version_ref, next_token, initial, released, payload)| BackendOp::Write {
                key, condition, version_ref, next_token, initial, released, payload
            }
        ),
        1 => (0..3usize, 0..32usize).prop_map(|(key, version_ref)| BackendOp::Delete { key, version_ref }),
        1 => (0..3usize).prop_map(|key| BackendOp::Read { key }),
    ]
}

fn to_model(r: &LockRecord, versions: &[Version]) -> ModelRecord {
    ModelRecord {
        version: versions
            .iter()
            .position(|v| *v == r.version)
            .expect("a version we wrote"),
        token: r.fencing_token.map(|t| t.get()),
        released: r.released,
        payload: r.payload.as_ref().map(|p| p[0]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn memory_backend_matches_the_model(ops in proptest::collection::vec(backend_op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let backend = MemoryBackend::new();
            let mut model: HashMap<usize, ModelRecord> = HashMap::new();
            let mut versions: Vec<Version> = vec![Version::random()];
            for op in ops {
                match op {
                    BackendOp::Write { key, condition, version_ref, next_token, initial, released, payload } => {
                        let expected = versions[version_ref % versions.len()].clone();
                        let expected_index = versions.iter().position(|v| *v == expected).unwrap();
                        let new = Version::random();
                        versions.push(new.clone());
                        let request = WriteRequest {
                            key: format!("k{key}"),
                            condition: match condition {
                                0 => Condition::Absent,
                                1 => Condition::Vacant,
                                _ => Condition::VersionIs(expected),
                            },
                            version: new,
                            lease_duration: Duration::from_secs(1),
                            host: "h".into(),
                            token: if next_token { TokenUpdate::Next { initial } } else { TokenUpdate::Keep },
                            payload: payload.map(|p| Bytes::from(vec![p])),
                            released,
                            queue: Default::default(),
                            granted_to: None,
                            holder_detail: None,
                        };
                        // The model, written independently of the backend's code.
                        let current = model.get(&key).cloned();
                        let holds = match condition {
                            0 => current.is_none(),
                            1 => current.as_ref().is_none_or(|c| c.released),
                            _ => current.as_ref().is_some_and(|c| c.version == expected_index),
                        };
                        let result = backend.write(request).await;
                        if holds {
                            let token = if next_token {
                                Some(current.as_ref().and_then(|c| c.token).map_or(initial, |t| t + 1))
                            } else {
                                current.as_ref().and_then(|c| c.token)
                            };
                            let rec = ModelRecord { version: versions.len() - 1, token, released, payload };
                            let got = result.expect("condition held, write must apply");
                            prop_assert_eq!(to_model(&got, &versions), rec.clone());
                            model.insert(key, rec);
                        } else {
                            match result {
                                Err(WriteError::ConditionFailed { current: got }) => {
                                    prop_assert_eq!(got.map(|r| to_model(&r, &versions)), current);
                                }
                                other => prop_assert!(false, "expected a failed condition, got {:?}", other),
                            }
                        }
                    }
                    BackendOp::Delete { key, version_ref } => {
                        let index = version_ref % versions.len();
                        let result = backend.delete(&format!("k{key}"), &versions[index]).await;
                        let matches = model.get(&key).is_some_and(|c| c.version == index);
                        prop_assert_eq!(result.is_ok(), matches);
                        if matches {
                            model.remove(&key);
                        }
                    }
                    BackendOp::Read { key } => {
                        let got = backend.read(&format!("k{key}")).await.unwrap();
                        prop_assert_eq!(got.map(|r| to_model(&r, &versions)), model.get(&key).cloned());
                    }
                }
            }
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------------
// The engine's invariants.

#[derive(Clone, Debug)]
enum EngineOp {
    TryAcquire {
        client: usize,
        lock: usize,
    },
    AcquireFor {
        client: usize,
        lock: usize,
        millis: u64,
    },
    Release {
        guard: usize,
    },
    Drop {
        guard: usize,
    },
    Advance {
        millis: u64,
    },
    /// The client's store writes fail (partition) or recover.
    FailWrites {
        client: usize,
        on: bool,
    },
    /// An operator overwrites a lock's record.
    Steal {
        lock: usize,
    },
}

fn engine_op() -> impl Strategy<Value = EngineOp> {
    prop_oneof![
        3 => (0..3usize, 0..2usize).prop_map(|(client, lock)| EngineOp::TryAcquire { client, lock }),
        3 => (0..3usize, 0..2usize, 0..30_000u64).prop_map(|(client, lock, millis)| EngineOp::AcquireFor { client, lock, millis }),
        2 => (0..8usize).prop_map(|guard| EngineOp::Release { guard }),
        1 => (0..8usize).prop_map(|guard| EngineOp::Drop { guard }),
        3 => (0..15_000u64).prop_map(|millis| EngineOp::Advance { millis }),
        1 => (0..3usize, any::<bool>()).prop_map(|(client, on)| EngineOp::FailWrites { client, on }),
        1 => (0..2usize).prop_map(|lock| EngineOp::Steal { lock }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn engine_keeps_its_invariants(ops in proptest::collection::vec(engine_op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let store = MemoryBackend::new();
            let clock = TestClock::new();
            let faulty: Vec<FaultyBackend<MemoryBackend>> = (0..3).map(|_| FaultyBackend::new(store.clone())).collect();
            let clients: Vec<LockClient> = faulty.iter().enumerate().map(|(i, f)| {
                LockClient::builder(f.clone())
                    .clock(clock.clone())
                    .host_identifier(format!("c{i}"))
                    .default_lease(Duration::from_secs(10))
                    .jitter_seed(i as u64)
                    .build()
                    .unwrap()
            }).collect();
            let mut guards: Vec<(usize, LockGuard)> = Vec::new();
            let mut last_token: HashMap<usize, u64> = HashMap::new();
            for op in ops {
                let mut granted = None;
                match op {
                    EngineOp::TryAcquire { client, lock } => {
                        if let Ok(Some(g)) = clients[client].create_lock(format!("l{lock}")).try_acquire().await {
                            granted = Some((lock, g));
                        }
                    }
                    EngineOp::AcquireFor { client, lock, millis } => {
                        if let Ok(g) = clients[client].create_lock(format!("l{lock}")).acquire_timeout(Duration::from_millis(millis)).await {
                            granted = Some((lock, g));
                        }
                    }
                    EngineOp::Release { guard } => {
                        if guard < guards.len() {
                            let (_, g) = guards.remove(guard);
                            let _ = g.release().await;
                        }
                    }
                    EngineOp::Drop { guard } => {
                        if guard < guards.len() {
                            drop(guards.remove(guard));
                        }
                    }
                    EngineOp::Advance { millis } => clock.advance(Duration::from_millis(millis)).await,
                    EngineOp::FailWrites { client, on } => {
                        faulty[client].clear();
                        if on {
                            faulty[client].inject(Some(Op::Write), None, Fault::FailBefore(BackendErrorKind::Unavailable), None);
                        }
                    }
                    EngineOp::Steal { lock } => {
                        if let Some(mut r) = store.get(&format!("l{lock}")) {
                            r.version = Version::random();
                            r.host = "operator".into();
                            r.released = false;
                            store.put_raw(r);
                        }
                    }
                }
                if let Some((lock, g)) = granted {
                    // Tokens strictly increase per lock, in grant order.
                    let t = g.fencing_token().get();
                    if let Some(prev) = last_token.insert(lock, t) {
                        prop_assert!(t > prev, "token {} after {} on lock {}", t, prev, lock);
                    }
                    guards.push((lock, g));
                }
                // At most one holder per lock believes it holds it.
                let now = clock.now();
                for lock in 0..2 {
                    let believers = guards.iter().filter(|(l, g)| *l == lock && !g.is_lost() && now < g.safe_deadline()).count();
                    prop_assert!(believers <= 1, "{} holders of lock {} at once", believers, lock);
                }
            }
            for c in &clients {
                c.shutdown().await;
            }
            Ok(())
        })?;
    }
}
