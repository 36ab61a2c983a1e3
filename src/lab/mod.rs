//! The lab: real throwaway Debian 12 systems for patch tests.
//!
//! `Lab::up(n, opts)` builds (once, then cached) a golden image, puts it on a sparse
//! loop-mounted btrfs image, and boots `n` writable snapshots of it with
//! `systemd-nspawn --boot`, each in its own network namespace on a private bridge that has
//! no route off the machine. A local apt repository on the bridge carries synthetic test
//! packages (see [`packages`]) and one real Debian version pair.
//!
//! Everything lives under fixed `spm`-prefixed names (`/run/spm-lab/`, namespaces
//! `spm-lab-*`), so `Lab::down`, a dropped [`Lab`] handle, `spm lab down` and the cleanup at
//! the start of every `up` all find and remove the same things. One lab per machine: an
//! API user (test, bench, `spm sim --lab`) holds `/run/spm-lab.lock` while its lab runs, and
//! `Lab::up` replaces a lab left by `spm lab up`. Root only.
//!
//! Networking never touches the host's namespace: the bridge lives in the `spm-lab-hub`
//! namespace with the repository server; the host reaches systems by entering their
//! namespaces (`nsenter` for scripts, `ip netns exec` for metrics scrapes).

mod cleanup;
mod cmd;
pub mod image;
pub mod net;
pub mod packages;
pub mod repo;
pub mod system;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use cmd::shell_quote;
pub use image::RealPair;
pub use system::ExecOutput;

/// Fixed locations.
pub mod paths {
    use std::path::PathBuf;

    /// Runtime state: state file, mounts, repository, console logs.
    pub fn state_dir() -> PathBuf {
        PathBuf::from("/run/spm-lab")
    }
    /// The state file `spm lab status/down` read.
    pub fn state_file() -> PathBuf {
        state_dir().join("state.json")
    }
    /// Machine-local cache (golden image stream, real package pair, debootstrap debs).
    pub fn cache_dir() -> PathBuf {
        std::env::var_os("SPM_LAB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/spm-lab"))
    }
    /// The sparse btrfs image file (on disk, not in tmpfs).
    pub fn image() -> PathBuf {
        PathBuf::from("/var/lib/spm-lab/spm-lab.img")
    }
    /// Where the image's top-level subvolume is mounted.
    pub fn top() -> PathBuf {
        state_dir().join("top")
    }
}

/// Lab errors.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A kernel feature, permission or host program is missing.
    #[error("lab unavailable: {0}")]
    Unavailable(String),
    /// A host program failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// The program or step.
        what: String,
        /// Exit status and the end of its error output.
        detail: String,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A step did not finish in time.
    #[error("{what} did not finish within {secs} s")]
    Timeout {
        /// The step.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// No lab is up (no state file).
    #[error("no lab is up (no {0})")]
    NotUp(String),
    /// The cache or state file is unreadable.
    #[error("corrupt lab cache or state: {0}")]
    Cache(String),
    /// A system name that is not in the lab.
    #[error("no lab system named {0:?}")]
    NoSuchSystem(String),
    /// Bad input to the lab API.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Which argument.
        what: String,
        /// Why.
        detail: String,
    },
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Options of [`Lab::up`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabOptions {
    /// Size of the sparse btrfs image in GiB.
    pub image_gib: u64,
    /// Longest wait for one system to boot, in seconds.
    pub boot_timeout_secs: u64,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            image_gib: 16,
            boot_timeout_secs: 120,
        }
    }
}

/// What the state file records about one system.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SystemInfo {
    /// Host name and namespace name (`spm-lab-1` …).
    pub name: String,
    /// 1-based index.
    pub index: u32,
    /// Address on the lab bridge.
    pub ip: String,
    /// Where its subvolume is mounted on the host.
    pub root: PathBuf,
}

/// The state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// Loop device carrying the btrfs image.
    pub loop_device: String,
    /// Repository server pid.
    pub repo_pid: u32,
    /// Golden image cache key.
    pub golden_key: String,
    /// Whether the golden image came from the cache.
    pub golden_cached: bool,
    /// Real Debian version pair in the repository.
    pub real_pair: RealPair,
    /// The systems.
    pub systems: Vec<SystemInfo>,
    /// Seconds from `up` start until every system was booted and prepared.
    pub up_secs: f64,
    /// Seconds from starting the systems until every one had booted (in parallel).
    pub boot_secs: f64,
}

