//! `spm compliance [--by policy|env|os]`, `spm compliance scan`, `spm compliance advisory [CVE]`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use super::{Globals, Outcome};
use crate::engine::compliance;
use crate::engine::rollout::policy::{self, LoadedPolicy};
use crate::store::{Store, compliance as store};

/// Arguments of `spm compliance`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ComplianceArgs {
    /// Roll up by policy, environment or OS (default: one line per system).
    #[arg(long, value_enum)]
    pub by: Option<By>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// `scan` or `advisory`.
    #[command(subcommand)]
    pub command: Option<ComplianceCommand>,
}

/// Roll-up dimension.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum By {
    /// Per policy.
    Policy,
    /// Per environment.
    Env,
    /// Per OS.
    Os,
}

/// `spm compliance` subcommands.
#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Re-read relevance from UYUNI for every system the policies target.
    Scan {
        /// Policy files or directories (default: the configured policies directory).
        paths: Vec<PathBuf>,
        /// Scan an in-process simulated UYUNI instead of `[uyuni]`.
        #[arg(long)]
        sim: bool,
        /// Fleet file for `--sim`.
        #[arg(long, requires = "sim", value_name = "FILE")]
        sim_fleet: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A CVE's errata and the systems still affected; without a CVE, the known CVEs.
    Advisory {
        /// CVE id, e.g. CVE-2024-5535.
        cve: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<LoadedPolicy>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read policies directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "lua"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        anyhow::bail!(
            "no policy files found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = Vec::new();
    for f in files {
        out.push(policy::load_policy(&f).await.context("invalid policy")?);
    }
    Ok(out)
}

/// Run `spm compliance …`.
pub fn run(args: ComplianceArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let db = Store::open(&config.database.path)?;
    match args.command {
        Some(ComplianceCommand::Scan {
            paths,
            sim,
            sim_fleet,
            json,
        }) => {
            let paths = if paths.is_empty() {
                vec![config.scripts.policies_dir.clone()]
            } else {
                paths
            };
            let fleet = sim.then(|| {
                sim_fleet.map_or(
                    crate::sim::FleetSource::Default,
                    crate::sim::FleetSource::File,
                )
            });
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let summary = rt.block_on(async {
                let policies = load_all(&paths).await?;
                let (client, _sim) = super::run::connect(fleet, &config).await?;
                compliance::scan(&client, &db, &policies)
                    .await
                    .context("compliance scan failed")
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "scanned {} system(s) for {}: {} compliant, {} non-compliant",
                    summary.systems,
                    summary.policies.join(", "),
                    summary.compliant,
                    summary.non_compliant
                );
            }
        }
        Some(ComplianceCommand::Advisory { cve, json }) => match cve {
            Some(cve) => {
                let a = db
                    .read_blocking(|c| store::advisory(c, &cve))?
                    .with_context(|| format!("no known erratum fixes {cve}"))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&a)?);
                } else {
                    println!("{}: fixed by {} erratum/errata", a.cve, a.errata.len());
                    for e in &a.errata {
                        println!("  {:<20} {:<8} {}", e.advisory, e.severity, e.synopsis);
                    }
                    println!("affected systems: {}", a.affected_systems.len());
                    for s in &a.affected_systems {
                        println!("  {:<24} needs {}", s.name, s.advisory);
                    }
                }
            }
            None => {
                let list = db.read_blocking(|c| store::list_cves(c, 1000))?;
                if json {
                    let v: Vec<_> = list
                        .iter()
                        .map(|(c, n)| serde_json::json!({"cve": c, "errata": n}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    for (c, n) in list {
                        println!("{c:<20} {n} erratum/errata");
                    }
                }
            }
        },
        None => {
            let records = db.read_blocking(store::list)?;
            match args.by {
                Some(by) => {
                    let key = match by {
                        By::Policy => "policy",
                        By::Env => "env",
                        By::Os => "os",
                    };
                    let r = compliance::rollup(&records, key);
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                    } else {
                        println!(
                            "{:<24} {:>7} {:>9} {:>13} {:>7} {:>8}",
                            key, "systems", "compliant", "non_compliant", "unknown", "percent"
                        );
                        for g in r {
                            println!(
                                "{:<24} {:>7} {:>9} {:>13} {:>7} {:>8}",
                                g.key,
                                g.systems,
                                g.compliant,
                                g.non_compliant,
                                g.unknown,
                                g.percent
                                    .map_or_else(|| "-".to_string(), |p| format!("{p:.1}%"))
                            );
                        }
                    }
                }
                None if args.json => println!("{}", serde_json::to_string_pretty(&records)?),
                None => {
                    for r in records {
                        println!(
                            "{:<24} {:<14} {:<20} pending {:>3} errata, {:>3} CVEs  scanned {}  patched {}",
                            r.name,
                            r.status,
                            r.policy_id.as_deref().unwrap_or("-"),
                            r.pending_errata.len(),
                            r.pending_cves.len(),
                            r.last_scanned.as_deref().unwrap_or("never"),
                            r.last_patched.as_deref().unwrap_or("never")
                        );
                    }
                }
            }
        }
    }
    Ok(Outcome::Ok)
}
