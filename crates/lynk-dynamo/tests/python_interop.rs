//! Interoperability with the original Python lynk 0.3.1 on moto: both
//! clients contend for one lock around a shared counter (mutual exclusion),
//! and each takes over the other's released and expired locks.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::Server;
use lynk_core::{
    Clock, Condition, LockBackend, LockClient, SystemClock, TokenUpdate, Version, WriteRequest,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The Python interpreter, the pylynk wrapper and moto's endpoint, or `None`
/// after printing a SKIP line (a failure under CI).
fn python_env(test: &str) -> Option<(String, String, String)> {
    let endpoint = Server::Moto.endpoint(test)?;
    match (
        std::env::var("LYNK_TEST_PYTHON"),
        std::env::var("LYNK_TEST_PYLYNK"),
    ) {
        (Ok(py), Ok(pylynk)) if !py.is_empty() && !pylynk.is_empty() => {
            Some((py, pylynk, endpoint))
        }
        _ => {
            let msg = format!("SKIP {test}: LYNK_TEST_PYTHON / LYNK_TEST_PYLYNK are not set; eval \"$(scripts/test-servers.sh env)\"");
            if std::env::var_os("CI").is_some() {
                panic!("{msg}");
            }
            eprintln!("{msg}");
            None
        }
    }
}

fn python(py: &str, pylynk: &str, endpoint: &str) -> Command {
    let mut cmd = Command::new(py);
    cmd.arg(pylynk)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("PYLYNK_HOST_ID", "python")
        .kill_on_drop(true);
    cmd
}

const PY_WORKER: &str = r#"
import os, sys, time
import lynk
table, name, n, counter, marker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
lock = lynk.get_session(table, host_identifier="python").create_lock(name)
print("ready", flush=True)  # imports done: Rust starts its rounds now
for i in range(n):
    lock.acquire(lease_duration=1, max_wait_seconds=120)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if Rust is inside
        os.close(fd)
        value = int(open(counter).read())
        time.sleep(0.05)
        with open(counter, "w") as f:
            f.write(str(value + 1))
        with open(marker + ".log", "a") as f:
            f.write("P")
        os.remove(marker)
    finally:
        lock.release()
    time.sleep(0.3)  # let the Rust waiter in
print("python done", flush=True)
"#;

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lynk-interop-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_counter_with_python() {
    let Some((py, pylynk, endpoint)) = python_env("shared_counter_with_python") else {
        return;
    };
    let table = common::unique_table("py-counter");
    let admin = common::create_table(&endpoint, &table).await;
    let backend = common::backend(Server::Moto, &endpoint, &table).await;
    let counter = scratch("counter");
    let marker = counter.with_file_name("inside");
    let script = counter.with_file_name("worker.py");
    std::fs::write(&counter, "0").unwrap();
    std::fs::write(&script, PY_WORKER).unwrap();
    let log = PathBuf::from(format!("{}.log", marker.display()));
    let rounds = 5;

    let mut child = python(&py, &pylynk, &endpoint)
        .arg("script")
        .arg(&script)
        .args([&table, "counter-lock", &rounds.to_string()])
        .arg(&counter)
        .arg(&marker)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Start contending only once Python is up: on a busy machine its imports
    // alone can outlast all of Rust's rounds.
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let ready = tokio::select! {
        line = lines.next_line() => line.unwrap(),
        _ = SystemClock.sleep(Duration::from_secs(120)) => panic!("the Python worker did not start"),
    };
    assert_eq!(ready.as_deref(), Some("ready"), "python worker: {ready:?}");

    let client = LockClient::builder(backend.clone())
        .default_lease(Duration::from_secs(1))
        .host_identifier("rust")
        .build()
        .unwrap();
    for _ in 0..rounds {
        let guard = client
            .create_lock("counter-lock")
            .acquire_timeout(Duration::from_secs(120))
            .await
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .expect("Python is inside the critical section while Rust holds the lock");
        let value: u64 = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
        SystemClock.sleep(Duration::from_millis(50)).await;
        std::fs::write(&counter, (value + 1).to_string()).unwrap();
        append(&log, "R");
        std::fs::remove_file(&marker).unwrap();
        guard.release().await.unwrap();
        // Give the Python waiter (which polls once per lease) a chance.
        SystemClock.sleep(Duration::from_millis(300)).await;
    }
    let status = tokio::select! {
        status = child.wait() => status.unwrap(),
        _ = SystemClock.sleep(Duration::from_secs(180)) => panic!("the Python worker did not finish"),
    };
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(
        status.success(),
        "python worker failed: {}",
        rest.join("\n")
    );
    let total: u64 = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
    assert_eq!(
        total,
        2 * rounds,
        "increments were lost: mutual exclusion broke"
    );
    let order = std::fs::read_to_string(&log).unwrap();
    let switches = order.as_bytes().windows(2).filter(|w| w[0] != w[1]).count();
    println!("shared counter: {total} increments, none lost; holders in order: {order} ({switches} handovers between Rust and Python)");
    assert!(switches >= 2, "the clients did not contend: {order}");
    client.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_takes_over_expired_python_lock() {
    let Some((py, pylynk, endpoint)) = python_env("rust_takes_over_expired_python_lock") else {
        return;
    };
    let table = common::unique_table("py-expired");
    let admin = common::create_table(&endpoint, &table).await;
    let backend = common::backend(Server::Moto, &endpoint, &table).await;

    // Python holds with a 2 s lease, then crashes (is killed) while holding.
    let mut child = python(&py, &pylynk, &endpoint)
        .args(["hold", &table, "crashy", "60", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    assert!(line.starts_with("acquired"), "{line}");
    child.kill().await.unwrap();
    let python_record = backend.read("crashy").await.unwrap().unwrap();
    assert_eq!(python_record.fencing_token, None, "Python writes no token");
    assert_eq!(python_record.host, "python");

    let client = LockClient::new(backend.clone()).unwrap();
    let start = SystemClock.now();
    let guard = client
        .create_lock("crashy")
        .acquire_timeout(Duration::from_secs(20))
        .await
        .unwrap();
    let waited = SystemClock.now() - start;
    assert!(
        waited >= Duration::from_secs(2),
        "took over after only {waited:?}"
    );
    println!("Rust took over the crashed Python holder's lock after {waited:?}");
    guard.release().await.unwrap();

    // Python takes over Rust's released record at once (lease 0).
    let out = python(&py, &pylynk, &endpoint)
        .args(["acquire-release", &table, "crashy", "2", "5"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("released"));
    assert!(
        backend.read("crashy").await.unwrap().is_none(),
        "Python release deletes"
    );
    client.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_takes_over_expired_rust_lock() {
    let Some((py, pylynk, endpoint)) = python_env("python_takes_over_expired_rust_lock") else {
        return;
    };
    let table = common::unique_table("rs-expired");
    let admin = common::create_table(&endpoint, &table).await;
    let backend = common::backend(Server::Moto, &endpoint, &table).await;

    // A Rust holder that crashed: its record stays, held, with a 2 s lease.
    let abandoned = backend
        .write(WriteRequest {
            key: "abandoned".into(),
            condition: Condition::Absent,
            version: Version::random(),
            lease_duration: Duration::from_secs(2),
            host: "crashed-rust".into(),
            token: TokenUpdate::Next {
                initial: SystemClock.wall_micros(),
            },
            payload: Some(bytes::Bytes::from_static(b"state")),
            released: false,
            queue: Default::default(),
            granted_to: None,
            holder_detail: None,
        })
        .await
        .unwrap();

    let start = SystemClock.now();
    let out = python(&py, &pylynk, &endpoint)
        .args(["acquire-release", &table, "abandoned", "2", "30"])
        .output()
        .await
        .unwrap();
    let waited = SystemClock.now() - start;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        waited >= Duration::from_secs(2),
        "Python took over after {waited:?}"
    );
    println!("Python took over the crashed Rust holder's lock after {waited:?}");

    // Python deleted the record; the next Rust token is still higher.
    let client = LockClient::new(backend.clone()).unwrap();
    let guard = client.create_lock("abandoned").acquire().await.unwrap();
    assert!(Some(guard.fencing_token()) > abandoned.fencing_token);
    guard.release().await.unwrap();
    client.shutdown().await;
    admin.delete_table(&table, false, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_takeover_drops_the_queue_and_grant() {
    let Some((py, pylynk, endpoint)) = python_env("python_takeover_drops_the_queue_and_grant")
    else {
        return;
    };
    let table = common::unique_table("py-queue");
    let admin = common::create_table(&endpoint, &table).await;
    let backend = common::backend(Server::Moto, &endpoint, &table).await;

    // A released record (lease 0, so Python takes it at once) with a queue
    // and a grant, as a Rust release handing over to a waiter leaves it.
    let queue = lynk_core::WaitQueue::default().with(lynk_core::QueueEntry {
        id: "waiter".into(),
        host: "rust-waiter".into(),
        wake: Some("127.0.0.1:9".into()),
        poll: Some(std::time::Duration::from_millis(1500)),
    });
    let granted = backend
        .write(WriteRequest {
            key: "queued".into(),
            condition: Condition::Absent,
            version: Version::random(),
            lease_duration: Duration::ZERO,
            host: "rust".into(),
            token: TokenUpdate::Next {
                initial: SystemClock.wall_micros(),
            },
            payload: None,
            released: true,
            queue: lynk_core::QueueUpdate::Set(queue.clone()),
            granted_to: Some("granted".into()),
            holder_detail: None,
        })
        .await
        .unwrap();
    assert_eq!(granted.queue, queue);

    // Python's PutItem rewrites the whole item: no queue, no grant.
    let mut child = python(&py, &pylynk, &endpoint)
        .args(["hold", &table, "queued", "60", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::select! {
        line = lines.next_line() => line.unwrap().unwrap_or_default(),
        _ = SystemClock.sleep(Duration::from_secs(60)) => panic!("Python did not acquire"),
    };
    assert!(line.starts_with("acquired"), "{line}");
    child.kill().await.unwrap();
    let record = backend.read("queued").await.unwrap().unwrap();
    assert_eq!(record.host, "python");
    assert_eq!(record.queue, lynk_core::WaitQueue::default());
    assert_eq!(record.granted_to, None);
    admin.delete_table(&table, false, true).await.unwrap();
}
