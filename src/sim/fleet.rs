//! Fleets: the fleet file format, the default fleet and the large-fleet generator.
//!
//! # Fleet file (TOML or JSON, chosen by extension)
//!
//! ```toml
//! seed = 7                        # optional; boot ids and other generated values
//!
//! [[packages]]                    # extra channel packages, e.g. older versions to roll back to
//! os = "ubuntu-24.04"             # ubuntu-24.04 | debian-12 | rhel-9
//! name = "openssl"
//! version = "3.0.13-0ubuntu3.3"   # [epoch:]version-release; arch defaults by OS
//!
//! [[errata]]
//! advisory = "USN-7001-1"
//! os = "ubuntu-24.04"
//! type = "security"               # security | bugfix | enhancement
//! severity = "Important"          # Security only: Critical, Important, Moderate, Low
//! synopsis = "OpenSSL vulnerabilities"
//! cves = ["CVE-2024-5535"]
//! packages = ["openssl=3.0.13-0ubuntu3.5"]
//! reboot_suggested = false
//! behaviour = { fail = false, hang = false, stop_service = "nginx.service",
//!               cpu_raise = 0.4, memory_raise_mb = 512, needs_reboot = false }
//!
//! [[systems]]
//! name = "test-ubuntu-01"
//! os = "ubuntu-24.04"
//! groups = ["test-ubuntu"]
//! packages = ["openssl=3.0.13-0ubuntu3.4", "linux-image-generic=6.8.0-45.1"]
//! services = ["ssh.service", "nginx.service"]
//! online = true                   # false: actions stay Queued
//! never_returns_from_reboot = false
//! snapper = true                  # a snapper root config exists
//! ```
//!
//! Every version named anywhere becomes a package in the OS's base channel.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::clock::Timings;
use super::evr::Evr;
use super::model::{
    AdvisoryType, Catalog, Channel, ChannelId, Erratum, ErratumBehaviour, Group, Installed, Os,
    Package, PkgId, Snapper, System, SystemBehaviour, SystemId, UnitState, kernel_release,
};
use super::world::{Environment, Project, User, World, boot_id};

/// First system id, as in UYUNI.
pub const FIRST_SYSTEM_ID: SystemId = 1_000_010_000;

/// A fleet file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// Seed.
    #[serde(default)]
    pub seed: u64,
    /// Extra channel packages.
    #[serde(default)]
    pub packages: Vec<PackageSpec>,
    /// Errata.
    #[serde(default)]
    pub errata: Vec<ErratumSpec>,
    /// Systems.
    #[serde(default)]
    pub systems: Vec<SystemSpec>,
}

/// An extra channel package.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// OS.
    pub os: String,
    /// Name.
    pub name: String,
    /// `[epoch:]version-release`.
    pub version: String,
    /// Arch label (default by OS).
    pub arch: Option<String>,
}

/// Erratum behaviours in a fleet file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourSpec {
    /// Fail to apply.
    pub fail: bool,
    /// Stay Picked Up forever.
    pub hang: bool,
    /// Unit that ends up failed.
    pub stop_service: Option<String>,
    /// CPU busy fraction added.
    pub cpu_raise: f64,
    /// Memory added, MiB.
    pub memory_raise_mb: u64,
    /// Needs a reboot.
    pub needs_reboot: bool,
}

/// An erratum in a fleet file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErratumSpec {
    /// Advisory name.
    pub advisory: String,
    /// OS whose channel publishes it.
    pub os: String,
    /// security | bugfix | enhancement (or the full UYUNI text).
    #[serde(rename = "type")]
    pub kind: String,
    /// Severity (Security only).
    pub severity: Option<String>,
    /// Synopsis.
    pub synopsis: Option<String>,
    /// CVEs.
    #[serde(default)]
    pub cves: Vec<String>,
    /// `name=version` items.
    pub packages: Vec<String>,
    /// reboot_suggested.
    #[serde(default)]
    pub reboot_suggested: bool,
    /// restart_suggested.
    #[serde(default)]
    pub restart_suggested: bool,
    /// final / stable / testing / retracted.
    pub status: Option<String>,
    /// Issue date `YYYY-MM-DD`.
    pub issue_date: Option<String>,
    /// Side effects.
    #[serde(default)]
    pub behaviour: BehaviourSpec,
}

