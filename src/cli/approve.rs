//! `spm approve`, `spm reject`, `spm snooze` and `spm approvals pending|history|expire`.
//!
//! The actor is `cli:$USER` (the OS user running the command), source address `local`.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Globals, Outcome};
use crate::engine::approvals::{self, Actor, Decision, Rules};
use crate::store::{Store, approvals as approvals_store};

/// `spm approve <queue-id>...`
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Queue items to approve (several = one all-or-nothing batch).
    #[arg(required = true, value_name = "QUEUE_ID")]
    pub ids: Vec<i64>,
    /// Optional comment recorded with the approval.
    #[arg(long)]
    pub reason: Option<String>,
    /// The test whose evidence you reviewed (default: the item's last test).
    #[arg(long, value_name = "TEST_ID")]
    pub evidence_test: Option<i64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `spm reject <queue-id> --reason ...`
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// Queue item to reject.
    #[arg(value_name = "QUEUE_ID")]
    pub id: i64,
    /// Why (required).
    #[arg(long)]
    pub reason: Option<String>,
    /// The test whose evidence you reviewed (default: the item's last test).
    #[arg(long, value_name = "TEST_ID")]
    pub evidence_test: Option<i64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `spm snooze <queue-id> --until ... --reason ...`
#[derive(Debug, Args)]
pub struct SnoozeArgs {
    /// Queue item to snooze.
    #[arg(value_name = "QUEUE_ID")]
    pub id: i64,
    /// Back to pending at: RFC 3339 time, date (UTC midnight) or duration (12h, 7d, 2w).
    #[arg(long)]
    pub until: String,
    /// Why (required).
    #[arg(long)]
    pub reason: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `spm approvals ...`
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// What to show or do.
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

/// `spm approvals` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Items waiting for a decision.
    Pending {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every decision on one queue item.
    History {
        /// Queue item.
        #[arg(value_name = "QUEUE_ID")]
        id: i64,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Return items whose snooze ended to pending_approval now (the server does this on
    /// its own every minute).
    Expire {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn open(globals: &Globals) -> anyhow::Result<(Store, Rules)> {
    let config = globals.load_config()?;
    let store = Store::open(&config.database.path)?;
    Ok((
        store,
        Rules {
            four_eyes: config.approvals.four_eyes,
        },
    ))
}

fn print_decided(verb: &str, d: &[approvals::Decided], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(d)?);
    } else {
        for x in d {
            println!(
                "{verb} queue item {} ({} for {}): now {} (approval #{}, evidence test {})",
                x.item.id,
                x.item.advisory,
                x.item.os,
                x.item.status,
                x.approval_id,
                x.evidence_test_id
                    .map_or_else(|| "none".to_string(), |t| t.to_string())
            );
        }
    }
    Ok(())
}

/// Run `spm approve`.
pub fn run_approve(args: ApproveArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let (store, rules) = open(globals)?;
    let actor = Actor::cli();
    let decided = if args.ids.len() == 1 {
        vec![
            approvals::decide(
                &store,
                args.ids[0],
                &Decision::Approve {
                    reason: args.reason.clone(),
                },
                args.evidence_test,
                &actor,
                rules,
            )
            .with_context(|| format!("cannot approve queue item {}", args.ids[0]))?,
        ]
    } else {
        if args.evidence_test.is_some() {
            anyhow::bail!("--evidence-test names one test; approve one queue item with it");
        }
        approvals::approve_batch(&store, &args.ids, args.reason.as_deref(), &actor, rules)
            .context("cannot approve the batch (nothing was approved)")?
    };
    print_decided("approved", &decided, args.json)?;
    Ok(Outcome::Ok)
}

/// Run `spm reject`.
pub fn run_reject(args: RejectArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let (store, rules) = open(globals)?;
    let decision = Decision::Reject {
        reason: args.reason.unwrap_or_default(),
    };
    let d = approvals::decide(
        &store,
        args.id,
        &decision,
        args.evidence_test,
        &Actor::cli(),
        rules,
    )
    .with_context(|| format!("cannot reject queue item {}", args.id))?;
    print_decided("rejected", &[d], args.json)?;
    Ok(Outcome::Ok)
}

/// Run `spm snooze`.
pub fn run_snooze(args: SnoozeArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let until = approvals::parse_until(&args.until, chrono::Utc::now())
        .with_context(|| format!("cannot snooze queue item {}", args.id))?;
    let (store, rules) = open(globals)?;
    let decision = Decision::Snooze {
        until,
        reason: args.reason.unwrap_or_default(),
    };
    let d = approvals::decide(&store, args.id, &decision, None, &Actor::cli(), rules)
        .with_context(|| format!("cannot snooze queue item {}", args.id))?;
    print_decided("snoozed", &[d], args.json)?;
    Ok(Outcome::Ok)
}

/// Run `spm approvals ...`.
pub fn run_approvals(args: ApprovalsArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let (store, _) = open(globals)?;
    match args.command {
        ApprovalsCommand::Pending { json } => {
            let rows = store.read_blocking(approvals_store::pending)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no items pending approval");
            } else {
                println!(
                    "{:>6}  {:<22} {:<7} {:>5}  {:<8} {:>8}  {:<8} synopsis",
                    "id", "advisory", "os", "score", "severity", "hours", "test"
                );
                for r in rows {
                    println!(
                        "{:>6}  {:<22} {:<7} {:>5}  {:<8} {:>8.1}  {:<8} {}",
                        r.id,
                        r.advisory,
                        r.os,
                        r.score,
                        r.severity,
                        r.hours_pending.unwrap_or(0.0),
                        r.last_test_id.map_or_else(|| "-".into(), |t| t.to_string()),
                        r.synopsis
                    );
                }
            }
        }
        ApprovalsCommand::History { id, json } => {
            let rows = store.read_blocking(|c| approvals_store::history(c, id))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no decisions recorded for queue item {id}");
            } else {
                for r in rows {
                    println!(
                        "{}  {:<9} by {} from {}{}{}",
                        r.created_at,
                        r.action,
                        r.actor,
                        r.source_addr.as_deref().unwrap_or("-"),
                        r.snooze_until
                            .as_deref()
                            .map(|u| format!(" until {u}"))
                            .unwrap_or_default(),
                        r.reason
                            .as_deref()
                            .map(|x| format!(": {x}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        ApprovalsCommand::Expire { json } => {
            let woken = approvals::expire_snoozes(&store, chrono::Utc::now())
                .context("cannot expire snoozes")?;
            if json {
                println!("{}", serde_json::json!({ "woken": woken }));
            } else {
                println!("{} snoozed item(s) back to pending_approval", woken.len());
            }
        }
    }
    Ok(Outcome::Ok)
}
