//! `lynk leader run|show|follow` end to end against moto: the term and
//! payload in the command's environment, `show` with and without a leader,
//! `follow`'s lines, and a leader killed with SIGKILL replaced by a waiting
//! candidate within lease x 1.01 + one poll, with a higher term.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use lynk_core::{Clock, SystemClock};

use common::*;
use nix::sys::signal::Signal;

/// A fresh lock table on the shared moto, or `None` (SKIP).
fn table(test: &str) -> Option<(String, String)> {
    let e = moto(test)?;
    let t = unique_table("leader");
    ok(&at(&e, &["create-table", &t]));
    Some((e, t))
}

/// `lynk leader run` of `election` with `lease`, whose command writes its
/// `LYNK_TERM` to `out` (atomically, by rename) and then sleeps.
fn candidate(
    e: &str,
    t: &str,
    election: &str,
    lease: &str,
    payload: &str,
    out: &std::path::Path,
) -> Group {
    let mut c = lynk_std();
    c.args(["--endpoint-url", e, "leader", "run", t, election])
        .args(["--lease", lease, "--payload", payload])
        .args([
            "--",
            "sh",
            "-c",
            r#"echo "$LYNK_TERM" > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"; exec sleep 60"#,
        ])
        .env("OUT", out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Group::spawn(c)
}

/// Lines of `lynk leader follow`, read on a thread.
fn follow(e: &str, t: &str, election: &str) -> (Group, mpsc::Receiver<String>) {
    let mut c = lynk_std();
    c.args(["--endpoint-url", e, "leader", "follow", t, election])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut g = Group::spawn(c);
    let stdout = g.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (g, rx)
}

/// The next line of `follow` without its timestamp.
fn next_line(rx: &mpsc::Receiver<String>) -> String {
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a line from `lynk leader follow`");
    let (time, rest) = line.split_once(' ').expect("TIME WHAT");
    assert!(
        time.ends_with('Z') && time.contains('T'),
        "an RFC 3339 time: {line}"
    );
    rest.to_owned()
}

#[test]
fn leader_run_passes_the_term_and_payload_and_resigns_when_the_command_exits() {
    let Some((e, t)) =
        table("leader_run_passes_the_term_and_payload_and_resigns_when_the_command_exits")
    else {
        return;
    };
    let script = r#"echo "$LYNK_TERM|$LYNK_FENCING_TOKEN|$LYNK_LEADER_PAYLOAD|$LYNK_LOCK_NAME|$LYNK_TABLE"; exit 5"#;
    let out = at(
        &e,
        &[
            "leader",
            "run",
            &t,
            "sched",
            "--payload",
            "10.0.0.7:8080",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let line = stdout(&out);
    let parts: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(parts[1..], [parts[0], "10.0.0.7:8080", "sched", t.as_str()]);
    let first: u64 = parts[0].parse().expect("a numeric term");
    // Resigned: no leader, and the next term is higher.
    assert_eq!(
        ok(&at(&e, &["leader", "show", &t, "sched"])),
        format!("Election \"sched\" in table {t} has no leader.\n")
    );
    let out = at(
        &e,
        &[
            "leader",
            "run",
            &t,
            "sched",
            "--wait",
            "0",
            "--",
            "sh",
            "-c",
            "echo $LYNK_TERM",
        ],
    );
    let second: u64 = ok(&out).trim().parse().unwrap();
    assert!(second > first, "{second} > {first}");
    // A command that is not there: 127, and nobody leads.
    let out = at(
        &e,
        &[
            "leader",
            "run",
            &t,
            "sched",
            "--",
            "/nonexistent/lynk-test-cmd",
        ],
    );
    assert_fails(&out, 127, &["could not run", "leadership was resigned"]);
    let shown = json(&at(
        &e,
        &["leader", "show", &t, "sched", "--output", "json"],
    ));
    assert_eq!(shown["leader"], serde_json::Value::Null, "{shown}");
}

#[test]
fn leader_show_and_follow_with_and_without_a_leader() {
    let Some((e, t)) = table("leader_show_and_follow_with_and_without_a_leader") else {
        return;
    };
    // No leader: exit 0, in text and JSON.
    assert_eq!(
        ok(&at(&e, &["leader", "show", &t, "web"])),
        format!("Election \"web\" in table {t} has no leader.\n")
    );
    let none = json(&at(&e, &["leader", "show", &t, "web", "--output", "json"]));
    assert_eq!(none["election"], "web");
    assert_eq!(none["table"], t.as_str());
    assert!(none["leader"].is_null(), "{none}");

    let (mut follower, lines) = follow(&e, &t, "web");
    assert_eq!(next_line(&lines), "no leader");

    let scratch = Scratch::new("leader");
    let out = scratch.path("term");
    let mut leader = candidate(&e, &t, "web", "20s", "10.0.0.7:8080", &out);
    let term = wait_for_file(&out, Duration::from_secs(20)).expect("the leader's command runs");

    let shown = json(&at(&e, &["leader", "show", &t, "web", "--output", "json"]));
    assert_eq!(
        shown["leader"]["term"].as_u64(),
        Some(term.parse().unwrap()),
        "{shown}"
    );
    assert_eq!(shown["leader"]["payload"], "10.0.0.7:8080");
    assert_eq!(shown["leader"]["lease_seconds"], 20.0);
    let host = shown["leader"]["host"].as_str().unwrap().to_owned();
    let text = ok(&at(&e, &["leader", "show", &t, "web"]));
    assert!(
        text.contains(&format!("leader:   {host}\n"))
            && text.contains(&format!("term:     {term}\n"))
            && text.contains("payload:  \"10.0.0.7:8080\"\n")
            && text.contains("lease:    20s\n"),
        "{text}"
    );
    assert_eq!(
        next_line(&lines),
        format!("leader {host}, term {term}, payload \"10.0.0.7:8080\"")
    );

    // SIGTERM to lynk reaches the command (143); lynk resigns: no leader.
    leader.signal(Signal::SIGTERM);
    let status = leader.wait_for(Duration::from_secs(20)).expect("stops");
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(next_line(&lines), "no leader");
    assert!(ok(&at(&e, &["leader", "show", &t, "web"])).contains("has no leader"));

    // Interrupted, follow exits 0.
    follower.signal(Signal::SIGINT);
    let status = follower
        .wait_for(Duration::from_secs(10))
        .expect("follow stops");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_killed_leader_is_replaced_within_the_lease_by_a_higher_term() {
    let Some((e, t)) = table("a_killed_leader_is_replaced_within_the_lease_by_a_higher_term")
    else {
        return;
    };
    const LEASE: f64 = 3.0;
    let scratch = Scratch::new("failover");
    let (a_out, b_out) = (scratch.path("a"), scratch.path("b"));
    let mut a = candidate(&e, &t, "primary", "3s", "a", &a_out);
    let a_term: u64 = wait_for_file(&a_out, Duration::from_secs(20))
        .expect("the first leader's command runs")
        .parse()
        .unwrap();
    let mut b = candidate(&e, &t, "primary", "3s", "b", &b_out);
    // B campaigns (and keeps waiting) while A leads and heartbeats.
    pause(Duration::from_secs(2));
    assert!(!b_out.exists(), "B must not lead while A is alive");
    assert!(b.child.try_wait().unwrap().is_none(), "B waits");

    // A (lynk and its command) dies at once, without resigning.
    let killed = SystemClock.now();
    a.signal_group(Signal::SIGKILL);
    a.wait_for(Duration::from_secs(5)).expect("A is dead");
    let b_term: u64 = wait_for_file(&b_out, Duration::from_secs(30))
        .expect("B takes over")
        .parse()
        .unwrap();
    let failover = killed.elapsed();
    // The bound: lease x (1 + 0.01) + one poll (lease / 4 for a short lease);
    // plus slack for requests to moto and starting the command.
    let bound = LEASE * 1.01 + LEASE / 4.0;
    eprintln!(
        "failover after SIGKILL: {:.2} s (bound lease x 1.01 + one poll = {bound:.2} s); terms {a_term} -> {b_term}",
        failover.as_secs_f64()
    );
    assert!(
        failover.as_secs_f64() < bound + 2.0,
        "B took over after {failover:?}, bound {bound:.2} s + 2 s slack"
    );
    // Not before A's lease could have run out: A heartbeat at most a third of
    // the lease before it was killed.
    assert!(
        failover.as_secs_f64() > LEASE * (1.0 - 1.0 / 3.0) - 0.25,
        "B took over after only {failover:?}: A's lease had not run out"
    );
    assert!(
        b_term > a_term,
        "the new term {b_term} > the dead leader's {a_term}"
    );
    let shown = json(&at(
        &e,
        &["leader", "show", &t, "primary", "--output", "json"],
    ));
    assert_eq!(shown["leader"]["term"].as_u64(), Some(b_term));
    assert_eq!(shown["leader"]["payload"], "b");
    b.signal(Signal::SIGTERM);
    assert_eq!(
        b.wait_for(Duration::from_secs(20)).expect("B stops").code(),
        Some(143)
    );
}

#[test]
fn leader_commands_check_their_inputs_and_have_help() {
    let e = format!("http://127.0.0.1:{}", closed_port());
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["leader", "run", "my-table", "", "--", "true"],
            &["invalid lock name", "empty"],
        ),
        (
            vec![
                "leader", "run", "my-table", "x", "--lease", "0s", "--", "true",
            ],
            &["invalid lease"],
        ),
        (vec!["leader", "run", "my-table", "x"], &["COMMAND"]),
        (vec!["leader", "show", "t"], &["invalid table name"]),
        (vec!["leader", "follow", "my-table"], &["ELECTION"]),
    ];
    for (args, needles) in cases {
        let out = at(&e, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        for n in needles {
            assert!(err.contains(n), "{args:?}: stderr lacks {n:?}:\n{err}");
        }
    }
    for sub in [
        &["leader"][..],
        &["leader", "run"],
        &["leader", "show"],
        &["leader", "follow"],
    ] {
        let help = ok(&lynk().args(sub).arg("--help").output().unwrap());
        assert!(
            help.contains("Examples:\n  lynk leader "),
            "{sub:?}:\n{help}"
        );
    }
    let top = ok(&lynk().arg("--help").output().unwrap());
    assert!(
        top.contains("lynk leader run") && top.contains("--permits"),
        "{top}"
    );
}
