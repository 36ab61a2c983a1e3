//! Lab backend: simulated UYUNI systems that are real lab systems (`spm sim --lab N`).
//!
//! For a lab-backed system the action engine does not finish work on the virtual clock.
//! When an action is picked up, a [`LabJob`] goes to [`worker`], which does the work inside
//! the real system (apt for errata and package installs, `/bin/sh` for scripts,
//! `systemctl reboot` for reboots) and hands a [`LabDone`] back; [`apply`] then records the
//! real outcome and refreshes the system's packages, boot id, reboot flag and units from
//! the real system, so errata relevance follows the real dpkg state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use tokio::sync::mpsc;

use super::actions::{ActionKind, ScriptResult, print_std_messages};
use super::evr::{Evr, PkgKind};
use super::fleet::{BehaviourSpec, ErratumSpec, FleetFile, PackageSpec, SystemSpec};
use super::model::{Installed, SystemId, UnitState};
use super::world::World;
use crate::lab::{Lab, packages};

/// Units whose state is read from the real system after every action.
pub const UNITS: &[&str] = &["spm-demo-svc", "nginx", "ssh", "prometheus-node-exporter"];

/// Longest a package action may take inside a system.
const APT_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a reboot may take.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The link between a world and the lab: which systems are real, and where jobs go.
#[derive(Debug, Clone)]
pub struct LabLink {
    /// Lab system name by simulated system id.
    pub systems: BTreeMap<SystemId, String>,
    /// Job queue of the worker.
    pub jobs: mpsc::UnboundedSender<LabJob>,
}

/// Work for one lab system.
#[derive(Debug, Clone)]
pub enum Work {
    /// Install these exact versions (errata or package install).
    Packages {
        /// `(name, version)`.
        packages: Vec<(String, String)>,
        /// Errata advisories (for the result message), empty for package installs.
        advisories: Vec<String>,
    },
    /// Run a script.
    Script {
        /// Script text.
        contents: String,
        /// Timeout, seconds.
        timeout: i64,
    },
    /// Reboot.
    Reboot,
}

/// One picked-up server action on a lab system.
#[derive(Debug, Clone)]
pub struct LabJob {
    /// Action id.
    pub action: u32,
    /// Simulated system id.
    pub system: SystemId,
    /// Lab system name.
    pub lab_name: String,
    /// What to do.
    pub work: Work,
}

/// Real facts read from a lab system after a job.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Installed packages (`ii`) and versions.
    pub installed: BTreeMap<String, String>,
    /// Current boot id.
    pub boot_id: Option<String>,
    /// `/var/run/reboot-required` exists.
    pub reboot_required: bool,
    /// Unit states.
    pub units: BTreeMap<String, UnitState>,
}

/// The result of a job.
#[derive(Debug, Clone)]
pub struct LabDone {
    /// The job.
    pub job: LabJob,
    /// Completed (true) or Failed.
    pub ok: bool,
    /// Result code.
    pub code: i32,
    /// Result message.
    pub msg: String,
    /// Script result (scripts only): stdout, stderr.
    pub script: Option<(String, String)>,
    /// The system's state afterwards (None when it could not be read).
    pub observed: Option<Observed>,
    /// Whether a reboot happened.
    pub rebooted: bool,
}

impl World {
    /// The lab job for action `aid` on `sid`, if `sid` is a lab system.
    pub fn lab_job(&self, aid: u32, sid: SystemId) -> Option<LabJob> {
        let link = self.lab.as_ref()?;
        let lab_name = link.systems.get(&sid)?.clone();
        let action = self.actions.get(&aid)?;
        let work = match &action.kind {
            ActionKind::Errata(ids) => {
                let mut packages = Vec::new();
                let mut advisories = Vec::new();
                for e in ids.iter().filter_map(|i| self.catalog.erratum(*i)) {
                    advisories.push(e.advisory.clone());
                    for p in e.packages.iter().filter_map(|p| self.catalog.package(*p)) {
                        packages.push((p.name.clone(), deb_version(&p.evr)));
                    }
                }
                Work::Packages {
                    packages,
                    advisories,
                }
            }
            ActionKind::PackageInstall(ids) => Work::Packages {
                packages: ids
                    .iter()
                    .filter_map(|p| self.catalog.package(*p))
                    .map(|p| (p.name.clone(), deb_version(&p.evr)))
                    .collect(),
                advisories: Vec::new(),
            },
            ActionKind::Script(spec) => Work::Script {
                contents: spec.contents.clone(),
                timeout: spec.timeout,
            },
            ActionKind::Reboot => Work::Reboot,
        };
        Some(LabJob {
            action: aid,
            system: sid,
            lab_name,
            work,
        })
    }

    /// Whether `sid` is backed by a real lab system.
    pub fn is_lab(&self, sid: SystemId) -> bool {
        self.lab
            .as_ref()
            .is_some_and(|l| l.systems.contains_key(&sid))
    }

