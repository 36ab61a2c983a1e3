//! `spm bench <name> [--json]`: run a benchmark and print its figures.

use clap::Args;

use super::Outcome;

/// Arguments of `spm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark name (`api`).
    name: String,
    /// Print one JSON object (the default output is the same JSON, pretty-printed).
    #[arg(long)]
    json: bool,
}

/// Run `spm bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    let figures = crate::bench::run(&args.name)?;
    if args.json {
        println!("{figures}");
    } else {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(Outcome::Ok)
}
