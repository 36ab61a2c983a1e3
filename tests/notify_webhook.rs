//! Webhook notifications against a real HTTP receiver (axum on loopback) that fails the
//! first attempts on purpose; routing and severity filters.

mod support;

use std::time::Duration;

use serde_json::json;
use spm::engine::notify::{
    Channel, Event, EventKind, Notifier, NotifyConfig, RouteConfig, Severity,
};
use spm::services::notify::webhook::sign;
use spm::services::notify::{Secret, WebhookConfig};
use spm::store::Store;
use spm::store::notifications as db;
use support::{Receiver, shipped_templates, wait_for};
use tokio_util::sync::CancellationToken;

fn webhook(name: &str, url: String, events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        auth_header: Some(Secret::new("Bearer tok-123")),
        hmac_secret: Some(Secret::new("whsec-test")),
        events: events.iter().map(|e| e.to_string()).collect(),
        timeout: Duration::from_secs(5),
        ca_file: None,
    }
}

fn config(tpl: &std::path::Path, hooks: Vec<WebhookConfig>, max_attempts: u32) -> NotifyConfig {
    let mut cfg = NotifyConfig {
        templates_dir: tpl.to_path_buf(),
        webhooks: hooks,
        poll_interval: Duration::from_millis(200),
        ..NotifyConfig::default()
    };
    cfg.retry.max_attempts = max_attempts;
    cfg.retry.base_delay = Duration::from_millis(100);
    cfg.retry.max_delay = Duration::from_secs(1);
    cfg
}

