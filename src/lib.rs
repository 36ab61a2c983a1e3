//! spm: security patch manager for Linux fleets managed through UYUNI.
//!
//! Layering (see `../shared/DESIGN.md`): `services` are plain Rust clients that know nothing
//! of Lua; `store` owns every SQL statement; `engine` orchestrates; `host` is the Lua
//! runtime; `server` the HTTP API; `sim` the UYUNI simulator; `cli` one module per command.

pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod evr;
pub mod host;
pub mod lab;
pub mod server;
pub mod services;
pub mod sim;
pub mod store;
