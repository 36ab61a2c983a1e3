//! `spm bench <name> [--json]`: benchmarks that print figures.

use super::Outcome;
use crate::bench;

/// Arguments of `spm bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which benchmark (host, notify).
    pub name: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Run `spm bench`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let figures = match args.name.as_str() {
        "host" => bench::host::run()?,
        "notify" => tokio::runtime::Runtime::new()
            .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?
            .block_on(bench::notify::run(bench::notify::BenchParams::default()))?,
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
    }
    Ok(Outcome::Ok)
}
