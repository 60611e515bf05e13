//! Command-line definitions.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// lynk: distributed locks kept in DynamoDB.
#[derive(Debug, Parser)]
#[command(
    name = "lynk",
    version,
    about = "Distributed locks kept in Amazon DynamoDB",
    after_help = "Examples:\n  lynk demo                      # the original quickstart, in memory, no AWS needed\n  lynk demo --workers 3 --hold 2s"
)]
pub struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace), on stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the original quickstart: workers contending for "my lock".
    #[command(
        after_help = "Examples:\n  lynk demo\n  lynk demo --workers 4 --hold 500ms --lease 5s"
    )]
    Demo(DemoArgs),
}

/// Options of `lynk demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many workers contend for the lock.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub workers: u32,
    /// How long each worker holds the lock (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// The lease written into the lock record.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub lease: Duration,
    /// The lock name.
    #[arg(long, default_value = "my lock")]
    pub lock: String,
}

/// Parses `1.5s`, `250ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write it like 20s, 500ms, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "sec" | "secs" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a usable duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").unwrap_err().contains("20s"));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }
}