/// A running lab. Dropping it tears the lab down unless [`Lab::keep`] was called.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    systems: Vec<System>,
    armed: bool,
    /// Held while this process owns the lab, so a second `up` elsewhere cannot tear it down.
    _lock: Option<fs::File>,
}

/// Take the machine-wide lab lock (`/run/spm-lab.lock`), or fail when another process
/// is starting or running a lab through the API.
fn lock() -> Result<fs::File, LabError> {
    let path = "/run/spm-lab.lock";
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| LabError::io(format!("open {path}"), e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(LabError::Unavailable(format!(
            "another process holds {path} (a lab test, bench or `spm sim --lab` is running)"
        ))),
        Err(fs::TryLockError::Error(e)) => Err(LabError::io(format!("lock {path}"), e)),
    }
}

/// Check the kernel features, privileges and host programs the lab needs.
pub fn probe() -> Result<(), LabError> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        return Err(LabError::Unavailable("must run as root".into()));
    }
    let fss = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fss
        .lines()
        .any(|l| l.split_whitespace().last() == Some("btrfs"))
    {
        return Err(LabError::Unavailable(
            "the kernel has no btrfs (not in /proc/filesystems)".into(),
        ));
    }
    let missing: Vec<&str> = [
        "debootstrap",
        "systemd-nspawn",
        "btrfs",
        "mkfs.btrfs",
        "zstd",
        "dpkg-deb",
        "dpkg-scanpackages",
        "nsenter",
        "unshare",
        "losetup",
        "ip",
        "python3",
    ]
    .into_iter()
    .filter(|p| !cmd::quiet("sh", ["-c", &format!("command -v {p}")]))
    .collect();
    if !missing.is_empty() {
        return Err(LabError::Unavailable(format!(
            "missing programs {missing:?} (apt-get install -y debootstrap btrfs-progs \
             systemd-container zstd dpkg-dev iproute2 util-linux python3)"
        )));
    }
    if cmd::run("losetup", ["-f"]).is_err() {
        return Err(LabError::Unavailable(
            "no free loop device (losetup -f)".into(),
        ));
    }
    check_free_space()?;
    let ns = "spm-lab-probe";
    if cmd::run("ip", ["netns", "add", ns]).is_err() {
        return Err(LabError::Unavailable(
            "cannot create network namespaces (ip netns add)".into(),
        ));
    }
    cmd::quiet("ip", ["netns", "del", ns]);
    Ok(())
}

/// Free space the sparse image's filesystem must have before a lab starts. The image is
/// sparse: when the disk under it fills, the loop device's writes fail and btrfs later
/// answers reads of those blocks with EIO (seen as `apt-get: Input/output error` inside a
/// system), so refuse early with the real reason instead.
pub const MIN_FREE_BYTES: u64 = 4 << 30;

fn check_free_space() -> Result<(), LabError> {
    let img = paths::image();
    let dir = img.parent().unwrap_or_else(|| std::path::Path::new("/"));
    // The directory may not exist yet: measure the nearest existing ancestor.
    let probe_dir = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or_else(|| std::path::Path::new("/"));
    let free = free_bytes(probe_dir)?;
    if free < MIN_FREE_BYTES {
        return Err(LabError::Unavailable(format!(
            "only {:.1} GiB free on the filesystem of {} (the lab image needs {} GiB)",
            free as f64 / (1u64 << 30) as f64,
            dir.display(),
            MIN_FREE_BYTES >> 30
        )));
    }
    Ok(())
}

/// Bytes available to unprivileged writers on the filesystem holding `dir` (`df`).
fn free_bytes(dir: &std::path::Path) -> Result<u64, LabError> {
    let out = cmd::run(
        "df",
        [
            std::ffi::OsStr::new("--output=avail"),
            std::ffi::OsStr::new("-B1"),
            dir.as_os_str(),
        ],
    )?;
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| LabError::Command {
            what: format!("df {}", dir.display()),
            detail: format!("unexpected output {out:?}"),
        })
}

