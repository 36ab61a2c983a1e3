//! Production rollout: patch policies, the planner, error budgets and the run executor.
//!
//! - [`policy`]: the [`policy::Policy`] data a `policies/*.lua` file returns, loaded and
//!   validated through the Lua host.

pub mod policy;
