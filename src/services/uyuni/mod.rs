//! UYUNI XML-RPC: codec, client and typed calls.
//!
//! - [`xmlrpc`]: the codec (shared with the simulator).
//! - [`client`]: [`UyuniClient`], sessions, retries, limits, counters.
//! - [`api`]: typed calls and result structs.
//! - [`action`]: waiting for actions and running scripts.

pub mod action;
pub mod api;
pub mod client;
pub mod error;
pub mod xmlrpc;

pub use action::{ActionReport, ScriptOutcome, ScriptRun, SystemOutcome, WaitOptions};
pub use client::{CallKind, MethodStats, Secret, UyuniClient, UyuniConfig};
pub use error::UyuniError;
