//! `spm serve --sim` through the real binary: the feature endpoints are wired to the
//! services the process starts (errata sync against the embedded simulator, the Success
//! Score, the Lua script host, the notifier, the test engine).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sim_wires_sync_scripts_notifications_and_tests_into_the_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for d in ["phases", "scripts", "policies"] {
        copy_dir(&repo.join(d), &dir.path().join(d));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(["serve", "--sim", "--listen", "127.0.0.1:0"])
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
    let token = token.expect("first admin token printed");
    let base = base.expect("address printed");
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token)
    };

    for path in [
        "/api/v1/scripts",
        "/patch/policies",
        "/api/v1/notifications/config",
        "/api/v1/reports/summary",
        "/api/v1/tests",
        "/api/v1/sync/runs",
    ] {
        let resp = call(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "{path}: {body}");
    }
    let resp = call(reqwest::Method::GET, "/api/v1/scripts")
        .send()
        .await
        .expect("scripts");
    let scripts: Value = resp.json().await.expect("json");
    assert!(
        scripts["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["path"] == "phases/patch.lua")),
        "{scripts}"
    );

    // A sync on demand: 202, or 409 when the periodic sync started at boot still runs.
    let id = loop {
        let resp = call(reqwest::Method::POST, "/api/v1/sync")
            .send()
            .await
            .expect("sync");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        match status.as_u16() {
            202 => break body["id"].as_i64().expect("run id"),
            409 => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("POST /api/v1/sync: {other} {body}"),
        }
    };
    let mut finished = None;
    for _ in 0..600 {
        let resp = call(reqwest::Method::GET, &format!("/api/v1/sync/runs/{id}"))
            .send()
            .await
            .expect("run");
        let run: Value = resp.json().await.expect("json");
        if run["status"] != "running" {
            finished = Some(run);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = finished.expect("the sync finished");
    assert_eq!(run["status"], "ok", "{run}");

    // The scorer is wired: the risk of a synced advisory is explained.
    let resp = call(reqwest::Method::GET, "/api/v1/errata?limit=1")
        .send()
        .await
        .expect("errata");
    let errata: Value = resp.json().await.expect("json");
    let adv = errata["items"][0]["erratum"]["advisory"]
        .as_str()
        .expect("an advisory")
        .to_owned();
    let resp = call(reqwest::Method::GET, &format!("/api/v1/risk/{adv}"))
        .send()
        .await
        .expect("risk");
    assert_eq!(resp.status(), 200);
    let risk: Value = resp.json().await.expect("json");
    assert!(risk["scores"][0]["score"].is_i64(), "{risk}");

    // The notifier is wired: with no channel configured the test sends nothing.
    let resp = call(reqwest::Method::POST, "/api/v1/notifications/test")
        .send()
        .await
        .expect("notify");
    assert_eq!(resp.status(), 200);
    let sent: Value = resp.json().await.expect("json");
    assert_eq!(sent["sent"], false, "{sent}");

    // The test engine is wired: an unknown item is a 404, not 503 not_configured.
    let resp = call(reqwest::Method::POST, "/api/v1/tests/run")
        .header("content-type", "application/json")
        .body(r#"{"queue_id": 999999}"#)
        .send()
        .await
        .expect("tests/run");
    assert_eq!(resp.status(), 404);

    child.start_kill().expect("stop spm serve");
    let _ = child.wait().await;
}
