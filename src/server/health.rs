//! Health: liveness (no token), and component health from probes that a background task
//! runs every few seconds. A request only reads the cached snapshot; it never triggers a
//! live call to UYUNI, Prometheus or anything else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::State;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::store::{Store, stats};

/// A component check. Implementations must return quickly (use a timeout) and put no URL
/// or credential in their error text.
pub trait Probe: Send + Sync {
    /// Component name (`uyuni`, `prometheus`).
    fn name(&self) -> &'static str;
    /// Check the component; `Err` carries a short, credential-free reason.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// Probes Prometheus at `GET <base>/-/healthy`.
pub struct PrometheusProbe {
    client: reqwest::Client,
    url: String,
}

impl std::fmt::Debug for PrometheusProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusProbe").finish_non_exhaustive()
    }
}

impl PrometheusProbe {
    /// A probe for the Prometheus at `base_url` (e.g. `http://127.0.0.1:9090`).
    pub fn new(base_url: &str) -> Result<Self, reqwest::Error> {
        crate::services::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            client,
            url: format!("{}/-/healthy", base_url.trim_end_matches('/')),
        })
    }
}

impl Probe for PrometheusProbe {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let resp = self
                .client
                .get(&self.url)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("answered HTTP {}", resp.status().as_u16()))
            }
        })
    }
}

/// State of one component in the cached snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentHealth {
    /// `ok`, `error` or `not_configured`.
    pub status: &'static str,
    /// Short reason when in error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was last checked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// How long the check took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// The cached result of the last probe round.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct HealthSnapshot {
    /// Per component.
    pub components: BTreeMap<&'static str, ComponentHealth>,
    /// Queue items per status (from the same round).
    pub queue_stats: BTreeMap<String, i64>,
    /// Number of probe rounds so far.
    pub rounds: u64,
}

/// Holder of the latest snapshot, shared by the probe task and handlers.
#[derive(Debug, Default)]
pub struct HealthCache {
    snapshot: ArcSwap<HealthSnapshot>,
}

impl HealthCache {
    /// The latest snapshot.
    pub fn get(&self) -> Arc<HealthSnapshot> {
        self.snapshot.load_full()
    }
}

/// The probes the background task runs.
#[derive(Clone, Default)]
pub struct Probes {
    /// UYUNI probe (plugged in by the UYUNI client).
    pub uyuni: Option<Arc<dyn Probe>>,
    /// Prometheus probe.
    pub prometheus: Option<Arc<dyn Probe>>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("uyuni", &self.uyuni.is_some())
            .field("prometheus", &self.prometheus.is_some())
            .finish()
    }
}

async fn run_probe(p: &dyn Probe) -> ComponentHealth {
    let start = Instant::now();
    let result = match tokio::time::timeout(Duration::from_secs(5), p.check()).await {
        Ok(r) => r,
        Err(_) => Err("timed out after 5 s".to_owned()),
    };
    ComponentHealth {
        status: if result.is_ok() { "ok" } else { "error" },
        message: result.err(),
        checked_at: Some(crate::store::now_ts()),
        latency_ms: Some(start.elapsed().as_millis() as u64),
    }
}

/// Run one probe round and store the snapshot.
pub async fn probe_once(cache: &HealthCache, store: &Store, probes: &Probes) {
    let start = Instant::now();
    let db = store.read(|c| {
        stats::ping(c)?;
        stats::queue_counts(c)
    });
    let db = tokio::time::timeout(Duration::from_secs(5), db).await;
    let mut components = BTreeMap::new();
    let (db_health, queue_stats) = match db {
        Ok(Ok(q)) => (
            ComponentHealth {
                status: "ok",
                message: None,
                checked_at: Some(crate::store::now_ts()),
                latency_ms: Some(start.elapsed().as_millis() as u64),
            },
            q,
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health probe: database error");
            (
                ComponentHealth {
                    status: "error",
                    message: Some("database query failed; see the server log".to_owned()),
                    checked_at: Some(crate::store::now_ts()),
                    latency_ms: Some(start.elapsed().as_millis() as u64),
                },
                BTreeMap::new(),
            )
        }
        Err(_) => (
            ComponentHealth {
                status: "error",
                message: Some("timed out after 5 s".to_owned()),
                checked_at: Some(crate::store::now_ts()),
                latency_ms: None,
            },
            BTreeMap::new(),
        ),
    };
    components.insert("database", db_health);
    for (name, probe) in [("uyuni", &probes.uyuni), ("prometheus", &probes.prometheus)] {
        let h = match probe {
            Some(p) => run_probe(p.as_ref()).await,
            None => ComponentHealth {
                status: "not_configured",
                message: None,
                checked_at: None,
                latency_ms: None,
            },
        };
        components.insert(name, h);
    }
    let rounds = cache.get().rounds + 1;
    cache.snapshot.store(Arc::new(HealthSnapshot {
        components,
        queue_stats,
        rounds,
    }));
}

/// Probe every `interval` until `shutdown` is cancelled.
pub async fn probe_loop(
    cache: Arc<HealthCache>,
    store: Store,
    probes: Probes,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        probe_once(&cache, &store, &probes).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// `GET /api/v1/health/live`: the process is up. No token, no details.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /api/v1/health`: overall status from the cached snapshot.
///
/// `healthy` when every configured component is ok, `degraded` when UYUNI or Prometheus
/// is in error, `unhealthy` when the database is; `starting` before the first round.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let snap = state.health.get();
    let status = if snap.rounds == 0 {
        "starting"
    } else if snap
        .components
        .get("database")
        .is_some_and(|c| c.status != "ok")
    {
        "unhealthy"
    } else if snap.components.values().any(|c| c.status == "error") {
        "degraded"
    } else {
        "healthy"
    };
    Json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "components": snap.components,
        "queue_stats": snap.queue_stats,
        "probe_rounds": snap.rounds,
    }))
}
