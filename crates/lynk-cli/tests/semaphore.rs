//! `lynk run --permits N` end to end against moto: N + 2 processes contend
//! for N permits (never more than N commands at once, all finish), a permit
//! count other than the stored one is exit 2, and the inputs checked before
//! anything is sent.

mod common;

use std::process::Stdio;
use std::time::Duration;

use lynk_core::{Clock, SystemClock};

use common::*;

/// A fresh lock table on the shared moto, or `None` (SKIP).
fn table(test: &str) -> Option<(String, String)> {
    let e = moto(test)?;
    let t = unique_table("sem");
    ok(&at(&e, &["create-table", &t]));
    Some((e, t))
}

/// Replays the start/end lines of the shared log: the most commands that
/// ran at once, and the tokens of the starts and ends.
fn replay(log: &str) -> (usize, Vec<u64>, Vec<u64>) {
    let (mut running, mut most) = (0usize, 0usize);
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for line in log.lines() {
        let (what, token) = line.split_once(' ').expect("`start T` or `end T`");
        let token: u64 = token.parse().expect("a token");
        match what {
            "start" => {
                running += 1;
                most = most.max(running);
                starts.push(token);
            }
            "end" => {
                running = running.checked_sub(1).expect("an end after its start");
                ends.push(token);
            }
            other => panic!("unexpected line {other:?}"),
        }
    }
    (most, starts, ends)
}

#[test]
fn n_plus_two_processes_never_run_more_than_n_commands_at_once() {
    let Some((e, t)) = table("n_plus_two_processes_never_run_more_than_n_commands_at_once") else {
        return;
    };
    const N: usize = 2;
    let scratch = Scratch::new("sem");
    let log = scratch.path("log");
    // Each command appends one line when it starts and one when it ends
    // (O_APPEND writes of a few bytes are atomic), holding its permit 2 s.
    let script = r#"echo "start $LYNK_FENCING_TOKEN" >> "$LOG"; sleep 2; echo "end $LYNK_FENCING_TOKEN" >> "$LOG""#;
    let started = SystemClock.now();
    let mut runners: Vec<Group> = (0..N + 2)
        .map(|_| {
            let mut c = lynk_std();
            c.args(["--endpoint-url", &e, "run", &t, "encoders"])
                .args([
                    "--permits",
                    &N.to_string(),
                    "--lease",
                    "3s",
                    "--wait",
                    "60s",
                ])
                .args(["--", "sh", "-c", script])
                .env("LOG", &log)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Group::spawn(c)
        })
        .collect();
    for (i, r) in runners.iter_mut().enumerate() {
        let status = r.wait_for(Duration::from_secs(60)).expect("finishes");
        let mut err = String::new();
        if let Some(mut s) = r.child.stderr.take() {
            use std::io::Read;
            let _ = s.read_to_string(&mut err);
        }
        assert_eq!(status.code(), Some(0), "runner {i}: {err}");
    }
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&log).expect("the log");
    let (most, mut starts, mut ends) = replay(&text);
    eprintln!(
        "{} runners, {N} permits: at most {most} commands at once; all done in {elapsed:?}",
        N + 2
    );
    assert!(most <= N, "more than {N} commands at once:\n{text}");
    // All finished, each with a permit of its own.
    assert_eq!(starts.len(), N + 2, "{text}");
    starts.sort_unstable();
    ends.sort_unstable();
    assert_eq!(starts, ends, "{text}");
    starts.dedup();
    assert_eq!(
        starts.len(),
        N + 2,
        "every permit has its own token:\n{text}"
    );
    // The permits were used side by side: the second was taken within the 2 s
    // the first was held (not a bound on speed, a check that N > 1 is used).
    assert_eq!(most, N, "the {N} permits were never all in use:\n{text}");
}

#[test]
fn a_permit_count_other_than_the_stored_one_is_a_usage_error() {
    let Some((e, t)) = table("a_permit_count_other_than_the_stored_one_is_a_usage_error") else {
        return;
    };
    // The first user stores 2 permits while it holds one.
    let mut holder = {
        let mut c = lynk_std();
        c.args(["--endpoint-url", &e, "run", &t, "slots", "--permits", "2"])
            .args(["--", "sh", "-c", "echo ready; exec sleep 30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        Group::spawn(c)
    };
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(holder.child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
    }
    let out = at(
        &e,
        &[
            "run",
            &t,
            "slots",
            "--permits",
            "3",
            "--wait",
            "5s",
            "--",
            "echo",
            "ran",
        ],
    );
    assert_fails(&out, 2, &["has 2 permits", "asks for 3"]);
    assert_eq!(stdout(&out), "");
    // The right count runs (the second permit is free).
    let out = at(
        &e,
        &[
            "run",
            &t,
            "slots",
            "--permits",
            "2",
            "--wait",
            "0",
            "--",
            "sh",
            "-c",
            "echo \"$LYNK_PERMITS $LYNK_LOCK_NAME\"",
        ],
    );
    assert_eq!(ok(&out), "2 slots\n");
    // SIGTERM to lynk reaches the command; lynk releases and exits with its code.
    holder.signal(nix::sys::signal::Signal::SIGTERM);
    let status = holder.wait_for(Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(128 + 15), "the command's SIGTERM code");
}

#[test]
fn bad_permits_and_names_are_usage_errors_before_anything_is_sent() {
    // An endpoint nothing listens on: a request would fail with exit 5, not 2.
    let e = format!("http://127.0.0.1:{}", closed_port());
    let many: Vec<String> = (0..101).map(|i| format!("n{i}")).collect();
    let mut too_many = vec!["run", "my-table"];
    too_many.extend(many.iter().map(String::as_str));
    too_many.extend(["--", "true"]);
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["run", "my-table", "s", "--permits", "0", "--", "true"],
            &["invalid permit count 0", "1 to 100"],
        ),
        (
            vec!["run", "my-table", "s", "--permits", "101", "--", "true"],
            &["invalid permit count 101", "1 to 100"],
        ),
        (
            vec![
                "run",
                "my-table",
                "s",
                "--permits",
                "1000000000000",
                "--",
                "true",
            ],
            &["invalid permit count", "1 to 100"],
        ),
        (
            vec!["run", "my-table", "s", "--permits=-2", "--", "true"],
            &["invalid permit count \"-2\"", "whole number"],
        ),
        (
            vec!["run", "my-table", "s", "--permits", "two", "--", "true"],
            &["whole number"],
        ),
        (
            vec!["run", "my-table", "a", "b", "--permits", "2", "--", "true"],
            &["--permits takes one semaphore name", "2 names"],
        ),
        (
            vec!["run", "my-table", "a", "b", "a", "--", "true"],
            &["\"a\" is given twice"],
        ),
        (
            too_many,
            &["too many lock names", "101", "at most 100", "transaction"],
        ),
        (
            vec!["run", "my-table", "a,b", "c", "--", "true"],
            &["comma", "LYNK_FENCING_TOKENS"],
        ),
        (
            vec![
                "run",
                "my-table",
                "s",
                "--permits",
                "2",
                "--payload",
                "x",
                "--",
                "true",
            ],
            &["--payload cannot be used with --permits"],
        ),
    ];
    for (args, needles) in cases {
        let out = at(&e, &args);
        assert_fails(&out, 2, needles);
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}
