//! The HTTP(S) server: `/rpc/api` plus the `/_sim/*` control and metrics endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDateTime;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::clock::{SimClock, Timings};
use super::faults::FaultOptions;
use super::fleet::{self, FleetFile, GenParams};
use super::handlers;
use super::metrics;
use super::world::World;
use crate::services::uyuni::xmlrpc::{Fault, Limits, decode_call, encode_fault, encode_success};

/// Where the fleet comes from.
#[derive(Debug, Clone)]
pub enum FleetSource {
    /// The built-in default fleet.
    Default,
    /// A fleet file (TOML or JSON).
    File(PathBuf),
    /// A generated fleet.
    Generate(GenParams),
    /// A fleet built in memory (e.g. from a lab by `sim::lab::fleet`).
    Fleet(Box<FleetFile>),
}

/// Everything `spm sim` and tests can configure.
#[derive(Clone)]
pub struct SimOptions {
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated CA.
    pub tls: bool,
    /// Fleet.
    pub fleet: FleetSource,
    /// API login.
    pub user: String,
    /// API password.
    pub password: String,
    /// Response time of every call except `auth.login`, ms, from the request's arrival:
    /// the answer is held until then (exactly, see [`super::delay`]).
    pub latency_ms: u64,
    /// Response time of `auth.login`, ms, counted the same way.
    pub login_latency_ms: u64,
    /// Action lifecycle durations.
    pub timings: Timings,
    /// Virtual time moves only with `advance` (tests) instead of following the wall clock.
    pub frozen_clock: bool,
    /// Virtual start time (default: now, UTC, as "server local" time).
    pub start_time: Option<NaiveDateTime>,
    /// Fault injection.
    pub faults: FaultOptions,
    /// Seed for the fleet generator and fault injection.
    pub seed: u64,
    /// Real lab systems behind the simulated systems of the same name.
    pub lab: Option<Arc<crate::lab::Lab>>,
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("fleet", &self.fleet)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("latency_ms", &self.latency_ms)
            .field("login_latency_ms", &self.login_latency_ms)
            .field("timings", &self.timings)
            .field("frozen_clock", &self.frozen_clock)
            .field("faults", &self.faults)
            .field("seed", &self.seed)
            .field("lab", &self.lab.as_ref().map(|l| l.systems().len()))
            .finish()
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            fleet: FleetSource::Default,
            user: "admin".into(),
            password: "admin".into(),
            latency_ms: 0,
            login_latency_ms: 0,
            timings: Timings::default(),
            frozen_clock: false,
            start_time: None,
            faults: FaultOptions::default(),
            seed: 1,
            lab: None,
        }
    }
}

/// Call statistics.
#[derive(Debug, Default)]
pub struct Stats {
    per_method: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    inflight: AtomicUsize,
    peak: AtomicUsize,
}

/// A snapshot of [`Stats`] (also the body of `GET /_sim/stats`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Calls per method name.
    pub calls: std::collections::BTreeMap<String, u64>,
    /// All XML-RPC calls.
    pub total: u64,
    /// Highest number of calls in flight at once.
    pub peak_concurrency: usize,
}

