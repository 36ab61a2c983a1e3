//! `spm ansible run`: run a playbook with the Ansible executor, for operators.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::cli::{Globals, Outcome};
use crate::services::ansible::{
    AnsibleConfig, AnsibleRunner, HostResult, InventoryHost, PlaybookResult, RunOptions, RunStatus,
};

/// `spm ansible ...`
#[derive(Debug, Args)]
pub struct AnsibleArgs {
    #[command(subcommand)]
    command: AnsibleCommand,
}

#[derive(Debug, Subcommand)]
enum AnsibleCommand {
    /// Run a playbook and print per-host results (exit 1 when a host failed).
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Playbook file; a bare name is also looked up in scripts/ansible/.
    playbook: PathBuf,
    /// A target host, `NAME=ADDRESS` or just `NAME` (repeatable).
    #[arg(long = "host", value_name = "NAME=ADDR")]
    hosts: Vec<String>,
    /// A UYUNI system by profile name or id, resolved through the database (last sync)
    /// and the `[ansible]` overrides (repeatable; combines with --host).
    #[arg(long = "system", value_name = "NAME|ID")]
    systems: Vec<String>,
    /// An existing inventory file or directory instead of --host / --system.
    #[arg(long, conflicts_with_all = ["hosts", "systems"])]
    inventory: Option<PathBuf>,
    /// Check mode: report what would change, change nothing.
    #[arg(long)]
    check: bool,
    /// Show differences of changed files.
    #[arg(long)]
    diff: bool,
    /// Limit the run to a host pattern.
    #[arg(long)]
    limit: Option<String>,
    /// Extra variables: a JSON object, or @FILE holding one.
    #[arg(long, value_name = "JSON")]
    extra_vars: Option<String>,
    /// Hosts in parallel.
    #[arg(long)]
    forks: Option<u32>,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Connection plugin for every host (e.g. `local`, `ssh`).
    #[arg(long)]
    connection: Option<String>,
    /// Run only tasks with this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `spm ansible ...` with the `[ansible]` settings (program, playbook directory,
/// timeouts, default forks and connection).
pub fn run(args: AnsibleArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let s = &config.ansible;
    let runner = AnsibleConfig {
        program: s.program.clone(),
        playbook_dir: Some(s.playbook_dir(&config.scripts.scripts_dir)),
        default_timeout_secs: s.timeout_secs,
        kill_grace_secs: s.kill_grace_secs,
    };
    match args.command {
        AnsibleCommand::Run(mut run) => {
            run.forks = run.forks.or(s.forks);
            run.connection = run.connection.or_else(|| s.connection.clone());
            let systems = if run.systems.is_empty() {
                Vec::new()
            } else {
                resolve_systems(&config, &run.systems)?
            };
            run_playbook(run, systems, runner)
        }
    }
}

/// Inventory hosts of UYUNI systems given by name or id, from the database.
fn resolve_systems(
    config: &crate::config::Config,
    specs: &[String],
) -> anyhow::Result<Vec<InventoryHost>> {
    let store = super::sync::open_store(config)?;
    let ex = crate::engine::ansible::AnsibleExecutor::from_config(config);
    let mut out = Vec::new();
    for spec in specs {
        let spec2 = spec.clone();
        let found = store
            .read_blocking(move |c| match spec2.parse::<i64>() {
                Ok(id) => crate::store::systems::addresses_by_id(c, &[id]),
                Err(_) => crate::store::systems::addresses_by_name(c, &spec2),
            })
            .with_context(|| format!("looking up --system {spec}"))?;
        match found.as_slice() {
            [sys] => out.push(ex.system_host(sys)),
            [] => bail!("--system {spec}: no such system in the database (run `spm sync`)"),
            many => bail!(
                "--system {spec}: {} systems have that name (ids {}); give the id",
                many.len(),
                many.iter()
                    .map(|s| s.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

fn parse_host(spec: &str) -> anyhow::Result<InventoryHost> {
    let (name, address) = match spec.split_once('=') {
        Some((name, address)) => (name, address),
        None => (spec, spec),
    };
    if name.is_empty() || address.is_empty() {
        bail!("--host {spec:?}: expected NAME=ADDRESS or NAME");
    }
    Ok(InventoryHost::new(name, address))
}

fn parse_extra_vars(text: &str) -> anyhow::Result<Map<String, Value>> {
    let (source, text) = match text.strip_prefix('@') {
        Some(path) => (
            format!("--extra-vars file {path}"),
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --extra-vars file {path}"))?,
        ),
        None => ("--extra-vars".to_string(), text.to_string()),
    };
    match serde_json::from_str(&text).with_context(|| format!("{source} is not valid JSON"))? {
        Value::Object(map) => Ok(map),
        _ => bail!("{source} must be a JSON object"),
    }
}

fn run_playbook(
    args: RunArgs,
    systems: Vec<InventoryHost>,
    config: AnsibleConfig,
) -> anyhow::Result<Outcome> {
    let mut hosts = args
        .hosts
        .iter()
        .map(|h| parse_host(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    hosts.extend(systems);
    if hosts.is_empty() && args.inventory.is_none() {
        bail!("give at least one --host NAME=ADDR, --system NAME|ID or an --inventory");
    }
    let extra_vars = match &args.extra_vars {
        Some(text) => parse_extra_vars(text)?,
        None => Map::new(),
    };
    let cancel = CancellationToken::new();
    let opts = RunOptions {
        hosts,
        inventory: args.inventory,
        extra_vars,
        check: args.check,
        diff: args.diff,
        limit: args.limit,
        forks: args.forks,
        timeout_secs: args.timeout,
        connection: args.connection,
        tags: args.tags,
        cancel: Some(cancel.clone()),
        ..RunOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let runner = AnsibleRunner::new(config);
    let result = runtime.block_on(async {
        let interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.cancel();
            }
        });
        runner.run_playbook(&args.playbook, opts).await
    });
    let result = result.with_context(|| format!("running playbook {}", args.playbook.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).context("encoding the result as JSON")?
        );
    } else {
        print_table(&result);
    }
    Ok(match result.status {
        RunStatus::Succeeded => Outcome::Ok,
        RunStatus::Failed => Outcome::No,
    })
}

fn print_table(result: &PlaybookResult) {
    println!(
        "playbook {}{}: {} (rc {}), {} host(s), {} failed/unreachable, {} ms",
        result.playbook.display(),
        if result.check { " [check]" } else { "" },
        match result.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        },
        result
            .rc
            .map_or_else(|| "none".to_string(), |c| c.to_string()),
        result.hosts.len(),
        result.failed_count(),
        result.elapsed_ms,
    );
    println!(
        "{:<24} {:<12} {:>4} {:>7} {:>6} {:>7} {:>7}  FAILED TASK / MESSAGE",
        "HOST", "STATUS", "OK", "CHANGED", "FAILED", "UNREACH", "SKIPPED"
    );
    for h in &result.hosts {
        println!(
            "{:<24} {:<12} {:>4} {:>7} {:>6} {:>7} {:>7}  {}",
            h.host,
            format!("{:?}", h.status).to_lowercase(),
            h.ok,
            h.changed,
            h.failed,
            h.unreachable,
            h.skipped,
            failure_text(h),
        );
    }
}

fn failure_text(h: &HostResult) -> String {
    match (&h.failed_task, &h.message) {
        (Some(task), Some(msg)) => {
            let msg = msg.lines().next().unwrap_or("");
            format!("{task}: {msg}")
        }
        (Some(task), None) => task.clone(),
        _ => match &h.report {
            // The shipped playbooks report hosts of another OS family as skipped.
            Some(report) if report["skipped"] == Value::Bool(true) => format!(
                "skipped: {}",
                report["reason"].as_str().unwrap_or("not applicable")
            ),
            _ => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specs_parse() {
        let h = parse_host("web1=10.0.0.5").unwrap();
        assert_eq!(
            (h.name.as_str(), h.address.as_deref()),
            ("web1", Some("10.0.0.5"))
        );
        let h = parse_host("web2").unwrap();
        assert_eq!(h.address.as_deref(), Some("web2"));
        assert!(parse_host("=x").is_err());
        assert!(parse_host("x=").is_err());
    }

    #[test]
    fn extra_vars_must_be_an_object() {
        assert_eq!(parse_extra_vars(r#"{"a": 1}"#).unwrap()["a"], 1);
        assert!(parse_extra_vars("[1]").is_err());
        assert!(parse_extra_vars("{oops").is_err());
        assert!(parse_extra_vars("@/nonexistent/vars.json").is_err());
    }
}
