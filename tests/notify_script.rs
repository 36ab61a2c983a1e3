//! `spm.notify.send{…}` from a real Lua phase (the spm host on a real VM), delivered to a
//! real webhook receiver.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use spm::engine::notify::{Notifier, NotifyConfig};
use spm::host::contracts::Contracts;
use spm::host::limits::Limits;
use spm::host::runner::run_phase;
use spm::host::scriptset::ScriptSet;
use spm::host::services::Services;
use spm::services::notify::WebhookConfig;
use spm::store::Store;
use spm::store::notifications as db;
use support::{Receiver, shipped_templates, wait_for};
use tokio_util::sync::CancellationToken;

const PHASE: &str = r#"---@spm api=1 kind=phase
return {
  name = "patch",
  run = function(ctx)
    local r = spm.notify.send{ subject = "disk almost full on " .. ctx.system,
                               body = "93% used", severity = "warning",
                               advisory = "DSA-9-1", data = { used = 0.93 } }
    local _, bad_sev = spm.try(spm.notify.send, { subject = "x", severity = "loud" })
    local _, no_subject = spm.try(spm.notify.send, { body = "no subject" })
    local quiet = spm.notify.send{ subject = "dashboard only", channel = "dashboard" }
    return { id = r.id, deliveries = r.deliveries, quiet = quiet.deliveries,
             bad_kind = bad_sev.kind, bad = bad_sev.message, no_subject = no_subject.kind }
  end,
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_sends_a_notification() {
    let rx = Receiver::start(0).await;
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let notifier = Notifier::new(
        store.clone(),
        NotifyConfig {
            templates_dir: tpl.path().to_path_buf(),
            webhooks: vec![WebhookConfig {
                name: "ops".into(),
                url: rx.url(),
                auth_header: None,
                hmac_secret: None,
                events: vec!["custom".into()],
                timeout: Duration::from_secs(5),
                ca_file: None,
            }],
            poll_interval: Duration::from_millis(100),
            ..NotifyConfig::default()
        },
    )
    .expect("notifier");
    let stop = CancellationToken::new();
    let worker = notifier.spawn_worker(stop.clone());

    let root = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(root.path().join("phases")).expect("mkdir");
    std::fs::write(root.path().join("phases/patch.lua"), PHASE).expect("write");
    let report = ScriptSet::load_dir(root.path(), &Contracts::default(), 1)
        .await
        .expect("load");
    let errors: Vec<String> = report.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let services = Services {
        notify: Some(Arc::new(notifier.clone())),
        ..Services::default()
    };
    let out = run_phase(
        Arc::new(report.set),
        &services,
        "debian",
        "patch",
        json!({"system": "web1"}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    let v = out.result.expect("phase result");
    assert_eq!(v["deliveries"], 1, "{v}");
    assert_eq!(v["quiet"], 0, "{v}");
    assert_eq!(v["bad_kind"], "script", "{v}");
    assert!(v["bad"].as_str().unwrap_or("").contains("loud"), "{v}");
    assert_eq!(v["no_subject"], "script", "{v}");

    let id = v["id"].as_i64().expect("id");
    let row = store.read_blocking(|c| db::get(c, id)).expect("row");
    assert_eq!(row.event, "custom");
    assert_eq!(row.severity, "warning");
    assert_eq!(row.subject, "disk almost full on web1");
    assert_eq!(row.advisory.as_deref(), Some("DSA-9-1"));

    let req = wait_for(20, "the webhook", || rx.requests().into_iter().next()).await;
    let payload: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(payload["subject"], "disk almost full on web1");
    assert_eq!(payload["body"].as_str().map(str::trim), Some("93% used"));
    assert_eq!(payload["data"]["data"]["used"], 0.93);
    stop.cancel();
    worker.await.expect("worker");
    assert_eq!(
        rx.requests().len(),
        1,
        "the dashboard-only message is not delivered"
    );
}
