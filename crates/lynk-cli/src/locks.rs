//! The lock commands: `locks`, `describe`, `acquire` and `release`.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use lynk_core::{LockBackend, LockClient, LockError, LockRecord, Version, WriteError};
use serde_json::{json, Value};

use crate::cli::{AcquireArgs, Global, LockArgs, OutputFormat, ReleaseArgs};
use crate::connect::{check_names, checked_backend};
use crate::exit::{self, Failure};
use crate::output::{fmt_duration, print_json, say, shell_quote, Printer};

/// A record as JSON.
fn record_json(r: &LockRecord) -> Value {
    json!({
        "lock": r.key,
        "state": if r.released { "released" } else { "held" },
        "holder": r.host,
        "holder_detail": r.holder_detail,
        "lease_seconds": r.lease_duration.as_secs_f64(),
        "fencing_token": r.fencing_token.map(|t| t.get()),
        "version": r.version.as_str(),
        "payload_bytes": r.payload.as_ref().map_or(0, |p| p.len()),
        "payload": r.payload.as_ref().and_then(|p| std::str::from_utf8(p).ok()),
    })
}

/// The host, and what tells holders on it apart (`web-1 (pid 4242 nightly)`).
fn holder_text(r: &LockRecord) -> String {
    match &r.holder_detail {
        Some(d) => format!("{} ({d})", r.host),
        None => r.host.clone(),
    }
}

fn token_text(r: &LockRecord) -> String {
    r.fencing_token
        .map_or_else(|| "-".to_owned(), |t| t.to_string())
}

fn payload_text(r: &LockRecord) -> String {
    r.payload
        .as_ref()
        .map_or_else(|| "-".to_owned(), |p| format!("{} B", p.len()))
}

/// The failure of `--group` under a layout without lock groups.
pub fn no_groups(global: &Global) -> Result<(), Failure> {
    let layout = crate::connect::layout(global)?;
    if layout.has_groups() {
        return Ok(());
    }
    Err(Failure::new(
        exit::USAGE,
        format!("--group needs a table layout with lock groups, and this one has none ({layout})"),
    )
    .hint("name the table's sort key and group the names: --sort-key NAME --grouped (or sort_key and grouped = true in the layout file)"))
}

