//! `spm bench rollout`: a whole patch run against the simulator, measured against its floor.
//!
//! The fleet is `systems` Ubuntu systems in one group with one approved erratum relevant to
//! all; the policy runs waves of `max_parallel` hosts (the canary is one wave of the same
//! size). The floor is waves × action time. The simulator's clock has one-second
//! resolution, so the bench freezes it and steps it by one virtual second every
//! `action_ms` of real time, with errata actions taking one virtual second: an action ends
//! at the next step, at most `action_ms` after it was scheduled. Orchestrator overhead per
//! wave therefore shows up as whole extra steps once it exceeds a step.
//!
//! Figures: `wall_s` (EXECUTE to REPORT, planning excluded and given as `plan_s`),
//! `floor_s`, `uyuni_calls_per_wave` (calls other than action polling), `polls_per_wave`,
//! `peak_rss_mb` (spm's process; the simulator runs as a child `spm sim`, as UYUNI is a
//! separate server in production, so its world of `systems` hosts is not counted).

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::sim_child::SimChild;
use crate::engine::approvals::{self, Actor, Decision, Rules};
use crate::engine::rollout::{execute, policy};
use crate::engine::state::QueueStatus;
use crate::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use crate::store::Store;
use crate::store::queue::{self, NewQueueItem, TransitionExtra};

/// Parameters of the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Production systems.
    pub systems: usize,
    /// Hosts per wave and in flight.
    pub max_parallel: u32,
    /// Duration of one errata action, ms.
    pub action_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            systems: 10_000,
            max_parallel: 200,
            action_ms: 200,
        }
    }
}

const POLL_METHODS: &[&str] = &[
    "schedule.listInProgressSystems",
    "schedule.listCompletedSystems",
    "schedule.listFailedSystems",
];

fn fleet_toml(systems: usize) -> String {
    let mut s = String::from(
        "seed = 3\n\n[[errata]]\nadvisory = \"USN-9001-1\"\nos = \"ubuntu-24.04\"\ntype = \"security\"\n\
         severity = \"Important\"\nsynopsis = \"OpenSSL vulnerabilities\"\ncves = [\"CVE-2024-5535\"]\n\
         packages = [\"openssl=3.0.13-0ubuntu3.5\"]\n",
    );
    for i in 0..systems {
        s.push_str(&format!(
            "\n[[systems]]\nname = \"bench-{i:05}\"\nos = \"ubuntu-24.04\"\ngroups = [\"bench-prod\"]\n\
             packages = [\"openssl=3.0.13-0ubuntu3.4\"]\n"
        ));
    }
    s
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

fn seed_approval(store: &Store) -> anyhow::Result<()> {
    let id = store.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO errata (advisory, severity, synopsis, advisory_type, issue_date) \
             VALUES ('USN-9001-1', 'high', 'OpenSSL vulnerabilities', 'security', '2026-01-15')",
            [],
        )?;
        let item = queue::insert(
            tx,
            &NewQueueItem {
                advisory: "USN-9001-1".into(),
                os: "ubuntu".into(),
                queued_by: "bench".into(),
                ..Default::default()
            },
        )?;
        queue::transition(
            tx,
            item.id,
            QueueStatus::Queued,
            QueueStatus::Testing,
            &TransitionExtra::default(),
        )?;
        queue::transition(
            tx,
            item.id,
            QueueStatus::Testing,
            QueueStatus::PendingApproval,
            &TransitionExtra::default(),
        )?;
        Ok(item.id)
    })?;
    approvals::decide(
        store,
        id,
        &Decision::Approve {
            reason: Some("bench".into()),
        },
        None,
        &Actor {
            identity: "bench:approver".into(),
            source_addr: None,
        },
        Rules::default(),
    )?;
    Ok(())
}

