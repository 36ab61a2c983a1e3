//! The long-running service: the HTTP server plus background tasks sharing one shutdown
//! token. `spm serve` builds one; other parts (workers, scheduler, hot reload, the
//! simulator) hook in with [`Service::spawn`] before or after it starts.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::health::{self, Probes, PrometheusProbe};
use super::{AppState, ServerConfig};
use crate::store::{Store, tokens};

/// A running server and its background tasks.
#[derive(Debug)]
pub struct Service {
    /// The state handlers share (clone it to reach the store or metrics).
    pub state: AppState,
    /// Cancelled to stop everything.
    pub shutdown: CancellationToken,
    addr: SocketAddr,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// Refuse to serve without a usable admin token, unless in development mode.
pub fn check_admin_token(store: &Store, dev_insecure: bool) -> anyhow::Result<()> {
    if dev_insecure {
        tracing::warn!(
            "--dev-insecure: AUTHENTICATION IS OFF; every request runs as 'dev' with the admin role. Never use this outside a development machine."
        );
        return Ok(());
    }
    let admins = store
        .read_blocking(tokens::active_admin_count)
        .context("counting admin tokens")?;
    if admins == 0 {
        anyhow::bail!(
            "no admin API token exists in {}; create one with `spm token create --name admin --role admin` (or pass --dev-insecure on a development machine)",
            store.path().display()
        );
    }
    Ok(())
}

impl Service {
    /// Bind `config.listen`, check tokens, start the health prober and the HTTP server.
    pub async fn start(
        store: Store,
        config: ServerConfig,
        dev_insecure: bool,
        probes: Probes,
    ) -> anyhow::Result<Service> {
        Self::start_with_state(AppState::new(store, config, dev_insecure), probes).await
    }

    /// Like [`Service::start`] with a state built by the caller, so parts created before
    /// the server (the UYUNI client, the Lua host) can share `state.metrics`.
    pub async fn start_with_state(state: AppState, mut probes: Probes) -> anyhow::Result<Service> {
        let store = state.store.clone();
        check_admin_token(&store, state.dev_insecure)?;
        let config = state.config.clone();
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        if probes.prometheus.is_none()
            && let Some(url) = &config.prometheus_url
        {
            let probe = PrometheusProbe::new(url).context("building the Prometheus probe")?;
            probes.prometheus = Some(std::sync::Arc::new(probe));
        }
        let interval = Duration::from_secs(config.health_interval_secs.max(1));
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        {
            let cache = state.health.clone();
            let token = shutdown.clone();
            tasks.spawn(async move {
                health::probe_loop(cache, store, probes, interval, token).await;
                Ok(())
            });
        }
        {
            let state = state.clone();
            let token = shutdown.clone();
            tasks.spawn(async move {
                super::serve(listener, state, token)
                    .await
                    .context("HTTP server failed")
            });
        }
        tracing::info!(%addr, "spm API listening");
        Ok(Service {
            state,
            shutdown,
            addr,
            tasks,
        })
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Run a background task until shutdown; it should watch [`Service::shutdown`].
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Wait until `stop` resolves or a task ends (an error ends the service), then cancel
    /// the rest and wait for them, giving in-flight requests up to `grace` to finish.
    pub async fn run_until(
        mut self,
        stop: impl Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let mut first_error = None;
        tokio::select! {
            _ = stop => tracing::info!("shutting down"),
            Some(done) = self.tasks.join_next() => {
                first_error = flatten(done).err();
                tracing::warn!("a service task ended; shutting down");
            }
        }
        self.shutdown.cancel();
        let drain = async {
            while let Some(done) = self.tasks.join_next().await {
                if let Err(e) = flatten(done)
                    && first_error.is_none()
                {
                    first_error = Some(e);
                }
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("tasks did not stop within {grace:?}; aborting them");
            self.tasks.abort_all();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn flatten(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("service task panicked or was aborted: {e}"))?
}
