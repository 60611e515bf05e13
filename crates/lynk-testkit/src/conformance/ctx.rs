//! What a case gets ([`Ctx`]: the backend and a unique key prefix) and the
//! tools the cases share: requests, checked writes and reads, a client.

use std::sync::Arc;
use std::time::Duration;

use lynk_core::{
    Condition, LockBackend, LockClient, LockRecord, ReleaseMode, TokenUpdate, Version, WriteError,
    WriteRequest,
};

/// What a case gets: the backend, a unique key prefix, and the longest
/// key the backend holds.
pub(super) struct Ctx {
    pub(super) backend: Arc<dyn LockBackend>,
    pub(super) prefix: String,
    pub(super) max_name_bytes: usize,
}

impl Ctx {
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

pub(super) fn request(key: &str, condition: Condition, token: TokenUpdate) -> WriteRequest {
    WriteRequest {
        key: key.to_owned(),
        condition,
        version: Version::random(),
        lease_duration: Duration::from_secs(20),
        host: "conformance".to_owned(),
        token,
        payload: None,
        released: false,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

/// A write of `key` on condition that `over` is the stored record.
pub(super) fn update(key: &str, over: &LockRecord, token: TokenUpdate) -> WriteRequest {
    request(key, Condition::VersionIs(over.version.clone()), token)
}

pub(super) fn next() -> TokenUpdate {
    TokenUpdate::Next { initial: 1_000 }
}

pub(super) async fn write(
    ctx: &Ctx,
    req: WriteRequest,
) -> Result<Result<LockRecord, WriteError>, String> {
    match ctx.backend.write(req).await {
        Err(WriteError::Backend(e)) => Err(format!("unexpected backend error: {e}")),
        other => Ok(other),
    }
}

pub(super) async fn read(ctx: &Ctx, key: &str) -> Result<Option<LockRecord>, String> {
    ctx.backend
        .read(key)
        .await
        .map_err(|e| format!("read failed: {e}"))
}

/// Reads `key` and checks that the stored record is `expected`, described
/// by `what`.
pub(super) async fn must_read(
    ctx: &Ctx,
    key: &str,
    expected: &LockRecord,
    what: &str,
) -> Result<(), String> {
    let got = read(ctx, key).await?;
    ensure!(
        got.as_ref() == Some(expected),
        "read returned {got:?}, expected {what} {expected:?}"
    );
    Ok(())
}

pub(super) async fn must_write(ctx: &Ctx, req: WriteRequest) -> Result<LockRecord, String> {
    let what = format!("{:?} write of {:?}", req.condition, req.key);
    write(ctx, req)
        .await?
        .map_err(|e| format!("{what} should apply but failed: {e}"))
}

pub(super) async fn must_conflict(
    ctx: &Ctx,
    req: WriteRequest,
) -> Result<Option<LockRecord>, String> {
    let what = format!("{:?} write of {:?}", req.condition, req.key);
    match write(ctx, req).await? {
        Ok(r) => Err(format!(
            "{what} should fail its condition but applied: {r:?}"
        )),
        Err(WriteError::ConditionFailed { current }) => Ok(current),
        Err(e) => Err(format!("{what}: unexpected error {e}")),
    }
}

/// A client on the case's backend, quick to poll.
pub(super) fn client(ctx: &Ctx, host: &str, mode: ReleaseMode) -> Result<LockClient, String> {
    LockClient::builder_shared(ctx.backend.clone())
        .host_identifier(host)
        .poll_interval(Duration::from_millis(20))
        .default_lease(Duration::from_secs(5))
        .release_mode(mode)
        .build()
        .map_err(|e| e.to_string())
}
