//! Notification channels: e-mail over SMTP ([`mail`]) and signed JSON webhooks
//! ([`webhook`]). Plain clients: they know nothing of the database, templates or Lua; the
//! engine (`crate::engine::notify`) decides what to send and records the outcome.

pub mod duration;
pub mod mail;
pub mod secret;
pub mod webhook;

pub use mail::{MailError, MailMessage, Mailer, SmtpConfig, SmtpSecurity};
pub use secret::Secret;
pub use webhook::{WebhookClient, WebhookConfig, WebhookError};
