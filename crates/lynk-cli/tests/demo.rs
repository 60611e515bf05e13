//! `lynk demo` end to end, on the built binary.

use assert_cmd::Command;

fn lynk() -> Command {
    Command::cargo_bin("lynk").expect("the lynk binary is built")
}

#[test]
fn demo_runs_the_original_quickstart_and_reports_handovers() {
    let out = lynk()
        .args(["demo", "--workers", "3", "--hold", "150ms", "--lease", "2s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for i in 1..=3 {
        for what in ["Starting", "Lock acquired", "Lock released"] {
            let line = format!("Thread-{i} - {what}");
            assert_eq!(
                stdout.matches(&line).count(),
                1,
                "one {line:?} in:\n{stdout}"
            );
        }
    }
    assert_eq!(
        stdout.matches("handover ").count(),
        4,
        "two handovers, each shown twice:\n{stdout}"
    );
    // Tokens strictly increase in acquisition order.
    let tokens: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.split("(token ").nth(1))
        .map(|t| {
            t.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    assert!(stdout.contains("finished in"));
}

#[test]
fn bad_demo_options_get_a_clear_error_and_usage_exit_code() {
    let out = lynk().args(["demo", "--hold", "ten"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("write it like 20s"), "{stderr}");
    let out = lynk()
        .args(["demo", "--lease", "0s", "--hold", "1ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid lease"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bare_lynk_prints_help() {
    let out = lynk().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: lynk"));
}

mod common;

#[test]
fn demo_runs_against_a_real_table() {
    let Some(e) = common::moto("demo_runs_against_a_real_table") else {
        return;
    };
    let t = common::unique_table("demo");
    common::ok(&common::at(&e, &["create-table", &t]));
    let out = common::at(
        &e,
        &[
            "demo",
            "--table",
            &t,
            "--workers",
            "2",
            "--hold",
            "100ms",
            "--lease",
            "2s",
        ],
    );
    let stdout = common::ok(&out);
    assert_eq!(stdout.matches("Lock released").count(), 2, "{stdout}");
    let locks = common::json(&common::at(&e, &["locks", &t, "--output", "json"]));
    assert_eq!(locks["locks"][0]["lock"], "my lock");
    assert_eq!(locks["locks"][0]["state"], "released");
    // A missing table fails before any worker starts.
    let out = common::at(&e, &["demo", "--table", &common::unique_table("nodemo")]);
    common::assert_fails(&out, 7, &["lynk create-table"]);
}
