//! Templates (embedded, auto-escaped as HTML), their filters, the embedded assets, and the
//! plain error page.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{Value, json};

use super::{PageError, PageResult, Signed};
use crate::server::AppState;
use crate::server::auth::Role;

/// Every template, by name (the `.html` suffix turns HTML auto-escaping on).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("login.html", include_str!("templates/login.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("queue.html", include_str!("templates/queue.html")),
    ("tests.html", include_str!("templates/tests.html")),
    ("test.html", include_str!("templates/test.html")),
    ("evidence.html", include_str!("templates/evidence.html")),
    ("timeline.html", include_str!("templates/timeline.html")),
    ("approvals.html", include_str!("templates/approvals.html")),
    ("approval.html", include_str!("templates/approval.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("run.html", include_str!("templates/run.html")),
    ("compliance.html", include_str!("templates/compliance.html")),
    ("scripts.html", include_str!("templates/scripts.html")),
    ("script.html", include_str!("templates/script.html")),
    (
        "notifications.html",
        include_str!("templates/notifications.html"),
    ),
];

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Compile the embedded templates. A template that does not compile is logged and
    /// answers with a 500 when used (the unit test below compiles them all).
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(5_000_000));
        env.add_filter("age", age);
        env.add_filter("ms", ms);
        env.add_filter("hours", hours);
        env.add_filter("truncate", truncate);
        for (name, src) in TEMPLATES {
            if let Err(e) = env.add_template(name, src) {
                tracing::error!(template = name, error = %e, "dashboard template does not compile");
            }
        }
        Self { env }
    }

    /// Render template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, PageError> {
        let tmpl = self.env.get_template(name).map_err(PageError::internal)?;
        tmpl.render(minijinja::Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| PageError::internal(format!("rendering {name}: {e:#}")))
    }
}

/// Render a signed-in page: `ctx` plus the identity, CSRF token, role abilities, active
/// navigation entry, one-time message and unread notification count.
pub async fn page(
    state: &AppState,
    signed: &Signed,
    template: &str,
    nav: &str,
    mut ctx: Value,
) -> PageResult {
    let unread = state
        .store
        .read(crate::store::notifications::unread_count)
        .await?;
    let role = signed.principal.role;
    let flash = state.dashboard.sessions.take_flash(&signed.id);
    let base = json!({
        "me": { "name": signed.principal.name, "role": role.as_str() },
        "csrf": signed.session.csrf,
        "nav": nav,
        "unread": unread,
        "flash": flash.map(|(kind, text)| json!({ "kind": kind, "text": text })),
        "can": {
            "approve": role.allows(Role::Approver),
            "operate": role.allows(Role::Operator),
            "admin": role.allows(Role::Admin),
        },
    });
    if let (Some(c), Value::Object(b)) = (ctx.as_object_mut(), base) {
        for (k, v) in b {
            c.entry(k).or_insert(v);
        }
    }
    let html = state.dashboard.templates.render(template, &ctx)?;
    Ok(Html(html).into_response())
}

/// Serve an embedded asset (`app.css`, `app.js`).
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, ctype) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    resp
}

/// The site icon: a small SVG diamond (browsers ask for `/favicon.ico`).
pub async fn favicon() -> Response {
    const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
        <path d=\"M8 1 15 8 8 15 1 8z\" fill=\"#1f3a5f\"/></svg>";
    let mut resp = ICON.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    resp
}

/// Escape text for HTML (used by the error page, which renders without the templates).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A self-contained error page.
pub fn error_page(status: StatusCode, message: &str) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · spm</title><link rel=\"stylesheet\" href=\"/ui/static/app.css\"></head>\
         <body class=\"plain\"><main class=\"narrow\"><h1>{t}</h1>\
         <p class=\"flash error\" role=\"alert\">{m}</p>\
         <p><a href=\"/ui/\">Back to the overview</a></p></main></body></html>",
        t = escape(&title),
        m = escape(message)
    )
}

fn truncate(s: String, n: usize) -> String {
    if s.chars().count() <= n {
        s
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn age(ts: Option<String>) -> String {
    let Some(ts) = ts else {
        return "never".to_string();
    };
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(&ts) else {
        return ts;
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    let (future, s) = (secs < 0, secs.unsigned_abs());
    let text = match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "—".to_string(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) if ms < 60_000.0 => format!("{:.1} s", ms / 1000.0),
        Some(ms) => {
            let s = (ms / 1000.0).round() as u64;
            format!("{} min {} s", s / 60, s % 60)
        }
    }
}

fn hours(v: Option<f64>) -> String {
    match v {
        None => "—".to_string(),
        Some(h) if h < 1.0 => format!("{:.0} min", (h * 60.0).max(0.0)),
        Some(h) if h < 48.0 => format!("{h:.1} h"),
        Some(h) => format!("{:.1} d", h / 24.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let t = Templates::new();
        for (name, _) in TEMPLATES {
            assert!(t.env.get_template(name).is_ok(), "{name} compiles");
        }
    }

    #[test]
    fn filters_format_readably() {
        assert_eq!(ms(Some(850.0)), "850 ms");
        assert_eq!(ms(Some(4200.0)), "4.2 s");
        assert_eq!(ms(Some(185_000.0)), "3 min 5 s");
        assert_eq!(hours(Some(0.5)), "30 min");
        assert_eq!(hours(Some(72.0)), "3.0 d");
        assert_eq!(age(None), "never");
        assert_eq!(age(Some("garbage".into())), "garbage");
    }

    #[test]
    fn error_page_escapes() {
        let p = error_page(StatusCode::FORBIDDEN, "<script>x</script>");
        assert!(!p.contains("<script>x"));
        assert!(p.contains("&lt;script&gt;"));
    }
}
