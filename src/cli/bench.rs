//! `spm bench <name> [options] [--json]`: run a benchmark and print its figures as one JSON
//! object. Each benchmark is a subcommand with its own options.

use clap::{Args, Subcommand};

use super::Outcome;
use crate::bench;

/// Arguments of `spm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    which: Which,
    /// Print one JSON object on one line (the default output is the same JSON, pretty).
    #[arg(long, global = true)]
    json: bool,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
enum Which {
    /// HTTP API: `GET /api/v1/queue?limit=100` from concurrent clients.
    Api {
        /// Queue rows to seed.
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Total requests.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
    },
    /// Lua host: reload latency, primitive call cost, VM load time.
    Host,
    /// Notifications: raise and delivery throughput.
    Notify,
    /// Lab (root only): boot time, one real patch-test cycle, 4 cycles in parallel.
    Lab,
    /// Errata sync against the simulator: first sync and unchanged re-sync versus the
    /// latency floor, call plan, peak RSS.
    Sync {
        /// Relevant errata (small fleets) or catalogue size.
        #[arg(long, default_value_t = 634)]
        errata: usize,
        /// Systems in scope.
        #[arg(long, default_value_t = 2)]
        systems: usize,
        /// Simulated latency per call, ms.
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
        /// UYUNI calls in flight.
        #[arg(long, default_value_t = 10)]
        workers: usize,
        /// Fleets of more than 6 systems: production packages at most this many versions
        /// behind their newest (1 % of systems neglected and missing everything).
        #[arg(long, default_value_t = 3)]
        max_lag: u32,
    },
    /// Production rollout against the simulator: wall time versus waves × action time,
    /// UYUNI calls per wave, peak RSS.
    Rollout {
        /// Production systems in the simulated fleet.
        #[arg(long, default_value_t = 10_000)]
        systems: usize,
        /// Hosts per wave and in flight.
        #[arg(long, default_value_t = 200)]
        max_parallel: u32,
        /// Duration of one errata action, ms.
        #[arg(long, default_value_t = 200)]
        action_ms: u64,
    },
    /// Test engine: one test's wall time, and the speedup of 4 test systems over 1.
    Test {
        /// Advisories in the speedup run.
        #[arg(long, default_value_t = 100)]
        advisories: usize,
    },
    /// UYUNI client against the simulator: calls/s and overhead over the latency floor.
    Uyuni {
        /// Fewer iterations, for a quick look.
        #[arg(long)]
        quick: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))
}

/// Run `spm bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    let figures = match args.which {
        Which::Api {
            items,
            clients,
            requests,
        } => {
            let d = bench::api::Options::default();
            bench::api::run(&bench::api::Options {
                items,
                clients: clients.max(1),
                requests: requests.max(1),
                ..d
            })?
        }
        Which::Host => bench::host::run()?,
        Which::Notify => {
            runtime()?.block_on(bench::notify::run(bench::notify::BenchParams::default()))?
        }
        Which::Lab => runtime()?.block_on(bench::lab::run())?,
        Which::Test { advisories } => {
            runtime()?.block_on(bench::test::run_bench(bench::test::BenchParams {
                advisories: advisories.max(1),
                ..bench::test::BenchParams::default()
            }))?
        }
        Which::Rollout {
            systems,
            max_parallel,
            action_ms,
        } => runtime()?.block_on(bench::rollout::run(bench::rollout::Params {
            systems,
            max_parallel,
            action_ms,
        }))?,
        Which::Uyuni { quick } => {
            let mut p = bench::uyuni::BenchParams::default();
            if quick {
                p.calls_fast = 500;
                p.rounds_slow = 10;
            }
            runtime()?.block_on(bench::uyuni::run(p))?
        }
        Which::Sync {
            errata,
            systems,
            latency_ms,
            workers,
            max_lag,
        } => runtime()?.block_on(bench::sync::run(bench::sync::SyncBenchParams {
            errata,
            systems,
            latency_ms,
            workers,
            max_lag,
            ..bench::sync::SyncBenchParams::default()
        }))?,
    };
    if args.json {
        println!("{figures}");
    } else {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(Outcome::Ok)
}
