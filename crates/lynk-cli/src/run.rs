//! `lynk run TABLE LOCK... -- COMMAND...`: flock(1) across machines, over one
//! lock, a permit of a counting semaphore (`--permits N`), or several locks
//! at once; and the machinery every command-running subcommand shares
//! (`lynk leader run` too): signals, the wait for the lock, and the child
//! process stopped on loss.

use std::collections::HashSet;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use lynk_core::{
    Clock, Leadership, LockClient, LockError, LockGuard, MultiGuard, Permit, SystemClock,
    MAX_MULTI_LOCK_NAMES,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{Global, RunArgs, WakeArgs};
use crate::connect::{checked_backend, unchecked_backend};
use crate::exit::{self, Failure};
use crate::locks::store_failed;
use crate::output::{fmt_duration, shell_quote, Printer};

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

/// SIGINT, SIGTERM and SIGHUP, handled from the start, so an interrupt while
/// waiting leaves cleanly and one while the command runs does not kill lynk
/// before it releases.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Self, Failure> {
        Ok(Signals {
            int: signal_stream(SignalKind::interrupt())?,
            term: signal_stream(SignalKind::terminate())?,
            hup: signal_stream(SignalKind::hangup())?,
        })
    }

    /// Waits for any of the three; returns what happened, as a participle
    /// ("interrupted", "terminated", "hung up").
    pub async fn any(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted",
            _ = self.term.recv() => "terminated",
            _ = self.hup.recv() => "hung up",
        }
    }
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

/// How long a waiting command waits for DynamoDB's first answer before it
/// describes the table to find out why there is none.
const FIRST_ANSWER: Duration = Duration::from_secs(3);

/// Resolves only if DynamoDB has not answered any of the client's requests
/// within [`FIRST_ANSWER`] and describing the table then fails: that failure
/// (unreachable endpoint, no such table, ...), instead of retrying forever.
/// Otherwise it never resolves. Costs no request while DynamoDB answers
/// lock requests (a semaphore's wait may cost one `DescribeTable`).
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

/// A lock client for `table` with `lease` as its default lease, and the
/// poll interval and wake-ups if asked for. No table check up front: it would be one more request on
/// every run (and every wait). A table problem shows as the first attempt's
/// error, and only then is the table described, for the precise message.
pub async fn client_for(
    global: &Global,
    table: &str,
    lease: Duration,
    wake: &WakeArgs,
) -> Result<LockClient, Failure> {
    let backend = unchecked_backend(global, table).await?;
    let mut builder = LockClient::builder(backend).default_lease(lease);
    if let Some(label) = &global.label {
        builder = builder.holder_label(label.clone());
    }
    if let Some(every) = wake.poll_interval {
        builder = builder.poll_interval(every);
    }
    if let Some(listen) = wake.wake_listen {
        let mut w = lynk_core::WakeUps::new(listen).scope(table.to_owned());
        if let Some(advertise) = wake.wake_advertise {
            w = w.advertise(advertise);
        }
        builder = builder.wake_ups(w);
    }
    Ok(builder.build()?)
}

/// What `wait` means for an acquisition: `None` forever, zero one try.
pub enum Wait {
    /// Wait as long as it takes.
    Forever,
    /// Try once, without waiting.
    Once,
    /// Wait at most this long.
    Upto(Duration),
}

impl From<Option<Duration>> for Wait {
    fn from(w: Option<Duration>) -> Self {
        match w {
            None => Wait::Forever,
            Some(w) if w.is_zero() => Wait::Once,
            Some(w) => Wait::Upto(w),
        }
    }
}

/// The error of a one-try acquisition that found `name` taken.
pub fn busy(name: &str) -> LockError {
    busy_by(name, None)
}

/// The error of a one-try acquisition that found `name` held by `holder`.
pub fn busy_by(name: &str, holder: Option<String>) -> LockError {
    LockError::NotGranted {
        name: name.to_owned(),
        waited: Duration::ZERO,
        holder,
        last_error: None,
    }
}

/// Who holds lock `name`, by one read (for the message of a one-try
/// acquisition that found it taken); `None` if the read fails or nobody does.
pub async fn holder_of(client: &LockClient, name: &str) -> Option<String> {
    match client.describe(name).await {
        Ok(Some(r)) if !r.released => Some(r.host),
        _ => None,
    }
}

