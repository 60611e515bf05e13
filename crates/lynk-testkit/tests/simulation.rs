//! Seeded simulation under store faults, partitions, pauses, crashes, clock
//! drift and wrong wall clocks, with the checker of `lynk_testkit::sim`, and
//! negative controls proving the checker can fail: each breaks the engine
//! (or the resource) on purpose and must be caught. The mutex runs first;
//! then leader election, a counting semaphore and multi-locks under the same
//! fault model (`SimConfig::primitive`), each with its own controls.
//!
//! `LYNK_SIM_SEEDS` sets how many seeds run per configuration (default 24
//! for the main configurations, 12 for the others); `LYNK_SIM_SEED` replays
//! one. For a long soak:
//!
//! ```text
//! LYNK_SIM_SEEDS=500 cargo test --release -p lynk-testkit --test simulation -- --nocapture
//! ```
//!
//! See `docs/simulation.md`.

use std::time::Duration;

use lynk_core::Mutations;
use lynk_testkit::sim::{run, SimConfig, SimPrimitive, SimReport, SimTotals};
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

fn run_seeds(name: &str, seeds: &[u64], config: impl Fn(u64) -> SimConfig) -> SimTotals {
    let reports: Vec<SimReport> = seeds.iter().map(|&s| run(&config(s))).collect();
    let totals = SimTotals::of(&reports);
    println!("{name}: {totals}");
    totals
}

fn assert_clean(totals: &SimTotals, test: &str) {
    assert!(
        totals.sum.violations.is_empty(),
        "violations in seeds {:?}:\n{}\n  replay one: LYNK_SIM_SEED={} cargo test -p lynk-testkit --test simulation {test} -- --nocapture",
        totals.failing_seeds,
        totals.sum.violations.join("\n"),
        totals.failing_seeds.first().copied().unwrap_or(0),
    );
}

/// Runs a negative control: `broken` must be caught with violations of
/// `kind`; the same configuration repaired by `repaired` (the mutation
/// off) must be clean, so the violations come from what was broken.
fn control(
    name: &str,
    kind: &str,
    broken: impl Fn(u64) -> SimConfig,
    repaired: impl Fn(SimConfig) -> SimConfig,
) {
    let seeds = seeds(12);
    let totals = run_seeds(&format!("negative control ({name})"), &seeds, &broken);
    let found = totals.sum.violations_of(kind);
    assert!(
        found > 0,
        "negative control ({name}) found no {kind:?} violation\n{totals}"
    );
    if let Some(example) = totals.sum.violations.iter().find(|v| v.contains(kind)) {
        println!("  caught {found} {kind:?} violations, e.g. {example}");
    }
    let twin = run_seeds(&format!("  the same, repaired ({name})"), &seeds, |s| {
        repaired(broken(s))
    });
    assert_clean(&twin, "negative_control");
}

#[test]
fn no_violations_under_faults_partitions_pauses_crashes_and_skew() {
    let totals = run_seeds("main", &seeds(24), |seed| SimConfig {
        seed,
        ..SimConfig::default()
    });
    assert_clean(&totals, "no_violations_under");
    if totals.seeds < 12 {
        return; // a replay: too few seeds to expect every kind of event
    }
    let s = &totals.sum;
    let f = &s.faults;
    assert!(
        f.fail_before > 0
            && f.lose_response > 0
            && f.delay > 0
            && f.delay_response > 0
            && f.stall + f.stall_after_apply > 0,
        "every kind of store fault was injected: {totals}"
    );
    assert!(
        s.pauses > 0 && s.crashes > 0 && s.partitions > 0 && s.wall_steps > 0,
        "the run exercised pauses, crashes, partitions and wall steps: {totals}"
    );
    assert!(
        s.grants > 0 && s.confirmed_grants > 0 && s.ordered_checks > 0,
        "releases granted to other hosts' queued waiters, which confirmed: {totals}"
    );
    assert!(
        s.wakeups_lost > 0
            && s.wakeups_duplicated > 0
            && s.wakeups_delivered > 0
            && s.wakeup_polls > 0,
        "wake-ups were lost, duplicated, delivered late and polled on: {totals}"
    );
    assert!(
        s.try_granted > 0 && s.try_busy > 0 && s.token_restarts > 0,
        "try_acquire answered both ways, tokens restarted: {totals}"
    );
    assert!(
        s.rejected_writes > 0,
        "paused holders' stale writes reached the oracle and were refused: {totals}"
    );
}