    /// Send the job for a freshly picked-up action to the lab worker.
    pub fn dispatch_lab(&self, aid: u32, sid: SystemId) {
        if let (Some(link), Some(job)) = (self.lab.as_ref(), self.lab_job(aid, sid))
            && link.jobs.send(job).is_err()
        {
            tracing::error!(action = aid, system = sid, "lab worker is gone");
        }
    }
}

/// A Debian version string from an EVR (`epoch:version-revision`).
pub fn deb_version(evr: &Evr) -> String {
    let mut s = String::new();
    if let Some(e) = evr.epoch {
        s.push_str(&format!("{e}:"));
    }
    s.push_str(&evr.version);
    if !evr.release.is_empty() {
        s.push('-');
        s.push_str(&evr.release);
    }
    s
}

/// Record a finished job in the world (at `now`) with the real system's state.
pub fn apply(world: &mut World, done: LabDone, now: NaiveDateTime) {
    let (aid, sid) = (done.job.action, done.job.system);
    if let Some(row) = world
        .actions
        .get_mut(&aid)
        .and_then(|a| a.servers.get_mut(&sid))
    {
        if let Some((stdout, stderr)) = &done.script {
            row.script = Some(ScriptResult {
                start: row.pickup.unwrap_or(now),
                stop: now,
                code: done.code,
                output: print_std_messages(stderr, stdout),
            });
        }
        if done.rebooted {
            row.went_down = true;
        }
    }
    if let Some(sys) = world.systems.get_mut(&sid) {
        if let Some(obs) = &done.observed {
            refresh(sys, obs, now);
        }
        if done.rebooted {
            sys.last_boot = now;
            sys.down_until = None;
        }
        sys.last_checkin = now;
        sys.recompute_relevance(&world.catalog);
    }
    world.finish(now, aid, sid, done.ok, done.code, done.msg);
}

/// Replace a simulated system's packages, boot id, reboot flag and units with real ones.
pub fn refresh(sys: &mut super::model::System, obs: &Observed, now: NaiveDateTime) {
    let mut installed = BTreeMap::new();
    for (name, version) in &obs.installed {
        let Ok(evr) = Evr::parse(PkgKind::Deb, version) else {
            continue;
        };
        let installtime = sys
            .installed
            .get(name)
            .filter(|old| old.evr == evr)
            .map_or(now, |old| old.installtime);
        installed.insert(
            name.clone(),
            Installed {
                name: name.clone(),
                evr,
                arch: sys.os.arch().to_string(),
                installtime,
            },
        );
    }
    sys.installed = installed;
    if let Some(id) = &obs.boot_id {
        sys.boot_id = id.clone();
    }
    sys.reboot_needed = obs.reboot_required;
    for (u, st) in &obs.units {
        sys.units.insert(u.clone(), *st);
    }
}

/// Read the facts the simulator mirrors from a lab system.
pub async fn observe(sys: &crate::lab::System) -> Option<Observed> {
    let installed = sys.installed_packages().await.ok()?;
    let boot_id = sys.boot_id().await.ok();
    let script = format!(
        "test -f /var/run/reboot-required && echo reboot-required; for u in {}; do \
         echo \"unit $u $(systemctl is-active $u.service)\"; done",
        UNITS.join(" ")
    );
    let out = sys.exec(&script, Duration::from_secs(60)).await.ok()?;
    let mut units = BTreeMap::new();
    for l in out.stdout.lines() {
        let mut f = l.split_whitespace();
        if f.next() == Some("unit")
            && let (Some(u), Some(st)) = (f.next(), f.next())
        {
            let st = match st {
                "active" | "reloading" | "activating" => UnitState::Active,
                "failed" => UnitState::Failed,
                _ => UnitState::Inactive,
            };
            units.insert(format!("{u}.service"), st);
        }
    }
    Some(Observed {
        installed,
        boot_id,
        reboot_required: out.stdout.lines().any(|l| l == "reboot-required"),
        units,
    })
}

