//! A patch run (`patch_runs.status`) and its per-system rows (`patch_run_hosts.status`).
//!
//! ```text
//! patch run:
//!   planning ──► validating ──► snapshotting ──► executing ──► verifying ──► reporting ──► completed
//!      │              └───────────────────────────►┘  ▲            │  │
//!      └──► reporting (dry run / nothing to do)       └─ next wave ┘  └──► snapshotting (next wave)
//!   executing | verifying ──► budget_tripped
//!   any active state ──► failed | cancelling | interrupted   (reporting: failed | interrupted)
//!   cancelling ──► cancelled | interrupted
//!
//! run host:
//!   pending ──► skipped | snapshotting | running | cancelled | interrupted
//!   snapshotting ──► running | failed | cancelled | interrupted
//!   running ──► verifying | ok | failed | interrupted
//!   verifying ──► ok | failed | interrupted
//!   ok | failed ──► rolling_back ──► rolled_back | rollback_failed | interrupted
//! ```
//!
//! Terminal run states: completed, failed, budget_tripped, cancelled, interrupted.
//! Terminal host states: skipped, rolled_back, rollback_failed, cancelled, interrupted
//! (`ok` and `failed` only lead to a rollback).

use super::{Status, status_enum};

status_enum! {
    /// Status of a patch run.
    RunStatus, "patch run" {
        /// Building the plan (targets × errata, exclusions).
        Planning = "planning",
        /// Pre-flight checks.
        Validating = "validating",
        /// Taking snapshots of the current wave.
        Snapshotting = "snapshotting",
        /// Applying errata to the current wave.
        Executing = "executing",
        /// Checking the current wave.
        Verifying = "verifying",
        /// Writing the report and alerts.
        Reporting = "reporting",
        /// Finished (terminal).
        Completed = "completed",
        /// Failed (terminal).
        Failed = "failed",
        /// The error budget tripped (terminal).
        BudgetTripped = "budget_tripped",
        /// Cancel requested; in-flight work is being stopped.
        Cancelling = "cancelling",
        /// Cancelled (terminal).
        Cancelled = "cancelled",
        /// Left active by a process that stopped; closed by recovery (terminal).
        Interrupted = "interrupted",
    }
}

impl RunStatus {
    /// Whether the run is still in progress (matches the `uq_run_active_policy` index).
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }
}

impl Status for RunStatus {
    const WHAT: &'static str = "patch run";
    const ALL: &'static [Self] = &[
        Self::Planning,
        Self::Validating,
        Self::Snapshotting,
        Self::Executing,
        Self::Verifying,
        Self::Reporting,
        Self::Completed,
        Self::Failed,
        Self::BudgetTripped,
        Self::Cancelling,
        Self::Cancelled,
        Self::Interrupted,
    ];

    fn as_str(self) -> &'static str {
        self.text()
    }

    fn successors(self) -> &'static [Self] {
        use RunStatus as R;
        match self {
            R::Planning => &[
                R::Validating,
                R::Reporting,
                R::Failed,
                R::Cancelling,
                R::Interrupted,
            ],
            R::Validating => &[
                R::Snapshotting,
                R::Executing,
                R::Failed,
                R::Cancelling,
                R::Interrupted,
            ],
            R::Snapshotting => &[R::Executing, R::Failed, R::Cancelling, R::Interrupted],
            R::Executing => &[
                R::Verifying,
                R::BudgetTripped,
                R::Failed,
                R::Cancelling,
                R::Interrupted,
            ],
            R::Verifying => &[
                R::Snapshotting,
                R::Executing,
                R::Reporting,
                R::BudgetTripped,
                R::Failed,
                R::Cancelling,
                R::Interrupted,
            ],
            R::Reporting => &[R::Completed, R::Failed, R::Interrupted],
            R::Cancelling => &[R::Cancelled, R::Interrupted],
            R::Completed | R::Failed | R::BudgetTripped | R::Cancelled | R::Interrupted => &[],
        }
    }
}

status_enum! {
    /// Status of one system in a patch run.
    RunHostStatus, "run host" {
        /// Not started (later wave).
        Pending = "pending",
        /// Excluded (offline, maintenance, plan exclusion).
        Skipped = "skipped",
        /// Taking a snapshot.
        Snapshotting = "snapshotting",
        /// Errata being applied.
        Running = "running",
        /// Post-apply checks.
        Verifying = "verifying",
        /// Patched and verified.
        Ok = "ok",
        /// Apply or verification failed.
        Failed = "failed",
        /// Rolling back.
        RollingBack = "rolling_back",
        /// Rolled back and verified (terminal).
        RolledBack = "rolled_back",
        /// Rollback failed (terminal; needs an operator).
        RollbackFailed = "rollback_failed",
        /// Cancelled before it started work (terminal).
        Cancelled = "cancelled",
        /// Left active by a process that stopped; closed by recovery (terminal).
        Interrupted = "interrupted",
    }
}

