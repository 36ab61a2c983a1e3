//! Notifications end to end through the real binary: `spm serve --sim` (embedded simulator
//! with `tests/fixtures/fleet-notify.toml`, the sync, the auto-queue, the test engine, the
//! Lua host with hot reload, the notification worker) configured to mail a real SMTP server
//! (Debian `python3-aiosmtpd`, `tests/support/smtp_sink.py`) and to post to a local webhook
//! receiver that fails its first request.
//!
//! - A patch whose apply fails is tested, fails at the patch phase and is rolled back: the
//!   `test_failed` and `rollback_performed` mails arrive rendered by the shipped templates,
//!   and the webhook gets both payloads signed, the failed attempt retried with the same
//!   idempotency key.
//! - A broken Lua edit raises one `script_reload_error`, however often the same broken file
//!   is reloaded; a different error in it is a second one.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use spm::services::notify::webhook::sign;
use support::{Receiver, SinkOptions, SmtpSink, header, wait_for};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ADVISORY: &str = "USN-9901-1";
const SYSTEM: &str = "test-ubuntu-01";
const HMAC_KEY: &str = "whsec-e2e";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let p = e.expect("entry").path();
        let Some(name) = p.file_name() else { continue };
        let t = to.join(name);
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

/// A `spm serve --sim` child process in its own working directory; killed on drop.
struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Serve {
    /// Copy the shipped phases, scripts and policies, write `spm.toml` routing to `sink` and
    /// `hook`, start the service and wait until it serves.
    async fn start(sink: &SmtpSink, hook: &Receiver) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for d in ["phases", "scripts", "policies"] {
            copy_dir(&repo.join(d), &dir.path().join(d));
        }
        let key_file = dir.path().join("hmac.key");
        std::fs::write(&key_file, HMAC_KEY).expect("write the HMAC key");
        let config = format!(
            r#"[scripts]
debounce_ms = 50

[sync]
interval_secs = 3600

[test]
poll_interval_ms = 200
script_timeout_secs = 15
pickup_timeout_secs = 10
apply_timeout_secs = 30
reboot_timeout_secs = 30
deadline_secs = 300

[test.critical_services]
ubuntu = ["ssh", "cron"]

[notify]
digest_enabled = false
email_min_severity = "info"
webhook_min_severity = "info"

[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "spm@e2e.test"
timeout_secs = 10

[notify.recipients]
default = ["ops@e2e.test"]
test_failed = ["ops@e2e.test", "security@e2e.test"]

[notify.retry]
max_attempts = 5
base_delay_secs = 1

[[notify.webhooks]]
name = "receiver"
url = "{url}"
hmac_secret_file = "{key}"
timeout_secs = 5
"#,
            port = sink.port,
            url = hook.url(),
            key = key_file.display(),
        );
        std::fs::write(dir.path().join("spm.toml"), config).expect("write spm.toml");
        let fleet: PathBuf = repo.join("tests/fixtures/fleet-notify.toml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_spm"))
            .arg("serve")
            .arg("--sim")
            .arg("--sim-fleet")
            .arg(&fleet)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("SPM_DATABASE", dir.path().join("spm.db"))
            .env("SPM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn spm serve --sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut token, mut base) = (None, None);
        let read = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(t) = line
                    .split(": ")
                    .nth(1)
                    .filter(|_| line.starts_with("first admin token"))
                {
                    token = Some(t.trim().to_owned());
                }
                if let Some(rest) = line.strip_prefix("spm is serving on ") {
                    base = rest.split_whitespace().next().map(str::to_owned);
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(120), read)
            .await
            .expect("spm serve --sim prints its address");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            dir,
            base: base.expect("address printed"),
            token: token.expect("first admin token printed"),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.expect("json")
    }

    /// The notifications of one event type, oldest first.
    async fn notifications(&self, event: &str) -> Vec<Value> {
        let list = self
            .get(&format!("/api/v1/notifications?event={event}&limit=100"))
            .await;
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|n| n["id"].as_i64());
        items
    }

    async fn stop(mut self) {
        self.child.start_kill().expect("stop spm serve");
        let _ = self.child.wait().await;
    }
}

