//! `spm bench <name> [--json]`: benchmarks that print figures.

use super::Outcome;
use crate::bench;

/// Arguments of `spm bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which benchmark (host).
    pub name: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Run `spm bench`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let figures = match args.name.as_str() {
        "host" => bench::host::run()?,
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