impl Status for RunHostStatus {
    const WHAT: &'static str = "run host";
    const ALL: &'static [Self] = &[
        Self::Pending,
        Self::Skipped,
        Self::Snapshotting,
        Self::Running,
        Self::Verifying,
        Self::Ok,
        Self::Failed,
        Self::RollingBack,
        Self::RolledBack,
        Self::RollbackFailed,
        Self::Cancelled,
        Self::Interrupted,
    ];

    fn as_str(self) -> &'static str {
        self.text()
    }

    fn successors(self) -> &'static [Self] {
        use RunHostStatus as H;
        match self {
            H::Pending => &[
                H::Skipped,
                H::Snapshotting,
                H::Running,
                H::Cancelled,
                H::Interrupted,
            ],
            H::Snapshotting => &[H::Running, H::Failed, H::Cancelled, H::Interrupted],
            H::Running => &[H::Verifying, H::Ok, H::Failed, H::Interrupted],
            H::Verifying => &[H::Ok, H::Failed, H::Interrupted],
            H::Ok | H::Failed => &[H::RollingBack],
            H::RollingBack => &[H::RolledBack, H::RollbackFailed, H::Interrupted],
            H::Skipped | H::RolledBack | H::RollbackFailed | H::Cancelled | H::Interrupted => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::testutil::exhaustive;

    #[test]
    fn run_edges() {
        use RunStatus as R;
        exhaustive::<RunStatus>(&[
            (R::Planning, R::Validating),
            (R::Planning, R::Reporting),
            (R::Planning, R::Failed),
            (R::Planning, R::Cancelling),
            (R::Planning, R::Interrupted),
            (R::Validating, R::Snapshotting),
            (R::Validating, R::Executing),
            (R::Validating, R::Failed),
            (R::Validating, R::Cancelling),
            (R::Validating, R::Interrupted),
            (R::Snapshotting, R::Executing),
            (R::Snapshotting, R::Failed),
            (R::Snapshotting, R::Cancelling),
            (R::Snapshotting, R::Interrupted),
            (R::Executing, R::Verifying),
            (R::Executing, R::BudgetTripped),
            (R::Executing, R::Failed),
            (R::Executing, R::Cancelling),
            (R::Executing, R::Interrupted),
            (R::Verifying, R::Snapshotting),
            (R::Verifying, R::Executing),
            (R::Verifying, R::Reporting),
            (R::Verifying, R::BudgetTripped),
            (R::Verifying, R::Failed),
            (R::Verifying, R::Cancelling),
            (R::Verifying, R::Interrupted),
            (R::Reporting, R::Completed),
            (R::Reporting, R::Failed),
            (R::Reporting, R::Interrupted),
            (R::Cancelling, R::Cancelled),
            (R::Cancelling, R::Interrupted),
        ]);
        assert!(RunStatus::check(R::Completed, R::Executing, 1).is_err());
        assert!(RunStatus::check(R::Planning, R::Completed, 1).is_err());
        assert!(RunStatus::check(R::BudgetTripped, R::Executing, 1).is_err());
    }

    #[test]
    fn active_matches_schema_index() {
        let sql = include_str!("../../../migrations/0001_core.sql");
        let start = sql
            .find("CREATE UNIQUE INDEX uq_run_active_policy")
            .expect("index");
        let block = &sql[start..start + 300];
        for &s in RunStatus::ALL {
            assert_eq!(
                block.contains(&format!("'{}'", s.as_str())),
                s.is_active(),
                "{s}"
            );
        }
    }

    #[test]
    fn host_edges() {
        use RunHostStatus as H;
        exhaustive::<RunHostStatus>(&[
            (H::Pending, H::Skipped),
            (H::Pending, H::Snapshotting),
            (H::Pending, H::Running),
            (H::Pending, H::Cancelled),
            (H::Pending, H::Interrupted),
            (H::Snapshotting, H::Running),
            (H::Snapshotting, H::Failed),
            (H::Snapshotting, H::Cancelled),
            (H::Snapshotting, H::Interrupted),
            (H::Running, H::Verifying),
            (H::Running, H::Ok),
            (H::Running, H::Failed),
            (H::Running, H::Interrupted),
            (H::Verifying, H::Ok),
            (H::Verifying, H::Failed),
            (H::Verifying, H::Interrupted),
            (H::Ok, H::RollingBack),
            (H::Failed, H::RollingBack),
            (H::RollingBack, H::RolledBack),
            (H::RollingBack, H::RollbackFailed),
            (H::RollingBack, H::Interrupted),
        ]);
        assert!(RunHostStatus::check(H::RolledBack, H::Ok, 1).is_err());
        assert!(RunHostStatus::check(H::Pending, H::Ok, 1).is_err());
    }
}
