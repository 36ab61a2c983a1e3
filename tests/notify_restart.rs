//! Deliveries left pending in the database are sent by a new Notifier after a restart,
//! including one whose previous worker died mid-send (expired lease).

mod support;

use std::time::Duration;

use serde_json::json;
use spm::engine::notify::{Event, EventKind, Notifier, NotifyConfig};
use spm::services::notify::WebhookConfig;
use spm::store::notifications as db;
use spm::store::{Store, now_ts};
use support::{Receiver, shipped_templates, wait_for};
use tokio_util::sync::CancellationToken;

fn config(tpl: &std::path::Path, url: String) -> NotifyConfig {
    let mut cfg = NotifyConfig {
        templates_dir: tpl.to_path_buf(),
        webhooks: vec![WebhookConfig {
            name: "ops".into(),
            url,
            auth_header: None,
            hmac_secret: None,
            events: vec![],
            timeout: Duration::from_secs(5),
            ca_file: None,
        }],
        poll_interval: Duration::from_millis(200),
        ..NotifyConfig::default()
    };
    cfg.retry.base_delay = Duration::from_millis(100);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_are_sent_after_restart() {
    let rx = Receiver::start(0).await;
    let tpl = shipped_templates();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("spm.db");

    // First life: events are raised, but the process stops before any delivery; one
    // delivery was even claimed by a worker that then died (its lease is still running).
    let (first, second) = {
        let store = Store::open(&path).expect("store");
        let n = Notifier::new(store.clone(), config(tpl.path(), rx.url())).expect("notifier");
        let first = n
            .raise(Event::new(
                EventKind::SyncPartial,
                json!({"scope": "all", "failures": [{"what": "USN-1", "reason": "timeout"}]}),
            ))
            .await
            .expect("raised");
        let second = n
            .raise(Event::new(EventKind::RollbackPerformed, json!({"system": "web2", "strategy": "snapshot", "reason": "validate failed", "status": "verified"})).advisory("USN-2"))
            .await
            .expect("raised");
        let lease = (chrono::Utc::now() + chrono::Duration::milliseconds(1500))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let claimed = store
            .write_blocking(|tx| db::claim_due_of(tx, second, &now_ts(), &lease))
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        (first, second)
    };
    assert!(rx.requests().is_empty());

    // Second life: a new store and notifier on the same file pick both up.
    let store = Store::open(&path).expect("reopen");
    let n = Notifier::new(store.clone(), config(tpl.path(), rx.url())).expect("notifier");
    let stop = CancellationToken::new();
    let worker = n.spawn_worker(stop.clone());
    for id in [first, second] {
        wait_for(
            20,
            &format!("notification {id} delivered after restart"),
            || {
                let d = store
                    .read_blocking(|c| db::deliveries(c, id))
                    .expect("deliveries");
                (d.len() == 1 && d[0].status == "sent").then_some(())
            },
        )
        .await;
    }
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "each delivery sent exactly once");
    let events: Vec<String> = reqs
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            v["event"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    // The un-leased one goes first; the leased one only once its lease expired.
    assert_eq!(events, ["sync_partial", "rollback_performed"]);
    let rollback: serde_json::Value = serde_json::from_slice(&reqs[1].body).expect("json");
    assert_eq!(
        rollback["subject"],
        "[spm] Rollback on web2 after USN-2: verified"
    );
    stop.cancel();
    worker.await.expect("worker");
}
