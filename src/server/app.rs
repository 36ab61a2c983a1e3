//! `spm serve` composition: everything the long-running service runs in one process.
//!
//! The HTTP API ([`super::service::Service`]) plus the background parts, each stopped by the
//! service's shutdown token: the embedded simulated UYUNI fleet (`--sim`), a Prometheus
//! child process scraping it (when the Debian `prometheus` binary is installed and no
//! Prometheus is configured), the Lua script host with hot reload, the notification
//! delivery worker, the periodic errata sync followed by the auto-queue rule, the test
//! workers, and the scheduler (snooze expiry, cron policies).
//!
//! Decisions written down here:
//! - `--sim` on a database without an admin token creates one named `admin` and prints it
//!   once on stdout; without `--sim` the service refuses to start until
//!   `spm token create --role admin` has been run (or `--dev-insecure` is given).
//! - `--sim` turns the auto-queue rule on (security advisories of severity high or above)
//!   unless the configuration file sets `[queue]` explicitly, so the demo fleet's errata
//!   flow into the test queue without an operator.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
use crate::engine::notify::{Event, EventKind, Notifier};
use crate::engine::queue::{AutoQueueRule, auto_queue};
use crate::engine::rollout::policy::{LoadedPolicy, load_policy_source};
use crate::engine::score::Scorer;
use crate::engine::sync::uyuni_source::UyuniSource;
use crate::engine::sync::{NoProgress, SyncConfig, run_sync};
use crate::engine::testing::TestEngine;
use crate::host::reload::{ScriptHost, WatchMode};
use crate::server::auth::{Role, create_token};
use crate::server::service::Service;
use crate::services::prom::{PromClient, PromConfig};
use crate::services::uyuni::UyuniClient;
use crate::sim::server::{SimHandle, SimOptions, SimServer};
use crate::store::Store;
use crate::store::sync_runs::SyncStatus;

/// What `spm serve` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Embed the simulated UYUNI fleet.
    pub sim: bool,
    /// No authentication (development only).
    pub dev_insecure: bool,
    /// Back the embedded simulator with this many real lab systems (`--lab N`, root only).
    pub lab: Option<u32>,
}

/// Parts started before the HTTP server, kept alive for the service's lifetime.
pub struct Embedded {
    /// The simulator, when `--sim`.
    pub sim: Option<SimHandle>,
    /// A Prometheus child process, when one was started for the simulator.
    pub prometheus: Option<PrometheusChild>,
    /// The lab behind the simulator, when `--lab N`.
    pub lab: Option<Arc<crate::lab::Lab>>,
}

impl Embedded {
    /// Stop the simulator and Prometheus, then tear the lab down (when there is one).
    /// Fails when the lab teardown left something behind.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Embedded {
            sim,
            prometheus,
            lab,
        } = self;
        drop(prometheus);
        if let Some(sim) = sim {
            sim.shutdown().await;
        }
        if let Some(lab) = lab {
            // The simulator's lab worker holds clones until its tasks end; `teardown`
            // removes the lab whether or not this was the last handle.
            drop(lab);
            let left = crate::lab::teardown();
            anyhow::ensure!(
                left.is_empty(),
                "lab teardown left behind: {}",
                left.join("; ")
            );
        }
        Ok(())
    }
}

/// Critical services of the lab's minimal Debian 12 systems (no cron or rsyslog there).
const LAB_CRITICAL_SERVICES: &[&str] = &["ssh", "spm-demo-svc"];

