//! `spm token create|list|revoke`: API tokens, stored hashed.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Globals, Outcome};
use crate::server::auth::{Role, create_token, validate_token_name};
use crate::store::audit::{self, AuditEntry};
use crate::store::{Store, tokens};

/// Arguments of `spm token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it once.
    Create {
        /// Unique name; audits record it as the actor.
        #[arg(long)]
        name: String,
        /// Role.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List tokens (never the secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name.
    Revoke {
        /// Token name.
        name: String,
    },
}

fn cli_actor() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_owned(),
    }
}

/// Run `spm token`.
pub fn run(args: TokenArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let store = Store::open(&config.database.path).context("opening the database")?;
    match args.action {
        TokenAction::Create { name, role } => {
            validate_token_name(&name).map_err(anyhow::Error::msg)?;
            let actor = cli_actor();
            let new = store
                .write_blocking(|tx| {
                    let new = create_token(tx, &name, role)?;
                    audit::append(
                        tx,
                        &AuditEntry {
                            actor: actor.clone(),
                            action: "token.create".into(),
                            object_type: "token".into(),
                            object_id: Some(name.clone()),
                            details: serde_json::json!({"role": role.as_str(), "prefix": new.info.prefix}),
                            ..Default::default()
                        },
                    )?;
                    Ok(new)
                })
                .with_context(|| format!("creating token {name:?}"))?;
            eprintln!(
                "created token {:?} with role {}; it is shown only once:",
                new.info.name, new.info.role
            );
            println!("{}", new.token);
        }
        TokenAction::List { json } => {
            let list = store
                .read_blocking(tokens::list)
                .context("listing tokens")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<24} {:<9} {:<13} {:<25} {:<25} REVOKED",
                    "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED"
                );
                for t in list {
                    println!(
                        "{:<24} {:<9} {:<13} {:<25} {:<25} {}",
                        t.name,
                        t.role,
                        t.prefix,
                        t.created_at,
                        t.last_used_at.as_deref().unwrap_or("-"),
                        t.revoked_at.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        TokenAction::Revoke { name } => {
            let actor = cli_actor();
            store
                .write_blocking(|tx| {
                    tokens::revoke(tx, &name)?;
                    audit::append(
                        tx,
                        &AuditEntry {
                            actor: actor.clone(),
                            action: "token.revoke".into(),
                            object_type: "token".into(),
                            object_id: Some(name.clone()),
                            ..Default::default()
                        },
                    )?;
                    Ok(())
                })
                .with_context(|| format!("revoking token {name:?}"))?;
            eprintln!("revoked token {name:?}");
        }
    }
    Ok(Outcome::Ok)
}