impl Stats {
    fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self
                .per_method
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            total: self.total.load(Ordering::Relaxed),
            peak_concurrency: self.peak.load(Ordering::Relaxed),
        }
    }
    fn reset(&self) {
        self.per_method
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.total.store(0, Ordering::Relaxed);
        self.peak
            .store(self.inflight.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

struct Shared {
    world: Mutex<World>,
    clock: SimClock,
    stats: Stats,
    opts: SimOptions,
    rng: Mutex<StdRng>,
    addr: SocketAddr,
}

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The fleet could not be loaded.
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    /// Binding or I/O failed.
    #[error("simulator I/O: {what}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Certificate generation or TLS setup failed.
    #[error("simulator TLS setup: {0}")]
    Tls(String),
}

fn build_world(opts: &SimOptions, now: NaiveDateTime) -> Result<World, fleet::FleetError> {
    let (u, p, t) = (opts.user.as_str(), opts.password.as_str(), opts.timings);
    Ok(match &opts.fleet {
        FleetSource::Default => fleet::default_fleet(opts.seed, t, u, p, now),
        FleetSource::File(path) => fleet::from_file(&FleetFile::load(path)?, t, u, p, now)?,
        FleetSource::Generate(g) => fleet::generate(*g, t, u, p, now),
        FleetSource::Fleet(f) => fleet::from_file(f, t, u, p, now)?,
    })
}

/// A running simulator.
pub struct SimHandle {
    /// Bound address.
    pub addr: SocketAddr,
    /// PEM file of the generated CA (TLS only).
    pub ca_file: Option<PathBuf>,
    /// The CA certificate PEM (TLS only).
    pub ca_pem: Option<String>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<TempDirGuard>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl SimHandle {
    /// The XML-RPC endpoint URL (`http(s)://127.0.0.1:PORT/rpc/api`).
    pub fn url(&self) -> String {
        format!("{}/rpc/api", self.base_url())
    }
    /// `http(s)://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }
    /// Call statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }
    /// Fast-forward virtual time.
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }
    /// Current virtual time.
    pub fn now(&self) -> NaiveDateTime {
        self.shared.clock.now()
    }
    /// Inspect or change the world (tests), after replaying events up to now.
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let now = self.shared.clock.now();
        let mut w = self.shared.world.lock().unwrap_or_else(|e| e.into_inner());
        w.tick(now);
        f(&mut w)
    }
    /// Stop serving and wait for the server task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Removes the CA directory when the handle goes away.
struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The simulator entry point.
pub struct SimServer;

impl SimServer {
    /// Build the fleet, bind, and serve in the background.
    pub async fn start(opts: SimOptions) -> Result<SimHandle, SimError> {
        let start = opts
            .start_time
            .unwrap_or_else(|| chrono::Utc::now().naive_utc());
        let clock = SimClock::new(start, opts.frozen_clock);
        let world = build_world(&opts, clock.now())?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| SimError::Io {
                what: format!("bind {}", opts.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Io {
            what: "local_addr".into(),
            source,
        })?;
        let (tls, ca_pem, ca_file, dir) = if opts.tls {
            let (cfg, pem) = tls_config()?;
            let dir_path = std::env::temp_dir().join(format!(
                "spm-sim-{}-{}",
                std::process::id(),
                addr.port()
            ));
            std::fs::create_dir_all(&dir_path).map_err(|source| SimError::Io {
                what: format!("create {}", dir_path.display()),
                source,
            })?;
            let dir = TempDirGuard(dir_path);
            let path = dir.0.join("ca.pem");
            std::fs::write(&path, &pem).map_err(|source| SimError::Io {
                what: format!("write {}", path.display()),
                source,
            })?;
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
                Some(pem),
                Some(path),
                Some(dir),
            )
        } else {
            (None, None, None, None)
        };
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            clock,
            stats: Stats::default(),
            rng: Mutex::new(StdRng::seed_from_u64(opts.seed ^ 0x5eed)),
            opts,
            addr,
        });
        if let Some(lab) = shared.opts.lab.clone() {
            link_lab(&shared, lab);
        }
        let app = router(shared.clone());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app, tls, cancel.clone()));
        Ok(SimHandle {
            addr,
            ca_file,
            ca_pem,
            shared,
            cancel,
            task,
            _dir: dir,
        })
    }
}

/// Connect the lab worker: systems named like lab systems are backed by them.
fn link_lab(shared: &Arc<Shared>, lab: Arc<crate::lab::Lab>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut w = shared.world.lock().unwrap_or_else(|e| e.into_inner());
    let systems = w
        .systems
        .values()
        .filter(|s| lab.systems().iter().any(|l| l.name() == s.name))
        .map(|s| (s.id, s.name.clone()))
        .collect();
    w.lab = Some(super::lab::LabLink { systems, jobs: tx });
    drop(w);
    let weak = Arc::downgrade(shared);
    let done = Arc::new(move |d: super::lab::LabDone| {
        if let Some(sh) = weak.upgrade() {
            let now = sh.clock.now();
            let mut w = sh.world.lock().unwrap_or_else(|e| e.into_inner());
            w.tick(now);
            super::lab::apply(&mut w, d, now);
        }
    });
    tokio::spawn(super::lab::worker(rx, lab, done));
}

fn tls_config() -> Result<(rustls::ServerConfig, String), SimError> {
    crate::services::ensure_crypto_provider();
    let e = |x: rcgen::Error| SimError::Tls(x.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "spm simulator CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(e)?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(e)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)
        .map_err(|x| SimError::Tls(x.to_string()))?;
    Ok((cfg, ca_cert.pem()))
}

async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("sim accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let result = match tls {
                Some(acc) => match acc.accept(stream).await {
                    Ok(s) => {
                        let conn = builder.serve_connection(TokioIo::new(s), svc);
                        tokio::select! { r = conn => r, () = cancel.cancelled() => Ok(()) }
                    }
                    Err(e) => {
                        tracing::debug!("sim TLS handshake failed: {e}");
                        return;
                    }
                },
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { r = conn => r, () = cancel.cancelled() => Ok(()) }
                }
            };
            if let Err(e) = result {
                tracing::debug!("sim connection ended: {e}");
            }
        });
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/rpc/api", post(rpc))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset", post(reset))
        .route("/_sim/clock/advance", post(advance))
        .route("/_sim/systems/{id}/metrics", get(system_metrics))
        .route("/_sim/prometheus-sd", get(prometheus_sd))
        .with_state(shared)
}

struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=UTF-8")], body).into_response()
}

fn fault_body(f: &Fault) -> String {
    encode_fault(f).unwrap_or_else(|_| {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>-1</int></value></member><member><name>faultString</name><value><string>encoding error</string></value></member></struct></value></fault></methodResponse>".into()
    })
}