fn yes() -> bool {
    true
}

/// A system in a fleet file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    /// Profile name.
    pub name: String,
    /// OS.
    pub os: String,
    /// Group names (created on demand).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Installed packages, `name=version`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// systemd units (active).
    #[serde(default)]
    pub services: Vec<String>,
    /// Online.
    #[serde(default = "yes")]
    pub online: bool,
    /// Never comes back from a reboot.
    #[serde(default)]
    pub never_returns_from_reboot: bool,
    /// Snapper root config exists.
    #[serde(default = "yes")]
    pub snapper: bool,
    /// IPv4 address (default generated).
    pub ip: Option<String>,
    /// Free disk, MiB.
    pub disk_free_mb: Option<u64>,
    /// Memory, MiB.
    pub mem_total_mb: Option<u64>,
    /// Base CPU busy fraction.
    pub cpu_busy: Option<f64>,
    /// The package manager lock is held.
    #[serde(default)]
    pub pkg_lock_held: bool,
}

/// A fleet that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Reading the file failed.
    #[error("cannot read fleet file {path}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Parsing failed.
    #[error("invalid fleet file {path}: {message}")]
    Parse {
        /// Path.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A semantic error.
    #[error("invalid fleet: {0}")]
    Invalid(String),
}

impl FleetFile {
    /// Read a TOML (`.toml`) or JSON (anything else) fleet file.
    pub fn load(path: &Path) -> Result<FleetFile, FleetError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Io {
            path: p.clone(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| FleetError::Parse {
                path: p,
                message: e.to_string(),
            })
        } else {
            serde_json::from_str(&text).map_err(|e| FleetError::Parse {
                path: p,
                message: e.to_string(),
            })
        }
    }
}

/// Incrementally builds a [`World`].
pub struct FleetBuilder {
    catalog: Catalog,
    pkg_index: HashMap<(Os, String, String), PkgId>,
    systems: BTreeMap<SystemId, System>,
    groups: BTreeMap<String, BTreeSet<SystemId>>,
    seed: u64,
    base_time: NaiveDateTime,
}

fn parse_os(s: &str) -> Result<Os, FleetError> {
    Os::parse(s).ok_or_else(|| {
        FleetError::Invalid(format!(
            "unknown os {s:?} (expected ubuntu-24.04, debian-12 or rhel-9)"
        ))
    })
}

fn split_item(item: &str) -> Result<(&str, &str), FleetError> {
    item.split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| FleetError::Invalid(format!("package {item:?} is not NAME=VERSION")))
}

impl FleetBuilder {
    /// Start with one base channel per OS.
    pub fn new(seed: u64, base_time: NaiveDateTime) -> FleetBuilder {
        let mut catalog = Catalog::default();
        for (i, os) in Os::ALL.iter().enumerate() {
            let id = i as ChannelId + 101;
            catalog.channels.insert(
                id,
                Channel {
                    id,
                    label: os.channel_label().to_string(),
                    name: format!("{} base channel", os.channel_label()),
                    os: *os,
                    packages: Vec::new(),
                },
            );
            catalog
                .channel_by_label
                .insert(os.channel_label().to_string(), id);
        }
        FleetBuilder {
            catalog,
            pkg_index: HashMap::new(),
            systems: BTreeMap::new(),
            groups: BTreeMap::new(),
            seed,
            base_time,
        }
    }

    fn channel(&self, os: Os) -> ChannelId {
        self.catalog
            .channel_by_label
            .get(os.channel_label())
            .copied()
            .unwrap_or(101)
    }

    /// Add (or find) a channel package.
    pub fn package(
        &mut self,
        os: Os,
        name: &str,
        version: &str,
        arch: Option<&str>,
    ) -> Result<PkgId, FleetError> {
        let key = (os, name.to_string(), version.to_string());
        if let Some(id) = self.pkg_index.get(&key) {
            return Ok(*id);
        }
        let evr = Evr::parse(os.kind(), version)
            .map_err(|e| FleetError::Invalid(format!("package {name}: {e}")))?;
        let id = self.catalog.packages.len() as PkgId + 1;
        let channel = self.channel(os);
        let default_arch = if name.starts_with("linux-") || !name.contains("-doc") {
            os.arch()
        } else if os.kind() == super::evr::PkgKind::Deb {
            "all-deb"
        } else {
            "noarch"
        };
        self.catalog.packages.push(Package {
            id,
            name: name.to_string(),
            evr,
            arch: arch.unwrap_or(default_arch).to_string(),
            kind: os.kind(),
            channel,
        });
        if let Some(c) = self.catalog.channels.get_mut(&channel) {
            c.packages.push(id);
        }
        self.pkg_index.insert(key, id);
        Ok(id)
    }

