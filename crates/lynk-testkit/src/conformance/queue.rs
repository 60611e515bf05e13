//! The wait queue (run when the backend declares `Capabilities::wait_queue`):
//! `write_queue` as a compare-and-set on the version and queue revision that
//! changes nothing but the queue, the queue and `granted_to` in protocol
//! writes, and `Condition::QueueIs`.

use std::time::Duration;

use bytes::Bytes;
use lynk_core::{
    Condition, LockRecord, QueueEntry, QueueRequest, QueueUpdate, TokenUpdate, Version, WaitQueue,
    WriteError,
};

use super::ctx::{must_conflict, must_read, must_write, next, read, request, update, Ctx};

fn entry(id: &str, wake: Option<&str>) -> QueueEntry {
    QueueEntry {
        id: id.to_owned(),
        host: format!("waiter-{id}"),
        wake: wake.map(str::to_owned),
        poll: wake.map(|_| std::time::Duration::from_millis(60_000)),
    }
}

/// A queue write over `over` (its version and queue revision) that stores
/// `over`'s queue with `entry` appended, under a fresh revision.
fn enqueue(key: &str, over: &LockRecord, entry: QueueEntry) -> QueueRequest {
    QueueRequest {
        key: key.to_owned(),
        version: over.version.clone(),
        revision: over.queue.revision.clone(),
        queue: over.queue.with(entry),
    }
}

async fn write_queue(
    ctx: &Ctx,
    req: QueueRequest,
) -> Result<Result<LockRecord, WriteError>, String> {
    match ctx.backend.write_queue(req).await {
        Err(WriteError::Backend(e)) => Err(format!("unexpected backend error: {e}")),
        other => Ok(other),
    }
}

/// Writes `req`, which must apply and return `expected`.
async fn must_write_queue(
    ctx: &Ctx,
    req: QueueRequest,
    expected: &LockRecord,
) -> Result<LockRecord, String> {
    let what = format!(
        "write_queue of {:?} at {:?}/{:?}",
        req.key, req.version, req.revision
    );
    let stored = write_queue(ctx, req)
        .await?
        .map_err(|e| format!("{what} should apply but failed: {e}"))?;
    ensure!(
        &stored == expected,
        "{what} returned {stored:?}, expected {expected:?}"
    );
    Ok(stored)
}

/// Writes `req`, which must fail its condition, and checks what came back
/// against `stored` (the record as it is) where the backend returns it.
async fn must_conflict_queue(
    ctx: &Ctx,
    req: QueueRequest,
    stored: Option<&LockRecord>,
) -> Result<(), String> {
    let what = format!(
        "write_queue of {:?} at {:?}/{:?}",
        req.key, req.version, req.revision
    );
    match write_queue(ctx, req).await? {
        Ok(r) => Err(format!(
            "{what} should fail its condition but applied: {r:?}"
        )),
        Err(WriteError::ConditionFailed { current }) => {
            let returns = ctx.backend.capabilities().returns_current_on_conflict;
            ensure!(
                !returns || current.as_ref() == stored,
                "{what} failed, returning {current:?}; expected the stored record {stored:?}"
            );
            ensure!(
                current.is_none() || current.as_ref() == stored,
                "{what} failed, returning {current:?}, which is not the stored record {stored:?}"
            );
            Ok(())
        }
        Err(e) => Err(format!("{what}: unexpected error {e}")),
    }
}

/// A record with every field set: a lease, a host, a token, a payload.
async fn full_record(ctx: &Ctx, key: &str) -> Result<LockRecord, String> {
    let mut req = request(key, Condition::Absent, next());
    req.lease_duration = Duration::from_millis(2_500);
    req.payload = Some(Bytes::from_static(b"\x00\xffholder"));
    req.host = "holder".to_owned();
    must_write(ctx, req).await
}

pub(super) async fn write_queue_applies_on_version_and_revision(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-apply");
    let fresh = full_record(ctx, &key).await?;
    ensure!(
        fresh.queue == WaitQueue::default(),
        "a record written with QueueUpdate::Keep over nothing has queue {:?}, expected an empty one without revision",
        fresh.queue
    );
    // No revision yet: the condition is "no revision stored".
    let req = enqueue(&key, &fresh, entry("a", None));
    let first = must_write_queue(ctx, req.clone(), &req.record_over(&fresh)).await?;
    must_read(ctx, &key, &first, "the record with its first queue entry").await?;
    // Then on the revision the first write stored.
    let req = enqueue(&key, &first, entry("b", Some("10.1.2.3:4567")));
    let second = must_write_queue(ctx, req.clone(), &req.record_over(&first)).await?;
    must_read(ctx, &key, &second, "the record with two queue entries").await
}

