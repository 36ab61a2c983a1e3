//! `spm test next | run <queue-id> | status | show <id> | abort <id>`: the test engine.
//!
//! `next` and `run` first reconcile what a stopped engine left behind (crash recovery),
//! then test; phase progress is live on a terminal (a spinner) and plain lines otherwise.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::sync::{actor, client_config, open_store};
use super::{Globals, Outcome};
use crate::config::Config;
use crate::engine::state::{QueueStatus, Status as _, TestStatus};
use crate::engine::testing::recovery::AbortOutcome;
use crate::engine::testing::{ItemOutcome, Progress, TestEngine};
use crate::host::contracts::Contracts;
use crate::host::reload::ScriptHost;
use crate::services::prom::{PromClient, PromConfig};
use crate::services::uyuni::UyuniClient;
use crate::store::{Store, queue, test_runs};

/// Arguments of `spm test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TestCommand,
}

/// `spm test` subcommands.
#[derive(Debug, Subcommand)]
pub enum TestCommand {
    /// Test the next item of the queue.
    Next {
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Test one queue item now.
    Run {
        /// Queue item id.
        queue_id: i64,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Running tests and the queue by status.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A test with its phases, rollbacks and evidence.
    Show {
        /// Test id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Abort a running test: cancel its UYUNI actions and roll back.
    Abort {
        /// Test id.
        id: i64,
        /// Why (kept with the test).
        #[arg(long, default_value = "aborted from the command line")]
        reason: String,
    },
}

/// Run `spm test`.
pub fn run(args: TestArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let store = open_store(&config)?;
    match args.command {
        TestCommand::Status { json } => status(&store, json),
        TestCommand::Show { id, json } => show(&store, id, json),
        TestCommand::Next { json } => runtime()?.block_on(async {
            let engine = engine(&config, store, json).await?;
            engine.recover().await.context("crash recovery")?;
            match engine.next(&actor()).await? {
                None => {
                    print_line(json, &serde_json::json!({ "outcome": "empty" }), "nothing to test");
                    Ok(Outcome::No)
                }
                Some((item, out)) => report(json, item.id, &out),
            }
        }),
        TestCommand::Run { queue_id, json } => runtime()?.block_on(async {
            let engine = engine(&config, store, json).await?;
            engine.recover().await.context("crash recovery")?;
            let out = engine
                .run_queue_id(queue_id, &actor())
                .await
                .with_context(|| format!("testing queue item {queue_id}"))?;
            report(json, queue_id, &out)
        }),
        TestCommand::Abort { id, reason } => runtime()?.block_on(async {
            let engine = engine(&config, store, false).await?;
            match engine.abort(id, &reason).await? {
                AbortOutcome::Cancelled => println!("test {id}: cancelled"),
                AbortOutcome::Requested => println!(
                    "test {id}: abort requested; the engine running it cancels its actions and rolls back"
                ),
                AbortOutcome::Recovered(r) => println!(
                    "test {id}: no engine was running it; recovered (rolled back: {}, actions cancelled: {})",
                    !r.rolled_back.is_empty(),
                    r.actions.len()
                ),
            }
            Ok(Outcome::Ok)
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// The directory holding `phases/` and `scripts/`.
fn script_root(config: &Config) -> PathBuf {
    match config.scripts.phases_dir.parent() {
        Some(p) if p != Path::new("") => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

async fn engine(config: &Config, store: Store, json: bool) -> anyhow::Result<Arc<TestEngine>> {
    crate::services::ensure_crypto_provider();
    let root = script_root(config);
    let host = ScriptHost::open_with_store(&root, Contracts::default(), Some(store.clone()))
        .await
        .with_context(|| format!("loading the scripts under {}", root.display()))?;
    let uyuni = Arc::new(UyuniClient::new(&client_config(&config.uyuni)?).context("UYUNI client")?);
    let prom = match &config.prometheus.url {
        Some(url) => Some(Arc::new(
            PromClient::new(&PromConfig {
                url: url.clone(),
                timeout_s: config.prometheus.timeout_secs,
                ca_file: None,
            })
            .context("Prometheus client")?,
        )),
        None => None,
    };
    let engine = TestEngine::new(store, host, uyuni, prom, config.test.clone());
    engine.set_ansible(std::sync::Arc::new(
        crate::engine::ansible::AnsibleExecutor::from_config(config),
    ));
    Ok(if json {
        engine
    } else {
        engine.with_progress(Arc::new(Live::new()))
    })
}

fn print_line(json: bool, v: &serde_json::Value, text: &str) {
    if json {
        println!("{v}");
    } else {
        println!("{text}");
    }
}

fn report(json: bool, queue_id: i64, out: &ItemOutcome) -> anyhow::Result<Outcome> {
    let v = serde_json::json!({ "queue_id": queue_id, "result": out });
    let text = match out {
        ItemOutcome::PendingApproval { tests } => {
            format!("queue item {queue_id}: passed (tests {tests:?}), pending approval")
        }
        ItemOutcome::RetryPending {
            class,
            reason,
            retry_after,
            ..
        } => format!("queue item {queue_id}: {class} failure, retry after {retry_after}: {reason}"),
        ItemOutcome::Failed {
            class,
            reason,
            rollback_verified,
            ..
        } => format!(
            "queue item {queue_id}: failed ({class}): {reason}{}",
            if *rollback_verified {
                ""
            } else {
                " — ROLLBACK NOT VERIFIED, check the test system"
            }
        ),
        ItemOutcome::WaitingSystem { reason } => {
            format!("queue item {queue_id}: waiting: {reason}")
        }
    };
    print_line(json, &v, &text);
    Ok(match out {
        ItemOutcome::PendingApproval { .. } => Outcome::Ok,
        _ => Outcome::No,
    })
}

fn status(store: &Store, json: bool) -> anyhow::Result<Outcome> {
    let running =
        store.read_blocking(|c| test_runs::list(c, None, Some(TestStatus::Running), 1000))?;
    let counts = store.read_blocking(queue::counts_by_status)?;
    if json {
        let counts: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), serde_json::json!(n)))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "running": running, "queue": counts })
        );
        return Ok(Outcome::Ok);
    }
    if running.is_empty() {
        println!("no test running");
    }
    for t in &running {
        println!(
            "test {:>5}  {:<16} on {:<20} since {} (deadline {})",
            t.id,
            t.advisory,
            t.system_name.as_deref().unwrap_or("?"),
            t.started_at,
            t.deadline_at.as_deref().unwrap_or("-")
        );
    }
    let waiting: i64 = counts
        .iter()
        .filter(|(s, _)| *s == QueueStatus::WaitingSystem)
        .map(|(_, n)| n)
        .sum();
    println!(
        "queue: {}",
        counts
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if waiting > 0 {
        println!(
            "{waiting} item(s) wait for a test system (see `spm queue list --status waiting_system`)"
        );
    }
    Ok(Outcome::Ok)
}

fn show(store: &Store, id: i64, json: bool) -> anyhow::Result<Outcome> {
    let t = store
        .read_blocking(|c| test_runs::get(c, id))
        .with_context(|| format!("test {id}"))?;
    let phases = store.read_blocking(|c| test_runs::phases(c, id))?;
    let rollbacks = store.read_blocking(|c| test_runs::rollbacks(c, id))?;
    if json {
        let rb: Vec<serde_json::Value> = rollbacks
            .iter()
            .map(|(s, st, d)| serde_json::json!({ "strategy": s, "status": st, "details": d }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "test": t, "phases": phases, "rollbacks": rb })
        );
        return Ok(Outcome::Ok);
    }
    println!(
        "test {} — {} on {} (queue item {}): {}",
        t.id,
        t.advisory,
        t.system_name.as_deref().unwrap_or("?"),
        t.queue_id,
        t.status.as_str()
    );
    if let Some(r) = &t.failure_reason {
        println!(
            "  failure: {} in {}: {r}",
            t.failure_class.as_deref().unwrap_or("?"),
            t.failure_phase.as_deref().unwrap_or("?")
        );
    }
    println!(
        "  rollback: {} {}  reboot: {}  started {}  ended {}",
        t.rollback_strategy.as_deref().unwrap_or("-"),
        t.rollback_status.as_deref().unwrap_or("-"),
        t.reboot_performed,
        t.started_at,
        t.completed_at.as_deref().unwrap_or("-")
    );
    println!("  phases:");
    for p in &phases {
        println!(
            "    {:<14} {:<11} {:>7} ms  {}",
            p.phase,
            p.status.as_str(),
            p.duration_ms.unwrap_or(0),
            p.error.as_deref().unwrap_or("")
        );
    }
    println!("  evidence:");
    for key in [
        "packages", "metrics", "services", "reboot", "cves", "rollback",
    ] {
        let v = t.evidence.get(key).map(drop_nulls);
        if let Some(v) = v.filter(|v| !v.is_null()) {
            println!("    {key}: {v}");
        }
    }
    Ok(Outcome::Ok)
}

/// The value without null members (objects that end up empty become null).
fn drop_nulls(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let kept: serde_json::Map<String, serde_json::Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .filter(|(_, v)| !v.is_null())
                .collect();
            if kept.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Object(kept)
            }
        }
        other => other.clone(),
    }
}