/// A Prometheus server started as a child process; killed on drop.
pub struct PrometheusChild {
    child: tokio::process::Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for PrometheusChild {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Start the embedded simulator (when asked) and point the UYUNI settings at it.
pub async fn start_embedded(config: &mut Config, opts: &ServeOptions) -> anyhow::Result<Embedded> {
    if !opts.sim {
        anyhow::ensure!(opts.lab.is_none(), "--lab needs --sim");
        return Ok(Embedded {
            sim: None,
            prometheus: None,
            lab: None,
        });
    }
    let mut sim_opts = SimOptions::default();
    let mut lab = None;
    if let Some(n) = opts.lab {
        let up = crate::lab::Lab::up(n, crate::lab::LabOptions::default())
            .await
            .context("starting the lab")?;
        // From here on a failure drops `up`, which tears the lab down.
        let fleet = crate::sim::lab::fleet(&up)
            .await
            .context("mapping lab systems to simulated systems")?;
        let up = Arc::new(up);
        sim_opts.fleet = crate::sim::FleetSource::Fleet(Box::new(fleet));
        sim_opts.lab = Some(up.clone());
        lab = Some(up);
        let default_debian = crate::config::TestConfig::default()
            .critical_services
            .get("debian")
            .cloned();
        if config.test.critical_services.get("debian").cloned() == default_debian {
            config.test.critical_services.insert(
                "debian".into(),
                LAB_CRITICAL_SERVICES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
        println!(
            "lab: {} real Debian 12 systems (critical services {:?})",
            n,
            config.test.critical_services.get("debian")
        );
    }
    let sim = match SimServer::start(sim_opts).await {
        Ok(s) => s,
        Err(e) => {
            if lab.take().is_some() {
                let _ = crate::lab::teardown();
            }
            return Err(anyhow::Error::new(e).context("starting the embedded UYUNI simulator"));
        }
    };
    config.uyuni.url = Some(sim.url());
    config.uyuni.user = Some("admin".into());
    config.uyuni.password = Some(crate::config::Secret::new("admin"));
    config.uyuni.ca_file = None;
    if !config.queue.auto_queue {
        config.queue.auto_queue = true;
    }
    let prometheus = if config.prometheus.url.is_none() {
        match start_prometheus(&config.database.path, &sim).await {
            Ok(p) => {
                config.prometheus.url = Some(p.url.clone());
                Some(p)
            }
            Err(e) => {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    "no Prometheus for the simulated fleet: validation checks will fail closed \
                     (install the Debian package `prometheus` or set prometheus.url)"
                );
                None
            }
        }
    } else {
        None
    };
    println!("simulated UYUNI fleet: {}", sim.url());
    Ok(Embedded {
        sim: Some(sim),
        prometheus,
        lab,
    })
}

/// Start `/usr/bin/prometheus` scraping the simulator's per-system metrics.
async fn start_prometheus(db_path: &Path, sim: &SimHandle) -> anyhow::Result<PrometheusChild> {
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("prometheus is not installed")?;
    let dir = db_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("prometheus");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for Prometheus")?
        .port();
    let sd = format!("{}/_sim/prometheus-sd", sim.base_url());
    let cfg = format!(
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nscrape_configs:\n  - job_name: spm-sim\n    honor_labels: true\n    http_sd_configs:\n      - url: '{sd}'\n        refresh_interval: 10s\n"
    );
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).with_context(|| format!("writing {}", cfg_path.display()))?;
    let log = std::fs::File::create(dir.join("prometheus.log")).context("Prometheus log file")?;
    let child = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("starting prometheus")?;
    let url = format!("http://127.0.0.1:{port}");
    println!("Prometheus for the simulated fleet: {url}");
    Ok(PrometheusChild { child, url })
}

/// On a database without an active admin token, create one named `admin` (or `admin-N`
/// when that name is taken by a revoked token) and return it, to be printed once.
pub fn bootstrap_admin_token(store: &Store) -> anyhow::Result<Option<String>> {
    let count = store.read_blocking(crate::store::tokens::active_admin_count)?;
    if count > 0 {
        return Ok(None);
    }
    let token = store.write_blocking(|tx| {
        let taken: Vec<String> = crate::store::tokens::list(tx)?
            .into_iter()
            .map(|t| t.name)
            .collect();
        let name = std::iter::once("admin".to_string())
            .chain((2..).map(|n| format!("admin-{n}")))
            .find(|n| !taken.contains(n))
            .unwrap_or_else(|| "admin".into());
        let new = create_token(tx, &name, Role::Admin)?;
        crate::store::audit::append(
            tx,
            &crate::store::audit::AuditEntry {
                actor: "system:serve".into(),
                source_addr: None,
                action: "token.create".into(),
                object_type: "token".into(),
                object_id: Some(name.clone()),
                reason: Some("first start with the simulated fleet".into()),
                details: serde_json::json!({ "role": "admin" }),
            },
        )?;
        Ok(new.token)
    })?;
    Ok(Some(token))
}

/// Open the Lua script host on the working directory and watch it for edits.
pub async fn start_scripts(
    store: &Store,
    config: &Config,
    service: &mut Service,
) -> anyhow::Result<Arc<ScriptHost>> {
    let root = std::env::current_dir().context("reading the working directory")?;
    let host = ScriptHost::open_with_store(
        &root,
        crate::engine::rollout::policy::contracts(),
        Some(store.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("loading the Lua scripts under {}: {e}", root.display()))?;
    let mode = if config.scripts.poll {
        WatchMode::Poll {
            interval: Duration::from_millis(config.scripts.poll_interval_ms.max(100)),
        }
    } else {
        WatchMode::Notify {
            debounce: Duration::from_millis(config.scripts.debounce_ms.max(10)),
        }
    };
    let watch = host
        .watch(mode)
        .context("watching phases/, policies/, scripts/")?;
    let token = service.shutdown.clone();
    service.spawn(async move {
        token.cancelled().await;
        drop(watch);
        Ok(())
    });
    let registered = host.clone();
    service
        .state
        .update_features(|f| f.scripts = Some(registered.clone()));
    Ok(host)
}

/// The Success Score calculator from `[score]`, adjusted by `scripts/score.lua` as the
/// script host currently has it (edits take effect on the next score).
pub fn scorer(config: &Config, host: &Arc<ScriptHost>) -> anyhow::Result<Arc<Scorer>> {
    let plain = Scorer::new((&config.score).into()).context("invalid [score] configuration")?;
    let host = host.clone();
    let hook = crate::host::score_hook::LuaScoreHook::start(Arc::new(move || host.current()))
        .context("starting the score hook thread")?;
    Ok(Arc::new(plain.with_hook(hook)))
}

/// The periodic errata sync followed by the auto-queue rule.
pub fn start_sync(
    store: &Store,
    config: &Config,
    scorer: Arc<Scorer>,
    notifier: Option<Notifier>,
    service: &mut Service,
) -> anyhow::Result<Option<Arc<UyuniClient>>> {
    if config.uyuni.url.is_none() {
        tracing::warn!("uyuni.url is not set: no errata sync, no tests");
        return Ok(None);
    }
    let client = Arc::new(
        UyuniClient::new(&crate::cli::sync::client_config(&config.uyuni)?)
            .context("building the UYUNI client")?,
    );
    let sync_config = SyncConfig::from(&config.sync);
    let rule = AutoQueueRule::from(&config.queue);
    let every = Duration::from_secs(config.sync.interval_secs.max(10));
    let source = Arc::new(UyuniSource::new(client.clone()));
    // The API starts syncs on demand with the same source and settings; the run lock in
    // the database keeps them from overlapping with the periodic one.
    let runner = Arc::new(crate::server::endpoints::sync::SyncRunner::new(
        source.clone(),
        scorer.clone(),
        sync_config.clone(),
        rule.clone(),
    ));
    service.state.update_features(|f| {
        f.scorer = Some(scorer.clone());
        f.sync = Some(runner.clone());
        f.uyuni = Some(client.clone());
    });
    let store = store.clone();
    let token = service.shutdown.clone();
    service.spawn(async move {
        loop {
            match run_sync(&store, source.as_ref(), &scorer, &sync_config, &NoProgress).await {
                Ok(report) => {
                    tracing::info!(status = ?report.status, "errata sync finished");
                    if let Some(n) = &notifier {
                        raise_sync_outcome(n, &report).await;
                    }
                    let (store, scorer, rule) = (store.clone(), scorer.clone(), rule.clone());
                    match tokio::task::spawn_blocking(move || auto_queue(&store, &scorer, &rule))
                        .await
                    {
                        Ok(Ok(added)) => tracing::info!(?added, "auto-queue rule applied"),
                        Ok(Err(e)) => tracing::error!(error = %e, "auto-queue failed"),
                        Err(e) => tracing::error!(error = %e, "auto-queue task failed"),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "errata sync failed");
                    if let Some(n) = &notifier {
                        n.raise(Event::new(
                            EventKind::SyncFailed,
                            serde_json::json!({ "error": e.to_string() }),
                        ))
                        .await;
                    }
                }
            }
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        Ok(())
    });
    Ok(Some(client))
}

/// Raise `sync_partial` / `sync_failed` for a finished sync that did not end `ok`.
async fn raise_sync_outcome(notifier: &Notifier, report: &crate::engine::sync::SyncReport) {
    let kind = match report.status {
        SyncStatus::Ok | SyncStatus::Running => return,
        SyncStatus::Partial => EventKind::SyncPartial,
        _ => EventKind::SyncFailed,
    };
    let data = serde_json::to_value(report).unwrap_or_default();
    notifier.raise(Event::new(kind, data)).await;
}

/// Recover tests a crash left running, then run the test workers until shutdown.
pub async fn start_tests(
    store: &Store,
    config: &Config,
    host: Arc<ScriptHost>,
    uyuni: Arc<UyuniClient>,
    service: &mut Service,
) -> anyhow::Result<()> {
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
    let engine = TestEngine::new(store.clone(), host, uyuni, prom, config.test.clone());
    let ansible = Arc::new(crate::engine::ansible::AnsibleExecutor::from_config(config));
    engine.set_ansible(ansible.clone());
    service
        .state
        .update_features(|f| f.ansible = Some(ansible.clone()));
    let report = engine
        .recover()
        .await
        .context("recovering tests left running by a previous process")?;
    tracing::info!(?report, "test recovery at start");
    service
        .state
        .update_features(|f| f.tests = Some(engine.clone()));
    let workers = usize::try_from(config.test.concurrency).unwrap_or(1).max(1);
    let token = service.shutdown.clone();
    service.spawn(async move {
        tokio::select! {
            _ = engine.run_workers(workers) => {}
            _ = token.cancelled() => engine.shutdown(),
        }
        Ok(())
    });
    Ok(())
}

/// Load every policy of the script set in service (a policy that fails to load was already
/// refused by the reload, so errors here are logged and the policy skipped).
async fn load_policies(host: &ScriptHost) -> Vec<LoadedPolicy> {
    let set = host.current();
    let mut out = Vec::new();
    for file in set
        .files
        .values()
        .filter(|f| f.path.starts_with("policies/"))
    {
        match load_policy_source(&file.path, &file.content).await {
            Ok(p) => out.push(p),
            Err(e) => tracing::error!(path = %file.path, error = %e, "policy skipped"),
        }
    }
    out
}

/// The scheduler: cron policies (one run per policy at a time; a missed window is reported,
/// not run late) and snooze expiry, on the policies of the script set in service, reloaded
/// whenever the set changes.
pub async fn start_scheduler(
    store: &Store,
    host: Arc<ScriptHost>,
    uyuni: Arc<UyuniClient>,
    ansible: Option<Arc<crate::engine::ansible::AnsibleExecutor>>,
    service: &mut Service,
) -> anyhow::Result<()> {
    let cache = Arc::new(std::sync::Mutex::new(load_policies(&host).await));
    {
        let (cache, host) = (cache.clone(), host.clone());
        let mut outcomes = host.subscribe();
        let token = service.shutdown.clone();
        service.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    r = outcomes.recv() => match r {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let fresh = load_policies(&host).await;
                            if let Ok(mut c) = cache.lock() {
                                *c = fresh;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
            Ok(())
        });
    }
    let store = store.clone();
    let token = service.shutdown.clone();
    service.spawn(async move {
        let load = move || cache.lock().map(|c| c.clone()).unwrap_or_default();
        crate::engine::rollout::scheduler::run_loop(
            uyuni,
            ansible,
            store,
            load,
            Duration::from_secs(30),
            token,
        )
        .await;
        Ok(())
    });
    Ok(())
}
