//! `spm run <policy.lua> [--dry-run] [--sim]`, `spm run status [id]`, `spm run cancel <id>`.
//!
//! Exit codes: 0 the run completed (failures within budget), 1 the error budget tripped or
//! the run was cancelled, 2 an error (bad policy, UYUNI unreachable, another run active).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Globals, Outcome};
use crate::engine::approvals::Actor;
use crate::engine::rollout::execute::{self, Progress, RunOptions};
use crate::engine::rollout::plan::Plan;
use crate::engine::rollout::policy;
use crate::engine::rollout::rollback;
use crate::engine::state::RunStatus;
use crate::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use crate::store::audit::{self, AuditEntry};
use crate::store::{Store, runs};

/// Arguments of `spm run`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunArgs {
    /// Policy file (e.g. policies/rhel9-baseline.lua).
    pub policy: Option<PathBuf>,
    /// Print the plan and stop; changes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run against an in-process simulated UYUNI instead of `[uyuni]` (default fleet;
    /// actions finish at once).
    #[arg(long)]
    pub sim: bool,
    /// Fleet file for `--sim` (format of `spm sim --fleet`).
    #[arg(long, requires = "sim", value_name = "FILE")]
    pub sim_fleet: Option<PathBuf>,
    /// Print the plan / summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// `status` or `cancel`.
    #[command(subcommand)]
    pub command: Option<RunCommand>,
}

