//! Orchestration: sync, scoring, queue, test engine, approvals, policy runs, compliance.

pub mod approvals;
pub mod compliance;
pub mod rollout;
pub mod state;