pub(super) async fn write_queue_fails_on_wrong_version(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-version");
    let rec = full_record(ctx, &key).await?;
    let mut req = enqueue(&key, &rec, entry("a", None));
    req.version = Version::random();
    must_conflict_queue(ctx, req, Some(&rec)).await?;
    must_read(
        ctx,
        &key,
        &rec,
        "the record as before the failed queue write",
    )
    .await?;
    // A record that has moved on: the old version no longer matches, even
    // with the right (absent) revision.
    let moved = must_write(ctx, update(&key, &rec, TokenUpdate::Keep)).await?;
    must_conflict_queue(ctx, enqueue(&key, &rec, entry("a", None)), Some(&moved)).await?;
    must_read(
        ctx,
        &key,
        &moved,
        "the record as before the failed queue write",
    )
    .await
}

pub(super) async fn write_queue_fails_on_wrong_revision(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-revision");
    let rec = full_record(ctx, &key).await?;
    // A revision where none is stored.
    let mut req = enqueue(&key, &rec, entry("a", None));
    req.revision = Some(Version::random());
    must_conflict_queue(ctx, req, Some(&rec)).await?;
    must_read(
        ctx,
        &key,
        &rec,
        "the record as before the failed queue write",
    )
    .await?;
    // No revision where one is stored (a waiter that read before the queue
    // was first written), and a stale one.
    let req = enqueue(&key, &rec, entry("a", None));
    let queued = must_write_queue(ctx, req.clone(), &req.record_over(&rec)).await?;
    must_conflict_queue(ctx, enqueue(&key, &rec, entry("b", None)), Some(&queued)).await?;
    let req = enqueue(&key, &queued, entry("b", None));
    let again = must_write_queue(ctx, req.clone(), &req.record_over(&queued)).await?;
    must_conflict_queue(ctx, enqueue(&key, &queued, entry("c", None)), Some(&again)).await?;
    must_read(
        ctx,
        &key,
        &again,
        "the record as before the failed queue writes",
    )
    .await
}

pub(super) async fn write_queue_fails_on_absent_record(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-absent");
    let req = QueueRequest {
        key: key.clone(),
        version: Version::random(),
        revision: None,
        queue: WaitQueue::default().with(entry("a", None)),
    };
    must_conflict_queue(ctx, req, None).await?;
    let got = read(ctx, &key).await?;
    ensure!(
        got.is_none(),
        "a failed queue write created a record: {got:?}"
    );
    // And after a delete: the version the waiter saw is gone with the record.
    let rec = full_record(ctx, &key).await?;
    ctx.backend
        .delete(&key, &rec.version)
        .await
        .map_err(|e| format!("delete failed: {e}"))?;
    must_conflict_queue(ctx, enqueue(&key, &rec, entry("a", None)), None).await?;
    let got = read(ctx, &key).await?;
    ensure!(
        got.is_none(),
        "a failed queue write created a record: {got:?}"
    );
    Ok(())
}

pub(super) async fn write_queue_changes_only_the_queue(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-only");
    let mut req = request(&key, Condition::Absent, next());
    req.lease_duration = Duration::from_millis(2_500);
    req.payload = Some(Bytes::from_static(b"\x00\xffholder"));
    req.host = "holder".to_owned();
    req.granted_to = Some("granted-waiter".to_owned());
    let rec = must_write(ctx, req).await?;
    let req = enqueue(&key, &rec, entry("w", Some("192.0.2.9:9")));
    let stored = must_write_queue(ctx, req.clone(), &req.record_over(&rec)).await?;
    let unchanged = LockRecord {
        queue: rec.queue.clone(),
        ..stored.clone()
    };
    ensure!(
        unchanged == rec,
        "write_queue changed more than the queue: before {rec:?}, after {stored:?}"
    );
    must_read(ctx, &key, &stored, "the record with only its queue changed").await?;
    // Also on a released record (a grant may sit on one).
    let mut release = update(&key, &stored, TokenUpdate::Keep);
    release.released = true;
    release.lease_duration = Duration::ZERO;
    release.queue = QueueUpdate::Keep;
    let released = must_write(ctx, release).await?;
    let req = enqueue(&key, &released, entry("late", None));
    let stored = must_write_queue(ctx, req.clone(), &req.record_over(&released)).await?;
    ensure!(
        stored.released && stored.lease_duration == Duration::ZERO,
        "write_queue on a released record changed it: {stored:?}"
    );
    must_read(ctx, &key, &stored, "the released record with its queue").await
}

