//! Benchmarks behind `spm bench <name> --json`; each prints one JSON object.

pub mod host;
pub mod rollout;
pub mod uyuni;

/// Names `spm bench` accepts.
pub const NAMES: &[&str] = &["host", "rollout", "uyuni"];
