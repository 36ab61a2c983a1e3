//! Handlers for the endpoints whose data lives in the schema. One module per resource.

pub mod approvals;
pub mod audit;
pub mod errata;
pub mod notifications;
pub mod patch;
pub mod queue;
pub mod reports;
pub mod scripts;
pub mod sync;
pub mod targets;
pub mod tests;
pub mod tokens;
