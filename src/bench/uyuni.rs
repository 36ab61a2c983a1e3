//! `spm bench uyuni`: the real UYUNI client against an in-process simulator.
//!
//! For latency 0 ms and 20 ms and concurrency 1, 10 and 50 it times a fixed number of
//! authenticated reads (`system.getDetails`) and reports calls per second. At 20 ms the
//! floor is `ceil(calls / concurrency) × 20 ms`; `overhead_ratio` is measured ÷ floor
//! (the worst over the concurrency levels).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use crate::sim::clock::Timings;
use crate::sim::{SimHandle, SimOptions, SimServer};

/// Concurrency levels measured.
pub const CONCURRENCY: [usize; 3] = [1, 10, 50];

/// Settings of one benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct BenchParams {
    /// Calls per concurrency level at 0 ms.
    pub calls_fast: usize,
    /// Wall time budget per level at 20 ms: calls = concurrency × rounds.
    pub rounds_slow: usize,
}

impl Default for BenchParams {
    fn default() -> Self {
        BenchParams {
            calls_fast: 3000,
            rounds_slow: 40,
        }
    }
}

async fn start_sim(latency_ms: u64) -> anyhow::Result<SimHandle> {
    SimServer::start(SimOptions {
        latency_ms,
        timings: Timings::instant(),
        ..SimOptions::default()
    })
    .await
    .context("starting the simulator")
}

async fn measure(sim: &SimHandle, conc: usize, calls: usize) -> anyhow::Result<(f64, Duration)> {
    let cfg = UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        max_concurrency: conc,
        timeout_ms: 10_000,
        ..UyuniConfig::default()
    };
    let client = UyuniClient::new(&cfg).context("building the client")?;
    client
        .login()
        .await
        .context("logging in to the simulator")?;
    let sids: Vec<i64> = sim.with_world(|w| w.systems.keys().map(|s| i64::from(*s)).collect());
    // Warm the connection pool.
    client
        .system_details(sids[0])
        .await
        .context("warm-up call")?;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conc);
    for t in 0..conc {
        let client = client.clone();
        let sids = sids.clone();
        let n = calls / conc + usize::from(t < calls % conc);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                client.system_details(sids[(t + i) % sids.len()]).await?;
            }
            Ok::<_, crate::services::uyuni::UyuniError>(())
        }));
    }
    for t in tasks {
        t.await
            .context("bench task panicked")?
            .context("bench call failed")?;
    }
    let elapsed = start.elapsed();
    Ok((calls as f64 / elapsed.as_secs_f64(), elapsed))
}

/// Raw simulator throughput at 0 ms: pre-encoded `system.getDetails` bodies posted over
/// keep-alive connections by `conc` tasks, responses read but not decoded.
async fn measure_raw(sim: &SimHandle, conc: usize, calls: usize) -> anyhow::Result<f64> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .context("building the HTTP client")?;
    let login = crate::services::uyuni::xmlrpc::encode_call_parts(
        "auth.login",
        &["admin".into(), "admin".into()],
    )
    .context("encoding login")?;
    let resp = http
        .post(sim.url())
        .body(login)
        .send()
        .await?
        .bytes()
        .await?;
    let key = match crate::services::uyuni::xmlrpc::decode_response(
        &resp,
        &crate::services::uyuni::xmlrpc::Limits::default(),
    )? {
        crate::services::uyuni::xmlrpc::MethodResponse::Success(v) => {
            v.as_str().unwrap_or_default().to_string()
        }
        crate::services::uyuni::xmlrpc::MethodResponse::Fault(f) => anyhow::bail!("login: {f}"),
    };
    let sid = sim.with_world(|w| w.systems.keys().next().copied().unwrap_or_default());
    let body = crate::services::uyuni::xmlrpc::encode_call_parts(
        "system.getDetails",
        &[key.into(), sid.into()],
    )
    .context("encoding the call")?;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conc);
    for t in 0..conc {
        let (http, url, body) = (http.clone(), sim.url(), body.clone());
        let n = calls / conc + usize::from(t < calls % conc);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let r = http.post(&url).body(body.clone()).send().await?;
                anyhow::ensure!(r.status().is_success(), "HTTP {}", r.status());
                r.bytes().await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("bench task panicked")??;
    }
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

/// Run the benchmark and return its JSON report.
pub async fn run(p: BenchParams) -> anyhow::Result<serde_json::Value> {
    let mut fast = serde_json::Map::new();
    let mut slow = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    let mut worst: f64 = 0.0;
    let sim = start_sim(0).await?;
    for c in CONCURRENCY {
        let (cps, _) = measure(&sim, c, p.calls_fast).await?;
        fast.insert(c.to_string(), json!((cps * 10.0).round() / 10.0));
    }
    let raw = measure_raw(&sim, 50, p.calls_fast).await?;
    sim.shutdown().await;
    let sim = start_sim(20).await?;
    for c in CONCURRENCY {
        let calls = c * p.rounds_slow;
        let (cps, elapsed) = measure(&sim, c, calls).await?;
        slow.insert(c.to_string(), json!((cps * 10.0).round() / 10.0));
        let floor =
            Duration::from_millis(20) * u32::try_from(calls.div_ceil(c)).unwrap_or(u32::MAX);
        let ratio = elapsed.as_secs_f64() / floor.as_secs_f64();
        ratios.insert(c.to_string(), json!((ratio * 1000.0).round() / 1000.0));
        worst = worst.max(ratio);
    }
    sim.shutdown().await;
    Ok(json!({
        "bench": "uyuni",
        "sim_raw_calls_per_s_c50": raw.round(),
        "method": "system.getDetails",
        "calls_per_s": { "latency_0ms": fast, "latency_20ms": slow },
        "overhead_ratio": (worst * 1000.0).round() / 1000.0,
        "overhead_ratio_by_concurrency": ratios,
        "calls_at_0ms": p.calls_fast,
        "rounds_at_20ms": p.rounds_slow,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    }))
}
