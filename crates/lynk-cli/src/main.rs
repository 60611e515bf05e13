//! The `lynk` command.

mod cli;
mod demo;
mod exit;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose, cli.quiet);
    let code = match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = cli::Cli::command().print_help();
            exit::USAGE
        }
        Some(cli::Command::Demo(args)) => demo::run(args),
    };
    std::process::exit(code);
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LYNK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
