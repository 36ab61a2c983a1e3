//! The simulated UYUNI's state: content catalog (channels, packages, errata), systems,
//! groups, and the relevance index that ties installed packages to errata.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;

use super::evr::{Evr, PkgKind};

/// Package id (UYUNI's `rhnPackage.id`).
pub type PkgId = u32;
/// Erratum id.
pub type ErratumId = u32;
/// System id (from 1000010000 upwards).
pub type SystemId = u32;
/// Channel id.
pub type ChannelId = u32;

/// The operating systems the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Os {
    /// Ubuntu 24.04 LTS.
    Ubuntu2404,
    /// Debian 12 (bookworm).
    Debian12,
    /// Red Hat Enterprise Linux 9.
    Rhel9,
}

impl Os {
    /// All known OSes.
    pub const ALL: [Os; 3] = [Os::Ubuntu2404, Os::Debian12, Os::Rhel9];

    /// Parse `ubuntu-24.04`, `debian-12`, `rhel-9` (also `ubuntu`, `debian`, `rhel`).
    pub fn parse(s: &str) -> Option<Os> {
        match s.to_ascii_lowercase().as_str() {
            "ubuntu" | "ubuntu-24.04" | "ubuntu24.04" => Some(Os::Ubuntu2404),
            "debian" | "debian-12" | "debian12" => Some(Os::Debian12),
            "rhel" | "rhel-9" | "rhel9" => Some(Os::Rhel9),
            _ => None,
        }
    }
    /// Short family name used in labels and metrics (`ubuntu`, `debian`, `rhel`).
    pub fn family(self) -> &'static str {
        match self {
            Os::Ubuntu2404 => "ubuntu",
            Os::Debian12 => "debian",
            Os::Rhel9 => "rhel",
        }
    }
    /// Package manager flavour.
    pub fn kind(self) -> PkgKind {
        match self {
            Os::Rhel9 => PkgKind::Rpm,
            _ => PkgKind::Deb,
        }
    }
    /// `release` as UYUNI reports it.
    pub fn release(self) -> &'static str {
        match self {
            Os::Ubuntu2404 => "24.04",
            Os::Debian12 => "12",
            Os::Rhel9 => "9.4",
        }
    }
    /// Default architecture label of binary packages.
    pub fn arch(self) -> &'static str {
        match self {
            Os::Rhel9 => "x86_64",
            _ => "amd64-deb",
        }
    }
    /// Base channel label.
    pub fn channel_label(self) -> &'static str {
        match self {
            Os::Ubuntu2404 => "ubuntu-2404-amd64-main",
            Os::Debian12 => "debian-12-pool-amd64",
            Os::Rhel9 => "rhel9-baseos-x86_64",
        }
    }
    /// Contents of `/etc/os-release`.
    pub fn os_release(self) -> &'static str {
        match self {
            Os::Ubuntu2404 => concat!(
                "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\n",
                "VERSION=\"24.04.1 LTS (Noble Numbat)\"\nVERSION_CODENAME=noble\nID=ubuntu\n",
                "ID_LIKE=debian\nUBUNTU_CODENAME=noble\n"
            ),
            Os::Debian12 => concat!(
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n",
                "VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n"
            ),
            Os::Rhel9 => concat!(
                "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.4 (Plow)\"\nID=\"rhel\"\n",
                "ID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\nPLATFORM_ID=\"platform:el9\"\n",
                "PRETTY_NAME=\"Red Hat Enterprise Linux 9.4 (Plow)\"\n"
            ),
        }
    }
}

/// A package in a channel.
#[derive(Debug, Clone)]
pub struct Package {
    /// Package id.
    pub id: PkgId,
    /// Name.
    pub name: String,
    /// Epoch/version/release.
    pub evr: Evr,
    /// Architecture label (`x86_64`, `noarch`, `amd64-deb`, `all-deb`).
    pub arch: String,
    /// Ordering to use.
    pub kind: PkgKind,
    /// Channel holding it.
    pub channel: ChannelId,
}

/// A software channel.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Channel id.
    pub id: ChannelId,
    /// Label.
    pub label: String,
    /// Display name.
    pub name: String,
    /// OS the channel serves.
    pub os: Os,
    /// Packages it holds.
    pub packages: Vec<PkgId>,
}

/// The three advisory types UYUNI knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdvisoryType {
    /// "Security Advisory".
    Security,
    /// "Bug Fix Advisory".
    Bugfix,
    /// "Product Enhancement Advisory".
    Enhancement,
}

