//! A closed stdout or stderr ends lynk quietly with status 141 (as a program
//! ended by SIGPIPE), never an abort (134) or a panic message. No AWS needed.

use std::io::Read;
use std::process::Stdio;

mod common;

/// Runs lynk with `args`, reading `keep` bytes of the stream `closed` (the
/// other stream is captured) and then closing it; returns the status and
/// the other stream's text.
fn closing(args: &[&str], close_stdout: bool) -> (Option<i32>, String) {
    let mut cmd = common::lynk_std();
    cmd.args(args)
        .env("LYNK_LOG", "trace")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if close_stdout {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("lynk starts");
    let mut other = String::new();
    if close_stdout {
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        let _ = out.read(&mut first);
        drop(out);
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut other)
            .unwrap();
    } else {
        let mut err = child.stderr.take().unwrap();
        let mut first = [0u8; 16];
        let _ = err.read(&mut first);
        drop(err);
    }
    let status = child.wait().expect("lynk ends");
    (status.code(), other)
}

#[test]
fn a_closed_stdout_ends_quietly() {
    // The in-memory demo prints a line per step: stdout closes after 16 bytes.
    let (code, stderr) = closing(&["demo", "--hold", "300ms", "--lease", "1s"], true);
    assert_eq!(code, Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
}

#[test]
fn a_closed_stderr_ends_quietly() {
    // Trace lines on stderr, closed early; then the error message of an
    // unreachable endpoint cannot be written either (this aborted, 134).
    let (code, _) = closing(
        &[
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--region",
            "us-east-1",
            "describe",
            "no-such-table",
            "job",
        ],
        false,
    );
    assert_eq!(
        code,
        Some(141),
        "no abort (134) or panic on a closed stderr"
    );
}
