//! `[notify]` configuration: channels, recipients, routing, digest and retries.
//!
//! ```toml
//! [notify]
//! templates_dir = "scripts/templates"
//!
//! [notify.smtp]
//! host = "mail.example.com"
//! security = "starttls"          # none | starttls | tls
//! username = "spm"
//! password_file = "/etc/spm/smtp-password"
//! from = "spm <spm@example.com>"
//!
//! [notify.recipients]
//! default = ["ops@example.com"]
//! pending_approval = ["cab@example.com"]
//!
//! [[notify.webhooks]]
//! name = "chatops"
//! url = "https://hooks.example.com/spm"
//! hmac_secret = "…"
//! events = ["run_failed", "budget_tripped"]
//!
//! [notify.routes.test_failed]
//! channels = ["email"]
//! min_severity = "warning"
//!
//! [notify.digest]
//! enabled = true
//! time = "08:00"
//! timezone = "Europe/Rome"
//!
//! [notify.retry]
//! max_attempts = 8
//! base_delay = "30s"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use serde::Deserialize;

use super::event::{EventKind, Severity};
use crate::services::notify::duration::de_duration;
use crate::services::notify::{SmtpConfig, WebhookConfig};

/// The key in `recipients` and `routes` that applies to events without their own entry.
pub const DEFAULT_KEY: &str = "default";

/// A delivery channel (the dashboard always gets the database row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// E-mail through `[notify.smtp]`.
    Email,
    /// Every webhook whose `events` include the event.
    Webhook,
}

impl Channel {
    /// Name stored in delivery rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// Routing for one event type (`[notify.routes.<event>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Deliver this event at all (the database row is always written).
    pub enabled: bool,
    /// Channels to deliver to.
    pub channels: Vec<Channel>,
    /// Events below this severity are recorded but not delivered.
    pub min_severity: Severity,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            channels: vec![Channel::Email, Channel::Webhook],
            min_severity: Severity::Info,
        }
    }
}

/// The daily digest (`[notify.digest]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Send the digest.
    pub enabled: bool,
    /// Local time of day, `"HH:MM"`.
    pub time: String,
    /// IANA time zone of `time`, e.g. `"Europe/Rome"`.
    pub timezone: String,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            time: "08:00".into(),
            timezone: "UTC".into(),
        }
    }
}

impl DigestConfig {
    /// The parsed time of day and zone.
    pub fn parsed(&self) -> Result<(NaiveTime, chrono_tz::Tz), String> {
        let t = NaiveTime::parse_from_str(self.time.trim(), "%H:%M").map_err(|_| {
            format!(
                "notify.digest.time {:?} is not HH:MM (e.g. \"08:00\")",
                self.time
            )
        })?;
        let tz: chrono_tz::Tz = self.timezone.parse().map_err(|_| {
            format!(
                "notify.digest.timezone {:?} is not an IANA time zone (e.g. \"Europe/Rome\")",
                self.timezone
            )
        })?;
        Ok((t, tz))
    }
}

/// Retries of failed deliveries (`[notify.retry]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts before a delivery is given up (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failure; doubled after each further failure.
    #[serde(deserialize_with = "de_duration")]
    pub base_delay: Duration,
    /// Upper bound of the delay.
    #[serde(deserialize_with = "de_duration")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
        }
    }
}

impl RetryConfig {
    /// Delay before the next attempt after `failed_attempts` failures (1-based):
    /// `base_delay * 2^(failed_attempts-1)`, capped at `max_delay`.
    pub fn delay_after(&self, failed_attempts: u32) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(30);
        let d = self.base_delay.saturating_mul(1u32 << exp);
        d.min(self.max_delay)
    }
}

/// Everything under `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Directory of the minijinja templates.
    pub templates_dir: PathBuf,
    /// SMTP relay; no e-mail when absent.
    pub smtp: Option<SmtpConfig>,
    /// Recipients per event type; `default` applies to the others.
    pub recipients: BTreeMap<String, Vec<String>>,
    /// Webhooks.
    pub webhooks: Vec<WebhookConfig>,
    /// Routing per event type; `default` applies to the others.
    pub routes: BTreeMap<String, RouteConfig>,
    /// Daily digest.
    pub digest: DigestConfig,
    /// Retries.
    pub retry: RetryConfig,
    /// How long the delivery worker sleeps when nothing is due.
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            templates_dir: PathBuf::from("scripts/templates"),
            smtp: None,
            recipients: BTreeMap::new(),
            webhooks: Vec::new(),
            routes: BTreeMap::new(),
            digest: DigestConfig::default(),
            retry: RetryConfig::default(),
            poll_interval: Duration::from_secs(5),
        }
    }
}

fn check_event_key(section: &str, key: &str) -> Result<(), String> {
    if key == DEFAULT_KEY || EventKind::parse(key).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    Err(format!(
        "notify.{section}.{key}: unknown event type (known: default, {})",
        known.join(", ")
    ))
}