/// The kernel's last lines about I/O errors, loop devices or btrfs (empty when none or
/// unreadable), appended to a failure whose output mentions an I/O error.
fn kernel_io_hint(output: &str) -> String {
    if !output.contains("Input/output error") {
        return String::new();
    }
    let log = cmd::output("dmesg", ["--notime"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("loop") || l.contains("BTRFS") || l.contains("I/O error"))
        .collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    let free = free_bytes(std::path::Path::new("/var/lib"))
        .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|e| e.to_string());
    format!(
        "\n(the lab image returned an I/O error; free space under /var/lib: {free}; kernel: {tail})"
    )
}

/// Remove anything an earlier lab left behind; returns what could not be removed.
pub fn teardown() -> Vec<String> {
    cleanup::teardown()
}

/// Everything of a lab still present on the machine (empty when clean).
pub fn leftovers() -> Vec<String> {
    cleanup::leftovers()
}

impl Lab {
    /// Build (or restore) the golden image and boot `n` systems (1–32).
    pub async fn up(n: u32, opts: LabOptions) -> Result<Lab, LabError> {
        if !(1..=32).contains(&n) {
            return Err(LabError::Invalid {
                what: "number of systems".into(),
                detail: format!("{n} (allowed 1–32)"),
            });
        }
        probe()?;
        let lock = lock()?;
        let left = cleanup::teardown();
        if !left.is_empty() {
            return Err(LabError::Command {
                what: "cleanup of an earlier lab".into(),
                detail: left.join("; "),
            });
        }
        // Arm teardown before creating anything, so a failure below cleans up.
        let mut lab = Lab {
            state: LabState {
                loop_device: String::new(),
                repo_pid: 0,
                golden_key: image::cache_key(net::BRIDGE_IP, repo::PORT),
                golden_cached: false,
                real_pair: RealPair::default(),
                systems: Vec::new(),
                up_secs: 0.0,
                boot_secs: 0.0,
            },
            systems: Vec::new(),
            armed: true,
            _lock: Some(lock),
        };
        let start = Instant::now();
        lab.create(n, &opts).await?;
        lab.state.up_secs = start.elapsed().as_secs_f64();
        lab.save()?;
        Ok(lab)
    }

    async fn create(&mut self, n: u32, opts: &LabOptions) -> Result<(), LabError> {
        fs::create_dir_all(paths::state_dir())
            .map_err(|e| LabError::io("create /run/spm-lab", e))?;
        let img = paths::image();
        if let Some(dir) = img.parent() {
            fs::create_dir_all(dir).map_err(|e| LabError::io("create image dir", e))?;
        }
        let img_s = img.to_string_lossy().into_owned();
        cmd::run("truncate", ["-s", &format!("{}G", opts.image_gib), &img_s])?;
        cmd::run("mkfs.btrfs", ["-q", "-L", "spm-lab", &img_s])?;
        let dev = cmd::run("losetup", ["--find", "--show", &img_s])?
            .trim()
            .to_string();
        self.state.loop_device = dev.clone();
        let top = paths::top();
        fs::create_dir_all(&top).map_err(|e| LabError::io("create top mount point", e))?;
        cmd::run(
            "mount",
            [
                "-o",
                // A throwaway image: no cache flushes through the loop device (each one
                // is an fsync of the backing file on the host).
                "compress=zstd:1,noatime,nobarrier",
                dev.as_str(),
                &top.to_string_lossy(),
            ],
        )?;
        net::create_hub()?;
        let repo_root = paths::state_dir().join("repo");
        let (pair, cached) = image::ensure_golden(&top, net::BRIDGE_IP, repo::PORT).await?;
        self.state.real_pair = pair;
        self.state.golden_cached = cached;
        repo::assemble(&repo_root)?;
        self.state.repo_pid = repo::serve(&repo_root)?;
        let boot_start = Instant::now();
        for i in 1..=n {
            let name = format!("{}{i}", net::NAME_PREFIX);
            let ip = net::system_ip(i);
            let root = system::root_of(&name);
            system::create(&top, &name, &ip)?;
            net::create_system(&name, i)?;
            system::boot(&dev, &name, &root, &name)?;
            let info = SystemInfo {
                name,
                index: i,
                ip,
                root,
            };
            self.state.systems.push(info.clone());
            self.systems.push(System { info });
        }
        self.save()?;
        let timeout = Duration::from_secs(opts.boot_timeout_secs);
        let boots = self
            .systems
            .iter()
            .map(|s| system::wait_booted(&s.info.root, None, timeout));
        for r in futures::future::join_all(boots).await {
            r?;
        }
        self.state.boot_secs = boot_start.elapsed().as_secs_f64();
        let preps = self.systems.iter().map(|s| s.prepare());
        for r in futures::future::join_all(preps).await {
            r?;
        }
        Ok(())
    }