async fn delivery_when(store: &Store, id: i64, status: &str) -> db::Delivery {
    wait_for(
        30,
        &format!("delivery of notification {id} to be {status}"),
        || {
            let d = store
                .read_blocking(|c| db::deliveries(c, id))
                .expect("deliveries");
            d.into_iter().find(|d| d.status == status)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_then_delivers_signed_payload_with_stable_key() {
    let rx = Receiver::start(2).await;
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let notifier = Notifier::new(
        store.clone(),
        config(tpl.path(), vec![webhook("ops", rx.url(), &[])], 5),
    )
    .expect("notifier");
    let stop = CancellationToken::new();
    let worker = notifier.spawn_worker(stop.clone());

    let id = notifier
        .raise(
            Event::new(
                EventKind::RunFailed,
                json!({"policy": "web-monthly", "error": "wave 2: 3 hosts failed", "hosts_ok": 10, "hosts_failed": 3}),
            )
            .run_id(41),
        )
        .await
        .expect("raised");

    let d = delivery_when(&store, id, "sent").await;
    assert_eq!(d.attempts, 3);
    assert_eq!(d.channel, "webhook");
    assert_eq!(d.target, "ops");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "two failures, then success");
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );

    for (i, r) in reqs.iter().enumerate() {
        let h = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| panic!("request {i} lacks header {name}"))
        };
        // The signature is the HMAC of the raw body, recomputed here.
        assert_eq!(h("x-spm-signature"), sign(b"whsec-test", &r.body));
        assert_eq!(h("authorization"), "Bearer tok-123");
        assert_eq!(h("content-type"), "application/json");
        // The idempotency key is the delivery row's, identical on every retry.
        assert_eq!(h("idempotency-key"), d.idempotency_key);
        let payload: serde_json::Value = serde_json::from_slice(&r.body).expect("json body");
        assert_eq!(payload["event"], "run_failed");
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["run_id"], 41);
        assert_eq!(payload["id"], id);
        assert_eq!(
            payload["subject"],
            "[spm] Patch run 41 FAILED (web-monthly)"
        );
        assert_eq!(payload["data"]["hosts_failed"], 3);
        assert_eq!(payload["delivery"]["attempt"], i as i64 + 1);
        assert_eq!(
            payload["delivery"]["idempotency_key"],
            d.idempotency_key.as_str()
        );
        assert_eq!(payload["timestamp"].to_string(), h("x-spm-timestamp"));
        assert!(
            payload["body"]
                .as_str()
                .unwrap_or("")
                .contains("wave 2: 3 hosts failed")
        );
    }
    // A tampered body does not verify.
    assert_ne!(
        sign(b"whsec-test", b"{}"),
        sign(b"whsec-test", &reqs[2].body)
    );

    stop.cancel();
    worker.await.expect("worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_max_attempts_and_records_the_error() {
    let rx = Receiver::start(usize::MAX).await;
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let notifier = Notifier::new(
        store.clone(),
        config(tpl.path(), vec![webhook("ops", rx.url(), &[])], 3),
    )
    .expect("notifier");
    let stop = CancellationToken::new();
    let worker = notifier.spawn_worker(stop.clone());
    let id = notifier
        .raise(Event::new(
            EventKind::SyncFailed,
            json!({"error": "UYUNI unreachable"}),
        ))
        .await
        .expect("raised");
    let d = delivery_when(&store, id, "gave_up").await;
    assert_eq!(d.attempts, 3);
    let err = d.last_error.unwrap_or_default();
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(
        !err.contains("tok-123") && !err.contains("whsec"),
        "secret in error: {err}"
    );
    assert_eq!(rx.requests().len(), 3);
    stop.cancel();
    worker.await.expect("worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_severity_filters_choose_the_deliveries() {
    let rx = Receiver::start(0).await;
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let mut cfg = config(
        tpl.path(),
        vec![
            webhook("all", rx.url(), &[]),
            webhook("runs", rx.url(), &["run_failed", "budget_tripped"]),
        ],
        3,
    );
    cfg.routes.insert(
        "test_failed".into(),
        RouteConfig {
            enabled: true,
            channels: vec![Channel::Webhook],
            min_severity: Some(Severity::Critical),
        },
    );
    cfg.routes.insert(
        "pending_approval".into(),
        RouteConfig {
            enabled: false,
            ..RouteConfig::default()
        },
    );
    // Recipients without SMTP: no e-mail deliveries are created.
    cfg.recipients
        .insert("default".into(), vec!["ops@example.test".into()]);
    let notifier = Notifier::new(store.clone(), cfg).expect("notifier");

    let targets = |id: i64| -> Vec<String> {
        store
            .read_blocking(|c| db::deliveries(c, id))
            .expect("deliveries")
            .into_iter()
            .map(|d| format!("{}:{}", d.channel, d.target))
            .collect()
    };
    let failed = |sev: Option<Severity>| {
        let e = Event::new(EventKind::TestFailed, json!({"system": "db1"})).advisory("RHSA-1");
        match sev {
            Some(s) => e.severity(s),
            None => e,
        }
    };
    // Below the route's minimum severity: recorded for the dashboard, not delivered.
    let a = notifier.raise(failed(None)).await.expect("raised");
    assert!(targets(a).is_empty());
    let row = store.read_blocking(|c| db::get(c, a)).expect("row");
    assert_eq!(row.severity, "warning");
    assert!(!row.read);
    // Critical: delivered, only to the webhook subscribed to every event.
    let b = notifier
        .raise(failed(Some(Severity::Critical)))
        .await
        .expect("raised");
    assert_eq!(targets(b), ["webhook:all"]);
    // Default route: both webhooks take run_failed.
    let c = notifier
        .raise(Event::new(EventKind::RunFailed, json!({"policy": "p"})).run_id(1))
        .await
        .expect("raised");
    assert_eq!(targets(c), ["webhook:all", "webhook:runs"]);
    // Disabled route.
    let d = notifier
        .raise(
            Event::new(EventKind::PendingApproval, json!({}))
                .queue_id(5)
                .advisory("X"),
        )
        .await
        .expect("raised");
    assert!(targets(d).is_empty());
    // Nothing was sent because no worker runs; the rows wait.
    assert!(rx.requests().is_empty());
}
