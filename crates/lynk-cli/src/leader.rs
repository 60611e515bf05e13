//! `lynk leader run|show|follow`: leader election for scripts.

use lynk_core::{Clock, Leader, LockClient, LockError, SystemClock};
use serde_json::{json, Value};

use crate::cli::{ElectionArgs, Global, LeaderCommand, LeaderRunArgs, OutputFormat};
use crate::connect::checked_backend;
use crate::exit::{self, Failure};
use crate::output::{fmt_duration, print_json, say, shell_quote, Printer};
use crate::run::{acquire, busy, client_for, run_command, Held, Signals, Wait};

/// Runs a `lynk leader` subcommand.
pub async fn dispatch(global: &Global, command: LeaderCommand) -> Result<i32, Failure> {
    match command {
        LeaderCommand::Run(args) => run(global, args).await,
        LeaderCommand::Show(args) => show(global, args).await,
        LeaderCommand::Follow(args) => follow(global, args).await,
    }
}

/// `lynk leader run TABLE NAME -- COMMAND...`.
async fn run(global: &Global, args: LeaderRunArgs) -> Result<i32, Failure> {
    crate::connect::check_names(global, [&args.election])?;
    let mut signals = Signals::install()?;
    let client = client_for(global, &args.table, args.lease, &args.wake).await?;
    let name = args.election.as_str();
    let mut election = client.election(name).with_lease(args.lease);
    if let Some(p) = &args.payload {
        election = election.with_payload(p.clone().into_bytes());
    }
    let wait = Wait::from(args.wait);
    let campaign = async {
        match wait {
            Wait::Forever => election.campaign().await,
            Wait::Once => election.try_campaign().await?.ok_or_else(|| busy(name)),
            Wait::Upto(w) => election.campaign_timeout(w).await,
        }
    };
    let leadership = acquire(
        global,
        &client,
        &args.table,
        crate::run::WaitingFor {
            target: &format!("leadership of {name:?}"),
            record: Some(name),
        },
        &mut signals,
        &format!(
            "the command was not run; see who leads: lynk leader show {} {}{}",
            args.table,
            shell_quote(name),
            crate::layout::flag_words(&global.layout)
        ),
        campaign,
    )
    .await?;
    let term = leadership.term().to_string();
    tracing::info!(election = %name, %term, lease = ?args.lease, "leading; starting the command");
    let env = [
        ("LYNK_TABLE", args.table.clone()),
        ("LYNK_LOCK_NAME", name.to_owned()),
        ("LYNK_TERM", term.clone()),
        ("LYNK_FENCING_TOKEN", term),
        (
            "LYNK_LEADER_PAYLOAD",
            args.payload.clone().unwrap_or_default(),
        ),
    ];
    run_command(
        global,
        Held::Leader(leadership),
        &args.command,
        &env,
        args.grace,
        args.lease,
        &mut signals,
    )
    .await
}

/// A client that only reads (observes) `table`, after checking the table.
async fn observer(global: &Global, table: &str, name: &String) -> Result<LockClient, Failure> {
    crate::connect::check_names(global, [name])?;
    let backend = checked_backend(global, table).await?;
    Ok(LockClient::builder(backend).build()?)
}

fn payload_text(leader: &Leader) -> Option<String> {
    leader
        .payload
        .as_ref()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

fn leader_json(leader: Option<&Leader>) -> Value {
    match leader {
        None => Value::Null,
        Some(l) => json!({
            "host": l.host,
            "term": l.term.get(),
            "payload": l.payload.as_ref().and_then(|p| std::str::from_utf8(p).ok()),
            "payload_bytes": l.payload.as_ref().map_or(0, |p| p.len()),
            "lease_seconds": l.lease.as_secs_f64(),
        }),
    }
}

/// One line for `follow`: `leader HOST, term N, payload "P"` or `no leader`.
fn leader_line(leader: Option<&Leader>) -> String {
    match leader {
        None => "no leader".to_owned(),
        Some(l) => {
            let payload = payload_text(l).map_or_else(|| "none".to_owned(), |p| format!("{p:?}"));
            format!("leader {}, term {}, payload {payload}", l.host, l.term)
        }
    }
}

/// The leader as first read (one read, unless reads fail and are retried).
async fn first_read(watch: &mut lynk_core::LeaderWatch) -> Result<Option<Leader>, Failure> {
    watch.changed().await.map_err(|e| Failure::from_lock(&e))
}

/// `lynk leader show TABLE NAME`: exit 0 with or without a leader.
async fn show(global: &Global, args: ElectionArgs) -> Result<i32, Failure> {
    let client = observer(global, &args.table, &args.election).await?;
    let mut watch = client.observe_leader(&args.election);
    let leader = first_read(&mut watch).await?;
    match (global.output, &leader) {
        (OutputFormat::Json, l) => print_json(&json!({
            "table": args.table,
            "election": args.election,
            "leader": leader_json(l.as_ref()),
        })),
        (OutputFormat::Text, None) => say(format!(
            "Election {:?} in table {} has no leader.",
            args.election, args.table
        )),
        (OutputFormat::Text, Some(l)) => {
            say(format!("election: {}", args.election));
            say(format!("leader:   {}", l.host));
            say(format!("term:     {}", l.term));
            say(format!(
                "payload:  {}",
                payload_text(l).map_or_else(|| "none".to_owned(), |p| format!("{p:?}"))
            ));
            say(format!("lease:    {}", fmt_duration(l.lease)));
        }
    }
    Ok(exit::OK)
}

/// `lynk leader follow TABLE NAME`: a line per change until a signal (exit 0).
async fn follow(global: &Global, args: ElectionArgs) -> Result<i32, Failure> {
    let mut signals = Signals::install()?;
    let client = observer(global, &args.table, &args.election).await?;
    let mut watch = client.observe_leader(&args.election);
    let printer = Printer::new(global);
    loop {
        let change = tokio::select! {
            change = watch.changed() => change,
            _ = signals.any() => return Ok(exit::OK),
        };
        let now = humantime::format_rfc3339_millis(SystemClock.wall_now()).to_string();
        match change {
            Ok(leader) => match global.output {
                OutputFormat::Json => {
                    let line = json!({
                        "time": now,
                        "table": args.table,
                        "election": args.election,
                        "leader": leader_json(leader.as_ref()),
                    });
                    say(line.to_string());
                }
                OutputFormat::Text => say(format!("{now} {}", leader_line(leader.as_ref()))),
            },
            // Final: the client is gone or the name is invalid.
            Err(
                e @ (LockError::ShutDown
                | LockError::InvalidInput { .. }
                | LockError::Internal { .. }),
            ) => {
                return Err(Failure::from_lock(&e));
            }
            // Reads keep failing: say so once per run of failures; polling goes on.
            Err(e) => printer.warn(format!(
                "{e}; still watching, the leader shown last may be out of date"
            )),
        }
    }
}
