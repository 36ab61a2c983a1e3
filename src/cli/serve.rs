//! `spm serve`: the long-running service (HTTP API, metrics, health probes; workers and
//! the scheduler hook into [`crate::server::service::Service`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use crate::server::ServerConfig;
use crate::server::health::Probes;
use crate::server::service::Service;
use crate::store::Store;

/// Where the database lives (shared by commands that open it).
#[derive(Debug, Clone, Args)]
pub struct DatabaseArg {
    /// SQLite database file.
    #[arg(long, env = "SPM_DATABASE", default_value = "spm.db")]
    pub database: PathBuf,
}

impl DatabaseArg {
    /// Open (and migrate) the database.
    pub fn open(&self) -> anyhow::Result<Store> {
        Store::open(&self.database).with_context(|| "opening the database".to_owned())
    }
}

/// Arguments of `spm serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DatabaseArg,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5001")]
    listen: String,
    /// Serve /metrics without a token.
    #[arg(long)]
    metrics_public: bool,
    /// Prometheus base URL to probe for health.
    #[arg(long, env = "SPM_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Development only: no authentication, every request is admin `dev`.
    #[arg(long)]
    dev_insecure: bool,
}

/// Run `spm serve` until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    let store = args.db.open()?;
    let config = ServerConfig {
        listen: args.listen,
        metrics_public: args.metrics_public,
        prometheus_url: args.prometheus_url,
        ..ServerConfig::default()
    };
    // SQLite has one writer and a small reader pool; more blocking threads only cost memory.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(32)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let service = Service::start(store, config, args.dev_insecure, Probes::default()).await?;
        service
            .run_until(shutdown_signal(), Duration::from_secs(30))
            .await
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
