//! `spm.notify.send{…}` for scripts: the Lua host's [`NotifyService`], implemented by the
//! [`Notifier`].
//!
//! ```lua
//! local r = spm.notify.send{ subject = "disk almost full on web1", body = "...",
//!                            severity = "warning",          -- info (default) | warning | critical
//!                            channel = "email",             -- optional: email | webhook | dashboard
//!                            to = {"dba@example.com"},      -- optional: e-mail recipients
//!                            advisory = "DSA-5000-1", data = { used = 0.93 } }
//! -- r = { id = 42, deliveries = 1 }
//! ```
//!
//! The message is a `custom` notification: rendered by the `custom.*.j2` templates, routed
//! like any event (`[notify.routes.custom]`) unless `channel` / `to` narrow it. Bad input is
//! a `script` error; a database failure an `infrastructure` error.

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::Channel;
use super::event::{Event, EventKind, Severity};
use super::notifier::Notifier;
use crate::host::errors::{ErrorKind, ScriptError};
use crate::host::services::{NotifyService, ServiceFuture};
use crate::store::notifications::NewDelivery;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Recipients {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptMessage {
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    to: Option<Recipients>,
    #[serde(default)]
    advisory: Option<String>,
    #[serde(default)]
    queue_id: Option<i64>,
    #[serde(default)]
    test_id: Option<i64>,
    #[serde(default)]
    run_id: Option<i64>,
    #[serde(default)]
    data: Option<Value>,
}

fn bad(message: impl Into<String>) -> ScriptError {
    ScriptError::script(format!("spm.notify.send: {}", message.into()))
}

impl Notifier {
    /// Record a script's message; see the module documentation.
    pub async fn send_from_script(&self, message: Value) -> Result<Value, ScriptError> {
        let msg: ScriptMessage = serde_json::from_value(message).map_err(|e| bad(e.to_string()))?;
        let severity = match msg.severity.as_deref() {
            None => Severity::Info,
            Some(s) => Severity::parse(s)
                .ok_or_else(|| bad(format!("severity {s:?} is not info, warning or critical")))?,
        };
        let only = match msg.channel.as_deref() {
            None => None,
            Some("dashboard") => Some(None),
            Some(c) => Some(Some(Channel::parse(c).ok_or_else(|| {
                bad(format!("channel {c:?} is not email, webhook or dashboard"))
            })?)),
        };
        let to: Option<Vec<String>> = msg.to.map(|r| match r {
            Recipients::One(s) => vec![s],
            Recipients::Many(v) => v,
        });
        if let Some(list) = &to {
            if list.is_empty() {
                return Err(bad("to is empty"));
            }
            for addr in list {
                addr.parse::<lettre::message::Mailbox>()
                    .map_err(|e| bad(format!("invalid address {addr:?} in to: {e}")))?;
            }
        }
        let mut event = Event::custom(&msg.subject, &msg.body, severity).map_err(bad)?;
        if let Some(data) = msg.data {
            event.data["data"] = data;
        }
        event.advisory = msg.advisory;
        event.queue_id = msg.queue_id;
        event.test_id = msg.test_id;
        event.run_id = msg.run_id;

        let mut deliveries = self.route(EventKind::Custom, severity);
        if let Some(list) = to {
            // Explicit recipients replace the configured ones, within the route.
            deliveries.retain(|d| d.channel != Channel::Email.as_str());
            let email_allowed = !matches!(only, Some(None) | Some(Some(Channel::Webhook)));
            if email_allowed && self.has_mailer() {
                deliveries.push(NewDelivery {
                    channel: Channel::Email.as_str().into(),
                    target: list.join(", "),
                });
            } else if email_allowed {
                return Err(ScriptError::config(
                    "spm.notify.send: `to` given but e-mail is not configured ([notify.smtp])",
                ));
            }
        }
        match only {
            None => {}
            Some(None) => deliveries.clear(),
            Some(Some(c)) => deliveries.retain(|d| d.channel == c.as_str()),
        }
        let count = deliveries.len();
        self.reload_templates().await;
        let id = self
            .record_with(&event, deliveries)
            .await
            .map_err(|e| ScriptError::new(ErrorKind::Infrastructure, e.to_string()))?;
        Ok(json!({"id": id, "deliveries": count}))
    }
}

impl NotifyService for Notifier {
    fn send(&self, message: Value) -> ServiceFuture<'_, Value> {
        Box::pin(self.send_from_script(message))
    }
}
