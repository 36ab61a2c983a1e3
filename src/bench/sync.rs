//! `spm bench sync`: the errata sync against an in-process simulator, first sync and an
//! unchanged re-sync, with the call plan and the latency floor.
//!
//! Fleet: the simulator's generator. With `--systems N` of at most 6, the fleet keeps N
//! test systems spread over the OSes in the order ubuntu, rhel, debian (2 systems: one
//! ubuntu, one rhel, like the customer's), and generates enough errata that `--errata` of
//! them are relevant (test systems need every erratum of their OS). Above 6, N − 6
//! production systems are generated next to the 6 test systems, `--errata` errata in the
//! catalogue, and the sync covers every group (scope `all`).
//!
//! Production systems of a large fleet follow a patch-lag model (`--max-lag`, default 3):
//! 99 % of them are maintained, each package 0..=3 versions behind its newest, which
//! gives a few hundred relevant errata per system (the customer's fleet has ~317 per
//! system); 1 % are neglected and miss every erratum of their OS; the 6 test systems
//! miss everything too, so all errata are relevant somewhere. `relevance_pairs` prints
//! the resulting system×advisory pairs, which is what the relevance calls carry.
//!
//! `floor_s` is the plan's critical path: the sequential stages (login, group list, the
//! group listings, base-channel lookups, relevance batches, per-advisory calls, logout),
//! each `ceil(calls / workers)` round trips of `latency` (login included).
//!
//! `peak_rss_mb` is the benchmark process's peak resident size (`VmHWM`). Small fleets run
//! the simulator in-process (its world is small and included); large fleets run it as a
//! child process (`spm sim`), as UYUNI is a separate server in production, so the figure
//! is what spm itself needed. `baseline_rss_mb` is the resident size just before the sync
//! starts (the peak is reset there when the kernel allows).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use super::sim_child::SimChild;
use crate::engine::score::{ScoreConfig, Scorer};
use crate::engine::sync::uyuni_source::UyuniSource;
use crate::engine::sync::{NoProgress, SyncConfig, SyncScope, run_sync};
use crate::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use crate::sim::clock::Timings;
use crate::sim::fleet::GenParams;
use crate::sim::model::Os;
use crate::sim::{FleetSource, SimHandle, SimOptions, SimServer, StatsSnapshot};
use crate::store::Store;
use crate::store::sync_runs::SyncStatus;

/// Benchmark settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncBenchParams {
    /// Relevant errata (small fleets) or catalogue size (large fleets).
    pub errata: usize,
    /// Systems in scope.
    pub systems: usize,
    /// Simulated latency per call, login included, ms.
    pub latency_ms: u64,
    /// Calls in flight.
    pub workers: usize,
    /// Generator seed.
    pub seed: u64,
    /// Large fleets: the production patch lag (see `GenParams::max_lag`).
    pub max_lag: u32,
}

impl Default for SyncBenchParams {
    fn default() -> Self {
        Self {
            errata: 634,
            systems: 2,
            latency_ms: 50,
            workers: 10,
            seed: 1,
            max_lag: 3,
        }
    }
}

const TEST_ORDER: [Os; 3] = [Os::Ubuntu2404, Os::Rhel9, Os::Debian12];

/// Kilobytes from a `/proc/self/status` line.
fn proc_status_kb(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn mb(kb: Option<u64>) -> Option<f64> {
    kb.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0)
}

/// The critical-path round trips of a run's call plan.
fn critical_path(calls: &BTreeMap<String, u64>, workers: u64) -> u64 {
    let get = |m: &str| calls.get(m).copied().unwrap_or(0);
    let rounds = |n: u64| n.div_ceil(workers.max(1));
    let per_advisory =
        get("errata.getDetails") + get("errata.listCves") + get("errata.listPackages");
    get("auth.login")
        + get("systemgroup.listAllGroups")
        + rounds(get("systemgroup.listSystems"))
        + rounds(get("system.listSystems"))
        + rounds(get("system.getSubscribedBaseChannel"))
        + rounds(get("system.getRelevantErrata"))
        + rounds(per_advisory)
        + get("auth.logout")
}