    /// Attach to the lab `spm lab up` left running (from the state file). The handle does
    /// not tear the lab down when dropped.
    pub fn attach() -> Result<Lab, LabError> {
        let state = read_state()?;
        let systems = state
            .systems
            .iter()
            .map(|info| System { info: info.clone() })
            .collect();
        Ok(Lab {
            state,
            systems,
            armed: false,
            _lock: None,
        })
    }

    fn save(&self) -> Result<(), LabError> {
        let json = serde_json::to_string_pretty(&self.state)
            .map_err(|e| LabError::Cache(format!("serialise state: {e}")))?;
        fs::write(paths::state_file(), json).map_err(|e| LabError::io("write state file", e))
    }

    /// Leave the lab running when this handle is dropped (for `spm lab up`).
    pub fn keep(mut self) -> LabState {
        self.armed = false;
        self.state.clone()
    }

    /// Tear the lab down: stop every system cleanly, then remove everything. Errors name
    /// whatever is left behind.
    pub async fn down(mut self) -> Result<(), LabError> {
        self.armed = false;
        down_systems(&self.state.systems).await;
        finish_teardown()
    }

    /// The recorded state.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The systems.
    pub fn systems(&self) -> &[System] {
        &self.systems
    }

    /// One system by name.
    pub fn system(&self, name: &str) -> Result<&System, LabError> {
        self.systems
            .iter()
            .find(|s| s.info.name == name)
            .ok_or_else(|| LabError::NoSuchSystem(name.to_string()))
    }

    /// The base URL of the local repository, as the systems see it.
    pub fn repo_url(&self) -> String {
        format!("http://{}:{}", net::BRIDGE_IP, repo::PORT)
    }

    /// Live status of every system.
    pub async fn status(&self) -> Vec<SystemStatus> {
        let all = self.systems.iter().map(|s| async move {
            let boot_id = s.boot_id().await.ok();
            SystemStatus {
                name: s.info.name.clone(),
                ip: s.info.ip.clone(),
                running: boot_id.is_some(),
                boot_id,
            }
        });
        futures::future::join_all(all).await
    }
}

async fn down_systems(systems: &[SystemInfo]) {
    let stops = systems
        .iter()
        .map(|s| system::stop(&s.root, Duration::from_secs(15)));
    futures::future::join_all(stops).await;
}

fn finish_teardown() -> Result<(), LabError> {
    let left = cleanup::teardown();
    if left.is_empty() {
        Ok(())
    } else {
        Err(LabError::Command {
            what: "lab teardown".into(),
            detail: format!("left behind: {}", left.join("; ")),
        })
    }
}

/// Tear down the lab recorded in the state file (or whatever is left without one).
pub async fn down() -> Result<(), LabError> {
    if let Ok(state) = read_state() {
        down_systems(&state.systems).await;
    }
    finish_teardown()
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.armed {
            let left = cleanup::teardown();
            if !left.is_empty() {
                tracing::error!("lab teardown left behind: {}", left.join("; "));
            }
        }
    }
}

/// Read the state file `spm lab up` wrote.
pub fn read_state() -> Result<LabState, LabError> {
    let p = paths::state_file();
    let text = fs::read_to_string(&p).map_err(|_| LabError::NotUp(p.display().to_string()))?;
    serde_json::from_str(&text).map_err(|e| LabError::Cache(format!("{}: {e}", p.display())))
}

