//! `spm serve`: the long-running service (HTTP API, metrics, health probes; workers and
//! the scheduler hook into [`crate::server::service::Service`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{Globals, Outcome};
use crate::server::ServerConfig;
use crate::server::app;
use crate::server::health::Probes;
use crate::server::service::Service;
use crate::store::Store;

/// Arguments of `spm serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Serve /metrics without a token.
    #[arg(long)]
    metrics_public: bool,
    /// Development only: no authentication, every request runs as admin `dev`.
    #[arg(long)]
    dev_insecure: bool,
    /// Embed the simulated UYUNI fleet (and a Prometheus scraping it when installed); on
    /// the first start, print a one-time admin token.
    #[arg(long)]
    sim: bool,
    /// With `--sim`: back the simulator with N real lab systems (root only; see `spm
    /// lab`), torn down when the service stops.
    #[arg(long, requires = "sim", value_name = "N")]
    lab: Option<u32>,
    /// With `--sim`: simulate the fleet of this fleet file (TOML or JSON, the format of `spm
    /// sim --fleet`) instead of the built-in one.
    #[arg(long, requires = "sim", conflicts_with = "lab", value_name = "FILE")]
    sim_fleet: Option<std::path::PathBuf>,
}

/// Run `spm serve` until SIGINT or SIGTERM.
pub fn run(args: ServeArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let mut global = globals.load_config()?;
    if !global.server.cors_origins.is_empty() {
        anyhow::bail!(
            "server.cors_origins is set, but spm does not serve CORS yet; leave it empty (the API is same-origin only)"
        );
    }
    if global.server.tls_cert.is_some() || global.server.tls_key.is_some() {
        anyhow::bail!(
            "server.tls_cert / server.tls_key are set, but spm serve does not terminate TLS yet; put a TLS proxy in front and unset them"
        );
    }
    // SQLite has one writer and a reader pool of 8 connections; many more blocking threads
    // only churn connections and grow malloc arenas (tokio's default is 512). Headroom is
    // left for other blocking work (file watching, Lua compilation).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    crate::services::ensure_crypto_provider();
    rt.block_on(async move {
        let opts = app::ServeOptions {
            sim: args.sim,
            dev_insecure: args.dev_insecure,
            lab: args.lab,
            fleet: args.sim_fleet.clone(),
        };
        let embedded = app::start_embedded(&mut global, &opts).await?;
        let store = Store::open(&global.database.path).context("opening the database")?;
        if opts.sim
            && !opts.dev_insecure
            && let Some(token) = app::bootstrap_admin_token(&store)?
        {
            println!("first admin token (shown once, store it now): {token}");
        }
        let config = ServerConfig {
            listen: args
                .listen
                .clone()
                .unwrap_or_else(|| global.server.listen.to_string()),
            body_limit_bytes: usize::try_from(global.server.body_limit_bytes)
                .context("server.body_limit_bytes is too large")?,
            metrics_public: args.metrics_public,
            prometheus_url: global.prometheus.url.clone(),
            dashboard: crate::server::dashboard::DashboardConfig {
                four_eyes: global.approvals.four_eyes,
                score: (&global.score).into(),
                ..Default::default()
            },
            ..ServerConfig::default()
        };
        let mut service =
            Service::start(store.clone(), config, args.dev_insecure, Probes::default()).await?;
        // Registers the host as a feature: the API and the dashboard show its status.
        let host = app::start_scripts(&store, &global, &mut service).await?;
        // Queue additions and risk breakdowns need the scorer even without UYUNI; its
        // optional Lua hook follows the script host's reloads.
        let scorer = app::scorer(&global, &host)?;
        let four_eyes = global.approvals.four_eyes;
        service.state.update_features(|f| {
            f.scorer = Some(scorer.clone());
            f.approval_rules = crate::engine::approvals::Rules { four_eyes };
        });
        let notifier = match crate::engine::notify::Notifier::from_config(store.clone(), &global) {
            Ok(notifier) => {
                let shared = Arc::new(notifier.clone());
                service
                    .state
                    .update_features(|f| f.notifier = Some(shared.clone()));
                let worker = notifier.spawn_worker(service.shutdown.clone());
                service.spawn(async move {
                    let _ = worker.await;
                    Ok(())
                });
                let (h, n, token) = (host.clone(), notifier.clone(), service.shutdown.clone());
                service.spawn(async move {
                    crate::engine::notify::reload::watch_scripts(h, n, token).await;
                    Ok(())
                });
                Some(notifier)
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "notifications disabled");
                None
            }
        };
        // Registers the client as a feature (patch runs, the dashboard's rollbacks).
        if let Some(uyuni) = app::start_sync(&store, &global, scorer, notifier, &mut service)? {
            app::start_tests(&store, &global, host.clone(), uyuni.clone(), &mut service).await?;
            let ansible = Arc::new(crate::engine::ansible::AnsibleExecutor::from_config(
                &global,
            ));
            app::start_scheduler(&store, host, uyuni, Some(ansible), &mut service).await?;
        }
        println!(
            "spm is serving on http://{} (API under /api/v1; Ctrl-C stops it)",
            service.addr()
        );
        let result = service
            .run_until(shutdown_signal(), Duration::from_secs(30))
            .await;
        let stopped = embedded.shutdown().await;
        result.and(stopped)
    })?;
    Ok(Outcome::Ok)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
