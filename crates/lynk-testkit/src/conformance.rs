//! The conformance suite: checks that a [`LockBackend`] keeps the trait's
//! contract. Every backend in the lynk repository runs it; run it on yours.
//!
//! ```
//! use std::sync::Arc;
//! use lynk_testkit::{conformance, MemoryBackend};
//!
//! #[tokio::main]
//! async fn main() {
//!     let report = conformance::run_all(Arc::new(MemoryBackend::new())).await;
//!     println!("{report}");
//!     report.assert_ok();
//! }
//! ```
//!
//! Cases use lock names with a random prefix, so one table can serve many
//! runs. Cases that need a capability the backend does not declare are
//! reported as skipped, with the reason, never silently dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lynk_core::{
    Capabilities, Clock, Condition, FencingToken, LockBackend, LockClient, LockRecord, ReleaseMode,
    SystemClock, TokenUpdate, Version, WriteError, WriteRequest,
};

/// The outcome of a conformance run.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: Vec<&'static str>,
    /// Cases not run, with the reason.
    pub skipped: Vec<(&'static str, String)>,
    /// Cases that failed, with what was wrong.
    pub failed: Vec<(&'static str, String)>,
}

impl Report {
    /// Panics, listing every failure, unless all run cases passed.
    pub fn assert_ok(&self) {
        assert!(
            self.failed.is_empty() && !self.passed.is_empty(),
            "conformance failed:\n{self}"
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in &self.passed {
            writeln!(f, "  pass  {name}")?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  SKIP  {name}: {why}")?;
        }
        for (name, why) in &self.failed {
            writeln!(f, "  FAIL  {name}: {why}")?;
        }
        write!(
            f,
            "conformance: {} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )
    }
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
type CaseFn = for<'a> fn(&'a Ctx) -> CaseFuture<'a>;

/// A case of the suite.
struct Case {
    name: &'static str,
    needs: fn(&Capabilities) -> Option<&'static str>,
    run: CaseFn,
}

/// What a case gets: the backend and a unique key prefix.
struct Ctx {
    backend: Arc<dyn LockBackend>,
    prefix: String,
}

impl Ctx {
    fn key(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

fn always(_: &Capabilities) -> Option<&'static str> {
    None
}

fn needs_current(c: &Capabilities) -> Option<&'static str> {
    (!c.returns_current_on_conflict)
        .then_some("backend does not return the current record on a failed condition")
}

macro_rules! case {
    ($name:ident) => {
        Case {
            name: stringify!($name),
            needs: always,
            run: |ctx| Box::pin($name(ctx)),
        }
    };
    ($name:ident, $needs:expr) => {
        Case {
            name: stringify!($name),
            needs: $needs,
            run: |ctx| Box::pin($name(ctx)),
        }
    };
}

fn cases() -> Vec<Case> {
    vec![
        case!(read_missing_is_none),
        case!(create_when_absent),
        case!(absent_fails_when_present),
        case!(vacant_semantics),
        case!(version_condition),
        case!(token_arithmetic),
        case!(fields_round_trip),
        case!(conditional_delete),
        case!(conflict_returns_current, needs_current),
        case!(long_and_unicode_keys),
        case!(concurrent_cas_has_one_winner),
        case!(race_counter_is_exact),
        case!(fencing_tokens_strictly_increase),
    ]
}

/// The names of every case, in run order.
pub fn case_names() -> Vec<&'static str> {
    cases().iter().map(|c| c.name).collect()
}

/// Runs every case against `backend` and reports.
pub async fn run_all(backend: Arc<dyn LockBackend>) -> Report {
    run_selected(backend, |_| true).await
}

/// Runs the cases whose name `filter` accepts.
pub async fn run_selected(backend: Arc<dyn LockBackend>, filter: impl Fn(&str) -> bool) -> Report {
    let caps = backend.capabilities();
    let prefix = format!("conf-{}", &Version::random().as_str()[..8]);
    let ctx = Ctx { backend, prefix };
    let mut report = Report::default();
    for case in cases() {
        if !filter(case.name) {
            continue;
        }
        if let Some(why) = (case.needs)(&caps) {
            report.skipped.push((case.name, why.to_owned()));
            continue;
        }
        match (case.run)(&ctx).await {
            Ok(()) => report.passed.push(case.name),
            Err(e) => report.failed.push((case.name, e)),
        }
    }
    report
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn request(key: &str, condition: Condition, token: TokenUpdate) -> WriteRequest {
    WriteRequest {
        key: key.to_owned(),
        condition,
        version: Version::random(),
        lease_duration: Duration::from_secs(20),
        host: "conformance".to_owned(),
        token,
        payload: None,
        released: false,
    }
}

fn next() -> TokenUpdate {
    TokenUpdate::Next { initial: 1_000 }
}

async fn write(ctx: &Ctx, req: WriteRequest) -> Result<Result<LockRecord, WriteError>, String> {
    match ctx.backend.write(req).await {
        Err(WriteError::Backend(e)) => Err(format!("unexpected backend error: {e}")),
        other => Ok(other),
    }
}

async fn read(ctx: &Ctx, key: &str) -> Result<Option<LockRecord>, String> {
    ctx.backend
        .read(key)
        .await
        .map_err(|e| format!("read failed: {e}"))
}

async fn must_write(ctx: &Ctx, req: WriteRequest) -> Result<LockRecord, String> {
    let what = format!("{:?} write of {:?}", req.condition, req.key);
    write(ctx, req)
        .await?
        .map_err(|e| format!("{what} should apply but failed: {e}"))
}

async fn must_conflict(ctx: &Ctx, req: WriteRequest) -> Result<Option<LockRecord>, String> {
    let what = format!("{:?} write of {:?}", req.condition, req.key);
    match write(ctx, req).await? {
        Ok(r) => Err(format!(
            "{what} should fail its condition but applied: {r:?}"
        )),
        Err(WriteError::ConditionFailed { current }) => Ok(current),
        Err(e) => Err(format!("{what}: unexpected error {e}")),
    }
}

async fn read_missing_is_none(ctx: &Ctx) -> Result<(), String> {
    let got = read(ctx, &ctx.key("missing")).await?;
    ensure!(got.is_none(), "read of a missing key returned {got:?}");
    Ok(())
}

async fn create_when_absent(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("create");
    let req = request(&key, Condition::Absent, next());
    let expected = req.record_over(None);
    let stored = must_write(ctx, req).await?;
    ensure!(
        stored == expected,
        "write returned {stored:?}, expected {expected:?}"
    );
    let got = read(ctx, &key).await?;
    ensure!(
        got.as_ref() == Some(&expected),
        "read returned {got:?}, expected {expected:?}"
    );
    Ok(())
}

async fn absent_fails_when_present(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("absent-present");
    let first = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    must_conflict(ctx, request(&key, Condition::Absent, next())).await?;
    let got = read(ctx, &key).await?;
    ensure!(
        got.as_ref() == Some(&first),
        "a failed write changed the record: {got:?}"
    );
    Ok(())
}

async fn vacant_semantics(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("vacant");
    let held = must_write(ctx, request(&key, Condition::Vacant, next())).await?;
    must_conflict(ctx, request(&key, Condition::Vacant, next())).await?;
    let mut release = request(
        &key,
        Condition::VersionIs(held.version.clone()),
        TokenUpdate::Keep,
    );
    release.released = true;
    release.lease_duration = Duration::ZERO;
    let released = must_write(ctx, release).await?;
    ensure!(released.released, "released flag not stored: {released:?}");
    must_conflict(ctx, request(&key, Condition::Absent, next())).await?;
    let again = must_write(ctx, request(&key, Condition::Vacant, next())).await?;
    ensure!(
        !again.released,
        "a Vacant acquire left the record released: {again:?}"
    );
    Ok(())
}

async fn version_condition(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("version");
    must_conflict(
        ctx,
        request(&key, Condition::VersionIs(Version::random()), next()),
    )
    .await?;
    ensure!(
        read(ctx, &key).await?.is_none(),
        "a failed VersionIs write created a record"
    );
    let a = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    must_conflict(
        ctx,
        request(&key, Condition::VersionIs(Version::random()), next()),
    )
    .await?;
    let b = must_write(
        ctx,
        request(
            &key,
            Condition::VersionIs(a.version.clone()),
            TokenUpdate::Keep,
        ),
    )
    .await?;
    ensure!(b.version != a.version, "version did not change");
    must_conflict(
        ctx,
        request(
            &key,
            Condition::VersionIs(a.version.clone()),
            TokenUpdate::Keep,
        ),
    )
    .await?;
    Ok(())
}

async fn token_arithmetic(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("token");
    let none = must_write(ctx, request(&key, Condition::Absent, TokenUpdate::Keep)).await?;
    ensure!(
        none.fencing_token.is_none(),
        "Keep on a new record gave token {:?}",
        none.fencing_token
    );
    let first = must_write(
        ctx,
        request(&key, Condition::VersionIs(none.version.clone()), next()),
    )
    .await?;
    ensure!(
        first.fencing_token == Some(FencingToken::new(1_000)),
        "Next on a tokenless record gave {:?}, expected the initial 1000",
        first.fencing_token
    );
    let second = must_write(
        ctx,
        request(
            &key,
            Condition::VersionIs(first.version.clone()),
            TokenUpdate::Next { initial: 5 },
        ),
    )
    .await?;
    ensure!(
        second.fencing_token == Some(FencingToken::new(1_001)),
        "Next gave {:?}, expected stored + 1 = 1001",
        second.fencing_token
    );
    let kept = must_write(
        ctx,
        request(
            &key,
            Condition::VersionIs(second.version.clone()),
            TokenUpdate::Keep,
        ),
    )
    .await?;
    ensure!(
        kept.fencing_token == second.fencing_token,
        "Keep changed the token to {:?}",
        kept.fencing_token
    );
    let got = read(ctx, &key).await?;
    ensure!(
        got.as_ref() == Some(&kept),
        "read returned {got:?}, expected {kept:?}"
    );
    Ok(())
}

async fn fields_round_trip(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("fields");
    let mut req = request(&key, Condition::Absent, next());
    req.lease_duration = Duration::from_millis(2_500);
    req.payload = Some(Bytes::from_static(b"\x00\xffleader=10.0.0.7:8080"));
    req.host = "host-\u{e9}".to_owned();
    let stored = must_write(ctx, req).await?;
    let got = read(ctx, &key).await?;
    ensure!(
        got.as_ref() == Some(&stored),
        "read returned {got:?}, expected {stored:?}"
    );
    let mut clear = request(
        &key,
        Condition::VersionIs(stored.version.clone()),
        TokenUpdate::Keep,
    );
    clear.payload = None;
    let cleared = must_write(ctx, clear).await?;
    ensure!(
        cleared.payload.is_none(),
        "payload None did not remove the payload"
    );
    let got = read(ctx, &key).await?;
    ensure!(
        got.as_ref()
            .is_some_and(|r| r.payload.is_none() && r.lease_duration == Duration::from_secs(20)),
        "after clearing, read returned {got:?}"
    );
    Ok(())
}

async fn conditional_delete(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("delete");
    match ctx.backend.delete(&key, &Version::random()).await {
        Err(WriteError::ConditionFailed { .. }) => {}
        other => return Err(format!("delete of a missing record returned {other:?}")),
    }
    let rec = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    match ctx.backend.delete(&key, &Version::random()).await {
        Err(WriteError::ConditionFailed { .. }) => {}
        other => return Err(format!("delete with a wrong version returned {other:?}")),
    }
    ensure!(
        read(ctx, &key).await?.is_some(),
        "a failed delete removed the record"
    );
    ctx.backend
        .delete(&key, &rec.version)
        .await
        .map_err(|e| format!("delete with the right version failed: {e}"))?;
    ensure!(read(ctx, &key).await?.is_none(), "delete left the record");
    Ok(())
}

async fn conflict_returns_current(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("current");
    let rec = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    let current = must_conflict(ctx, request(&key, Condition::Absent, next())).await?;
    ensure!(
        current.as_ref() == Some(&rec),
        "conflict returned {current:?}, expected {rec:?}"
    );
    match ctx.backend.delete(&key, &Version::random()).await {
        Err(WriteError::ConditionFailed { current: Some(c) }) if c == rec => Ok(()),
        other => Err(format!(
            "a failed delete returned {other:?}, expected the current record"
        )),
    }
}

async fn long_and_unicode_keys(ctx: &Ctx) -> Result<(), String> {
    let mut long = ctx.key("long-");
    while long.len() < lynk_core::MAX_NAME_BYTES {
        long.push('k');
    }
    let unicode = ctx.key("clé 🔒 / spaces");
    for key in [long, unicode] {
        let rec = must_write(ctx, request(&key, Condition::Absent, next())).await?;
        let got = read(ctx, &key).await?;
        ensure!(
            got.as_ref() == Some(&rec),
            "key of {} bytes did not round-trip",
            key.len()
        );
    }
    Ok(())
}

async fn concurrent_cas_has_one_winner(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("cas");
    let base = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    let attempts = (0..16).map(|_| {
        let backend = ctx.backend.clone();
        let req = request(&key, Condition::VersionIs(base.version.clone()), next());
        async move { backend.write(req).await }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<&LockRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    ensure!(
        winners.len() == 1,
        "{} of 16 concurrent writes on one version applied; exactly one must",
        winners.len()
    );
    for r in &results {
        if let Err(WriteError::Backend(e)) = r {
            return Err(format!("backend error under contention: {e}"));
        }
    }
    let got = read(ctx, &key).await?;
    ensure!(
        got.as_ref() == Some(winners[0]),
        "stored record {got:?} is not the winner's"
    );
    Ok(())
}

fn client(ctx: &Ctx, host: &str, mode: ReleaseMode) -> Result<LockClient, String> {
    LockClient::builder_shared(ctx.backend.clone())
        .host_identifier(host)
        .poll_interval(Duration::from_millis(20))
        .default_lease(Duration::from_secs(5))
        .release_mode(mode)
        .build()
        .map_err(|e| e.to_string())
}

async fn race_counter_is_exact(ctx: &Ctx) -> Result<(), String> {
    const CLIENTS: usize = 3;
    const TASKS: usize = 3;
    const ROUNDS: usize = 3;
    let key = ctx.key("race");
    let counter = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for c in 0..CLIENTS {
        let client = client(ctx, &format!("racer-{c}"), ReleaseMode::KeepRecord)?;
        for _ in 0..TASKS {
            let (client, key, counter, inside) =
                (client.clone(), key.clone(), counter.clone(), inside.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let guard = client
                        .create_lock(key.clone())
                        .acquire()
                        .await
                        .map_err(|e| e.to_string())?;
                    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                        return Err("two holders at once".to_owned());
                    }
                    // A read-modify-write that loses updates unless exclusive.
                    let seen = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(seen + 1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            }));
        }
    }
    for h in handles {
        h.await.map_err(|e| format!("task panicked: {e}"))??;
    }
    let total = counter.load(Ordering::SeqCst);
    let expected = (CLIENTS * TASKS * ROUNDS) as u64;
    ensure!(
        total == expected,
        "counter is {total}, expected {expected}: mutual exclusion broke"
    );
    Ok(())
}

async fn fencing_tokens_strictly_increase(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("fencing");
    let a = client(ctx, "fence-a", ReleaseMode::KeepRecord)?;
    let b = client(ctx, "fence-b", ReleaseMode::Delete)?;
    let mut tokens = Vec::new();
    let err = |e: lynk_core::LockError| e.to_string();
    // Acquire and release on one client, then another.
    let g = a.create_lock(key.clone()).acquire().await.map_err(err)?;
    tokens.push(g.fencing_token());
    g.release().await.map_err(err)?;
    let g = b.create_lock(key.clone()).acquire().await.map_err(err)?;
    tokens.push(g.fencing_token());
    // A local handover: a waiter queued behind the holder.
    let waiter = {
        let b = b.clone();
        let key = key.clone();
        tokio::spawn(async move { b.create_lock(key).acquire().await })
    };
    SystemClock.sleep(Duration::from_millis(20)).await;
    g.release().await.map_err(err)?;
    let g = waiter.await.map_err(|e| e.to_string())?.map_err(err)?;
    tokens.push(g.fencing_token());
    // Delete mode: the record goes away; the next token restarts from the wall clock.
    g.release().await.map_err(err)?;
    let g = a.create_lock(key.clone()).acquire().await.map_err(err)?;
    tokens.push(g.fencing_token());
    // A crashed holder: a record written directly, never heartbeated, then taken over.
    drop(g.release().await);
    let cur = read(ctx, &key).await?.ok_or("record vanished")?;
    let mut crash = request(
        &key,
        Condition::VersionIs(cur.version.clone()),
        TokenUpdate::Next { initial: 1 },
    );
    crash.lease_duration = Duration::from_millis(300);
    crash.host = "crashed".to_owned();
    let crashed = must_write(ctx, crash).await?;
    tokens.push(crashed.fencing_token.ok_or("token missing")?);
    let g = b
        .create_lock(key.clone())
        .acquire_timeout(Duration::from_secs(10))
        .await
        .map_err(err)?;
    tokens.push(g.fencing_token());
    g.release().await.map_err(err)?;
    ensure!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens did not strictly increase: {tokens:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