impl AdvisoryType {
    /// The wire text.
    pub fn label(self) -> &'static str {
        match self {
            AdvisoryType::Security => "Security Advisory",
            AdvisoryType::Bugfix => "Bug Fix Advisory",
            AdvisoryType::Enhancement => "Product Enhancement Advisory",
        }
    }
    /// Parse the wire text or a short form (`security`, `bugfix`, `enhancement`).
    pub fn parse(s: &str) -> Option<AdvisoryType> {
        match s {
            "Security Advisory" | "security" => Some(AdvisoryType::Security),
            "Bug Fix Advisory" | "bugfix" => Some(AdvisoryType::Bugfix),
            "Product Enhancement Advisory" | "enhancement" => Some(AdvisoryType::Enhancement),
            _ => None,
        }
    }
}

/// What happens, beyond upgrading packages, when an erratum is applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErratumBehaviour {
    /// The action fails and nothing is installed.
    pub fail: bool,
    /// The action stays Picked Up forever.
    pub hang: bool,
    /// This systemd unit ends up failed.
    pub stop_service: Option<String>,
    /// Added to the system's CPU busy fraction (0..1).
    pub cpu_raise: f64,
    /// Memory newly in use, in MiB.
    pub memory_raise_mb: u64,
    /// Marks the system reboot-required even without `reboot_suggested`.
    pub needs_reboot: bool,
}

/// An erratum (advisory).
#[derive(Debug, Clone)]
pub struct Erratum {
    /// Numeric id.
    pub id: ErratumId,
    /// Advisory name, e.g. `USN-7000-1`.
    pub advisory: String,
    /// Advisory release.
    pub release: i32,
    /// Type.
    pub kind: AdvisoryType,
    /// One-line synopsis.
    pub synopsis: String,
    /// Longer description.
    pub description: String,
    /// Severity label, Security only.
    pub severity: Option<String>,
    /// final / stable / testing / retracted.
    pub status: String,
    /// Issue date.
    pub issue_date: NaiveDateTime,
    /// Update date.
    pub update_date: NaiveDateTime,
    /// reboot_suggested keyword.
    pub reboot_suggested: bool,
    /// restart_suggested keyword.
    pub restart_suggested: bool,
    /// CVE names.
    pub cves: Vec<String>,
    /// Packages it ships.
    pub packages: Vec<PkgId>,
    /// Channels it is published in.
    pub channels: Vec<ChannelId>,
    /// Simulated side effects.
    pub behaviour: ErratumBehaviour,
}

/// Memo of relevance split points: (channel, package name, installed EVR) → index.
pub type RelevanceCache = HashMap<(ChannelId, String, String), usize>;

/// Everything that does not change while systems are patched.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Channels by id.
    pub channels: BTreeMap<ChannelId, Channel>,
    /// Channel id by label.
    pub channel_by_label: HashMap<String, ChannelId>,
    /// Packages by id (index = id - 1).
    pub packages: Vec<Package>,
    /// Errata by id (index = id - 1).
    pub errata: Vec<Erratum>,
    /// Erratum id by advisory name.
    pub erratum_by_name: HashMap<String, ErratumId>,
    /// Per channel and package name: `(package, erratum)` sorted by ascending EVR.
    pub fixes: HashMap<ChannelId, HashMap<String, Vec<(PkgId, ErratumId)>>>,
    /// Per channel and package name: all package ids sorted by ascending EVR.
    pub by_name: HashMap<ChannelId, HashMap<String, Vec<PkgId>>>,
    /// Whether any erratum is retracted (relevance must then filter them out).
    pub has_retracted: bool,
}

impl Catalog {
    /// Package by id.
    pub fn package(&self, id: PkgId) -> Option<&Package> {
        self.packages.get((id as usize).checked_sub(1)?)
    }
    /// Erratum by id.
    pub fn erratum(&self, id: ErratumId) -> Option<&Erratum> {
        self.errata.get((id as usize).checked_sub(1)?)
    }
    /// Erratum by advisory name.
    pub fn erratum_named(&self, name: &str) -> Option<&Erratum> {
        self.erratum_by_name
            .get(name)
            .and_then(|&id| self.erratum(id))
    }

    /// Build the sorted indices; call once after all packages and errata are in.
    pub fn build_indices(&mut self) {
        self.by_name.clear();
        self.fixes.clear();
        for p in &self.packages {
            self.by_name
                .entry(p.channel)
                .or_default()
                .entry(p.name.clone())
                .or_default()
                .push(p.id);
        }
        for e in &self.errata {
            for &pid in &e.packages {
                if let Some(p) = self.packages.get(pid as usize - 1) {
                    self.fixes
                        .entry(p.channel)
                        .or_default()
                        .entry(p.name.clone())
                        .or_default()
                        .push((pid, e.id));
                }
            }
        }
        self.has_retracted = self.errata.iter().any(|e| e.status == "retracted");
        let pk = &self.packages;
        let key = |id: PkgId| &pk[id as usize - 1];
        for v in self.by_name.values_mut().flat_map(|m| m.values_mut()) {
            v.sort_by(|a, b| key(*a).evr.cmp_with(&key(*b).evr, key(*a).kind));
        }
        for v in self.fixes.values_mut().flat_map(|m| m.values_mut()) {
            v.sort_by(|a, b| key(a.0).evr.cmp_with(&key(b.0).evr, key(a.0).kind));
        }
    }

