//! Orchestration: sync, scoring, queue, test engine, approvals, policy runs, compliance.

pub mod notify;
pub mod state;