pub(super) async fn queue_entries_round_trip(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-entries");
    let rec = full_record(ctx, &key).await?;
    let entries = vec![
        entry("z-first", Some("192.0.2.1:7001")),
        entry("a-second", None),
        entry("m-third", Some("[2001:db8::1]:7002")),
        QueueEntry {
            id: "h\u{e9}-fourth".to_owned(),
            host: "host-\u{e9} \u{1f512}".to_owned(),
            wake: None,
            poll: Some(std::time::Duration::from_millis(1)),
        },
    ];
    let req = QueueRequest {
        key: key.clone(),
        version: rec.version.clone(),
        revision: None,
        queue: WaitQueue {
            revision: Some(Version::random()),
            entries: entries.clone(),
        },
    };
    let stored = must_write_queue(ctx, req.clone(), &req.record_over(&rec)).await?;
    ensure!(
        stored.queue.entries == entries,
        "entries came back as {:?}, expected {entries:?} in that order",
        stored.queue.entries
    );
    must_read(ctx, &key, &stored, "the record with four entries").await?;
    // Emptying the queue: it reads back empty, with the new revision.
    let req = QueueRequest {
        key: key.clone(),
        version: stored.version.clone(),
        revision: stored.queue.revision.clone(),
        queue: WaitQueue {
            revision: Some(Version::random()),
            entries: Vec::new(),
        },
    };
    let emptied = must_write_queue(ctx, req.clone(), &req.record_over(&stored)).await?;
    must_read(ctx, &key, &emptied, "the record with an emptied queue").await
}

pub(super) async fn protocol_write_keeps_or_sets_the_queue(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-protocol");
    let rec = full_record(ctx, &key).await?;
    let req = enqueue(&key, &rec, entry("a", Some("192.0.2.1:7001")));
    let queued = must_write_queue(ctx, req.clone(), &req.record_over(&rec)).await?;
    let req = enqueue(&key, &queued, entry("b", None));
    let queued = must_write_queue(ctx, req.clone(), &req.record_over(&queued)).await?;
    // A heartbeat (Keep) leaves the queue and its revision.
    let heartbeat = update(&key, &queued, TokenUpdate::Keep);
    let expected = heartbeat.record_over(Some(&queued));
    let beat = must_write(ctx, heartbeat).await?;
    ensure!(
        beat == expected && beat.queue == queued.queue,
        "a write with QueueUpdate::Keep stored {beat:?}, expected {expected:?} (the queue kept)"
    );
    must_read(ctx, &key, &beat, "the record after a Keep write").await?;
    // A release granting the first waiter (Set) replaces them.
    let mut release = request(
        &key,
        Condition::QueueIs {
            version: beat.version.clone(),
            revision: beat.queue.revision.clone(),
        },
        TokenUpdate::Keep,
    );
    release.released = true;
    release.lease_duration = Duration::from_secs(3);
    release.queue = QueueUpdate::Set(beat.queue.without("a"));
    release.granted_to = Some("a".to_owned());
    let expected = release.record_over(Some(&beat));
    let granted = must_write(ctx, release).await?;
    ensure!(
        granted == expected,
        "a write with QueueUpdate::Set stored {granted:?}, expected {expected:?}"
    );
    must_read(ctx, &key, &granted, "the record after a Set write").await?;
    // Set to an empty queue without a revision: it reads back as no queue.
    let mut clear = update(&key, &granted, TokenUpdate::Keep);
    clear.queue = QueueUpdate::Set(WaitQueue::default());
    let expected = clear.record_over(Some(&granted));
    let cleared = must_write(ctx, clear).await?;
    ensure!(
        cleared == expected && cleared.queue == WaitQueue::default(),
        "a write of an empty queue without revision stored {cleared:?}, expected {expected:?}"
    );
    must_read(ctx, &key, &cleared, "the record after clearing the queue").await?;
    // A queue write on "no revision" applies again.
    let req = enqueue(&key, &cleared, entry("c", None));
    must_write_queue(ctx, req.clone(), &req.record_over(&cleared)).await?;
    // Keep over an absent record (the record deleted meanwhile) is an empty queue.
    let fresh_key = ctx.key("queue-protocol-fresh");
    let mut create = request(&fresh_key, Condition::Vacant, next());
    create.queue = QueueUpdate::Keep;
    let created = must_write(ctx, create).await?;
    ensure!(
        created.queue == WaitQueue::default(),
        "Keep over no record stored queue {:?}",
        created.queue
    );
    Ok(())
}

