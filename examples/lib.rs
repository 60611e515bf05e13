//! Runnable examples of lynk; see the `[[example]]` entries and run them with
//! `cargo run -p lynk-examples --example NAME`.

use std::time::Duration;

/// Reads a duration in milliseconds from environment variable `var`, so CI
/// can run the examples with short holds; `default` otherwise.
pub fn duration_from_env(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(default)
}
