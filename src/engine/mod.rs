//! Orchestration: sync, scoring, queue, test engine, approvals, policy runs, compliance.

pub mod ansible;
pub mod approvals;
pub mod compliance;
pub mod notify;
pub mod queue;
pub mod rollout;
pub mod score;
pub mod state;
pub mod sync;
pub mod testing;
