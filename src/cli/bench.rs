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
