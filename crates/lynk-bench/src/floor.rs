//! The floor: the bare AWS SDK sending exactly the requests a lock client
//! sends, in the same process, on the same server, in the same run. What a
//! client costs beyond its floor is what the client adds.
//!
//! * lynk's floor replays the `UpdateItem`s lynk sends for an uncontended
//!   acquire and release: they are **captured** from lynk itself (an SDK
//!   interceptor clones the operation input before serialization), so the
//!   floor's expressions, names, values and `ReturnValues` are lynk's own; only
//!   the fresh version (`:version`) and the expected version (`:expected`) are
//!   filled in per request, as lynk must. The read floor replays lynk's
//!   consistent `GetItem`.
//! * dynamodb-lease's floor sends its conditional `PutItem` and `DeleteItem`
//!   with the expressions of its source (0.22), on both emulators; its
//!   client itself runs on moto only (it checks for TTL, which dynalite
//!   lacks).
//!
//! `LYNK_BENCH_SHOW_CAPTURE=1` prints the captured requests to stderr.
//! `--only NAME --cycles N` runs one implementation alone, for profiling
//! (`scripts/bench/instructions.py` counts its instructions under
//! callgrind).
//!
//! Each client gets its own SDK client (own connection pool) from one
//! configuration, none with a counting interceptor. The implementations run
//! in interleaved rounds (lynk, its floor, dynamodb-lease, its floor, ...),
//! so a busy machine slows all of them alike; CPU is this process's user +
//! system time (getrusage) over each batch, wall time the batch's elapsed
//! time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use lynk_core::{LockBackend, LockClient};
use lynk_dynamo::DynamoBackend;

use crate::env::{
    create_peer_table, create_peer_table_without_ttl, sdk_config, unique, Env, Server,
};
use crate::util::{cpu_time, now, Report};

/// Clones every `UpdateItem` and `GetItem` input a client sends.
#[derive(Clone, Debug, Default)]
struct Capture {
    updates: Arc<Mutex<Vec<UpdateItemInput>>>,
    gets: Arc<Mutex<Vec<GetItemInput>>>,
}

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "lynk_bench::Capture"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(u) = context.input().downcast_ref::<UpdateItemInput>() {
            self.updates.lock().expect("capture").push(u.clone());
        } else if let Some(g) = context.input().downcast_ref::<GetItemInput>() {
            self.gets.lock().expect("capture").push(g.clone());
        }
        Ok(())
    }
}

/// The requests lynk sends for one uncontended cycle and one read, as
/// captured: the acquire's and the release's `UpdateItem` and a `GetItem`.
struct LynkRequests {
    acquire: UpdateItemInput,
    release: UpdateItemInput,
    read: GetItemInput,
}

/// A lynk client over `sdk`, with lynk's defaults (as `lynk-bench suite`).
async fn lynk_client(sdk: aws_sdk_dynamodb::Client, table: &str, server: Server) -> LockClient {
    let dynalite = server == Server::Dynalite;
    let backend = DynamoBackend::builder(table)
        .client(sdk)
        .returns_current_on_conflict(!dynalite)
        .transactions(!dynalite)
        .build()
        .await
        .expect("backend");
    LockClient::builder_shared(Arc::new(backend))
        .host_identifier("bench")
        .build()
        .expect("client")
}

/// Captures what lynk sends for an uncontended acquire + release and a read.
async fn capture(config: &aws_config::SdkConfig, table: &str, server: Server) -> LynkRequests {
    let cap = Capture::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(config)
        .interceptor(cap.clone())
        .build();
    let sdk = aws_sdk_dynamodb::Client::from_conf(conf);
    let client = lynk_client(sdk.clone(), table, server).await;
    let lock = client.create_lock("floor-capture");
    for _ in 0..2 {
        lock.acquire()
            .await
            .expect("acquire")
            .release()
            .await
            .expect("release");
    }
    let backend = DynamoBackend::from_client(sdk, table);
    backend.read("floor-capture").await.expect("read");
    client.shutdown().await;
    let updates = cap.updates.lock().expect("capture").clone();
    let gets = cap.gets.lock().expect("capture").clone();
    assert_eq!(
        updates.len(),
        4,
        "lynk sent {} UpdateItems for two uncontended cycles (expected 4, one per acquire and release)",
        updates.len()
    );
    assert_eq!(gets.len(), 1, "lynk's read sent {} GetItems", gets.len());
    // The second cycle (the first may take the lock from absent).
    let (acquire, release) = (updates[2].clone(), updates[3].clone());
    if std::env::var_os("LYNK_BENCH_SHOW_CAPTURE").is_some() {
        eprintln!("captured acquire: {acquire:#?}\ncaptured release: {release:#?}");
    }
    for (what, u) in [("acquire", &acquire), ("release", &release)] {
        let values = u.expression_attribute_values().expect("values");
        assert!(
            values.contains_key(":version"),
            "lynk's {what} has no :version value: the floor cannot replay it ({u:?})"
        );
    }
    assert!(
        release
            .expression_attribute_values()
            .expect("values")
            .contains_key(":expected"),
        "lynk's release is not conditioned on :expected ({release:?})"
    );
    LynkRequests {
        acquire,
        release,
        read: gets[0].clone(),
    }
}

