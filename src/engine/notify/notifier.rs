//! The [`Notifier`]: raising events and the delivery worker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::config::{Channel, NotifyConfig};
use super::digest;
use super::event::{Event, EventKind, Severity};
use super::templates::{Rendered, Templates};
use crate::services::notify::{MailError, MailMessage, Mailer, WebhookClient, WebhookError};
use crate::store::notifications::{self as db, DueDelivery, NewDelivery, NewNotification};
use crate::store::{Store, StoreError};

/// Deliveries claimed per worker pass.
const BATCH: u32 = 32;

/// Errors from setting up or driving notifications (never from [`Notifier::raise`]).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The `[notify]` configuration is invalid.
    #[error("notify configuration: {0}")]
    Config(String),
    /// The SMTP client could not be built.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// A webhook client could not be built.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of sending a test message to one channel.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    /// `email` or `webhook`.
    pub channel: String,
    /// Recipients or webhook name.
    pub target: String,
    /// Whether the channel accepted the message.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

struct Inner {
    store: Store,
    config: NotifyConfig,
    templates: Templates,
    mailer: Option<Mailer>,
    webhooks: BTreeMap<String, WebhookClient>,
    wake: tokio::sync::Notify,
    lease: Duration,
}

/// Raises notifications and delivers them. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("mailer", &self.inner.mailer)
            .field("webhooks", &self.inner.webhooks.keys().collect::<Vec<_>>())
            .field("templates", &self.inner.templates)
            .finish()
    }
}

/// Why one attempt failed, and whether retrying can help.
struct SendFailure {
    message: String,
    permanent: bool,
}

