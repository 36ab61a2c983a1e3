//! The simulated UYUNI server (`spm sim`): a fleet model, an asynchronous action engine,
//! emulated shell commands, node-exporter style metrics, served over XML-RPC.

pub mod actions;
pub mod clock;
pub mod delay;
pub use crate::evr;
pub mod faults;
pub mod fleet;
pub mod handlers;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod server;
pub mod shell;
pub mod world;

pub use server::{FleetSource, SimHandle, SimOptions, SimServer, StatsSnapshot};

#[cfg(test)]
mod tests;
