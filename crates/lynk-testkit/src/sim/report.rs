//! What a run did and found, and the sum over many runs.

use std::fmt;

use crate::FaultCounts;

/// What a run did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed, to replay.
    pub seed: u64,
    /// Requests that reached the store.
    pub operations: u64,
    /// Locks granted (by a store write or a local handover).
    pub acquisitions: u64,
    /// Local handovers (one write from holder to the next local waiter).
    pub handovers: u64,
    /// Takeovers of an abandoned lease.
    pub takeovers: u64,
    /// Grants written to the first waiter of the store's queue.
    pub grants: u64,
    /// Grants their waiter confirmed (acquisitions by grant).
    pub confirmed_grants: u64,
    /// Acquisitions after a release while another host's waiter, healthy
    /// throughout, had been waiting since at least 0.5 s before the
    /// acquirer began to wait: the handovers where arrival order could be
    /// kept or broken.
    pub ordered_checks: u64,
    /// Of those, the ones where no such earlier waiter was passed over.
    pub in_arrival_order: u64,
    /// Wake-ups sent, lost, duplicated and delivered by the simulated
    /// network.
    pub wakeups_sent: u64,
    /// See [`wakeups_sent`](SimReport::wakeups_sent).
    pub wakeups_lost: u64,
    /// See [`wakeups_sent`](SimReport::wakeups_sent).
    pub wakeups_duplicated: u64,
    /// See [`wakeups_sent`](SimReport::wakeups_sent).
    pub wakeups_delivered: u64,
    /// Early polls wake-ups caused (after the clients' rate limits).
    pub wakeup_polls: u64,
    /// Store faults injected by the hosts' fault injectors, by kind.
    pub faults: FaultCounts,
    /// Whole-host pauses (of holders, and at random moments).
    pub pauses: u64,
    /// Host crashes.
    pub crashes: u64,
    /// Partitions of one host from the store.
    pub partitions: u64,
    /// Store calls failed or held by a partition.
    pub partitioned_calls: u64,
    /// Steps of a host's wall clock.
    pub wall_steps: u64,
    /// `try_acquire` answers: granted.
    pub try_granted: u64,
    /// `try_acquire` answers: busy.
    pub try_busy: u64,
    /// `try_acquire` answers: an error.
    pub try_errors: u64,
    /// `acquire_timeout` calls that gave up.
    pub acquire_timeouts: u64,
    /// Acquires that failed with an error (retried; not a violation).
    pub acquire_errors: u64,
    /// Grants checked to carry the lease and payload their waiter asked for.
    pub payload_checks: u64,
    /// Acquisitions whose token restarted from the wall clock (the record
    /// had been deleted).
    pub token_restarts: u64,
    /// Of those, restarts below the previous acquisition's token by a client
    /// that had never seen that token: the documented clock dependence, not
    /// counted as violations.
    pub clock_dependent_restarts: u64,
    /// Lost-lease signals.
    pub lost_signals: u64,
    /// Releases that did not return `Ok`.
    pub release_errors: u64,
    /// Times the lock was freed or abandoned while a waiter on a healthy
    /// host waited: each checked for liveness (when enabled).
    pub liveness_checks: u64,
    /// Oracle writes accepted.
    pub accepted_writes: u64,
    /// Oracle writes refused for a stale token.
    pub rejected_writes: u64,
    /// Election runs: payload changes (`Leadership::set_payload`) checked
    /// to keep the term, the lease and the new payload.
    pub payload_changes: u64,
    /// Guards (or permits) handed out already lost or past their safe
    /// deadline: their holding is empty (for a multi-lock, any of its
    /// locks already lost).
    pub lost_on_arrival: u64,
    /// The most holdings of one name (or permits of the semaphore) that
    /// overlapped at one instant, by the holders' own accounting (the
    /// highest over runs, in totals).
    pub peak_holders: u64,
    /// Multi-lock runs: transactions (`LockBackend::write_all`, all names
    /// in one write) the store applied (whether or not their caller heard).
    pub transactions: u64,
    /// Every violation found, described.
    pub violations: Vec<String>,
}

