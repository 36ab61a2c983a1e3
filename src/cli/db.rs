//! `spm db migrate` and `spm db status`.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Globals, Outcome};
use crate::store::{Store, status};

/// Arguments of `spm db`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DbCommand,
}

/// `spm db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database or apply pending migrations (a no-op when up to date).
    Migrate {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Schema version, pending migrations and row counts; changes nothing.
    Status {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run `spm db …`.
pub fn run(args: DbArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let path = config.database.path;
    match args.command {
        DbCommand::Migrate { json } => {
            let before = if path.exists() {
                status::inspect(&path)?.schema_version
            } else {
                0
            };
            let store = Store::open(&path)?;
            let after = store
                .read_blocking(|c| status::collect(c, &path))
                .with_context(|| format!("cannot read database {}", path.display()))?;
            let applied: Vec<&String> = after
                .applied
                .iter()
                .skip(usize::try_from(before).unwrap_or(0))
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "path": after.path,
                        "from_version": before,
                        "schema_version": after.schema_version,
                        "applied": applied,
                    }))?
                );
            } else if applied.is_empty() {
                println!(
                    "database {}: up to date (schema version {})",
                    after.path, after.schema_version
                );
            } else {
                println!(
                    "database {}: schema version {} -> {} (applied {})",
                    after.path,
                    before,
                    after.schema_version,
                    applied
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(Outcome::Ok)
        }
        DbCommand::Status { json } => {
            let st = status::inspect(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("database        {}", st.path);
                println!(
                    "schema version  {} of {}{}",
                    st.schema_version,
                    st.latest_version,
                    if st.pending.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (pending: {}; run `spm db migrate`)",
                            st.pending.join(", ")
                        )
                    }
                );
                println!("journal mode    {}", st.journal_mode);
                println!("tables:");
                for t in &st.tables {
                    println!("  {:<26} {:>8}", t.table, t.rows);
                }
            }
            Ok(Outcome::Ok)
        }
    }
}