impl NotifyConfig {
    /// Check what serde cannot: event names, digest time and zone, unique webhook names,
    /// retry bounds. The message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, list) in &self.recipients {
            check_event_key("recipients", key)?;
            for addr in list {
                addr.parse::<lettre::message::Mailbox>().map_err(|e| {
                    format!("notify.recipients.{key}: invalid address {addr:?}: {e}")
                })?;
            }
        }
        if let Some(smtp) = &self.smtp {
            smtp.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("notify.smtp.from: invalid address {:?}: {e}", smtp.from))?;
        }
        for key in self.routes.keys() {
            check_event_key("routes", key)?;
        }
        let mut names = BTreeSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            if w.name.trim().is_empty() {
                return Err(format!("notify.webhooks[{i}]: name is empty"));
            }
            if !names.insert(w.name.as_str()) {
                return Err(format!("notify.webhooks: duplicate name {:?}", w.name));
            }
            for e in &w.events {
                if EventKind::parse(e).is_none() {
                    return Err(format!(
                        "notify.webhooks[{}].events: unknown event type {e:?}",
                        w.name
                    ));
                }
            }
        }
        if self.retry.max_attempts == 0 {
            return Err("notify.retry.max_attempts must be at least 1".into());
        }
        if self.retry.base_delay.is_zero() {
            return Err("notify.retry.base_delay must be positive".into());
        }
        if self.poll_interval.is_zero() {
            return Err("notify.poll_interval must be positive".into());
        }
        self.digest.parsed()?;
        Ok(())
    }

    /// The route of an event type.
    pub fn route(&self, kind: EventKind) -> RouteConfig {
        self.routes
            .get(kind.as_str())
            .or_else(|| self.routes.get(DEFAULT_KEY))
            .cloned()
            .unwrap_or_default()
    }

    /// The e-mail recipients of an event type.
    pub fn recipients_for(&self, kind: EventKind) -> &[String] {
        self.recipients
            .get(kind.as_str())
            .or_else(|| self.recipients.get(DEFAULT_KEY))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Parse the `[notify]` table of a TOML configuration file's text (absent table →
    /// defaults). The lead replaces this when the global configuration lands.
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            notify: Option<toml::Value>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let cfg: NotifyConfig = match file.notify {
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| format!("[notify]: {e}"))?,
            None => NotifyConfig::default(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryConfig {
            max_attempts: 5,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
        };
        assert_eq!(r.delay_after(1), Duration::from_secs(10));
        assert_eq!(r.delay_after(2), Duration::from_secs(20));
        assert_eq!(r.delay_after(3), Duration::from_secs(40));
        assert_eq!(r.delay_after(4), Duration::from_secs(60));
        assert_eq!(r.delay_after(100), Duration::from_secs(60));
    }

    #[test]
    fn parses_and_routes() {
        let cfg = NotifyConfig::from_toml_str(
            r#"
            [notify.recipients]
            default = ["ops@example.com"]
            pending_approval = ["cab@example.com"]
            [notify.routes.test_failed]
            channels = ["webhook"]
            min_severity = "critical"
            [notify.retry]
            base_delay = "250ms"
            "#,
        )
        .expect("valid");
        assert_eq!(
            cfg.recipients_for(EventKind::PendingApproval),
            ["cab@example.com"]
        );
        assert_eq!(
            cfg.recipients_for(EventKind::RunFailed),
            ["ops@example.com"]
        );
        assert_eq!(
            cfg.route(EventKind::TestFailed).channels,
            [Channel::Webhook]
        );
        assert_eq!(cfg.route(EventKind::RunFailed).channels.len(), 2);
        assert_eq!(cfg.retry.base_delay, Duration::from_millis(250));
    }

    #[test]
    fn rejects_bad_input_with_the_key() {
        let e = NotifyConfig::from_toml_str("[notify.routes.tset_failed]\n").unwrap_err();
        assert!(e.contains("tset_failed"), "{e}");
        let e = NotifyConfig::from_toml_str("[notify.digest]\ntime = \"8am\"\n").unwrap_err();
        assert!(e.contains("digest.time"), "{e}");
        let e =
            NotifyConfig::from_toml_str("[notify.recipients]\ndefault = [\"not an address\"]\n")
                .unwrap_err();
        assert!(e.contains("notify.recipients.default"), "{e}");
        let e = NotifyConfig::from_toml_str("[notify]\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = NotifyConfig::from_toml_str(
            "[[notify.webhooks]]\nname=\"a\"\nurl=\"http://x\"\n[[notify.webhooks]]\nname=\"a\"\nurl=\"http://y\"\n",
        )
        .unwrap_err();
        assert!(e.contains("duplicate"), "{e}");
    }
}
