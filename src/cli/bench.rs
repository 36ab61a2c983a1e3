//! `spm bench <name> --json`: run a named benchmark and print one JSON object.

use anyhow::Context as _;
use clap::Args;

use super::Outcome;

/// Arguments of `spm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark name (`uyuni`).
    pub name: String,
    /// Print JSON (the only format; accepted for symmetry with read commands).
    #[arg(long)]
    pub json: bool,
    /// Fewer iterations, for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// `sync`: relevant errata (small fleets) or catalogue size (default 634).
    #[arg(long)]
    pub errata: Option<usize>,
    /// `sync`: systems in scope (default 2).
    #[arg(long)]
    pub systems: Option<usize>,
    /// `sync`: simulated latency per call in ms (default 50).
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// `sync`: UYUNI calls in flight (default 10).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Run `spm bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = match args.name.as_str() {
        "uyuni" => {
            let mut p = crate::bench::uyuni::BenchParams::default();
            if args.quick {
                p.calls_fast = 500;
                p.rounds_slow = 10;
            }
            rt.block_on(crate::bench::uyuni::run(p))?
        }
        "sync" => {
            let d = crate::bench::sync::SyncBenchParams::default();
            let p = crate::bench::sync::SyncBenchParams {
                errata: args.errata.unwrap_or(d.errata),
                systems: args.systems.unwrap_or(d.systems),
                latency_ms: args.latency_ms.unwrap_or(d.latency_ms),
                workers: args.workers.unwrap_or(d.workers),
                ..d
            };
            rt.block_on(crate::bench::sync::run(p))?
        }
        other => anyhow::bail!(
            "unknown benchmark {other:?}; known: {}",
            crate::bench::NAMES.join(", ")
        ),
    };
    println!("{report}");
    Ok(Outcome::Ok)
}
