//! Benchmarks behind `spm bench <name> --json`.

pub mod host;

/// Benchmark names.
pub const NAMES: &[&str] = &["host"];
