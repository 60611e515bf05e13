//! What a conformance run reports.

use std::fmt;

/// The outcome of a conformance run.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: Vec<&'static str>,
    /// Cases not run, with the reason.
    pub skipped: Vec<(&'static str, String)>,
    /// Cases that failed, with what was wrong.
    pub failed: Vec<(&'static str, String)>,
}

impl Report {
    /// Panics, listing every failure, unless all run cases passed.
    pub fn assert_ok(&self) {
        assert!(
            self.failed.is_empty() && !self.passed.is_empty(),
            "conformance failed:\n{self}"
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in &self.passed {
            writeln!(f, "  pass  {name}")?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  SKIP  {name}: {why}")?;
        }
        for (name, why) in &self.failed {
            writeln!(f, "  FAIL  {name}: {why}")?;
        }
        write!(
            f,
            "conformance: {} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )
    }
}
