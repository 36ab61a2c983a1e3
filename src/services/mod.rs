//! Plain Rust clients for external systems; none of them knows about Lua.

pub mod ansible;
pub mod notify;
pub mod prom;
pub mod uyuni;