    /// Add an erratum.
    pub fn erratum(&mut self, os: Os, spec: &ErratumSpec) -> Result<(), FleetError> {
        if self.catalog.erratum_by_name.contains_key(&spec.advisory) {
            return Err(FleetError::Invalid(format!(
                "duplicate advisory {}",
                spec.advisory
            )));
        }
        let kind = AdvisoryType::parse(&spec.kind).ok_or_else(|| {
            FleetError::Invalid(format!("{}: unknown type {:?}", spec.advisory, spec.kind))
        })?;
        let mut packages = Vec::new();
        for item in &spec.packages {
            let (n, v) = split_item(item)?;
            packages.push(self.package(os, n, v, None)?);
        }
        if packages.is_empty() {
            return Err(FleetError::Invalid(format!(
                "{}: no packages",
                spec.advisory
            )));
        }
        let issue = match &spec.issue_date {
            Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| {
                    FleetError::Invalid(format!(
                        "{}: issue_date {d:?} is not YYYY-MM-DD",
                        spec.advisory
                    ))
                })?
                .and_hms_opt(9, 0, 0)
                .unwrap_or(self.base_time),
            None => self.base_time - chrono::Duration::days(30),
        };
        let status = spec.status.clone().unwrap_or_else(|| "final".into());
        if !matches!(
            status.as_str(),
            "final" | "stable" | "testing" | "retracted"
        ) {
            return Err(FleetError::Invalid(format!(
                "{}: unknown status {status:?}",
                spec.advisory
            )));
        }
        let id = self.catalog.errata.len() as u32 + 1;
        let b = &spec.behaviour;
        let first_pkg = spec
            .packages
            .first()
            .map(|p| p.split('=').next().unwrap_or(p))
            .unwrap_or("");
        self.catalog.errata.push(Erratum {
            id,
            advisory: spec.advisory.clone(),
            release: 1,
            kind,
            synopsis: spec
                .synopsis
                .clone()
                .unwrap_or_else(|| format!("{first_pkg} update")),
            description: format!("This update fixes issues in {first_pkg}."),
            severity: if kind == AdvisoryType::Security {
                Some(spec.severity.clone().unwrap_or_else(|| "Moderate".into()))
            } else {
                None
            },
            status,
            issue_date: issue,
            update_date: issue,
            reboot_suggested: spec.reboot_suggested,
            restart_suggested: spec.restart_suggested,
            cves: spec.cves.clone(),
            packages,
            channels: vec![self.channel(os)],
            behaviour: ErratumBehaviour {
                fail: b.fail,
                hang: b.hang,
                stop_service: b.stop_service.as_ref().map(|s| unit_name(s)),
                cpu_raise: b.cpu_raise,
                memory_raise_mb: b.memory_raise_mb,
                needs_reboot: b.needs_reboot,
            },
        });
        self.catalog
            .erratum_by_name
            .insert(spec.advisory.clone(), id);
        Ok(())
    }

    /// Add a system.
    pub fn system(&mut self, spec: &SystemSpec) -> Result<SystemId, FleetError> {
        let os = parse_os(&spec.os)?;
        let id = FIRST_SYSTEM_ID + self.systems.len() as SystemId;
        if self.systems.values().any(|s| s.name == spec.name) {
            return Err(FleetError::Invalid(format!(
                "duplicate system name {}",
                spec.name
            )));
        }
        let mut installed = BTreeMap::new();
        for item in &spec.packages {
            let (n, v) = split_item(item)?;
            let pid = self.package(os, n, v, None)?;
            let p = &self.catalog.packages[pid as usize - 1];
            installed.insert(
                n.to_string(),
                Installed {
                    name: n.to_string(),
                    evr: p.evr.clone(),
                    arch: p.arch.clone(),
                    installtime: self.base_time - chrono::Duration::days(40),
                },
            );
        }
        let n = id - FIRST_SYSTEM_ID;
        let mem_total = spec.mem_total_mb.unwrap_or(8192) * 1024 * 1024;
        let running_kernel =
            kernel_release(os, &installed).unwrap_or_else(|| "6.8.0-45-generic".into());
        let hostname = format!("{}.example.test", spec.name);
        let sys = System {
            id,
            name: spec.name.clone(),
            hostname,
            ip: spec
                .ip
                .clone()
                .unwrap_or_else(|| format!("10.{}.{}.{}", 10 + os as u32, n / 250, n % 250 + 2)),
            ip6: format!("fd00::{:x}", n + 2),
            minion_id: format!("{}.example.test", spec.name),
            machine_id: format!("{:032x}", u128::from(id) * 0x9e37_79b9_7f4a_7c15),
            os,
            channels: vec![self.channel(os)],
            installed,
            online: spec.online,
            down_until: None,
            boot_id: boot_id(self.seed, id, 0),
            running_kernel,
            created: self.base_time - chrono::Duration::days(200),
            last_checkin: self.base_time - chrono::Duration::minutes(5),
            last_boot: self.base_time - chrono::Duration::days(12),
            reboot_needed: false,
            units: spec
                .services
                .iter()
                .map(|s| (unit_name(s), UnitState::Active))
                .collect(),
            cpu_busy: spec.cpu_busy.unwrap_or(0.08 + f64::from(n % 7) * 0.01),
            cpu_raised: 0.0,
            mem_raised: 0,
            mem_total,
            mem_used: mem_total / 4,
            disk_total_mb: 51_175,
            disk_free_mb: spec
                .disk_free_mb
                .unwrap_or(30_000 + u64::from(n % 13) * 500),
            pkg_lock_held: spec.pkg_lock_held,
            snapper: Snapper {
                root_config: spec.snapper,
                ..Snapper::default()
            },
            behaviour: SystemBehaviour {
                never_returns_from_reboot: spec.never_returns_from_reboot,
            },
            notes: Vec::new(),
            relevant: BTreeSet::new(),
        };
        for g in &spec.groups {
            self.groups.entry(g.clone()).or_default().insert(id);
        }
        self.systems.insert(id, sys);
        Ok(id)
    }

    /// Finish: build indices, compute relevance, add users, groups and a CLM project.
    pub fn finish(mut self, timings: Timings, user: &str, password: &str) -> World {
        self.catalog.build_indices();
        let mut world = World::new(self.catalog, self.seed, timings);
        let mut cache = super::model::RelevanceCache::new();
        for s in self.systems.values_mut() {
            s.recompute_relevance_cached(&world.catalog, Some(&mut cache));
        }
        world.systems = self.systems;
        for (i, (name, members)) in self.groups.into_iter().enumerate() {
            let id = i as u32 + 1;
            world.groups.insert(
                id,
                Group {
                    id,
                    name: name.clone(),
                    description: format!("Systems in {name}"),
                    members,
                },
            );
        }
        world.users.push(User {
            login: user.to_string(),
            password: password.to_string(),
            id: 1,
            org_admin: true,
        });
        let env = |id: u32, label: &str, name: &str| Environment {
            id,
            label: label.into(),
            name: name.into(),
            description: format!("{name} environment"),
            version: 0,
            status: "new".into(),
            status_since: None,
        };
        world.projects.push(Project {
            id: 1,
            label: "spm-monthly".into(),
            name: "SPM monthly patches".into(),
            description: "Errata frozen per month for the patch pipeline".into(),
            envs: vec![
                env(1, "dev", "Development"),
                env(2, "test", "Test"),
                env(3, "prod", "Production"),
            ],
            validation_errors: Vec::new(),
        });
        world
    }
}

