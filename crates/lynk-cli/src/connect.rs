//! Connecting to DynamoDB from the global options, and printing results.

use std::io::Write;

use lynk_dynamo::{AwsOptions, DynamoBackend, TableAdmin, TableInfo};

use crate::cli::Global;
use crate::exit::Failure;

/// The AWS options given by `--region`, `--endpoint-url` and `--profile`.
pub fn aws_options(global: &Global) -> AwsOptions {
    let mut options = AwsOptions::new();
    if let Some(r) = &global.region {
        options = options.region(r.clone());
    }
    if let Some(u) = &global.endpoint_url {
        options = options.endpoint_url(u.clone());
    }
    if let Some(p) = &global.profile {
        options = options.profile(p.clone());
    }
    options
}

/// Table administration with the global options.
pub async fn admin(global: &Global) -> Result<TableAdmin, Failure> {
    Ok(TableAdmin::connect(&aws_options(global)).await?)
}

/// A backend for `table`, after checking that the table exists and has the
/// right key schema (so a typo or a wrong table fails at once, with a clear
/// message, instead of inside the lock engine's retries).
///
/// A caller whose credentials may not describe tables still gets through:
/// an access-denied answer to the check is logged and ignored.
pub async fn checked_backend(global: &Global, table: &str) -> Result<DynamoBackend, Failure> {
    let backend = DynamoBackend::builder(table)
        .options(aws_options(global))
        .build()
        .await?;
    match backend.admin().check_table(table).await {
        Ok(info) => check_active(&info)?,
        Err(lynk_dynamo::Error::AccessDenied { detail, .. }) => {
            tracing::info!(table, %detail, "cannot describe the table; skipping its check");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(backend)
}

fn check_active(info: &TableInfo) -> Result<(), Failure> {
    if !info.status.is_usable() {
        return Err(Failure::new(
            crate::exit::TABLE,
            format!(
                "table `{}` is {}, not ACTIVE; wait until it is (lynk check-table {})",
                info.name, info.status, info.name
            ),
        ));
    }
    Ok(())
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`warn`] silent (`-q`).
pub fn set_quiet(yes: bool) {
    QUIET.store(yes, std::sync::atomic::Ordering::Relaxed);
}

/// Prints `warning: MESSAGE` on stderr, unless `-q` was given.
pub fn warn(message: impl std::fmt::Display) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("warning: {message}");
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
}
