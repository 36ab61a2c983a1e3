//! The dashboard over plain HTTP (reqwest, no browser) against a real server on loopback:
//! sign-in and cookie flags, CSRF refusal, role refusal, escaping of hostile text, and the
//! audit rows every form writes.

mod dashboard_support;

use dashboard_support::{Server, start, start_with};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use spm::server::ServerConfig;
use spm::server::dashboard::DashboardConfig;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

fn cookie_value(set: &[String], name: &str) -> Option<String> {
    set.iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
}

fn csrf_in(html: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([^"]+)""#).expect("regex");
    re.captures(html)
        .map(|c| c[1].to_string())
        .expect("page has a CSRF field")
}

fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).expect("encode form")
}

/// A browser-like session: the session cookie and the page's CSRF token.
struct Browser {
    c: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

/// Sign in with `token`; returns the raw response of the POST and the session, if any.
async fn sign_in(s: &Server, token: &str) -> (reqwest::Response, Option<Browser>) {
    let c = client();
    let resp = c
        .get(format!("{}/ui/login", s.base))
        .send()
        .await
        .expect("GET login");
    assert_eq!(resp.status(), StatusCode::OK);
    let login_cookie =
        cookie_value(&set_cookies(resp.headers()), "spm_login_csrf").expect("login cookie");
    let html = resp.text().await.expect("body");
    let csrf = csrf_in(&html);
    let resp = c
        .post(format!("{}/ui/login", s.base))
        .header("Cookie", format!("spm_login_csrf={login_cookie}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token), ("csrf", &csrf)]))
        .send()
        .await
        .expect("POST login");
    let Some(session) = cookie_value(&set_cookies(resp.headers()), "spm_session") else {
        return (resp, None);
    };
    let mut b = Browser {
        c: c.clone(),
        base: s.base.clone(),
        cookie: session,
        csrf: String::new(),
    };
    let (status, html) = b.get("/ui/").await;
    assert_eq!(status, StatusCode::OK, "overview after sign-in: {html}");
    b.csrf = csrf_in(&html);
    (resp, Some(b))
}

impl Browser {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .header("Cookie", format!("spm_session={}", self.cookie))
            .send()
            .await
            .expect("GET");
        (r.status(), r.text().await.expect("body"))
    }

    async fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .c
            .post(format!("{}{path}", self.base))
            .header("Cookie", format!("spm_session={}", self.cookie))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(fields));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        req.send().await.expect("POST")
    }

