//! Events the test engine records directly in the database (`test_failed`,
//! `pending_approval`) are routed by the notifier's worker to the configured channels with
//! the same rules as `Notifier::raise`: here a real HTTP webhook receiver gets them, and a
//! message a script sent as dashboard-only stays undelivered (see `notify_script.rs`).

mod support;

use std::time::Duration;

use spm::engine::notify::{Notifier, NotifyConfig};
use spm::services::notify::{Secret, WebhookConfig};
use spm::store::Store;
use spm::store::notifications as db;
use spm::store::test_runs::{NewNotification, notify};
use support::{Receiver, shipped_templates, wait_for};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_events_recorded_directly_reach_the_webhook() {
    let rx = Receiver::start(0).await;
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let cfg = NotifyConfig {
        templates_dir: tpl.path().to_path_buf(),
        webhooks: vec![WebhookConfig {
            name: "ops".into(),
            url: rx.url(),
            auth_header: Some(Secret::new("Bearer tok")),
            hmac_secret: Some(Secret::new("whsec")),
            events: vec![],
            timeout: Duration::from_secs(5),
            ca_file: None,
        }],
        poll_interval: Duration::from_millis(100),
        ..NotifyConfig::default()
    };
    let notifier = Notifier::new(store.clone(), cfg).expect("notifier");
    assert_eq!(
        notifier.route_direct().await.expect("first pass"),
        0,
        "nothing to route"
    );

    let id = store
        .write_blocking(|tx| {
            notify(
                tx,
                &NewNotification {
                    event: "test_failed".into(),
                    severity: "critical".into(),
                    subject: "USN-9002-1 failed on test-ubuntu-01".into(),
                    body: "services: nginx down after patch".into(),
                    advisory: Some("USN-9002-1".into()),
                    queue_id: None,
                    test_id: None,
                    data: serde_json::Value::Null,
                },
            )
        })
        .expect("engine row");
    let stop = CancellationToken::new();
    let worker = notifier.spawn_worker(stop.clone());
    let sent = wait_for(30, "the webhook delivery to be sent", || {
        let d = store
            .read_blocking(|c| db::deliveries(c, id))
            .expect("deliveries");
        d.into_iter().find(|d| d.status == "sent")
    })
    .await;
    assert_eq!(sent.channel, "webhook");
    let got = rx.requests();
    assert_eq!(got.len(), 1, "exactly the new event was delivered");
    assert!(
        String::from_utf8_lossy(&got[0].body).contains("USN-9002-1"),
        "payload names the advisory"
    );
    stop.cancel();
    let _ = worker.await;
    // Without event data the engine's own text stays.
    let row = store.read_blocking(|c| db::get(c, id)).expect("row");
    assert_eq!(row.subject, "USN-9002-1 failed on test-ubuntu-01");
}

/// A row with event data is rendered by the event's templates when routed; one whose data
/// the template cannot render (no `system`) keeps the recorder's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_rows_with_data_are_rendered_by_the_templates() {
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let notifier = Notifier::new(
        store.clone(),
        NotifyConfig {
            templates_dir: tpl.path().to_path_buf(),
            ..NotifyConfig::default()
        },
    )
    .expect("notifier");
    let row = |data: serde_json::Value| NewNotification {
        event: "rollback_performed".into(),
        severity: "warning".into(),
        subject: "engine subject".into(),
        body: "engine body".into(),
        advisory: Some("USN-9002-1".into()),
        queue_id: Some(4),
        test_id: Some(9),
        data,
    };
    let (good, bad) = store
        .write_blocking(|tx| {
            let good = notify(
                tx,
                &row(serde_json::json!({
                    "system": "test-ubuntu-01", "strategy": "package",
                    "reason": "services failed", "status": "verified",
                })),
            )?;
            let bad = notify(tx, &row(serde_json::json!({ "strategy": "package" })))?;
            Ok((good, bad))
        })
        .expect("engine rows");
    assert_eq!(notifier.route_direct().await.expect("route"), 2);
    let good = store.read_blocking(|c| db::get(c, good)).expect("row");
    assert_eq!(
        good.subject,
        "[spm] Rollback on test-ubuntu-01 after USN-9002-1: verified"
    );
    assert!(good.body.contains("Strategy : package"), "{}", good.body);
    assert!(good.body.contains("Test ID  : 9"), "{}", good.body);
    let bad = store.read_blocking(|c| db::get(c, bad)).expect("row");
    assert_eq!(
        (bad.subject.as_str(), bad.body.as_str()),
        ("engine subject", "engine body")
    );
}
