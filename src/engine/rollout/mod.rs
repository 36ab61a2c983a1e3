//! Production rollout: patch policies, the planner, error budgets and the run executor.
//!
//! - [`policy`]: the [`policy::Policy`] data a `policies/*.lua` file returns, loaded and
//!   validated through the Lua host.
//! - [`plan`]: the pure planner (hosts × approved errata → waves, exclusions, window).
//! - [`budget`]: pure error-budget accounting.
//! - [`execute`]: the run itself (PLAN … ALERT) against UYUNI and the store.
//! - [`hooks`]: calling the policy's Lua hooks.
//! - [`rollback`]: selective rollback (package strategy) and the pre-patch capture.
//! - [`scheduler`]: cron runs for `spm serve` (one per policy, missed windows reported).

pub mod budget;
pub mod execute;
pub mod hooks;
pub mod plan;
pub mod policy;
pub mod rollback;
pub mod scheduler;