/// What a command waits for: `target` for messages (e.g. `lock "job"`),
/// and the name whose record tells who holds it, if one does.
pub struct WaitingFor<'a> {
    /// E.g. `lock "job"`.
    pub target: &'a str,
    /// The record to read for the holder, if any.
    pub record: Option<&'a str>,
}

/// Waits for `acquisition` (of `what`), failing at once on a table problem,
/// a store that never answers, or a signal (exit 8), and reporting progress
/// on stderr meanwhile (`progress.rs`). `not_granted_hint` is the hint after
/// a wait that ran out.
pub async fn acquire<T>(
    global: &Global,
    client: &LockClient,
    table: &str,
    what: WaitingFor<'_>,
    signals: &mut Signals,
    not_granted_hint: &str,
    acquisition: impl Future<Output = Result<T, LockError>>,
) -> Result<T, Failure> {
    let WaitingFor { target, record } = what;
    tokio::select! {
        failure = unanswered(global, client, table) => Err(failure),
        never = crate::progress::report(global, client, target, record) => match never {},
        g = acquisition => match g {
            Ok(g) => Ok(g),
            Err(e @ LockError::NotGranted { .. }) if store_failed(&e) => {
                Err(Failure::from_lock(&e).hint(
                    "the command was not run; DynamoDB failed or did not answer while lynk waited: check the network path and any endpoint override, then retry",
                ))
            }
            Err(e @ LockError::NotGranted { .. }) => {
                Err(Failure::from_lock(&e).hint(not_granted_hint.to_owned()))
            }
            Err(e) if table_problem(&e) => {
                checked_backend(global, table).await?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        },
        what = signals.any() => Err(Failure::new(
            exit::CANCELLED,
            format!("{what} while waiting for {target}; the command was not run"),
        )),
    }
}

/// What a command runs under: one lock, a leadership, a semaphore permit,
/// or several locks.
pub enum Held {
    /// `lynk run TABLE LOCK`.
    Lock(LockGuard),
    /// `lynk leader run`.
    Leader(Leadership),
    /// `lynk run TABLE NAME --permits N`.
    Permit(Permit),
    /// `lynk run TABLE LOCK LOCK...`.
    Locks(MultiGuard),
}

impl Held {
    /// Completes when the lease (any lease, for several locks) is lost.
    async fn lost(&self) {
        match self {
            Held::Lock(g) => g.lost().await,
            Held::Leader(l) => l.lost().await,
            Held::Permit(p) => p.lost().await,
            Held::Locks(m) => m.lost().await,
        }
    }

    /// What was lost and why, e.g. `lock "x" was lost (the lease ran out)`.
    fn lost_message(&self) -> String {
        let why = |r: Option<lynk_core::LostReason>| {
            r.map_or_else(|| "the lease ran out".to_owned(), |r| r.to_string())
        };
        match self {
            Held::Lock(g) => format!("lock {:?} was lost ({})", g.name(), why(g.lost_reason())),
            Held::Leader(l) => format!(
                "leadership of {:?} was lost ({})",
                l.name(),
                why(l.lost_reason())
            ),
            Held::Permit(p) => format!(
                "the permit of semaphore {:?} was lost ({})",
                p.name(),
                why(p.lost_reason())
            ),
            Held::Locks(m) => match m.lost_reason() {
                Some((name, reason)) => format!("lock {name:?} was lost ({reason})"),
                None => "a lock was lost (the lease ran out)".to_owned(),
            },
        }
    }

    /// Releases (resigns) and waits for the store's answer.
    async fn release(self) -> Result<(), LockError> {
        match self {
            Held::Lock(g) => g.release().await,
            Held::Leader(l) => l.resign().await,
            Held::Permit(p) => p.release().await,
            Held::Locks(m) => m.release().await,
        }
    }
}

/// Runs `command` with `env` while `held` holds, and returns the exit code:
/// the command's (128+N for signal N), or [`exit::LOST`] after stopping it
/// (SIGTERM, then SIGKILL after `grace`) when the lease is lost. Releases
/// (resigns) when the command exits. `lease` is only for messages.
pub async fn run_command(
    global: &Global,
    held: Held,
    command: &[String],
    env: &[(&str, String)],
    grace: Duration,
    lease: Duration,
    signals: &mut Signals,
) -> Result<i32, Failure> {
    let mut child_command = tokio::process::Command::new(&command[0]);
    child_command.args(&command[1..]);
    for (k, v) in env {
        child_command.env(k, v);
    }
    let mut child = match child_command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            };
            let released = match held {
                Held::Leader(_) => "leadership was resigned",
                Held::Permit(_) => "the permit was released",
                Held::Locks(_) => "the locks were released",
                Held::Lock(_) => "the lock was released",
            };
            if let Err(r) = held.release().await {
                tracing::warn!(error = %r, "release failed");
            }
            return Err(Failure::new(
                code,
                format!("could not run {:?}: {e}; {released}", command[0]),
            ));
        }
    };
    let pid = child.id();

    let waited = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = held.lost() => {
                eprintln!(
                    "error: {}; stopping the command (SIGTERM, then SIGKILL after {})",
                    held.lost_message(),
                    fmt_duration(grace)
                );
                send(pid, Signal::SIGTERM);
                tokio::select! {
                    _ = child.wait() => {}
                    _ = SystemClock.sleep(grace) => {
                        eprintln!("error: the command did not stop within {}; killing it", fmt_duration(grace));
                        send(pid, Signal::SIGKILL);
                        let _ = child.wait().await;
                    }
                }
                // Give back what is still held (the other locks of several).
                if let Err(e) = held.release().await {
                    tracing::debug!(error = %e, "release after the loss");
                }
                return Ok(exit::LOST);
            }
            _ = signals.term.recv() => send(pid, Signal::SIGTERM),
            _ = signals.hup.recv() => send(pid, Signal::SIGHUP),
            // A terminal's Ctrl-C reaches the command directly (same process
            // group); lynk keeps waiting for it, to release afterwards.
            _ = signals.int.recv() => {}
        }
    };
    let status = match waited {
        Ok(s) => s,
        Err(e) => {
            drop(held);
            return Err(Failure::new(
                exit::FAILURE,
                format!("lost track of the command: {e}"),
            ));
        }
    };
    match held.release().await {
        Ok(()) => Ok(code_of(status)),
        Err(e @ LockError::Lost { .. }) => Err(Failure::from_lock(&e).hint(format!(
            "the command finished (exit code {}), but the lease had been lost before",
            code_of(status)
        ))),
        Err(e) => {
            // The command's work is done; the lease expires on its own.
            Printer::new(global).warn(format!(
                "{e} (it is free again after its {} lease)",
                fmt_duration(lease)
            ));
            Ok(code_of(status))
        }
    }
}

