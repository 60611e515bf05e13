//! What a record holds and how it is found: missing keys, token
//! arithmetic, every field's round trip, long and unicode keys.

use std::time::Duration;

use bytes::Bytes;
use lynk_core::{Condition, FencingToken, TokenUpdate};

use super::ctx::{must_read, must_write, next, read, request, update, Ctx};

pub(super) async fn read_missing_is_none(ctx: &Ctx) -> Result<(), String> {
    let got = read(ctx, &ctx.key("missing")).await?;
    ensure!(got.is_none(), "read of a missing key returned {got:?}");
    Ok(())
}

pub(super) async fn token_arithmetic(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("token");
    let none = must_write(ctx, request(&key, Condition::Absent, TokenUpdate::Keep)).await?;
    ensure!(
        none.fencing_token.is_none(),
        "Keep on a new record gave token {:?}",
        none.fencing_token
    );
    let first = must_write(ctx, update(&key, &none, next())).await?;
    ensure!(
        first.fencing_token == Some(FencingToken::new(1_000)),
        "Next on a tokenless record gave {:?}, expected the initial 1000",
        first.fencing_token
    );
    let second = must_write(ctx, update(&key, &first, TokenUpdate::Next { initial: 5 })).await?;
    ensure!(
        second.fencing_token == Some(FencingToken::new(1_001)),
        "Next gave {:?}, expected stored + 1 = 1001",
        second.fencing_token
    );
    let kept = must_write(ctx, update(&key, &second, TokenUpdate::Keep)).await?;
    ensure!(
        kept.fencing_token == second.fencing_token,
        "Keep changed the token to {:?}",
        kept.fencing_token
    );
    must_read(ctx, &key, &kept, "the record Keep wrote").await
}

pub(super) async fn fields_round_trip(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("fields");
    let mut req = request(&key, Condition::Absent, next());
    req.lease_duration = Duration::from_millis(2_500);
    req.payload = Some(Bytes::from_static(b"\x00\xffleader=10.0.0.7:8080"));
    req.host = "host-\u{e9}".to_owned();
    req.holder_detail = Some("pid 4242 nightly-\u{e9}".to_owned());
    let stored = must_write(ctx, req).await?;
    ensure!(
        stored.holder_detail.as_deref() == Some("pid 4242 nightly-\u{e9}"),
        "the written record lost its holder detail: {stored:?}"
    );
    must_read(ctx, &key, &stored, "the record with every field").await?;
    let mut clear = update(&key, &stored, TokenUpdate::Keep);
    clear.payload = None;
    clear.holder_detail = None;
    let cleared = must_write(ctx, clear).await?;
    ensure!(
        cleared.payload.is_none(),
        "payload None did not remove the payload"
    );
    ensure!(
        cleared.holder_detail.is_none(),
        "holder_detail None did not remove the holder detail"
    );
    let got = read(ctx, &key).await?;
    ensure!(
        got.as_ref()
            .is_some_and(|r| r.payload.is_none() && r.lease_duration == Duration::from_secs(20)),
        "after clearing, read returned {got:?}"
    );
    Ok(())
}

pub(super) async fn long_and_unicode_keys(ctx: &Ctx) -> Result<(), String> {
    let mut long = ctx.key("long-");
    while long.len() < ctx.max_name_bytes {
        long.push('k');
    }
    let unicode = ctx.key("clé 🔒 / spaces");
    for key in [long, unicode] {
        let rec = must_write(ctx, request(&key, Condition::Absent, next())).await?;
        let what = format!("the record at a key of {} bytes", key.len());
        must_read(ctx, &key, &rec, &what).await?;
    }
    Ok(())
}