/// `nginx` → `nginx.service`; names with a suffix are kept.
pub fn unit_name(s: &str) -> String {
    if s.contains('.') {
        s.to_string()
    } else {
        format!("{s}.service")
    }
}

/// Build a world from a fleet file.
pub fn from_file(
    file: &FleetFile,
    timings: Timings,
    user: &str,
    password: &str,
    now: NaiveDateTime,
) -> Result<World, FleetError> {
    let mut b = FleetBuilder::new(file.seed, now);
    let at = |what: String| {
        move |e: FleetError| match e {
            FleetError::Invalid(m) => FleetError::Invalid(format!("{what}: {m}")),
            other => other,
        }
    };
    for (i, p) in file.packages.iter().enumerate() {
        let os = parse_os(&p.os).map_err(at(format!("packages[{i}] ({})", p.name)))?;
        b.package(os, &p.name, &p.version, p.arch.as_deref())
            .map_err(at(format!("packages[{i}] ({})", p.name)))?;
    }
    for (i, e) in file.errata.iter().enumerate() {
        let os = parse_os(&e.os).map_err(at(format!("errata[{i}] ({})", e.advisory)))?;
        b.erratum(os, e)
            .map_err(at(format!("errata[{i}] ({})", e.advisory)))?;
    }
    for (i, s) in file.systems.iter().enumerate() {
        b.system(s)
            .map_err(at(format!("systems[{i}] ({})", s.name)))?;
    }
    Ok(b.finish(timings, user, password))
}