#[test]
fn no_violations_without_a_store_queue() {
    // A backend without a wait queue (Capabilities::wait_queue false):
    // waiters only poll, and a release hands over to a local waiter.
    let totals = run_seeds("no store queue", &seeds(12), |seed| SimConfig {
        seed,
        store_queue: false,
        wake_ups: None,
        ..SimConfig::default()
    });
    assert_clean(&totals, "no_violations_without");
    if totals.seeds < 12 {
        return;
    }
    let s = &totals.sum;
    assert!(
        s.handovers > 0 && s.grants == 0,
        "local handovers, and no grants without a queue: {totals}"
    );
}

#[test]
fn abandoned_locks_are_taken_over_in_time() {
    let totals = run_seeds("liveness", &seeds(12), |seed| SimConfig {
        seed,
        faults: RandomFaults::none(0),
        partition_every: None,
        check_liveness: true,
        lock_delay: Duration::from_secs(2),
        ..SimConfig::default()
    });
    assert_clean(&totals, "abandoned_locks");
    assert!(
        totals.sum.liveness_checks > 0,
        "the lock was freed with healthy waiters, and each time checked: {totals}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        seed: 99,
        ..SimConfig::default()
    };
    assert_eq!(run(&config), run(&config));
}

/// Negative control: with the oracle's fencing check off, paused holders'
/// stale writes are accepted, and the checker must see it.
#[test]
fn negative_control_unfenced_resource_is_caught() {
    control(
        "no fencing",
        "accepted token",
        |seed| SimConfig {
            seed,
            fencing: false,
            pause_probability: 0.4,
            ..SimConfig::default()
        },
        |c| SimConfig { fencing: true, ..c },
    );
}

/// Negative control: no drift allowance while clocks drift by up to 10 %
/// lets a waiter take over while the holder still believes it holds. (The
/// repair: an allowance covering two clocks 10 % apart either way.)
#[test]
fn negative_control_no_drift_allowance_is_caught() {
    control(
        "no drift allowance",
        "overlap",
        |seed| SimConfig {
            seed,
            drift_bound: 0.1,
            drift_allowance: 0.0,
            crash_probability: 0.4,
            pause_probability: 0.0,
            faults: RandomFaults::none(0),
            partition_every: None,
            host_pause_every: None,
            ..SimConfig::default()
        },
        |c| SimConfig {
            drift_allowance: 0.11,
            ..c
        },
    );
}

/// Negative control: a holder that times its lease from the write's
/// response instead of its send believes it holds for as long as the
/// response was delayed after the write applied.
#[test]
fn negative_control_lease_timed_from_response_is_caught() {
    control(
        "lease from response",
        "overlap",
        |seed| SimConfig {
            seed,
            mutations: Mutations {
                time_lease_from_response: true,
                ..Mutations::default()
            },
            faults: RandomFaults {
                delay_response: 0.3,
                max_delay: Duration::from_secs(4),
                ..RandomFaults::none(0)
            },
            crash_probability: 0.4,
            ..SimConfig::default()
        },
        unmutated,
    );
}

/// Negative control: a token-less record's token from the wall clock alone
/// (no floor of tokens seen) goes back when the acquirer's wall clock is
/// behind, although it saw the higher token.
#[test]
fn negative_control_tokens_from_wall_clock_alone_are_caught() {
    control(
        "no token floor",
        "token went back",
        |seed| SimConfig {
            seed,
            mutations: Mutations {
                no_token_floor: true,
                ..Mutations::default()
            },
            delete_hosts: 1.0,
            handles_per_host: 2,
            max_wall_offset: Duration::from_secs(30),
            wall_step_every: Some(Duration::from_secs(60)),
            ..SimConfig::default()
        },
        unmutated,
    );
}

