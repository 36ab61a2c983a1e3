//! Production rollout: patch policies, the planner, error budgets and the run executor.
//!
//! - [`policy`]: the [`policy::Policy`] data a `policies/*.lua` file returns, loaded and
//!   validated through the Lua host.
//! - [`plan`]: the pure planner (hosts × approved errata → waves, exclusions, window).
//! - [`budget`]: pure error-budget accounting.

pub mod budget;
pub mod plan;
pub mod policy;
