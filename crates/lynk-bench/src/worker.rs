//! One side of the cross-process handover measurement: a process that holds
//! or waits for one lock on command. `scripts/bench/xproc.py` drives two of
//! them over stdin/stdout:
//!
//! ```text
//! acquire  ->  started <wall µs>   (at once)   acquired <wall µs>  (when granted)
//! release  ->  releasing <wall µs> (just before the release call)  released
//! quit
//! ```

use std::collections::VecDeque;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::env::{counting_sdk, sdk_config, Env, Server};
use crate::util::wall_micros;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Impl {
    Lynk,
    Peer,
}

enum Held {
    Lynk(lynk_core::LockGuard),
    Peer(dynamodb_lease::Lease),
}

pub async fn run(imp: Impl, server: Server, endpoint: &str, table: &str, lock: &str) {
    let lynk_client = if imp == Impl::Lynk {
        let env = Env::new_existing(server, endpoint, table).await;
        Some(env.client(None).await.0)
    } else {
        None
    };
    let peer_client = if imp == Impl::Peer {
        let (sdk, _) = counting_sdk(&sdk_config(endpoint).await);
        Some(
            dynamodb_lease::Client::builder()
                .table_name(table)
                .build_and_check_db(sdk)
                .await
                .expect("dynamodb-lease client"),
        )
    } else {
        None
    };
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut held: VecDeque<Held> = VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "acquire" => {
                println!("started {}", wall_micros());
                let h = match (&lynk_client, &peer_client) {
                    (Some(c), _) => {
                        Held::Lynk(c.create_lock(lock).acquire().await.expect("acquire"))
                    }
                    (_, Some(c)) => Held::Peer(c.acquire(lock).await.expect("acquire")),
                    _ => unreachable!(),
                };
                println!("acquired {}", wall_micros());
                held.push_back(h);
            }
            "release" => {
                let h = held.pop_front().expect("release without a held lock");
                println!("releasing {}", wall_micros());
                match h {
                    Held::Lynk(g) => g.release().await.expect("release"),
                    Held::Peer(l) => l.release().await.expect("release"),
                }
                println!("released");
            }
            _ => break,
        }
    }
    if let Some(c) = lynk_client {
        c.shutdown().await;
    }
}