/// Live status of one system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemStatus {
    /// Name.
    pub name: String,
    /// Address on the lab bridge.
    pub ip: String,
    /// Whether its PID 1 answers.
    pub running: bool,
    /// Current boot id.
    pub boot_id: Option<String>,
}

/// One lab system.
#[derive(Debug, Clone)]
pub struct System {
    info: SystemInfo,
}

/// Per-system setup after boot. Besides the package lists and snapper's root config it
/// drops work a throwaway system does not need and that serialises systems sharing one
/// btrfs image: dpkg's fsyncs (`force-unsafe-io`, as container images do), the apt
/// plugin's extra snapper pre/post snapshots around every apt run (spm takes its own
/// snapshots through the phases) and debconf's pre-configuration pass (the lab packages
/// ask nothing). Written here rather than into the golden image so the cached image stays
/// valid.
const PREPARE: &str = "set -e
echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/spm-lab-unsafe-io
echo 'DISABLE_APT_SNAPSHOT=yes' >> /etc/default/snapper
rm -f /etc/apt/apt.conf.d/70debconf
apt-get update -qq -o Acquire::Retries=3
# Through snapperd (D-Bus), so the running daemon knows the config.
snapper list-configs 2>/dev/null | grep -q '^root ' || snapper create-config /
";

impl System {
    /// Name (also its host name and namespace).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Address on the lab bridge.
    pub fn ip(&self) -> &str {
        &self.info.ip
    }

    /// Recorded facts.
    pub fn info(&self) -> &SystemInfo {
        &self.info
    }

    /// The node exporter's metrics URL (reachable from the hub namespace).
    pub fn metrics_url(&self) -> String {
        format!("http://{}:9100/metrics", self.info.ip)
    }

    async fn prepare(&self) -> Result<(), LabError> {
        let out = self.exec(PREPARE, Duration::from_secs(180)).await?;
        if out.rc != 0 {
            return Err(LabError::Command {
                what: format!("preparing {}", self.info.name),
                detail: {
                    let text = format!("{}{}", out.stdout, out.stderr);
                    format!("{}{}", cmd::tail(&text, 1500), kernel_io_hint(&text))
                },
            });
        }
        Ok(())
    }

    fn leader(&self) -> Result<u32, LabError> {
        system::leader(&self.info.root).ok_or_else(|| LabError::Command {
            what: format!("lab system {}", self.info.name),
            detail: "is not running".into(),
        })
    }

    /// Run `script` with `/bin/sh -c` inside the system as root.
    pub async fn exec(&self, script: &str, timeout: Duration) -> Result<ExecOutput, LabError> {
        system::exec(self.leader()?, script, timeout).await
    }

    /// Run a script the way UYUNI's script action does: written to a file and executed,
    /// so its `#!` line picks the interpreter (a script without one runs with `/bin/sh`).
    pub async fn run_script(
        &self,
        contents: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, LabError> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let wrapped = format!(
            "f=$(mktemp /tmp/spm-script.XXXXXX) || exit 125\n\
             cat > \"$f\" <<'SPM_SCRIPT_{tag}'\n{contents}\nSPM_SCRIPT_{tag}\n\
             chmod 700 \"$f\"\n\
             case $(head -c 2 \"$f\") in '#!') \"$f\" ;; *) /bin/sh \"$f\" ;; esac\n\
             rc=$?\nrm -f \"$f\"\nexit $rc\n"
        );
        self.exec(&wrapped, timeout).await
    }

    /// The current boot id.
    pub async fn boot_id(&self) -> Result<String, LabError> {
        let out = self
            .exec(
                "cat /proc/sys/kernel/random/boot_id",
                Duration::from_secs(20),
            )
            .await?;
        let id = out.stdout.trim().to_string();
        if out.rc != 0 || id.is_empty() {
            return Err(LabError::Command {
                what: "read boot id".into(),
                detail: out.stderr,
            });
        }
        Ok(id)
    }

