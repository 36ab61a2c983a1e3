//! The feature endpoints of the HTTP API against a real server on loopback: sync through
//! the UYUNI simulator, queue mutations and errata on what that sync stored, policies
//! validated in a real Lua VM and written to a real directory, notification tests sent to
//! a real webhook receiver, and the report summary. Rejected requests leave the database
//! (and the policy directory) unchanged.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spm::engine::notify::{Notifier, NotifyConfig};
use spm::engine::queue::AutoQueueRule;
use spm::engine::score::{ScoreConfig, Scorer};
use spm::engine::state::queue::QueueStatus;
use spm::engine::sync::SyncConfig;
use spm::engine::sync::uyuni_source::UyuniSource;
use spm::host::contracts::Contracts;
use spm::host::reload::ScriptHost;
use spm::server::auth::{Role, create_token};
use spm::server::endpoints::sync::SyncRunner;
use spm::server::health::Probes;
use spm::server::service::Service;
use spm::server::{AppState, Features, ServerConfig};
use spm::services::notify::{Secret as NotifySecret, WebhookConfig};
use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::{SimHandle, SimOptions, SimServer};
use spm::store::queue::{QueueFilter, TransitionExtra};
use spm::store::{Store, audit, fixtures, queue, sync_runs};
use support::{Receiver, shipped_templates, wait_for};

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    service: Option<Service>,
    base: String,
    client: reqwest::Client,
    admin: String,
    viewer: String,
    operator: String,
    approver: String,
}

async fn start(features: Features, seed_items: usize) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    start_with(dir, store, features, seed_items).await
}

async fn start_with(
    dir: tempfile::TempDir,
    store: Store,
    features: Features,
    seed_items: usize,
) -> Harness {
    let toks = store
        .write_blocking(|tx| {
            fixtures::seed_queue(tx, seed_items)?;
            let mut out = Vec::new();
            for (name, role) in [
                ("root", Role::Admin),
                ("alice-viewer", Role::Viewer),
                ("oscar-operator", Role::Operator),
                ("april-approver", Role::Approver),
            ] {
                out.push(create_token(tx, name, role)?.token);
            }
            Ok(out)
        })
        .expect("seed");
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    };
    let state = AppState::new(store.clone(), config, false);
    state.update_features(|f| *f = features.clone());
    let service = Service::start_with_state(state, Probes::default())
        .await
        .expect("start server");
    let base = format!("http://{}", service.addr());
    Harness {
        _dir: dir,
        store,
        service: Some(service),
        base,
        client: reqwest::Client::new(),
        admin: toks[0].clone(),
        viewer: toks[1].clone(),
        operator: toks[2].clone(),
        approver: toks[3].clone(),
    }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    /// Everything a rejected request could change: audit rows, queue, sync runs.
    fn fingerprint(
        &self,
    ) -> (
        Vec<audit::AuditRecord>,
        queue::QueuePage,
        Vec<sync_runs::SyncRun>,
    ) {
        self.store
            .read_blocking(|c| {
                Ok((
                    audit::list(
                        c,
                        &audit::AuditFilter {
                            limit: 1000,
                            ..Default::default()
                        },
                    )?,
                    queue::list(
                        c,
                        &QueueFilter {
                            limit: 1000,
                            ..Default::default()
                        },
                    )?,
                    sync_runs::recent(c, 100)?,
                ))
            })
            .expect("fingerprint")
    }

    async fn stop(mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown.cancel();
            let _ = s.run_until(async {}, Duration::from_secs(5)).await;
        }
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
}

fn scorer() -> Arc<Scorer> {
    Arc::new(Scorer::new(ScoreConfig::default()).expect("scorer"))
}

