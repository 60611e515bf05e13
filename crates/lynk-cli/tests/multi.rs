//! `lynk run TABLE A B -- COMMAND` end to end against moto: every lock or
//! none, a fencing token per name in `LYNK_FENCING_TOKENS`, and a loss of
//! any one of the locks stopping the command.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use common::*;

/// A fresh lock table on the shared moto, or `None` (SKIP).
fn table(test: &str) -> Option<(String, String)> {
    let e = moto(test)?;
    let t = unique_table("multi");
    ok(&at(&e, &["create-table", &t]));
    Some((e, t))
}

fn describe(e: &str, t: &str, lock: &str) -> serde_json::Value {
    json(&at(e, &["describe", t, lock, "--output", "json"]))
}

#[test]
fn run_over_two_names_holds_both_with_a_token_each() {
    let Some((e, t)) = table("run_over_two_names_holds_both_with_a_token_each") else {
        return;
    };
    // Given in reverse byte order: the tokens come back in the order given.
    let script = r#"echo "$LYNK_FENCING_TOKENS|$LYNK_LOCK_NAMES|${LYNK_FENCING_TOKEN-unset}|$LYNK_TABLE"; exit 3"#;
    let out = at(
        &e,
        &[
            "run",
            &t,
            "account/bob",
            "account/alice",
            "--payload",
            "transfer-1",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let line = stdout(&out);
    let parts: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(
        parts[1..],
        ["account/bob,account/alice", "unset", t.as_str()]
    );
    let tokens: Vec<(&str, u64)> = parts[0]
        .split(',')
        .map(|kv| {
            let (k, v) = kv.rsplit_once('=').expect("name=token");
            (k, v.parse().expect("a numeric token"))
        })
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!((tokens[0].0, tokens[1].0), ("account/bob", "account/alice"));
    // Both released afterwards, each record keeping its own token.
    for (name, token) in &tokens {
        let d = describe(&e, &t, name);
        assert_eq!(d["state"], "released", "{d}");
        assert_eq!(d["fencing_token"].as_u64(), Some(*token), "{name}");
    }
}

#[test]
fn run_over_two_names_takes_none_when_one_is_held() {
    let Some((e, t)) = table("run_over_two_names_takes_none_when_one_is_held") else {
        return;
    };
    let held = json(&at(
        &e,
        &["acquire", &t, "b", "--lease", "1h", "--output", "json"],
    ));
    for wait in ["0", "700ms"] {
        let out = at(
            &e,
            &["run", &t, "a", "b", "--wait", wait, "--", "echo", "ran"],
        );
        assert_fails(
            &out,
            3,
            &[
                if wait == "0" {
                    "not waited for"
                } else {
                    "was not granted"
                },
                "the command was not run, and no lock was kept",
            ],
        );
        assert_eq!(stdout(&out), "");
        // "a" (taken first, in byte order) was given back.
        let a = describe(&e, &t, "a");
        assert!(a["exists"] == false || a["state"] == "released", "{a}");
    }
    let v = held["version"].as_str().unwrap();
    ok(&at(&e, &["release", &t, "b", "--version", v]));
    assert_eq!(
        ok(&at(
            &e,
            &["run", &t, "a", "b", "--wait", "0", "--", "echo", "ran"]
        )),
        "ran\n"
    );
}

#[test]
fn losing_any_one_of_the_locks_stops_the_command() {
    let Some((e, t)) = table("losing_any_one_of_the_locks_stops_the_command") else {
        return;
    };
    let script = r#"trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done"#;
    let mut runner = lynk_std()
        .args(["--endpoint-url", &e, "run", &t, "x", "y", "--lease", "1s"])
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(runner.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "ready\n");
    ok(&at(&e, &["release", &t, "y", "--force", "--yes"]));
    let status = runner.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    runner
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(4), "{err}");
    assert_eq!(rest, "got-term\n");
    assert!(
        err.contains("lock \"y\" was lost") && err.contains("SIGTERM"),
        "{err}"
    );
    // The other lock is released too.
    assert_eq!(describe(&e, &t, "x")["state"], "released");
}