/// The checks of `lynk run`'s names and options that clap cannot make.
fn check_args(args: &RunArgs) -> Result<(), Failure> {
    let usage = |m: String| Err(Failure::new(exit::USAGE, m));
    let names = &args.locks;
    if names.len() > MAX_MULTI_LOCK_NAMES {
        return usage(format!(
            "too many lock names: {} given, and one run takes at most {MAX_MULTI_LOCK_NAMES} (the item limit of one DynamoDB transaction); lock one name that stands for the group instead",
            names.len()
        ));
    }
    let mut seen = HashSet::new();
    if let Some(twice) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return usage(format!(
            "lock name {twice:?} is given twice; list each name once"
        ));
    }
    if names.len() > 1 {
        if args.permits.is_some() {
            return usage(format!(
                "--permits takes one semaphore name, and {} names were given; run one `lynk run --permits` per semaphore",
                names.len()
            ));
        }
        if let Some(n) = names.iter().find(|n| n.contains(',')) {
            return usage(format!(
                "lock name {n:?} contains a comma, which separates the names in LYNK_FENCING_TOKENS; rename it to lock it together with other names"
            ));
        }
    }
    if args.permits.is_some() {
        if args.payload.is_some() {
            return usage(
                "--payload cannot be used with --permits: a semaphore's record holds its permit table"
                    .to_owned(),
            );
        }
        if args.wake.wake_listen.is_some() {
            return usage(
                "--wake-listen cannot be used with --permits: semaphore waiters poll".to_owned(),
            );
        }
    }
    Ok(())
}

