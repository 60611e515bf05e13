//! The documented exit codes of `lynk`, and the error type commands return.
//!
//! `lynk run` exits with its command's code when the command ran; the codes
//! below are what lynk itself reports. They are listed in `docs/cli.md`.

use lynk_core::{BackendError, BackendErrorKind, LockError};

/// Success.
pub const OK: i32 = 0;
/// Any failure without a more specific code.
pub const FAILURE: i32 = 1;
/// The command line or an input was invalid (clap also uses 2). Nothing was sent.
pub const USAGE: i32 = 2;
/// The lock was not granted within `--wait` (or at once, with `--wait 0`).
pub const NOT_GRANTED: i32 = 3;
/// The lease was lost while held, or the lock is no longer held by the
/// acquisition named on the command line.
pub const LOST: i32 = 4;
/// DynamoDB could not be reached, did not answer in time, throttled us, or
/// the outcome is unknown (also a `--wait` that ran out while DynamoDB kept
/// failing): retrying later may help.
pub const UNAVAILABLE: i32 = 5;
/// AWS configuration: no region, no credentials, access denied.
pub const AWS_CONFIG: i32 = 6;
/// The table is missing, has the wrong key schema, or is not a lynk table.
pub const TABLE: i32 = 7;
/// The operator declined a confirmation, or interrupted lynk while it waited.
pub const CANCELLED: i32 = 8;
/// `lynk run`: the command exists but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// `lynk run`: the command was not found.
pub const NOT_FOUND: i32 = 127;
/// stdout or stderr was closed before lynk finished writing (e.g. `lynk
/// list-tables | head -1`): lynk stops quietly with the status of a program
/// ended by `SIGPIPE` (128 + 13), as Unix tools do.
pub const BROKEN_PIPE: i32 = 141;

/// A failed command: what to print on stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: i32,
    /// What went wrong and what to do (one line, printed after `error: `).
    pub message: String,
    /// An optional second line (printed after `hint: `).
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the failure on stderr.
    pub fn print(&self) {
        // One line, whatever the underlying library put in its message.
        let message: Vec<&str> = self.message.lines().map(str::trim).collect();
        eprintln!("error: {}", message.join(" "));
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
    }
}

/// The exit code for a backend error of `kind`.
pub fn for_kind(kind: BackendErrorKind) -> i32 {
    match kind {
        BackendErrorKind::Throttled
        | BackendErrorKind::Unavailable
        | BackendErrorKind::OutcomeUnknown => UNAVAILABLE,
        BackendErrorKind::TableMissing | BackendErrorKind::TableMisconfigured => TABLE,
        BackendErrorKind::AccessDenied => AWS_CONFIG,
        BackendErrorKind::InvalidRequest => USAGE,
        _ => FAILURE,
    }
}

impl From<lynk_dynamo::Error> for Failure {
    fn from(e: lynk_dynamo::Error) -> Self {
        use lynk_dynamo::Error as E;
        // lynk-dynamo classifies its errors (`kind`); only a lost fence, the
        // engine's own errors, and a request DynamoDB rejected (it was sent,
        // so not a usage error) need more than the kind says.
        let code = match &e {
            E::LockLost { .. } => LOST,
            E::InvalidRequest { .. } => FAILURE,
            E::Lock(l) => return Failure::from_lock(l),
            _ => for_kind(e.kind()),
        };
        let (message, hint) = match &e {
            E::NotALockTable { table } => (
                e.to_string(),
                Some(format!(
                    "to delete it anyway: lynk delete-table {table} --force"
                )),
            ),
            E::NoCredentials { detail } => {
                // The chain's report spans many lines; keep it for -v.
                tracing::info!(%detail, "credential chain");
                (
                    "no AWS credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pick a profile with --profile or AWS_PROFILE, run `aws sso login`, or run where an instance or task role is available".to_owned(),
                    Some("run with -v to see what the credential chain tried".to_owned()),
                )
            }
            _ => (e.to_string(), None),
        };
        Failure {
            code,
            message,
            hint,
        }
    }
}

impl From<LockError> for Failure {
    fn from(e: LockError) -> Self {
        Failure::from_lock(&e)
    }
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Self {
        Failure::new(for_kind(e.kind()), e.to_string())
    }
}

impl Failure {
    /// The failure for a lock-engine error.
    pub fn from_lock(e: &LockError) -> Self {
        let code = match e {
            // The wait ended while the store was failing (e.g. DynamoDB did
            // not answer): that is the store's failure, not a holder's.
            LockError::NotGranted {
                last_error: Some(_),
                ..
            } => UNAVAILABLE,
            LockError::NotGranted { .. } => NOT_GRANTED,
            LockError::Lost { .. } => LOST,
            LockError::Throttled { .. }
            | LockError::Unavailable { .. }
            | LockError::OutcomeUnknown { .. } => UNAVAILABLE,
            LockError::Backend { source, .. } => for_kind(source.kind()),
            LockError::InvalidInput { .. } => USAGE,
            _ => FAILURE,
        };
        let mut message = e.to_string();
        if let LockError::NotGranted {
            last_error: None, ..
        } = e
        {
            // The library ends with generic advice; every command that waits
            // adds its own `hint:` line with the exact command, so the advice
            // would say the same thing twice.
            if let Some(i) = message.rfind("; ") {
                message.truncate(i);
            }
        }
        Failure::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let mut codes = [
            OK,
            FAILURE,
            USAGE,
            NOT_GRANTED,
            LOST,
            UNAVAILABLE,
            AWS_CONFIG,
            TABLE,
            CANCELLED,
            CANNOT_EXECUTE,
            NOT_FOUND,
        ];
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn a_wait_that_ran_out_while_the_store_failed_is_unavailable() {
        let not_granted = |last_error: Option<&str>| LockError::NotGranted {
            name: "x".into(),
            waited: std::time::Duration::from_secs(5),
            holder: None,
            last_error: last_error.map(|m| BackendError::new(BackendErrorKind::Unavailable, m)),
        };
        assert_eq!(Failure::from_lock(&not_granted(None)).code, NOT_GRANTED);
        assert_eq!(
            Failure::from_lock(&not_granted(Some("the store did not answer"))).code,
            UNAVAILABLE
        );
    }

    #[test]
    fn dynamo_errors_map_to_codes() {
        let f: Failure = lynk_dynamo::Error::NoRegion.into();
        assert_eq!(f.code, AWS_CONFIG);
        let f: Failure = lynk_dynamo::Error::NotALockTable { table: "t".into() }.into();
        assert_eq!(f.code, TABLE);
        assert!(f.hint.unwrap().contains("--force"));
    }
}
