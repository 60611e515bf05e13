//! Transactions (run when the backend declares `Capabilities::transactions`):
//! `write_all` applies every request or none, each as `record_over` of the
//! record it replaced.

use lynk_core::{Condition, WriteError};

use super::ctx::{must_read, must_write, next, read, request, update, Ctx};

/// Three requests (absent, over a stored record, over a released one) apply
/// together, each storing exactly `record_over` of what it replaced.
pub(super) async fn write_all_applies_every_request(ctx: &Ctx) -> Result<(), String> {
    let (a, b, c) = (ctx.key("tx-a"), ctx.key("tx-b"), ctx.key("tx-c"));
    let stored_b = must_write(ctx, request(&b, Condition::Absent, next())).await?;
    let mut released = request(&c, Condition::Absent, next());
    released.released = true;
    let stored_c = must_write(ctx, released).await?;
    let requests = vec![
        request(&a, Condition::Absent, next()),
        update(&b, &stored_b, next()),
        update(&c, &stored_c, next()),
    ];
    let before = [None, Some(stored_b), Some(stored_c)];
    let expected: Vec<_> = requests
        .iter()
        .zip(&before)
        .map(|(r, prev)| r.record_over(prev.as_ref()))
        .collect();
    ctx.backend
        .write_all(requests)
        .await
        .map_err(|e| format!("write_all of three free records should apply: {e}"))?;
    for (key, want) in [&a, &b, &c].into_iter().zip(&expected) {
        must_read(ctx, key, want, "the transaction's record_over").await?;
    }
    Ok(())
}

/// One failed condition: nothing is written, and the result says so.
pub(super) async fn write_all_applies_none_on_one_failed_condition(
    ctx: &Ctx,
) -> Result<(), String> {
    let (a, b) = (ctx.key("tx-none-a"), ctx.key("tx-none-b"));
    let held = must_write(ctx, request(&b, Condition::Absent, next())).await?;
    let requests = vec![
        request(&a, Condition::Absent, next()),
        // `b` exists: `Absent` fails.
        request(&b, Condition::Absent, next()),
    ];
    match ctx.backend.write_all(requests).await {
        Err(WriteError::ConditionFailed { current }) => {
            if let Some(current) = current {
                ensure!(
                    current == held,
                    "the failed condition returned {current:?}, expected the stored {held:?}"
                );
            }
        }
        Ok(()) => return Err("write_all applied although one condition failed".into()),
        Err(e) => return Err(format!("write_all: unexpected error {e}")),
    }
    let a_now = read(ctx, &a).await?;
    ensure!(
        a_now.is_none(),
        "the first request applied although the transaction failed: {a_now:?}"
    );
    must_read(ctx, &b, &held, "the untouched record").await?;
    Ok(())
}

/// A stale version condition fails the whole transaction too.
pub(super) async fn write_all_checks_versions(ctx: &Ctx) -> Result<(), String> {
    let (a, b) = (ctx.key("tx-ver-a"), ctx.key("tx-ver-b"));
    let first_a = must_write(ctx, request(&a, Condition::Absent, next())).await?;
    let now_a = must_write(ctx, update(&a, &first_a, next())).await?;
    let stored_b = must_write(ctx, request(&b, Condition::Absent, next())).await?;
    let requests = vec![update(&a, &first_a, next()), update(&b, &stored_b, next())];
    match ctx.backend.write_all(requests).await {
        Err(WriteError::ConditionFailed { .. }) => {}
        Ok(()) => return Err("write_all applied over a stale version".into()),
        Err(e) => return Err(format!("write_all: unexpected error {e}")),
    }
    must_read(ctx, &a, &now_a, "the untouched record").await?;
    must_read(ctx, &b, &stored_b, "the untouched record").await?;
    Ok(())
}
