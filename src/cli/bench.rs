//! `spm bench <name> [--json]`: run a named benchmark and print its figures.

use anyhow::Context as _;

use super::Outcome;
use crate::bench;

/// Arguments of `spm bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Benchmark name (see `bench::NAMES`).
    pub name: String,
    /// Print one JSON object.
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
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let figures = match args.name.as_str() {
        "host" => bench::host::run()?,
        "test" => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let mut p = bench::test::BenchParams::default();
            if args.quick {
                p.advisories = 20;
            }
            rt.block_on(bench::test::run_bench(p))?
        }
        "uyuni" => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let mut p = bench::uyuni::BenchParams::default();
            if args.quick {
                p.calls_fast = 500;
                p.rounds_slow = 10;
            }
            rt.block_on(bench::uyuni::run(p))?
        }
        "sync" => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
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
            "unknown benchmark `{other}` (available: {})",
            bench::NAMES.join(", ")
        ),
    };
    if args.json {
        println!("{figures}");
    } else if let Some(obj) = figures.as_object() {
        for (k, v) in obj {
            println!("{k:<22} {v}");
        }
    } else {
        println!("{figures}");
    }
    Ok(Outcome::Ok)
}
