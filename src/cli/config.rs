//! `spm config show`: the effective configuration with secrets redacted.

use clap::{Args, Subcommand};

use super::{Globals, Outcome};

/// Arguments of `spm config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `spm config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the merged configuration (file, environment, flags); secrets print as ***.
    Show {
        /// JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

/// Run `spm config …`.
pub fn run(args: ConfigArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    match args.command {
        ConfigCommand::Show { json } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&config)?);
            } else {
                if let Some(f) = &config.file {
                    println!("# loaded from {}", f.display());
                }
                print!("{}", config.to_redacted_toml());
            }
        }
    }
    Ok(Outcome::Ok)
}
