//! `spm sync [--json]`: one errata sync from UYUNI, then the auto-queue rule.
//!
//! A progress bar on a terminal, plain lines otherwise (both on stderr). Exit 0 when the
//! run is `ok`, 1 when it is `partial` or another sync is running, 2 when it failed. A
//! partial or failed run raises `sync_partial` / `sync_failed` like the service does.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Globals, Outcome};
use crate::config::Config;
use crate::engine::queue::{AddReport, AutoQueueRule, auto_queue};
use crate::engine::score::Scorer;
use crate::engine::sync::uyuni_source::UyuniSource;
use crate::engine::sync::{SyncConfig, SyncError, SyncEvent, SyncObserver, SyncReport, run_sync};
use crate::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use crate::store::Store;
use crate::store::sync_runs::SyncStatus;

/// Arguments of `spm sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Open the configured database.
pub(crate) fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.database.path)?)
}

/// The scorer with the Lua hook `scripts/score.lua` under `root`, when that file exists.
/// The set is loaded once (a CLI command is short); a hook that does not load is an error
/// naming the file and line, and nothing is scored.
pub(crate) fn scorer_with_scripts(
    config: &Config,
    root: &std::path::Path,
) -> anyhow::Result<Arc<Scorer>> {
    use crate::host::score_hook::{LuaScoreHook, SCORE_SCRIPT};
    let plain = Scorer::new((&config.score).into()).context("invalid [score] configuration")?;
    if !root.join(SCORE_SCRIPT).is_file() {
        return Ok(Arc::new(plain));
    }
    // Loading is async; a thread with its own runtime works whether or not the caller
    // is inside one.
    let root_owned = root.to_path_buf();
    let report = std::thread::scope(|s| {
        s.spawn(move || -> anyhow::Result<_> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(crate::host::scriptset::ScriptSet::load_dir(
                &root_owned,
                &crate::engine::rollout::policy::contracts(),
                1,
            ))
            .with_context(|| format!("reading the scripts under {}", root_owned.display()))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("loading {SCORE_SCRIPT} panicked"))?
    })?;
    let problems: Vec<String> = report
        .errors()
        .filter(|d| d.path == SCORE_SCRIPT)
        .map(|d| d.to_string())
        .collect();
    if !problems.is_empty() {
        anyhow::bail!("{SCORE_SCRIPT} does not load: {}", problems.join("; "));
    }
    let set = Arc::new(report.set);
    let hook = LuaScoreHook::start(Arc::new(move || set.clone()))
        .context("starting the score hook thread")?;
    Ok(Arc::new(plain.with_hook(hook)))
}

/// The scorer for a CLI command run from the working directory (the script root).
pub(crate) fn cli_scorer(config: &Config) -> anyhow::Result<Arc<Scorer>> {
    let root = std::env::current_dir().context("reading the working directory")?;
    scorer_with_scripts(config, &root)
}