    /// Reboot from inside (`systemctl reboot`) and return the new boot id once the system is
    /// booted again. If it is not back within `timeout`, it is power-cycled once.
    pub async fn reboot(&self, timeout: Duration) -> Result<String, LabError> {
        let old_leader = self.leader()?;
        let old = self.boot_id().await?;
        let _ = self
            .exec("systemctl reboot", Duration::from_secs(30))
            .await?;
        let back = system::wait_booted(&self.info.root, Some(old_leader), timeout).await;
        if back.is_err() {
            tracing::warn!(system = %self.info.name, "reboot hung; power-cycling");
            system::power_cycle(&self.info.name, &self.info.root, &self.info.name)?;
            system::wait_booted(&self.info.root, Some(old_leader), timeout).await?;
        }
        let new = self.boot_id().await?;
        if new == old {
            return Err(LabError::Command {
                what: format!("reboot of {}", self.info.name),
                detail: "boot id did not change".into(),
            });
        }
        Ok(new)
    }

    /// Installed packages and versions from the real dpkg database (`ii` state only).
    pub async fn installed_packages(&self) -> Result<BTreeMap<String, String>, LabError> {
        let out = self
            .exec(
                "dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\t${Version}\\n'",
                Duration::from_secs(60),
            )
            .await?;
        if out.rc != 0 {
            return Err(LabError::Command {
                what: "dpkg-query".into(),
                detail: out.stderr,
            });
        }
        Ok(parse_dpkg_query(&out.stdout))
    }

    /// `apt-get install` exact versions (downgrades allowed), e.g. `[("nginx", "1.22")]`.
    pub async fn apt_install(
        &self,
        packages: &[(String, String)],
        timeout: Duration,
    ) -> Result<ExecOutput, LabError> {
        if packages.is_empty() {
            return Err(LabError::Invalid {
                what: "package list".into(),
                detail: "empty".into(),
            });
        }
        let mut args = Vec::new();
        for (n, v) in packages {
            let ok = |s: &str, extra: &str| {
                !s.is_empty()
                    && s.chars().all(|c| {
                        c.is_ascii_alphanumeric() || "+-.".contains(c) || extra.contains(c)
                    })
            };
            if !ok(n, ":") || !ok(v, ":~") {
                return Err(LabError::Invalid {
                    what: "package".into(),
                    detail: format!("{n:?}={v:?}"),
                });
            }
            args.push(shell_quote(&format!("{n}={v}")));
        }
        let script = format!(
            "apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confdef \
             -o Dpkg::Options::=--force-confold {}",
            args.join(" ")
        );
        self.exec(&script, timeout).await
    }

    /// The package changes of the last apt run, from apt's history log.
    pub async fn last_apt_changes(&self) -> Result<Vec<AptChange>, LabError> {
        let out = self
            .exec("cat /var/log/apt/history.log", Duration::from_secs(30))
            .await?;
        if out.rc != 0 {
            return Err(LabError::Command {
                what: "read /var/log/apt/history.log".into(),
                detail: out.stderr,
            });
        }
        Ok(parse_apt_history(&out.stdout))
    }

    /// Take back the whole set of package changes the last apt run made: every upgraded
    /// package goes back to its previous version (`--allow-downgrades`).
    pub async fn rollback_last_apt(&self, timeout: Duration) -> Result<ExecOutput, LabError> {
        let changes = self.last_apt_changes().await?;
        let set: Vec<(String, String)> = changes
            .into_iter()
            .filter_map(|c| c.before.map(|b| (c.package, b)))
            .collect();
        self.apt_install(&set, timeout).await
    }

    /// Fetch the node exporter's metrics over the lab bridge.
    pub async fn scrape_metrics(&self) -> Result<String, LabError> {
        let script = format!(
            "exec 3<>/dev/tcp/{}/9100 && printf 'GET /metrics HTTP/1.0\\r\\nHost: {}\\r\\n\\r\\n' >&3 \
             && cat <&3",
            self.info.ip, self.info.ip
        );
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new("ip")
                .args(["netns", "exec", net::HUB, "bash", "-c", &script])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| LabError::Timeout {
            what: "metrics scrape".into(),
            secs: 20,
        })?
        .map_err(|e| LabError::io("start metrics scrape", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
                Ok(body.to_string())
            }
            _ => Err(LabError::Command {
                what: format!("scrape {}", self.metrics_url()),
                detail: cmd::tail(&String::from_utf8_lossy(&out.stderr), 500),
            }),
        }
    }
}