/// `spm run` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Latest runs, or one run with its hosts.
    Status {
        /// Run id.
        id: Option<i64>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Roll back failed or chosen hosts of a run (package strategy through UYUNI).
    Rollback {
        /// Run id.
        id: i64,
        /// Every failed host of the run.
        #[arg(long, conflicts_with = "host", required_unless_present = "host")]
        failed: bool,
        /// A host (profile name) to roll back; repeatable.
        #[arg(long, value_name = "NAME")]
        host: Vec<String>,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a run: no new host starts; hosts in flight finish.
    Cancel {
        /// Run id.
        id: i64,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Client settings from the configuration's `[uyuni]` section.
pub fn client_config(c: &crate::config::UyuniConfig) -> anyhow::Result<UyuniConfig> {
    let url = c
        .url
        .clone()
        .context("uyuni.url is not set (spm.toml [uyuni] url, or SPM_UYUNI__URL); or use --sim")?;
    let password = match (&c.password, &c.password_file) {
        (Some(p), _) => Secret::new(p.expose()),
        (None, Some(f)) => Secret::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read uyuni.password_file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        (None, None) => anyhow::bail!("uyuni.password (or uyuni.password_file) is not set"),
    };
    Ok(UyuniConfig {
        url,
        user: c.user.clone().unwrap_or_default(),
        password,
        ca_file: c.ca_file.clone(),
        insecure: c.insecure_skip_verify,
        timeout_ms: c.timeout_secs.saturating_mul(1000),
        max_concurrency: c.concurrency.max(1) as usize,
        retries: c.retries,
        poll_initial_ms: c.action_poll_initial_ms,
        poll_max_ms: c.action_poll_max_ms,
        ..UyuniConfig::default()
    })
}

/// Run `spm run …`.
pub fn run(args: RunArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let store = Store::open(&config.database.path)?;
    match args.command {
        Some(RunCommand::Status { id, json }) => status(&store, id, json),
        Some(RunCommand::Cancel { id, reason }) => {
            let actor = Actor::cli();
            let run = store
                .write_blocking(|tx| {
                    let run = runs::request_cancel(tx, id)?;
                    audit::append(
                        tx,
                        &AuditEntry {
                            actor: actor.identity.clone(),
                            source_addr: actor.source_addr.clone(),
                            action: "run.cancel".into(),
                            object_type: "patch_run".into(),
                            object_id: Some(id.to_string()),
                            reason: reason.clone(),
                            details: serde_json::json!({}),
                        },
                    )?;
                    Ok(run)
                })
                .with_context(|| format!("cannot cancel patch run {id}"))?;
            println!(
                "patch run {id} ({}) is {}: no new host will start; hosts in flight finish",
                run.policy_id, run.status
            );
            Ok(Outcome::Ok)
        }
        Some(RunCommand::Rollback {
            id,
            failed,
            host,
            reason,
            json,
        }) => {
            let selection = if failed {
                rollback::Selection::Failed
            } else {
                rollback::Selection::Hosts(host)
            };
            let run = store.read_blocking(|c| runs::get_run_brief(c, id))?;
            let os = store
                .read_blocking(|c| runs::get_run(c, id))?
                .plan
                .get("os")
                .and_then(|o| o.as_str())
                .unwrap_or("unknown")
                .to_string();
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let actor = Actor::cli();
            let out = rt
                .block_on(async {
                    let (client, _sim) = connect(None, &config).await?;
                    rollback::rollback(
                        &client,
                        &store,
                        id,
                        &os,
                        &selection,
                        &actor.identity,
                        &reason,
                    )
                    .await
                    .map_err(anyhow::Error::from)
                })
                .with_context(|| {
                    format!(
                        "cannot roll back hosts of patch run {id} ({})",
                        run.policy_id
                    )
                })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if out.is_empty() {
                println!("no host of run {id} matched; nothing rolled back");
            } else {
                for o in &out {
                    println!(
                        "{:<24} {}{}",
                        o.name,
                        o.status,
                        o.error
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(
                if out
                    .iter()
                    .all(|o| o.status == crate::engine::state::RunHostStatus::RolledBack)
                {
                    Outcome::Ok
                } else {
                    Outcome::No
                },
            )
        }
        None => {
            let path = args
                .policy
                .context("give a policy file (spm run policies/x.lua), or `status` / `cancel`")?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let sim = args.sim.then(|| {
                args.sim_fleet.map_or(
                    crate::sim::FleetSource::Default,
                    crate::sim::FleetSource::File,
                )
            });
            rt.block_on(start(path, args.dry_run, sim, args.json, &config, store))
        }
    }
}

/// A UYUNI client: an in-process simulator (`--sim`, instant actions) or `[uyuni]`.
/// Keep the returned handle alive as long as the client is used.
pub async fn connect(
    sim: Option<crate::sim::FleetSource>,
    config: &crate::config::Config,
) -> anyhow::Result<(UyuniClient, Option<crate::sim::SimHandle>)> {
    Ok(if let Some(fleet) = sim {
        let handle = crate::sim::SimServer::start(crate::sim::SimOptions {
            fleet,
            timings: crate::sim::clock::Timings::instant(),
            ..crate::sim::SimOptions::default()
        })
        .await
        .context("starting the simulator")?;
        let cfg = UyuniConfig {
            url: handle.url(),
            user: "admin".into(),
            password: Secret::new("admin"),
            ..UyuniConfig::default()
        };
        (UyuniClient::new(&cfg)?, Some(handle))
    } else {
        (UyuniClient::new(&client_config(&config.uyuni)?)?, None)
    })
}

async fn start(
    path: PathBuf,
    dry_run: bool,
    sim: Option<crate::sim::FleetSource>,
    json: bool,
    config: &crate::config::Config,
    store: Store,
) -> anyhow::Result<Outcome> {
    let loaded = policy::load_policy(&path).await.context("invalid policy")?;
    let (client, _sim) = connect(sim, config).await?;
    let plan = execute::build_plan(&client, &store, &loaded)
        .await
        .context("cannot plan the run")?;
    if dry_run {
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print_plan(&plan);
            println!("dry run: nothing was changed");
        }
        return Ok(Outcome::Ok);
    }
    let recovered = store
        .write(|tx| runs::recover_interrupted(tx))
        .await
        .context("recovering interrupted runs")?;
    for id in recovered {
        eprintln!("patch run {id} was left running by a stopped process: marked interrupted");
    }
    if !json {
        print_plan(&plan);
    }
    let actor = Actor::cli();
    let mut opts = RunOptions::manual(&actor.identity);
    opts.source_addr = actor.source_addr;
    opts.ansible = Some(Arc::new(
        crate::engine::ansible::AnsibleExecutor::from_config(config),
    ));
    opts.progress = Some(Arc::new(|p: &Progress| {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "run {} wave {}/{}: ok {} failed {} running {} pending {} | budget left: wave {}, run {} [{}]",
            p.run_id,
            p.wave,
            p.waves,
            p.ok,
            p.failed,
            p.running,
            p.pending,
            p.budget_left_wave,
            p.budget_left_run,
            p.phase
        );
    }));
    let summary = execute::execute(&client, &store, &loaded, plan, &opts)
        .await
        .with_context(|| format!("patch run of {} failed", loaded.path))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "patch run {} {}: {} ok, {} failed, {} skipped, {} cancelled{}",
            summary.run_id,
            summary.status,
            summary.ok,
            summary.failed,
            summary.skipped,
            summary.cancelled,
            summary
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    Ok(match summary.status {
        RunStatus::Completed => Outcome::Ok,
        _ => Outcome::No,
    })
}

fn print_plan(plan: &Plan) {
    println!(
        "plan for policy {} ({}): {} host(s) in {} wave(s), {} erratum/errata{}",
        plan.policy_id,
        plan.os,
        plan.hosts_total(),
        plan.waves.len(),
        plan.errata.len(),
        plan.window_closes_at
            .as_deref()
            .map(|w| format!(", window closes {w}"))
            .unwrap_or_default()
    );
    for e in &plan.errata {
        println!(
            "  apply {:<20} {:<8} on {:>4} host(s), approval #{} by {}",
            e.advisory,
            e.severity,
            e.hosts,
            e.approval_id.map_or_else(|| "?".into(), |a| a.to_string()),
            e.approved_by.as_deref().unwrap_or("?")
        );
    }
    for w in &plan.waves {
        let names: Vec<&str> = w.hosts.iter().map(|h| h.name.as_str()).collect();
        let shown = if names.len() > 8 {
            format!("{} … (+{})", names[..8].join(", "), names.len() - 8)
        } else {
            names.join(", ")
        };
        println!(
            "  wave {}{}: {} host(s): {shown}",
            w.index,
            if w.canary { " (canary)" } else { "" },
            w.hosts.len()
        );
    }
    for x in &plan.excluded_errata {
        println!(
            "  excluded erratum {} ({} host(s)): {}",
            x.advisory, x.hosts, x.reason
        );
    }
    for x in &plan.excluded_hosts {
        println!("  excluded host {}: {}", x.name, x.reason);
    }
}

fn status(store: &Store, id: Option<i64>, json: bool) -> anyhow::Result<Outcome> {
    match id {
        None => {
            let list = store.read_blocking(|c| runs::list_runs(c, 20))?;
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id, "policy_id": r.policy_id, "status": r.status,
                            "trigger": r.trigger, "hosts_total": r.hosts_total,
                            "hosts_ok": r.hosts_ok, "hosts_failed": r.hosts_failed,
                            "started_at": r.started_at, "completed_at": r.completed_at,
                            "error": r.error,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if list.is_empty() {
                println!("no patch runs yet");
            } else {
                for r in list {
                    println!(
                        "{:>5}  {:<24} {:<15} {}/{} ok, {} failed  started {}{}",
                        r.id,
                        r.policy_id,
                        r.status,
                        r.hosts_ok,
                        r.hosts_total,
                        r.hosts_failed,
                        r.started_at,
                        r.error.map(|e| format!("  ({e})")).unwrap_or_default()
                    );
                }
            }
        }
        Some(id) => {
            let (run, hosts) = store
                .read_blocking(|c| Ok((runs::get_run(c, id)?, runs::run_hosts(c, id)?)))
                .with_context(|| format!("cannot read patch run {id}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "run": run, "hosts": hosts })
                    )?
                );
            } else {
                println!(
                    "patch run {} of {} ({}): {} — wave {}/{}, {}/{} ok, {} failed{}",
                    run.id,
                    run.policy_id,
                    run.trigger,
                    run.status,
                    run.current_wave,
                    run.total_waves,
                    run.hosts_ok,
                    run.hosts_total,
                    run.hosts_failed,
                    run.error.map(|e| format!(" ({e})")).unwrap_or_default()
                );
                for h in hosts {
                    println!(
                        "  wave {:<2} {:<24} {:<12} {}{}",
                        h.wave,
                        h.system_name,
                        h.status,
                        h.errata.join(","),
                        h.error.map(|e| format!("  ({e})")).unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(Outcome::Ok)
}
