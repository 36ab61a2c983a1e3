//! Queue-item lifecycle (seed 003 §4, with the prototype's `retry_pending` and
//! `superseded`, and `waiting_system` for "no test system available").
//!
//! ```text
//!   (insert) ─► queued ◄──────► waiting_system          queued/waiting/retry/pending/
//!                 │                  │                  snoozed/approved ─► superseded
//!                 └──────► testing ◄─┘ ◄──── retry_pending ◄─┐  (testing ─► waiting_system
//!                                                                when no test system serves the OS)
//!                            │ ├──► retry_pending             │ (testing, needs_reboot,
//!                            │ ├──► queued  (lease expired)   │  rebooting may all go to
//!                            │ ├──► failed ──► rolled_back    │  retry_pending, failed or
//!                            │ ├──► needs_reboot ──► rebooting ─┴─ back to queued)
//!                            │ │                     ├──► passed
//!                            │ │                     └──► failed
//!                            │ └──► passed ──► pending_approval
//!                            └────────────────► pending_approval ◄──► snoozed
//!                                                  ├──► rejected
//!                                                  └──► approved ──► promoting
//!   promoting ──► prod_pending | prod_applied | approved (promotion aborted)
//!   prod_pending ──► prod_applied | rolled_back
//!   prod_applied ──► completed | rolled_back
//!   retry_pending ──► testing | queued | failed (retries given up) | superseded
//! ```
//!
//! The authoritative list is [`QueueStatus::successors`]; the unit tests spell out every
//! edge again.
//!
//! Terminal states: `failed` (only `failed → rolled_back` when the test system's rollback is
//! recorded), `rejected`, `superseded`, `completed`, `rolled_back`. They are exactly the
//! states outside the partial unique index `uq_queue_active`, so no edge can re-activate a
//! row behind a newer active one. Re-queueing after a terminal state inserts a *new* row; it
//! is not a transition.

use super::{Status, status_enum};

status_enum! {
    /// Status of a queue item (`queue_items.status`).
    QueueStatus, "queue item" {
        /// Waiting for a test slot.
        Queued = "queued",
        /// Ready, but no test system for its OS is free.
        WaitingSystem = "waiting_system",
        /// Being tested (holds a lease).
        Testing = "testing",
        /// All test systems passed.
        Passed = "passed",
        /// The test failed (terminal apart from recording a rollback).
        Failed = "failed",
        /// Patched; a reboot is needed before validation.
        NeedsReboot = "needs_reboot",
        /// Reboot in progress.
        Rebooting = "rebooting",
        /// Tested; waiting for an operator decision.
        PendingApproval = "pending_approval",
        /// Approved for production.
        Approved = "approved",
        /// Rejected by an operator (terminal).
        Rejected = "rejected",
        /// Decision postponed until `snooze_until`.
        Snoozed = "snoozed",
        /// Being promoted to production channels.
        Promoting = "promoting",
        /// Promoted; waiting for the maintenance window.
        ProdPending = "prod_pending",
        /// Applied in production.
        ProdApplied = "prod_applied",
        /// Done (terminal).
        Completed = "completed",
        /// Rolled back (terminal).
        RolledBack = "rolled_back",
        /// A retryable failure; tested again after `retry_after`.
        RetryPending = "retry_pending",
        /// Replaced by a newer advisory (terminal).
        Superseded = "superseded",
    }
}

use QueueStatus as Q;

impl QueueStatus {
    /// States that count as *active* for the one-active-item-per-(advisory, OS) rule.
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            Q::Failed | Q::Rejected | Q::RolledBack | Q::Completed | Q::Superseded
        )
    }

    /// States during which a test engine holds the item's lease.
    pub fn is_in_test(self) -> bool {
        matches!(self, Q::Testing | Q::NeedsReboot | Q::Rebooting)
    }

    /// States a test engine may claim (`claim_next`): queued, waiting for a system, or a
    /// retry that is due.
    pub fn is_claimable(self) -> bool {
        matches!(self, Q::Queued | Q::WaitingSystem | Q::RetryPending)
    }
}

