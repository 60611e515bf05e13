//! One side of the cross-process handover measurement: a process that holds
//! or waits for one lock on command. `scripts/bench/xproc.py` drives two of
//! them over stdin/stdout:
//!
//! ```text
//! acquire  ->  started <wall µs>   (at once)   acquired <wall µs>  (when granted)
//! release  ->  releasing <wall µs> (just before the release call)  released
//! metrics  ->  metrics key=value...  (the client's counters; lynk only, else none)
//! quit
//! ```
//!
//! With `--wake-listen ADDR` (lynk only) the client listens for wake-ups on
//! that UDP address, scoped to the table.

use std::collections::VecDeque;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::env::{Env, Server};
use crate::peer::PeerEnv;
use crate::suite::LockImpl;
use crate::util::wall_micros;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Impl {
    Lynk,
    Peer,
}

pub async fn run(
    imp: Impl,
    server: Server,
    endpoint: &str,
    table: &str,
    lock: &str,
    wake_listen: Option<SocketAddr>,
) {
    match imp {
        Impl::Lynk => {
            let mut env = Env::new_existing(server, endpoint, table).await;
            env.wake_listen = wake_listen;
            serve(env, lock).await
        }
        Impl::Peer => {
            assert!(wake_listen.is_none(), "dynamodb-lease has no wake-ups");
            serve(PeerEnv::existing(endpoint, table).await, lock).await
        }
    }
}

async fn serve<I: LockImpl>(env: I, name: &str) {
    let (client, _) = env.new_client().await;
    let lock = I::lock(&client, name);
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut held: VecDeque<I::Held> = VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "acquire" => {
                println!("started {}", wall_micros());
                held.push_back(I::acquire(&lock).await);
                println!("acquired {}", wall_micros());
            }
            "release" => {
                let h = held.pop_front().expect("release without a held lock");
                println!("releasing {}", wall_micros());
                I::release(h).await;
                println!("released");
            }
            "metrics" => println!("metrics {}", I::metrics_words(&client)),
            _ => break,
        }
    }
    I::shutdown(client).await;
}
