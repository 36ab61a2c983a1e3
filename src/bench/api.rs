//! `spm bench api`: queue listing throughput and latency on loopback.
//!
//! Seeds a fresh database with N errata and queue items, starts the real server (real
//! authentication with a viewer token), and sends `GET /api/v1/queue?limit=100` from C
//! concurrent clients until R requests are done. Client and server share this process, so
//! `rss_mb` covers both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::server::ServerConfig;
use crate::server::auth::{Role, create_token};
use crate::server::health::Probes;
use crate::server::service::Service;
use crate::store::{Store, fixtures};

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct Options {
    /// Queue items to seed.
    pub items: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Total requests.
    pub requests: usize,
    /// Worker threads of the runtime.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            items: 10_000,
            clients: 50,
            requests: 20_000,
            threads: 2,
        }
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the benchmark.
pub fn run(opts: &Options) -> anyhow::Result<serde_json::Value> {
    let dir = TempDir(std::env::temp_dir().join(format!("spm-bench-api-{}", uuid::Uuid::new_v4())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let store = Store::open(&dir.0.join("bench.db"))?;
    let seed_start = Instant::now();
    let items = opts.items;
    let token = store.write_blocking(|tx| {
        fixtures::seed_queue(tx, items)?;
        create_token(tx, "bench-admin", Role::Admin)?;
        Ok(create_token(tx, "bench-viewer", Role::Viewer)?.token)
    })?;
    let seed_s = seed_start.elapsed().as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let opts = opts.clone();
    rt.block_on(async move {
        crate::services::ensure_crypto_provider();
        let config = ServerConfig {
            listen: "127.0.0.1:0".to_owned(),
            ..ServerConfig::default()
        };
        let service = Service::start(store, config, false, Probes::default()).await?;
        let url = format!("http://{}/api/v1/queue?limit=100", service.addr());
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(opts.clients)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        // One checked request first: the figures mean nothing if the answer is wrong.
        let first: serde_json::Value = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let got = first["items"].as_array().map(|a| a.len()).unwrap_or(0);
        anyhow::ensure!(
            got == 100.min(opts.items) && first["total"] == json!(opts.items),
            "unexpected queue answer: {got} items, total {}",
            first["total"]
        );
        let cached = load(&client, &url, &token, opts.clients, opts.requests).await?;
        let (rss, hwm) = super::rss_mb();
        // The same load with the token and page caches off: every request verifies its
        // token in SQLite, counts and reads the page and serializes it, as it would on a
        // server whose database changes between requests.
        service.state.tokens.set_enabled(false);
        service.state.queue_pages.set_enabled(false);
        let uncached = load(&client, &url, &token, opts.clients, opts.requests).await?;
        let round = |v: f64| (v * 100.0).round() / 100.0;
        let errors = cached.errors + uncached.errors;
        let out = json!({
            "benchmark": "api",
            "endpoint": "GET /api/v1/queue?limit=100",
            "items": opts.items,
            "clients": opts.clients,
            "requests": cached.lat.len(),
            "errors": errors,
            "seconds": round(cached.seconds),
            "req_per_s": round(cached.req_per_s()),
            "p50_ms": round(cached.pct(0.50)),
            "p99_ms": round(cached.pct(0.99)),
            "max_ms": round(cached.pct(1.0)),
            "rss_mb": rss,
            "rss_hwm_mb": hwm,
            "uncached": {
                "req_per_s": round(uncached.req_per_s()),
                "p50_ms": round(uncached.pct(0.50)),
                "p99_ms": round(uncached.pct(0.99)),
                "max_ms": round(uncached.pct(1.0)),
            },
            "seed_seconds": round(seed_s),
            "note": "client and server in one process; rss covers both (taken after the cached run); \
                     uncached = token and page caches off",
        });
        service.run_until(async {}, Duration::from_secs(5)).await?;
        anyhow::ensure!(errors == 0, "{errors} requests failed: {out}");
        Ok(out)
    })
}

/// Latencies of one load run.
struct LoadResult {
    lat: Vec<Duration>,
    errors: usize,
    seconds: f64,
}

impl LoadResult {
    fn req_per_s(&self) -> f64 {
        self.lat.len() as f64 / self.seconds.max(1e-9)
    }

    /// The `p` quantile in milliseconds (`lat` is sorted).
    fn pct(&self, p: f64) -> f64 {
        self.lat
            .get(((self.lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    }
}

/// `requests` GETs of `url` from `clients` concurrent keep-alive clients.
async fn load(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    clients: usize,
    requests: usize,
) -> anyhow::Result<LoadResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = client.clone();
        let url = url.to_string();
        let token = token.to_string();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let t = Instant::now();
                let ok = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(requests);
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.await.context("benchmark client task failed")?;
        lat.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    lat.sort();
    Ok(LoadResult {
        lat,
        errors,
        seconds,
    })
}