/// Sends `template` through the bare SDK with `values` (its own values with
/// `:version`, and `:expected` if given, replaced); with `no_return`,
/// asking for no item back (`ReturnValues=NONE`) instead of the template's.
async fn send_update(
    sdk: &aws_sdk_dynamodb::Client,
    template: &UpdateItemInput,
    key: &HashMap<String, AttributeValue>,
    version: &str,
    expected: Option<&str>,
    no_return: bool,
    customize: bool,
) {
    let return_values = if no_return {
        None
    } else {
        template.return_values().cloned()
    };
    let mut values = template
        .expression_attribute_values()
        .cloned()
        .unwrap_or_default();
    values.insert(":version".into(), AttributeValue::S(version.to_owned()));
    if let Some(e) = expected {
        values.insert(":expected".into(), AttributeValue::S(e.to_owned()));
    }
    let op = sdk
        .update_item()
        .table_name(template.table_name().unwrap_or_default())
        .set_key(Some(key.clone()))
        .set_update_expression(template.update_expression().map(str::to_owned))
        .set_condition_expression(template.condition_expression().map(str::to_owned))
        .set_expression_attribute_names(template.expression_attribute_names().cloned())
        .set_expression_attribute_values(Some(values))
        .set_return_values(return_values)
        .set_return_values_on_condition_check_failure(
            template.return_values_on_condition_check_failure().cloned(),
        );
    let sent = if customize {
        // What lynk does per request: an operation-level interceptor.
        op.customize().interceptor(NoOp).send().await
    } else {
        op.send().await
    };
    sent.expect("floor UpdateItem");
}

/// An interceptor that does nothing: the cost of `customize()` alone.
#[derive(Debug)]
struct NoOp;

impl Intercept for NoOp {
    fn name(&self) -> &'static str {
        "lynk_bench::NoOp"
    }
}

/// One implementation's batch: `n` cycles (or reads) on its own lock.
#[async_trait::async_trait]
trait Batch: Send + Sync {
    async fn run(&mut self, n: u64);
}

struct LynkCycles(lynk_core::Lock);

#[async_trait::async_trait]
impl Batch for LynkCycles {
    async fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.0
                .acquire()
                .await
                .expect("acquire")
                .release()
                .await
                .expect("release");
        }
    }
}

struct LynkFloorCycles {
    /// The candidate `ReturnValues=NONE` (lynk asks for `ALL_NEW`).
    no_return: bool,
    /// The per-request `customize().interceptor(..)` lynk adds (its
    /// `Attempts`), here with an interceptor that does nothing.
    customize: bool,
    sdk: aws_sdk_dynamodb::Client,
    req: Arc<LynkRequests>,
    key: HashMap<String, AttributeValue>,
}

#[async_trait::async_trait]
impl Batch for LynkFloorCycles {
    async fn run(&mut self, n: u64) {
        for _ in 0..n {
            let v1 = uuid::Uuid::new_v4().to_string();
            let (req, key, nr, c) = (&self.req, &self.key, self.no_return, self.customize);
            send_update(&self.sdk, &req.acquire, key, &v1, None, nr, c).await;
            let v2 = uuid::Uuid::new_v4().to_string();
            send_update(&self.sdk, &req.release, key, &v2, Some(&v1), nr, c).await;
        }
    }
}

struct LynkReads(DynamoBackend, String);

#[async_trait::async_trait]
impl Batch for LynkReads {
    async fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.0.read(&self.1).await.expect("read");
        }
    }
}

struct FloorReads {
    sdk: aws_sdk_dynamodb::Client,
    req: Arc<LynkRequests>,
    key: HashMap<String, AttributeValue>,
}

#[async_trait::async_trait]
impl Batch for FloorReads {
    async fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.sdk
                .get_item()
                .table_name(self.req.read.table_name().unwrap_or_default())
                .set_key(Some(self.key.clone()))
                .set_consistent_read(self.req.read.consistent_read())
                .send()
                .await
                .expect("floor GetItem");
        }
    }
}