/// Run the benchmark and return its JSON report.
pub async fn run(p: SyncBenchParams) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(p.systems >= 1, "--systems must be at least 1");
    anyhow::ensure!(p.errata >= 1, "--errata must be at least 1");
    anyhow::ensure!(p.workers >= 1, "--workers must be at least 1");
    let small = p.systems <= 6;
    let kept_os: Vec<Os> = TEST_ORDER.iter().copied().take(p.systems.min(3)).collect();
    let gen_errata = if small {
        // The generator deals errata round-robin over the 3 OSes.
        (p.errata * 3).div_ceil(kept_os.len())
    } else {
        p.errata
    };
    let sim = if small {
        let sim = SimServer::start(SimOptions {
            fleet: FleetSource::Generate(GenParams {
                systems: 0,
                errata: gen_errata,
                extra_packages: 0,
                seed: p.seed,
                max_lag: None,
            }),
            latency_ms: p.latency_ms,
            login_latency_ms: p.latency_ms,
            timings: Timings::instant(),
            seed: p.seed,
            ..SimOptions::default()
        })
        .await
        .context("starting the simulator")?;
        // Keep `systems` test systems, spread over the OSes in TEST_ORDER.
        sim.with_world(|w| {
            let mut keep = std::collections::BTreeSet::new();
            let mut per_os: BTreeMap<usize, Vec<_>> = BTreeMap::new();
            for s in w.systems.values() {
                if let Some(i) = TEST_ORDER.iter().position(|o| *o == s.os) {
                    per_os.entry(i).or_default().push(s.id);
                }
            }
            let mut round = 0;
            while keep.len() < p.systems && round < 2 {
                for ids in per_os.values() {
                    if keep.len() < p.systems
                        && let Some(id) = ids.get(round)
                    {
                        keep.insert(*id);
                    }
                }
                round += 1;
            }
            w.systems.retain(|id, _| keep.contains(id));
            for g in w.groups.values_mut() {
                g.members.retain(|id| keep.contains(id));
            }
            w.groups.retain(|_, g| !g.members.is_empty());
        });
        Sim::InProcess(sim)
    } else {
        Sim::Child(
            SimChild::start([
                "--instant".to_string(),
                format!("--systems={}", p.systems - 6),
                format!("--errata={}", p.errata),
                "--extra-packages=200".to_string(),
                format!("--max-lag={}", p.max_lag),
                format!("--seed={}", p.seed),
                format!("--latency-ms={}", p.latency_ms),
                format!("--login-latency-ms={}", p.latency_ms),
            ])
            .await?,
        )
    };
    let client = Arc::new(
        UyuniClient::new(&UyuniConfig {
            url: sim.url(),
            user: "admin".into(),
            password: Secret::new("admin"),
            max_concurrency: p.workers,
            timeout_ms: 120_000,
            retries: 0,
            max_response_bytes: 1024 * 1024 * 1024,
            ..UyuniConfig::default()
        })
        .context("building the client")?,
    );
    let source = UyuniSource::new(client);
    let dir = tempfile_dir()?;
    let store = Store::open(&dir.join("bench.db")).context("opening the bench database")?;
    let scorer = Arc::new(Scorer::new(ScoreConfig::default())?);
    let cfg = SyncConfig {
        scope: if small {
            SyncScope::Test
        } else {
            SyncScope::All
        },
        concurrency: p.workers,
        ..SyncConfig::default()
    };

    let baseline = proc_status_kb("VmRSS:");
    // Reset the peak to the current size (Linux: "5" resets VmHWM); ignore if refused.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t0 = Instant::now();
    let first = run_sync(&store, &source, &scorer, &cfg, &NoProgress)
        .await
        .context("first sync")?;
    let wall = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        first.status == SyncStatus::Ok,
        "first sync was {}: {:?} {:?}",
        first.status.as_str(),
        first.error,
        first.summary.failures
    );
    let sim_first = sim.stats().await?;
    let t1 = Instant::now();
    let second = run_sync(&store, &source, &scorer, &cfg, &NoProgress)
        .await
        .context("re-sync")?;
    let rewall = t1.elapsed().as_secs_f64();
    let peak = proc_status_kb("VmHWM:");
    let pairs = store
        .read_blocking(crate::store::errata::system_pair_count)
        .context("counting relevance pairs")?;
    let sim_total = sim.stats().await?;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    let workers = p.workers as u64;
    let latency_s = p.latency_ms as f64 / 1000.0;
    let floor = critical_path(&first.summary.calls_by_method, workers) as f64 * latency_s;
    let refloor = critical_path(&second.summary.calls_by_method, workers) as f64 * latency_s;
    let security = first
        .summary
        .calls_by_method
        .get("errata.listCves")
        .copied()
        .unwrap_or(0);
    Ok(json!({
        "errata": p.errata,
        "systems": p.systems,
        "max_lag": if small { None } else { Some(p.max_lag) },
        "latency_ms": p.latency_ms,
        "workers": p.workers,
        "systems_synced": first.summary.systems_total,
        "errata_relevant": first.summary.errata_total,
        "relevance_pairs": pairs,
        "security_advisories": security,
        "wall_s": round3(wall),
        "floor_s": round3(floor),
        "wall_over_floor": if floor > 0.0 { Some(round3(wall / floor)) } else { None },
        "calls_total": first.summary.calls_total,
        "calls_by_method": first.summary.calls_by_method,
        "sim_calls_total": sim_first.total,
        "sim_peak_concurrency": sim_first.peak_concurrency,
        "sim_process": if small { "in-process" } else { "child" },
        "resync_status": second.status.as_str(),
        "resync_wall_s": round3(rewall),
        "resync_floor_s": round3(refloor),
        "resync_calls_total": second.summary.calls_total,
        "resync_calls_by_method": second.summary.calls_by_method,
        "sim_calls_total_both": sim_total.total,
        "peak_rss_mb": mb(peak),
        "baseline_rss_mb": mb(baseline),
    }))
}

/// The simulator the benchmark syncs from.
enum Sim {
    /// Small fleets: in this process, pruned to the requested test systems.
    InProcess(SimHandle),
    /// Large fleets: a child `spm sim`, so its world does not count in spm's memory.
    Child(SimChild),
}

impl Sim {
    fn url(&self) -> String {
        match self {
            Sim::InProcess(s) => s.url(),
            Sim::Child(c) => c.api().url(),
        }
    }

    async fn stats(&self) -> anyhow::Result<StatsSnapshot> {
        match self {
            Sim::InProcess(s) => Ok(s.stats()),
            Sim::Child(c) => c.api().stats().await,
        }
    }

    async fn shutdown(self) {
        match self {
            Sim::InProcess(s) => s.shutdown().await,
            Sim::Child(c) => c.shutdown().await,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "spm-bench-sync-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_path_counts_stages() {
        let calls: BTreeMap<String, u64> = [
            ("auth.login", 1),
            ("systemgroup.listAllGroups", 1),
            ("systemgroup.listSystems", 2),
            ("system.getRelevantErrata", 1),
            ("errata.getDetails", 634),
            ("errata.listCves", 437),
            ("errata.listPackages", 634),
            ("auth.logout", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // 1 + 1 + 1 + 1 + ceil(1705/10)=171 + 1
        assert_eq!(critical_path(&calls, 10), 176);
    }
}