/// `lynk locks TABLE [--group G]`.
pub async fn list(global: &Global, table: &str, group: Option<&str>) -> Result<i32, Failure> {
    if group.is_some() {
        no_groups(global)?;
    }
    let backend = checked_backend(global, table).await?;
    let listing = match group {
        Some(g) => backend.admin().list_group(table, g).await?,
        None => backend.admin().list_locks(table).await?,
    };
    for m in &listing.malformed {
        Printer::new(global).warn(m);
    }
    if listing.skipped > 0 {
        tracing::info!(
            skipped = listing.skipped,
            "items that are not lock items under the table layout (yours) were skipped"
        );
    }
    if global.output == OutputFormat::Json {
        let locks: Vec<Value> = listing
            .locks
            .iter()
            .map(|e| {
                let mut v = record_json(&e.record);
                v["ttl_expires_at"] = json!(e.expires_at);
                v
            })
            .collect();
        let mut v = json!({"table": table, "locks": locks, "malformed": listing.malformed, "skipped": listing.skipped});
        if let Some(g) = group {
            v["group"] = json!(g);
        }
        print_json(&v);
        return Ok(exit::OK);
    }
    if listing.locks.is_empty() {
        match group {
            Some(g) => say(format!("No locks in group {g:?} of table {table}.")),
            None => say(format!("No locks in table {table}.")),
        }
        return Ok(exit::OK);
    }
    let rows: Vec<[String; 6]> = listing
        .locks
        .iter()
        .map(|e| {
            let r = &e.record;
            [
                r.key.clone(),
                if r.released { "released" } else { "held" }.to_owned(),
                if r.released {
                    "-".to_owned()
                } else {
                    holder_text(r)
                },
                if r.released {
                    "-".to_owned()
                } else {
                    fmt_duration(r.lease_duration)
                },
                token_text(r),
                payload_text(r),
            ]
        })
        .collect();
    let header = ["LOCK", "STATE", "HOLDER", "LEASE", "TOKEN", "PAYLOAD"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    say(line(header));
    for row in &rows {
        say(line(row.each_ref().map(String::as_str)));
    }
    Ok(exit::OK)
}

/// `lynk describe TABLE LOCK`.
pub async fn describe(global: &Global, args: LockArgs) -> Result<i32, Failure> {
    check_names(global, [&args.lock])?;
    let backend = checked_backend(global, &args.table).await?;
    let entry = backend
        .admin()
        .describe_lock(&args.table, &args.lock)
        .await?;
    let expires_at = entry.as_ref().and_then(|e| e.expires_at);
    let record = entry.map(|e| e.record);
    match (global.output, record) {
        (OutputFormat::Json, None) => {
            print_json(&json!({"table": args.table, "lock": args.lock, "exists": false}))
        }
        (OutputFormat::Json, Some(r)) => {
            let mut v = record_json(&r);
            v["ttl_expires_at"] = json!(expires_at);
            v["table"] = json!(args.table);
            v["exists"] = json!(true);
            print_json(&v);
        }
        (OutputFormat::Text, None) => say(format!(
            "Lock {:?} has no record in table {}: it is free.",
            args.lock, args.table
        )),
        (OutputFormat::Text, Some(r)) => {
            say(format!("lock:          {}", r.key));
            say(format!(
                "state:         {}",
                if r.released {
                    "released (free)"
                } else {
                    "held"
                }
            ));
            say(format!(
                "{:<15}{}",
                if r.released {
                    "last holder:"
                } else {
                    "holder:"
                },
                holder_text(&r)
            ));
            say(format!(
                "lease:         {}",
                if r.released {
                    "-".to_owned()
                } else {
                    fmt_duration(r.lease_duration)
                }
            ));
            say(format!(
                "fencing token: {}",
                r.fencing_token.map_or_else(
                    || "none (written by a client without tokens, e.g. the original Python lynk)"
                        .to_owned(),
                    |t| t.to_string()
                )
            ));
            say(format!("version:       {}", r.version));
            let payload = match &r.payload {
                None => "none".to_owned(),
                Some(p) => match std::str::from_utf8(p) {
                    Ok(s) if s.len() <= 200 => format!("{} bytes: {s:?}", p.len()),
                    _ => format!("{} bytes", p.len()),
                },
            };
            say(format!("payload:       {payload}"));
        }
    }
    Ok(exit::OK)
}

/// Acquires `lock` with `wait`: forever if `None`, one try if zero.
pub async fn acquire_with_wait(
    client: &LockClient,
    lock: &lynk_core::Lock,
    wait: Option<Duration>,
) -> Result<lynk_core::LockGuard, LockError> {
    match wait {
        None => lock.acquire().await,
        Some(w) if w.is_zero() => match lock.try_acquire().await? {
            Some(g) => Ok(g),
            None => Err(crate::run::busy_by(
                lock.name(),
                crate::run::holder_of(client, lock.name()).await,
            )),
        },
        Some(w) => lock.acquire_timeout(w).await,
    }
}

/// Whether `e` is a wait that ran out while the store kept failing.
pub fn store_failed(e: &LockError) -> bool {
    matches!(
        e,
        LockError::NotGranted {
            last_error: Some(_),
            ..
        }
    )
}

/// The message for a lock that was not granted.
pub fn not_granted(e: &LockError, table: &str, lock: &str) -> Failure {
    if store_failed(e) {
        return Failure::from_lock(e).hint(
            "DynamoDB failed or did not answer while lynk waited; check the network path and any endpoint override, then retry",
        );
    }
    Failure::from_lock(e).hint(format!(
        "see who holds it: lynk describe {table} {}",
        shell_quote(lock)
    ))
}

/// `lynk acquire TABLE LOCK --lease L`.
pub async fn acquire(global: &Global, args: AcquireArgs) -> Result<i32, Failure> {
    check_names(global, [&args.lock])?;
    let backend = checked_backend(global, &args.table).await?;
    let mut builder = LockClient::builder(backend.clone()).default_lease(args.lease);
    if let Some(label) = &global.label {
        builder = builder.holder_label(label.clone());
    }
    let client = builder.build()?;
    let mut lock = client.create_lock(&args.lock).with_lease(args.lease);
    if let Some(p) = &args.payload {
        lock = lock.with_payload(p.clone().into_bytes());
    }
    let target = format!("lock {:?}", args.lock);
    let guard = tokio::select! {
        never = crate::progress::report(global, &client, &target, Some(&args.lock)) => match never {},
        g = acquire_with_wait(&client, &lock, args.wait) => match g {
            Ok(g) => g,
            Err(e @ LockError::NotGranted { .. }) => return Err(not_granted(&e, &args.table, &args.lock)),
            Err(e) => return Err(e.into()),
        },
        _ = tokio::signal::ctrl_c() => {
            return Err(Failure::new(exit::CANCELLED, "interrupted while waiting for the lock; nothing was acquired"));
        }
    };
    let token = guard.fencing_token();
    // The version release needs; then keep the lock after exiting (no
    // release, no more heartbeats).
    let version = guard.record_version().await;
    guard.detach();
    let release = format!(
        "lynk release {} {} --version {}{}",
        args.table,
        shell_quote(&args.lock),
        version,
        crate::layout::flag_words(&global.layout)
    );
    match global.output {
        OutputFormat::Json => print_json(&json!({
            "table": args.table,
            "lock": args.lock,
            "fencing_token": token.get(),
            "version": version.as_str(),
            "lease_seconds": args.lease.as_secs_f64(),
            "host": client.config().host_identifier,
            "release_command": release,
        })),
        OutputFormat::Text => {
            say(format!(
                "Acquired lock {:?} in table {} for {} (nothing heartbeats it: release it before then)",
                args.lock,
                args.table,
                fmt_duration(args.lease)
            ));
            say(format!("fencing token: {token}"));
            say(format!("version:       {version}"));
            say(format!("release with:  {release}"));
        }
    }
    Ok(exit::OK)
}

fn describe_current(current: Option<&LockRecord>) -> String {
    match current {
        None => "it has no record".to_owned(),
        Some(r) if r.released => "it has been released".to_owned(),
        Some(r) => format!(
            "it is held by {} with fencing token {}",
            r.host,
            token_text(r)
        ),
    }
}

/// `lynk release TABLE LOCK (--version V | --token T | --force [--yes])`.
pub async fn release(global: &Global, args: ReleaseArgs) -> Result<i32, Failure> {
    if args.force
        && !args.yes
        && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
    {
        return Err(Failure::new(
            exit::USAGE,
            "refusing to force-release without confirmation: stdin is not a terminal",
        )
        .hint("add --yes if you are sure nobody is using the lock"));
    }
    if let Some(group) = &args.group {
        return release_group(global, &args, group).await;
    }
    let Some(lock) = args.lock.as_deref() else {
        return Err(Failure::new(
            exit::USAGE,
            "name the lock to release, or a group with --group GROUP --force",
        ));
    };
    check_names(global, args.lock.iter())?;
    let backend = checked_backend(global, &args.table).await?;
    let client = LockClient::builder(backend.clone()).build()?;
    let done = |previous: &LockRecord, forced: bool| {
        match global.output {
            OutputFormat::Json => print_json(&json!({
                "table": args.table,
                "lock": lock,
                "released": true,
                "forced": forced,
                "previous_holder": previous.host,
                "fencing_token": previous.fencing_token.map(|t| t.get()),
            })),
            OutputFormat::Text => say(format!(
                "Released lock {lock:?} (held by {}, fencing token {})",
                previous.host,
                token_text(previous)
            )),
        }
        Ok(exit::OK)
    };
    let lost = |what: String, current: Option<&LockRecord>| {
        Failure::new(
            exit::LOST,
            format!(
                "lock {lock:?} is not held {what} (it may never have been, or was released or taken over since): {}; nothing was changed",
                describe_current(current)
            ),
        )
    };
    if let Some(v) = &args.version {
        let version = Version::from_string(v.clone());
        // The holder to report: the record read before, if it is the one
        // released; else (it changed in between) the released record.
        let previous = backend.read(lock).await?;
        return match client.release_version(lock, &version).await {
            Ok(released) => done(
                &previous
                    .filter(|p| p.version == version)
                    .unwrap_or(released),
                false,
            ),
            Err(WriteError::ConditionFailed { current }) => {
                let current = match current {
                    Some(c) => Some(c),
                    None => backend.read(lock).await?,
                };
                Err(lost(format!("with version {v}"), current.as_ref()))
            }
            Err(WriteError::Backend(e)) => Err(e.into()),
        };
    }
    // By token, or forced: read the holder, then release that version.
    let mut confirmed = args.yes || !args.force;
    let mut confirmed_for = None;
    for _ in 0..5 {
        let current = backend.read(lock).await?;
        let held = match &current {
            Some(r) if !r.released => r.clone(),
            _ => {
                if args.force {
                    match global.output {
                        OutputFormat::Json => print_json(&json!({
                            "table": args.table, "lock": lock, "released": false, "forced": true,
                            "note": "the lock was not held",
                        })),
                        OutputFormat::Text => {
                            say(format!("Lock {lock:?} is not held; nothing to release."))
                        }
                    }
                    return Ok(exit::OK);
                }
                return Err(lost(
                    format!("with fencing token {}", args.token.unwrap_or_default()),
                    current.as_ref(),
                ));
            }
        };
        if let Some(t) = args.token {
            if held.fencing_token.map(|x| x.get()) != Some(t) {
                return Err(lost(format!("with fencing token {t}"), Some(&held)));
            }
        }
        if args.force && !args.yes && confirmed_for.is_some_and(|t| t != held.fencing_token) {
            confirmed = false; // someone else holds it now: ask again
        }
        if !confirmed {
            eprint!(
                "Force-release lock {lock:?} in table {}, held by {} (fencing token {}, lease {})? The holder may still be working. [y/N] ",
                args.table,
                held.host,
                token_text(&held),
                fmt_duration(held.lease_duration)
            );
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                return Err(Failure::new(exit::CANCELLED, "not released"));
            }
            confirmed = true;
            confirmed_for = Some(held.fencing_token);
        }
        match client.release_version(lock, &held.version).await {
            Ok(_) => return done(&held, args.force),
            Err(WriteError::ConditionFailed { .. }) => {
                // A heartbeat changed the version: try again with the new one
                // (the token check above keeps it the same acquisition).
                continue;
            }
            Err(WriteError::Backend(e)) => return Err(e.into()),
        }
    }
    Err(Failure::new(
        exit::FAILURE,
        format!("lock {lock:?} kept changing while it was being released; try again"),
    ))
}

