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
        other => anyhow::bail!(
            "unknown benchmark {other:?}; known: {}",
            crate::bench::NAMES.join(", ")
        ),
    };
    println!("{report}");
    Ok(Outcome::Ok)
}