async fn rpc(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    // The injected latency counts from here, so decoding the call is part of it.
    let arrival = Instant::now();
    let stats = &sh.stats;
    let now_in = stats.inflight.fetch_add(1, Ordering::Relaxed) + 1;
    stats.peak.fetch_max(now_in, Ordering::Relaxed);
    let _guard = InFlight(stats);
    stats.total.fetch_add(1, Ordering::Relaxed);
    let call = match decode_call(&body, &Limits::default()) {
        Ok(c) => c,
        Err(e) => {
            *stats
                .per_method
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry("<unparsable>".into())
                .or_default() += 1;
            return xml(fault_body(&Fault {
                code: -1,
                string: format!(
                    "redstone.xmlrpc.XmlRpcException: The request could not be parsed: {e}"
                ),
            }));
        }
    };
    *stats
        .per_method
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(call.name.clone())
        .or_default() += 1;
    let latency = if call.name == "auth.login" {
        sh.opts.login_latency_ms
    } else {
        sh.opts.latency_ms
    };
    let injected = {
        let mut rng = sh.rng.lock().unwrap_or_else(|e| e.into_inner());
        sh.opts.faults.pick(rng.random::<f64>())
    };
    // The answer is computed at once and held until `latency` after arrival, so the
    // simulator's own work (decoding, the handler, encoding) is part of the latency
    // instead of being added to it whenever it fits inside. A stalled call keeps the old
    // order (wait, stall, then run), so a client that gives up first changed nothing.
    let deadline = arrival + Duration::from_millis(latency);
    let body = match injected {
        Some(super::faults::Injected::Fault) => {
            fault_body(&handlers::unhandled("simulated failure (fault injection)"))
        }
        Some(super::faults::Injected::Malformed) => super::faults::MALFORMED.to_string(),
        Some(super::faults::Injected::Stall) => {
            super::delay::until(deadline).await;
            tokio::time::sleep(Duration::from_millis(sh.opts.faults.stall_ms)).await;
            answer(&sh, &call)
        }
        None => answer(&sh, &call),
    };
    super::delay::until(deadline).await;
    xml(body)
}

/// Run a decoded call against the world and encode the answer (a fault on failure).
fn answer(sh: &Shared, call: &crate::services::uyuni::xmlrpc::MethodCall) -> String {
    let now = sh.clock.now();
    let result = {
        let mut w = sh.world.lock().unwrap_or_else(|e| e.into_inner());
        handlers::dispatch(&mut w, now, &call.name, &call.params)
    };
    match result {
        Ok(v) => encode_success(&v).unwrap_or_else(|e| fault_body(&handlers::unhandled(e))),
        Err(f) => fault_body(&f),
    }
}

async fn stats(State(sh): State<Arc<Shared>>) -> Response {
    axum::Json(sh.stats.snapshot()).into_response()
}

async fn reset(State(sh): State<Arc<Shared>>) -> Response {
    match build_world(&sh.opts, sh.clock.now()) {
        Ok(mut w) => {
            let mut cur = sh.world.lock().unwrap_or_else(|e| e.into_inner());
            w.lab = cur.lab.take();
            *cur = w;
            sh.stats.reset();
            (StatusCode::OK, "reset\n").into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reset failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn advance(
    State(sh): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(secs) = q.get("seconds").and_then(|s| s.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "expected ?seconds=N\n").into_response();
    };
    sh.clock.advance(Duration::from_secs(secs));
    (StatusCode::OK, format!("{}\n", sh.clock.now())).into_response()
}

async fn system_metrics(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u32>() else {
        return (StatusCode::BAD_REQUEST, "system id must be a number\n").into_response();
    };
    let now = sh.clock.now();
    // Lab systems: the real node exporter's metrics, fetched over the lab bridge.
    let lab_name = {
        let w = sh.world.lock().unwrap_or_else(|e| e.into_inner());
        w.lab.as_ref().and_then(|l| l.systems.get(&id).cloned())
    };
    if let (Some(name), Some(lab)) = (lab_name, sh.opts.lab.clone()) {
        let scraped = match lab.system(&name) {
            Ok(s) => s.scrape_metrics().await,
            Err(e) => Err(e),
        };
        return match scraped {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                body,
            )
                .into_response(),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("lab system {name}: {e}\n"),
            )
                .into_response(),
        };
    }
    let mut w = sh.world.lock().unwrap_or_else(|e| e.into_inner());
    w.tick(now);
    match w.systems.get(&id) {
        None => (StatusCode::NOT_FOUND, format!("no system {id}\n")).into_response(),
        Some(s) if !s.reachable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("system {id} is down\n"),
        )
            .into_response(),
        Some(s) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics::render(s, now),
        )
            .into_response(),
    }
}

async fn prometheus_sd(State(sh): State<Arc<Shared>>) -> Response {
    let w = sh.world.lock().unwrap_or_else(|e| e.into_inner());
    axum::Json(metrics::service_discovery(
        &w,
        &sh.addr.to_string(),
        sh.opts.tls,
    ))
    .into_response()
}