/// Negative control: a handover written without the releasing holder's
/// version overwrites whoever took the lock over while the release was
/// retrying, so the local waiter and the new holder both hold it.
#[test]
fn negative_control_unconditional_handover_is_caught() {
    control(
        "unconditional handover",
        "overlap",
        |seed| SimConfig {
            seed,
            mutations: Mutations {
                unconditional_handover: true,
                ..Mutations::default()
            },
            handles_per_host: 4,
            release_timeout: Some(Duration::from_secs(40)),
            partition_every: Some(Duration::from_secs(40)),
            host_pause_every: Some(Duration::from_secs(60)),
            ..SimConfig::default()
        },
        unmutated,
    );
}

fn unmutated(c: SimConfig) -> SimConfig {
    SimConfig {
        mutations: Mutations::default(),
        ..c
    }
}

// ---- The other primitives, under the same fault model ----------------------

const ELECTION: SimPrimitive = SimPrimitive::Election;
const SEMAPHORE: SimPrimitive = SimPrimitive::Semaphore { permits: 2 };
const MULTI_LOCK: SimPrimitive = SimPrimitive::MultiLock { names: 3, pool: 4 };

/// The main configuration with `primitive`.
fn with(primitive: SimPrimitive, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        primitive,
        ..SimConfig::default()
    }
}

/// Runs `primitive` under the main configuration's faults, requires a clean
/// history, and that the run saw every kind of fault and event.
fn clean_primitive(name: &str, test: &str, primitive: SimPrimitive) -> SimTotals {
    let totals = run_seeds(name, &seeds(24), |seed| with(primitive, seed));
    assert_clean(&totals, test);
    if totals.seeds < 12 {
        return totals; // a replay
    }
    let s = &totals.sum;
    let f = &s.faults;
    assert!(
        f.fail_before > 0 && f.lose_response > 0 && f.delay > 0 && f.delay_response > 0,
        "store faults were injected: {totals}"
    );
    assert!(
        s.pauses > 0 && s.crashes > 0 && s.partitions > 0 && s.wall_steps > 0,
        "the run exercised pauses, crashes, partitions and wall steps: {totals}"
    );
    assert!(
        s.acquisitions > 100 && s.try_granted > 0 && s.try_busy > 0 && s.lost_signals > 0,
        "acquisitions, try_acquire both ways, lost signals: {totals}"
    );
    totals
}

#[test]
fn election_no_violations_under_faults_partitions_pauses_crashes_and_skew() {
    let totals = clean_primitive("election", "election_no_violations", ELECTION);
    if totals.seeds >= 12 {
        let s = &totals.sum;
        assert!(
            s.payload_changes > 0 && s.rejected_writes > 0 && s.grants > 0,
            "leaders replaced payloads, deposed leaders' writes were refused, resignations granted: {totals}"
        );
    }
}

#[test]
fn semaphore_no_violations_under_faults_partitions_pauses_crashes_and_skew() {
    let totals = clean_primitive(
        "semaphore (2 permits)",
        "semaphore_no_violations",
        SEMAPHORE,
    );
    if totals.seeds >= 12 {
        assert_eq!(
            totals.sum.peak_holders, 2,
            "both permits were held at once, never more: {totals}"
        );
    }
}

#[test]
fn multi_lock_no_violations_under_faults_partitions_pauses_crashes_and_skew() {
    let totals = clean_primitive(
        "multi-lock (2-3 of 4 names)",
        "multi_lock_no_violations",
        MULTI_LOCK,
    );
    if totals.seeds >= 12 {
        let s = &totals.sum;
        assert!(
            s.rejected_writes > 0 && s.peak_holders == 1 && s.transactions > 0,
            "paused holders' stale writes were refused; one holder per name; some multi-locks taken in one transaction: {totals}"
        );
    }
}

