//! The dashboard in a real headless Chromium, driven over WebDriver (Debian's
//! `chromium-driver`) with plain HTTP calls: sign in, open every page (screenshots in
//! `test-artifacts/dashboard/*.png`), basic accessibility checks on each, and approve a
//! pending patch with the keyboard through the form, then check the audit row.

mod dashboard_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use spm::server::ServerConfig;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process (killed on drop) and one browser session.
struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Driver {
    async fn start() -> Driver {
        for (path, pkg) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install the Debian package `{pkg}` (apt-get install -y {pkg})"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut d = Driver {
            child,
            http,
            base,
            session: String::new(),
            _profile: profile,
        };
        let v = d.call("POST", "/session", Some(caps)).await;
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        d
    }

    /// One WebDriver command; panics with the driver's message on error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().await.expect("WebDriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("WebDriver JSON");
        assert!(status.is_success(), "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    /// Console messages of level SEVERE since the last call (script errors, CSP
    /// violations, failed loads).
    async fn console_errors(&self) -> Vec<String> {
        self.call("POST", "/se/log", Some(json!({ "type": "browser" })))
            .await
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait (up to 20 s) until the URL ends with `suffix`.
    async fn wait_url(&self, suffix: &str) {
        let t0 = Instant::now();
        loop {
            let url = self.url().await;
            if url.ends_with(suffix) {
                return;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let text = self
                    .js("return document.body ? document.body.innerText : '';")
                    .await;
                panic!("expected a page ending in {suffix}, still at {url}: {text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call("POST", &format!("/element/{el}/click"), None)
            .await;
    }

    /// Press one key (WebDriver key code, e.g. "\u{E004}" for Tab).
    async fn press(&self, key: &str) {
        self.call(
            "POST",
            "/actions",
            Some(
                json!({ "actions": [{ "type": "key", "id": "kbd", "actions": [
                    { "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }
                ]}]}),
            ),
        )
        .await;
    }

    /// Save a screenshot of the whole page to `dir/name.png`.
    async fn screenshot(&self, dir: &Path, name: &str) {
        // Grow the window to the page's height (plus the window's own frame) first.
        let dims = self
            .js("return [Math.ceil(document.documentElement.scrollHeight), window.outerHeight - window.innerHeight];")
            .await;
        let h = (dims[0].as_i64().unwrap_or(1000) + dims[1].as_i64().unwrap_or(0).max(0))
            .clamp(700, 8000);
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": 1400, "height": h })),
        )
        .await;
        let b64 = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("screenshot base64"))
            .expect("decode screenshot");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": 1400, "height": 1000 })),
        )
        .await;
    }
}

/// Accessibility problems on the current page (empty when fine): controls without a label,
/// actions that are not keyboard-reachable links or buttons, missing `lang`, headings.
const A11Y_CHECK: &str = r#"
const problems = [];
if (!document.documentElement.lang) problems.push("html has no lang");
if (document.querySelectorAll("h1").length !== 1) problems.push("expected exactly one h1, found " + document.querySelectorAll("h1").length);
if (!document.title) problems.push("no title");
for (const el of document.querySelectorAll("input, select, textarea")) {
  if (el.type === "hidden" || el.type === "submit") continue;
  const named = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
  if (!named) problems.push("control without label: " + el.outerHTML.slice(0, 120));
}
for (const el of document.querySelectorAll("[onclick], [role=button]")) {
  if (el.tagName !== "BUTTON" && el.tagName !== "A") problems.push("action that is not a link or button: " + el.outerHTML.slice(0, 120));
}
for (const el of document.querySelectorAll("a, button")) {
  if (el.tagName === "A" && !el.hasAttribute("href")) continue;
  if (el.tabIndex < 0 && !el.disabled) problems.push("not reachable by keyboard: " + el.outerHTML.slice(0, 120));
  const name = (el.innerText || el.textContent || el.getAttribute("aria-label") || "").trim();
  if (!name) problems.push("action without an accessible name: " + el.outerHTML.slice(0, 120));
}
for (const el of document.querySelectorAll("svg[role=img]")) {
  if (!el.getAttribute("aria-label")) problems.push("chart without aria-label");
}
for (const t of document.querySelectorAll("table")) {
  if (!t.querySelector("th")) problems.push("table without header cells");
}
return problems;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_browse_every_page_and_approve_with_the_keyboard() {
    let server = dashboard_support::start(ServerConfig::default()).await;
    let shots: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts/dashboard");
    std::fs::create_dir_all(&shots).expect("artifact dir");
    let d = Driver::start().await;
    let base = &server.base;

    // Sign in by pasting the approver's token.
    d.goto(&format!("{base}/ui/")).await;
    assert!(
        d.url().await.ends_with("/ui/login"),
        "unauthenticated → sign-in page"
    );
    assert!(
        d.js(A11Y_CHECK)
            .await
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "sign-in page accessibility: {}",
        d.js(A11Y_CHECK).await
    );
    d.screenshot(&shots, "00-sign-in").await;
    d.type_into("#token", &server.approver).await;
    d.click("button[type=submit]").await;
    d.wait_url("/ui/").await;
    // The session cookie is HttpOnly: page scripts cannot read it.
    let cookies = d.js("return document.cookie;").await;
    assert!(
        !cookies.as_str().unwrap_or_default().contains("spm_session"),
        "{cookies}"
    );

    let pages = [
        ("01-overview", "/ui/", "Overview"),
        ("02-queue", "/ui/queue?find=USN", "Test queue"),
        ("03-tests", "/ui/tests", "Tests"),
        ("04-test-detail", "/ui/tests/1", "Test #1"),
        ("05-test-failed", "/ui/tests/4", "Test #4"),
        ("06-approvals", "/ui/approvals", "Approvals"),
        ("07-approval-detail", "/ui/approvals/1", "USN-7001-1"),
        ("08-runs", "/ui/runs", "Policies and runs"),
        ("09-run-live", "/ui/runs/1", "Run #1"),
        ("10-run-dry", "/ui/runs/2", "Run #2"),
        (
            "11-compliance",
            "/ui/compliance?cve=CVE-2026-1111",
            "Compliance",
        ),
        ("12-scripts", "/ui/scripts", "Scripts"),
        (
            "13-script-source",
            "/ui/scripts/source?path=phases/pre_check.lua",
            "pre_check.lua",
        ),
        ("14-notifications", "/ui/notifications", "Notifications"),
    ];
    for (shot, path, heading) in pages {
        d.goto(&format!("{base}{path}")).await;
        let h1 = d
            .js("const h = document.querySelector('h1'); return h ? h.innerText : '';")
            .await;
        assert!(
            h1.as_str().unwrap_or_default().contains(heading),
            "{path}: h1 {h1}"
        );
        let problems = d.js(A11Y_CHECK).await;
        assert_eq!(
            problems,
            json!([]),
            "{path}: accessibility problems {problems}"
        );
        // The hostile synopsis is displayed as text, never executed or parsed as markup.
        let injected = d
            .js("return document.querySelectorAll('img[src=x], script:not([src])').length;")
            .await;
        assert_eq!(injected, json!(0), "{path}: injected markup in the DOM");
        d.screenshot(&shots, shot).await;
        // No script error, CSP violation or failed load in the console.
        let errors = d.console_errors().await;
        assert!(errors.is_empty(), "{path}: console errors {errors:?}");
        // Nothing pushes the page wider than the window (no sideways scrolling).
        let widths = d
            .js("return [document.documentElement.clientWidth, document.documentElement.scrollWidth];")
            .await;
        assert!(
            widths[1].as_i64() <= widths[0].as_i64(),
            "{path}: page wider than the window {widths}"
        );
    }

    // The console check is live: a 404 page does log an error.
    d.goto(&format!("{base}/ui/tests/999")).await;
    let errors = d.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("404")),
        "a missing page is reported in the console: {errors:?}"
    );

    // The live run page polls its progress: change the run in the database and watch the
    // page follow without a reload.
    d.goto(&format!("{base}/ui/runs/1")).await;
    server
        .store
        .write_blocking(|tx| {
            tx.execute(
                "UPDATE patch_runs SET hosts_ok = 2, phase_detail = 'wave 2: verifying' WHERE id = 1",
                [],
            )?;
            Ok(())
        })
        .expect("advance the run");
    let t0 = Instant::now();
    loop {
        let ok = d
            .js("return document.querySelector('[data-field=hosts_ok]').textContent;")
            .await;
        if ok == json!("2") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the run page did not pick up the new progress: {ok}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Approve USN-7001-1 with the keyboard: type a reason, Tab to "Approve", press Enter.
    d.goto(&format!("{base}/ui/approvals/1")).await;
    d.type_into("#reason", "evidence reviewed in the browser")
        .await;
    let mut reached = false;
    for _ in 0..10 {
        d.press("\u{E004}").await;
        let focused = d
            .js("const e = document.activeElement; return e ? (e.tagName + ':' + (e.value || '')) : '';")
            .await;
        if focused == json!("BUTTON:approve") {
            reached = true;
            break;
        }
    }
    assert!(reached, "the Approve button is reachable with Tab");
    d.press("\u{E007}").await; // Enter
    d.wait_url("/ui/approvals").await;
    let flash = d
        .js("const f = document.querySelector('.flash'); return f ? f.innerText : '';")
        .await;
    assert!(
        flash.as_str().unwrap_or_default().contains("approved"),
        "{flash}"
    );
    d.screenshot(&shots, "15-approved").await;
    assert_eq!(server.queue_status(1), "approved");
    let audit = server.audit("approval.approve");
    assert_eq!(audit.len(), 1, "one audit row: {audit:?}");
    let (actor, _, object, reason, source) = &audit[0];
    assert_eq!(actor, "april-approver");
    assert_eq!(object.as_deref(), Some("1"));
    assert_eq!(reason.as_deref(), Some("evidence reviewed in the browser"));
    assert!(
        source
            .as_deref()
            .is_some_and(|s| s.starts_with("127.0.0.1:"))
    );

    // Sign out with the button.
    d.click("header form button").await;
    d.wait_url("/ui/login").await;

    // An operator sees the queue controls and the rollback form; queue an advisory
    // through the form.
    d.type_into("#token", &server.operator).await;
    d.click("button[type=submit]").await;
    d.wait_url("/ui/").await;
    for (shot, path) in [
        ("16-queue-operator", "/ui/queue?find=DSA"),
        ("17-run-operator", "/ui/runs/1"),
    ] {
        d.goto(&format!("{base}{path}")).await;
        let problems = d.js(A11Y_CHECK).await;
        assert_eq!(
            problems,
            json!([]),
            "{path}: accessibility problems {problems}"
        );
        d.screenshot(&shots, shot).await;
    }
    d.goto(&format!("{base}/ui/queue?find=DSA")).await;
    d.click("form[action='/ui/queue/add'] button").await;
    d.wait_url("/ui/queue").await;
    let added = server.audit("queue.add");
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0].0, "oscar-operator");
    d.call("DELETE", "", None).await;
}
