//! When DynamoDB does not answer (a half-open connection: it stays open, no
//! bytes move), every command gives up with a clear error and exit code 5
//! within a bounded time, instead of hanging.

mod common;

use std::net::TcpListener;
use std::process::Output;
use std::time::Duration;

use common::*;
use lynk_dynamo::lynk_core::{Clock, LockClient, SystemClock};
use lynk_testkit::proxy::{FaultProxy, ProxyFaults};

/// How long any command may take against an endpoint that never answers:
/// the SDK's per-call limit (8 s by default, see docs/dynamodb.md), a
/// `--wait` of 5 s where given, and generous slack for a loaded machine.
/// A command still running then is killed, and fails the test.
const LIMIT: Duration = Duration::from_secs(5 + 8 + 7);

/// A loopback endpoint that accepts connections and never answers; they stay
/// open until the test process exits.
fn silent_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in listener.incoming() {
            open.push(conn);
        }
    });
    format!("http://{addr}")
}

/// `lynk --endpoint-url ENDPOINT ARGS...`, killed after [`LIMIT`].
fn bounded(endpoint: &str, args: &[&str]) -> Output {
    lynk()
        .arg("--endpoint-url")
        .arg(endpoint)
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .timeout(LIMIT)
        .output()
        .expect("lynk runs")
}

#[test]
fn every_command_gives_up_with_exit_5_when_dynamodb_does_not_answer() {
    let endpoint = silent_endpoint();
    let commands: Vec<Vec<&str>> = vec![
        vec!["list-tables"],
        vec!["create-table", "lynk-silent"],
        vec!["delete-table", "lynk-silent"],
        vec!["check-table", "lynk-silent"],
        vec!["locks", "lynk-silent"],
        vec!["describe", "lynk-silent", "job"],
        vec![
            "acquire",
            "lynk-silent",
            "job",
            "--lease",
            "1m",
            "--wait",
            "5s",
        ],
        vec!["acquire", "lynk-silent", "job", "--lease", "1m"],
        vec!["release", "lynk-silent", "job", "--version", "v"],
        vec!["run", "lynk-silent", "job", "--wait", "5s", "--", "true"],
        vec!["run", "lynk-silent", "job", "--", "true"],
        vec!["demo", "--table", "lynk-silent", "--hold", "1ms"],
    ];
    // All at once: each waits for timeouts, not for the CPU.
    let runs: Vec<_> = commands
        .into_iter()
        .map(|args| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let out = bounded(&endpoint, &args);
                (args.join(" "), out)
            })
        })
        .collect();
    for run in runs {
        let (command, out) = run.join().unwrap();
        println!(
            "lynk {command}: exit {:?}: {}",
            out.status.code(),
            stderr(&out).trim()
        );
        assert_fails(&out, 5, &["DynamoDB"]);
        // (`lynk run --wait` no longer describes the table first: its
        // message is the engine's, "did not answer ... in time".)
        assert!(
            stderr(&out).contains("timed out") || stderr(&out).contains("did not answer"),
            "lynk {command} should say that DynamoDB did not answer in time: {}",
            stderr(&out)
        );
    }
}

/// The measured case from issue 10: `lynk run TABLE L --wait 5s -- true`
/// while another client holds L and the network goes half-open after lynk
/// checked the table. It must exit 5 soon after its 5 s, not hang.
///
/// With `--lease 2s` the engine gives up on each store call after half a
/// second, so the wait sees its calls fail before it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_runs_into_a_half_open_network_exits_5() {
    let Some(e) = moto("a_wait_that_runs_into_a_half_open_network_exits_5") else {
        return;
    };
    let t = unique_table("halfopen");
    ok(&at(&e, &["create-table", &t]));
    // Another client holds the lock, talking to moto directly.
    let backend = lynk_dynamo::DynamoBackend::builder(&t)
        .endpoint_url(&e)
        .region("us-east-1")
        .build()
        .await
        .unwrap();
    let holder = LockClient::new(backend).unwrap();
    let guard = holder.create_lock("job").acquire().await.unwrap();

    let addr = e
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(
        addr,
        ProxyFaults {
            seed: 1,
            reset_before: 0.0,
            drop_response: 0.0,
            delay_response: 0.0,
            max_delay: Duration::ZERO,
            throttle: 0.0,
            server_error: 0.0,
            only: Vec::new(),
        },
    )
    .await
    .unwrap();
    let endpoint = proxy.endpoint();
    let table = t.clone();
    let run = tokio::task::spawn_blocking(move || {
        bounded(
            &endpoint,
            &[
                "run", &table, "job", "--wait", "5s", "--lease", "2s", "--", "true",
            ],
        )
    });
    // Once lynk has checked the table (DescribeTable, ListTagsOfResource,
    // DescribeTimeToLive) and sent its first acquisition attempt, the network
    // goes half-open.
    let clock = SystemClock;
    let start = clock.now();
    while proxy.requests() < 4 {
        assert!(
            clock.now() - start < Duration::from_secs(10),
            "lynk run never reached the lock"
        );
        clock.sleep(Duration::from_millis(10)).await;
    }
    proxy.set_half_open(true);
    let out = run.await.unwrap();
    println!(
        "lynk run: exit {:?}: {}",
        out.status.code(),
        stderr(&out).trim()
    );
    assert_fails(&out, 5, &["not granted", "the command was not run"]);
    guard.release().await.unwrap();
    holder.shutdown().await;
}