/// A package template: name, version pattern with `{}` for the patch counter, first counter.
type Template = (&'static str, &'static str, u32);

const UBUNTU: &[Template] = &[
    ("openssl", "3.0.13-0ubuntu3.{}", 1),
    ("libssl3t64", "3.0.13-0ubuntu3.{}", 1),
    ("openssh-server", "1:9.6p1-3ubuntu13.{}", 1),
    ("openssh-client", "1:9.6p1-3ubuntu13.{}", 1),
    ("nginx", "1.24.0-2ubuntu7.{}", 1),
    ("curl", "8.5.0-2ubuntu10.{}", 1),
    ("libcurl4t64", "8.5.0-2ubuntu10.{}", 1),
    ("sudo", "1.9.15p5-3ubuntu5.{}", 1),
    ("libc6", "2.39-0ubuntu8.{}", 1),
    ("systemd", "255.4-1ubuntu8.{}", 1),
    ("python3.12", "3.12.3-1ubuntu0.{}", 1),
    ("vim", "2:9.1.0016-1ubuntu7.{}", 1),
    ("git", "1:2.43.0-1ubuntu7.{}", 1),
    ("postgresql-16", "16.4-0ubuntu0.24.04.{}", 1),
    ("libxml2", "2.9.14+dfsg-1.3ubuntu3.{}", 1),
    ("linux-image-generic", "6.8.0-{}.1", 45),
];
const DEBIAN: &[Template] = &[
    ("openssl", "3.0.15-1~deb12u{}", 1),
    ("libssl3", "3.0.15-1~deb12u{}", 1),
    ("openssh-server", "1:9.2p1-2+deb12u{}", 1),
    ("nginx", "1.22.1-9+deb12u{}", 1),
    ("curl", "7.88.1-10+deb12u{}", 1),
    ("sudo", "1.9.13p3-1+deb12u{}", 1),
    ("libc6", "2.36-9+deb12u{}", 1),
    ("systemd", "252.30-1~deb12u{}", 1),
    ("bind9", "1:9.18.28-1~deb12u{}", 1),
    ("postgresql-15", "15.8-0+deb12u{}", 1),
    ("libxml2", "2.9.14+dfsg-1.3~deb12u{}", 1),
    ("linux-image-amd64", "6.1.{}-1", 110),
];
const RHEL: &[Template] = &[
    ("openssl", "1:3.0.7-{}.el9_4", 24),
    ("openssl-libs", "1:3.0.7-{}.el9_4", 24),
    ("openssh-server", "8.7p1-{}.el9_4", 38),
    ("nginx", "1:1.20.1-{}.el9_4", 14),
    ("curl", "7.76.1-{}.el9_4", 29),
    ("sudo", "1.9.5p2-{}.el9_4", 10),
    ("glibc", "2.34-{}.el9_4", 100),
    ("systemd", "252-{}.el9_4", 32),
    ("bind", "32:9.16.23-{}.el9_4", 18),
    ("python3", "3.9.18-{}.el9_4", 3),
    ("vim-enhanced", "2:8.2.2637-{}.el9_4", 20),
    ("postgresql", "13.14-{}.el9_4", 1),
    ("kernel", "5.14.0-{}.el9_4", 427),
];

