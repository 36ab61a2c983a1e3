//! The HTTP API against a real server on a loopback port, real SQLite, real tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spm::server::ServerConfig;
use spm::server::auth::{Role, create_token};
use spm::server::health::{Probes, PrometheusProbe};
use spm::server::routes::{Access, ROUTES};
use spm::server::service::Service;
use spm::store::{Store, audit, fixtures, queue, tokens};

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
    revoked: String,
}

async fn start(config: ServerConfig, probes: Probes, seed_items: usize) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    let toks = store
        .write_blocking(|tx| {
            fixtures::seed_queue(tx, seed_items)?;
            let mut out = Vec::new();
            for (name, role) in [
                ("root", Role::Admin),
                ("alice-viewer", Role::Viewer),
                ("oscar-operator", Role::Operator),
                ("april-approver", Role::Approver),
                ("old", Role::Admin),
            ] {
                out.push(create_token(tx, name, role)?.token);
            }
            tokens::revoke(tx, "old")?;
            Ok(out)
        })
        .expect("seed");
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        ..config
    };
    let service = Service::start(store.clone(), config, false, probes)
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
        revoked: toks[4].clone(),
    }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    async fn post_json(&self, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            path,
            Some(token),
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await
    }

    /// Everything a rejected request could have changed.
    fn fingerprint(
        &self,
    ) -> (
        Vec<tokens::TokenInfo>,
        Vec<audit::AuditRecord>,
        queue::QueuePage,
    ) {
        let toks = self.store.read_blocking(tokens::list).expect("tokens");
        // last_used_at moves on successful authentication; it is not part of "changed".
        let toks = toks
            .into_iter()
            .map(|t| tokens::TokenInfo {
                last_used_at: None,
                ..t
            })
            .collect();
        let audit = self
            .store
            .read_blocking(|c| {
                audit::list(
                    c,
                    &audit::AuditFilter {
                        limit: 1000,
                        ..Default::default()
                    },
                )
            })
            .expect("audit");
        let queue = self
            .store
            .read_blocking(|c| {
                queue::list(
                    c,
                    &queue::QueueFilter {
                        limit: 1000,
                        ..Default::default()
                    },
                )
            })
            .expect("queue");
        (toks, audit, queue)
    }

    async fn stop(mut self) {
        if let Some(s) = self.service.take() {
            s.run_until(async {}, Duration::from_secs(5))
                .await
                .expect("clean shutdown");
        }
    }
}