    /// POST with the session's CSRF token; returns status and Location.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, Option<String>) {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        let r = self.post_raw(path, &all, None).await;
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (r.status(), loc)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_the_session() {
    let s = start(ServerConfig::default()).await;
    let (resp, b) = sign_in(&s, &s.viewer).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookies = set_cookies(resp.headers());
    let session = cookies
        .iter()
        .find(|c| c.starts_with("spm_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain HTTP: no Secure flag by default"
    );
    assert!(
        !session.contains(&s.viewer),
        "the token itself never goes into a cookie"
    );
    let b = b.expect("signed in");
    assert_eq!(s.audit("dashboard.sign_in").len(), 1);

    let (status, loc) = b.post("/ui/logout", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(loc.as_deref(), Some("/ui/login"));
    let r = client()
        .get(format!("{}/ui/queue", s.base))
        .header("Cookie", format!("spm_session={}", b.cookie))
        .send()
        .await
        .expect("GET after sign-out");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers().get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/ui/login")
    );

    let secure = start(ServerConfig {
        dashboard: DashboardConfig {
            secure_cookie: true,
            ..DashboardConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let (resp, _) = sign_in(&secure, &secure.viewer).await;
    let cookies = set_cookies(resp.headers());
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("spm_session=") && c.contains("; Secure")),
        "{cookies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_and_sign_out_ends_it_for_good() {
    let mut s = start(ServerConfig::default()).await;
    let (_, b) = sign_in(&s, &s.approver).await;
    let mut b = b.expect("signed in");
    s.restart().await;
    b.base = s.base.clone();
    let (status, html) = b.get("/ui/").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "still signed in after a restart: {html}"
    );
    assert_eq!(
        csrf_in(&html),
        b.csrf,
        "the same session, CSRF token included"
    );
    let (status, loc) = b.post("/ui/logout", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(loc.as_deref(), Some("/ui/login"));
    s.restart().await;
    b.base = s.base.clone();
    let (status, _) = b.get("/ui/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "signed out stays signed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revoked_and_forged_sign_ins_are_refused() {
    let s = start(ServerConfig::default()).await;
    let (resp, b) = sign_in(&s, "spm_not-a-real-token").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(b.is_none());
    let (resp, b) = sign_in(&s, &s.revoked).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.expect("body").contains("revoked"));
    assert!(b.is_none());
    // A sign-in POST without the sign-in form's cookie (login CSRF) is refused.
    let r = client()
        .post(format!("{}/ui/login", s.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("token", &s.admin), ("csrf", "guess")]))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(cookie_value(&set_cookies(r.headers()), "spm_session").is_none());
    assert!(s.audit("dashboard.sign_in").is_empty());
    // Unauthenticated pages redirect to the sign-in page.
    let r = client()
        .get(format!("{}/ui/approvals", s.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_token_ends_its_sessions() {
    let s = start(ServerConfig::default()).await;
    let token = s
        .store
        .write_blocking(|tx| {
            spm::server::auth::create_token(tx, "temp", spm::server::auth::Role::Viewer)
        })
        .expect("token")
        .token;
    let (_, b) = sign_in(&s, &token).await;
    let b = b.expect("signed in");
    assert_eq!(b.get("/ui/queue").await.0, StatusCode::OK);
    s.store
        .write_blocking(|tx| spm::store::tokens::revoke(tx, "temp"))
        .expect("revoke");
    assert_eq!(b.get("/ui/queue").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_right_csrf_token_or_from_another_origin_change_nothing() {
    let s = start(ServerConfig::default()).await;
    let (_, b) = sign_in(&s, &s.approver).await;
    let b = b.expect("signed in");
    let approve = [("action", "approve"), ("reason", "looks good")];
    // Missing token.
    let r = b.post_raw("/ui/approvals/1/decide", &approve, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.expect("body").contains("CSRF"));
    // Wrong token.
    let mut wrong = vec![("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")];
    wrong.extend_from_slice(&approve);
    let r = b.post_raw("/ui/approvals/1/decide", &wrong, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Another session's token.
    let (_, other) = sign_in(&s, &s.admin).await;
    let other = other.expect("second session");
    let mut foreign = vec![("csrf", other.csrf.as_str())];
    foreign.extend_from_slice(&approve);
    let r = b.post_raw("/ui/approvals/1/decide", &foreign, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Right token, but posted from another site.
    let mut right = vec![("csrf", b.csrf.as_str())];
    right.extend_from_slice(&approve);
    let r = b
        .post_raw(
            "/ui/approvals/1/decide",
            &right,
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.queue_status(1), "pending_approval");
    assert_eq!(s.approvals(1), 0);
    assert!(s.audit("approval.approve").is_empty());
    // The same form with the right token and a same-site Origin goes through.
    let origin = s.base.clone();
    let r = b
        .post_raw("/ui/approvals/1/decide", &right, Some(&origin))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.queue_status(1), "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_exactly_as_in_the_api() {
    let s = start(ServerConfig::default()).await;
    let (_, viewer) = sign_in(&s, &s.viewer).await;
    let (_, operator) = sign_in(&s, &s.operator).await;
    let (_, approver) = sign_in(&s, &s.approver).await;
    let (viewer, operator, approver) = (
        viewer.expect("viewer"),
        operator.expect("operator"),
        approver.expect("approver"),
    );
    let approve = [("action", "approve"), ("reason", "")];
    assert_eq!(
        viewer.post("/ui/approvals/2/decide", &approve).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        operator.post("/ui/approvals/2/decide", &approve).await.0,
        StatusCode::FORBIDDEN,
        "operators cannot approve"
    );
    let add = [
        ("advisory", "DSA-5800-1"),
        ("os", "debian"),
        ("priority", "3"),
    ];
    assert_eq!(
        approver.post("/ui/queue/add", &add).await.0,
        StatusCode::FORBIDDEN,
        "approvers cannot queue"
    );
    assert_eq!(
        viewer.post("/ui/runs/1/cancel", &[("reason", "x")]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.queue_status(2), "pending_approval");

    // The approver approves; the audit row names the token and the socket address.
    let (status, loc) = approver
        .post(
            "/ui/approvals/2/decide",
            &[
                ("action", "approve"),
                ("reason", "curl fix verified"),
                ("evidence_test_id", "2"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(loc.as_deref(), Some("/ui/approvals"));
    assert_eq!(s.queue_status(2), "approved");
    let audit = s.audit("approval.approve");
    assert_eq!(audit.len(), 1);
    let (actor, _, object, reason, source) = &audit[0];
    assert_eq!(actor, "april-approver");
    assert_eq!(object.as_deref(), Some("2"));
    assert_eq!(reason.as_deref(), Some("curl fix verified"));
    assert!(
        source
            .as_deref()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{source:?}"
    );
    // A second decision on the same item is refused and changes nothing.
    approver
        .post(
            "/ui/approvals/2/decide",
            &[("action", "reject"), ("reason", "x")],
        )
        .await;
    assert_eq!(s.queue_status(2), "approved");
    assert_eq!(s.approvals(2), 1);

    // Reject needs a reason; without one nothing changes and the page says why.
    approver
        .post(
            "/ui/approvals/1/decide",
            &[("action", "reject"), ("reason", "  ")],
        )
        .await;
    assert_eq!(s.queue_status(1), "pending_approval");
    let (_, page) = approver.get("/ui/approvals/1").await;
    assert!(
        page.contains("a reason is required to reject"),
        "flash shown"
    );
    // Snooze with a reason works.
    approver
        .post(
            "/ui/approvals/1/decide",
            &[
                ("action", "snooze"),
                ("reason", "change freeze"),
                ("snooze_hours", "48"),
            ],
        )
        .await;
    assert_eq!(s.queue_status(1), "snoozed");
    assert_eq!(s.audit("approval.snooze").len(), 1);

    // The operator queues, re-prioritises and removes, each with an audit row.
    let (status, _) = operator.post("/ui/queue/add", &add).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let added = s.audit("queue.add");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].0, "oscar-operator");
    let id = added[0].2.clone().expect("queue id");
    operator
        .post(&format!("/ui/queue/{id}/priority"), &[("priority", "7")])
        .await;
    assert_eq!(s.audit("queue.priority").len(), 1);
    operator.post(&format!("/ui/queue/{id}/remove"), &[]).await;
    assert_eq!(s.audit("queue.remove").len(), 1);
    // The queue engine's rules reach the page: an advisory not relevant to the OS, or
    // unknown, is not queued, and the reason is shown.
    operator
        .post(
            "/ui/queue/add",
            &[("advisory", "RHSA-2026:1234"), ("os", "ubuntu")],
        )
        .await;
    let (_, page) = operator.get("/ui/queue").await;
    assert!(
        page.contains("not queued: not relevant to ubuntu systems"),
        "{page}"
    );
    operator
        .post(
            "/ui/queue/add",
            &[("advisory", "USN-0000-0"), ("os", "ubuntu")],
        )
        .await;
    let (_, page) = operator.get("/ui/queue").await;
    assert!(page.contains("unknown advisory USN-0000-0"));
    assert_eq!(s.audit("queue.add").len(), 1, "nothing else was queued");
    // Removing an item that is not queued is refused.
    operator.post("/ui/queue/3/remove", &[]).await;
    assert_eq!(s.queue_status(3), "testing");
    assert_eq!(s.audit("queue.remove").len(), 1);

    // The operator cancels the active run.
    let (status, _) = operator
        .post(
            "/ui/runs/1/cancel",
            &[("reason", "maintenance window over")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let run_status: String = s
        .store
        .read_blocking(|c| {
            Ok(
                c.query_row("SELECT status FROM patch_runs WHERE id = 1", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .expect("run status");
    assert_eq!(run_status, "cancelling");
    assert_eq!(s.audit("run.cancel").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_eyes_rule_stops_whoever_queued_the_item() {
    let s = start(ServerConfig {
        dashboard: DashboardConfig {
            four_eyes: true,
            ..DashboardConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    // An admin token named like the operator who queued items 1 and 2.
    let token = s
        .store
        .write_blocking(|tx| {
            tx.execute("UPDATE queue_items SET queued_by = 'root' WHERE id = 1", [])?;
            Ok(())
        })
        .map(|_| s.admin.clone())
        .expect("update");
    let (_, root) = sign_in(&s, &token).await;
    let root = root.expect("signed in");
    let (_, page) = root.get("/ui/approvals/1").await;
    assert!(page.contains("Four-eyes rule"), "the rule is explained");
    assert!(page.contains("That includes you"));
    root.post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s.queue_status(1), "pending_approval");
    let (_, page) = root.get("/ui/approvals/1").await;
    assert!(page.contains("four-eyes rule"), "refusal shown: {page}");
    let (_, approver) = sign_in(&s, &s.approver).await;
    approver
        .expect("approver")
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s.queue_status(1), "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_escaped_with_a_strict_csp() {
    let s = start(ServerConfig::default()).await;
    let (_, b) = sign_in(&s, &s.viewer).await;
    let b = b.expect("signed in");
    for path in [
        "/ui/",
        "/ui/queue",
        "/ui/queue?status=queued&os=ubuntu&q=nginx",
        "/ui/queue?find=USN",
        "/ui/tests",
        "/ui/tests/1",
        "/ui/tests/4",
        "/ui/approvals",
        "/ui/approvals/1",
        "/ui/runs",
        "/ui/runs/1",
        "/ui/runs/2",
        "/ui/compliance",
        "/ui/compliance?cve=CVE-2026-1111",
        "/ui/scripts",
        "/ui/scripts/source?path=phases/pre_check.lua",
        "/ui/notifications",
    ] {
        let r =
            b.c.get(format!("{}{path}", s.base))
                .header("Cookie", format!("spm_session={}", b.cookie))
                .send()
                .await
                .expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff")
        );
        let html = r.text().await.expect("body");
        assert!(
            !html.contains("<script>alert") && !html.contains("<img src=x"),
            "{path} shows hostile text unescaped"
        );
        assert!(!html.contains("<b>bold</b>"), "{path}");
    }
    // The hostile synopsis is there, escaped.
    let (_, queue) = b.get("/ui/queue").await;
    assert!(
        queue.contains(
            "&lt;script&gt;alert(&quot;xss&quot;)&lt;&#x2f;script&gt;&lt;img src=x onerror=alert(2)&gt; nginx"
        ),
        "escaped synopsis in the queue: {}",
        queue
            .lines()
            .filter(|l| l.contains("alert"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (_, notes) = b.get("/ui/notifications").await;
    assert!(notes.contains("&lt;b&gt;bold&lt;&#x2f;b&gt;"));
    // Overview facts.
    let (_, overview) = b.get("/ui/").await;
    assert!(overview.contains("3 unread notifications"));
    assert!(
        overview.contains("database"),
        "component health from the probe loop"
    );
    assert!(overview.contains("Script reload failed"));
    assert!(
        overview.contains("phases&#x2f;patch.lua"),
        "the failing file is named"
    );
    // Unknown ids are 404 pages, bad filters 400.
    assert_eq!(b.get("/ui/tests/999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(b.get("/ui/approvals/abc").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        b.get("/ui/queue?status=bogus").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        b.get("/ui/scripts/source?path=../../etc/passwd").await.0,
        StatusCode::NOT_FOUND
    );
    // Viewers can mark notifications read (as in the API).
    b.post("/ui/notifications/read-all", &[]).await;
    let (_, overview) = b.get("/ui/").await;
    assert!(!overview.contains("unread notification"));
    // The run progress endpoint feeds the polling script.
    let (status, json) = b.get("/ui/runs/1/progress").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&json).expect("progress JSON");
    assert_eq!(v["status"], "executing");
    assert_eq!(v["hosts_running"], 1);
    assert_eq!(v["active"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_selected_hosts_is_checked_all_or_nothing_and_needs_uyuni() {
    let s = start(ServerConfig::default()).await;
    let host_status = |id: i64| -> String {
        s.store
            .read_blocking(move |c| {
                Ok(c.query_row(
                    "SELECT status FROM patch_run_hosts WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )?)
            })
            .expect("host status")
    };
    let (_, approver) = sign_in(&s, &s.approver).await;
    let approver = approver.expect("approver");
    assert_eq!(
        approver
            .post(
                "/ui/runs/1/rollback",
                &[("host", "1"), ("reason", "bad patch")]
            )
            .await
            .0,
        StatusCode::FORBIDDEN,
        "approvers cannot roll back"
    );
    let (_, op) = sign_in(&s, &s.operator).await;
    let op = op.expect("operator");
    let (_, page) = op.get("/ui/runs/1").await;
    assert!(page.contains("Roll back selected hosts"));
    // Host 1 (ok) with host 2 (still running): refused as a whole.
    op.post(
        "/ui/runs/1/rollback",
        &[("host", "1"), ("host", "2"), ("reason", "bad patch")],
    )
    .await;
    assert_eq!(host_status(1), "ok");
    assert_eq!(host_status(2), "running");
    let (_, page) = op.get("/ui/runs/1").await;
    assert!(page.contains("only hosts that finished"), "refusal shown");
    // A reason is required.
    op.post("/ui/runs/1/rollback", &[("host", "1"), ("reason", "")])
        .await;
    let (_, page) = op.get("/ui/runs/1").await;
    assert!(page.contains("a reason is required to roll back hosts"));
    // A host of another run is not found.
    op.post("/ui/runs/2/rollback", &[("host", "1"), ("reason", "x")])
        .await;
    let (_, page) = op.get("/ui/runs/2").await;
    assert!(page.contains("host of this run 1 not found"), "{page}");
    // A valid selection, but this server has no UYUNI connection: refused, unchanged.
    op.post(
        "/ui/runs/1/rollback",
        &[("host", "1"), ("reason", "regression on web-01")],
    )
    .await;
    assert_eq!(host_status(1), "ok");
    let (_, page) = op.get("/ui/runs/1").await;
    assert!(page.contains("rolling back needs the UYUNI connection"));
    assert!(s.audit("run.rollback").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_goes_through_the_rollout_engine_with_a_uyuni_connection() {
    let s = start_with(ServerConfig::default(), true).await;
    let (_, op) = sign_in(&s, &s.operator).await;
    let op = op.expect("operator");
    let (status, _) = op
        .post(
            "/ui/runs/1/rollback",
            &[("host", "1"), ("reason", "regression on web-01")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = op.get("/ui/runs/1").await;
    assert!(page.contains("Rollback of 1 host(s) of run 1 started"));
    // The engine marks the host, records the rollback and the audit row, then ends the
    // host: this seeded run recorded no pre-patch versions, so it cannot be restored.
    let t0 = std::time::Instant::now();
    let (status, error) = loop {
        let row: (String, Option<String>) = s
            .store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT status, error FROM patch_run_hosts WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .expect("host row");
        if row.0 != "ok" && row.0 != "rolling_back" {
            break row;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "the rollback did not finish: {row:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, "rollback_failed");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("no pre-patch package versions"),
        "{error:?}"
    );
    let audit = s.audit("run.rollback");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "oscar-operator");
    assert_eq!(audit[0].3.as_deref(), Some("regression on web-01"));
    let rollbacks: i64 = s
        .store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM rollbacks WHERE run_id = 1 AND initiated_by = 'oscar-operator'",
                [],
                |r| r.get(0),
            )?)
        })
        .expect("rollbacks");
    assert_eq!(rollbacks, 1);
}