async fn sim() -> SimHandle {
    SimServer::start(SimOptions {
        frozen_clock: true,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

fn runner(sim: &SimHandle) -> Arc<SyncRunner> {
    let cfg = UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        retries: 0,
        timeout_ms: 10_000,
        ..UyuniConfig::default()
    };
    let client = Arc::new(UyuniClient::new(&cfg).expect("client"));
    Arc::new(SyncRunner::new(
        Arc::new(UyuniSource::new(client)),
        scorer(),
        SyncConfig::default(),
        AutoQueueRule::default(),
    ))
}

/// Poll a sync run until it is no longer running.
async fn finished_run(h: &Harness, id: i64) -> Value {
    let store = h.store.clone();
    wait_for(120, &format!("sync run {id} to finish"), || {
        let run = store.read_blocking(|c| sync_runs::get(c, id)).ok()?;
        (run.status != sync_runs::SyncStatus::Running).then_some(())
    })
    .await;
    let (s, run) = h.get(&format!("/api/v1/sync/runs/{id}"), &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{run}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_starts_in_the_background_and_refuses_a_second_one() {
    let sim = sim().await;
    let h = start(
        Features {
            sync: Some(runner(&sim)),
            scorer: Some(scorer()),
            ..Features::default()
        },
        0,
    )
    .await;

    // Viewers may read runs but not start one.
    let before = h.fingerprint();
    let (s, b) = h.call(Method::POST, "/api/v1/sync", &h.viewer, None).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(h.fingerprint(), before);

    let (s, run) = h
        .call(Method::POST, "/api/v1/sync", &h.operator, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_i64().expect("run id");
    assert_eq!(run["scope"], json!("test"));
    let run = finished_run(&h, id).await;
    assert_eq!(run["status"], json!("ok"), "{run}");
    assert!(
        run["summary"]["errata_total"].as_u64().unwrap_or(0) > 0,
        "{run}"
    );
    assert!(
        run["summary"]["calls_total"].as_u64().unwrap_or(0) > 0,
        "{run}"
    );

    // The start is audited under the token name.
    let rows = h
        .store
        .read_blocking(|c| {
            audit::list(
                c,
                &audit::AuditFilter {
                    object_type: Some("sync_run".into()),
                    limit: 10,
                    ..Default::default()
                },
            )
        })
        .expect("audit");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor, "oscar-operator");

    // A sync held by another process: 409, nothing new recorded.
    let held = h
        .store
        .write_blocking(|tx| sync_runs::start(tx, "test", "other", "2999-01-01T00:00:00.000Z"))
        .expect("hold the sync lock");
    let before = h.fingerprint();
    let (s, b) = h
        .call(Method::POST, "/api/v1/sync", &h.operator, None)
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("already running"),
        "{b}"
    );
    assert_eq!(h.fingerprint(), before);

    let (s, list) = h.get("/api/v1/sync/runs?limit=5", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let ids: Vec<i64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![held, id], "newest first");
    for bad in [
        "/api/v1/sync/runs?limit=0",
        "/api/v1/sync/runs?limit=x",
        "/api/v1/sync/runs?page=2",
    ] {
        let (s, b) = h.get(bad, &h.viewer).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    let (s, b) = h.get("/api/v1/sync/runs/999", &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = h.get("/api/v1/sync/runs/abc", &h.viewer).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_without_their_service_answer_not_configured() {
    let h = start(Features::default(), 2).await;
    let before = h.fingerprint();
    for (m, path, body) in [
        (Method::POST, "/api/v1/sync", None),
        (
            Method::POST,
            "/api/v1/queue",
            Some(r#"{"advisory":"SPM-BENCH-000000"}"#),
        ),
        (Method::GET, "/api/v1/risk/SPM-BENCH-000000", None),
        (Method::GET, "/api/v1/scripts", None),
        (Method::GET, "/patch/policies", None),
        (Method::POST, "/api/v1/notifications/test", None),
        (Method::GET, "/api/v1/notifications/config", None),
        (
            Method::POST,
            "/api/v1/tests/run",
            Some(r#"{"queue_id": 1}"#),
        ),
        (
            Method::POST,
            "/patch/runs",
            Some(r#"{"policy_id": "weekly"}"#),
        ),
    ] {
        let (s, b) = h.call(m.clone(), path, &h.admin, body).await;
        assert_error(s, &b, StatusCode::SERVICE_UNAVAILABLE, "not_configured");
    }
    assert_eq!(h.fingerprint(), before);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_errata_and_risk_on_synced_data() {
    let sim = sim().await;
    let h = start(
        Features {
            sync: Some(runner(&sim)),
            scorer: Some(scorer()),
            ..Features::default()
        },
        0,
    )
    .await;
    let (s, run) = h
        .call(Method::POST, "/api/v1/sync", &h.operator, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let run = finished_run(&h, run["id"].as_i64().expect("id")).await;
    assert_eq!(run["status"], json!("ok"), "{run}");

    // Errata: list, filters, paging.
    let (s, all) = h.get("/api/v1/errata?limit=500", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let total = all["total"].as_u64().expect("total");
    assert!(total > 0);
    let first = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["os"] != json!("unknown"))
        .expect("an advisory relevant to a queueable OS");
    let adv = first["erratum"]["advisory"]
        .as_str()
        .expect("advisory")
        .to_owned();
    let os = first["os"].as_str().expect("os").to_owned();
    let (_, sec) = h
        .get("/api/v1/errata?type=security&limit=500", &h.viewer)
        .await;
    for i in sec["items"].as_array().expect("items") {
        assert_eq!(i["erratum"]["advisory_type"], json!("security"));
    }
    let (_, page) = h.get("/api/v1/errata?limit=1&offset=1", &h.viewer).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0], all["items"][1]);
    let (_, by_os) = h
        .get(&format!("/api/v1/errata?os={os}&limit=500"), &h.viewer)
        .await;
    assert!(
        by_os["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["os"] == json!(os))
    );
    let (_, q) = h
        .get(
            &format!("/api/v1/errata?q={}", adv.to_lowercase()),
            &h.viewer,
        )
        .await;
    assert!(
        q["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["erratum"]["advisory"] == json!(adv))
    );
    for bad in [
        "/api/v1/errata?os=windows",
        "/api/v1/errata?severity=huge",
        "/api/v1/errata?type=x",
        "/api/v1/errata?stale=maybe",
        "/api/v1/errata?limit=501",
        "/api/v1/errata?color=red",
    ] {
        let (s, b) = h.get(bad, &h.viewer).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }

    // One advisory; its risk breakdown.
    let (s, one) = h.get(&format!("/api/v1/errata/{adv}"), &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["erratum"]["advisory"], json!(adv));
    assert!(
        one["relevance"]
            .as_array()
            .expect("relevance")
            .iter()
            .any(|r| r["os"] == json!(os))
    );
    let (s, b) = h.get("/api/v1/errata/NOPE-1", &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, risk) = h
        .get(&format!("/api/v1/risk/{adv}?os={os}"), &h.viewer)
        .await;
    assert_eq!(s, StatusCode::OK, "{risk}");
    let score = &risk["scores"][0];
    assert_eq!(score["os"], json!(os));
    let value = score["score"].as_i64().expect("score");
    assert!((0..=100).contains(&value), "{risk}");
    assert!(
        score["terms"].is_array() || score["factors"].is_object(),
        "breakdown: {risk}"
    );
    let (s, b) = h
        .get(&format!("/api/v1/risk/{adv}?os=plan9"), &h.viewer)
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = h.get("/api/v1/risk/NOPE-1", &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");

    // Queue: bad input and wrong roles change nothing.
    let queue_os = os.clone();
    let before = h.fingerprint();
    for (token, body, status, code) in [
        (
            &h.viewer,
            json!({"advisory": adv, "os": queue_os}).to_string(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.operator,
            json!({"advisory": adv, "os": queue_os, "colour": 1}).to_string(),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            &h.operator,
            json!({"advisory": adv, "priority": "high"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            json!({"os": queue_os}).to_string(),
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
        (
            &h.operator,
            json!({"advisory": adv, "os": "windows"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            json!({"advisories": [adv, "NOPE-1"], "os": queue_os}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            &h.operator,
            "{not json".to_owned(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
    ] {
        let (s, b) = h
            .call(Method::POST, "/api/v1/queue", token, Some(&body))
            .await;
        assert_error(s, &b, status, code);
    }
    assert_eq!(
        h.fingerprint(),
        before,
        "rejected queue additions changed the database"
    );

    let (s, added) = h
        .call(
            Method::POST,
            "/api/v1/queue",
            &h.operator,
            Some(
                &json!({"advisory": adv, "os": queue_os, "priority": 3, "notes": "from the API"})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    let item = &added["added"][0];
    let id = item["id"].as_i64().expect("item id");
    assert_eq!(item["queued_by"], json!("oscar-operator"));
    assert_eq!(item["priority"], json!(3));
    assert_eq!(
        item["score"].as_i64(),
        Some(value),
        "queued with the score /risk shows"
    );
    // Queued again: skipped, not duplicated.
    let (s, again) = h
        .call(
            Method::POST,
            "/api/v1/queue",
            &h.operator,
            Some(&json!({"advisory": adv, "os": queue_os}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["added"].as_array().map(Vec::len), Some(0), "{again}");
    assert_eq!(again["skipped"][0]["advisory"], json!(adv), "{again}");

    // Priority.
    let path = format!("/api/v1/queue/{id}");
    let before = h.fingerprint();
    for (token, body, status, code) in [
        (
            &h.viewer,
            r#"{"priority": 5}"#,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.operator,
            r#"{"priority": "5"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            r#"{"priority": 5, "status": "approved"}"#,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            &h.operator,
            r#"{"priority": 100000}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            r#"{}"#,
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
    ] {
        let (s, b) = h.call(Method::PATCH, &path, token, Some(body)).await;
        assert_error(s, &b, status, code);
    }
    let (s, b) = h
        .call(
            Method::PATCH,
            "/api/v1/queue/99999",
            &h.operator,
            Some(r#"{"priority": 5}"#),
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.fingerprint(), before);
    let (s, b) = h
        .call(
            Method::PATCH,
            &path,
            &h.operator,
            Some(r#"{"priority": -7}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["priority"], json!(-7));

    // Remove: only while queued.
    let (s, b) = h.call(Method::DELETE, &path, &h.viewer, None).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    h.store
        .write_blocking(|tx| {
            queue::transition(
                tx,
                id,
                QueueStatus::Queued,
                QueueStatus::Testing,
                &TransitionExtra::default(),
            )
            .map(|_| ())
        })
        .expect("start testing");
    let before = h.fingerprint();
    let (s, b) = h.call(Method::DELETE, &path, &h.operator, None).await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict");
    assert_eq!(h.fingerprint(), before);
    h.store
        .write_blocking(|tx| {
            queue::transition(
                tx,
                id,
                QueueStatus::Testing,
                QueueStatus::Queued,
                &TransitionExtra::default(),
            )
            .map(|_| ())
        })
        .expect("back to queued");
    let (s, b) = h
        .call(
            Method::DELETE,
            &format!("{path}?reason=duplicate"),
            &h.operator,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = h.get(&path, &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = h.call(Method::DELETE, &path, &h.operator, None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");

    // Every change is audited under the token name.
    let actions: Vec<(String, String)> = h
        .store
        .read_blocking(|c| {
            audit::list(
                c,
                &audit::AuditFilter {
                    object_type: Some("queue_item".into()),
                    limit: 100,
                    ..Default::default()
                },
            )
        })
        .expect("audit")
        .into_iter()
        .map(|r| (r.action, r.actor))
        .collect();
    for a in ["queue.add", "queue.priority", "queue.remove"] {
        assert!(
            actions.contains(&(a.to_owned(), "oscar-operator".to_owned())),
            "{a} missing from {actions:?}"
        );
    }
    h.stop().await;
}

const GOOD_POLICY: &str =
    "---@spm api=1 kind=policy\nreturn {\n  id = 'weekly',\n  waves = { { size = 1 } },\n}\n";

fn policy_dir_snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(root.join("policies"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_validated_in_lua_written_atomically_and_reloaded() {
    let scripts = tempfile::tempdir().expect("script root");
    let root = scripts.path();
    for d in ["phases", "policies", "scripts"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let host = ScriptHost::open(root, Contracts::default())
        .await
        .expect("empty root loads");
    let h = start(
        Features {
            scripts: Some(host.clone()),
            ..Features::default()
        },
        0,
    )
    .await;
    let (s, st) = h.get("/api/v1/scripts", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    let gen0 = st["generation"].as_u64().expect("generation");
    assert_eq!(st["files"], json!([]));

    // Rejected: wrong role, bad name, unknown field, Lua syntax error, contract error.
    let before = (h.fingerprint(), policy_dir_snapshot(root));
    let create = |name: &str, src: &str| json!({"name": name, "source": src}).to_string();
    let cases = [
        (
            &h.operator,
            create("weekly", GOOD_POLICY),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.admin,
            create("../evil", GOOD_POLICY),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.admin,
            json!({"name": "weekly", "source": GOOD_POLICY, "x": 1}).to_string(),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            &h.admin,
            json!({"name": "weekly", "source": 5}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.admin,
            create(
                "weekly",
                "---@spm api=1 kind=policy\nreturn {\n  id = 'x',\n  waves = {\n",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
        ),
        (
            &h.admin,
            create(
                "weekly",
                "---@spm api=1 kind=policy\nreturn {\n  name = 'no id',\n}\n",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
        ),
    ];
    for (token, body, status, code) in cases {
        let (s, b) = h
            .call(Method::POST, "/patch/policies", token, Some(&body))
            .await;
        assert_error(s, &b, status, code);
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            let d = &b["error"]["diagnostics"][0];
            assert_eq!(d["path"], json!("policies/weekly.lua"), "{b}");
            assert!(d["line"].as_u64().is_some(), "diagnostic has a line: {b}");
            assert!(
                b["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("policies/weekly.lua:"),
                "file:line in the message: {b}"
            );
        }
    }
    assert_eq!((h.fingerprint(), policy_dir_snapshot(root)), before);

    // Create.
    let (s, b) = h
        .call(
            Method::POST,
            "/patch/policies",
            &h.admin,
            Some(&create("weekly", GOOD_POLICY)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["reload"]["outcome"], json!("applied"), "{b}");
    assert_eq!(
        std::fs::read_to_string(root.join("policies/weekly.lua")).expect("written"),
        GOOD_POLICY
    );
    assert_eq!(
        policy_dir_snapshot(root).len(),
        1,
        "no temporary file left behind"
    );
    let (s, b) = h
        .call(
            Method::POST,
            "/patch/policies",
            &h.admin,
            Some(&create("weekly", GOOD_POLICY)),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict");

    let (_, st) = h.get("/api/v1/scripts", &h.viewer).await;
    assert!(st["generation"].as_u64().expect("generation") > gen0);
    assert_eq!(st["files"][0]["path"], json!("policies/weekly.lua"));
    assert_eq!(st["files"][0]["kind"], json!("policy"));
    assert_eq!(st["files"][0]["sha256"].as_str().map(str::len), Some(64));
    let (s, list) = h.get("/patch/policies", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["name"], json!("weekly"));
    assert_eq!(list["items"][0]["in_service"], json!(true));
    let (s, one) = h.get("/patch/policies/weekly", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["source"], json!(GOOD_POLICY));
    let (s, b) = h.get("/patch/policies/nope", &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");

    // Replace: invalid is refused and the old file stays; valid is written and reloaded.
    let before = policy_dir_snapshot(root);
    let (s, b) = h
        .call(
            Method::PUT,
            "/patch/policies/weekly",
            &h.admin,
            Some(&json!({"source": "---@spm api=1 kind=policy\nreturn {\n  id = 'weekly',\n  hooks = 3,\n}\n"}).to_string()),
        )
        .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_script");
    assert_eq!(policy_dir_snapshot(root), before);
    let v2 = GOOD_POLICY.replace("size = 1", "size = 2");
    let (s, b) = h
        .call(
            Method::PUT,
            "/patch/policies/weekly",
            &h.admin,
            Some(&json!({"source": v2}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        host.current()
            .get("policies/weekly.lua")
            .map(|f| f.content.to_string()),
        Some(v2)
    );
    let (s, b) = h
        .call(
            Method::PUT,
            "/patch/policies/other",
            &h.admin,
            Some(&json!({"source": GOOD_POLICY}).to_string()),
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");

    // Delete.
    let (s, b) = h
        .call(Method::DELETE, "/patch/policies/weekly", &h.operator, None)
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = h
        .call(Method::DELETE, "/patch/policies/weekly", &h.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!root.join("policies/weekly.lua").exists());
    assert!(host.current().get("policies/weekly.lua").is_none());

    let actions: Vec<String> = h
        .store
        .read_blocking(|c| {
            audit::list(
                c,
                &audit::AuditFilter {
                    object_type: Some("policy".into()),
                    limit: 10,
                    ..Default::default()
                },
            )
        })
        .expect("audit")
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["policy.delete", "policy.update", "policy.create"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_test_reaches_a_real_webhook_and_config_hides_secrets() {
    let rx = Receiver::start(0).await;
    let templates = shipped_templates();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    let url = format!("{}?token=sekrit-in-url", rx.url());
    let cfg = NotifyConfig {
        templates_dir: templates.path().to_path_buf(),
        webhooks: vec![WebhookConfig {
            name: "ops".into(),
            url,
            auth_header: Some(NotifySecret::new("Bearer tok-very-secret")),
            hmac_secret: Some(NotifySecret::new("whsec-very-secret")),
            events: Vec::new(),
            timeout: Duration::from_secs(5),
            ca_file: None,
        }],
        ..NotifyConfig::default()
    };
    let notifier = Arc::new(Notifier::new(store.clone(), cfg).expect("notifier"));
    let h = start_with(
        dir,
        store,
        Features {
            notifier: Some(notifier),
            ..Features::default()
        },
        0,
    )
    .await;

    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/notifications/test",
            &h.operator,
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    assert!(rx.requests().is_empty());

    let (s, b) = h
        .call(Method::POST, "/api/v1/notifications/test", &h.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["sent"], json!(true), "{b}");
    assert_eq!(b["all_ok"], json!(true), "{b}");
    assert_eq!(b["channels"][0]["channel"], json!("webhook"), "{b}");
    let got = rx.requests();
    assert_eq!(got.len(), 1, "one test message reached the receiver");
    assert_eq!(
        got[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer tok-very-secret")
    );

    let (s, c) = h.get("/api/v1/notifications/config", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let text = c.to_string();
    for secret in [
        "tok-very-secret",
        "whsec-very-secret",
        "sekrit-in-url",
        "/hook",
    ] {
        assert!(!text.contains(secret), "config view leaks {secret}: {text}");
    }
    assert_eq!(c["webhooks"][0]["name"], json!("ops"));
    assert_eq!(c["webhooks"][0]["auth_header_set"], json!(true));
    assert_eq!(
        c["webhooks"][0]["url"],
        json!(format!("http://{}/…", rx.addr))
    );
    assert_eq!(c["email_enabled"], json!(false));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_summary_counts_what_the_database_holds() {
    let h = start(Features::default(), 9).await;
    // A test today and a sync run.
    h.store
        .write_blocking(|tx| {
            tx.execute(
                "INSERT INTO tests (queue_id, advisory, status) SELECT id, advisory, 'passed' FROM queue_items LIMIT 2",
                [],
            )?;
            tx.execute(
                "INSERT INTO tests (queue_id, advisory, status, started_at)
                 SELECT id, advisory, 'failed', '2000-01-01T00:00:00.000Z' FROM queue_items LIMIT 1",
                [],
            )?;
            let id = sync_runs::start(tx, "test", "t", "2999-01-01T00:00:00.000Z")?;
            sync_runs::finish(tx, id, sync_runs::SyncStatus::Ok, &Default::default(), None)?;
            Ok(())
        })
        .expect("seed tests and a sync");
    let (s, r) = h.get("/api/v1/reports/summary", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let counts = h
        .store
        .read_blocking(queue::counts_by_status)
        .expect("counts");
    for (status, n) in &counts {
        assert_eq!(r["queue"][status.to_string()], json!(n), "{status}: {r}");
    }
    assert_eq!(r["queue_total"], json!(9));
    assert_eq!(r["queue"]["approved"], json!(0));
    // seed_queue: every 4th item (index 2, 6) is pending_approval.
    assert_eq!(r["pending_approvals"]["count"], json!(2), "{r}");
    assert!(
        r["pending_approvals"]["oldest_hours"].as_f64().is_some(),
        "{r}"
    );
    assert_eq!(
        r["tests_24h"]["total"],
        json!(2),
        "old test not counted: {r}"
    );
    assert_eq!(r["tests_24h"]["by_status"]["passed"], json!(2));
    assert_eq!(r["last_sync"]["status"], json!("ok"));
    let (s, b) = h.get("/api/v1/reports/summary", &h.operator).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    h.stop().await;
}

/// The shipped Lua phases in a scratch script root.
fn shipped_scripts() -> tempfile::TempDir {
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
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().expect("script root");
    copy_dir(&repo.join("phases"), &root.path().join("phases"));
    copy_dir(&repo.join("scripts"), &root.path().join("scripts"));
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_start_over_http_run_the_shipped_phases_and_show_evidence() {
    let sim = SimServer::start(SimOptions {
        fleet: spm::sim::FleetSource::File(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleet-engine.toml"),
        ),
        timings: spm::sim::clock::Timings::instant(),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts with the engine fleet");
    let client = Arc::new(
        UyuniClient::new(&UyuniConfig {
            url: sim.url(),
            user: "admin".into(),
            password: Secret::new("admin"),
            poll_initial_ms: 20,
            poll_max_ms: 200,
            ..UyuniConfig::default()
        })
        .expect("client"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    let scripts = shipped_scripts();
    let host = ScriptHost::open(scripts.path(), Contracts::default())
        .await
        .expect("shipped scripts load");
    let mut cfg = spm::config::TestConfig {
        systems: vec!["test-ubuntu-02".into()],
        ..Default::default()
    };
    cfg.critical_services
        .insert("ubuntu".into(), vec!["ssh".into(), "cron".into()]);
    cfg.validation.window_secs = 3;
    cfg.validation.stabilize_secs = 4;
    cfg.script_timeout_secs = 5;
    cfg.pickup_timeout_secs = 2;
    cfg.service_retry_delay_secs = 0;
    cfg.deadline_secs = 120;
    cfg.lease_secs = 30;
    cfg.poll_interval_ms = 50;
    let engine = spm::engine::testing::TestEngine::new(
        store.clone(),
        host.clone(),
        client.clone(),
        None,
        cfg,
    );
    let runner = Arc::new(SyncRunner::new(
        Arc::new(UyuniSource::new(client)),
        scorer(),
        SyncConfig::default(),
        AutoQueueRule::default(),
    ));
    let h = start_with(
        dir,
        store,
        Features {
            sync: Some(runner),
            scorer: Some(scorer()),
            scripts: Some(host),
            tests: Some(engine),
            ..Features::default()
        },
        0,
    )
    .await;
    let (s, run) = h
        .call(Method::POST, "/api/v1/sync", &h.operator, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let run = finished_run(&h, run["id"].as_i64().expect("id")).await;
    assert_ne!(run["status"], json!("failed"), "{run}");
    let (s, added) = h
        .call(
            Method::POST,
            "/api/v1/queue",
            &h.operator,
            Some(r#"{"advisory": "USN-9001-1", "os": "ubuntu"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    let qid = added["added"][0]["id"].as_i64().expect("queue id");

    let before = h.fingerprint();
    for (token, body, status, code) in [
        (
            &h.viewer,
            json!({"queue_id": qid}).to_string(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.operator,
            json!({"queue_id": "one"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            json!({"queue_id": qid, "force": true}).to_string(),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            &h.operator,
            json!({}).to_string(),
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
        (
            &h.operator,
            json!({"queue_id": 0}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            json!({"queue_id": 99999}).to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (s, b) = h
            .call(Method::POST, "/api/v1/tests/run", token, Some(&body))
            .await;
        assert_error(s, &b, status, code);
    }
    assert_eq!(
        h.fingerprint(),
        before,
        "rejected test starts changed the database"
    );

    let (s, started) = h
        .call(
            Method::POST,
            "/api/v1/tests/run",
            &h.operator,
            Some(&json!({"queue_id": qid}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    let tid = started["test"]["id"].as_i64().expect("test started");
    assert_eq!(started["test"]["queue_id"], json!(qid));
    assert_eq!(started["test"]["started_by"], json!("oscar-operator"));
    // A second start while it runs (or after) is a conflict.
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/tests/run",
            &h.operator,
            Some(&json!({"queue_id": qid}).to_string()),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict");

    let store = h.store.clone();
    wait_for(120, "the API-started test to finish", || {
        let t = store
            .read_blocking(|c| spm::store::test_runs::get(c, tid))
            .ok()?;
        (t.status != spm::engine::state::TestStatus::Running).then_some(())
    })
    .await;
    let (s, t) = h.get(&format!("/api/v1/tests/{tid}"), &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["test"]["status"], json!("passed"), "{t}");
    let phases: Vec<&str> = t["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["phase"].as_str())
        .collect();
    for p in ["pre_check", "snapshot", "patch"] {
        assert!(phases.contains(&p), "{p} missing from {phases:?}");
    }
    assert!(t["test"]["evidence"].is_object(), "{t}");
    let (s, list) = h
        .get(&format!("/api/v1/tests?queue_id={qid}"), &h.viewer)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["id"], json!(tid));
    let (_, passed) = h.get("/api/v1/tests?status=passed", &h.viewer).await;
    assert!(
        passed["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["status"] == json!("passed"))
    );
    for bad in [
        "/api/v1/tests?status=great",
        "/api/v1/tests?queue_id=-1",
        "/api/v1/tests?limit=0",
    ] {
        let (s, b) = h.get(bad, &h.viewer).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    }
    let (s, b) = h.get("/api/v1/tests/424242", &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");

    // Abort: only a running test; bad bodies and roles are refused first.
    let path = format!("/api/v1/tests/{tid}/abort");
    let before = h.fingerprint();
    for (token, body, status, code) in [
        (
            &h.viewer,
            r#"{"reason": "stop"}"#,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.operator,
            r#"{"reason": ""}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            r#"{"why": "stop"}"#,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            &h.operator,
            r#"{"reason": "stop"}"#,
            StatusCode::CONFLICT,
            "conflict",
        ),
    ] {
        let (s, b) = h.call(Method::POST, &path, token, Some(body)).await;
        assert_error(s, &b, status, code);
    }
    assert_eq!(h.fingerprint(), before);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_record_who_and_where_enforce_four_eyes_and_refuse_non_pending() {
    // seed_queue: items 3 and 7 (0-based 2, 6) are pending_approval, queued by `bench`.
    let h = start(Features::default(), 8).await;
    let (s, p) = h.get("/api/v1/approvals/pending", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let ids: Vec<i64> = p["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_i64())
        .collect();
    assert_eq!(ids.len(), 2, "{p}");
    let (a, b) = (ids[0], ids[1]);
    // Item b was queued by the approver: four-eyes forbids them approving it.
    h.store
        .write_blocking(|tx| {
            tx.execute(
                "UPDATE queue_items SET queued_by = 'april-approver' WHERE id = ?1",
                [b],
            )?;
            Ok(())
        })
        .expect("queued_by");

    let before = h.fingerprint();
    let approve = |id: i64| format!("/api/v1/approvals/{id}/approve");
    for (token, path, body, status, code) in [
        (
            &h.operator,
            approve(a),
            "{}",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.approver,
            approve(a),
            r#"{"reason": 5}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.approver,
            approve(a),
            r#"{"why": "ok"}"#,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            &h.approver,
            "/api/v1/approvals/x/approve".to_owned(),
            "{}",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.approver,
            approve(99999),
            "{}",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            &h.approver,
            approve(b),
            "{}",
            StatusCode::FORBIDDEN,
            "four_eyes",
        ),
        (
            &h.approver,
            format!("/api/v1/approvals/{a}/reject"),
            "{}",
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
        (
            &h.approver,
            format!("/api/v1/approvals/{a}/reject"),
            r#"{"reason": "  "}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            &h.approver,
            format!("/api/v1/approvals/{a}/snooze"),
            r#"{"until": "yesterday-ish", "reason": "wait"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.approver,
            "/api/v1/approvals/batch".to_owned(),
            &format!(r#"{{"queue_ids": [{a}, {b}]}}"#),
            StatusCode::FORBIDDEN,
            "four_eyes",
        ),
        (
            &h.approver,
            "/api/v1/approvals/batch".to_owned(),
            r#"{"queue_ids": []}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ] {
        let (s, r) = h.call(Method::POST, &path, token, Some(body)).await;
        assert_error(s, &r, status, code);
    }
    assert_eq!(
        h.fingerprint(),
        before,
        "refused decisions changed the database"
    );

    let (s, d) = h
        .call(
            Method::POST,
            &approve(a),
            &h.approver,
            Some(r#"{"reason": "evidence looks good"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["item"]["status"], json!("approved"));
    let (s, r) = h
        .call(Method::POST, &approve(a), &h.approver, Some("{}"))
        .await;
    assert_error(s, &r, StatusCode::CONFLICT, "conflict");
    // Another approver may decide b: snooze it (admin holds every role).
    let (s, d) = h
        .call(
            Method::POST,
            &format!("/api/v1/approvals/{b}/snooze"),
            &h.admin,
            Some(r#"{"until": "7d", "reason": "change freeze"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["item"]["status"], json!("snoozed"));
    let (_, p) = h.get("/api/v1/approvals/pending", &h.viewer).await;
    assert_eq!(p["items"], json!([]));

    let rows = h
        .store
        .read_blocking(|c| spm::store::approvals::history(c, a))
        .expect("approvals");
    assert_eq!(rows.len(), 1);
    let row = serde_json::to_value(&rows[0]).expect("json");
    assert_eq!(row["actor"], json!("april-approver"), "{row}");
    assert!(
        row["source_addr"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1")),
        "source address recorded: {row}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_compliance_read_what_the_rollout_recorded_and_cancel_is_audited() {
    use spm::engine::state::RunHostStatus;
    use spm::store::compliance::{ScanRow, record_scan};
    use spm::store::runs::{NewRun, NewRunHost, insert_hosts, insert_run};
    let h = start(Features::default(), 0).await;
    let run_id = h
        .store
        .write_blocking(|tx| {
            for (id, name) in [(1001_i64, "web-01"), (1002, "db-01")] {
                tx.execute(
                    "INSERT INTO systems (id, name) VALUES (?1, ?2)",
                    rusqlite::params![id, name],
                )?;
            }
            for (id, name, status, env) in [
                (1001_i64, "web-01", "compliant", "prod"),
                (1002, "db-01", "non_compliant", "prod"),
            ] {
                record_scan(
                    tx,
                    &ScanRow {
                        system_id: id,
                        name: name.into(),
                        policy_id: Some("weekly".into()),
                        os: "ubuntu".into(),
                        env: Some(env.into()),
                        patch_level: None,
                        target_level: None,
                        status: status.into(),
                        pending_errata: if status == "compliant" {
                            vec![]
                        } else {
                            vec!["USN-1-1".into()]
                        },
                        pending_cves: vec![],
                    },
                )?;
            }
            let run = insert_run(
                tx,
                &NewRun {
                    policy_id: "weekly".into(),
                    policy_hash: "ab".repeat(32),
                    trigger: "manual".into(),
                    started_by: "someone".into(),
                    owner: "elsewhere".into(),
                    lease: Duration::from_secs(600),
                },
            )?;
            insert_hosts(
                tx,
                run.id,
                &[NewRunHost {
                    system_id: 1001,
                    system_name: "web-01".into(),
                    wave: 1,
                    errata: vec!["USN-1-1".into()],
                    status: RunHostStatus::Pending,
                    error: None,
                }],
            )?;
            Ok(run.id)
        })
        .expect("seed runs and compliance");

    let (s, list) = h.get("/patch/runs", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["id"], json!(run_id));
    let (s, one) = h.get(&format!("/patch/runs/{run_id}"), &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["hosts"][0]["system_name"], json!("web-01"));
    let (s, b) = h.get("/patch/runs/777", &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");

    let cancel = format!("/patch/runs/{run_id}/cancel");
    let before = h.fingerprint();
    let (s, b) = h.call(Method::POST, &cancel, &h.viewer, None).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = h
        .call(Method::POST, "/patch/runs/777/cancel", &h.operator, None)
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.fingerprint(), before);
    let (s, b) = h.call(Method::POST, &cancel, &h.operator, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["run"]["status"], json!("cancelling"), "{b}");

    let (s, c) = h.get("/patch/compliance", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["items"].as_array().map(Vec::len), Some(2));
    let (s, g) = h.get("/patch/compliance?by=env", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["groups"][0]["key"], json!("prod"));
    assert_eq!(g["groups"][0]["compliant"], json!(1));
    assert_eq!(g["groups"][0]["non_compliant"], json!(1));
    let (s, b) = h.get("/patch/compliance?by=colour", &h.viewer).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, one) = h.get("/patch/compliance/1002", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["system"]["pending_errata"], json!(["USN-1-1"]));
    let (s, b) = h.get("/patch/compliance/5", &h.viewer).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = h.get("/patch/advisories?cve=not-a-cve", &h.viewer).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = h.get("/patch/advisories", &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let actions: Vec<(String, String)> = h
        .store
        .read_blocking(|c| {
            audit::list(
                c,
                &audit::AuditFilter {
                    object_type: Some("patch_run".into()),
                    limit: 10,
                    ..Default::default()
                },
            )
        })
        .expect("audit")
        .into_iter()
        .map(|r| (r.action, r.actor))
        .collect();
    assert_eq!(
        actions,
        [("run.cancel".to_owned(), "oscar-operator".to_owned())]
    );
    h.stop().await;
}

const WEB_POLICY: &str = r#"---@spm api=1 kind=policy
return {
  id = "web-zero-budget",
  name = "Web servers, zero tolerance",
  os = "ubuntu2404",
  targets = { groups = { "prod-ubuntu-web" } },
  waves = { canary = 1, sizes = { 3 } },
  max_parallel = 10,
  error_budget = { per_wave = { hosts = 0 }, per_run = { hosts = 0 } },
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_run_plans_dry_and_runs_for_real_against_the_simulator() {
    use spm::engine::approvals::{self, Actor, Decision, Rules};
    use spm::engine::state::Status as _;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sim = SimServer::start(SimOptions {
        fleet: spm::sim::FleetSource::File(repo.join("tests/fixtures/rollout-fleet.toml")),
        timings: spm::sim::clock::Timings::instant(),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts with the rollout fleet");
    let client = Arc::new(
        UyuniClient::new(&UyuniConfig {
            url: sim.url(),
            user: "admin".into(),
            password: Secret::new("admin"),
            poll_initial_ms: 20,
            poll_max_ms: 200,
            ..UyuniConfig::default()
        })
        .expect("client"),
    );
    let scripts = tempfile::tempdir().expect("script root");
    std::fs::create_dir_all(scripts.path().join("policies")).expect("mkdir");
    std::fs::write(scripts.path().join("policies/web.lua"), WEB_POLICY).expect("policy");
    let host = ScriptHost::open(scripts.path(), spm::engine::rollout::policy::contracts())
        .await
        .expect("policy loads");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    // USN-7101-1 tested and approved.
    let qid = store
        .write_blocking(|tx| {
            tx.execute(
                "INSERT INTO errata (advisory, severity, synopsis, advisory_type, issue_date) \
                 VALUES ('USN-7101-1', 'high', 'update', 'security', '2026-01-15')",
                [],
            )?;
            let (item_id, _test_id) = spm::store::fixtures::passed_test(
                tx,
                "USN-7101-1",
                "ubuntu",
                90,
                "auto-queue",
                "engine",
            )?;
            Ok(item_id)
        })
        .expect("seed");
    approvals::decide(
        &store,
        qid,
        &Decision::Approve { reason: None },
        None,
        &Actor {
            identity: "someone-else".into(),
            source_addr: None,
        },
        Rules { four_eyes: true },
    )
    .expect("approve");
    let h = start_with(
        dir,
        store,
        Features {
            scripts: Some(host),
            uyuni: Some(client),
            ..Features::default()
        },
        0,
    )
    .await;

    let before = h.fingerprint();
    for (token, body, status, code) in [
        (
            &h.viewer,
            r#"{"policy_id": "web-zero-budget"}"#,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.operator,
            r#"{"policy_id": "nope"}"#,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            &h.operator,
            r#"{"policy_id": "../x"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            r#"{"policy": "web-zero-budget"}"#,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            &h.operator,
            r#"{"policy_id": "web-zero-budget", "dry_run": "yes"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ] {
        let (s, b) = h.call(Method::POST, "/patch/runs", token, Some(body)).await;
        assert_error(s, &b, status, code);
    }
    let (s, plan) = h
        .call(
            Method::POST,
            "/patch/runs",
            &h.operator,
            Some(r#"{"policy_id": "web-zero-budget", "dry_run": true}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{plan}");
    assert_eq!(plan["dry_run"], json!(true));
    assert!(plan["plan"].is_object(), "{plan}");
    assert_eq!(h.fingerprint(), before, "a dry run changed the database");
    let runs_before = h
        .store
        .read_blocking(|c| spm::store::runs::list_runs(c, 10))
        .expect("runs");
    assert!(runs_before.is_empty());

    let (s, started) = h
        .call(
            Method::POST,
            "/patch/runs",
            &h.operator,
            Some(r#"{"policy_id": "web-zero-budget"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    let run_id = started["run"]["id"].as_i64().expect("run id");
    assert_eq!(started["run"]["policy_id"], json!("web-zero-budget"));
    let store = h.store.clone();
    let run = wait_for(120, "the patch run to end", || {
        let r = store
            .read_blocking(|c| spm::store::runs::get_run_brief(c, run_id))
            .ok()?;
        r.status.is_terminal().then_some(r)
    })
    .await;
    let (s, detail) = h.get(&format!("/patch/runs/{run_id}"), &h.viewer).await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    assert_eq!(
        detail["run"]["status"],
        json!(run.status.to_string()),
        "{detail}"
    );
    assert!(
        !detail["hosts"].as_array().expect("hosts").is_empty(),
        "{detail}"
    );

    // Compliance scan over the policies on disk.
    let (s, b) = h.call(Method::POST, "/patch/scan", &h.viewer, None).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, scan) = h.call(Method::POST, "/patch/scan", &h.operator, None).await;
    assert_eq!(s, StatusCode::OK, "{scan}");
    assert!(
        scan["summary"]["systems"].as_u64().unwrap_or(0) > 0,
        "{scan}"
    );
    let (_, c) = h.get("/patch/compliance?by=policy", &h.viewer).await;
    assert_eq!(c["groups"][0]["key"], json!("web-zero-budget"), "{c}");

    // Rollback: bad input first, then one host that was patched.
    let path = format!("/patch/runs/{run_id}/rollback");
    let before = h.fingerprint();
    for (token, body, status, code) in [
        (
            &h.viewer,
            r#"{"reason": "bad patch"}"#,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &h.operator,
            r#"{"system_ids": [1]}"#,
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
        (
            &h.operator,
            r#"{"system_ids": [424242], "reason": "x"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            r#"{"system_ids": "all", "reason": "x"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            &h.operator,
            r#"{"reason": "   "}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ] {
        let (s, b) = h.call(Method::POST, &path, token, Some(body)).await;
        assert_error(s, &b, status, code);
    }
    assert_eq!(h.fingerprint(), before);
    assert_eq!(run.status.to_string(), "completed", "{detail}");
    let sid = detail["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|x| x["status"] == json!("ok"))
        .and_then(|x| x["system_id"].as_i64())
        .expect("a completed run has ok hosts");
    let (s, rb) = h
        .call(
            Method::POST,
            &path,
            &h.operator,
            Some(&json!({"system_ids": [sid], "reason": "regression seen in prod"}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rb}");
    assert_eq!(rb["hosts"].as_array().map(Vec::len), Some(1), "{rb}");
    h.stop().await;
}

/// A sync started through the API whose UYUNI cannot be reached ends `failed` and raises a
/// `sync_failed` notification rendered by the shipped template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_sync_that_fails_raises_sync_failed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    // A loopback port nothing listens on.
    let port = support::free_port();
    let cfg = UyuniConfig {
        url: format!("http://127.0.0.1:{port}/rpc/api"),
        user: "admin".into(),
        password: Secret::new("admin"),
        retries: 0,
        timeout_ms: 2_000,
        ..UyuniConfig::default()
    };
    let client = Arc::new(UyuniClient::new(&cfg).expect("client"));
    let templates = shipped_templates();
    let notifier = Notifier::new(
        store.clone(),
        NotifyConfig {
            templates_dir: templates.path().to_path_buf(),
            ..NotifyConfig::default()
        },
    )
    .expect("notifier");
    let runner = Arc::new(
        SyncRunner::new(
            Arc::new(UyuniSource::new(client)),
            scorer(),
            SyncConfig::default(),
            AutoQueueRule::default(),
        )
        .with_notifier(Some(notifier)),
    );
    let h = start_with(
        dir,
        store,
        Features {
            sync: Some(runner),
            scorer: Some(scorer()),
            ..Features::default()
        },
        0,
    )
    .await;
    let (s, run) = h
        .call(Method::POST, "/api/v1/sync", &h.operator, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let run = finished_run(&h, run["id"].as_i64().expect("id")).await;
    assert_eq!(run["status"], json!("failed"), "{run}");
    let store = h.store.clone();
    let row = wait_for(30, "the sync_failed notification", || {
        store
            .read_blocking(|c| {
                spm::store::notifications::list(
                    c,
                    &spm::store::notifications::ListFilter {
                        event: Some("sync_failed".into()),
                        ..Default::default()
                    },
                )
            })
            .ok()?
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(row.severity, "critical");
    assert_eq!(row.subject, "[spm] Errata sync FAILED");
    assert!(
        row.data["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{:?}",
        row.data
    );
    assert!(row.body.contains("Error: "), "{}", row.body);
}
