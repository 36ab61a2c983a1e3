//! The simulated UYUNI server (`spm sim`): a fleet model, an asynchronous action engine,
//! emulated shell commands, node-exporter style metrics, served over XML-RPC.

pub mod evr;
pub mod model;
pub mod shell;