/// Who the CLI acts as, for the audit log.
pub(crate) fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// The UYUNI client settings from `[uyuni]`.
pub(crate) fn client_config(c: &crate::config::UyuniConfig) -> anyhow::Result<UyuniConfig> {
    let url = c.url.clone().context(
        "uyuni.url is not set (configuration file, SPM_UYUNI__URL or --set uyuni.url=…)",
    )?;
    let user = c.user.clone().context("uyuni.user is not set")?;
    let password = c
        .password
        .as_ref()
        .context("uyuni.password (or uyuni.password_file) is not set")?;
    Ok(UyuniConfig {
        url,
        user,
        password: Secret::new(password.expose()),
        ca_file: c.ca_file.clone(),
        insecure: c.insecure_skip_verify,
        timeout_ms: c.timeout_secs.saturating_mul(1000),
        max_concurrency: usize::try_from(c.concurrency).unwrap_or(1).max(1),
        retries: c.retries,
        poll_initial_ms: c.action_poll_initial_ms,
        poll_max_ms: c.action_poll_max_ms,
        ..UyuniConfig::default()
    })
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Mutex<usize>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} calls")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        Self {
            bar,
            last_line: Mutex::new(0),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl SyncObserver for Progress {
    fn event(&self, e: &SyncEvent) {
        let line = match e {
            SyncEvent::Started { run_id } => format!("sync run {run_id} started"),
            SyncEvent::Systems { count } => format!("{count} systems in scope"),
            SyncEvent::Errata {
                total,
                to_fetch,
                calls,
            } => {
                if let Some(b) = &self.bar {
                    b.set_length(*calls as u64);
                    b.set_message(format!("fetching {to_fetch} of {total} advisories"));
                }
                format!("{total} relevant advisories, {to_fetch} new or changed ({calls} calls)")
            }
            SyncEvent::Fetched { done, total } => {
                if let Some(b) = &self.bar {
                    b.set_position(*done as u64);
                    return;
                }
                // Plain output: a line every 10 %.
                let step = (*total / 10).max(1);
                let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
                if *done < *last + step && done != total {
                    return;
                }
                *last = *done;
                format!("fetched {done}/{total}")
            }
            SyncEvent::Writing => "writing".to_string(),
        };
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}

fn print_text(r: &SyncReport, auto: Option<&AddReport>) {
    println!(
        "sync run {}: {} in {:.1}s — {} systems, {} advisories ({} new, {} updated, {} stale), {} UYUNI calls",
        r.run_id,
        r.status.as_str(),
        r.wall_s,
        r.summary.systems_total,
        r.summary.errata_total,
        r.summary.errata_new,
        r.summary.errata_updated,
        r.summary.errata_stale,
        r.summary.calls_total
    );
    if let Some(e) = &r.error {
        println!("error: {e}");
    }
    for f in &r.summary.failures {
        println!("  failed: {}: {}", f.what, f.reason);
    }
    if let Some(a) = auto {
        println!(
            "auto-queue: {} queued, {} superseded",
            a.added.len(),
            a.superseded.len()
        );
        for i in &a.added {
            println!("  queued {} for {} (score {})", i.advisory, i.os, i.score);
        }
    }
}

/// Raise `sync_partial` / `sync_failed` as the service's periodic sync does, then make one
/// delivery pass, so a `spm sync` run from cron alerts without a running service
/// (deliveries that fail stay queued and the service's worker retries them). Problems
/// with notifications are warnings on stderr; they never change the sync's exit code.
fn notify_outcome(
    config: &Config,
    store: &Store,
    report: &SyncReport,
    rt: &tokio::runtime::Runtime,
) {
    rt.block_on(async {
        match crate::engine::notify::Notifier::from_config(store.clone(), config) {
            Ok(n) => {
                n.raise_sync_outcome(report).await;
                if let Err(e) = n.deliver_due().await {
                    eprintln!("warning: sync notification not delivered yet: {e}");
                }
            }
            Err(e) => eprintln!("warning: no sync notification: {e}"),
        }
    });
}

/// Run `spm sync`.
pub fn run(args: SyncArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    let store = open_store(&config)?;
    let scorer = cli_scorer(&config)?;
    let client = UyuniClient::new(&client_config(&config.uyuni)?)
        .context("cannot set up the UYUNI client")?;
    let source = UyuniSource::new(Arc::new(client));
    let sync_config = SyncConfig::from(&config.sync);
    let rule = AutoQueueRule::from(&config.queue);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let progress = Progress::new();
    let result = rt.block_on(run_sync(&store, &source, &scorer, &sync_config, &progress));
    progress.finish();
    let report = match result {
        Ok(r) => r,
        Err(SyncError::AlreadyRunning(m)) => {
            eprintln!("not started: {m}");
            return Ok(Outcome::No);
        }
        Err(e) => return Err(e).context("sync could not run"),
    };
    if report.status != SyncStatus::Ok {
        notify_outcome(&config, &store, &report, &rt);
    }
    let auto = if report.status != SyncStatus::Failed && rule.enabled {
        Some(auto_queue(&store, &scorer, &rule).context("auto-queue after the sync failed")?)
    } else {
        None
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "sync": report,
                "auto_queue": auto,
            }))?
        );
    } else {
        print_text(&report, auto.as_ref());
    }
    match report.status {
        SyncStatus::Ok => Ok(Outcome::Ok),
        SyncStatus::Failed => anyhow::bail!(
            "sync run {} failed: {}",
            report.run_id,
            report.error.unwrap_or_default()
        ),
        _ => Ok(Outcome::No),
    }
}
