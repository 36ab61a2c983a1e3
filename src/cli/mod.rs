//! Command line: one module per subcommand, dispatched from [`Command`].
//!
//! Exit codes: 0 ok, 1 "the answer is no" (a check failed, a budget tripped), 2 error.
//! Errors print their context chain on one line (`error: a: b: c`).
//!
//! A subcommand is one variant of [`Command`] plus one match arm in [`run`] calling
//! `<module>::run(args, &cli.globals)`; it loads the configuration with
//! [`Globals::load_config`] only if it needs it.

pub mod ansible;
pub mod approve;
pub mod bench;
pub mod check;
pub mod compliance;
pub mod config;
pub mod db;
pub mod gen_config;
pub mod lab;
pub mod notify;
pub mod queue;
pub mod run;
pub mod score;
pub mod serve;
pub mod sim;
pub mod spec;
pub mod sync;
pub mod test;
pub mod token;
pub mod types;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// What a command reports when it did not fail: success, or a well-formed "no".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: the command worked and the answer is no (check failed, budget tripped).
    No,
}

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "spm",
    version,
    about = "Security patch manager for UYUNI-managed Linux fleets",
    after_help = "Configuration: defaults < spm.toml (--config) < SPM_<SECTION>__<KEY> \
                  environment variables < --database / --set flags. `spm gen-config` prints \
                  every key. Logging: SPM_LOG=<filter> (e.g. debug, spm=trace)."
)]
pub struct Cli {
    /// Options every subcommand accepts.
    #[command(flatten)]
    pub globals: Globals,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Global options.
#[derive(Debug, Clone, Args)]
pub struct Globals {
    /// Configuration file (TOML). Default: ./spm.toml when present.
    #[arg(long, global = true, env = "SPM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database file (overrides database.path).
    #[arg(long, global = true, env = "SPM_DATABASE", value_name = "FILE")]
    pub database: Option<PathBuf>,
    /// Override any configuration key, e.g. --set uyuni.timeout_secs=30 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SPM_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Debug logging (when SPM_LOG is unset), including the effective configuration with
    /// secrets redacted.
    #[arg(long, global = true)]
    pub debug: bool,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl Globals {
    /// Load the configuration (file, environment, these flags) and log risky settings.
    pub fn load_config(&self) -> anyhow::Result<crate::config::Config> {
        let mut overrides = Vec::new();
        if let Some(db) = &self.database {
            overrides.push(("database.path".to_string(), db.display().to_string()));
        }
        overrides.extend(self.set.iter().cloned());
        let opts = crate::config::LoadOptions::from_process(self.config.clone(), overrides);
        let config = crate::config::Config::load(&opts).context("invalid configuration")?;
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
        tracing::debug!(
            file = ?config.file,
            "effective configuration:\n{}",
            config.to_redacted_toml()
        );
        Ok(config)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Database maintenance: migrate, status.
    Db(db::DbArgs),
    /// Print a commented configuration file with every default.
    GenConfig(gen_config::GenConfigArgs),
    /// Show the effective configuration (secrets redacted).
    Config(config::ConfigArgs),
    /// Check Lua scripts: headers, syntax, contracts, lints.
    Check(check::Args),
    /// Write LuaLS definitions (scripts/types/spm.meta.lua) and .luarc.json.
    Types(types::Args),
    /// Run script specs (tests/specs).
    Spec(spec::Args),
    /// Run Ansible playbooks with spm's executor.
    Ansible(ansible::AnsibleArgs),
    /// Run the service: HTTP API, metrics, health probes.
    Serve(serve::ServeArgs),
    /// Manage API tokens.
    Token(token::TokenArgs),
    /// Run a named benchmark and print one JSON object.
    Bench(bench::BenchArgs),
    /// Real throwaway Debian test systems (root only): up, down, status.
    Lab(lab::LabArgs),
    /// Serve a simulated UYUNI (XML-RPC, metrics) on loopback.
    Sim(sim::SimArgs),
    /// Notifications: test the channels, list and read.
    Notify(notify::NotifyArgs),
    /// Sync errata from UYUNI (then run the auto-queue rule).
    Sync(sync::SyncArgs),
    /// Explain the Success Score of an advisory.
    Score(score::ScoreArgs),
    /// The test queue: add, list, show, remove, priority.
    Queue(queue::QueueArgs),
    /// The test engine: next, run, status, show, abort.
    Test(test::TestArgs),
    /// Approve queue items for production (several ids = one all-or-nothing batch).
    Approve(approve::ApproveArgs),
    /// Reject a queue item (reason required).
    Reject(approve::RejectArgs),
    /// Snooze a queue item's approval until a time.
    Snooze(approve::SnoozeArgs),
    /// Pending approvals, decision history, snooze expiry.
    Approvals(approve::ApprovalsArgs),
    /// Run a patch policy (or `status` / `cancel` / `rollback` a run).
    Run(run::RunArgs),
    /// Compliance per system / policy / env / OS, scans and CVE advisories.
    Compliance(compliance::ComplianceArgs),
}

/// Parse the command line, run the command, and map the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.globals.log_format, cli.globals.debug);
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::No) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat, debug: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if debug {
        "debug"
    } else {
        "info,rusqlite_migration=warn"
    };
    let filter = EnvFilter::try_from_env("SPM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Db(args) => db::run(args, &cli.globals),
        Command::GenConfig(args) => gen_config::run(args, &cli.globals),
        Command::Config(args) => config::run(args, &cli.globals),
        Command::Check(a) => check::run(a),
        Command::Types(a) => types::run(a),
        Command::Spec(a) => spec::run(a),
        Command::Ansible(args) => ansible::run(args, &cli.globals),
        Command::Notify(args) => notify::run(args, &cli.globals),
        Command::Serve(args) => serve::run(args, &cli.globals),
        Command::Token(args) => token::run(args, &cli.globals),
        Command::Sim(args) => sim::run(args),
        Command::Sync(args) => sync::run(args, &cli.globals),
        Command::Score(args) => score::run(args, &cli.globals),
        Command::Queue(args) => queue::run(args, &cli.globals),
        Command::Bench(args) => bench::run(args),
        Command::Lab(args) => lab::run(args, &cli.globals),
        Command::Test(args) => test::run(args, &cli.globals),
        Command::Approve(args) => approve::run_approve(args, &cli.globals),
        Command::Reject(args) => approve::run_reject(args, &cli.globals),
        Command::Snooze(args) => approve::run_snooze(args, &cli.globals),
        Command::Approvals(args) => approve::run_approvals(args, &cli.globals),
        Command::Run(args) => run::run(args, &cli.globals),
        Command::Compliance(args) => compliance::run(args, &cli.globals),
    }
}
