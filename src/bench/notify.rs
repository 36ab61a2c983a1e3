//! `spm bench notify`: the cost of raising notifications and of delivering them.
//!
//! - `raise`: events raised one after another through [`Notifier::raise`] (template
//!   hot-reload check, rendering, routing, one SQLite transaction each) into a file
//!   database, with no channel configured.
//! - `deliver`: deliveries already queued, sent by worker passes
//!   ([`Notifier::deliver_due`]) to an in-process HTTP receiver on loopback that answers
//!   200 at once, so the figure is spm's own overhead per delivery (claim, sign, POST,
//!   record).
//! - `route_direct`: rows recorded directly by the engines (as the test engine records
//!   `test_failed`, with event data), then routed by worker passes
//!   ([`Notifier::route_direct`]): each row rendered by the templates, given its webhook
//!   delivery and marked routed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::engine::notify::{Event, EventKind, Notifier, NotifyConfig};
use crate::services::notify::{Secret, WebhookConfig};
use crate::store::Store;
use crate::store::notifications as db;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct BenchParams {
    /// Events raised in the `raise` measurement.
    pub events: usize,
    /// Deliveries sent in the `deliver` measurement.
    pub deliveries: usize,
}

impl Default for BenchParams {
    fn default() -> Self {
        Self {
            events: 2000,
            deliveries: 1000,
        }
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "test_failed.subject.j2",
        include_str!("../../scripts/templates/test_failed.subject.j2"),
    ),
    (
        "test_failed.body.txt.j2",
        include_str!("../../scripts/templates/test_failed.body.txt.j2"),
    ),
    (
        "test_failed.body.html.j2",
        include_str!("../../scripts/templates/test_failed.body.html.j2"),
    ),
];

fn event(i: usize) -> Event {
    Event::new(
        EventKind::TestFailed,
        json!({"system": format!("web{i}"), "phase": "validate", "reason": "nginx down", "duration_s": 12}),
    )
    .advisory(format!("DSA-{i}-1"))
    .test_id(i as i64)
    .queue_id(i as i64)
}

async fn receiver() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the loopback receiver")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/hook"), hits))
}

/// A private scratch directory under the system temp dir, removed on drop.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "spm-bench-notify-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating scratch directory {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64().max(1e-9) * 10.0).round() / 10.0
}

fn micros(n: usize, d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6 / n.max(1) as f64 * 10.0).round() / 10.0
}

/// Run the benchmark and return its figures.
pub async fn run(p: BenchParams) -> anyhow::Result<serde_json::Value> {
    let dir = ScratchDir::new()?;
    let tpl = dir.path().join("templates");
    std::fs::create_dir_all(&tpl)?;
    for (name, text) in TEMPLATES {
        std::fs::write(tpl.join(name), text)?;
    }

    // raise
    let store = Store::open(&dir.path().join("raise.db"))?;
    let cfg = NotifyConfig {
        templates_dir: tpl.clone(),
        ..NotifyConfig::default()
    };
    let n = Notifier::new(store, cfg)?;
    let t = Instant::now();
    for i in 0..p.events {
        n.raise(event(i))
            .await
            .context("raise failed (see the log)")?;
    }
    let raise = t.elapsed();

    // deliver
    let (url, hits) = receiver().await?;
    let store = Store::open(&dir.path().join("deliver.db"))?;
    let cfg = NotifyConfig {
        templates_dir: tpl,
        webhooks: vec![WebhookConfig {
            name: "bench".into(),
            url,
            auth_header: Some(Secret::new("Bearer bench")),
            hmac_secret: Some(Secret::new("bench-key")),
            events: vec![],
            timeout: Duration::from_secs(10),
            ca_file: None,
        }],
        ..NotifyConfig::default()
    };
    let n = Notifier::new(store.clone(), cfg)?;
    for i in 0..p.deliveries {
        n.raise(event(i))
            .await
            .context("raise failed (see the log)")?;
    }
    let t = Instant::now();
    let mut passes = 0usize;
    while hits.load(Ordering::Relaxed) < p.deliveries {
        let sent = n.deliver_due().await?;
        passes += 1;
        anyhow::ensure!(sent > 0, "deliveries stopped before all were sent");
    }
    let deliver = t.elapsed();
    let sent: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM notification_deliveries WHERE status = 'sent'",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    let unread = store.read(db::unread_count).await?;

    // route_direct: engine rows (the same store and webhook config), rendered and routed.
    let first_direct = store
        .write(move |tx| {
            let mut first = None;
            for i in 0..p.events {
                let e = event(i);
                let id = crate::store::test_runs::notify(
                    tx,
                    &crate::store::test_runs::NewNotification {
                        event: e.kind.as_str().into(),
                        severity: "warning".into(),
                        subject: format!("engine subject {i}"),
                        body: "engine body".into(),
                        advisory: e.advisory.clone(),
                        queue_id: e.queue_id,
                        test_id: e.test_id,
                        data: e.data.clone(),
                    },
                )?;
                first.get_or_insert(id);
            }
            Ok(first)
        })
        .await?;
    let t = Instant::now();
    let mut routed = 0usize;
    let mut route_passes = 0usize;
    loop {
        let n = n.route_direct().await?;
        if n == 0 {
            break;
        }
        routed += n;
        route_passes += 1;
    }
    let route = t.elapsed();
    anyhow::ensure!(
        routed == p.events,
        "routed {routed} engine rows, expected {}",
        p.events
    );
    if let Some(id) = first_direct {
        let row = store.read(move |c| db::get(c, id)).await?;
        anyhow::ensure!(
            row.subject.starts_with("[spm] Test FAILED"),
            "engine row not rendered by the templates: {:?}",
            row.subject
        );
    }

    Ok(json!({
        "bench": "notify",
        "raise": {
            "events": p.events,
            "seconds": (raise.as_secs_f64() * 1000.0).round() / 1000.0,
            "per_second": rate(p.events, raise),
            "mean_us": micros(p.events, raise),
        },
        "deliver": {
            "deliveries": p.deliveries,
            "recorded_sent": sent,
            "notifications": unread,
            "worker_passes": passes,
            "seconds": (deliver.as_secs_f64() * 1000.0).round() / 1000.0,
            "per_second": rate(p.deliveries, deliver),
            "mean_us": micros(p.deliveries, deliver),
        },
        "route_direct": {
            "rows": routed,
            "worker_passes": route_passes,
            "seconds": (route.as_secs_f64() * 1000.0).round() / 1000.0,
            "per_second": rate(routed, route),
            "mean_us": micros(routed, route),
        },
    }))
}
