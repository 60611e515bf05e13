//! The documented exit codes of `lynk`.

/// Success.
pub const OK: i32 = 0;
/// A lock operation failed (not granted, lost, store error).
pub const FAILURE: i32 = 1;
/// The command line was wrong (clap also uses 2).
pub const USAGE: i32 = 2;
