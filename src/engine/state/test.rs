//! One test attempt (`tests.status`) and its phases (`test_phases.status`).
//!
//! ```text
//! tests:        running ──► passed | failed | error | aborted | interrupted
//! test_phases:  running ──► passed | failed | skipped | interrupted
//! ```
//!
//! `error` is an infrastructure or script error (not the patch's fault), `aborted` an
//! operator's cancel or the overall deadline, `interrupted` what crash recovery writes for a
//! row left `running` by a process that died. All outcomes are terminal: a retry is a new
//! test row.

use super::{Status, status_enum};

status_enum! {
    /// Status of one test attempt on one test system.
    TestStatus, "test" {
        /// In progress.
        Running = "running",
        /// Every phase passed.
        Passed = "passed",
        /// The patch failed a phase.
        Failed = "failed",
        /// Infrastructure or script error.
        Error = "error",
        /// Cancelled by an operator or the deadline.
        Aborted = "aborted",
        /// Left running by a process that stopped; closed by recovery.
        Interrupted = "interrupted",
    }
}

impl Status for TestStatus {
    const WHAT: &'static str = "test";
    const ALL: &'static [Self] = &[
        Self::Running,
        Self::Passed,
        Self::Failed,
        Self::Error,
        Self::Aborted,
        Self::Interrupted,
    ];

    fn as_str(self) -> &'static str {
        self.text()
    }

    fn successors(self) -> &'static [Self] {
        match self {
            Self::Running => &[
                Self::Passed,
                Self::Failed,
                Self::Error,
                Self::Aborted,
                Self::Interrupted,
            ],
            _ => &[],
        }
    }
}

status_enum! {
    /// Status of one phase of a test.
    PhaseStatus, "test phase" {
        /// In progress.
        Running = "running",
        /// The phase succeeded.
        Passed = "passed",
        /// The phase failed.
        Failed = "failed",
        /// The phase did not apply (e.g. no reboot needed).
        Skipped = "skipped",
        /// Left running by a process that stopped; closed by recovery.
        Interrupted = "interrupted",
    }
}

impl Status for PhaseStatus {
    const WHAT: &'static str = "test phase";
    const ALL: &'static [Self] = &[
        Self::Running,
        Self::Passed,
        Self::Failed,
        Self::Skipped,
        Self::Interrupted,
    ];

    fn as_str(self) -> &'static str {
        self.text()
    }

    fn successors(self) -> &'static [Self] {
        match self {
            Self::Running => &[Self::Passed, Self::Failed, Self::Skipped, Self::Interrupted],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::testutil::exhaustive;

    #[test]
    fn test_status_edges() {
        use TestStatus as T;
        exhaustive::<TestStatus>(&[
            (T::Running, T::Passed),
            (T::Running, T::Failed),
            (T::Running, T::Error),
            (T::Running, T::Aborted),
            (T::Running, T::Interrupted),
        ]);
        assert!(TestStatus::check(T::Passed, T::Failed, 1).is_err());
        assert!(TestStatus::check(T::Interrupted, T::Running, 1).is_err());
    }

    #[test]
    fn phase_status_edges() {
        use PhaseStatus as P;
        exhaustive::<PhaseStatus>(&[
            (P::Running, P::Passed),
            (P::Running, P::Failed),
            (P::Running, P::Skipped),
            (P::Running, P::Interrupted),
        ]);
        assert!(PhaseStatus::check(P::Failed, P::Passed, 1).is_err());
    }
}