impl Status for QueueStatus {
    const WHAT: &'static str = "queue item";
    const ALL: &'static [Self] = &[
        Q::Queued,
        Q::WaitingSystem,
        Q::Testing,
        Q::Passed,
        Q::Failed,
        Q::NeedsReboot,
        Q::Rebooting,
        Q::PendingApproval,
        Q::Approved,
        Q::Rejected,
        Q::Snoozed,
        Q::Promoting,
        Q::ProdPending,
        Q::ProdApplied,
        Q::Completed,
        Q::RolledBack,
        Q::RetryPending,
        Q::Superseded,
    ];

    fn as_str(self) -> &'static str {
        self.text()
    }

    fn successors(self) -> &'static [Self] {
        match self {
            Q::Queued => &[Q::WaitingSystem, Q::Testing, Q::Superseded],
            Q::WaitingSystem => &[Q::Queued, Q::Testing, Q::Superseded],
            Q::Testing => &[
                Q::Queued,        // lease expired / interrupted: back in line, visibly
                Q::WaitingSystem, // claimed, but no test system serves its OS
                Q::Passed,
                Q::Failed,
                Q::NeedsReboot,
                Q::PendingApproval,
                Q::RetryPending,
            ],
            Q::NeedsReboot => &[Q::Rebooting, Q::Failed, Q::RetryPending, Q::Queued],
            Q::Rebooting => &[Q::Passed, Q::Failed, Q::RetryPending, Q::Queued],
            Q::Passed => &[Q::PendingApproval],
            Q::Failed => &[Q::RolledBack],
            Q::RetryPending => &[Q::Testing, Q::Queued, Q::Failed, Q::Superseded],
            Q::PendingApproval => &[Q::Approved, Q::Rejected, Q::Snoozed, Q::Superseded],
            Q::Snoozed => &[Q::PendingApproval, Q::Superseded],
            Q::Approved => &[Q::Promoting, Q::Superseded],
            Q::Promoting => &[Q::ProdPending, Q::ProdApplied, Q::Approved],
            Q::ProdPending => &[Q::ProdApplied, Q::RolledBack],
            Q::ProdApplied => &[Q::Completed, Q::RolledBack],
            Q::Rejected | Q::Completed | Q::RolledBack | Q::Superseded => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::{TransitionError, testutil::exhaustive};

    const ALLOWED: &[(Q, Q)] = &[
        (Q::Queued, Q::WaitingSystem),
        (Q::Queued, Q::Testing),
        (Q::Queued, Q::Superseded),
        (Q::WaitingSystem, Q::Queued),
        (Q::WaitingSystem, Q::Testing),
        (Q::WaitingSystem, Q::Superseded),
        (Q::Testing, Q::Queued),
        (Q::Testing, Q::WaitingSystem),
        (Q::Testing, Q::Passed),
        (Q::Testing, Q::Failed),
        (Q::Testing, Q::NeedsReboot),
        (Q::Testing, Q::PendingApproval),
        (Q::Testing, Q::RetryPending),
        (Q::NeedsReboot, Q::Rebooting),
        (Q::NeedsReboot, Q::Failed),
        (Q::NeedsReboot, Q::RetryPending),
        (Q::NeedsReboot, Q::Queued),
        (Q::Rebooting, Q::Passed),
        (Q::Rebooting, Q::Failed),
        (Q::Rebooting, Q::RetryPending),
        (Q::Rebooting, Q::Queued),
        (Q::Passed, Q::PendingApproval),
        (Q::Failed, Q::RolledBack),
        (Q::RetryPending, Q::Testing),
        (Q::RetryPending, Q::Queued),
        (Q::RetryPending, Q::Failed),
        (Q::RetryPending, Q::Superseded),
        (Q::PendingApproval, Q::Approved),
        (Q::PendingApproval, Q::Rejected),
        (Q::PendingApproval, Q::Snoozed),
        (Q::PendingApproval, Q::Superseded),
        (Q::Snoozed, Q::PendingApproval),
        (Q::Snoozed, Q::Superseded),
        (Q::Approved, Q::Promoting),
        (Q::Approved, Q::Superseded),
        (Q::Promoting, Q::ProdPending),
        (Q::Promoting, Q::ProdApplied),
        (Q::Promoting, Q::Approved),
        (Q::ProdPending, Q::ProdApplied),
        (Q::ProdPending, Q::RolledBack),
        (Q::ProdApplied, Q::Completed),
        (Q::ProdApplied, Q::RolledBack),
    ];

    #[test]
    fn every_allowed_edge_and_nothing_else() {
        exhaustive::<QueueStatus>(ALLOWED);
    }

    #[test]
    fn named_forbidden_edges() {
        for (f, t) in [
            (Q::Queued, Q::Approved),
            (Q::Rejected, Q::Approved),
            (Q::Queued, Q::PendingApproval),
            (Q::Failed, Q::Queued),
            (Q::Failed, Q::RetryPending),
            (Q::Completed, Q::Queued),
            (Q::Superseded, Q::Queued),
            (Q::Snoozed, Q::Approved),
            (Q::Testing, Q::Approved),
            (Q::Approved, Q::Completed),
            (Q::Queued, Q::Queued),
        ] {
            let err = QueueStatus::check(f, t, 42).unwrap_err();
            assert_eq!(
                err,
                TransitionError::Illegal {
                    what: "queue item",
                    id: "42".into(),
                    from: f.as_str().into(),
                    to: t.as_str().into(),
                }
            );
        }
    }

    #[test]
    fn terminal_states_are_the_inactive_ones() {
        for &s in QueueStatus::ALL {
            if !s.is_active() {
                // Inactive states never lead back into an active one.
                assert!(s.successors().iter().all(|t| !t.is_active()), "{s:?}");
            }
        }
        assert!(Q::Rejected.is_terminal());
        assert!(!Q::Queued.is_terminal());
    }

    #[test]
    fn matches_schema_check_constraint() {
        let sql = include_str!("../../../migrations/0001_core.sql");
        let start = sql.find("CREATE TABLE queue_items").expect("table");
        let block = &sql[start..start + 1200];
        for &s in QueueStatus::ALL {
            assert!(block.contains(&format!("'{}'", s.as_str())), "{s}");
        }
    }

    #[test]
    fn active_matches_schema_unique_index() {
        let sql = include_str!("../../../migrations/0001_core.sql");
        let start = sql
            .find("CREATE UNIQUE INDEX uq_queue_active")
            .expect("index");
        let end = start + sql[start..].find(';').expect("end of index");
        let index = &sql[start..end];
        for &s in QueueStatus::ALL {
            // The index lists the *inactive* statuses in `status NOT IN (...)`.
            assert_eq!(
                index.contains(&format!("'{}'", s.as_str())),
                !s.is_active(),
                "{s}"
            );
        }
    }

    #[test]
    fn parse_error_lists_values() {
        let e = "done".parse::<QueueStatus>().unwrap_err();
        assert!(e.to_string().contains("unknown queue item status \"done\""));
        assert!(e.to_string().contains("pending_approval"));
    }
}
