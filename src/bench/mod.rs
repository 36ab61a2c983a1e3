//! Benchmarks behind `spm bench <name> --json`.

pub mod host;
pub mod notify;

/// Benchmark names.
pub const NAMES: &[&str] = &["host", "notify"];
