//! `spm sim`: serve a simulated UYUNI on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use crate::sim::clock::Timings;
use crate::sim::faults::FaultOptions;
use crate::sim::fleet::GenParams;
use crate::sim::{FleetSource, SimOptions, SimServer};

/// Arguments of `spm sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Serve HTTPS with a certificate generated at start (the CA file path is printed).
    #[arg(long)]
    pub tls: bool,
    /// Fleet file (TOML or JSON); default: the built-in fleet.
    #[arg(long, conflicts_with_all = ["systems", "errata"])]
    pub fleet: Option<PathBuf>,
    /// Generate this many production systems.
    #[arg(long, requires = "errata")]
    pub systems: Option<usize>,
    /// Generate this many errata.
    #[arg(long, requires = "systems")]
    pub errata: Option<usize>,
    /// Generated fleets: production packages at most this many versions behind their
    /// newest (1 % of systems neglected); without it, production systems lag by half of
    /// all released versions, so most errata are relevant everywhere.
    #[arg(long, requires = "systems")]
    pub max_lag: Option<u32>,
    /// Generated fleets: synthetic packages per OS next to the realistic ones (default:
    /// one per 100 errata, at most 200).
    #[arg(long, requires = "systems")]
    pub extra_packages: Option<usize>,
    /// Seed for generated fleets and fault injection.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Response time of every call, ms, counted from the request's arrival (the
    /// simulator's own work is inside it, not added).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Response time of auth.login, ms, counted the same way.
    #[arg(long, default_value_t = 0)]
    pub login_latency_ms: u64,
    /// API login.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// API password.
    #[arg(
        long,
        env = "SPM_SIM_PASSWORD",
        default_value = "admin",
        hide_env_values = true
    )]
    pub password: String,
    /// Actions complete at once (no pickup or run time).
    #[arg(long)]
    pub instant: bool,
    /// Errata actions run this many virtual seconds after pickup (overrides the default
    /// and `--instant` for errata actions only).
    #[arg(long, value_name = "SECONDS")]
    pub errata_action_s: Option<u64>,
    /// Freeze the virtual clock: it moves only by `POST /_sim/clock/advance?seconds=N`.
    #[arg(long)]
    pub frozen_clock: bool,
    /// Share of calls answered with an injected fault (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Share of calls that stall (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub stall_rate: f64,
    /// Stall length, ms.
    #[arg(long, default_value_t = 30_000)]
    pub stall_ms: u64,
    /// Share of calls answered with malformed XML (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// Back the simulator with N real lab systems (root only; see `spm lab`): their
    /// actions run for real and their packages come from real dpkg state.
    #[arg(long, conflicts_with_all = ["fleet", "systems", "errata"], value_name = "N")]
    pub lab: Option<u32>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub exit_after_s: Option<u64>,
}

/// Run `spm sim`.
pub fn run(args: SimArgs) -> anyhow::Result<Outcome> {
    for (name, v) in [
        ("--fault-rate", args.fault_rate),
        ("--stall-rate", args.stall_rate),
        ("--malformed-rate", args.malformed_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&v),
            "{name} must be between 0 and 1, got {v}"
        );
    }
    let fleet = match (&args.fleet, args.systems, args.errata) {
        (Some(f), _, _) => FleetSource::File(f.clone()),
        (None, Some(systems), Some(errata)) => FleetSource::Generate(GenParams {
            systems,
            errata,
            extra_packages: args.extra_packages.unwrap_or((errata / 100).clamp(0, 200)),
            seed: args.seed,
            max_lag: args.max_lag,
        }),
        _ => FleetSource::Default,
    };
    let opts = SimOptions {
        listen: args.listen,
        tls: args.tls,
        fleet,
        user: args.user,
        password: args.password,
        latency_ms: args.latency_ms,
        login_latency_ms: args.login_latency_ms,
        timings: {
            let mut t = if args.instant {
                Timings::instant()
            } else {
                Timings::default()
            };
            if let Some(s) = args.errata_action_s {
                t.errata_s = s;
            }
            t
        },
        frozen_clock: args.frozen_clock,
        start_time: None,
        faults: FaultOptions {
            fault_rate: args.fault_rate,
            stall_rate: args.stall_rate,
            stall_ms: args.stall_ms,
            malformed_rate: args.malformed_rate,
        },
        seed: args.seed,
        lab: None,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let mut opts = opts;
        if let Some(n) = args.lab {
            // Ctrl-C while the lab starts drops it half-built; its Drop tears it down.
            let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("install SIGINT handler")?;
            let lab = tokio::select! {
                r = crate::lab::Lab::up(n, crate::lab::LabOptions::default()) => {
                    r.context("starting the lab")?
                }
                _ = int.recv() => anyhow::bail!("interrupted; lab torn down"),
            };
            let fleet = crate::sim::lab::fleet(&lab)
                .await
                .context("mapping lab systems to simulated systems")?;
            opts.fleet = FleetSource::Fleet(Box::new(fleet));
            opts.lab = Some(std::sync::Arc::new(lab));
        }
        let lab = opts.lab.clone();
        let handle = SimServer::start(opts)
            .await
            .context("starting the simulator")?;
        let (systems, errata) = handle.with_world(|w| (w.systems.len(), w.catalog.errata.len()));
        println!("url: {}", handle.url());
        if let Some(ca) = &handle.ca_file {
            println!("ca_file: {}", ca.display());
        }
        println!("systems: {systems}, errata: {errata}");
        println!("metrics: {}/_sim/prometheus-sd", handle.base_url());
        match args.exit_after_s {
            Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
            None => {
                tokio::signal::ctrl_c()
                    .await
                    .context("waiting for Ctrl-C")?;
            }
        }
        handle.shutdown().await;
        if lab.is_some() {
            let left = crate::lab::teardown();
            anyhow::ensure!(
                left.is_empty(),
                "lab teardown left behind: {}",
                left.join("; ")
            );
        }
        Ok(Outcome::Ok)
    })
}