impl SimReport {
    /// Adds `other`'s figures (and violations) to these.
    pub fn add(&mut self, other: &SimReport) {
        self.operations += other.operations;
        self.acquisitions += other.acquisitions;
        self.handovers += other.handovers;
        self.takeovers += other.takeovers;
        self.grants += other.grants;
        self.confirmed_grants += other.confirmed_grants;
        self.ordered_checks += other.ordered_checks;
        self.in_arrival_order += other.in_arrival_order;
        self.wakeups_sent += other.wakeups_sent;
        self.wakeups_lost += other.wakeups_lost;
        self.wakeups_duplicated += other.wakeups_duplicated;
        self.wakeups_delivered += other.wakeups_delivered;
        self.wakeup_polls += other.wakeup_polls;
        self.faults += other.faults;
        self.pauses += other.pauses;
        self.crashes += other.crashes;
        self.partitions += other.partitions;
        self.partitioned_calls += other.partitioned_calls;
        self.wall_steps += other.wall_steps;
        self.try_granted += other.try_granted;
        self.try_busy += other.try_busy;
        self.try_errors += other.try_errors;
        self.acquire_timeouts += other.acquire_timeouts;
        self.acquire_errors += other.acquire_errors;
        self.payload_checks += other.payload_checks;
        self.token_restarts += other.token_restarts;
        self.clock_dependent_restarts += other.clock_dependent_restarts;
        self.lost_signals += other.lost_signals;
        self.release_errors += other.release_errors;
        self.liveness_checks += other.liveness_checks;
        self.accepted_writes += other.accepted_writes;
        self.rejected_writes += other.rejected_writes;
        self.payload_changes += other.payload_changes;
        self.lost_on_arrival += other.lost_on_arrival;
        self.peak_holders = self.peak_holders.max(other.peak_holders);
        self.transactions += other.transactions;
        self.violations.extend(other.violations.iter().cloned());
    }

    /// Violations whose description contains `kind` (e.g. `"overlap"`).
    pub fn violations_of(&self, kind: &str) -> usize {
        self.violations.iter().filter(|v| v.contains(kind)).count()
    }

    fn figures(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} store operations, {} acquisitions ({} handovers, {} takeovers, {} grants / {} confirmed), \
             fairness: arrival order kept in {} of {} contended handovers, \
             wake-ups: {} sent ({} lost, {} duplicated, {} delivered, {} early polls), \
             faults: {} ({}), {} pauses, {} crashes, {} partitions ({} calls cut off), {} wall steps, \
             try_acquire: {} granted / {} busy / {} errors, {} acquire timeouts, {} acquire errors, \
             {} grants checked for lease and payload, {} token restarts ({} below an unseen token), \
             {} lost signals, {} release errors, {} liveness checks, {} writes accepted, {} stale writes refused, \
             {} payload changes, {} transactions, {} lost on arrival, at most {} held at once, {} violations",
            self.operations,
            self.acquisitions,
            self.handovers,
            self.takeovers,
            self.grants,
            self.confirmed_grants,
            self.in_arrival_order,
            self.ordered_checks,
            self.wakeups_sent,
            self.wakeups_lost,
            self.wakeups_duplicated,
            self.wakeups_delivered,
            self.wakeup_polls,
            self.faults.total(),
            self.faults,
            self.pauses,
            self.crashes,
            self.partitions,
            self.partitioned_calls,
            self.wall_steps,
            self.try_granted,
            self.try_busy,
            self.try_errors,
            self.acquire_timeouts,
            self.acquire_errors,
            self.payload_checks,
            self.token_restarts,
            self.clock_dependent_restarts,
            self.lost_signals,
            self.release_errors,
            self.liveness_checks,
            self.accepted_writes,
            self.rejected_writes,
            self.payload_changes,
            self.transactions,
            self.lost_on_arrival,
            self.peak_holders,
            self.violations.len()
        )
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {}: ", self.seed)?;
        self.figures(f)?;
        for v in &self.violations {
            write!(f, "\n  violation: {v}")?;
        }
        Ok(())
    }
}

/// The figures of many runs added up, for printing.
#[derive(Clone, Debug, Default)]
pub struct SimTotals {
    /// How many runs.
    pub seeds: u64,
    /// Their figures added up (the seed field is meaningless).
    pub sum: SimReport,
    /// Seeds with at least one violation.
    pub failing_seeds: Vec<u64>,
}

impl SimTotals {
    /// Adds up `reports`.
    pub fn of(reports: &[SimReport]) -> Self {
        let mut totals = SimTotals::default();
        for r in reports {
            totals.seeds += 1;
            totals.sum.add(r);
            if !r.violations.is_empty() {
                totals.failing_seeds.push(r.seed);
            }
        }
        totals
    }
}

impl fmt::Display for SimTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} seeds: ", self.seeds)?;
        self.sum.figures(f)?;
        let failing = &self.failing_seeds;
        if !failing.is_empty() {
            let shown: Vec<String> = failing.iter().take(12).map(u64::to_string).collect();
            let more = if failing.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            write!(
                f,
                " in {} of {} seeds ({}{more})",
                failing.len(),
                self.seeds,
                shown.join(", ")
            )?;
        }
        Ok(())
    }
}
