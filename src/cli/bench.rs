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
    /// Rows to seed (default: the benchmark's own, 10,000 for `api`).
    #[arg(long)]
    items: Option<usize>,
    /// Concurrent clients (default 50 for `api`).
    #[arg(long)]
    clients: Option<usize>,
    /// Total requests (default 20,000 for `api`).
    #[arg(long)]
    requests: Option<usize>,
}

/// Run `spm bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    let figures = crate::bench::run(
        &args.name,
        crate::bench::Sizes {
            items: args.items,
            clients: args.clients,
            requests: args.requests,
        },
    )?;
    if args.json {
        println!("{figures}");
    } else {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(Outcome::Ok)
}
