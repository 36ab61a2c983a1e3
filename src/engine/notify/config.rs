//! The notification settings the engine runs with, resolved from the global `[notify]`
//! configuration ([`crate::config::NotifyConfig`]) by [`NotifyConfig::from_global`]: secrets
//! read from their files, durations as [`Duration`], routes parsed.
//!
//! Routing: for each channel, an event is delivered when its route is enabled, lists the
//! channel, and the event's severity reaches the route's `min_severity`, or, when the route
//! sets none, the channel's floor (`email_min_severity`, `webhook_min_severity`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;

use super::event::{EventKind, Severity};
use crate::config::{self as global, NotifySeverity};
use crate::services::notify::{SmtpConfig, SmtpSecurity, WebhookConfig};

/// The key in `recipients` and `routes` that applies to events without their own entry.
pub const DEFAULT_KEY: &str = "default";

/// A delivery channel (the dashboard always gets the database row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

    /// Parse a channel name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// Routing for one event type (`[notify.routes.<event>]`).
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Deliver this event at all (the database row is always written).
    pub enabled: bool,
    /// Channels to deliver to.
    pub channels: Vec<Channel>,
    /// Events below this severity are recorded but not delivered; `None`: the channel's
    /// floor applies.
    pub min_severity: Option<Severity>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            channels: vec![Channel::Email, Channel::Webhook],
            min_severity: None,
        }
    }
}

/// The daily digest.
#[derive(Debug, Clone)]
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
                "notify.digest_timezone {:?} is not an IANA time zone (e.g. \"Europe/Rome\")",
                self.timezone
            )
        })?;
        Ok((t, tz))
    }
}

/// Retries of failed deliveries.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts before a delivery is given up (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failure; doubled after each further failure.
    pub base_delay: Duration,
    /// Upper bound of the delay.
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

