//! Benchmarks behind `spm bench <name> --json`; each prints one JSON object.

pub mod notify;

/// Names `spm bench` accepts.
pub const NAMES: &[&str] = &["notify"];
