//! HTTP API, `/metrics` and the web dashboard ([`dashboard`], under `/ui/`).
//!
//! - [`routes::ROUTES`] is the one table of endpoints: [`router`] builds the axum router
//!   from it (wrapping each route in the authentication its [`routes::Access`] declares)
//!   and [`openapi`] documents it.
//! - [`error`] gives every failure the `{"error": {"code", "message", "field"?}}` shape.
//! - [`serve`] runs the server until a shutdown token is cancelled, then drains.
//!
//! Features plug in by adding fields to [`AppState`] (services as `Option<Arc<…>>`) and
//! rows to the route table.

pub mod app;
pub mod auth;
pub mod cache;
pub mod dashboard;
pub mod endpoints;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod service;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::store::Store;
use error::ApiError;

/// Server settings (the lead wires these into the global configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest accepted request body, bytes.
    pub body_limit_bytes: usize,
    /// Serve `/metrics` without a token (default false: a viewer token is needed).
    pub metrics_public: bool,
    /// Seconds between health probe rounds.
    pub health_interval_secs: u64,
    /// Port of node_exporter on test systems, for Prometheus service discovery.
    pub node_exporter_port: u16,
    /// Prometheus base URL to probe for health (none: not configured).
    pub prometheus_url: Option<String>,
    /// The web dashboard.
    pub dashboard: dashboard::DashboardConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5001".to_owned(),
            body_limit_bytes: 1024 * 1024,
            metrics_public: false,
            health_interval_secs: 15,
            node_exporter_port: 9100,
            prometheus_url: None,
            dashboard: dashboard::DashboardConfig::default(),
        }
    }
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Server settings.
    pub config: Arc<ServerConfig>,
    /// In-process metrics registry, shared with the rest of the service.
    pub metrics: Arc<metrics::Metrics>,
    /// Cached health snapshot (written by the probe task only).
    pub health: Arc<health::HealthCache>,
    /// Throttle for `last_used_at` updates.
    pub usage: Arc<auth::UsageTracker>,
    /// Verified tokens, valid while the database is unchanged.
    pub tokens: Arc<auth::TokenCache>,
    /// Serialized queue pages, valid while the database is unchanged.
    pub queue_pages: Arc<endpoints::queue::PageCache>,
    /// No authentication: every request runs as `dev` with the admin role.
    pub dev_insecure: bool,
    /// Feature services (sync, scoring, notifications, scripts, tests); each is optional
    /// and an endpoint whose service is absent answers 503 `not_configured`. Shared and
    /// swappable, so parts started after the server (see `server::app`) can register.
    pub features: Arc<arc_swap::ArcSwap<Features>>,
    /// Dashboard sessions and templates.
    pub dashboard: Arc<dashboard::Dashboard>,
}

/// Services the feature endpoints use. Absent ones make their endpoints answer 503.
#[derive(Clone)]
pub struct Features {
    /// Approval rules (four-eyes); on unless the configuration turns it off.
    pub approval_rules: crate::engine::approvals::Rules,
    /// Starts errata syncs in the background (`POST /api/v1/sync`).
    pub sync: Option<Arc<endpoints::sync::SyncRunner>>,
    /// The Success Score calculator (queue additions, risk breakdowns).
    pub scorer: Option<Arc<crate::engine::score::Scorer>>,
    /// The notifier (test sends, configuration view).
    pub notifier: Option<Arc<crate::engine::notify::Notifier>>,
    /// The Lua script host (script status, policy validation, the dashboard's scripts
    /// pages).
    pub scripts: Option<Arc<crate::host::reload::ScriptHost>>,
    /// The test engine (start, abort tests).
    pub tests: Option<Arc<crate::engine::testing::TestEngine>>,
    /// The UYUNI client (patch runs, the dashboard's rollback of selected hosts).
    pub uyuni: Option<Arc<crate::services::uyuni::UyuniClient>>,
    /// The Ansible executor (patch runs of `executor = "ansible"` policies).
    pub ansible: Option<Arc<crate::engine::ansible::AnsibleExecutor>>,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            approval_rules: crate::engine::approvals::Rules { four_eyes: true },
            sync: None,
            scorer: None,
            notifier: None,
            scripts: None,
            tests: None,
            uyuni: None,
            ansible: None,
        }
    }
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Features")
            .field("approval_rules", &self.approval_rules)
            .field("sync", &self.sync.is_some())
            .field("scorer", &self.scorer.is_some())
            .field("notifier", &self.notifier.is_some())
            .field("scripts", &self.scripts.is_some())
            .field("tests", &self.tests.is_some())
            .field("uyuni", &self.uyuni.is_some())
            .finish()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("dev_insecure", &self.dev_insecure)
            .field("features", &self.features.load())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State with fresh metrics and an empty health cache.
    pub fn new(store: Store, config: ServerConfig, dev_insecure: bool) -> Self {
        Self {
            dashboard: Arc::new(dashboard::Dashboard::new(
                config.dashboard.clone(),
                store.clone(),
            )),
            store,
            config: Arc::new(config),
            metrics: Arc::new(metrics::Metrics::default()),
            health: Arc::new(health::HealthCache::default()),
            usage: Arc::new(auth::UsageTracker::default()),
            tokens: Arc::new(auth::TokenCache::default()),
            queue_pages: Arc::new(endpoints::queue::PageCache::default()),
            dev_insecure,
            features: Arc::new(arc_swap::ArcSwap::from_pointee(Features::default())),
        }
    }

    /// The feature services registered so far.
    pub fn features(&self) -> Arc<Features> {
        self.features.load_full()
    }

    /// Register or replace feature services (every clone of this state sees the change).
    pub fn update_features(&self, f: impl Fn(&mut Features)) {
        self.features.rcu(|cur| {
            let mut next = Features::clone(cur);
            f(&mut next);
            next
        });
    }
}

/// Build the router from [`routes::ROUTES`].
pub fn router(state: AppState) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for spec in routes::ROUTES {
        let mr = (spec.handler)().route_layer(middleware::from_fn_with_state(
            (state.clone(), spec.access),
            auth::authorize,
        ));
        let merged = match by_path.remove(spec.path) {
            Some(existing) => existing.merge(mr),
            None => mr,
        };
        by_path.insert(spec.path, merged);
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr);
    }
    if state.config.dashboard.enabled {
        router = router.merge(dashboard::routes());
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), reject_oversized))
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .layer(
            // Logs method, path and status only: no headers (Authorization) and no bodies.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

/// Refuse a body whose declared length is over the limit before reading any of it.
/// (Bodies without a length are cut off at the limit by [`DefaultBodyLimit`].)
async fn reject_oversized(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.config.body_limit_bytes as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than the server accepts ({} bytes)",
                state.config.body_limit_bytes
            ),
        )
        .into_response();
    }
    next.run(req).await
}

async fn count_responses(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    state.metrics.record_http_response(resp.status().as_u16());
    resp
}

/// Serve on `listener` until `shutdown` is cancelled; in-flight requests finish first.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
