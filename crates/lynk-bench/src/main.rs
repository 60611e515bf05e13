//! `lynk-bench`: the benchmark harness behind `scripts/bench.sh` and
//! `docs/benchmarks.md`. Prints one figure per line and, with `--json`,
//! appends them as JSON lines for `scripts/bench/report.py`.

mod cost;
mod counting;
mod env;
mod floor;
mod lynk_imp;
mod peer;
mod primitives;
mod scale;
mod suite;
mod util;
mod worker;

use std::time::Duration;

use clap::{Parser, Subcommand};

use env::{Env, Server};
use util::Report;

#[derive(Parser, Debug)]
#[command(about = "lynk benchmark harness (run it in release: scripts/bench.sh)")]
struct Cli {
    /// Append every figure as a JSON line to this file.
    #[arg(long, global = true)]
    json: Option<String>,
    /// Tiny counts: every measurement runs, in seconds.
    #[arg(long, global = true)]
    smoke: bool,
    /// Run on tokio's multi-thread runtime (default: current-thread, one
    /// thread; fewer cross-thread wake-ups per request).
    #[arg(long, global = true)]
    multi_thread: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// lynk's requests per operation, in-process handover, throughput and CPU on one server.
    Suite {
        #[arg(long, value_enum)]
        server: Server,
        #[arg(long, env = "LYNK_BENCH_ENDPOINT")]
        endpoint: Option<String>,
    },
    /// The bare SDK sending the requests lynk and dynamodb-lease send: client
    /// CPU and time per cycle against each one's floor.
    Floor {
        #[arg(long, value_enum)]
        server: Server,
        #[arg(long, env = "LYNK_BENCH_ENDPOINT")]
        endpoint: String,
        /// Run only this implementation's cycles (`lynk`, `floor-lynk`,
        /// `dynamodb-lease`, `floor-dynamodb-lease`, ...), `--cycles` of them
        /// after the warm-up, and print its CPU per cycle: for profiling
        /// (`valgrind --tool=callgrind` counts instructions repeatably; take
        /// the difference of two runs with different `--cycles`).
        #[arg(long)]
        only: Option<String>,
        /// Cycles to run with `--only`.
        #[arg(long, default_value_t = 200)]
        cycles: u64,
    },
    /// Many locks held at once by one client on the in-memory backend.
    Scale {
        /// Locks to hold (default 100000; 2000 with --smoke).
        #[arg(long)]
        locks: Option<usize>,
    },
    /// The same suite for the crate dynamodb-lease (needs TTL support: moto).
    Peer {
        #[arg(long)]
        endpoint: String,
        #[arg(long, default_value = "moto")]
        label: String,
    },
    /// Creates a table for the cross-process measurement and prints its name.
    SetupTable {
        #[arg(long, value_enum)]
        imp: worker::Impl,
        #[arg(long)]
        endpoint: String,
    },
    /// One process of the cross-process handover (driven by scripts/bench/xproc.py).
    Worker {
        #[arg(long, value_enum)]
        imp: worker::Impl,
        #[arg(long, value_enum)]
        server: Server,
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        table: String,
        #[arg(long, default_value = "xproc")]
        lock: String,
        /// lynk only: listen for wake-ups on this UDP address (e.g.
        /// 127.0.0.1:0), scoped to the table.
        #[arg(long, value_name = "ADDR")]
        wake_listen: Option<std::net::SocketAddr>,
    },
    /// Requests and capacity units per held lock and per waiting client per
    /// hour (one hour of paused time on the in-memory backend), beside the
    /// other clients' figures computed from their defaults.
    Cost,
}

fn main() {
    let cli = Cli::parse();
    let report = Report::new(cli.json.clone());
    if let Cmd::Suite {
        server: Server::Memory,
        ..
    } = cli.cmd
    {
        lynk_imp::per_minute_virtual(&report);
    }
    let rt = if cli.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()
    .expect("runtime");
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Suite { server, endpoint } => {
                let env = Env::new(server, endpoint.as_deref()).await;
                let sizes = suite::Sizes::for_server(server, cli.smoke);
                lynk_imp::run(&env, sizes, &report).await;
                primitives::run(&env, server.label(), cli.smoke, &report).await;
            }
            Cmd::Floor {
                server,
                endpoint,
                only,
                cycles,
            } => {
                let only = only.map(|name| (name, cycles));
                floor::run(server, &endpoint, cli.smoke, only, &report).await;
            }
            Cmd::Scale { locks } => {
                let (n, lease, hold) = if cli.smoke {
                    (
                        locks.unwrap_or(2_000),
                        Duration::from_secs(1),
                        Duration::from_millis(1200),
                    )
                } else {
                    (
                        locks.unwrap_or(100_000),
                        Duration::from_secs(6),
                        Duration::from_secs(5),
                    )
                };
                scale::run(n, lease, hold, &report).await;
            }
            Cmd::Peer { endpoint, label } => {
                let sizes = suite::Sizes::for_server(Server::Moto, cli.smoke);
                peer::run(&endpoint, &label, sizes, &report).await;
            }
            Cmd::SetupTable { imp, endpoint } => {
                let config = env::sdk_config(&endpoint).await;
                let sdk = aws_sdk_dynamodb::Client::new(&config);
                let table = env::unique("xproc");
                match imp {
                    worker::Impl::Lynk => {
                        lynk_dynamo::TableAdmin::new(sdk)
                            .create_table(&table, &lynk_dynamo::CreateOptions::new())
                            .await
                            .expect("create table");
                    }
                    worker::Impl::Peer => env::create_peer_table(&sdk, &table).await,
                }
                println!("{table}");
            }
            Cmd::Worker {
                imp,
                server,
                endpoint,
                table,
                lock,
                wake_listen,
            } => {
                worker::run(imp, server, &endpoint, &table, &lock, wake_listen).await;
            }
            Cmd::Cost => cost::run(&report),
        }
    });
}
