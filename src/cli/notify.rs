//! `spm notify`: test the channels, list and read notifications.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{Globals, Outcome};
use crate::engine::notify::Notifier;
use crate::store::Store;
use crate::store::notifications::{self as db, ListFilter};

/// `spm notify …`
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NotifyCommand,
}

/// Notification subcommands.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message to every configured channel and report per channel.
    Test {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List notifications, newest first.
    List {
        /// Only unread ones.
        #[arg(long)]
        unread: bool,
        /// Only this event type.
        #[arg(long)]
        event: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one notification with its deliveries and mark it read.
    Read {
        /// Notification id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run `spm notify`.
pub fn run(args: NotifyArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let store = Store::open(&config.database.path)?;
    match args.command {
        NotifyCommand::Test { json } => {
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let reports = rt.block_on(async {
                // Template problems are logged by `Notifier::new`; the message then uses a
                // fallback text, which is still a valid channel test.
                Notifier::from_config(store, &config)?.send_test().await
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else if reports.is_empty() {
                println!(
                    "no notification channels configured ([notify.smtp], [[notify.webhooks]])"
                );
            } else {
                for r in &reports {
                    match &r.error {
                        None => println!("ok      {:<8} {}", r.channel, r.target),
                        Some(e) => println!("FAILED  {:<8} {}: {e}", r.channel, r.target),
                    }
                }
            }
            let ok = !reports.is_empty() && reports.iter().all(|r| r.ok);
            Ok(if ok { Outcome::Ok } else { Outcome::No })
        }
        NotifyCommand::List {
            unread,
            event,
            limit,
            offset,
            json,
        } => {
            let filter = ListFilter {
                unread_only: unread,
                event,
                severity: None,
                limit: Some(limit),
                offset: Some(offset),
            };
            let rows = store.read_blocking(|c| db::list(c, &filter))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no notifications");
            } else {
                for n in &rows {
                    println!(
                        "{:>6} {} {:<8} {:<20} {}{}",
                        n.id,
                        n.created_at,
                        n.severity,
                        n.event,
                        if n.read { "  " } else { "* " },
                        n.subject
                    );
                }
            }
            Ok(Outcome::Ok)
        }
        NotifyCommand::Read { id, json } => {
            let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
            store.write_blocking(|tx| db::mark_read(tx, id, &by))?;
            let (n, deliveries) =
                store.read_blocking(|c| Ok((db::get(c, id)?, db::deliveries(c, id)?)))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"notification": n, "deliveries": deliveries})
                    )?
                );
            } else {
                println!("#{} {} [{}] {}", n.id, n.event, n.severity, n.created_at);
                println!("Subject: {}\n\n{}", n.subject, n.body.trim_end());
                if !deliveries.is_empty() {
                    println!();
                    for d in &deliveries {
                        println!(
                            "delivery {:<8} {:<30} {:<8} attempts={}{}",
                            d.channel,
                            d.target,
                            d.status,
                            d.attempts,
                            d.last_error
                                .as_deref()
                                .map(|e| format!(" error: {e}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(Outcome::Ok)
        }
    }
}