pub(super) async fn queue_is_condition(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-is");
    let queue_is = |r: &LockRecord| Condition::QueueIs {
        version: r.version.clone(),
        revision: r.queue.revision.clone(),
    };
    // Absent record: fails, creates nothing.
    must_conflict(
        ctx,
        request(
            &key,
            Condition::QueueIs {
                version: Version::random(),
                revision: None,
            },
            next(),
        ),
    )
    .await?;
    ensure!(
        read(ctx, &key).await?.is_none(),
        "a failed QueueIs write created a record"
    );
    let rec = full_record(ctx, &key).await?;
    // No revision stored: holds for None, fails for Some.
    let wrong_revision = Condition::QueueIs {
        version: rec.version.clone(),
        revision: Some(Version::random()),
    };
    let current = must_conflict(ctx, request(&key, wrong_revision, TokenUpdate::Keep)).await?;
    ensure!(
        current.is_none() || current.as_ref() == Some(&rec),
        "a failed QueueIs write returned {current:?}, not the stored {rec:?}"
    );
    let wrong_version = Condition::QueueIs {
        version: Version::random(),
        revision: None,
    };
    must_conflict(ctx, request(&key, wrong_version, TokenUpdate::Keep)).await?;
    must_read(ctx, &key, &rec, "the record as before the failed writes").await?;
    let held = must_write(ctx, request(&key, queue_is(&rec), TokenUpdate::Keep)).await?;
    // A revision stored: holds for it, fails for None, another, or the old version.
    let req = enqueue(&key, &held, entry("a", None));
    let queued = must_write_queue(ctx, req.clone(), &req.record_over(&held)).await?;
    let no_revision = Condition::QueueIs {
        version: queued.version.clone(),
        revision: None,
    };
    must_conflict(ctx, request(&key, no_revision, TokenUpdate::Keep)).await?;
    let other_revision = Condition::QueueIs {
        version: queued.version.clone(),
        revision: Some(Version::random()),
    };
    must_conflict(ctx, request(&key, other_revision, TokenUpdate::Keep)).await?;
    must_conflict(ctx, request(&key, queue_is(&rec), TokenUpdate::Keep)).await?;
    must_read(ctx, &key, &queued, "the record as before the failed writes").await?;
    let req = request(&key, queue_is(&queued), TokenUpdate::Keep);
    let expected = req.record_over(Some(&queued));
    let stored = must_write(ctx, req).await?;
    ensure!(
        stored == expected,
        "a QueueIs write stored {stored:?}, expected {expected:?}"
    );
    // QueueIs holds whatever `released` says.
    let mut release = request(&key, queue_is(&stored), TokenUpdate::Keep);
    release.released = true;
    let released = must_write(ctx, release).await?;
    must_write(ctx, request(&key, queue_is(&released), next())).await?;
    Ok(())
}

pub(super) async fn granted_to_round_trips(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("granted");
    let rec = must_write(ctx, request(&key, Condition::Absent, next())).await?;
    ensure!(
        rec.granted_to.is_none(),
        "a write with granted_to None stored {:?}",
        rec.granted_to
    );
    let mut grant = update(&key, &rec, TokenUpdate::Keep);
    grant.released = true;
    grant.granted_to = Some("waiter-\u{e9}-1".to_owned());
    let granted = must_write(ctx, grant).await?;
    ensure!(
        granted.granted_to.as_deref() == Some("waiter-\u{e9}-1"),
        "granted_to stored as {:?}",
        granted.granted_to
    );
    must_read(ctx, &key, &granted, "the granted record").await?;
    // The grantee takes it: a write with None removes the grant.
    let take = update(&key, &granted, next());
    let taken = must_write(ctx, take).await?;
    ensure!(
        taken.granted_to.is_none(),
        "a write with granted_to None kept {:?}",
        taken.granted_to
    );
    must_read(ctx, &key, &taken, "the record without its grant").await
}

pub(super) async fn concurrent_queue_writes_have_one_winner(ctx: &Ctx) -> Result<(), String> {
    let key = ctx.key("queue-cas");
    let base = full_record(ctx, &key).await?;
    let req = enqueue(&key, &base, entry("first", None));
    let base = must_write_queue(ctx, req.clone(), &req.record_over(&base)).await?;
    let attempts = (0..16).map(|i| {
        let backend = ctx.backend.clone();
        let req = enqueue(&key, &base, entry(&format!("racer-{i}"), None));
        async move { backend.write_queue(req).await }
    });
    let results = futures::future::join_all(attempts).await;
    for r in &results {
        if let Err(WriteError::Backend(e)) = r {
            return Err(format!("backend error under contention: {e}"));
        }
    }
    let winners: Vec<&LockRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    ensure!(
        winners.len() == 1,
        "{} of 16 concurrent queue writes on one revision applied; exactly one must",
        winners.len()
    );
    let winner = winners[0];
    ensure!(
        winner.queue.entries.len() == 2 && winner.version == base.version,
        "the winner stored {winner:?}"
    );
    must_read(ctx, &key, winner, "the winner's record").await
}