/// The "no drift allowance" control's configuration for `primitive`: no
/// allowance while clocks drift by up to 10 %, holders' hosts crash often.
fn no_drift_allowance(primitive: SimPrimitive, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        primitive,
        drift_bound: 0.1,
        drift_allowance: 0.0,
        crash_probability: 0.4,
        pause_probability: 0.0,
        faults: RandomFaults::none(0),
        partition_every: None,
        host_pause_every: None,
        ..SimConfig::default()
    }
}

fn drift_repaired(c: SimConfig) -> SimConfig {
    SimConfig {
        drift_allowance: 0.11,
        ..c
    }
}

/// The "lease from response" control's configuration for `primitive`.
fn lease_from_response(primitive: SimPrimitive, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        primitive,
        mutations: Mutations {
            time_lease_from_response: true,
            ..Mutations::default()
        },
        faults: RandomFaults {
            delay_response: 0.3,
            max_delay: Duration::from_secs(4),
            ..RandomFaults::none(0)
        },
        crash_probability: 0.4,
        ..SimConfig::default()
    }
}

/// Negative control: an election with no drift allowance while clocks
/// drift by 10 %: a fast candidate takes over from a slow leader whose host
/// crashed while that leader still believes it leads.
#[test]
fn negative_control_election_no_drift_allowance_is_caught() {
    control(
        "election, no drift allowance",
        "overlap",
        |seed| no_drift_allowance(ELECTION, seed),
        drift_repaired,
    );
}

/// Negative control: an election whose resource does not check terms
/// accepts a deposed (paused) leader's late write.
#[test]
fn negative_control_election_unfenced_resource_is_caught() {
    control(
        "election, no fencing",
        "accepted token",
        |seed| SimConfig {
            fencing: false,
            pause_probability: 0.4,
            ..with(ELECTION, seed)
        },
        |c| SimConfig { fencing: true, ..c },
    );
}

/// Negative control: a semaphore with no drift allowance while clocks drift
/// by 10 %: a fast client removes a crashed slow holder's permit line while
/// that holder still counts it held, so three permits of two overlap.
#[test]
fn negative_control_semaphore_no_drift_allowance_is_caught() {
    control(
        "semaphore, no drift allowance",
        "overlap",
        |seed| no_drift_allowance(SEMAPHORE, seed),
        drift_repaired,
    );
}

/// Negative control: permits timed from the claiming write's response (the
/// semaphore takes the lease start from the engine, so the mutation applies
/// to it): a holder believes its permit lasts as long as the response was
/// delayed beyond what the store and the other clients see.
#[test]
fn negative_control_semaphore_lease_timed_from_response_is_caught() {
    control(
        "semaphore, lease from response",
        "overlap",
        |seed| lease_from_response(SEMAPHORE, seed),
        unmutated,
    );
}

/// Negative control: multi-locks with no drift allowance while clocks
/// drift by 10 %: one name of a crashed slow holder's multi-lock is taken
/// over while it still believes it holds it.
#[test]
fn negative_control_multi_lock_no_drift_allowance_is_caught() {
    control(
        "multi-lock, no drift allowance",
        "overlap",
        |seed| no_drift_allowance(MULTI_LOCK, seed),
        drift_repaired,
    );
}

/// Negative control: per-name resources that do not check tokens accept a
/// paused multi-lock holder's late writes.
#[test]
fn negative_control_multi_lock_unfenced_resource_is_caught() {
    control(
        "multi-lock, no fencing",
        "accepted token",
        |seed| SimConfig {
            fencing: false,
            pause_probability: 0.4,
            ..with(MULTI_LOCK, seed)
        },
        |c| SimConfig { fencing: true, ..c },
    );
}

#[test]
fn a_seed_replays_exactly_for_each_primitive() {
    for primitive in [ELECTION, SEMAPHORE, MULTI_LOCK] {
        for seed in 1..=6 {
            let config = with(primitive, seed);
            assert_eq!(run(&config), run(&config), "{primitive:?} seed {seed}");
        }
    }
}
