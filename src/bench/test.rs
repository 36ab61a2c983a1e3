//! `spm bench test`: the test engine against the in-process simulator.
//!
//! - `single_test_wall_s`: one advisory through every shipped phase on one test system,
//!   simulator with instant actions and no added latency (the prototype needs over 60 s
//!   because it sleeps 10 s before every poll).
//! - `speedup_4_systems`: N advisories (default 100) tested by 4 workers over 4 test
//!   systems versus 1 worker on 1 system, with a small per-call simulator latency
//!   (`sim_latency_ms`) standing in for the network round trip to UYUNI.
//!
//! Each configuration uses its own simulator, database and script set; the database is
//! filled by a real sync and the queue through the queue engine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::TestConfig;
use crate::engine::queue::{AddRequest, add};
use crate::engine::score::{ScoreConfig, Scorer};
use crate::engine::state::QueueStatus;
use crate::engine::sync::uyuni_source::UyuniSource;
use crate::engine::sync::{NoProgress, SyncConfig, run_sync};
use crate::engine::testing::TestEngine;
use crate::host::contracts::Contracts;
use crate::host::reload::ScriptHost;
use crate::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use crate::sim::clock::Timings;
use crate::sim::{FleetSource, SimOptions, SimServer};
use crate::store::{Store, StoreError, queue};

/// Parameters.
#[derive(Debug, Clone, Copy)]
pub struct BenchParams {
    /// Advisories in the speedup run.
    pub advisories: usize,
    /// Simulator latency per call in the speedup run, ms.
    pub latency_ms: u64,
}

impl Default for BenchParams {
    fn default() -> Self {
        Self {
            advisories: 100,
            latency_ms: 5,
        }
    }
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(format!(
            "spm-bench-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fleet: `systems` ubuntu test systems, `errata` advisories of one package each.
fn fleet_toml(systems: usize, errata: usize) -> String {
    let mut s = String::from("seed = 3\n");
    for i in 0..errata {
        let _ = write!(
            s,
            "\n[[errata]]\nadvisory = \"USN-{n}-1\"\nos = \"ubuntu-24.04\"\ntype = \"security\"\nseverity = \"Important\"\nsynopsis = \"bench update {i}\"\npackages = [\"benchpkg{i}=1.0-2\"]\n",
            n = 20000 + i
        );
    }
    let pkgs: Vec<String> = (0..errata)
        .map(|i| format!("\"benchpkg{i}=1.0-1\""))
        .collect();
    for k in 0..systems {
        let _ = write!(
            s,
            "\n[[systems]]\nname = \"bench-test-{k:02}\"\nos = \"ubuntu-24.04\"\ngroups = [\"test-ubuntu\"]\npackages = [{}]\nservices = [\"ssh\", \"cron\"]\nsnapper = true\n",
            pkgs.join(", ")
        );
    }
    s
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()))?;
        } else {
            std::fs::copy(&p, to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// The shipped scripts: `./phases` and `./scripts`, else the source tree's.
fn script_source() -> PathBuf {
    if Path::new("phases").is_dir() && Path::new("scripts").is_dir() {
        PathBuf::from(".")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}

/// Run `errata` advisories over `systems` systems with as many workers; wall seconds.
async fn run(systems: usize, errata: usize, latency_ms: u64) -> anyhow::Result<f64> {
    let dir = TempDir::new()?;
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(&fleet, fleet_toml(systems, errata)).context("writing the fleet")?;
    let sim = SimServer::start(SimOptions {
        fleet: FleetSource::File(fleet),
        timings: Timings::instant(),
        latency_ms,
        ..SimOptions::default()
    })
    .await
    .context("starting the simulator")?;
    let client = Arc::new(
        UyuniClient::new(&UyuniConfig {
            url: sim.url(),
            user: "admin".into(),
            password: Secret::new("admin"),
            poll_initial_ms: 5,
            poll_max_ms: 100,
            max_concurrency: 16,
            ..UyuniConfig::default()
        })
        .context("client")?,
    );
    let store = Store::open(&dir.path().join("spm.db")).context("store")?;
    let scorer = Arc::new(Scorer::new(ScoreConfig::default()).context("scorer")?);
    run_sync(
        &store,
        &UyuniSource::new(client.clone()),
        &scorer,
        &SyncConfig::default(),
        &NoProgress,
    )
    .await
    .context("sync")?;
    let req = AddRequest {
        advisories: (0..errata)
            .map(|i| format!("USN-{}-1", 20000 + i))
            .collect(),
        os: Some("ubuntu".into()),
        queued_by: "bench".into(),
        ..AddRequest::default()
    };
    let s2 = scorer.clone();
    let added = store
        .write(move |tx| add(tx, &s2, &req).map_err(|e| StoreError::Conflict(e.to_string())))
        .await
        .context("queueing")?;
    anyhow::ensure!(
        added.added.len() == errata,
        "queued {} of {errata} advisories: {:?}",
        added.added.len(),
        added.skipped.first()
    );
    let root = dir.path().join("root");
    let src = script_source();
    copy_dir(&src.join("phases"), &root.join("phases")).context("copying phases")?;
    copy_dir(&src.join("scripts"), &root.join("scripts")).context("copying scripts")?;
    let host = ScriptHost::open(&root, Contracts::default())
        .await
        .context("loading the scripts")?;
    let mut cfg = TestConfig::default();
    cfg.critical_services
        .insert("ubuntu".into(), vec!["ssh".into(), "cron".into()]);
    cfg.poll_interval_ms = 10;
    cfg.service_retry_delay_secs = 0;
    let engine = TestEngine::new(store.clone(), host, client, None, cfg);
    let started = Instant::now();
    let workers = {
        let e = engine.clone();
        tokio::spawn(async move { e.run_workers(systems).await })
    };
    loop {
        let counts = store.read(queue::counts_by_status).await?;
        let open: i64 = counts
            .iter()
            .filter(|(s, _)| matches!(s, QueueStatus::Queued | QueueStatus::Testing))
            .map(|(_, n)| n)
            .sum();
        if open == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the bench did not finish within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    engine.shutdown();
    let _ = workers.await;
    let counts = store.read(queue::counts_by_status).await?;
    let passed: i64 = counts
        .iter()
        .filter(|(s, _)| *s == QueueStatus::PendingApproval)
        .map(|(_, n)| n)
        .sum();
    anyhow::ensure!(
        passed == errata as i64,
        "only {passed} of {errata} tests passed: {counts:?}"
    );
    sim.shutdown().await;
    Ok(wall)
}

/// Run the benchmark; one JSON object.
pub async fn run_bench(p: BenchParams) -> anyhow::Result<serde_json::Value> {
    let single = run(1, 1, 0).await.context("single test")?;
    let one = run(1, p.advisories, p.latency_ms)
        .await
        .context("1 system")?;
    let four = run(4, p.advisories, p.latency_ms)
        .await
        .context("4 systems")?;
    Ok(serde_json::json!({
        "single_test_wall_s": (single * 1000.0).round() / 1000.0,
        "advisories": p.advisories,
        "sim_latency_ms": p.latency_ms,
        "wall_1_system_s": (one * 1000.0).round() / 1000.0,
        "wall_4_systems_s": (four * 1000.0).round() / 1000.0,
        "speedup_4_systems": ((one / four.max(1e-9)) * 100.0).round() / 100.0,
        "tests_per_s_4_systems": ((p.advisories as f64 / four.max(1e-9)) * 100.0).round() / 100.0,
    }))
}
