//! Notifications: every event becomes a database row (the dashboard's inbox) and, by the
//! routing in [`NotifyConfig`], deliveries to e-mail and webhooks that a worker sends with
//! retries and exponential backoff.
//!
//! - [`Notifier::raise`] renders the event's templates, routes it and writes the row and its
//!   deliveries in one transaction. It never fails the caller: errors are logged, and a
//!   template error still records the event with a fallback text.
//! - [`Notifier::run`] is the delivery worker. Deliveries are claimed with a lease, so rows
//!   left pending by a crash or restart are picked up again when the worker starts.
//! - [`Notifier::send_test`] sends a test message to every configured channel at once.
//! - [`script`]: `spm.notify.send{…}` for Lua scripts.
//! - [`reload`]: `script_reload_error` when a hot reload of the Lua scripts fails.

pub mod config;
pub mod digest;
pub mod event;
pub mod notifier;
pub mod reload;
pub mod script;
pub mod templates;

pub use config::{Channel, DigestConfig, NotifyConfig, RetryConfig, RouteConfig};
pub use event::{Event, EventKind, Severity};
pub use notifier::{ChannelReport, Notifier, NotifyError};
pub use templates::{Rendered, TemplateError, Templates};
