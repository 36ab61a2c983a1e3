//! The web dashboard, served by `spm serve` under `/ui/`: server-rendered minijinja pages
//! (auto-escaped), one embedded stylesheet and one small script, no build step.
//!
//! - [`session`]: sign-in with an API token → server-side session cookie; CSRF token per
//!   session, checked on every POST; roles enforced exactly as in the API
//!   ([`crate::server::auth::Role::allows`]).
//! - [`pages`]: the GET pages (overview, queue, tests, approvals, runs, compliance,
//!   scripts, notifications).
//! - [`actions`]: the POST forms (sign-in/out, approve/reject/snooze, queue changes, run
//!   cancel, rollback of selected hosts, notifications read).
//!
//! Every response carries a strict Content-Security-Policy (`default-src 'self'`, no
//! inline script or style), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//! same-origin` and, for pages, `Cache-Control: no-store`.

pub mod actions;
pub mod pages;
pub mod render;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::auth::{Principal, Role};
use crate::engine::score::Scorer;
use session::{COOKIE, Session, Sessions};

/// Dashboard settings (the lead wires them into `[server.dashboard]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the dashboard at all.
    pub enabled: bool,
    /// Session lifetime in minutes.
    pub session_minutes: u64,
    /// Mark the session cookie `Secure` (set this when the dashboard is reached over TLS,
    /// directly or through a TLS proxy).
    pub secure_cookie: bool,
    /// Four-eyes rule: whoever queued an item or started one of its tests cannot approve it.
    pub four_eyes: bool,
    /// Success Score weights used when queueing from the dashboard (set from `[score]` by
    /// `spm serve`; not read from the `[server]` section).
    #[serde(skip)]
    pub score: crate::engine::score::ScoreConfig,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_minutes: 8 * 60,
            secure_cookie: false,
            four_eyes: false,
            score: crate::engine::score::ScoreConfig::default(),
        }
    }
}

/// Dashboard state shared by the handlers: sessions, templates, the scorer.
#[derive(Debug)]
pub struct Dashboard {
    /// Signed-in browsers.
    pub sessions: Sessions,
    /// Settings.
    pub config: DashboardConfig,
    /// Templates.
    pub templates: render::Templates,
    /// Scores advisories queued from the dashboard (`None`: the `[score]` patterns did not
    /// compile; queueing then says so).
    pub scorer: Option<Arc<Scorer>>,
}

impl Dashboard {
    /// A dashboard whose sessions are kept in `store` (they survive a restart).
    pub fn new(config: DashboardConfig, store: crate::store::Store) -> Self {
        let scorer = match Scorer::new(config.score.clone()) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::error!(error = %e, "dashboard: invalid [score] configuration; queueing is disabled");
                None
            }
        };
        Self {
            sessions: Sessions::new(
                Duration::from_secs(config.session_minutes.max(1) * 60),
                store,
            ),
            templates: render::Templates::new(),
            scorer,
            config,
        }
    }
}

/// The content security policy of every dashboard response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'; object-src 'none'";

/// The dashboard's routes (merged into the API router by [`super::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(pages::login).post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/queue", get(pages::queue))
        .route("/ui/queue/add", post(actions::queue_add))
        .route("/ui/queue/{id}/priority", post(actions::queue_priority))
        .route("/ui/queue/{id}/remove", post(actions::queue_remove))
        .route("/ui/tests", get(pages::tests))
        .route("/ui/tests/{id}", get(pages::test))
        .route("/ui/approvals", get(pages::approvals))
        .route("/ui/approvals/{id}", get(pages::approval))
        .route("/ui/approvals/{id}/decide", post(actions::decide))
        .route("/ui/runs", get(pages::runs))
        .route("/ui/runs/{id}", get(pages::run))
        .route("/ui/runs/{id}/progress", get(pages::run_progress))
        .route("/ui/runs/{id}/cancel", post(actions::run_cancel))
        .route("/ui/runs/{id}/rollback", post(actions::run_rollback))
        .route("/ui/compliance", get(pages::compliance))
        .route("/ui/scripts", get(pages::scripts))
        .route("/ui/scripts/source", get(pages::script_source))
        .route("/ui/notifications", get(pages::notifications))
        .route(
            "/ui/notifications/read-all",
            post(actions::notifications_read_all),
        )
        .route(
            "/ui/notifications/{id}/read",
            post(actions::notification_read),
        )
        .route("/ui/static/{file}", get(render::asset))
        .route("/favicon.ico", get(render::favicon))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `same-origin`: with the latter browsers send `Origin: null` on
    // form posts, and the origin check could not tell our own forms from others.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A signed-in request: the session and the principal it acts as.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Session id (the cookie value).
    pub id: String,
    /// The session.
    pub session: Session,
    /// Identity and role, as the API would see the same token.
    pub principal: Principal,
}

impl Signed {
    /// Fail with a 403 page unless the role allows `required`.
    pub fn require(&self, required: Role) -> Result<(), PageError> {
        self.principal
            .require(required)
            .map_err(|e| PageError::new(StatusCode::FORBIDDEN, e.message))
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let Some(id) = session::cookie(&parts.headers, COOKIE) else {
            return Err(to_login());
        };
        let Some(session) = state.dashboard.sessions.get(id).await else {
            return Err(to_login());
        };
        if !state.dev_insecure {
            // Re-check the token: a revoked token ends its sessions.
            match super::auth::verify_hash(state, &session.token_hash).await {
                Ok(_) => {}
                Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                    state.dashboard.sessions.remove(id).await;
                    return Err(to_login());
                }
                Err(e) => return Err(PageError::new(e.status, e.message).into_response()),
            }
        }
        let source_addr = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.to_string());
        Ok(Signed {
            id: id.to_string(),
            principal: Principal {
                name: session.name.clone(),
                role: session.role,
                source_addr,
            },
            session,
        })
    }
}

/// The client's socket address (never taken from forwarded headers).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.to_string()),
        ))
    }
}

/// A failure shown as an HTML error page with a status code.
#[derive(Debug, Clone)]
pub struct PageError {
    /// HTTP status.
    pub status: StatusCode,
    /// What to tell the user (escaped when rendered).
    pub message: String,
}

impl PageError {
    /// A new error page.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 500 with a generic message; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "dashboard: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as E;
        match e {
            E::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, e.to_string()),
            E::Conflict(_) | E::Transition(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = render::error_page(self.status, &self.message);
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        resp
    }
}

/// Result of a page handler.
pub type PageResult = Result<Response, PageError>;
