//! Small measuring tools: percentiles, CPU time, RSS, and the figure report.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use lynk_core::{Clock, SystemClock};

/// Monotonic now, through lynk's clock (the workspace bans `Instant::now`).
pub fn now() -> Instant {
    SystemClock.now()
}

/// Sleeps on lynk's clock.
pub async fn sleep(d: Duration) {
    SystemClock.sleep(d).await;
}

/// Wall clock in microseconds since the epoch (comparable across processes on one host).
pub fn wall_micros() -> u64 {
    SystemClock.wall_micros()
}

/// User + system CPU time of this whole process (all threads), from getrusage.
pub fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

/// Resident set size of this process in bytes, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Median and 99th percentile (nearest rank) of `samples`, in milliseconds.
pub fn p50_p99_ms(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    samples.sort();
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    (rank(0.50), rank(0.99))
}

/// Prints figures as a table row and appends them as JSON lines to a file.
#[derive(Debug, Clone)]
pub struct Report {
    json: Option<String>,
}

impl Report {
    pub fn new(json: Option<String>) -> Self {
        Report { json }
    }

    /// One figure: who (`lynk`, `dynamodb-lease`), on which server, what, value, unit, a note.
    pub fn figure(
        &self,
        imp: &str,
        server: &str,
        metric: &str,
        value: f64,
        unit: &str,
        note: &str,
    ) {
        println!("{imp:<15} {server:<9} {metric:<28} {value:>14.3} {unit:<10} {note}");
        if let Some(path) = &self.json {
            let line = serde_json::json!({
                "impl": imp, "server": server, "metric": metric,
                "value": if value.is_finite() { serde_json::json!(value) } else { serde_json::Value::Null },
                "unit": unit, "note": note,
            });
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open json output");
            writeln!(f, "{line}").expect("write json output");
        }
    }
}
