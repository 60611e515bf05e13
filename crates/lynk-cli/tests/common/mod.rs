//! Shared helpers of the CLI tests: the built binary, the moto endpoint from
//! the environment (or a SKIP line), unique table names, closed ports and a
//! private moto server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command as StdCommand, Output, Stdio};

use assert_cmd::Command;

/// The `lynk` binary under test.
pub fn lynk() -> Command {
    Command::cargo_bin("lynk").expect("the lynk binary is built")
}

/// The `lynk` binary as a std command (for spawning).
pub fn lynk_std() -> StdCommand {
    StdCommand::new(assert_cmd::cargo::cargo_bin("lynk"))
}

/// The shared moto endpoint, or `None` after printing a SKIP line (a
/// failure when `CI` is set).
pub fn moto(test: &str) -> Option<String> {
    match std::env::var("LYNK_TEST_MOTO_ENDPOINT") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let msg = format!(
                "SKIP {test}: LYNK_TEST_MOTO_ENDPOINT is not set; run `scripts/install-test-servers.sh && scripts/test-servers.sh start && eval \"$(scripts/test-servers.sh env)\"`"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{msg} (CI is set, so a missing server is a failure)");
            }
            eprintln!("{msg}");
            None
        }
    }
}

/// `lynk --endpoint-url ENDPOINT ARGS...`
pub fn at(endpoint: &str, args: &[&str]) -> Output {
    lynk()
        .arg("--endpoint-url")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("lynk runs")
}

/// A unique, valid table name.
pub fn unique_table(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("lynk-cli-{prefix}-{}", &id[..12])
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code `code` and that stderr contains every one of `needles`,
/// with no panic message, and at most three lines.
pub fn assert_fails(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code; stdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    assert!(err.lines().count() <= 3, "short errors please:\n{err}");
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}; stdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Parses stdout as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A moto server of this test's own, so `list-tables` sees only this test's
/// tables, started like the shared one (through `scripts/moto_linearizable.py`,
/// requests applied one at a time) on a free port. Killed (by its pid) when
/// dropped.
pub struct PrivateMoto {
    child: Child,
    /// Its endpoint URL.
    pub endpoint: String,
}

impl PrivateMoto {
    /// Starts one, or `None` if moto is not installed in `.tools/`.
    pub fn start() -> Option<PrivateMoto> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join(".tools/venv/bin/python");
        if !python.exists() {
            return None;
        }
        let mut child = StdCommand::new(python)
            .arg(root.join("scripts/moto_linearizable.py"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stderr.take()?).lines();
        let mut endpoint = None;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("moto_linearizable: Running on ") {
                endpoint = Some(url.trim().to_owned());
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let mut moto = PrivateMoto {
            child,
            endpoint: String::new(),
        };
        moto.endpoint = endpoint?;
        Some(moto)
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SDK client for `endpoint` (for setting up tables lynk would not create).
pub async fn sdk(endpoint: &str) -> lynk_dynamo::aws_sdk_dynamodb::Client {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    lynk_dynamo::AwsOptions::new()
        .region(region)
        .endpoint_url(endpoint)
        .load_client()
        .await
        .expect("SDK client")
}

/// Creates `table` with hash key `key` (S), untagged.
pub async fn create_plain_table(endpoint: &str, table: &str, key: &str) {
    use lynk_dynamo::aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    sdk(endpoint)
        .await
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
}

/// A spawned process in a process group of its own (with everything it
/// starts): SIGKILLed as a group when dropped, so a failing test leaves no
/// `lynk` or command behind.
pub struct Group {
    /// The process (its pid is the group's id).
    pub child: Child,
}

impl Group {
    /// Spawns `command` as the leader of a new process group.
    pub fn spawn(mut command: StdCommand) -> Group {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn().expect("spawns");
        Group { child }
    }

    /// Sends `signal` to the whole group.
    pub fn signal_group(&self, signal: nix::sys::signal::Signal) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, signal);
    }

    /// Sends `signal` to the group leader only (lynk itself).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// Waits for the exit, up to `limit`; `None` if still running then.
    pub fn wait_for(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = lynk_core::Clock::now(&lynk_core::SystemClock) + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if lynk_core::Clock::now(&lynk_core::SystemClock) >= until {
                return None;
            }
            pause(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A fresh scratch directory under the system's temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates one.
    pub fn new(prefix: &str) -> Scratch {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("lynk-cli-{prefix}-{}", &id[..12]));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `path` exists and returns its trimmed content, or `None`
/// after `limit`.
pub fn wait_for_file(path: &std::path::Path, limit: std::time::Duration) -> Option<String> {
    let until = lynk_core::Clock::now(&lynk_core::SystemClock) + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text.trim().to_owned());
        }
        if lynk_core::Clock::now(&lynk_core::SystemClock) >= until {
            return None;
        }
        pause(std::time::Duration::from_millis(10));
    }
}

/// Blocks this test thread for `d`. The tests that use it wait for other
/// processes (lynk and its commands), whose timing no clock of the test can
/// control, so the real clock is the one to wait on.
#[allow(clippy::disallowed_methods)]
pub fn pause(d: std::time::Duration) {
    std::thread::sleep(d);
}
