//! `lynk run TABLE LOCK -- COMMAND...`: flock(1) across machines.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use lynk_core::{Clock, LockClient, LockError, SystemClock};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{Global, RunArgs};
use crate::connect::{checked_backend, unchecked_backend};
use crate::exit::{self, Failure};
use crate::locks::{acquire_with_wait, not_granted};
use crate::output::{fmt_duration, Printer};

/// The exit code a shell would report for `status`.
fn code_of(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => exit::FAILURE,
    }
}

fn send(pid: Option<u32>, sig: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        if let Err(e) = kill(Pid::from_raw(pid), sig) {
            tracing::debug!(pid, signal = %sig, error = %e, "could not signal the command");
        }
    }
}

fn signal_stream(kind: SignalKind) -> Result<tokio::signal::unix::Signal, Failure> {
    signal(kind).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("could not install a signal handler: {e}"),
        )
    })
}

/// Whether `e` may come from a missing or unusable table, which the table's
/// description explains better.
fn table_problem(e: &LockError) -> bool {
    use lynk_core::BackendErrorKind as K;
    match e {
        LockError::Backend { source, .. } => matches!(
            source.kind(),
            K::TableMissing | K::TableMisconfigured | K::InvalidRequest
        ),
        _ => false,
    }
}

/// How long `lynk run` waits for DynamoDB's first answer before it describes
/// the table to find out why there is none.
const FIRST_ANSWER: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves only if DynamoDB has not answered any of the client's requests
/// within [`FIRST_ANSWER`] and describing the table then fails: that failure
/// (unreachable endpoint, no such table, ...), instead of retrying forever.
/// Otherwise it never resolves. Costs no request while DynamoDB answers.
async fn unanswered(global: &Global, client: &LockClient, table: &str) -> Failure {
    SystemClock.sleep(FIRST_ANSWER).await;
    let m = client.metrics();
    if m.acquired == 0 && m.waits == 0 {
        if let Err(failure) = checked_backend(global, table).await {
            return failure;
        }
    }
    std::future::pending().await
}

/// Runs the command under the lock and returns the exit code.
pub async fn run(global: &Global, args: RunArgs) -> Result<i32, Failure> {
    // Handle these from the start, so an interrupt while waiting leaves cleanly
    // and one while the command runs does not kill lynk before it releases.
    let mut sigint = signal_stream(SignalKind::interrupt())?;
    let mut sigterm = signal_stream(SignalKind::terminate())?;
    let mut sighup = signal_stream(SignalKind::hangup())?;

    // No table check up front: it would be one more request on every run
    // (and every wait). A table problem shows as the first attempt's error,
    // and only then is the table described, for the precise message.
    let backend = unchecked_backend(global, &args.table).await?;
    let mut builder = LockClient::builder(backend).default_lease(args.lease);
    if let Some(listen) = args.wake_listen {
        let mut wake = lynk_core::WakeUps::new(listen).scope(args.table.clone());
        if let Some(advertise) = args.wake_advertise {
            wake = wake.advertise(advertise);
        }
        builder = builder.wake_ups(wake);
    }
    let client = builder.build()?;
    let mut lock = client.create_lock(&args.lock).with_lease(args.lease);
    if let Some(p) = &args.payload {
        lock = lock.with_payload(p.clone().into_bytes());
    }
    let interrupted = |what: &str| {
        Failure::new(
            exit::CANCELLED,
            format!(
                "{what} while waiting for lock {:?}; the command was not run",
                args.lock
            ),
        )
    };
    let guard = tokio::select! {
        failure = unanswered(global, &client, &args.table) => return Err(failure),
        g = acquire_with_wait(&lock, args.wait) => match g {
            Ok(g) => g,
            Err(e @ LockError::NotGranted { .. }) if crate::locks::store_failed(&e) => {
                return Err(not_granted(&e, &args.table, &args.lock).hint(
                    "the command was not run; DynamoDB failed or did not answer while lynk waited: check the network path and any endpoint override, then retry",
                ))
            }
            Err(e @ LockError::NotGranted { .. }) => {
                return Err(not_granted(&e, &args.table, &args.lock).hint(
                    "the command was not run; wait longer with --wait, or see who holds it with `lynk describe`",
                ))
            }
            Err(e) if table_problem(&e) => {
                checked_backend(global, &args.table).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        },
        _ = sigint.recv() => return Err(interrupted("interrupted")),
        _ = sigterm.recv() => return Err(interrupted("terminated")),
        _ = sighup.recv() => return Err(interrupted("hung up")),
    };
    let token = guard.fencing_token();
    tracing::info!(lock = %args.lock, %token, lease = ?args.lease, "acquired; starting the command");

    let mut command = tokio::process::Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("LYNK_FENCING_TOKEN", token.to_string())
        .env("LYNK_LOCK_NAME", &args.lock)
        .env("LYNK_TABLE", &args.table);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            };
            if let Err(r) = guard.release().await {
                tracing::warn!(error = %r, "release failed");
            }
            return Err(Failure::new(
                code,
                format!(
                    "could not run {:?}: {e}; the lock was released",
                    args.command[0]
                ),
            ));
        }
    };
    let pid = child.id();

    let lost = loop {
        tokio::select! {
            status = child.wait() => match status {
                Ok(status) => break Ok(status),
                Err(e) => break Err(e),
            },
            _ = guard.lost() => {
                let reason = guard
                    .lost_reason()
                    .map_or_else(|| "the lease ran out".to_owned(), |r| r.to_string());
                eprintln!(
                    "error: lock {:?} was lost ({reason}); stopping the command (SIGTERM, then SIGKILL after {})",
                    args.lock,
                    fmt_duration(args.grace)
                );
                send(pid, Signal::SIGTERM);
                let clock = SystemClock;
                tokio::select! {
                    _ = child.wait() => {}
                    _ = clock.sleep(args.grace) => {
                        eprintln!("error: the command did not stop within {}; killing it", fmt_duration(args.grace));
                        send(pid, Signal::SIGKILL);
                        let _ = child.wait().await;
                    }
                }
                drop(guard);
                return Ok(exit::LOST);
            }
            _ = sigterm.recv() => send(pid, Signal::SIGTERM),
            _ = sighup.recv() => send(pid, Signal::SIGHUP),
            // A terminal's Ctrl-C reaches the command directly (same process
            // group); lynk keeps waiting for it, to release afterwards.
            _ = sigint.recv() => {}
        }
    };
    let status = match lost {
        Ok(s) => s,
        Err(e) => {
            drop(guard);
            return Err(Failure::new(
                exit::FAILURE,
                format!("lost track of the command: {e}"),
            ));
        }
    };
    match guard.release().await {
        Ok(()) => Ok(code_of(status)),
        Err(e @ LockError::Lost { .. }) => Err(Failure::from_lock(&e).hint(format!(
            "the command finished (exit code {}), but the lease had been lost before",
            code_of(status)
        ))),
        Err(e) => {
            // The command's work is done; the lease expires on its own.
            Printer::new(global).warn(format!(
                "{e} (the lock is free again after its {} lease)",
                fmt_duration(args.lease)
            ));
            Ok(code_of(status))
        }
    }
}
