//! Typed UYUNI calls and the Rust shapes of their results.

pub mod calls;
pub mod types;