struct PeerCycles(dynamodb_lease::Client, String);

#[async_trait::async_trait]
impl Batch for PeerCycles {
    async fn run(&mut self, n: u64) {
        for _ in 0..n {
            let lease = self.0.acquire(&self.1).await.expect("acquire");
            lease.release().await.expect("release");
        }
    }
}

/// dynamodb-lease's requests (0.22, client.rs `put_lease` and `delete_lease`).
struct PeerFloorCycles {
    sdk: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
}

#[async_trait::async_trait]
impl Batch for PeerFloorCycles {
    async fn run(&mut self, n: u64) {
        for _ in 0..n {
            let now_s = crate::util::wall_micros() / 1_000_000;
            let v = uuid::Uuid::new_v4().to_string();
            self.sdk
                .put_item()
                .table_name(self.table.as_str())
                .item("key", AttributeValue::S(self.key.clone()))
                .item("lease_expiry", AttributeValue::N((now_s + 60).to_string()))
                .item("lease_version", AttributeValue::S(v.clone()))
                .condition_expression(
                    "attribute_not_exists(lease_version) OR lease_expiry < :now".to_string(),
                )
                .expression_attribute_values(":now", AttributeValue::N(now_s.to_string()))
                .send()
                .await
                .expect("floor PutItem");
            self.sdk
                .delete_item()
                .table_name(self.table.as_str())
                .key("key", AttributeValue::S(self.key.clone()))
                .condition_expression("lease_version=:lease_v".to_string())
                .expression_attribute_values(":lease_v", AttributeValue::S(v))
                .send()
                .await
                .expect("floor DeleteItem");
        }
    }
}

/// A lower bound for any client that keeps lynk's promises of the record:
/// the least a cycle must send for Python-compatible fields (`versionNumber`,
/// `leaseDuration`, `hostIdentifier`), a fencing token that only goes up
/// (so the record outlives the release and the acquire must learn the token)
/// and a release that waiters see at once (a flag, not a lease to sit out).
/// No holder detail, no TTL, no check that the item is a lock record, no
/// payload or queue: lynk's requests carry all of those. Acquire: `UpdateItem`
/// with `ADD fencingToken :one` and `ReturnValues=UPDATED_NEW`, the token read
/// back; release: `SET released` on the version.
struct MinimalFencedCycles {
    sdk: aws_sdk_dynamodb::Client,
    table: String,
    key: HashMap<String, AttributeValue>,
}

#[async_trait::async_trait]
impl Batch for MinimalFencedCycles {
    async fn run(&mut self, n: u64) {
        for _ in 0..n {
            let v = uuid::Uuid::new_v4().to_string();
            let out = self
                .sdk
                .update_item()
                .table_name(self.table.as_str())
                .set_key(Some(self.key.clone()))
                .update_expression(
                    "SET versionNumber = :v, leaseDuration = :l, hostIdentifier = :h \
                     REMOVE released ADD fencingToken :one",
                )
                .condition_expression("attribute_not_exists(lockKey) OR attribute_exists(released)")
                .expression_attribute_values(":v", AttributeValue::S(v.clone()))
                .expression_attribute_values(":l", AttributeValue::N("20".into()))
                .expression_attribute_values(":h", AttributeValue::S("bench".into()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                .send()
                .await
                .expect("minimal acquire");
            let token = out
                .attributes()
                .and_then(|a| a.get("fencingToken"))
                .and_then(|t| t.as_n().ok())
                .and_then(|t| t.parse::<u64>().ok())
                .expect("minimal acquire: the token back");
            std::hint::black_box(token);
            self.sdk
                .update_item()
                .table_name(self.table.as_str())
                .set_key(Some(self.key.clone()))
                .update_expression("SET released = :t")
                .condition_expression("versionNumber = :e")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":e", AttributeValue::S(v))
                .send()
                .await
                .expect("minimal release");
        }
    }
}

/// Totals of one implementation over all rounds.
#[derive(Default, Clone, Copy)]
struct Totals {
    cpu: Duration,
    wall: Duration,
    n: u64,
}

impl Totals {
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.n as f64
    }
    fn wall_us(&self) -> f64 {
        self.wall.as_secs_f64() * 1e6 / self.n as f64
    }
}

/// Iterations: rounds × cycles per batch.
fn sizes(smoke: bool) -> (usize, u64) {
    if smoke {
        (2, 10)
    } else {
        (20, 50)
    }
}