/// Runs the command under the lock(s) or permit and returns the exit code.
pub async fn run(global: &Global, args: RunArgs) -> Result<i32, Failure> {
    check_args(&args)?;
    crate::connect::check_names(global, &args.locks)?;
    let mut signals = Signals::install()?;
    let client = client_for(global, &args.table, args.lease, &args.wake).await?;
    let table = args.table.as_str();
    let wait = Wait::from(args.wait);
    let mut env: Vec<(&str, String)> = vec![("LYNK_TABLE", args.table.clone())];

    let held = if let Some(permits) = args.permits {
        let name = &args.locks[0];
        let semaphore = client.semaphore(name, permits).with_lease(args.lease);
        let acquisition = async {
            match wait {
                Wait::Forever => semaphore.acquire().await,
                Wait::Once => semaphore.try_acquire().await?.ok_or_else(|| busy(name)),
                Wait::Upto(w) => semaphore.acquire_timeout(w).await,
            }
        };
        let permit = acquire(
            global,
            &client,
            table,
            WaitingFor {
                target: &format!("a permit of semaphore {name:?}"),
                record: None,
            },
            &mut signals,
            &format!(
                "the command was not run; all {permits} permits were held: wait longer with --wait"
            ),
            acquisition,
        )
        .await?;
        env.extend([
            ("LYNK_FENCING_TOKEN", permit.fencing_token().to_string()),
            ("LYNK_LOCK_NAME", name.clone()),
            ("LYNK_PERMITS", permits.to_string()),
            ("LYNK_PERMIT_ID", permit.id().to_owned()),
        ]);
        Held::Permit(permit)
    } else if args.locks.len() > 1 {
        let mut multi = client.multi_lock(&args.locks).with_lease(args.lease);
        if let Some(p) = &args.payload {
            multi = multi.with_payload(p.clone().into_bytes());
        }
        let joined = args.locks.join(",");
        let acquisition = async {
            match wait {
                Wait::Forever => multi.acquire().await,
                Wait::Once => multi.try_acquire().await?.ok_or_else(|| busy(&joined)),
                Wait::Upto(w) => multi.acquire_timeout(w).await,
            }
        };
        let quoted: Vec<String> = args.locks.iter().map(|n| shell_quote(n)).collect();
        let guard = acquire(
            global,
            &client,
            table,
            WaitingFor {
                target: &format!("locks {}", quoted.join(" ")),
                record: None,
            },
            &mut signals,
            &format!(
                "the command was not run, and no lock was kept; wait longer with --wait, or see who holds them: lynk locks {table}{}",
                crate::layout::flag_words(&global.layout)
            ),
            acquisition,
        )
        .await?;
        // In the order given on the command line.
        let tokens: Vec<String> = args
            .locks
            .iter()
            .map(|n| {
                let t = guard.fencing_token(n).map_or(0, |t| t.get());
                format!("{n}={t}")
            })
            .collect();
        env.extend([
            ("LYNK_FENCING_TOKENS", tokens.join(",")),
            ("LYNK_LOCK_NAMES", joined.clone()),
        ]);
        Held::Locks(guard)
    } else {
        let name = &args.locks[0];
        let mut lock = client.create_lock(name).with_lease(args.lease);
        if let Some(p) = &args.payload {
            lock = lock.with_payload(p.clone().into_bytes());
        }
        let acquisition = async {
            match wait {
                Wait::Forever => lock.acquire().await,
                Wait::Once => match lock.try_acquire().await? {
                    Some(g) => Ok(g),
                    None => Err(busy_by(name, holder_of(&client, name).await)),
                },
                Wait::Upto(w) => lock.acquire_timeout(w).await,
            }
        };
        let guard = acquire(
            global,
            &client,
            table,
            WaitingFor {
                target: &format!("lock {name:?}"),
                record: Some(name),
            },
            &mut signals,
            &format!(
                "the command was not run; wait longer with --wait, or see who holds it: lynk describe {table} {}{}",
                shell_quote(name),
                crate::layout::flag_words(&global.layout)
            ),
            acquisition,
        )
        .await?;
        env.extend([
            ("LYNK_FENCING_TOKEN", guard.fencing_token().to_string()),
            ("LYNK_LOCK_NAME", name.clone()),
        ]);
        Held::Lock(guard)
    };
    tracing::info!(locks = ?args.locks, lease = ?args.lease, "acquired; starting the command");
    run_command(
        global,
        held,
        &args.command,
        &env,
        args.grace,
        args.lease,
        &mut signals,
    )
    .await
}
