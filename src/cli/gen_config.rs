//! `spm gen-config`: print (or write) the commented default configuration.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::{Globals, Outcome};
use crate::config::DEFAULT_TOML;

/// Arguments of `spm gen-config`.
#[derive(Debug, Args)]
pub struct GenConfigArgs {
    /// Write to this file instead of stdout (refuses to overwrite an existing file).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Print the default configuration file.
pub fn run(args: GenConfigArgs, _globals: &Globals) -> anyhow::Result<Outcome> {
    match args.output {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(DEFAULT_TOML.as_bytes())
                .context("cannot write to stdout")?;
        }
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| {
                    format!(
                        "cannot create {} (it must not exist yet; remove it or pick another name)",
                        path.display()
                    )
                })?;
            f.write_all(DEFAULT_TOML.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(Outcome::Ok)
}