/// One package change recorded by apt: name with arch, version before (None when newly
/// installed), version after (None when removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AptChange {
    /// `name:arch` as apt logs it.
    pub package: String,
    /// Version before the run.
    pub before: Option<String>,
    /// Version after the run.
    pub after: Option<String>,
}

/// The package changes of the last apt run in `/var/log/apt/history.log` text.
///
/// A rollback must take back this whole set: downgrading only the package that was asked
/// for fails when its dependencies moved with it.
pub fn parse_apt_history(text: &str) -> Vec<AptChange> {
    let Some(last) = text
        .split("\n\n")
        .filter(|b| b.contains("Start-Date:"))
        .last()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in last.lines() {
        let Some((field, list)) = line.split_once(": ") else {
            continue;
        };
        let kind = match field {
            "Install" | "Upgrade" | "Downgrade" | "Remove" | "Purge" | "Reinstall" => field,
            _ => continue,
        };
        // "name:arch (v1, v2), name:arch (v), …": split on "), ".
        for item in list.split("), ") {
            let item = item.trim().trim_end_matches(')');
            let Some((pkg, vers)) = item.split_once(" (") else {
                continue;
            };
            let vers: Vec<&str> = vers
                .split(", ")
                .map(str::trim)
                .filter(|v| *v != "automatic")
                .collect();
            let (before, after) = match (kind, vers.as_slice()) {
                ("Upgrade" | "Downgrade", [old, new, ..]) => (Some(*old), Some(*new)),
                ("Install", [v, ..]) => (None, Some(*v)),
                ("Remove" | "Purge", [v, ..]) => (Some(*v), None),
                ("Reinstall", [v, ..]) => (Some(*v), Some(*v)),
                _ => continue,
            };
            out.push(AptChange {
                package: pkg.trim().to_string(),
                before: before.map(str::to_string),
                after: after.map(str::to_string),
            });
        }
    }
    out
}

/// Parse `dpkg-query -W -f '${db:Status-Abbrev}\t${Package}\t${Version}\n'`.
pub fn parse_dpkg_query(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (st, p, v) = (f.next()?, f.next()?, f.next()?);
            (st.trim() == "ii").then(|| (p.to_string(), v.to_string()))
        })
        .collect()
}

/// Is `path` a lab path (for callers that must not touch anything else)?
pub fn is_lab_path(path: &Path) -> bool {
    path.starts_with(paths::state_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_installed_packages() {
        let m = parse_dpkg_query("ii \tnginx\t1.22.1-9+deb12u9\niF \tspm-demo-postinst\t1.1\n");
        assert_eq!(m.get("nginx").map(String::as_str), Some("1.22.1-9+deb12u9"));
        assert!(!m.contains_key("spm-demo-postinst"));
    }

    #[test]
    fn reads_the_last_apt_run_from_history() {
        let log = "Start-Date: 2026-11-22  00:58:01\nCommandline: apt-get install x\n\
                   Install: a:amd64 (1.0)\nEnd-Date: 2026-11-22  00:58:02\n\n\
                   Start-Date: 2026-11-22  01:00:00\nCommandline: apt-get install -y spm-demo-app=1.1\n\
                   Upgrade: spm-demo-app:all (1.0, 1.1), spm-demo-lib:all (1.0, 1.1)\n\
                   Install: libnew:amd64 (2.0, automatic)\nEnd-Date: 2026-11-22  01:00:02\n";
        let c = parse_apt_history(log);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].package, "spm-demo-app:all");
        assert_eq!(c[0].before.as_deref(), Some("1.0"));
        assert_eq!(c[1].after.as_deref(), Some("1.1"));
        assert_eq!(c[2].before, None);
        assert_eq!(c[2].after.as_deref(), Some("2.0"));
        assert!(parse_apt_history("").is_empty());
    }

    #[test]
    fn system_addresses_stay_on_the_lab_network() {
        assert_eq!(net::system_ip(1), "10.213.0.11");
        assert!(net::system_ip(32).starts_with("10.213.0."));
    }
}
