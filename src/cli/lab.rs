//! `spm lab up|down|status`: real throwaway Debian systems for patch tests (root only).

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Globals, Outcome};
use crate::lab::{self, Lab, LabOptions};

/// Arguments of `spm lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// `spm lab` subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build (or restore from cache) the golden image and boot N systems; they keep running
    /// after this command returns, until `spm lab down`.
    Up {
        /// Number of systems (1–32).
        #[arg(long, default_value_t = 2)]
        systems: u32,
        /// Size of the sparse btrfs image in GiB.
        #[arg(long, default_value_t = 16)]
        image_gib: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop every system and remove every mount, loop device, namespace and process.
    Down,
    /// Show the systems, their addresses and boot ids. Exit 1 when no lab is up.
    Status {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run `spm lab …`.
pub fn run(args: LabArgs, _globals: &Globals) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Runtime::new().context("start async runtime")?;
    rt.block_on(async move {
        match args.command {
            LabCommand::Up {
                systems,
                image_gib,
                json,
            } => up(systems, image_gib, json).await,
            LabCommand::Down => {
                lab::down().await.context("lab down")?;
                println!("lab down: nothing left behind");
                Ok(Outcome::Ok)
            }
            LabCommand::Status { json } => status(json).await,
        }
    })
}

async fn up(n: u32, image_gib: u64, json: bool) -> anyhow::Result<Outcome> {
    let opts = LabOptions {
        image_gib,
        ..LabOptions::default()
    };
    // Ctrl-C (or SIGTERM) while starting drops the half-built lab, whose Drop tears it
    // down. The handlers are installed before anything is created.
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let lab = tokio::select! {
        r = Lab::up(n, opts) => r.context("lab up")?,
        _ = int.recv() => anyhow::bail!("interrupted; lab torn down"),
        _ = term.recv() => anyhow::bail!("terminated; lab torn down"),
    };
    let state = lab.keep();
    if json {
        println!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        println!(
            "lab up: {} systems in {:.1} s (golden image {}{})",
            state.systems.len(),
            state.up_secs,
            state.golden_key,
            if state.golden_cached {
                ", from cache"
            } else {
                ", built"
            }
        );
        for s in &state.systems {
            println!("  {:<12} {}", s.name, s.ip);
        }
    }
    Ok(Outcome::Ok)
}

async fn status(json: bool) -> anyhow::Result<Outcome> {
    let lab = match Lab::attach() {
        Ok(l) => l,
        Err(lab::LabError::NotUp(_)) => {
            let left = lab::leftovers();
            if json {
                println!("{}", serde_json::json!({ "up": false, "leftovers": left }));
            } else {
                println!("no lab is up");
                for l in &left {
                    println!("  left behind: {l}");
                }
            }
            return Ok(Outcome::No);
        }
        Err(e) => return Err(e).context("lab status"),
    };
    let systems = lab.status().await;
    let all_running = systems.iter().all(|s| s.running);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "up": true,
                "state": lab.state(),
                "systems": systems,
            }))?
        );
    } else {
        println!("lab up: {} systems, repo {}", systems.len(), lab.repo_url());
        for s in &systems {
            println!(
                "  {:<12} {:<12} {}",
                s.name,
                s.ip,
                s.boot_id.as_deref().unwrap_or("not running")
            );
        }
    }
    Ok(if all_running {
        Outcome::Ok
    } else {
        Outcome::No
    })
}