fn templates(os: Os) -> &'static [Template] {
    match os {
        Os::Ubuntu2404 => UBUNTU,
        Os::Debian12 => DEBIAN,
        Os::Rhel9 => RHEL,
    }
}

fn services(os: Os, role: &str) -> Vec<String> {
    let mut v: Vec<String> = match os {
        Os::Rhel9 => vec![
            "sshd.service",
            "crond.service",
            "rsyslog.service",
            "node_exporter.service",
        ],
        _ => vec![
            "ssh.service",
            "cron.service",
            "rsyslog.service",
            "prometheus-node-exporter.service",
        ],
    }
    .into_iter()
    .map(String::from)
    .collect();
    match role {
        "web" => v.push("nginx.service".into()),
        "db" => v.push("postgresql.service".into()),
        _ => {}
    }
    v
}

/// Parameters of a generated fleet.
#[derive(Debug, Clone, Copy)]
pub struct GenParams {
    /// Production systems (test systems come on top: 2 per OS).
    pub systems: usize,
    /// Errata across all OSes.
    pub errata: usize,
    /// Extra synthetic packages per OS (besides the realistic templates).
    pub extra_packages: usize,
    /// Seed.
    pub seed: u64,
    /// How far production systems lag behind. `None`: every package of a production
    /// system sits anywhere in the lower half of its released versions, so most of its
    /// OS's errata are relevant (a badly neglected fleet; the default fleet uses this).
    /// `Some(k)`: the patch-lag model of a maintained fleet, where 99 % of production
    /// systems miss only recent updates (each package 0..=k versions behind its newest)
    /// and 1 % are neglected (still at the base version of every package). Test systems
    /// always stay at the base, so every erratum is relevant to them.
    pub max_lag: Option<u32>,
}

/// The default fleet: 2 test systems per OS, ~50 production systems, ~360 errata.
pub fn default_fleet(
    seed: u64,
    timings: Timings,
    user: &str,
    password: &str,
    now: NaiveDateTime,
) -> World {
    generate(
        GenParams {
            systems: 48,
            errata: 360,
            extra_packages: 0,
            seed,
            max_lag: None,
        },
        timings,
        user,
        password,
        now,
    )
}

