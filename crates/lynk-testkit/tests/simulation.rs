//! Seeded simulation under faults, pauses, crashes and clock drift, with the
//! checker of `lynk_testkit::sim`, and negative controls proving the checker
//! can fail.
//!
//! `LYNK_SIM_SEEDS` sets how many seeds run (default 24); `LYNK_SIM_SEED`
//! replays one. For a long soak:
//!
//! ```text
//! LYNK_SIM_SEEDS=2000 cargo test --release -p lynk-testkit --test simulation -- --nocapture
//! ```

use lynk_testkit::sim::{run, SimConfig, SimReport};
use lynk_testkit::RandomFaults;

fn seeds(default: u64) -> Vec<u64> {
    if let Some(one) = std::env::var("LYNK_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var("LYNK_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

fn run_seeds(name: &str, seeds: &[u64], config: impl Fn(u64) -> SimConfig) -> Vec<SimReport> {
    let reports: Vec<SimReport> = seeds.iter().map(|&s| run(&config(s))).collect();
    let sum = |f: fn(&SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    println!(
        "{name}: {} seeds, {} store operations, {} acquisitions, {} injected faults, {} pauses, {} crashes, {} lost signals, {} writes accepted, {} stale writes refused, {} violations",
        reports.len(),
        sum(|r| r.operations),
        sum(|r| r.acquisitions),
        sum(|r| r.faults),
        sum(|r| r.pauses),
        sum(|r| r.crashes),
        sum(|r| r.lost_signals),
        sum(|r| r.accepted_writes),
        sum(|r| r.rejected_writes),
        sum(|r| r.violations.len() as u64),
    );
    reports
}

fn assert_clean(reports: &[SimReport]) {
    let failing: Vec<String> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| {
            format!(
                "{r}\n  replay: LYNK_SIM_SEED={} cargo test -p lynk-testkit --test simulation",
                r.seed
            )
        })
        .collect();
    assert!(failing.is_empty(), "violations:\n{}", failing.join("\n"));
}

#[test]
fn no_violations_under_faults_pauses_crashes_and_drift() {
    let reports = run_seeds("faults", &seeds(24), |seed| SimConfig {
        seed,
        ..SimConfig::default()
    });
    assert_clean(&reports);
    let total = |f: fn(&SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert!(
        total(|r| r.faults) > 0 && total(|r| r.pauses) > 0 && total(|r| r.crashes) > 0,
        "the run exercised faults, pauses and crashes"
    );
    assert!(
        total(|r| r.rejected_writes) > 0,
        "paused holders' stale writes reached the oracle and were refused"
    );
}

#[test]
fn abandoned_locks_are_taken_over_in_time_without_faults() {
    let reports = run_seeds("liveness", &seeds(12), |seed| SimConfig {
        seed,
        faults: RandomFaults::none(0),
        check_liveness: true,
        lock_delay: std::time::Duration::from_secs(2),
        ..SimConfig::default()
    });
    assert_clean(&reports);
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        seed: 99,
        ..SimConfig::default()
    };
    assert_eq!(run(&config), run(&config));
}

/// Negative control 1: with the oracle's fencing check off, paused holders'
/// stale writes are accepted, and the checker must see it.
#[test]
fn negative_control_unfenced_resource_is_caught() {
    let reports = run_seeds("negative control (no fencing)", &seeds(12), |seed| {
        SimConfig {
            seed,
            fencing: false,
            pause_probability: 0.4,
            ..SimConfig::default()
        }
    });
    let found: usize = reports.iter().map(|r| r.violations.len()).sum();
    assert!(found > 0, "the checker found no violation with fencing off");
    assert!(reports
        .iter()
        .flat_map(|r| &r.violations)
        .any(|v| v.contains("accepted token")));
}

/// Negative control 2: unsafe lease accounting (no drift allowance while
/// clocks drift by up to 10 %) lets a waiter take over while the holder still
/// believes it holds; the checker must see the overlap.
#[test]
fn negative_control_unsafe_lease_accounting_is_caught() {
    let reports = run_seeds(
        "negative control (no drift allowance)",
        &seeds(12),
        |seed| SimConfig {
            seed,
            drift_bound: 0.1,
            drift_allowance: 0.0,
            crash_probability: 0.4,
            pause_probability: 0.0,
            faults: RandomFaults::none(0),
            ..SimConfig::default()
        },
    );
    assert!(
        reports
            .iter()
            .flat_map(|r| &r.violations)
            .any(|v| v.contains("overlap")),
        "the checker found no overlap with unsafe accounting"
    );
}
