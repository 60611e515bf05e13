//! Printing results: lines and JSON on stdout, warnings on stderr (unless
//! `-q`), durations, and shell quoting.

use std::io::Write;
use std::time::Duration;

use crate::cli::Global;

/// How a command prints its warnings, from the global options (`-q`).
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
}

impl Printer {
    /// The printer the global options ask for.
    pub fn new(global: &Global) -> Self {
        Printer {
            quiet: global.quiet,
        }
    }

    /// Prints `warning: MESSAGE` on stderr, unless `-q` was given.
    pub fn warn(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }
}

/// Prints one line on stdout; a closed stdout (e.g. `| head`) is not an error.
pub fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    say(text);
}

/// Formats a duration as humantime does: `20s`, `1s 500ms`, `30m`, `7days`.
pub fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Formats a measured duration: to the millisecond from a second up, to the
/// microsecond below (`10s 12ms`, `13ms 630us`).
pub fn fmt_measured(d: Duration) -> String {
    let unit = if d < Duration::from_secs(1) {
        1_000
    } else {
        1_000_000
    };
    let rounded = Duration::from_nanos((d.as_nanos() / unit * unit) as u64);
    fmt_duration(rounded)
}

/// Quotes `text` for a POSIX shell if it needs it.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("deploy"), "deploy");
        assert_eq!(shell_quote("my lock"), "'my lock'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn durations_format() {
        assert_eq!(fmt_duration(Duration::from_secs(20)), "20s");
        assert_eq!(fmt_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(7 * 86400)), "7days");
        let measured = Duration::from_nanos(10_012_345_678);
        assert_eq!(fmt_measured(measured), "10s 12ms");
        assert_eq!(fmt_measured(Duration::from_nanos(13_630_999)), "13ms 630us");
    }
}
