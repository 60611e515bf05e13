//! The `lynk` command: lock tables, locks, and commands run under a lock,
//! kept in Amazon DynamoDB. See `docs/cli.md` for every command, output and
//! exit code.

mod cli;
mod connect;
mod demo;
mod exit;
mod layout;
mod leader;
mod locks;
mod output;
mod parse;
mod progress;
mod run;
mod tables;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, Global};
use crate::exit::Failure;

fn main() {
    // Never a panic message or a backtrace: one line, and exit code 1. A
    // closed stdout or stderr (`println!` panics on it) ends lynk quietly,
    // with the status of a program ended by SIGPIPE. Nothing here may panic
    // again (a panic in the hook aborts), so the hook writes with `write!`.
    std::panic::set_hook(Box::new(|info| {
        let what = panic_text(info.payload());
        if is_broken_pipe(&what) {
            return;
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "error: lynk hit an internal error ({what}); please report it at https://github.com/lynk-rs/lynk/issues"
        );
    }));
    let code = match std::panic::catch_unwind(real_main) {
        Ok(code) => code,
        Err(payload) if is_broken_pipe(&panic_text(payload.as_ref())) => exit::BROKEN_PIPE,
        Err(_) => exit::FAILURE,
    };
    std::process::exit(code);
}

/// The message a panic carried.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// A panic of `println!`/`eprintln!` on a closed pipe (EPIPE).
fn is_broken_pipe(message: &str) -> bool {
    message.contains("Broken pipe") || message.contains("os error 32")
}

fn real_main() -> i32 {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose, cli.global.quiet);
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        return exit::USAGE;
    };
    match command {
        Command::Demo(args) => demo::run(&cli.global, args),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "lynk",
                &mut std::io::stdout(),
            );
            exit::OK
        }
        command => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: could not start the async runtime: {e}");
                    return exit::FAILURE;
                }
            };
            let result = runtime.block_on(dispatch(&cli.global, command));
            // Do not wait for background tasks (heartbeats of a lock kept by
            // `lynk acquire`): they must not release anything.
            runtime.shutdown_background();
            match result {
                Ok(code) => code,
                Err(failure) => {
                    failure.print();
                    failure.code
                }
            }
        }
    }
}

async fn dispatch(global: &Global, command: Command) -> Result<i32, Failure> {
    match command {
        Command::CreateTable(args) => tables::create(global, args).await,
        Command::ListTables(args) => tables::list(global, args).await,
        Command::DeleteTable(args) => tables::delete(global, args).await,
        Command::CheckTable(args) => tables::check(global, &args.table).await,
        Command::Locks(args) => locks::list(global, &args.table, args.group.as_deref()).await,
        Command::Describe(args) if args.watch => locks::watch(global, args.lock).await,
        Command::Describe(args) => locks::describe(global, args.lock).await,
        Command::Acquire(args) => locks::acquire(global, args).await,
        Command::Release(args) => locks::release(global, args).await,
        Command::Run(args) => run::run(global, args).await,
        Command::Leader(command) => leader::dispatch(global, command).await,
        Command::Demo(_) | Command::Completions(_) => Ok(exit::OK), // handled before
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    // lynk reports what matters itself (errors, lost leases, warnings of
    // table creation); the libraries' own warnings show with -v.
    let level = match (quiet, verbose) {
        (true, _) => "off",
        (false, 0) => "error",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LYNK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
