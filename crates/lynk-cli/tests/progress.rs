//! Progress while waiting (issue 16): without a terminal a line when the
//! wait starts (naming the holder), nothing with `-q`; on a terminal (a pty,
//! through `script`) one live line redrawn every second. Against moto.

mod common;

use std::process::Command as StdCommand;

use common::*;

fn held_table(test: &str) -> Option<(String, String)> {
    let e = moto(test)?;
    let t = unique_table("progress");
    ok(&at(&e, &["create-table", &t]));
    ok(&at(&e, &["acquire", &t, "job", "--lease", "1h"]));
    Some((e, t))
}

#[test]
fn without_a_terminal_a_line_names_the_holder_and_quiet_prints_none() {
    let Some((e, t)) = held_table("without_a_terminal_a_line_names_the_holder") else {
        return;
    };
    let out = at(&e, &["run", &t, "job", "--wait", "2500ms", "--", "true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("lynk: waiting for lock \"job\""))
        .unwrap_or_else(|| panic!("no progress line: {err}"));
    assert!(
        line.contains("held by") && line.contains("lease 1h") && line.contains("unchanged for"),
        "{line}"
    );
    assert!(
        !err.contains('\r'),
        "no live line without a terminal: {err:?}"
    );
    // `acquire --wait` too.
    let out = at(&e, &["acquire", &t, "job", "--lease", "1m", "--wait", "2s"]);
    assert!(
        stderr(&out).contains("lynk: waiting for lock \"job\""),
        "{}",
        stderr(&out)
    );
    // Quiet: only the error.
    let out = at(
        &e,
        &["-q", "run", &t, "job", "--wait", "2500ms", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(!stderr(&out).contains("waiting for"), "{}", stderr(&out));
}

#[test]
fn on_a_terminal_one_live_line_is_redrawn() {
    let Some((e, t)) = held_table("on_a_terminal_one_live_line_is_redrawn") else {
        return;
    };
    let has_script = StdCommand::new("script").arg("--version").output().is_ok();
    if !has_script {
        if std::env::var_os("CI").is_some() {
            panic!("`script` (util-linux) is needed to give lynk a terminal");
        }
        eprintln!("SKIP: no `script` command to give lynk a terminal");
        return;
    }
    let lynk = assert_cmd::cargo::cargo_bin("lynk");
    let command = format!(
        "{} --endpoint-url {e} run {t} job --wait 3500ms -- true",
        lynk.display()
    );
    // `script` runs the command on a pty and copies what it wrote.
    let out = StdCommand::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&out.stdout).to_string();
    let redraws: Vec<&str> = screen
        .split("\r\x1b[2K")
        .filter(|l| l.starts_with("waiting for lock \"job\""))
        .collect();
    assert!(redraws.len() >= 2, "a live line, redrawn: {screen:?}");
    assert!(
        redraws.iter().any(|l| l.contains("waited 2s")) && redraws[0].contains("held by"),
        "{redraws:?}"
    );
    println!("captured terminal (redraws): {redraws:#?}");
}

#[test]
fn describe_watch_follows_the_record_until_interrupted() {
    let Some(e) = moto("describe_watch_follows_the_record_until_interrupted") else {
        return;
    };
    let t = unique_table("watch");
    ok(&at(&e, &["create-table", &t]));
    // Held by a process that exited: nobody heartbeats it.
    ok(&at(&e, &["acquire", &t, "w", "--lease", "1s"]));
    let child = lynk_std()
        .args(["--endpoint-url", &e, "describe", &t, "w", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lynk starts");
    pause(std::time::Duration::from_millis(2600));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("lynk ends");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "interrupted is the normal end: {text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("w: held by") && lines[0].contains("unchanged for 0s of lease 1s"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("(stale: a waiter may take it over)")),
        "the record stood still past its lease, by the watcher's own clock: {text}"
    );
    assert!(lines.len() <= 3, "a line per change, not per read: {text}");
}
