//! Progress while a command waits for a lock, a permit or leadership, on
//! stderr: nothing with `-q`; on a terminal one live line, redrawn every
//! second (who holds the lock, its lease, how long its record has stood
//! unchanged by lynk's own measure, how long lynk has waited); without a
//! terminal one line when the wait starts and one every 30 s. Never a clock
//! comparison across hosts: "unchanged for" counts from when this process
//! first read the record's current version.

use std::convert::Infallible;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use lynk_core::{Clock, LockClient, SystemClock, Version};

use crate::cli::Global;
use crate::output::fmt_duration;

/// Before the first line: an acquisition that succeeds at once prints
/// nothing.
const FIRST_AFTER: Duration = Duration::from_secs(1);
/// Without a terminal, a line this often.
const LINE_EVERY: Duration = Duration::from_secs(30);
/// On a terminal, the line is redrawn this often ...
const REDRAW_EVERY: Duration = Duration::from_secs(1);
/// ... and the record read this often (one `GetItem`).
const READ_EVERY: Duration = Duration::from_secs(5);

/// What the last read of the record said.
struct Seen {
    holder: Option<String>,
    lease: Duration,
    version: Version,
    since: Instant,
}

/// Clears the live line when the wait ends (this future is dropped).
struct LiveLine {
    drawn: bool,
}

impl Drop for LiveLine {
    fn drop(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// Reports the wait for `target` (e.g. `lock "job"`) until dropped. With
/// `record`, the name whose record tells who holds it.
pub async fn report(
    global: &Global,
    client: &LockClient,
    target: &str,
    record: Option<&str>,
) -> Infallible {
    if global.quiet {
        return std::future::pending().await;
    }
    let clock = SystemClock;
    let started = clock.now();
    let terminal = std::io::stderr().is_terminal();
    clock.sleep(FIRST_AFTER).await;
    let mut seen: Option<Seen> = None;
    let mut last_read: Option<Instant> = None;
    let mut live = LiveLine { drawn: false };
    let mut first = true;
    loop {
        let now = clock.now();
        let read_due =
            last_read.is_none_or(|t| now >= t + if terminal { READ_EVERY } else { LINE_EVERY });
        if let (Some(name), true) = (record, read_due) {
            last_read = Some(now);
            if let Ok(found) = client.describe(name).await {
                let at = clock.now();
                seen = found.map(|r| {
                    let since = match &seen {
                        Some(s) if s.version == r.version => s.since,
                        _ => at,
                    };
                    Seen {
                        holder: (!r.released).then_some(r.host),
                        lease: r.lease_duration,
                        version: r.version,
                        since,
                    }
                });
            }
        }
        let waited = clock.now().saturating_duration_since(started);
        let about = match (&seen, record) {
            (
                Some(Seen {
                    holder: Some(h),
                    lease,
                    since,
                    ..
                }),
                _,
            ) => format!(
                "held by {h} (lease {}, record unchanged for {})",
                fmt_duration(*lease),
                whole_seconds(clock.now().saturating_duration_since(*since))
            ),
            (_, Some(_)) => "free in the store; taking it".to_owned(),
            (_, None) => "every permit or a name is held".to_owned(),
        };
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(
                err,
                "\r\x1b[2Kwaiting for {target}: {about}; waited {}",
                whole_seconds(waited)
            );
            let _ = err.flush();
            live.drawn = true;
        } else if first {
            let _ = writeln!(err, "lynk: waiting for {target}: {about}");
        } else {
            let _ = writeln!(
                err,
                "lynk: still waiting for {target} after {}: {about}",
                whole_seconds(waited)
            );
        }
        drop(err);
        first = false;
        clock
            .sleep(if terminal { REDRAW_EVERY } else { LINE_EVERY })
            .await;
    }
}

/// `d` to the second, as people write it (`0s`, `45s`, `2m 5s`).
fn whole_seconds(d: Duration) -> String {
    fmt_duration(Duration::from_secs(d.as_secs()))
}
