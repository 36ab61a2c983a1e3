//! `spm bench lab --json`: boot time of real lab systems, one patch-test cycle on one
//! system (snapshot → apply → reboot → rollback), and the same cycle on 4 systems at once.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::lab::{Lab, LabOptions, System};

/// Number of systems booted for the parallel figure.
pub const SYSTEMS: u32 = 4;

const STEP: Duration = Duration::from_secs(300);

/// One patch-test cycle: pre snapshot, apply three updates (one needs a reboot, one breaks
/// a service), reboot, check the service, roll the packages back to the captured versions,
/// check again. Returns its wall time in seconds.
pub async fn test_cycle(sys: &System) -> anyhow::Result<f64> {
    let start = Instant::now();
    let before = sys.installed_packages().await?;
    let names = ["spm-demo-ok", "spm-demo-reboot", "spm-demo-svc"];
    let captured: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            before
                .get(*n)
                .map(|v| (n.to_string(), v.clone()))
                .with_context(|| format!("{n} not installed on {}", sys.name()))
        })
        .collect::<anyhow::Result<_>>()?;
    let pre = sys
        .exec(
            "snapper create --type pre --cleanup-algorithm number --print-number \
             --description 'spm bench'",
            STEP,
        )
        .await?;
    if pre.rc != 0 {
        bail!("snapper pre on {}: {}", sys.name(), pre.stderr);
    }
    let update: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                crate::lab::packages::UPDATE_VERSION.to_string(),
            )
        })
        .collect();
    let out = sys.apt_install(&update, STEP).await?;
    if out.rc != 0 {
        bail!("apply on {}: {}", sys.name(), out.stderr);
    }
    if sys.exec("test -f /var/run/reboot-required", STEP).await?.rc != 0 {
        bail!("{}: update did not ask for a reboot", sys.name());
    }
    sys.reboot(Duration::from_secs(120)).await?;
    let svc = sys.exec("systemctl is-active spm-demo-svc", STEP).await?;
    if svc.stdout.trim() == "active" {
        bail!(
            "{}: the breaking update left the service active",
            sys.name()
        );
    }
    let out = sys.apt_install(&captured, STEP).await?;
    if out.rc != 0 {
        bail!("rollback on {}: {}", sys.name(), out.stderr);
    }
    let svc = sys.exec("systemctl is-active spm-demo-svc", STEP).await?;
    if svc.stdout.trim() != "active" {
        bail!("{}: rollback did not restore the service", sys.name());
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Run the benchmark and return its JSON report. Ctrl-C or SIGTERM stops it and tears
/// the lab down (the half-run benchmark's `Lab` is dropped).
pub async fn run() -> anyhow::Result<serde_json::Value> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    tokio::select! {
        r = measure() => r,
        _ = int.recv() => bail!("interrupted; lab torn down"),
        _ = term.recv() => bail!("terminated; lab torn down"),
    }
}

/// Median wall time of `n` trivial scripts run inside `sys`, in milliseconds.
async fn exec_latency_ms(sys: &System, n: usize) -> anyhow::Result<f64> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = sys.exec("true", STEP).await?;
        if out.rc != 0 {
            bail!("`true` failed in {}: {}", sys.name(), out.stderr);
        }
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

async fn measure() -> anyhow::Result<serde_json::Value> {
    let lab = Lab::up(SYSTEMS, LabOptions::default())
        .await
        .context("lab up")?;
    let boot_s = lab.state().boot_secs;
    let up_s = lab.state().up_secs;
    let first = lab.systems().first().context("no systems")?;
    let exec_ms = exec_latency_ms(first, 11).await?;
    let cpu0 = busy_cpu_s();
    let test_cycle_s = test_cycle(first).await?;
    let cycle_cpu_s = busy_cpu_s().zip(cpu0).map(|(b, a)| b - a);
    let start = Instant::now();
    let cycles = futures::future::join_all(lab.systems().iter().map(test_cycle)).await;
    let parallel_wall_s = start.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut per_system = Vec::new();
    for c in cycles {
        per_system.push(c?);
    }
    let golden_cached = lab.state().golden_cached;
    lab.down().await.context("lab down")?;
    Ok(serde_json::json!({
        "bench": "lab",
        "systems": SYSTEMS,
        "golden_cached": golden_cached,
        "up_s": round(up_s),
        "boot_s": round(boot_s),
        "exec_ms": round(exec_ms),
        "test_cycle_s": round(test_cycle_s),
        "parallel_wall_s": round(parallel_wall_s),
        "parallel_cycle_s": per_system.into_iter().map(round).collect::<Vec<_>>(),
        "parallel_vs_one": round(parallel_wall_s / test_cycle_s.max(0.001)),
        // CPU the whole machine spent during the single cycle, and what that means for 4
        // cycles on this many cores: the parallel wall time cannot go below
        // systems × cycle_cpu_s ÷ cores (run the bench alone for a clean figure).
        "cores": cores,
        "cycle_cpu_s": cycle_cpu_s.map(round),
        "parallel_cpu_floor_s": cycle_cpu_s.map(|c| round(c * f64::from(SYSTEMS) / cores as f64)),
    }))
}

/// Busy CPU seconds of the whole machine so far (user + nice + system + irq + softirq +
/// steal from `/proc/stat`), or `None` when unreadable.
fn busy_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum::<u64>();
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(busy as f64 / hz)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