/// Everything the notifier needs.
#[derive(Debug, Clone)]
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
    /// Lowest severity e-mailed when the route sets none.
    pub email_min_severity: Severity,
    /// Lowest severity sent to webhooks when the route sets none.
    pub webhook_min_severity: Severity,
    /// Daily digest.
    pub digest: DigestConfig,
    /// Retries.
    pub retry: RetryConfig,
    /// How long the delivery worker sleeps when nothing is due.
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
            email_min_severity: Severity::Info,
            webhook_min_severity: Severity::Info,
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

    /// The lowest severity delivered to `channel` under `route`.
    pub fn floor(&self, route: &RouteConfig, channel: Channel) -> Severity {
        route.min_severity.unwrap_or(match channel {
            Channel::Email => self.email_min_severity,
            Channel::Webhook => self.webhook_min_severity,
        })
    }

    /// Resolve the global configuration (already loaded, secrets read from their files).
    /// The message of an error names the offending key.
    pub fn from_global(cfg: &global::Config) -> Result<Self, String> {
        let n = &cfg.notify;
        let sev = |s: NotifySeverity| match s {
            NotifySeverity::Info => Severity::Info,
            NotifySeverity::Warning => Severity::Warning,
            NotifySeverity::Critical => Severity::Critical,
        };
        let smtp = n.smtp.host.as_ref().map(|host| SmtpConfig {
            host: host.clone(),
            port: Some(n.smtp.port),
            security: match n.smtp.security {
                global::SmtpSecurity::None => SmtpSecurity::None,
                global::SmtpSecurity::Starttls => SmtpSecurity::Starttls,
                global::SmtpSecurity::Tls => SmtpSecurity::Tls,
            },
            username: n.smtp.username.clone(),
            password: n.smtp.password.clone(),
            password_file: if n.smtp.password.is_some() {
                None
            } else {
                n.smtp.password_file.clone()
            },
            from: n.smtp.from.clone(),
            ca_file: n.smtp.ca_file.clone(),
            timeout: Duration::from_secs(n.smtp.timeout_secs.max(1)),
        });
        let webhooks = n
            .webhooks
            .iter()
            .map(|w| WebhookConfig {
                name: w.name.clone(),
                url: w.url.clone(),
                auth_header: w.auth_header.clone(),
                hmac_secret: w.hmac_secret.clone(),
                events: w.events.clone(),
                timeout: Duration::from_secs(w.timeout_secs.max(1)),
                ca_file: None,
            })
            .collect();
        let mut routes = BTreeMap::new();
        for (event, r) in &n.routes {
            let mut channels = Vec::new();
            for c in &r.channels {
                channels.push(Channel::parse(c).ok_or_else(|| {
                    format!(
                        "notify.routes.{event}.channels: unknown channel {c:?} (email, webhook)"
                    )
                })?);
            }
            routes.insert(
                event.clone(),
                RouteConfig {
                    enabled: r.enabled,
                    channels,
                    min_severity: r.min_severity.map(sev),
                },
            );
        }
        let out = Self {
            templates_dir: cfg.scripts.scripts_dir.join("templates"),
            smtp,
            recipients: n.recipients.clone(),
            webhooks,
            routes,
            email_min_severity: sev(n.email_min_severity),
            webhook_min_severity: sev(n.webhook_min_severity),
            digest: DigestConfig {
                enabled: n.digest_enabled,
                time: n.digest_time.clone(),
                timezone: n.digest_timezone.clone(),
            },
            retry: RetryConfig {
                max_attempts: n.retry.max_attempts,
                base_delay: Duration::from_secs(n.retry.base_delay_secs.max(1)),
                ..RetryConfig::default()
            },
            ..Self::default()
        };
        out.validate()?;
        Ok(out)
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

    fn global(text: &str) -> Result<NotifyConfig, String> {
        let cfg: global::Config = toml::from_str(text).map_err(|e| e.to_string())?;
        NotifyConfig::from_global(&cfg)
    }

    #[test]
    fn resolves_global_config_and_routes() {
        let cfg = global(
            r#"
            [scripts]
            scripts_dir = "/srv/spm/scripts"
            [notify]
            email_min_severity = "warning"
            [notify.smtp]
            host = "relay.example"
            security = "tls"
            port = 465
            password = "pw"
            username = "u"
            [notify.recipients]
            default = ["ops@example.com"]
            pending_approval = ["cab@example.com"]
            [notify.routes.test_failed]
            channels = ["webhook"]
            min_severity = "critical"
            [notify.retry]
            base_delay_secs = 5
            "#,
        )
        .expect("valid");
        assert_eq!(
            cfg.templates_dir,
            std::path::Path::new("/srv/spm/scripts/templates")
        );
        let smtp = cfg.smtp.as_ref().expect("smtp");
        assert_eq!((smtp.security, smtp.port), (SmtpSecurity::Tls, Some(465)));
        assert_eq!(smtp.password.as_ref().map(|p| p.expose()), Some("pw"));
        assert_eq!(
            cfg.recipients_for(EventKind::PendingApproval),
            ["cab@example.com"]
        );
        assert_eq!(
            cfg.recipients_for(EventKind::RunFailed),
            ["ops@example.com"]
        );
        let tf = cfg.route(EventKind::TestFailed);
        assert_eq!(tf.channels, [Channel::Webhook]);
        assert_eq!(cfg.floor(&tf, Channel::Webhook), Severity::Critical);
        let rf = cfg.route(EventKind::RunFailed);
        assert_eq!(cfg.floor(&rf, Channel::Email), Severity::Warning);
        assert_eq!(cfg.floor(&rf, Channel::Webhook), Severity::Info);
        assert_eq!(cfg.retry.base_delay, Duration::from_secs(5));
        assert!(cfg.digest.enabled);
    }

    #[test]
    fn rejects_bad_input_with_the_key() {
        let e = global("[notify.routes.tset_failed]\n").unwrap_err();
        assert!(e.contains("tset_failed"), "{e}");
        let e = global("[notify.routes.test_failed]\nchannels = [\"sms\"]\n").unwrap_err();
        assert!(e.contains("notify.routes.test_failed.channels"), "{e}");
        let e = global("[notify.recipients]\ndefault = [\"not an address\"]\n").unwrap_err();
        assert!(e.contains("notify.recipients.default"), "{e}");
        let e = global("[notify]\ndigest_timezone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(e.contains("digest_timezone"), "{e}");
    }
}