/// Run the benchmark and return its figures.
pub async fn run(p: Params) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(p.systems > 0, "--systems must be at least 1");
    anyhow::ensure!(p.max_parallel > 0, "--max-parallel must be at least 1");
    anyhow::ensure!(p.action_ms >= 10, "--action-ms must be at least 10");
    let dir = std::env::temp_dir().join(format!("spm-bench-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(&dir, p).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path, p: Params) -> anyhow::Result<serde_json::Value> {
    let fleet = dir.join("fleet.toml");
    std::fs::write(&fleet, fleet_toml(p.systems)).context("writing the fleet file")?;
    let policy_path = dir.join("bench.lua");
    std::fs::write(
        &policy_path,
        format!(
            "---@spm api=1 kind=policy\nreturn {{\n  id = \"bench\",\n  name = \"bench\",\n  os = \"ubuntu2404\",\n  \
             targets = {{ groups = {{ \"bench-prod\" }} }},\n  waves = {{ canary = {mp}, sizes = {{ {mp} }} }},\n  \
             max_parallel = {mp},\n  reboot = \"never\",\n  error_budget = {{ per_run = {{ percent = 1 }} }},\n}}\n",
            mp = p.max_parallel
        ),
    )
    .context("writing the bench policy")?;
    let store = Store::open(&dir.join("spm.db"))?;
    seed_approval(&store)?;
    let loaded = policy::load_policy(&policy_path)
        .await
        .context("bench policy")?;
    let sim = SimChild::start([
        "--fleet".as_ref(),
        fleet.as_os_str(),
        "--frozen-clock".as_ref(),
        "--instant".as_ref(),
        "--errata-action-s=1".as_ref(),
    ])
    .await?;
    let client = UyuniClient::new(&UyuniConfig {
        url: sim.api().url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        poll_initial_ms: (p.action_ms / 20).max(2),
        poll_max_ms: (p.action_ms / 8).max(5),
        ..UyuniConfig::default()
    })?;
    let t0 = Instant::now();
    let plan = execute::build_plan(&client, &store, &loaded).await?;
    let plan_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        plan.hosts_total() == p.systems,
        "planned {} hosts, expected {}",
        plan.hosts_total(),
        p.systems
    );
    let waves = plan.waves.len();
    // Step the simulator's clock: one virtual second per action_ms of real time.
    let step = Duration::from_millis(p.action_ms);
    let stepper = {
        let clock = sim.api().clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut k: u32 = 1;
            loop {
                tokio::time::sleep_until(start + step * k).await;
                if let Err(e) = clock.advance(Duration::from_secs(1)).await {
                    tracing::warn!(error = %format!("{e:#}"), "bench clock step failed");
                }
                k = k.saturating_add(1);
            }
        })
    };
    client.reset_stats();
    let t1 = Instant::now();
    let summary = execute::execute(&client, &store, &loaded, plan, &{
        let mut o = execute::RunOptions::manual("bench");
        if std::env::var_os("SPM_BENCH_TRACE").is_some() {
            let t = Instant::now();
            o.progress = Some(std::sync::Arc::new(move |p: &execute::Progress| {
                eprintln!(
                    "{:>8.3}s wave {} {}",
                    t.elapsed().as_secs_f64(),
                    p.wave,
                    p.phase
                );
            }));
        }
        o
    })
    .await?;
    let wall_s = t1.elapsed().as_secs_f64();
    stepper.abort();
    let _ = stepper.await;
    let stats = client.stats();
    let (mut calls, mut polls) = (0u64, 0u64);
    for (m, s) in &stats {
        if POLL_METHODS.contains(&m.as_str()) {
            polls += s.requests;
        } else {
            calls += s.requests;
        }
    }
    sim.shutdown().await;
    let floor_s = waves as f64 * p.action_ms as f64 / 1000.0;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(serde_json::json!({
        "bench": "rollout",
        "systems": p.systems,
        "max_parallel": p.max_parallel,
        "action_ms": p.action_ms,
        "waves": waves,
        "status": summary.status,
        "hosts_ok": summary.ok,
        "hosts_failed": summary.failed,
        "plan_s": round(plan_s),
        "wall_s": round(wall_s),
        "floor_s": round(floor_s),
        "wall_over_floor": round(wall_s / floor_s),
        "uyuni_calls_per_wave": round(calls as f64 / waves.max(1) as f64),
        "polls_per_wave": round(polls as f64 / waves.max(1) as f64),
        "apply_actions_per_wave": round(summary.apply_actions_per_wave.iter().sum::<usize>() as f64 / waves.max(1) as f64),
        "calls_by_method": stats.iter().map(|(m, s)| (m.clone(), s.requests)).collect::<std::collections::BTreeMap<_, _>>(),
        "peak_rss_mb": peak_rss_mb(),
    }))
}
