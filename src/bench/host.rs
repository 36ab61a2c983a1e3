//! `spm bench host`: reload latency, primitive call cost, VM + script set load time.
//!
//! Works on a generated script set in a temporary directory (one phase per phase name,
//! per-OS overrides, a library, a policy); `vm_load_ms` uses the shipped set under the
//! current directory when it has one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::host::contracts::Contracts;
use crate::host::limits::Limits;
use crate::host::reload::{ReloadOutcome, ScriptHost, WatchMode};
use crate::host::resolve::{OSES, PHASES};
use crate::host::scriptset::{self, ScriptSet};
use crate::host::services::Services;
use crate::host::vm::{self, Deadline};

const RELOADS: usize = 30;
const CALLS: usize = 200_000;
const LOADS: usize = 30;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn phase_source(name: &str, n: usize) -> String {
    format!(
        "---@spm api=1 kind=phase\nlocal util = require(\"bench.util\")\n\nreturn {{\n  name = \"{name}\",\n  timeout = \"5m\",\n  run = function(ctx)\n    return {{ ok = true, n = {n}, q = util.q(ctx.name or \"x\") }}\n  end,\n}}\n"
    )
}

fn write_set(root: &Path) -> anyhow::Result<()> {
    let w = |rel: &str, s: &str| -> anyhow::Result<()> {
        let p = root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, s).with_context(|| format!("writing {}", p.display()))
    };
    for ph in PHASES {
        w(&format!("phases/{ph}.lua"), &phase_source(ph, 0))?;
    }
    for os in OSES {
        w(&format!("phases/{os}/patch.lua"), &phase_source("patch", 1))?;
    }
    w(
        "scripts/lib/bench/util.lua",
        "---@spm api=1 kind=lib\nlocal M = {}\n\nfunction M.q(s)\n  return spm.shell.quote(s)\nend\n\nreturn M\n",
    )?;
    w(
        "policies/weekly.lua",
        "---@spm api=1 kind=policy\nreturn {\n  id = \"weekly\",\n  schedule = \"0 3 * * 0\",\n  waves = { { name = \"canary\", size = 1 } },\n}\n",
    )?;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn bench_reload(root: &Path) -> anyhow::Result<Vec<f64>> {
    let host = ScriptHost::open(root, Contracts::default()).await?;
    let _watch = host.watch(WatchMode::default())?;
    let mut events = host.subscribe();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut samples = Vec::new();
    for i in 0..RELOADS {
        let start = Instant::now();
        std::fs::write(root.join("phases/patch.lua"), phase_source("patch", i + 10))?;
        let want = host.current().generation + 1;
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .context("no reload within 5 s of saving a file")??;
            match ev {
                ReloadOutcome::Applied { generation } if generation >= want => break,
                ReloadOutcome::RolledBack { errors, .. } => {
                    anyhow::bail!("bench reload failed: {errors:?}")
                }
                _ => {}
            }
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

async fn bench_primitive() -> anyhow::Result<(f64, f64)> {
    let vm = vm::build(
        &Services::default(),
        Arc::new(Default::default()),
        &Limits::default(),
        Deadline::after(Duration::from_secs(120)),
        CancellationToken::new(),
    )
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let noop = vm.create_async_function(|_, ()| async { Ok(1) })?;
    vm.lua.globals().set("noop_async", noop)?;
    let f = vm.lua.load(
        "local n = ...\nlocal f = noop_async\nlocal s = 0\nfor _ = 1, n do s = s + f() end\nreturn s",
    );
    let f = f.into_function()?;
    let start = Instant::now();
    let _: i64 = f.call_async(CALLS).await?;
    let async_us = start.elapsed().as_secs_f64() * 1e6 / CALLS as f64;
    let g = vm
        .lua
        .load("local n = ...\nlocal q = spm.shell.quote\nfor _ = 1, n do q(\"nginx\") end");
    let g = g.into_function()?;
    let start = Instant::now();
    g.call_async::<()>(CALLS).await?;
    let sync_us = start.elapsed().as_secs_f64() * 1e6 / CALLS as f64;
    Ok((async_us, sync_us))
}

async fn bench_load(root: &Path) -> anyhow::Result<(Vec<f64>, usize)> {
    let files = scriptset::scan(root)?;
    let (sources, _) = scriptset::read_sources(&files);
    let mut samples = Vec::new();
    for _ in 0..LOADS {
        let start = Instant::now();
        let report = ScriptSet::load_sources(root, &Contracts::default(), 1, sources.clone()).await;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        if !report.is_ok() {
            let errs: Vec<String> = report.errors().map(|d| d.to_string()).collect();
            anyhow::bail!("script set under {} has errors: {errs:?}", root.display());
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok((samples, sources.len()))
}

/// Run the benchmark and return its figures.
pub fn run() -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir =
        TempDir(std::env::temp_dir().join(format!("spm-bench-host-{}", uuid::Uuid::new_v4())));
    write_set(&dir.0)?;
    rt.block_on(async {
        let reload = bench_reload(&dir.0).await?;
        let (async_us, sync_us) = bench_primitive().await?;
        let shipped = Path::new(".");
        let use_shipped = scriptset::scan(shipped)
            .map(|f| !f.is_empty())
            .unwrap_or(false);
        let load_root = if use_shipped {
            shipped
        } else {
            dir.0.as_path()
        };
        let (load, count) = bench_load(load_root).await?;
        Ok(serde_json::json!({
            "reload_p50_ms": percentile(&reload, 0.5),
            "reload_p95_ms": percentile(&reload, 0.95),
            "reload_samples": reload.len(),
            "reload_debounce_ms": crate::host::reload::DEFAULT_DEBOUNCE.as_millis() as u64,
            "primitive_call_us": async_us,
            "sync_primitive_call_us": sync_us,
            "vm_load_ms": percentile(&load, 0.5),
            "vm_load_p95_ms": percentile(&load, 0.95),
            "vm_load_scripts": count,
            "vm_load_set": if use_shipped { "shipped (./)" } else { "generated" },
        }))
    })
}