    /// Errata in `channels` that ship a newer `name` than `installed`. `cache` remembers
    /// the split point per (channel, name, installed EVR) across systems.
    pub fn errata_fixing(
        &self,
        channels: &[ChannelId],
        name: &str,
        installed: &Evr,
        kind: PkgKind,
        out: &mut Vec<ErratumId>,
        mut cache: Option<&mut RelevanceCache>,
    ) {
        for &c in channels {
            let Some(list) = self.fixes.get(&c).and_then(|m| m.get(name)) else {
                continue;
            };
            let split = || {
                list.partition_point(|(pid, _)| {
                    self.packages[*pid as usize - 1]
                        .evr
                        .cmp_with(installed, kind)
                        .is_le()
                })
            };
            let first_newer = match cache.as_deref_mut() {
                Some(map) => *map
                    .entry((c, name.to_string(), installed.to_string()))
                    .or_insert_with(split),
                None => split(),
            };
            out.extend(list[first_newer..].iter().map(|&(_, e)| e));
        }
    }

    /// The newest package `name` in `channels`.
    pub fn latest(&self, channels: &[ChannelId], name: &str) -> Option<&Package> {
        channels
            .iter()
            .filter_map(|&c| self.by_name.get(&c)?.get(name)?.last())
            .map(|&id| &self.packages[id as usize - 1])
            .max_by(|a, b| a.evr.cmp_with(&b.evr, a.kind))
    }

    /// The package `name` with exactly `evr` in `channels` (same version and release
    /// strings; a missing epoch in `evr` matches any epoch when `any_epoch` is set).
    pub fn find_exact(
        &self,
        channels: &[ChannelId],
        name: &str,
        evr: &Evr,
        any_epoch: bool,
    ) -> Option<&Package> {
        channels
            .iter()
            .filter_map(|&c| self.by_name.get(&c)?.get(name))
            .flatten()
            .map(|&id| &self.packages[id as usize - 1])
            .find(|p| {
                p.evr.version == evr.version
                    && p.evr.release == evr.release
                    && ((any_epoch && evr.epoch.is_none())
                        || p.evr.epoch.unwrap_or(0) == evr.epoch.unwrap_or(0))
            })
    }

    /// Whether any package called `name` exists in `channels`.
    pub fn knows_name(&self, channels: &[ChannelId], name: &str) -> bool {
        channels
            .iter()
            .any(|&c| self.by_name.get(&c).is_some_and(|m| m.contains_key(name)))
    }
}

/// A package installed on a system.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// Name.
    pub name: String,
    /// Installed EVR.
    pub evr: Evr,
    /// Architecture label.
    pub arch: String,
    /// Install time.
    pub installtime: NaiveDateTime,
}

/// State of a systemd unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitState {
    /// Running.
    Active,
    /// Stopped.
    Inactive,
    /// Crashed or failed to start.
    Failed,
}

impl UnitState {
    /// `systemctl is-active` text.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Active => "active",
            UnitState::Inactive => "inactive",
            UnitState::Failed => "failed",
        }
    }
}

/// One snapper snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Snapshot number.
    pub number: u32,
    /// single / pre / post.
    pub kind: String,
    /// Creation time.
    pub date: NaiveDateTime,
    /// Description.
    pub description: String,
    /// Cleanup algorithm.
    pub cleanup: String,
    /// Installed package set at creation.
    pub packages: BTreeMap<String, Installed>,
}

/// Snapper state of a system.
#[derive(Debug, Clone, Default)]
pub struct Snapper {
    /// Whether the `root` config exists.
    pub root_config: bool,
    /// Last number handed out.
    pub last_number: u32,
    /// Snapshots, ascending.
    pub snapshots: Vec<Snapshot>,
}

/// Per-system behaviours from the fleet file.
#[derive(Debug, Clone, Default)]
pub struct SystemBehaviour {
    /// Never comes back after a reboot.
    pub never_returns_from_reboot: bool,
}