/// The floor figures on `server` at `endpoint`: client CPU and wall time per
/// cycle (and per request) for lynk, dynamodb-lease (where the server has
/// TTL, which it requires: moto) and each one's floor, with the ratios.
///
/// With `only = Some((name, n))`, runs only `name`'s cycles: the warm-up,
/// then `n` cycles, and prints the CPU per cycle (for profiling).
pub async fn run(
    server: Server,
    endpoint: &str,
    smoke: bool,
    only: Option<(String, u64)>,
    report: &Report,
) {
    // Figures of a run on tokio's multi-thread runtime are kept apart
    // (server `moto-mt`, `dynalite-mt`): whose thread runs the SDK's I/O
    // differs between the two, and with it every client's CPU.
    let label = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => format!("{}-mt", server.label()),
        _ => server.label().to_owned(),
    };
    let s = label.as_str();
    let env = Env::new(server, Some(endpoint)).await;
    let config = sdk_config(endpoint).await;
    let sdk = || aws_sdk_dynamodb::Client::new(&config);
    let req = Arc::new(capture(&config, &env.table, server).await);
    let key_of = |name: &str| {
        let mut k = req.acquire.key().cloned().expect("captured key");
        for v in k.values_mut() {
            *v = AttributeValue::S(name.to_owned());
        }
        k
    };

    let lynk = lynk_client(sdk(), &env.table, server).await;
    let mut batches: Vec<(&str, &str, Box<dyn Batch>)> = vec![
        (
            "lynk",
            "cycle",
            Box::new(LynkCycles(lynk.create_lock("floor-lynk"))),
        ),
        (
            "floor-lynk",
            "cycle",
            Box::new(LynkFloorCycles {
                no_return: false,
                customize: false,
                sdk: sdk(),
                req: req.clone(),
                key: key_of("floor-bare"),
            }),
        ),
        (
            "floor-lynk-customize",
            "cycle",
            Box::new(LynkFloorCycles {
                no_return: false,
                customize: true,
                sdk: sdk(),
                req: req.clone(),
                key: key_of("floor-bare-customize"),
            }),
        ),
        (
            "floor-lynk-return-none",
            "cycle",
            Box::new(LynkFloorCycles {
                no_return: true,
                customize: false,
                sdk: sdk(),
                req: req.clone(),
                key: key_of("floor-bare-none"),
            }),
        ),
        (
            "floor-minimal-fenced",
            "cycle",
            Box::new(MinimalFencedCycles {
                sdk: sdk(),
                table: env.table.clone(),
                key: key_of("floor-minimal"),
            }),
        ),
        (
            "lynk",
            "read",
            Box::new(LynkReads(
                DynamoBackend::from_client(sdk(), &env.table),
                "floor-lynk".into(),
            )),
        ),
        (
            "floor-lynk",
            "read",
            Box::new(FloorReads {
                sdk: sdk(),
                req: req.clone(),
                key: key_of("floor-lynk"),
            }),
        ),
    ];
    // dynamodb-lease's client needs TTL (moto); its requests run anywhere.
    let peer_table = unique("floor-peer");
    if server == Server::Moto {
        create_peer_table(&sdk(), &peer_table).await;
        let peer = dynamodb_lease::Client::builder()
            .table_name(&peer_table)
            .build_and_check_db(sdk())
            .await
            .expect("dynamodb-lease client");
        batches.push((
            "dynamodb-lease",
            "cycle",
            Box::new(PeerCycles(peer, "floor-peer".into())),
        ));
    } else {
        create_peer_table_without_ttl(&sdk(), &peer_table).await;
    }
    batches.push((
        "floor-dynamodb-lease",
        "cycle",
        Box::new(PeerFloorCycles {
            sdk: sdk(),
            table: peer_table,
            key: "floor-bare".into(),
        }),
    ));

    if let Some((name, n)) = only {
        let Some(i) = batches
            .iter()
            .position(|(imp, what, _)| *imp == name && *what == "cycle")
        else {
            let names: Vec<&str> = batches.iter().map(|(imp, _, _)| *imp).collect();
            eprintln!("lynk-bench floor: no implementation {name:?} on {s}; one of {names:?}");
            std::process::exit(2);
        };
        let b = &mut batches[i].2;
        b.run(5).await;
        let (t0, c0) = (now(), cpu_time());
        b.run(n).await;
        let (wall, cpu) = (now() - t0, cpu_time() - c0);
        println!(
            "{name} on {s}: {n} cycles, {:.1} us CPU and {:.1} us elapsed per cycle",
            cpu.as_secs_f64() * 1e6 / n as f64,
            wall.as_secs_f64() * 1e6 / n as f64
        );
        lynk.shutdown().await;
        return;
    }
    // Warm-up: connections, credentials, the first allocation of everything.
    for (_, _, b) in batches.iter_mut() {
        b.run(5).await;
    }
    let (rounds, per_batch) = sizes(smoke);
    let mut totals = vec![Totals::default(); batches.len()];
    for _ in 0..rounds {
        for (i, (_, _, b)) in batches.iter_mut().enumerate() {
            let (t0, c0) = (now(), cpu_time());
            b.run(per_batch).await;
            let t = &mut totals[i];
            t.wall += now() - t0;
            t.cpu += cpu_time() - c0;
            t.n += per_batch;
        }
    }
    lynk.shutdown().await;

    let find = |imp: &str, what: &str| {
        batches
            .iter()
            .position(|(i, w, _)| *i == imp && *w == what)
            .map(|i| totals[i])
    };
    for (i, (imp, what, _)) in batches.iter().enumerate() {
        let t = totals[i];
        let per = if *what == "cycle" { "cycle" } else { "read" };
        let note = format!(
            "{rounds} interleaved rounds of {per_batch}; client process CPU (getrusage) per {}",
            if per == "cycle" {
                "cycle (acquire + release: 2 requests)"
            } else {
                "consistent GetItem"
            }
        );
        report.figure(
            imp,
            s,
            &format!("floor_cpu_us_per_{per}"),
            t.cpu_us(),
            "us",
            &note,
        );
        report.figure(
            imp,
            s,
            &format!("floor_wall_us_per_{per}"),
            t.wall_us(),
            "us",
            &format!("same rounds; elapsed time per {per}"),
        );
    }
    let ratio = |a: Option<Totals>, b: Option<Totals>, f: fn(&Totals) -> f64| match (a, b) {
        (Some(a), Some(b)) => f(&a) / f(&b),
        _ => f64::NAN,
    };
    let pairs = [
        ("lynk", "floor-lynk", "cycle"),
        ("lynk", "floor-lynk", "read"),
        ("floor-lynk-return-none", "floor-lynk", "cycle"),
        ("floor-lynk-customize", "floor-lynk", "cycle"),
        ("dynamodb-lease", "floor-dynamodb-lease", "cycle"),
    ];
    for (imp, floor, what) in pairs {
        let (a, b) = (find(imp, what), find(floor, what));
        if a.is_none() {
            continue;
        }
        report.figure(
            imp,
            s,
            &format!("floor_ratio_cpu_{what}"),
            ratio(a, b, Totals::cpu_us),
            "x",
            &format!("client CPU per {what} : the bare SDK sending the same requests"),
        );
        report.figure(
            imp,
            s,
            &format!("floor_ratio_wall_{what}"),
            ratio(a, b, Totals::wall_us),
            "x",
            &format!("elapsed time per {what} : the bare SDK sending the same requests"),
        );
    }
    if let (Some(l), Some(p)) = (find("lynk", "cycle"), find("floor-dynamodb-lease", "cycle")) {
        report.figure(
            "lynk",
            s,
            "floor_lynk_vs_peer_floor_cpu_cycle",
            l.cpu_us() / p.cpu_us(),
            "x",
            "lynk : the bare SDK sending dynamodb-lease's requests, client CPU per uncontended cycle",
        );
    }
    // The least a fenced, Python-compatible record needs, sent by the bare
    // SDK (no client work at all), against dynamodb-lease: below 1 only if a
    // client keeping lynk's promises can be ahead of it.
    for (peer, metric, note) in [
        (
            "dynamodb-lease",
            "floor_minimal_vs_peer_cpu_cycle",
            "the least requests a fenced, Python-compatible record needs (bare SDK) : dynamodb-lease, client CPU per cycle",
        ),
        (
            "floor-dynamodb-lease",
            "floor_minimal_vs_peer_floor_cpu_cycle",
            "the least requests a fenced, Python-compatible record needs : dynamodb-lease's requests, both bare SDK, CPU per cycle",
        ),
    ] {
        if let (Some(m), Some(p)) = (find("floor-minimal-fenced", "cycle"), find(peer, "cycle")) {
            report.figure(
                "floor-minimal-fenced",
                s,
                metric,
                m.cpu_us() / p.cpu_us(),
                "x",
                note,
            );
        }
    }
    if let (Some(l), Some(p)) = (find("lynk", "cycle"), find("dynamodb-lease", "cycle")) {
        report.figure(
            "lynk",
            s,
            "floor_lynk_vs_peer_cpu_cycle",
            l.cpu_us() / p.cpu_us(),
            "x",
            "lynk : dynamodb-lease, client CPU per uncontended cycle (same rounds)",
        );
    }
}