/// POST with a `Content-Length` of `len` bytes over a raw socket: send the head, read the
/// response, then stream the body only if the server asked for it (it never should here).
async fn raw_post_declaring(
    h: &Harness,
    path: &str,
    token: &str,
    len: usize,
) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{\"name\":"
    );
    sock.write_all(head.as_bytes()).await.expect("write head");
    // Read one complete response (head + Content-Length bytes) without sending the body.
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let want = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= want {
                    return;
                }
            }
            let n = sock.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before a full response");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("server answered before the body was sent");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (StatusCode::from_u16(code).expect("status"), body)
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "body: {body}");
    assert_eq!(body["error"]["code"], json!(code), "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message missing: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_is_public_and_everything_else_needs_a_valid_token() {
    let h = start(ServerConfig::default(), Probes::default(), 3).await;
    let (s, b) = h.get("/api/v1/health/live", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, json!({"status": "ok"}));
    let before = h.fingerprint();
    for r in ROUTES.iter().filter(|r| r.access != Access::Public) {
        let path = r
            .path
            .replace("{id}", "1")
            .replace("{name}", "alice-viewer");
        let method =
            Method::from_bytes(r.method.as_str().to_uppercase().as_bytes()).expect("method");
        let body = Some((
            "application/json",
            br#"{"name":"n1","role":"admin"}"#.to_vec(),
        ));
        for (label, token) in [
            ("no token", None),
            (
                "wrong token",
                Some("spm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ),
            ("not an spm token", Some("hunter2")),
            ("revoked token", Some(h.revoked.as_str())),
        ] {
            let (s, b) = h.call(method.clone(), &path, token, body.clone()).await;
            assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
            assert!(
                !b.to_string().contains("127.0.0.1"),
                "{label} leaked an address: {b}"
            );
        }
    }
    // A non-Bearer scheme is refused too.
    let resp = h
        .client
        .get(format!("{}/api/v1/health", h.base))
        .header("authorization", format!("Basic {}", h.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_eq!(
        h.fingerprint(),
        before,
        "rejected requests changed the database"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_gate_mutations_and_audits_name_the_token() {
    let h = start(ServerConfig::default(), Probes::default(), 3).await;
    let before = h.fingerprint();
    for token in [&h.viewer, &h.operator, &h.approver] {
        let (s, b) = h
            .post_json(
                "/api/v1/tokens",
                token,
                r#"{"name":"sneaky","role":"admin"}"#,
            )
            .await;
        assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
        let (s, b) = h
            .call(Method::DELETE, "/api/v1/tokens/root", Some(token), None)
            .await;
        assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
        let (s, b) = h.get("/api/v1/tokens", Some(token)).await;
        assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
        // Reads are fine for every role.
        let (s, _) = h.get("/api/v1/queue", Some(token)).await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(
        h.fingerprint(),
        before,
        "forbidden requests changed the database"
    );

    // The admin creates a token; the secret is returned once and works.
    let (s, b) = h
        .post_json(
            "/api/v1/tokens",
            &h.admin,
            r#"{"name":"ci-bot","role":"operator"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let secret = b["token"].as_str().expect("token in response").to_owned();
    assert!(secret.starts_with("spm_") && secret.len() > 40);
    let (s, _) = h.get("/api/v1/queue", Some(&secret)).await;
    assert_eq!(s, StatusCode::OK);
    // Listings never show the secret or its hash.
    let (s, list) = h.get("/api/v1/tokens", Some(&h.admin)).await;
    assert_eq!(s, StatusCode::OK);
    let text = list.to_string();
    assert!(!text.contains(&secret));
    assert!(!text.contains(&spm::server::auth::hash_token(&secret)));
    // Duplicate name: conflict, nothing added.
    let before = h.fingerprint();
    let (s, b) = h
        .post_json(
            "/api/v1/tokens",
            &h.admin,
            r#"{"name":"ci-bot","role":"viewer"}"#,
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict");
    assert_eq!(h.fingerprint(), before);
    // Revoke it; it stops working at once.
    let (s, b) = h
        .call(
            Method::DELETE,
            "/api/v1/tokens/ci-bot",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = h.get("/api/v1/queue", Some(&secret)).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, b) = h
        .call(
            Method::DELETE,
            "/api/v1/tokens/ci-bot",
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict");
    // The audit log names the token that acted, and the socket address.
    let (s, log) = h
        .get("/api/v1/audit?object_type=token", Some(&h.viewer))
        .await;
    assert_eq!(s, StatusCode::OK);
    let items = log["items"].as_array().expect("items");
    let actions: Vec<(&str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![("token.revoke", "root"), ("token.create", "root")]
    );
    assert!(
        items[0]["source_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_naming_the_field_and_changes_nothing() {
    let h = start(ServerConfig::default(), Probes::default(), 5).await;
    let before = h.fingerprint();
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("malformed", r#"{"name": "x","#, "malformed_json", None),
        (
            "not json at all",
            "name=x&role=admin",
            "malformed_json",
            None,
        ),
        (
            "wrong type",
            r#"{"name": "x", "role": 5}"#,
            "invalid_field",
            Some("role"),
        ),
        (
            "wrong type name",
            r#"{"name": 12, "role": "viewer"}"#,
            "invalid_field",
            Some("name"),
        ),
        (
            "unknown role",
            r#"{"name": "x", "role": "root"}"#,
            "invalid_field",
            Some("role"),
        ),
        (
            "unknown field",
            r#"{"name": "x", "role": "viewer", "admin": true}"#,
            "unknown_field",
            Some("admin"),
        ),
        (
            "missing field",
            r#"{"name": "x"}"#,
            "missing_field",
            Some("role"),
        ),
        (
            "bad name",
            r#"{"name": "x y; rm -rf /", "role": "viewer"}"#,
            "invalid_field",
            Some("name"),
        ),
        ("array", r#"[1,2]"#, "invalid_field", None),
    ];
    for (label, body, code, field) in cases {
        let (s, b) = h.post_json("/api/v1/tokens", &h.admin, body).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, code);
        match field {
            Some(f) => assert_eq!(b["error"]["field"], json!(f), "{label}: {b}"),
            None => assert!(
                b["error"].get("field").is_none() || *code == "invalid_field",
                "{label}: {b}"
            ),
        }
    }
    // Wrong content type.
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&h.admin),
            Some(("text/plain", br#"{"name":"x","role":"viewer"}"#.to_vec())),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // A 10 MB body. The server answers from Content-Length before reading the body, so the
    // client sends the head, reads the answer, and only then would stream the body; a client
    // that pushes all 10 MB first may see the connection closed under it instead.
    let (s, b) = raw_post_declaring(&h, "/api/v1/tokens", &h.admin, 10 * 1024 * 1024).await;
    assert_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Just over the limit, sent in full.
    let mut big = br#"{"name":"x","role":"viewer","pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    big.extend(br#""}"#);
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&h.admin),
            Some(("application/json", big)),
        )
        .await;
    assert_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Path ids.
    let (s, b) = h.get("/api/v1/queue/999999", Some(&h.viewer)).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    for bad in ["abc", "0", "-3", "1.5", "99999999999999999999999"] {
        let (s, b) = h
            .get(&format!("/api/v1/queue/{bad}"), Some(&h.viewer))
            .await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
        assert_eq!(b["error"]["field"], json!("path.id"));
    }
    let (s, b) = h
        .call(
            Method::DELETE,
            "/api/v1/tokens/nobody",
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    // Query strings.
    for (q, code, field) in [
        ("limit=abc", "invalid_field", "limit"),
        ("limit=0", "invalid_field", "limit"),
        ("limit=100000", "invalid_field", "limit"),
        ("offset=-1", "invalid_field", "offset"),
        ("status=bogus", "invalid_field", "status"),
        ("os=windows", "invalid_field", "os"),
        ("colour=red", "unknown_field", "colour"),
    ] {
        let (s, b) = h.get(&format!("/api/v1/queue?{q}"), Some(&h.viewer)).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, code);
        assert_eq!(b["error"]["field"], json!(field), "{q}: {b}");
    }
    // Unknown route and wrong method.
    let (s, b) = h.get("/api/v1/nothing-here", Some(&h.viewer)).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "no_route");
    let (s, b) = h
        .call(Method::PUT, "/api/v1/queue", Some(&h.admin), None)
        .await;
    assert_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(h.fingerprint(), before, "bad input changed the database");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_every_route_is_served() {
    let h = start(ServerConfig::default(), Probes::default(), 1).await;
    let (s, doc) = h.get("/api/v1/openapi.json", Some(&h.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], json!("3.0.3"));
    let paths = doc["paths"].as_object().expect("paths");
    for r in ROUTES {
        let op = &paths
            .get(r.path)
            .unwrap_or_else(|| panic!("{} missing from OpenAPI", r.path))[r.method.as_str()];
        assert!(
            op.is_object(),
            "{} {} missing from OpenAPI",
            r.method.as_str(),
            r.path
        );
        assert!(op["responses"].get(r.success.to_string()).is_some());
        // And the router really serves it (not the 404/405 fallbacks).
        let path = r.path.replace("{id}", "1").replace("{name}", "nobody");
        let method =
            Method::from_bytes(r.method.as_str().to_uppercase().as_bytes()).expect("method");
        let (s, b) = h.call(method, &path, Some(&h.admin), None).await;
        let code = b["error"]["code"].as_str().unwrap_or("");
        assert!(
            code != "no_route" && code != "method_not_allowed" && s != StatusCode::UNAUTHORIZED,
            "{} {} is documented but not served: {s} {b}",
            r.method.as_str(),
            r.path
        );
    }
    // Nothing documented that the table does not have.
    let documented: usize = paths
        .values()
        .map(|v| v.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(documented, ROUTES.len());
    h.stop().await;
}

/// A stand-in Prometheus on loopback that counts `/-/healthy` hits.
async fn fake_prometheus() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/-/healthy",
        axum::routing::get(move || {
            let c = counter.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                "Prometheus Server is Healthy.\n"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reads_cached_probes_and_never_calls_out_per_request() {
    let (prom_url, hits) = fake_prometheus().await;
    let probe = PrometheusProbe::new(&prom_url).expect("probe");
    let probes = Probes {
        uyuni: None,
        prometheus: Some(Arc::new(probe)),
    };
    let config = ServerConfig {
        health_interval_secs: 3600,
        ..ServerConfig::default()
    };
    let h = start(config, probes, 4).await;
    // Wait for the first probe round (bounded).
    let mut body = Value::Null;
    for _ in 0..200 {
        let (s, b) = h.get("/api/v1/health", Some(&h.viewer)).await;
        assert_eq!(s, StatusCode::OK);
        if b["probe_rounds"].as_u64() >= Some(1) {
            body = b;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(body["status"], json!("healthy"), "{body}");
    assert_eq!(body["components"]["prometheus"]["status"], json!("ok"));
    assert_eq!(body["components"]["database"]["status"], json!("ok"));
    assert_eq!(
        body["components"]["uyuni"]["status"],
        json!("not_configured")
    );
    assert_eq!(body["queue_stats"]["queued"], json!(2));
    let after_first = hits.load(Ordering::SeqCst);
    assert_eq!(after_first, 1);
    for _ in 0..25 {
        let (s, b) = h.get("/api/v1/health", Some(&h.viewer)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            !b.to_string().contains(&prom_url),
            "health leaked the Prometheus URL: {b}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        after_first,
        "a health request called Prometheus"
    );
    let (s, b) = h.get("/api/v1/health", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!b.to_string().contains("prometheus"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reflect_the_database_and_need_a_token_unless_public() {
    let h = start(ServerConfig::default(), Probes::default(), 8).await;
    h.service
        .as_ref()
        .expect("service")
        .state
        .metrics
        .observe_uyuni_call("errata.getDetails", 0.02, true);
    let (s, _) = h.get("/metrics", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, text) = h.get("/metrics", Some(&h.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().expect("text body").to_owned();
    // seed_queue spreads 8 items over queued, queued, pending_approval, failed.
    assert!(
        text.contains("spm_queue_items{status=\"queued\"} 4\n"),
        "{text}"
    );
    assert!(text.contains("spm_queue_items{status=\"failed\"} 2\n"));
    assert!(text.contains("spm_pending_approvals_count 2\n"));
    assert!(text.contains("spm_oldest_pending_approval_hours "));
    assert!(text.contains(
        "spm_uyuni_call_duration_seconds_bucket{method=\"errata.getDetails\",le=\"0.025\"} 1\n"
    ));
    assert!(
        text.contains("spm_api_tokens{role=\"admin\"} 1\n"),
        "revoked tokens are not counted"
    );
    h.stop().await;

    let public = ServerConfig {
        metrics_public: true,
        ..ServerConfig::default()
    };
    let h = start(public, Probes::default(), 1).await;
    let (s, _) = h.get("/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    // metrics_public opens /metrics only.
    let (s, _) = h.get("/api/v1/queue", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_listing_filters_and_pages() {
    let h = start(ServerConfig::default(), Probes::default(), 120).await;
    let (s, all) = h.get("/api/v1/queue?limit=500", Some(&h.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all["total"], json!(120));
    let items = all["items"].as_array().expect("items");
    assert_eq!(items.len(), 120);
    let scores: Vec<i64> = items
        .iter()
        .map(|i| i["score"].as_i64().unwrap_or(-1))
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not in score order"
    );
    // Pages do not overlap and cover everything.
    let mut seen = std::collections::BTreeSet::new();
    for off in (0..120).step_by(50) {
        let (_, p) = h
            .get(
                &format!("/api/v1/queue?limit=50&offset={off}"),
                Some(&h.viewer),
            )
            .await;
        for i in p["items"].as_array().expect("items") {
            assert!(
                seen.insert(i["id"].as_i64().unwrap_or(0)),
                "duplicate across pages"
            );
        }
    }
    assert_eq!(seen.len(), 120);
    let (_, f) = h
        .get("/api/v1/queue?status=failed&os=rhel", Some(&h.viewer))
        .await;
    let n = f["total"].as_i64().unwrap_or(-1);
    assert!(n > 0);
    assert!(
        f["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["status"] == "failed" && i["os"] == "rhel")
    );
    let (_, f) = h
        .get(
            "/api/v1/queue?status=failed,queued&limit=500",
            Some(&h.viewer),
        )
        .await;
    assert_eq!(f["total"], json!(90));
    assert!(
        f["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["status"] == "failed" || i["status"] == "queued")
    );
    let (_, f) = h.get("/api/v1/queue?q=bench-000007", Some(&h.viewer)).await;
    assert_eq!(f["total"], json!(1));
    assert_eq!(f["items"][0]["advisory"], json!("SPM-BENCH-000007"));
    // LIKE wildcards in q are literal.
    let (_, f) = h.get("/api/v1/queue?q=%25", Some(&h.viewer)).await;
    assert_eq!(f["total"], json!(0));
    let id = items[0]["id"].as_i64().expect("id");
    let (s, d) = h.get(&format!("/api/v1/queue/{id}"), Some(&h.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["id"], json!(id));
    assert!(d["tests"].is_array() && d["cves"].is_array());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_discovery_lists_test_systems_with_an_address() {
    let h = start(ServerConfig::default(), Probes::default(), 0).await;
    h.store
        .write_blocking(|tx| {
            fixtures::insert_system(
                tx,
                1001,
                "test-ubuntu-1",
                Some("10.0.0.11"),
                "ubuntu",
                "test",
            )?;
            fixtures::insert_system(tx, 1002, "test-rhel-1", None, "rhel", "test")?;
            fixtures::insert_system(
                tx,
                2001,
                "prod-web-1",
                Some("10.0.1.5"),
                "ubuntu",
                "production",
            )?;
            Ok(())
        })
        .expect("systems");
    let (s, b) = h.get("/api/v1/prometheus/targets", None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "SD must not expose test systems to anyone"
    );
    let (s, b2) = h.get("/api/v1/prometheus/targets", Some(&h.viewer)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b2,
        json!([{"targets": ["10.0.0.11:9100"], "labels": {
            "spm_system_id": "1001", "spm_name": "test-ubuntu-1", "spm_os": "ubuntu",
            "spm_env": "test", "spm_groups": "spm-test-ubuntu"}}])
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_use_is_recorded() {
    let h = start(ServerConfig::default(), Probes::default(), 0).await;
    let (s, _) = h.get("/api/v1/queue", Some(&h.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    let mut used = None;
    for _ in 0..200 {
        let list = h.store.read_blocking(tokens::list).expect("tokens");
        used = list
            .into_iter()
            .find(|t| t.name == "alice-viewer")
            .and_then(|t| t.last_used_at);
        if used.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(used.is_some(), "last_used_at was not recorded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_insecure_runs_everything_as_dev_admin_without_tokens() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    // Without the flag and without an admin token the service refuses to start.
    let cfg = || ServerConfig {
        listen: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    };
    let err = Service::start(store.clone(), cfg(), false, Probes::default())
        .await
        .expect_err("must refuse without an admin token");
    assert!(err.to_string().contains("no admin API token"), "{err}");
    let service = Service::start(store.clone(), cfg(), true, Probes::default())
        .await
        .expect("dev mode starts");
    let base = format!("http://{}", service.addr());
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/api/v1/tokens"))
        .json(&json!({"name": "first", "role": "admin"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let entries = store
        .read_blocking(|c| audit::list(c, &Default::default()))
        .expect("audit");
    assert_eq!(entries[0].actor, "dev");
    service
        .run_until(async {}, Duration::from_secs(5))
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_list_and_mark_read_all_or_nothing() {
    use spm::store::notifications::{self, NewDelivery, NewNotification};
    let h = start(ServerConfig::default(), Probes::default(), 0).await;
    let ids = h
        .store
        .write_blocking(|tx| {
            let mut ids = Vec::new();
            for (i, sev) in ["info", "warning", "critical"].iter().enumerate() {
                let (id, _) = notifications::insert(
                    tx,
                    &NewNotification {
                        event: "test_failed".into(),
                        severity: (*sev).into(),
                        subject: format!("subject {i}"),
                        body: "body".into(),
                        data: json!({"i": i}),
                        ..Default::default()
                    },
                    &[NewDelivery {
                        channel: "email".into(),
                        target: "ops@example.org".into(),
                    }],
                )?;
                ids.push(id);
            }
            Ok(ids)
        })
        .expect("insert notifications");
    let (s, b) = h
        .get("/api/v1/notifications?unread=true", Some(&h.viewer))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total_unread"], json!(3));
    assert_eq!(b["items"][0]["id"], json!(ids[2]), "newest first");
    let (_, b) = h
        .get("/api/v1/notifications?severity=critical", Some(&h.viewer))
        .await;
    assert_eq!(b["items"].as_array().map(Vec::len), Some(1));
    let (s, b) = h
        .get("/api/v1/notifications?severity=loud", Some(&h.viewer))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = h
        .get(
            &format!("/api/v1/notifications/{}", ids[0]),
            Some(&h.viewer),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["deliveries"][0]["target"], json!("ops@example.org"));

    // A batch with one unknown id changes nothing.
    let before = h
        .store
        .read_blocking(notifications::unread_count)
        .expect("count");
    let body = format!(r#"{{"ids": [{}, 987654]}}"#, ids[0]);
    let (s, b) = h
        .post_json("/api/v1/notifications/mark-read", &h.viewer, &body)
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        h.store
            .read_blocking(notifications::unread_count)
            .expect("count"),
        before
    );
    let (s, b) = h
        .post_json(
            "/api/v1/notifications/mark-read",
            &h.viewer,
            r#"{"ids": []}"#,
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = h
        .post_json(
            "/api/v1/notifications/mark-read",
            &h.viewer,
            r#"{"ids": "all"}"#,
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(b["error"]["field"], json!("ids"));

    let body = format!(r#"{{"ids": [{}, {}]}}"#, ids[0], ids[1]);
    let (s, b) = h
        .post_json("/api/v1/notifications/mark-read", &h.viewer, &body)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["marked_read"], json!(2));
    let (s, b) = h
        .call(
            Method::POST,
            &format!("/api/v1/notifications/{}/read", ids[2]),
            Some(&h.operator),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["marked_read"], json!(true));
    let n = h
        .store
        .read_blocking(|c| notifications::get(c, ids[0]))
        .expect("get");
    assert!(n.read);
    assert_eq!(n.read_by.as_deref(), Some("alice-viewer"));
    let n = h
        .store
        .read_blocking(|c| notifications::get(c, ids[2]))
        .expect("get");
    assert_eq!(n.read_by.as_deref(), Some("oscar-operator"));
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/notifications/424242/read",
            Some(&h.viewer),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    h.stop().await;
}

/// `spm` itself, as another process on the same database.
fn spm_cli(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(args)
        .env("SPM_DATABASE", db)
        .env("SPM_LOG", "warn")
        .output()
        .expect("run spm")
}

/// Authenticate with `token` until its verification is cached: its first use records
/// `last_used_at` (a commit, which empties the cache), so wait for that, then use it again.
async fn warm_token_cache(h: &Harness, token: &str, name: &str) {
    let (s, b) = h.get("/api/v1/queue", Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut used = false;
    for _ in 0..200 {
        let list = h.store.read_blocking(tokens::list).expect("tokens");
        used = list
            .iter()
            .any(|t| t.name == name && t.last_used_at.is_some());
        if used {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(used, "last_used_at of {name} was not recorded");
    for _ in 0..2 {
        let (s, b) = h.get("/api/v1/queue", Some(token)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let state = &h.service.as_ref().expect("running").state;
    assert!(!state.tokens.is_empty(), "the verification is cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_the_next_request_though_verifications_are_cached() {
    let h = start(ServerConfig::default(), Probes::default(), 5).await;

    // Revoked through the API.
    warm_token_cache(&h, &h.viewer, "alice-viewer").await;
    let (s, b) = h
        .call(
            Method::DELETE,
            "/api/v1/tokens/alice-viewer",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = h.get("/api/v1/queue", Some(&h.viewer)).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");

    // Revoked by `spm token revoke` in another process while the server runs.
    warm_token_cache(&h, &h.operator, "oscar-operator").await;
    let out = spm_cli(h.store.path(), &["token", "revoke", "oscar-operator"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, b) = h.get("/api/v1/queue", Some(&h.operator)).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");

    // The others still pass.
    let (s, b) = h.get("/api/v1/queue", Some(&h.approver)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_queue_pages_follow_every_commit() {
    let h = start(ServerConfig::default(), Probes::default(), 20).await;
    warm_token_cache(&h, &h.viewer, "alice-viewer").await;
    let state = h.service.as_ref().expect("running").state.clone();
    let path = "/api/v1/queue?limit=5";
    let pages_before = state.queue_pages.len();
    let (s, first) = h.get(path, Some(&h.viewer)).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["total"], json!(20));
    let (_, again) = h.get(path, Some(&h.viewer)).await;
    assert_eq!(again, first);
    assert_eq!(
        state.queue_pages.len(),
        pages_before + 1,
        "the page is cached"
    );

    // A removal by `spm queue remove` in another process shows on the next request.
    let items = first["items"].as_array().expect("items");
    let queued = items
        .iter()
        .find(|i| i["status"] == "queued")
        .and_then(|i| i["id"].as_i64())
        .expect("a queued item on the first page");
    let out = spm_cli(
        h.store.path(),
        &["queue", "remove", &queued.to_string(), "--reason", "test"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, after) = h.get(path, Some(&h.viewer)).await;
    assert_eq!(after["total"], json!(19));
    assert!(
        after["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["id"] != json!(queued)),
        "the removed item is gone: {after}"
    );

    // A change through this server's own writer shows too.
    let top = after["items"][0]["id"].as_i64().expect("id");
    h.store
        .write_blocking(|tx| queue::set_priority(tx, top, 42).map(|_| ()))
        .expect("priority");
    let (_, changed) = h.get(path, Some(&h.viewer)).await;
    assert_eq!(changed["items"][0]["id"], json!(top));
    assert_eq!(changed["items"][0]["priority"], json!(42));
    h.stop().await;
}
