//! The daily digest: built from the database at the configured time, sent once per day.

mod support;

use std::time::Duration;

use spm::engine::notify::{EventKind, Notifier, NotifyConfig};
use spm::services::notify::WebhookConfig;
use spm::store::Store;
use spm::store::notifications as db;
use support::{Receiver, shipped_templates, wait_for};
use tokio_util::sync::CancellationToken;

fn seed(store: &Store) {
    store
        .write_blocking(|tx| {
            tx.execute_batch(
                "INSERT INTO systems (id, name, os, env) VALUES (1,'web1','debian','prod'),(2,'db1','rhel','prod'),(3,'t1','debian','test');
                 INSERT INTO compliance (system_id, os, env, status) VALUES
                   (1,'debian','prod','compliant'),(2,'rhel','prod','non_compliant'),(3,'debian','test','unknown');
                 INSERT INTO errata (advisory, synopsis, severity) VALUES ('DSA-5001-1','openssl security update','critical'),('USN-7002-1','nginx','high');
                 INSERT INTO queue_items (advisory, os, status, queued_by, score, completed_at) VALUES
                   ('DSA-5001-1','debian','pending_approval','auto', 91, strftime('%Y-%m-%dT%H:%M:%fZ','now','-3 days'));
                 INSERT INTO queue_items (advisory, os, status, queued_by) VALUES ('USN-7002-1','ubuntu','failed','auto');
                 INSERT INTO tests (queue_id, advisory, system_name, status, failure_phase, failure_reason, completed_at) VALUES
                   (2,'USN-7002-1','t2','failed','validate','nginx did not start', strftime('%Y-%m-%dT%H:%M:%fZ','now','-2 hours')),
                   (2,'USN-7002-1','t2','failed','patch','old failure', strftime('%Y-%m-%dT%H:%M:%fZ','now','-3 days'));
                 INSERT INTO patch_runs (policy_id, policy_hash, trigger, status, error, started_by) VALUES
                   ('web-monthly','h','cron','budget_tripped','wave 1 over budget','cron');",
            )?;
            Ok(())
        })
        .expect("seed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_is_built_from_the_store_and_sent_once_a_day() {
    let rx = Receiver::start(0).await;
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    seed(&store);
    let mut cfg = NotifyConfig {
        templates_dir: tpl.path().to_path_buf(),
        webhooks: vec![WebhookConfig {
            name: "digest".into(),
            url: rx.url(),
            auth_header: None,
            hmac_secret: None,
            events: vec!["daily_digest".into()],
            timeout: Duration::from_secs(5),
            ca_file: None,
        }],
        poll_interval: Duration::from_millis(100),
        ..NotifyConfig::default()
    };
    // 00:00 UTC has always passed today, so a digest is due as soon as the worker starts.
    cfg.digest.enabled = true;
    cfg.digest.time = "00:00".into();
    cfg.digest.timezone = "UTC".into();
    let n = Notifier::new(store.clone(), cfg).expect("notifier");
    let stop = CancellationToken::new();
    let worker = n.spawn_worker(stop.clone());

    let req = wait_for(20, "the digest webhook", || {
        rx.requests().into_iter().next()
    })
    .await;
    let payload: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(payload["event"], "daily_digest");
    assert_eq!(
        payload["subject"],
        "[spm] Daily digest: 1 pending approval(s), 2 failure(s)"
    );
    let body = payload["body"].as_str().expect("body");
    assert!(
        body.contains("DSA-5001-1 (debian, critical, score 91) waiting 3.0 days"),
        "{body}"
    );
    assert!(
        body.contains("test 1 USN-7002-1 on t2: failed (validate: nginx did not start)"),
        "{body}"
    );
    assert!(
        body.contains("run 1 web-monthly: budget_tripped (wave 1 over budget)"),
        "{body}"
    );
    assert!(!body.contains("old failure"), "older than a day: {body}");
    assert!(
        body.contains("Compliance: 1 compliant, 1 non-compliant, 1 unknown"),
        "{body}"
    );
    assert!(body.contains("env prod: 1 / 1 / 0"), "{body}");
    assert_eq!(payload["data"]["pending_approvals"][0]["score"], 91);

    // Already sent for today's slot: not due again.
    assert_eq!(
        n.maybe_send_digest(chrono::Utc::now())
            .await
            .expect("check"),
        None
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    worker.await.expect("worker");
    let digests = store
        .read_blocking(|c| {
            db::list(
                c,
                &db::ListFilter {
                    event: Some(EventKind::DailyDigest.as_str().into()),
                    ..db::ListFilter::default()
                },
            )
        })
        .expect("list");
    assert_eq!(digests.len(), 1);
    assert_eq!(rx.requests().len(), 1);
}
