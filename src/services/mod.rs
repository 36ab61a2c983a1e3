//! Plain Rust clients for external systems; none of them knows about Lua.

pub mod prom;
pub mod uyuni;