/// Live phase progress: a spinner on a terminal, plain lines otherwise (stderr).
struct Live {
    bar: Option<ProgressBar>,
    current: Mutex<String>,
}

impl Live {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                b.set_style(style);
            }
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Self {
            bar,
            current: Mutex::new(String::new()),
        }
    }

    fn line(&self, s: String) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }
}

impl Progress for Live {
    fn test_started(&self, test_id: i64, advisory: &str, system: &str) {
        self.line(format!("test {test_id}: {advisory} on {system}"));
    }

    fn phase_started(&self, test_id: i64, phase: &str) {
        if let Ok(mut c) = self.current.lock() {
            *c = phase.to_string();
        }
        if let Some(b) = &self.bar {
            b.set_message(format!("test {test_id}: {phase}"));
        }
    }

    fn phase_finished(&self, _test_id: i64, phase: &str, status: &str, ms: i64, note: &str) {
        let note = if status == "failed" {
            format!(" — {note}")
        } else {
            String::new()
        };
        self.line(format!("  {phase:<14} {status:<8} {ms:>6} ms{note}"));
    }

    fn test_finished(&self, test_id: i64, status: &str, reason: Option<&str>) {
        if let Some(b) = &self.bar {
            b.set_message(String::new());
        }
        self.line(format!(
            "test {test_id}: {status}{}",
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ));
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
