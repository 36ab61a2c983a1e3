//! Notification channels: e-mail over SMTP ([`mail`]) and signed JSON webhooks
//! ([`webhook`]). Plain clients: they know nothing of the database, templates or Lua; the
//! engine (`crate::engine::notify`) decides what to send and records the outcome. Their
//! settings are resolved from the global `[notify]` configuration by the engine.

pub mod mail;
pub mod webhook;

pub use crate::config::Secret;
pub use mail::{MailError, MailMessage, Mailer, SmtpConfig, SmtpSecurity};
pub use webhook::{WebhookClient, WebhookConfig, WebhookError};
