//! Command line: one module per subcommand, dispatched from [`Command`].
//!
//! Exit codes: 0 ok, 1 "the answer is no" (a check failed, a budget tripped), 2 error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    about = "Security patch manager for UYUNI-managed Linux fleets"
)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./spm.toml when present.
    #[arg(long, global = true, env = "SPM_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
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
pub enum Command {}

/// Parse the command line, run the command, and map the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::No) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SPM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {}
}
