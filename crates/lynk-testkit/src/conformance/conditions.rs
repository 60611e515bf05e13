//! The conditions of a write and a delete: `Absent`, `Vacant`, `VersionIs`,
//! the conditional delete, and the current record returned on a conflict.

use std::time::Duration;

use lynk_core::{Condition, TokenUpdate, Version, WriteError};

use super::ctx::{must_conflict, must_read, must_write, next, read, request, update, Ctx};

pub(super) async fn create_when_absent(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("create");
    let req = request(&key, Condition::Absent, next());
    let expected = req.record_over(None);
    let stored = must_write(ctx, req).await?;
    ensure!(
        stored == expected,
        "write returned {stored:?}, expected {expected:?}"
    );
    must_read(ctx, &key, &expected, "the created record").await
}

pub(super) async fn absent_fails_when_present(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("absent-present");
    let first = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    must_conflict(ctx, request(&key, Condition::Absent, next())).await?;
    let before = "the record as before the failed write";
    must_read(ctx, &key, &first, before).await
}

pub(super) async fn vacant_semantics(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("vacant");
    let held = must_write(ctx, request(&key, Condition::Vacant, next())).await?;
    must_conflict(ctx, request(&key, Condition::Vacant, next())).await?;
    let mut release = update(&key, &held, TokenUpdate::Keep);
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

pub(super) async fn version_condition(ctx: &Ctx) -> Result<(), String> {
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
    let b = must_write(ctx, update(&key, &a, TokenUpdate::Keep)).await?;
    ensure!(b.version != a.version, "version did not change");
    must_conflict(ctx, update(&key, &a, TokenUpdate::Keep)).await?;
    Ok(())
}

pub(super) async fn conditional_delete(ctx: &Ctx) -> Result<(), String> {
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

pub(super) async fn conflict_returns_current(ctx: &Ctx) -> Result<(), String> {
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

/// `write_no_return` is `write` without the record back: it applies on its
/// condition and stores exactly what `write` would (read back), and a
/// failed condition writes nothing and returns the stored record where the
/// backend returns one on a conflict.
pub(super) async fn write_no_return_is_write(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("no-return");
    let held = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    let mut release = update(&key, &held, TokenUpdate::Keep);
    release.released = true;
    let expected = release.record_over(Some(&held));
    ctx.backend
        .write_no_return(release.clone())
        .await
        .map_err(|e| format!("write_no_return of a release should apply but failed: {e}"))?;
    must_read(ctx, &key, &expected, "the record write_no_return stored").await?;
    // The same request again: its condition (the held version) no longer holds.
    let mut stale = release;
    stale.version = Version::random();
    match ctx.backend.write_no_return(stale).await {
        Err(WriteError::ConditionFailed { current }) => {
            let returns = ctx.backend.capabilities().returns_current_on_conflict;
            ensure!(
                !returns || current.as_ref() == Some(&expected),
                "a failed write_no_return returned {current:?}, expected the stored {expected:?}"
            );
        }
        other => {
            return Err(format!(
            "write_no_return over a changed version returned {other:?}, expected ConditionFailed"
        ))
        }
    }
    must_read(
        ctx,
        &key,
        &expected,
        "the record after a failed write_no_return",
    )
    .await
}