/// One line of a held record for the group release's confirmation.
fn held_line(r: &LockRecord) -> String {
    format!(
        "  {}: held by {}, fencing token {}, lease {}",
        r.key,
        holder_text(r),
        token_text(r),
        fmt_duration(r.lease_duration)
    )
}

/// `lynk release TABLE --group G --force [--yes]`: force-releases every
/// held lock of the group (lynk-dynamo's `release_group`), one line (one
/// JSON object) per lock. Exit 0 when every lock is released or was not
/// held; otherwise the code of the first failure (1 for a lock that
/// changed hands while being released).
async fn release_group(global: &Global, args: &ReleaseArgs, group: &str) -> Result<i32, Failure> {
    use lynk_dynamo::ReleaseOutcome;
    no_groups(global)?;
    let table = args.table.as_str();
    let backend = checked_backend(global, table).await?;
    let admin = backend.admin();
    let nothing = || {
        match global.output {
            OutputFormat::Json => print_json(&json!({
                "table": table, "group": group, "forced": true, "locks": [], "released": 0, "not_released": 0,
            })),
            OutputFormat::Text => say(format!(
                "No held locks in group {group:?} of table {table}; nothing to release."
            )),
        }
        Ok(exit::OK)
    };
    if !args.yes {
        // A terminal (checked by the caller): show what is held, ask once.
        let listing = admin.list_group(table, group).await?;
        let held: Vec<&LockRecord> = listing
            .locks
            .iter()
            .map(|e| &e.record)
            .filter(|r| !r.released)
            .collect();
        if held.is_empty() {
            return nothing();
        }
        eprintln!(
            "Force-release the {} held lock(s) of group {group:?} in table {table}?",
            held.len()
        );
        for r in &held {
            eprintln!("{}", held_line(r));
        }
        eprint!("Their holders may still be working; a lock of the group taken meanwhile is released too. [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(Failure::new(exit::CANCELLED, "not released"));
        }
    }
    let report = admin.release_group(table, group).await?;
    if report.is_empty() {
        return nothing();
    }
    let mut code = exit::OK;
    let mut released = 0usize;
    let mut objects = Vec::new();
    for r in &report {
        let name = r.name.as_str();
        let (line, object) = match &r.outcome {
            ReleaseOutcome::Released { previous } => {
                released += 1;
                (
                    format!(
                        "Released lock {name:?} (held by {}, fencing token {})",
                        previous.host,
                        token_text(previous)
                    ),
                    json!({"lock": name, "outcome": "released", "previous_holder": previous.host,
                           "fencing_token": previous.fencing_token.map(|t| t.get())}),
                )
            }
            ReleaseOutcome::NotHeld => (
                format!("Lock {name:?} is not held; nothing to release."),
                json!({"lock": name, "outcome": "not_held"}),
            ),
            ReleaseOutcome::Changed { current } => {
                if code == exit::OK {
                    code = exit::FAILURE;
                }
                (
                    format!(
                        "Lock {name:?} was not released: it changed while being released ({}); run the release again",
                        describe_current(current.as_ref())
                    ),
                    json!({"lock": name, "outcome": "changed",
                           "current_holder": current.as_ref().filter(|c| !c.released).map(|c| c.host.clone()),
                           "current_fencing_token": current.as_ref().and_then(|c| c.fencing_token).map(|t| t.get())}),
                )
            }
            ReleaseOutcome::Failed { kind, error } => {
                if code == exit::OK || code == exit::FAILURE {
                    code = exit::for_kind(*kind);
                }
                (
                    format!("Lock {name:?} was not released: {error}"),
                    json!({"lock": name, "outcome": "failed", "error": error}),
                )
            }
            other => {
                if code == exit::OK {
                    code = exit::FAILURE;
                }
                (
                    format!("Lock {name:?}: {other:?}"),
                    json!({"lock": name, "outcome": "unknown", "detail": format!("{other:?}")}),
                )
            }
        };
        match global.output {
            OutputFormat::Text => say(line),
            OutputFormat::Json => objects.push(object),
        }
    }
    let not_released = report
        .iter()
        .filter(|r| {
            !matches!(
                r.outcome,
                ReleaseOutcome::Released { .. } | ReleaseOutcome::NotHeld
            )
        })
        .count();
    if global.output == OutputFormat::Json {
        print_json(&json!({
            "table": table, "group": group, "forced": true, "locks": objects,
            "released": released, "not_released": not_released,
        }));
    }
    if code != exit::OK {
        Failure::new(
            code,
            format!(
                "{not_released} of the {} locks of group {group:?} were not released (see above); run `lynk release {table} --group {} --force` again",
                report.len(),
                shell_quote(group)
            ),
        )
        .print();
    }
    Ok(code)
}