/// A managed system (a Salt minion).
#[derive(Debug, Clone)]
pub struct System {
    /// System id.
    pub id: SystemId,
    /// Profile name.
    pub name: String,
    /// Hostname.
    pub hostname: String,
    /// IPv4 address.
    pub ip: String,
    /// IPv6 address.
    pub ip6: String,
    /// Salt minion id.
    pub minion_id: String,
    /// machine-id.
    pub machine_id: String,
    /// Operating system.
    pub os: Os,
    /// Subscribed channels (base first).
    pub channels: Vec<ChannelId>,
    /// Installed packages by name.
    pub installed: BTreeMap<String, Installed>,
    /// Online (answers Salt jobs).
    pub online: bool,
    /// While rebooting: when it is back (None = never).
    pub down_until: Option<Option<NaiveDateTime>>,
    /// Current boot id.
    pub boot_id: String,
    /// Running kernel (`uname -r`).
    pub running_kernel: String,
    /// Registration time.
    pub created: NaiveDateTime,
    /// Last check-in.
    pub last_checkin: NaiveDateTime,
    /// Last boot.
    pub last_boot: NaiveDateTime,
    /// Needs a reboot.
    pub reboot_needed: bool,
    /// systemd units.
    pub units: BTreeMap<String, UnitState>,
    /// Base CPU busy fraction.
    pub cpu_busy: f64,
    /// CPU busy fraction added by applied errata.
    pub cpu_raised: f64,
    /// Memory added by applied errata, bytes (survives reboots).
    pub mem_raised: u64,
    /// Total memory, bytes.
    pub mem_total: u64,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// Root filesystem size, MiB.
    pub disk_total_mb: u64,
    /// Free space on `/`, MiB.
    pub disk_free_mb: u64,
    /// The package manager lock is held.
    pub pkg_lock_held: bool,
    /// Snapper.
    pub snapper: Snapper,
    /// Behaviours.
    pub behaviour: SystemBehaviour,
    /// Notes `(subject, body)`.
    pub notes: Vec<(String, String)>,
    /// Cached relevant errata.
    pub relevant: BTreeSet<ErratumId>,
}

impl System {
    /// Whether the system can run jobs now.
    pub fn reachable(&self) -> bool {
        self.online && self.down_until.is_none()
    }

    /// Recompute the relevant errata from installed packages.
    pub fn recompute_relevance(&mut self, catalog: &Catalog) {
        self.recompute_relevance_cached(catalog, None);
    }

    /// Like [`System::recompute_relevance`], sharing work across systems via `cache`.
    pub fn recompute_relevance_cached(
        &mut self,
        catalog: &Catalog,
        mut cache: Option<&mut RelevanceCache>,
    ) {
        let mut out = Vec::new();
        let kind = self.os.kind();
        for p in self.installed.values() {
            catalog.errata_fixing(
                &self.channels,
                &p.name,
                &p.evr,
                kind,
                &mut out,
                cache.as_deref_mut(),
            );
        }
        if catalog.has_retracted {
            out.retain(|id| {
                catalog
                    .erratum(*id)
                    .is_some_and(|e| e.status != "retracted")
            });
        }
        // A bitmap orders and dedups in linear time (errata ids are dense from 1).
        let mut bits = vec![0u64; catalog.errata.len() / 64 + 1];
        for id in out {
            if let Some(w) = bits.get_mut(id as usize / 64) {
                *w |= 1 << (id % 64);
            }
        }
        let mut sorted = Vec::new();
        for (i, &word) in bits.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                sorted.push(i as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
        self.relevant = sorted.into_iter().collect();
    }

    /// The kernel release the newest installed kernel would boot.
    pub fn newest_kernel(&self) -> Option<String> {
        kernel_release(self.os, &self.installed)
    }

    /// Whether a reboot-required marker exists (`/var/run/reboot-required`, needs-restarting).
    pub fn reboot_required(&self) -> bool {
        self.reboot_needed
            || self
                .newest_kernel()
                .is_some_and(|k| k != self.running_kernel)
    }
}

/// The `uname -r` that booting the installed kernel package would give.
pub fn kernel_release(os: Os, installed: &BTreeMap<String, Installed>) -> Option<String> {
    match os {
        Os::Rhel9 => installed
            .get("kernel")
            .map(|k| format!("{}-{}.x86_64", k.evr.version, k.evr.release)),
        Os::Ubuntu2404 => installed.get("linux-image-generic").map(|k| {
            let abi = k.evr.release.split('.').next().unwrap_or("0");
            format!("{}-{abi}-generic", k.evr.version)
        }),
        Os::Debian12 => installed.get("linux-image-amd64").map(|k| {
            let abi = k.evr.release.split('.').next().unwrap_or("0");
            format!("{}-{abi}-amd64", k.evr.version)
        }),
    }
}

/// A system group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Group id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Members.
    pub members: BTreeSet<SystemId>,
}