/// Poll `f` (async) every 200 ms until it returns `Some`, or panic after `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The received mail whose decoded subject starts with `prefix`.
fn mail(sink: &SmtpSink, prefix: &str) -> Option<(Value, String)> {
    sink.messages()
        .into_iter()
        .find(|(m, _)| m["subject"].as_str().is_some_and(|s| s.starts_with(prefix)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_test_mails_and_posts_test_failed_and_rollback_performed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sink = SmtpSink::start(SinkOptions::default());
    let hook = Receiver::start(1).await;
    let serve = Serve::start(&sink, &hook).await;

    // The sync at start queues the security erratum; the test fails at the patch phase and
    // the package strategy rolls it back.
    let failed = wait_for(300, "the test_failed mail", || {
        mail(&sink, &format!("[spm] Test FAILED: {ADVISORY} on {SYSTEM}"))
    })
    .await;
    let rolled = wait_for(60, "the rollback_performed mail", || {
        mail(
            &sink,
            &format!("[spm] Rollback on {SYSTEM} after {ADVISORY}"),
        )
    })
    .await;

    // test_failed: both recipients of the event, the template's text and HTML parts.
    let (meta, raw) = &failed;
    let mut rcpt: Vec<&str> = meta["rcpt_tos"]
        .as_array()
        .expect("rcpt_tos")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    rcpt.sort_unstable();
    assert_eq!(rcpt, ["ops@e2e.test", "security@e2e.test"], "{meta}");
    assert_eq!(meta["from"], "spm@e2e.test", "{meta}");
    let message_id = header(raw, "Message-ID").expect("Message-ID header");
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@spm>"),
        "{message_id}"
    );
    let text = meta["plain"].as_str().expect("text part");
    assert!(
        text.contains(&format!("The automatic test of {ADVISORY} FAILED.")),
        "{text}"
    );
    assert!(text.contains(&format!("System   : {SYSTEM}")), "{text}");
    assert!(text.contains("Phase    : patch"), "{text}");
    let html = meta["html"].as_str().expect("HTML part");
    assert!(html.contains(&format!("<b>{ADVISORY}</b>")), "{html}");

    // rollback_performed: the default recipients, strategy, verified outcome, ids.
    let (meta, raw) = &rolled;
    assert_eq!(
        meta["rcpt_tos"],
        serde_json::json!(["ops@e2e.test"]),
        "{meta}"
    );
    assert!(
        meta["subject"]
            .as_str()
            .is_some_and(|s| s.ends_with(": verified")),
        "{meta}"
    );
    assert!(header(raw, "Message-ID").is_some());
    let text = meta["plain"].as_str().expect("text part");
    assert!(
        text.contains(&format!("A rollback was performed on {SYSTEM}.")),
        "{text}"
    );
    assert!(text.contains("Strategy : package"), "{text}");
    assert!(text.contains("Status   : verified"), "{text}");
    assert!(text.contains("Reason   : patch failed"), "{text}");
    assert!(text.contains(&format!("Advisory : {ADVISORY}")), "{text}");

    // The rows carry the ids the mails name.
    let rows = serve.notifications("rollback_performed").await;
    let row = rows.first().expect("a rollback_performed row");
    let test_id = row["test_id"].as_i64().expect("test id");
    assert!(row["queue_id"].as_i64().is_some(), "{row}");
    assert_eq!(row["data"]["strategy"], "package", "{row}");
    assert_eq!(row["data"]["status"], "verified", "{row}");
    assert!(
        text.contains(&format!("Test ID  : {test_id}")),
        "{text} / {row}"
    );
    let failed_rows = serve.notifications("test_failed").await;
    assert_eq!(failed_rows[0]["test_id"].as_i64(), Some(test_id));
    assert_eq!(failed_rows[0]["data"]["phase"], "patch");

    // The webhook got both events, signed; the first request failed (500) and was retried
    // with the same idempotency key.
    let delivered = |event: &'static str| {
        let hook = hook.clone();
        move || {
            hook.requests().into_iter().find(|r| {
                r.status == 200
                    && serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v["event"] == event)
            })
        }
    };
    for event in ["test_failed", "rollback_performed"] {
        let r = wait_for(60, event, delivered(event)).await;
        let h = |n: &str| {
            r.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            h("x-spm-signature"),
            sign(HMAC_KEY.as_bytes(), &r.body),
            "{event}: signature"
        );
        assert!(!h("idempotency-key").is_empty(), "{event}: idempotency key");
        let v: Value = serde_json::from_slice(&r.body).expect("payload");
        assert_eq!(v["advisory"], ADVISORY, "{v}");
        assert_eq!(v["test_id"].as_i64(), Some(test_id), "{v}");
        assert_eq!(v["data"]["system"], SYSTEM, "{v}");
    }
    let all = hook.requests();
    let first = all.first().expect("a first request");
    assert_eq!(first.status, 500, "the receiver fails its first request");
    let key = first
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .expect("idempotency key");
    let retried = wait_for(30, "the failed delivery retried", || {
        hook.requests().into_iter().skip(1).find(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                == Some(key)
        })
    })
    .await;
    assert_eq!(retried.status, 200);
    assert_eq!(
        retried
            .headers
            .get("x-spm-signature")
            .and_then(|v| v.to_str().ok()),
        Some(sign(HMAC_KEY.as_bytes(), &retried.body).as_str())
    );
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_script_edit_notifies_once_per_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sink = SmtpSink::start(SinkOptions::default());
    let hook = Receiver::start(0).await;
    let serve = Serve::start(&sink, &hook).await;
    let rel = "scripts/lib/e2e_broken.lua";
    let path = serve.dir.path().join(rel);

    // Each write is followed by waiting for the host to finish reloading it.
    let reload = |content: String| {
        let (serve, path) = (&serve, path.clone());
        async move {
            let before = serve.get("/api/v1/scripts").await["last_reload_at"].clone();
            let tmp = path.with_extension("tmp~");
            std::fs::write(&tmp, content).expect("write the script");
            std::fs::rename(&tmp, &path).expect("rename the script");
            eventually(30, "the host to reload", || async {
                let s = serve.get("/api/v1/scripts").await;
                (s["last_reload_at"] != before && !s["last_reload_at"].is_null()).then_some(s)
            })
            .await
        }
    };
    let broken = |line: usize, tail: &str| {
        format!(
            "---@spm api=1 kind=lib\nlocal M = {{}}\n{}local x = = 1\nreturn M\n{tail}",
            "\n".repeat(line)
        )
    };

    let s = reload(broken(0, "")).await;
    assert!(
        s["last_error_per_file"].get(rel).is_some(),
        "the host reports the broken file: {s}"
    );
    let first = eventually(30, "the script_reload_error notification", || async {
        serve
            .notifications("script_reload_error")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(first["data"]["path"], rel, "{first}");
    assert!(
        first["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("{rel}:3:"))),
        "{first}"
    );
    // The same broken file reloaded again (a rewrite, then a comment added after the
    // error): no new notification.
    reload(broken(0, "")).await;
    reload(broken(0, "-- still broken\n")).await;
    // A different error in the file is news; once it is recorded every earlier reload
    // was handled, so the count below is final.
    reload(broken(2, "")).await;
    let rows = eventually(30, "the second script_reload_error", || async {
        let rows = serve.notifications("script_reload_error").await;
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    assert_eq!(
        rows.len(),
        2,
        "one notification per distinct error: {rows:?}"
    );
    assert!(
        rows[1]["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("{rel}:5:"))),
        "{}",
        rows[1]
    );
    let mails = wait_for(30, "two reload-error mails", || {
        let m: Vec<(Value, String)> = sink
            .messages()
            .into_iter()
            .filter(|(m, _)| m["subject"] == format!("[spm] Reload error in {rel}").as_str())
            .collect();
        (m.len() >= 2).then_some(m)
    })
    .await;
    assert_eq!(mails.len(), 2);
    assert!(
        mails[0].0["plain"]
            .as_str()
            .is_some_and(|b| b.contains("the last good version stays active")),
        "{}",
        mails[0].0
    );
    serve.stop().await;
}
