//! `spm queue add|list|show|remove|priority`: the test queue.

use std::str::FromStr as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::sync::{actor, cli_scorer, open_store};
use super::{Globals, Outcome};
use crate::engine::queue::{self, AddRequest, QueueError};
use crate::engine::state::{QueueStatus, Status as _};
use crate::store::queue::QueueFilter;

/// Arguments of `spm queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: QueueCommand,
}

/// `spm queue` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Queue one or more advisories for testing (per OS; default: every OS each is
    /// relevant to). Newer advisories supersede older queued ones.
    Add {
        /// Advisory names.
        #[arg(required = true)]
        advisories: Vec<String>,
        /// Target OS (ubuntu, debian, rhel).
        #[arg(long)]
        os: Option<String>,
        /// Priority (higher first among equal scores).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        /// A note stored with the item.
        #[arg(long)]
        note: Option<String>,
        /// Test on every test system of the OS, not just one.
        #[arg(long)]
        all_systems: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List queue items in test order (score, priority, time).
    List {
        /// Only these statuses (repeatable).
        #[arg(long = "status")]
        statuses: Vec<String>,
        /// Only this OS.
        #[arg(long)]
        os: Option<String>,
        /// Substring of the advisory or synopsis.
        #[arg(long)]
        search: Option<String>,
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
    /// One item with its advisory, packages, CVEs and score explanation.
    Show {
        /// Item id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an item that is still queued.
    Remove {
        /// Item id.
        id: i64,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change an item's priority.
    Priority {
        /// Item id.
        id: i64,
        /// New priority.
        #[arg(allow_negative_numbers = true)]
        priority: i64,
    },
}

/// Run `spm queue …`.
pub fn run(args: QueueArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let store = open_store(&config)?;
    match args.command {
        QueueCommand::Add {
            advisories,
            os,
            priority,
            note,
            all_systems,
            json,
        } => {
            let scorer = cli_scorer(&config)?;
            let req = AddRequest {
                advisories,
                os,
                priority,
                queued_by: actor(),
                notes: note,
                require_all_systems: all_systems,
            };
            let report = match queue::add_blocking(&store, &scorer, &req) {
                Ok(r) => r,
                Err(QueueError::Invalid(m)) => anyhow::bail!("{m}"),
                Err(e) => return Err(e).context("queueing failed"),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for i in &report.added {
                    println!(
                        "queued {} for {} as item {} (score {}, priority {})",
                        i.advisory, i.os, i.id, i.score, i.priority
                    );
                }
                for s in &report.superseded {
                    println!(
                        "item {} ({} for {}) superseded by {}: {}",
                        s.id, s.advisory, s.os, s.superseded_by, s.reason
                    );
                }
                for s in &report.skipped {
                    println!(
                        "not queued: {}{}: {}",
                        s.advisory,
                        s.os.as_deref()
                            .map(|o| format!(" for {o}"))
                            .unwrap_or_default(),
                        s.reason
                    );
                }
            }
            Ok(if report.added.is_empty() {
                Outcome::No
            } else {
                Outcome::Ok
            })
        }
        QueueCommand::List {
            statuses,
            os,
            search,
            limit,
            offset,
            json,
        } => {
            let statuses = statuses
                .iter()
                .map(|s| {
                    QueueStatus::from_str(s).map_err(|_| {
                        anyhow::anyhow!(
                            "unknown status {s:?}; known: {}",
                            QueueStatus::ALL
                                .iter()
                                .map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let page = queue::list(
                &store,
                &QueueFilter {
                    statuses,
                    os,
                    search,
                    limit,
                    offset,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                println!(
                    "{:>6}  {:<22} {:<7} {:<16} {:>5} {:>4}  {:<8} synopsis",
                    "id", "advisory", "os", "status", "score", "prio", "severity"
                );
                for i in &page.items {
                    println!(
                        "{:>6}  {:<22} {:<7} {:<16} {:>5} {:>4}  {:<8} {}",
                        i.id,
                        i.advisory,
                        i.os,
                        i.status.as_str(),
                        i.score,
                        i.priority,
                        i.severity,
                        i.synopsis
                    );
                }
                println!(
                    "{} of {} (offset {})",
                    page.items.len(),
                    page.total,
                    page.offset
                );
            }
            Ok(Outcome::Ok)
        }
        QueueCommand::Show { id, json } => {
            let scorer = cli_scorer(&config)?;
            let d = queue::show(&store, &scorer, id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(Outcome::Ok);
            }
            let i = &d.item;
            println!(
                "item {}: {} for {} — {}",
                i.id,
                i.advisory,
                i.os,
                i.status.as_str()
            );
            println!(
                "  {} ({} advisory, severity {})",
                d.erratum.synopsis, d.erratum.advisory_type, d.erratum.severity
            );
            println!(
                "  queued {} by {}, priority {}, score when queued {}",
                i.queued_at, i.queued_by, i.priority, i.score
            );
            if let Some(s) = &i.superseded_by {
                println!("  superseded by {s}");
            }
            if let Some(n) = &i.notes {
                println!("  notes: {n}");
            }
            println!(
                "  score now {}{}:",
                d.score.score,
                if d.score.low_confidence {
                    " (LOW CONFIDENCE)"
                } else {
                    ""
                }
            );
            for t in &d.score.breakdown {
                println!("    {:>+4}  {:<16} {}", t.points, t.factor, t.reason);
            }
            println!("  CVEs: {}", d.cves.join(", "));
            for p in &d.packages {
                println!(
                    "  package {} {} {} ({} bytes)",
                    p.name,
                    p.evr(),
                    p.arch,
                    p.size_bytes.map(|b| b.to_string()).unwrap_or("?".into())
                );
            }
            for h in &d.history {
                println!("  earlier item {}: {}", h.id, h.status.as_str());
            }
            Ok(Outcome::Ok)
        }
        QueueCommand::Remove { id, reason } => {
            queue::remove(&store, id, &actor(), reason.as_deref())?;
            println!("removed item {id}");
            Ok(Outcome::Ok)
        }
        QueueCommand::Priority { id, priority } => {
            let i = queue::set_priority(&store, id, priority, &actor())?;
            println!(
                "item {} ({} for {}) priority {}",
                i.id, i.advisory, i.os, i.priority
            );
            Ok(Outcome::Ok)
        }
    }
}
