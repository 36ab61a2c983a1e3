//! The Lua runtime that hosts phases, rollback strategies, checks and policies.
//!
//! - [`vm`] builds a sandboxed VM ([`sandbox`]) with the `spm` modules of [`api`] and limits.
//! - [`header`], [`loader`] and [`contracts`] read, run and validate one script.
//! - [`scriptset`] is the immutable validated set; [`reload`] swaps it on file changes.
//! - [`resolve`] maps (OS, phase) to a file; [`runner`] runs a script in a fresh VM.
//! - [`services`] are the traits the bindings call; [`errors`] the typed errors.
//! - [`types`] generates LuaLS definitions; [`spec`] runs script specs.

pub mod api;
pub mod contracts;
pub mod errors;
pub mod header;
pub mod limits;
pub mod loader;
pub mod reload;
pub mod resolve;
pub mod runner;
pub mod sandbox;
pub mod score_hook;
pub mod scriptset;
pub mod services;
pub mod spec;
pub mod types;
pub mod vm;