impl SendFailure {
    fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// What every template receives (`scripts/templates/README.md`).
fn template_ctx(event: &Event, severity: Severity) -> serde_json::Value {
    json!({
        "event": event.kind.as_str(),
        "severity": severity.as_str(),
        "advisory": event.advisory,
        "queue_id": event.queue_id,
        "test_id": event.test_id,
        "run_id": event.run_id,
        "data": event.data,
        "now": ts(Utc::now()),
    })
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
}

impl Notifier {
    /// Validate the configuration, build the channel clients and load the templates.
    /// Template problems are logged (and visible through [`Notifier::templates`]), not fatal.
    pub fn new(store: Store, config: NotifyConfig) -> Result<Self, NotifyError> {
        config.validate().map_err(NotifyError::Config)?;
        let mailer = config.smtp.as_ref().map(Mailer::new).transpose()?;
        let mut webhooks = BTreeMap::new();
        let mut max_timeout = config.smtp.as_ref().map(|s| s.timeout).unwrap_or_default();
        for w in &config.webhooks {
            webhooks.insert(w.name.clone(), WebhookClient::new(w)?);
            max_timeout = max_timeout.max(w.timeout);
        }
        let templates = Templates::load(&config.templates_dir);
        for e in templates.errors() {
            tracing::warn!(error = %e, "notification template not loaded");
        }
        // Each send is bounded by its timeout; the lease outlasts it with a margin.
        let lease = max_timeout.saturating_mul(2) + Duration::from_secs(30);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                config,
                templates,
                mailer,
                webhooks,
                wake: tokio::sync::Notify::new(),
                lease,
            }),
        })
    }

    /// [`Notifier::new`] with the `[notify]` section of the service configuration.
    pub fn from_config(store: Store, config: &crate::config::Config) -> Result<Self, NotifyError> {
        let cfg = NotifyConfig::from_global(config).map_err(NotifyError::Config)?;
        Self::new(store, cfg)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configuration in use.
    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// The template set (for `spm check` and the API: current errors).
    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// Record the event and queue its deliveries. Never fails the caller: on error it logs
    /// and returns `None`. Returns the notification id.
    pub async fn raise(&self, event: Event) -> Option<i64> {
        self.reload_templates().await;
        let kind = event.kind;
        match self.record(&event).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(event = %kind, error = %e, "cannot record notification");
                None
            }
        }
    }

    /// Raise `sync_partial` / `sync_failed` for a finished sync that did not end `ok`
    /// (nothing for a good one). The periodic sync and the API's on-demand sync use it.
    pub async fn raise_sync_outcome(&self, report: &crate::engine::sync::SyncReport) {
        use crate::store::sync_runs::SyncStatus;
        let kind = match report.status {
            SyncStatus::Ok | SyncStatus::Running => return,
            SyncStatus::Partial => EventKind::SyncPartial,
            _ => EventKind::SyncFailed,
        };
        let data = serde_json::to_value(report).unwrap_or_default();
        self.raise(Event::new(kind, data)).await;
    }

    /// [`Notifier::raise`] on a spawned task, for callers that must not wait at all.
    pub fn raise_detached(&self, event: Event) {
        let this = self.clone();
        tokio::spawn(async move {
            this.raise(event).await;
        });
    }

    /// Re-read the templates; report newly broken files as `script_reload_error` events.
    pub async fn reload_templates(&self) {
        let inner = Arc::clone(&self.inner);
        let report = match tokio::task::spawn_blocking(move || inner.templates.refresh()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "template reload task failed");
                return;
            }
        };
        for name in &report.updated {
            tracing::debug!(template = %name, "notification template loaded");
        }
        for err in report.new_errors {
            tracing::warn!(error = %err, "notification template broken; keeping the last good version");
            let event = Event::new(
                EventKind::ScriptReloadError,
                json!({"path": err.path.display().to_string(), "error": err.message}),
            );
            if let Err(e) = self.record(&event).await {
                tracing::error!(error = %e, "cannot record script_reload_error notification");
            }
        }
    }

    fn render(&self, event: &Event, severity: Severity) -> Rendered {
        let ctx = template_ctx(event, severity);
        match self.inner.templates.render(event.kind.as_str(), &ctx) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(event = %event.kind, error = %e, "template failed; using fallback text");
                let data = serde_json::to_string_pretty(&event.data).unwrap_or_default();
                Rendered {
                    subject: format!(
                        "[spm] {}{}",
                        event.kind,
                        event
                            .advisory
                            .as_deref()
                            .map(|a| format!(" {a}"))
                            .unwrap_or_default()
                    ),
                    body: format!(
                        "The template for this notification failed: {e}\n\nEvent data:\n{data}\n"
                    ),
                    html: None,
                }
            }
        }
    }

    /// The deliveries an event gets under the routing configuration.
    pub fn route(&self, kind: EventKind, severity: Severity) -> Vec<NewDelivery> {
        let cfg = &self.inner.config;
        let route = cfg.route(kind);
        let mut out = Vec::new();
        if !route.enabled {
            return out;
        }
        let wants = |c: Channel| route.channels.contains(&c) && severity >= cfg.floor(&route, c);
        if wants(Channel::Email) && self.inner.mailer.is_some() {
            let to = cfg.recipients_for(kind);
            if !to.is_empty() {
                out.push(NewDelivery {
                    channel: Channel::Email.as_str().into(),
                    target: to.join(", "),
                });
            }
        }
        if wants(Channel::Webhook) {
            for w in &cfg.webhooks {
                if w.events.is_empty() || w.events.iter().any(|e| e == kind.as_str()) {
                    out.push(NewDelivery {
                        channel: Channel::Webhook.as_str().into(),
                        target: w.name.clone(),
                    });
                }
            }
        }
        out
    }

    fn new_row(&self, event: &Event, severity: Severity) -> NewNotification {
        let r = self.render(event, severity);
        NewNotification {
            event: event.kind.as_str().into(),
            severity: severity.as_str().into(),
            subject: r.subject,
            body: r.body,
            body_html: r.html,
            data: event.data.clone(),
            advisory: event.advisory.clone(),
            queue_id: event.queue_id,
            test_id: event.test_id,
            run_id: event.run_id,
        }
    }

    async fn record(&self, event: &Event) -> Result<i64, NotifyError> {
        let deliveries = self.route(event.kind, event.effective_severity());
        self.record_with(event, deliveries).await
    }

    /// Whether e-mail is configured.
    pub fn has_mailer(&self) -> bool {
        self.inner.mailer.is_some()
    }

    /// Render and record `event` with the given deliveries (already routed).
    pub(super) async fn record_with(
        &self,
        event: &Event,
        deliveries: Vec<NewDelivery>,
    ) -> Result<i64, NotifyError> {
        let severity = event.effective_severity();
        let row = self.new_row(event, severity);
        let (id, _) = self
            .inner
            .store
            .write(move |tx| db::insert(tx, &row, &deliveries))
            .await?;
        tracing::info!(id, event = %event.kind, severity = severity.as_str(), "notification recorded");
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// Send a test message to every configured channel now (once, no retries) and report
    /// per channel. The message is recorded like any other notification; with no channel
    /// configured nothing is sent or recorded and the report is empty.
    pub async fn send_test(&self) -> Result<Vec<ChannelReport>, NotifyError> {
        if self.inner.mailer.is_none() && self.inner.webhooks.is_empty() {
            return Ok(Vec::new());
        }
        self.reload_templates().await;
        let event = Event::new(
            EventKind::Test,
            json!({"message": "This is a test message from spm.", "host": hostname()}),
        );
        let row = self.new_row(&event, Severity::Info);
        let mut deliveries = Vec::new();
        let mut reports = Vec::new();
        if self.inner.mailer.is_some() {
            let mut to: Vec<String> = Vec::new();
            let explicit = self.inner.config.recipients.get(EventKind::Test.as_str());
            let lists: Vec<&Vec<String>> = match explicit {
                Some(l) => vec![l],
                None => self.inner.config.recipients.values().collect(),
            };
            for addr in lists.into_iter().flatten() {
                if !to.contains(addr) {
                    to.push(addr.clone());
                }
            }
            if to.is_empty() {
                reports.push(ChannelReport {
                    channel: "email".into(),
                    target: String::new(),
                    ok: false,
                    error: Some("no recipients configured in notify.recipients".into()),
                });
            } else {
                deliveries.push(NewDelivery {
                    channel: "email".into(),
                    target: to.join(", "),
                });
            }
        }
        for name in self.inner.webhooks.keys() {
            deliveries.push(NewDelivery {
                channel: "webhook".into(),
                target: name.clone(),
            });
        }
        let (id, _) = self
            .inner
            .store
            .write(move |tx| db::insert(tx, &row, &deliveries))
            .await?;
        let now = Utc::now();
        let (now_s, lease_s) = (ts(now), ts(add(now, self.inner.lease)));
        let due = self
            .inner
            .store
            .write(move |tx| db::claim_due_of(tx, id, &now_s, &lease_s))
            .await?;
        for d in due {
            let (channel, target, did) = (
                d.delivery.channel.clone(),
                d.delivery.target.clone(),
                d.delivery.id,
            );
            let result = self.send(&d).await;
            let error = result.as_ref().err().map(|f| f.message.clone());
            let rec_err = error.clone();
            self.inner
                .store
                .write(move |tx| match rec_err {
                    None => db::record_sent(tx, did, &crate::store::now_ts()),
                    Some(e) => db::record_gave_up(tx, did, &e),
                })
                .await?;
            reports.push(ChannelReport {
                channel,
                target,
                ok: error.is_none(),
                error,
            });
        }
        Ok(reports)
    }

    async fn send(&self, d: &DueDelivery) -> Result<(), SendFailure> {
        let n = &d.notification;
        let key = &d.delivery.idempotency_key;
        match d.delivery.channel.as_str() {
            "email" => {
                let Some(mailer) = &self.inner.mailer else {
                    return Err(SendFailure::permanent("e-mail is no longer configured"));
                };
                let msg = MailMessage {
                    to: d
                        .delivery
                        .target
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    subject: n.subject.clone(),
                    text: n.body.clone(),
                    html: n.body_html.clone(),
                    message_id: Some(format!("<{key}@spm>")),
                };
                mailer.send(&msg).await.map_err(|e| match e {
                    MailError::Send { .. } | MailError::Timeout { .. } => {
                        SendFailure::retry(e.to_string())
                    }
                    other => SendFailure::permanent(other.to_string()),
                })
            }
            "webhook" => {
                let Some(client) = self.inner.webhooks.get(&d.delivery.target) else {
                    return Err(SendFailure::permanent(format!(
                        "webhook {} is no longer configured",
                        d.delivery.target
                    )));
                };
                let timestamp = Utc::now().timestamp();
                let payload = json!({
                    "id": n.id,
                    "event": n.event,
                    "severity": n.severity,
                    "subject": n.subject,
                    "body": n.body,
                    "advisory": n.advisory,
                    "queue_id": n.queue_id,
                    "test_id": n.test_id,
                    "run_id": n.run_id,
                    "created_at": n.created_at,
                    "data": n.data,
                    "delivery": {
                        "id": d.delivery.id,
                        "attempt": d.delivery.attempts + 1,
                        "idempotency_key": key,
                    },
                    "timestamp": timestamp,
                });
                let body = serde_json::to_vec(&payload)
                    .map_err(|e| SendFailure::permanent(format!("cannot encode payload: {e}")))?;
                client
                    .post(body, key, timestamp)
                    .await
                    .map(|_| ())
                    .map_err(|e| match e {
                        WebhookError::Config { .. } => SendFailure::permanent(e.to_string()),
                        // 4xx other than 408/429 will not get better by retrying.
                        WebhookError::Status { status, .. }
                            if (400..500).contains(&status) && status != 408 && status != 429 =>
                        {
                            SendFailure::permanent(e.to_string())
                        }
                        _ => SendFailure::retry(e.to_string()),
                    })
            }
            other => Err(SendFailure::permanent(format!("unknown channel {other:?}"))),
        }
    }

    async fn deliver_one(&self, d: DueDelivery) {
        let id = d.delivery.id;
        let attempt = u32::try_from(d.delivery.attempts + 1).unwrap_or(u32::MAX);
        let retry = &self.inner.config.retry;
        let result = self.send(&d).await;
        let now = Utc::now();
        let outcome = match &result {
            Ok(()) => "sent",
            Err(f) if f.permanent || attempt >= retry.max_attempts => "gave_up",
            Err(_) => "failed",
        };
        let next = ts(add(now, retry.delay_after(attempt)));
        let now_s = ts(now);
        let error = result.err().map(|f| f.message);
        match &error {
            None => {
                tracing::info!(delivery = id, channel = %d.delivery.channel, target = %d.delivery.target, attempt, "notification delivered")
            }
            Some(e) => {
                tracing::warn!(delivery = id, channel = %d.delivery.channel, target = %d.delivery.target, attempt, outcome, error = %e, "notification delivery failed")
            }
        }
        let res = self
            .inner
            .store
            .write(move |tx| match (outcome, error) {
                ("sent", _) => db::record_sent(tx, id, &now_s),
                ("gave_up", e) => db::record_gave_up(tx, id, e.as_deref().unwrap_or("")),
                (_, e) => db::record_failed(tx, id, e.as_deref().unwrap_or(""), &next),
            })
            .await;
        if let Err(e) = res {
            tracing::error!(delivery = id, error = %e, "cannot record delivery attempt");
        }
    }

    /// One worker pass: claim the due deliveries and send them concurrently. Returns how
    /// many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, NotifyError> {
        let now = Utc::now();
        let (now_s, lease_s) = (ts(now), ts(add(now, self.inner.lease)));
        let due = self
            .inner
            .store
            .write(move |tx| db::claim_due(tx, &now_s, &lease_s, BATCH))
            .await?;
        let n = due.len();
        futures::future::join_all(due.into_iter().map(|d| self.deliver_one(d))).await;
        Ok(n)
    }

    /// Raise the daily digest if it is enabled and due at `now`. Returns its id.
    pub async fn maybe_send_digest(&self, now: DateTime<Utc>) -> Result<Option<i64>, NotifyError> {
        let cfg = &self.inner.config.digest;
        if !cfg.enabled {
            return Ok(None);
        }
        let (time, tz) = cfg.parsed().map_err(NotifyError::Config)?;
        let last = self
            .inner
            .store
            .read(|c| db::last_event_at(c, EventKind::DailyDigest.as_str()))
            .await?;
        if !digest::is_due(now, time, tz, last.as_deref().and_then(parse_ts)) {
            return Ok(None);
        }
        let data = digest::build(&self.inner.store, now, &cfg.timezone).await?;
        let event = Event::new(EventKind::DailyDigest, data);
        Ok(Some(self.record(&event).await?))
    }

    /// The delivery worker: sends due deliveries until `shutdown` is cancelled, sleeping
    /// until the next one is due (at most `poll_interval`), woken early by new events.
    /// Also reloads templates and raises the daily digest.
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!("notification worker started");
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            self.reload_templates().await;
            if let Err(e) = self.maybe_send_digest(Utc::now()).await {
                tracing::error!(error = %e, "daily digest failed");
            }
            if let Err(e) = self.route_direct().await {
                tracing::error!(error = %e, "routing directly recorded notifications failed");
            }
            match self.deliver_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "notification worker pass failed"),
            }
            let sleep = self.idle_sleep().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
        tracing::info!("notification worker stopped");
    }

    /// Give deliveries to notifications other parts of spm recorded directly (the test
    /// engine's `test_failed` / `pending_approval` / `rollback_performed`, the rollout's
    /// alerts, the scheduler's `run_missed`), by the same routing and severity rules as
    /// [`Notifier::raise`] (rows it records itself are routed when written). A row that
    /// carries event data gets its subject and bodies rendered by the event's templates; when
    /// they fail the recorder's own text stays. Returns how many rows were routed.
    pub async fn route_direct(&self) -> Result<usize, crate::store::StoreError> {
        let this = self.clone();
        self.inner
            .store
            .write(move |tx| {
                let rows = db::unrouted(tx, 200)?;
                for (id, event, severity) in &rows {
                    if let (Some(kind), Some(sev)) =
                        (EventKind::parse(event), Severity::parse(severity))
                    {
                        let row = db::get(tx, *id)?;
                        if let Some(r) = this.render_direct(kind, sev, &row) {
                            db::set_rendered(tx, *id, &r.subject, &r.body, r.html.as_deref())?;
                        }
                        db::add_deliveries(tx, *id, &this.route(kind, sev))?;
                    } else {
                        tracing::warn!(id, event = %event, "notification of an unknown event type: shown on the dashboard, not delivered");
                    }
                    db::mark_routed(tx, *id)?;
                }
                Ok(rows.len())
            })
            .await
    }

    /// The templates rendered over a directly recorded row, when it carries event data.
    fn render_direct(
        &self,
        kind: EventKind,
        severity: Severity,
        row: &db::Notification,
    ) -> Option<Rendered> {
        if row.data.as_object().is_none_or(|o| o.is_empty()) {
            return None;
        }
        let event = Event {
            kind,
            severity: Some(severity),
            advisory: row.advisory.clone(),
            queue_id: row.queue_id,
            test_id: row.test_id,
            run_id: row.run_id,
            data: row.data.clone(),
        };
        let ctx = template_ctx(&event, severity);
        match self.inner.templates.render(kind.as_str(), &ctx) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(id = row.id, event = %kind, error = %e, "template failed; keeping the recorded text");
                None
            }
        }
    }

    /// Spawn [`Notifier::run`] on the runtime.
    pub fn spawn_worker(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(shutdown).await })
    }

    async fn idle_sleep(&self) -> Duration {
        let poll = self.inner.config.poll_interval;
        let next = self.inner.store.read(db::next_due_at).await.ok().flatten();
        match next.as_deref().and_then(parse_ts) {
            Some(t) => (t - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(10), poll),
            None => poll,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