/// Generate a fleet deterministically from `p.seed`.
pub fn generate(
    p: GenParams,
    timings: Timings,
    user: &str,
    password: &str,
    now: NaiveDateTime,
) -> World {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut b = FleetBuilder::new(p.seed, now);
    // Per OS: templates (realistic first, then synthetic), current counter per template.
    let mut tpl: BTreeMap<Os, Vec<(String, String, u32)>> = BTreeMap::new();
    for os in Os::ALL {
        let mut v: Vec<(String, String, u32)> = templates(os)
            .iter()
            .map(|(n, pat, c)| (n.to_string(), pat.to_string(), *c))
            .collect();
        for i in 0..p.extra_packages {
            let pat = match os.kind() {
                super::evr::PkgKind::Deb => format!("1.{}.0-{{}}", i % 17),
                super::evr::PkgKind::Rpm => format!("2.{}.1-{{}}.el9", i % 13),
            };
            v.push((format!("libsim{i:04}"), pat, 1));
        }
        tpl.insert(os, v);
    }
    let base: BTreeMap<Os, Vec<u32>> = tpl
        .iter()
        .map(|(os, v)| (*os, v.iter().map(|t| t.2).collect()))
        .collect();
    let version = |pat: &str, n: u32| pat.replacen("{}", &n.to_string(), 1);
    let severities = ["Critical", "Important", "Moderate", "Low"];
    let mut counters: BTreeMap<Os, Vec<u32>> = base.clone();
    for k in 0..p.errata {
        let os = Os::ALL[k % 3];
        let list = &tpl[&os];
        let i = rng.random_range(0..list.len());
        let mut picks = vec![i];
        // Library/binary pairs travel together, as in real advisories.
        if i + 1 < list.len() && list[i + 1].1 == list[i].1 {
            picks.push(i + 1);
        } else if i > 0 && list[i - 1].1 == list[i].1 {
            picks.push(i - 1);
        }
        let mut pkgs = Vec::new();
        let ctr = counters.entry(os).or_default();
        let n = ctr[i] + 1;
        for &j in &picks {
            ctr[j] = n;
            pkgs.push(format!("{}={}", list[j].0, version(&list[j].1, n)));
        }
        let name0 = list[i].0.clone();
        let kernel = matches!(
            name0.as_str(),
            "kernel" | "linux-image-generic" | "linux-image-amd64"
        );
        let roll = rng.random_range(0..10);
        let kind = match roll {
            0 | 1 => "bugfix",
            2 => "enhancement",
            _ => "security",
        };
        let seq = k / 3;
        let advisory = match (os, kind) {
            (Os::Ubuntu2404, _) => format!("USN-{}-1", 6800 + seq),
            (Os::Debian12, _) if seq % 4 == 3 => format!("DLA-{}-1", 3900 + seq),
            (Os::Debian12, _) => format!("DSA-{}-1", 5700 + seq),
            (Os::Rhel9, "security") => format!("RHSA-2024:{}", 1000 + seq * 7),
            (Os::Rhel9, "bugfix") => format!("RHBA-2024:{}", 1000 + seq * 7),
            (Os::Rhel9, _) => format!("RHEA-2024:{}", 1000 + seq * 7),
        };
        let cves: Vec<String> = if kind == "security" {
            (0..rng.random_range(1..4))
                .map(|c| format!("CVE-2024-{}", 20000 + k * 3 + c))
                .collect()
        } else {
            Vec::new()
        };
        let synopsis = match kind {
            "security" if os == Os::Rhel9 => format!("Important: {name0} security update"),
            "security" => format!("{name0} vulnerabilities"),
            "bugfix" => format!("{name0} bug fix update"),
            _ => format!("{name0} enhancement update"),
        };
        let spec = ErratumSpec {
            advisory,
            os: os.family().into(),
            kind: kind.into(),
            severity: Some(severities[rng.random_range(0..4)].into()),
            synopsis: Some(synopsis),
            cves,
            packages: pkgs,
            reboot_suggested: kernel,
            restart_suggested: false,
            status: None,
            issue_date: Some(
                (now - chrono::Duration::days(rng.random_range(1..400)))
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            behaviour: BehaviourSpec::default(),
        };
        // Generated names are unique by construction; ignore the impossible duplicate.
        let _ = b.erratum(os, &spec);
    }
    // Systems: test groups (2 per OS), then production groups.
    let roles = ["web", "db", "app"];
    let mut specs = Vec::new();
    for os in Os::ALL {
        for i in 1..=2 {
            specs.push((
                os,
                format!("test-{}-{i:02}", os.family()),
                format!("test-{}", os.family()),
                "web",
                true,
            ));
        }
    }
    for n in 0..p.systems {
        let os = Os::ALL[n % 3];
        let role = roles[(n / 3) % 3];
        let per_group = 50;
        let grp = if p.systems > 150 {
            format!("prod-{}-{role}-{}", os.family(), n / (3 * per_group))
        } else {
            format!("prod-{}-{role}", os.family())
        };
        specs.push((
            os,
            format!("{role}-{}-{:03}", os.family(), n / 3 + 1),
            grp,
            role,
            false,
        ));
    }
    for (os, name, group, role, test) in specs {
        let list = &tpl[&os];
        let maxc = &counters[&os];
        let basec = &base[&os];
        // Test systems start at the base (everything relevant); production systems are
        // partly patched (see `GenParams::max_lag`), so relevance varies by system.
        let neglected = !test && p.max_lag.is_some() && rng.random_range(0..100) == 0;
        let pkgs: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let hi = maxc[i].max(basec[i]);
                let n = if test || neglected || hi == basec[i] {
                    basec[i]
                } else if let Some(k) = p.max_lag {
                    hi - rng.random_range(0..=k).min(hi - basec[i])
                } else {
                    rng.random_range(basec[i]..=basec[i] + (hi - basec[i]) / 2)
                };
                format!("{}={}", t.0, version(&t.1, n))
            })
            .collect();
        let spec = SystemSpec {
            name,
            os: os.family().into(),
            groups: vec![group],
            packages: pkgs,
            services: services(os, role),
            online: true,
            never_returns_from_reboot: false,
            snapper: true,
            ip: None,
            disk_free_mb: None,
            mem_total_mb: None,
            cpu_busy: None,
            pkg_lock_held: false,
        };
        let _ = b.system(&spec);
    }
    b.finish(timings, user, password)
}