/// Do one job inside its lab system.
pub async fn run_job(lab: &Lab, job: LabJob) -> LabDone {
    let Ok(sys) = lab.system(&job.lab_name) else {
        let msg = format!("lab system {} is not in the lab", job.lab_name);
        return LabDone {
            job,
            ok: false,
            code: 1,
            msg,
            script: None,
            observed: None,
            rebooted: false,
        };
    };
    let (ok, code, msg, script, rebooted) = match &job.work {
        Work::Packages {
            packages,
            advisories,
        } => match sys.apt_install(packages, APT_TIMEOUT).await {
            Ok(out) if out.rc == 0 => {
                let what: Vec<String> = packages.iter().map(|(n, v)| format!("{n}-{v}")).collect();
                let msg = if advisories.is_empty() {
                    "Package(s) installed.".to_string()
                } else {
                    format!("Patches applied: {}", what.join(", "))
                };
                (true, 0, msg, None, false)
            }
            Ok(out) => {
                let msg = format!(
                    "Failed to apply patch {}: apt-get exited {}: {}",
                    advisories.join(", "),
                    out.rc,
                    tail(&out.stderr)
                );
                (false, out.rc, msg, None, false)
            }
            Err(e) => (false, 1, format!("apt-get failed: {e}"), None, false),
        },
        Work::Script { contents, timeout } => {
            let t = Duration::from_secs(u64::try_from(*timeout).unwrap_or(600).clamp(1, 3600));
            match sys.run_script(contents, t).await {
                Ok(out) => {
                    let ok = out.rc == 0;
                    let msg = if ok {
                        format!("Script executed successfully. [lab {}]", job.lab_name)
                    } else {
                        format!("Failed to execute script. [lab {}]", job.lab_name)
                    };
                    (ok, out.rc, msg, Some((out.stdout, out.stderr)), false)
                }
                Err(e) => (
                    false,
                    1,
                    format!("Failed to execute script: {e}"),
                    Some((String::new(), e.to_string())),
                    false,
                ),
            }
        }
        Work::Reboot => match sys.reboot(REBOOT_TIMEOUT).await {
            Ok(_) => (true, 0, "Reboot completed.".to_string(), None, true),
            Err(e) => (false, 1, format!("Reboot failed: {e}"), None, false),
        },
    };
    let observed = observe(sys).await;
    LabDone {
        job,
        ok,
        code,
        msg,
        script,
        observed,
        rebooted,
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// Run jobs as they come (each in its own task, so systems work in parallel) and hand
/// every result to `done`.
pub async fn worker(
    mut jobs: mpsc::UnboundedReceiver<LabJob>,
    lab: Arc<Lab>,
    done: Arc<dyn Fn(LabDone) + Send + Sync>,
) {
    while let Some(job) = jobs.recv().await {
        let lab = lab.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let result = run_job(&lab, job).await;
            done(result);
        });
    }
}

/// Advisory names of the generated lab errata, by package scenario.
pub fn advisory_for(name: &str) -> String {
    format!(
        "SPM-LAB-{}",
        name.trim_start_matches("spm-demo-").to_uppercase()
    )
}

/// The fleet a lab maps to: one simulated Debian 12 system per lab system with its real
/// installed packages, the lab packages in the channel, and one erratum per scenario. The
/// systems are in the groups `lab` and `test-debian`, so the default sync scope (test
/// groups, prefix `test-`) and the engine's group-based system choice find them.
pub async fn fleet(lab: &Lab) -> Result<FleetFile, crate::lab::LabError> {
    let mut ff = FleetFile {
        seed: 1,
        ..FleetFile::default()
    };
    let os = "debian-12".to_string();
    let pkg = |name: &str, version: &str| PackageSpec {
        os: os.clone(),
        name: name.to_string(),
        version: version.to_string(),
        arch: None,
    };
    let erratum =
        |advisory: String, synopsis: String, packages: Vec<String>, reboot: bool| ErratumSpec {
            advisory,
            os: os.clone(),
            kind: "security".into(),
            severity: Some("Important".into()),
            synopsis: Some(synopsis),
            cves: Vec::new(),
            packages,
            reboot_suggested: reboot,
            restart_suggested: false,
            status: None,
            issue_date: None,
            behaviour: BehaviourSpec::default(),
        };
    for p in packages::SYNTHETIC {
        ff.packages.push(pkg(p.name, packages::BASE_VERSION));
        ff.packages.push(pkg(p.name, packages::UPDATE_VERSION));
        if p.name == "spm-demo-lib" {
            continue; // travels with spm-demo-app in one erratum
        }
        let mut items = vec![format!("{}={}", p.name, packages::UPDATE_VERSION)];
        if p.name == "spm-demo-app" {
            items.push(format!("spm-demo-lib={}", packages::UPDATE_VERSION));
        }
        ff.errata.push(erratum(
            advisory_for(p.name),
            format!("{}: {}", p.name, p.summary),
            items,
            p.scenario == packages::Scenario::Reboot,
        ));
    }
    let pair = &lab.state().real_pair;
    if !pair.packages.is_empty() {
        let mut items = Vec::new();
        for (n, old, new) in &pair.packages {
            ff.packages.push(pkg(n, old));
            ff.packages.push(pkg(n, new));
            items.push(format!("{n}={new}"));
        }
        ff.errata.push(erratum(
            "SPM-LAB-DEBIAN-PAIR".into(),
            format!("real Debian update: {}", items.join(", ")),
            items,
            false,
        ));
    }
    for s in lab.systems() {
        let installed = s.installed_packages().await?;
        ff.systems.push(SystemSpec {
            name: s.name().to_string(),
            os: os.clone(),
            groups: vec!["lab".into(), "test-debian".into()],
            packages: installed
                .iter()
                .filter(|(_, v)| Evr::parse(PkgKind::Deb, v).is_ok())
                .map(|(n, v)| format!("{n}={v}"))
                .collect(),
            services: UNITS.iter().map(|u| u.to_string()).collect(),
            online: true,
            never_returns_from_reboot: false,
            snapper: true,
            ip: Some(s.ip().to_string()),
            disk_free_mb: None,
            mem_total_mb: None,
            cpu_busy: None,
            pkg_lock_held: false,
        });
    }
    Ok(ff)
}
