//! `spm bench <name> [--json]`: run a named benchmark and print its figures.

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use crate::bench;

/// Arguments of `spm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark name (see the error for the list).
    pub name: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Fewer iterations, for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// rollout: production systems in the simulated fleet.
    #[arg(long, default_value_t = 10_000)]
    pub systems: usize,
    /// rollout: hosts per wave and in flight.
    #[arg(long, default_value_t = 200)]
    pub max_parallel: u32,
    /// rollout: duration of one errata action, ms.
    #[arg(long, default_value_t = 200)]
    pub action_ms: u64,
}

/// Run `spm bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    let figures = match args.name.as_str() {
        "host" => bench::host::run()?,
        "uyuni" => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let mut p = bench::uyuni::BenchParams::default();
            if args.quick {
                p.calls_fast = 500;
                p.rounds_slow = 10;
            }
            rt.block_on(bench::uyuni::run(p))?
        }
        "rollout" => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(bench::rollout::run(bench::rollout::Params {
                systems: args.systems,
                max_parallel: args.max_parallel,
                action_ms: args.action_ms,
            }))?
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
