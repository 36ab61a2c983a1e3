//! `spm notify test|list|read` run as the real binary against a real database and a real
//! webhook receiver.

mod support;

use serde_json::json;
use spm::engine::notify::{Event, EventKind, Notifier, NotifyConfig};
use spm::store::Store;
use spm::store::notifications as db;
use support::{Receiver, shipped_templates};

fn spm() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_spm"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_read_and_test_commands() {
    let dir = tempfile::tempdir().expect("tmp");
    let db_path = dir.path().join("spm.db");
    let tpl = shipped_templates();
    {
        let store = Store::open(&db_path).expect("store");
        let n = Notifier::new(
            store,
            NotifyConfig {
                templates_dir: tpl.path().to_path_buf(),
                ..NotifyConfig::default()
            },
        )
        .expect("notifier");
        for sys in ["web1", "web2"] {
            n.raise(
                Event::new(EventKind::TestFailed, json!({"system": sys, "reason": "r"}))
                    .advisory("DSA-1"),
            )
            .await
            .expect("raised");
        }
    }
    let db = db_path.to_str().expect("utf-8 path");

    let out = spm()
        .args(["notify", "list", "--unread", "--json", "--database", db])
        .output()
        .await
        .expect("run spm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    assert_eq!(rows[0]["subject"], "[spm] Test FAILED: DSA-1 on web2");
    let id = rows[0]["id"].as_i64().expect("id");

    let out = spm()
        .args(["notify", "read", &id.to_string(), "--database", db])
        .output()
        .await
        .expect("run spm");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Reason   : r"));
    let out = spm()
        .args(["notify", "list", "--unread", "--json", "--database", db])
        .output()
        .await
        .expect("run spm");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "one left unread");

    // A missing notification is an error (exit 2) naming it.
    let out = spm()
        .args(["notify", "read", "999", "--database", db])
        .output()
        .await
        .expect("run spm");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notification 999 not found"));

    // `notify test` with one working and one failing webhook: per-channel report, exit 1.
    let ok = Receiver::start(0).await;
    let bad = Receiver::start(usize::MAX).await;
    let cfg = dir.path().join("spm.toml");
    std::fs::write(
        &cfg,
        format!(
            "[scripts]\nscripts_dir = {:?}\n\
             [[notify.webhooks]]\nname = \"good\"\nurl = \"{}\"\nhmac_secret = \"k\"\n\
             [[notify.webhooks]]\nname = \"bad\"\nurl = \"{}\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"),
            ok.url(),
            bad.url()
        ),
    )
    .expect("write config");
    let out = spm()
        .args([
            "--config",
            cfg.to_str().expect("path"),
            "notify",
            "test",
            "--json",
            "--database",
            db,
        ])
        .output()
        .await
        .expect("run spm");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let by_name = |n: &str| {
        reports
            .as_array()
            .and_then(|a| a.iter().find(|r| r["target"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no report for {n}: {reports}"))
    };
    assert_eq!(by_name("good")["ok"], true);
    assert_eq!(by_name("bad")["ok"], false);
    assert!(
        by_name("bad")["error"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 500")
    );
    assert_eq!(ok.requests().len(), 1);
    assert_eq!(bad.requests().len(), 1, "a test message is not retried");

    // Bad configuration: clear error naming the key, exit 2, nothing sent.
    std::fs::write(&cfg, "[notify.routes.nope]\n").expect("write config");
    let out = spm()
        .args([
            "--config",
            cfg.to_str().expect("path"),
            "notify",
            "test",
            "--database",
            db,
        ])
        .output()
        .await
        .expect("run spm");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notify.routes.nope"));
}

/// A failed `spm sync` (UYUNI unreachable) raises `sync_failed` and delivers it to the
/// configured webhook at once, without a running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cli_sync_raises_and_delivers_sync_failed() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("spm.db");
    let hook = Receiver::start(0).await;
    let cfg = dir.path().join("spm.toml");
    std::fs::write(
        &cfg,
        format!(
            "[scripts]\nscripts_dir = {:?}\n\
             [uyuni]\nurl = \"http://127.0.0.1:{}/rpc/api\"\nuser = \"spm\"\npassword = \"pw\"\n\
             retries = 0\n\
             [[notify.webhooks]]\nname = \"ops\"\nurl = \"{}\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"),
            support::free_port(),
            hook.url()
        ),
    )
    .expect("write config");
    let out = spm()
        .args(["--config", cfg.to_str().expect("path"), "sync"])
        .args(["--database", db.to_str().expect("path")])
        .env("SPM_LOG", "warn")
        .current_dir(dir.path())
        .output()
        .await
        .expect("run spm sync");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&db).expect("store");
    let events: Vec<String> = store
        .read_blocking(|c| db::list(c, &db::ListFilter::default()))
        .expect("notifications")
        .into_iter()
        .map(|n| n.event)
        .collect();
    assert_eq!(events, vec!["sync_failed".to_string()]);
    let got = hook.requests();
    assert_eq!(got.len(), 1, "one webhook delivery");
    let body = String::from_utf8_lossy(&got[0].body);
    assert!(body.contains("sync_failed"), "{body}");
}
