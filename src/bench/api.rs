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
        let _ = rustls::crypto::ring::default_provider().install_default();
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
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut handles = Vec::with_capacity(opts.clients);
        for _ in 0..opts.clients {
            let client = client.clone();
            let url = url.clone();
            let token = token.clone();
            let next = next.clone();
            let total = opts.requests;
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                while next.fetch_add(1, Ordering::Relaxed) < total {
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
        let mut lat = Vec::with_capacity(opts.requests);
        let mut errors = 0;
        for h in handles {
            let (l, e) = h.await.context("benchmark client task failed")?;
            lat.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        };
        let (rss, hwm) = super::rss_mb();
        let round = |v: f64| (v * 100.0).round() / 100.0;
        let out = json!({
            "benchmark": "api",
            "endpoint": "GET /api/v1/queue?limit=100",
            "items": opts.items,
            "clients": opts.clients,
            "requests": lat.len(),
            "errors": errors,
            "seconds": round(elapsed),
            "req_per_s": round(lat.len() as f64 / elapsed),
            "p50_ms": round(pct(0.50)),
            "p99_ms": round(pct(0.99)),
            "max_ms": round(pct(1.0)),
            "rss_mb": rss,
            "rss_hwm_mb": hwm,
            "seed_seconds": round(seed_s),
            "note": "client and server in one process; rss covers both",
        });
        service.run_until(async {}, Duration::from_secs(5)).await?;
        anyhow::ensure!(errors == 0, "{errors} requests failed: {out}");
        Ok(out)
    })
}