/// `lynk describe TABLE LOCK --watch`: a line per change of the record, and
/// one when a holder's record has stood unchanged past its lease; on a
/// terminal a live line in between. Until SIGINT, SIGTERM or SIGHUP (exit 0).
pub async fn watch(global: &Global, args: LockArgs) -> Result<i32, Failure> {
    use lynk_core::{Clock, SystemClock};
    use std::io::Write;
    check_names(global, [&args.lock])?;
    let backend = checked_backend(global, &args.table).await?;
    let admin = backend.admin();
    let mut signals = crate::run::Signals::install()?;
    let terminal = std::io::stdout().is_terminal() && global.output == OutputFormat::Text;
    let clock = SystemClock;
    // The version read last, since when (this process's clock), and whether
    // its staleness was reported.
    let mut last: Option<(Option<Version>, bool, std::time::Instant, bool)> = None;
    let lock = args.lock.as_str();
    let mut drawn = false;
    loop {
        let record = admin
            .describe_lock(&args.table, lock)
            .await?
            .map(|e| e.record);
        let now = clock.now();
        let key = record.as_ref().map(|r| r.version.clone());
        let released = record.as_ref().is_some_and(|r| r.released);
        let changed = last
            .as_ref()
            .is_none_or(|(v, rel, _, _)| *v != key || *rel != released);
        if changed {
            last = Some((key, released, now, false));
        }
        let (_, _, since, reported) = last.as_mut().expect("set above");
        let unchanged = now.saturating_duration_since(*since);
        let stale = record
            .as_ref()
            .is_some_and(|r| !r.released && unchanged > r.lease_duration.mul_f64(1.01));
        let newly_stale = stale && !*reported;
        if newly_stale {
            *reported = true;
        }
        let state = match &record {
            None => "no record (free)".to_owned(),
            Some(r) if r.released => format!("released (free), last holder {}", holder_text(r)),
            Some(r) => format!(
                "held by {}, token {}, version {} unchanged for {} of lease {}{}",
                holder_text(r),
                token_text(r),
                &r.version.as_str()[..r.version.as_str().len().min(8)],
                fmt_duration(std::time::Duration::from_secs(unchanged.as_secs())),
                fmt_duration(r.lease_duration),
                if stale {
                    " (stale: a waiter may take it over)"
                } else {
                    ""
                }
            ),
        };
        if global.output == OutputFormat::Json {
            if changed || newly_stale {
                let mut v = match &record {
                    Some(r) => record_json(r),
                    None => json!({"lock": lock, "exists": false}),
                };
                v["unchanged_seconds"] = json!(unchanged.as_secs_f64());
                v["stale"] = json!(stale);
                say(serde_json::to_string(&v).unwrap_or_default());
            }
        } else if terminal {
            let mut out = std::io::stdout().lock();
            if changed && drawn {
                // Keep the previous state on its own line.
                let _ = writeln!(out);
            }
            drawn = true;
            let _ = write!(out, "\r\x1b[2K{lock}: {state}");
            let _ = out.flush();
        } else if changed || newly_stale {
            say(format!("{lock}: {state}"));
        }
        tokio::select! {
            _ = signals.any() => {
                if terminal {
                    say("");
                }
                return Ok(exit::OK);
            }
            _ = clock.sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
