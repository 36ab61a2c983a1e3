//! Orchestration: sync, scoring, queue, test engine, approvals, policy runs, compliance.

pub mod approvals;
pub mod state;
