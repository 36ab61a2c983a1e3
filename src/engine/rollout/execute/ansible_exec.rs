//! EXECUTE and VERIFY for `executor = "ansible"`.
//!
//! A batch's hosts become one generated inventory (address from the `[ansible]` override,
//! the last sync or UYUNI's network details; OS, groups and tags as variables) with
//! per-host `spm_errata`, `spm_packages` (Debian family) or `spm_advisories` (RHEL) and
//! `spm_reboot`, and the policy's patch playbook runs once over it. Each host's result
//! becomes its run row exactly as a UYUNI action result does: ok hosts go on to VERIFY,
//! failed or unreachable ones are failed with the task and message and count against
//! the error budget. VERIFY with `verify = "scan"` runs the scan playbook over the
//! applied hosts and fails those where a package or advisory of their errata is still
//! pending.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::{Exec, H, RunError, RunOptions};
use crate::engine::ansible::{AnsibleExecutor, failure_text};
use crate::engine::rollout::plan::PlannedHost;
use crate::engine::rollout::policy::{AnsiblePolicy, AnsibleVerify, LoadedPolicy};
use crate::services::ansible::{HostResult, InventoryHost, PlaybookResult};
use crate::store::systems::{self, SystemAddress};

/// Refuse an Ansible policy that cannot run, before anything is written: no executor
/// wired, a playbook missing or outside the playbook directory, no `ansible-playbook`.
pub(super) fn preflight(policy: &LoadedPolicy, opts: &RunOptions) -> Result<(), RunError> {
    let path = &policy.path;
    let ex = opts.ansible.as_ref().ok_or_else(|| {
        RunError::Invalid(format!(
            "{path}: executor \"ansible\" needs spm's Ansible executor, which this process was started without"
        ))
    })?;
    let a = policy.policy.ansible.clone().unwrap_or_default();
    ex.confine(&a.playbook_for(policy.policy.os_family()))
        .map_err(|e| RunError::Invalid(format!("{path}: ansible.playbook: {e}")))?;
    if a.verify == AnsibleVerify::Scan {
        ex.confine(&a.scan_playbook())
            .map_err(|e| RunError::Invalid(format!("{path}: ansible.scan_playbook: {e}")))?;
    }
    ex.program()
        .map_err(|e| RunError::Invalid(format!("{path}: executor \"ansible\": {e}")))?;
    Ok(())
}

impl Exec<'_> {
    fn ansible(&self) -> Result<(Arc<AnsibleExecutor>, AnsiblePolicy), RunError> {
        let ex = self.opts.ansible.clone().ok_or_else(|| {
            RunError::Invalid("executor \"ansible\" without an Ansible executor".into())
        })?;
        Ok((ex, self.policy.policy.ansible.clone().unwrap_or_default()))
    }

    /// Package names of an advisory (cached for the run).
    async fn packages_of(&mut self, advisory: &str) -> Result<Vec<String>, RunError> {
        if !self.pkg_names.contains_key(advisory) {
            let pk = self.client.errata_packages(advisory).await?;
            self.pkg_names.insert(
                advisory.to_string(),
                pk.into_iter().map(|p| p.name).collect(),
            );
        }
        Ok(self.pkg_names.get(advisory).cloned().unwrap_or_default())
    }

    /// The inventory of `sids` and each host's name → system id.
    async fn inventory(
        &mut self,
        ex: &AnsibleExecutor,
        sids: &[i64],
        by_id: &BTreeMap<i64, &PlannedHost>,
    ) -> Result<Vec<InventoryHost>, RunError> {
        let ids = sids.to_vec();
        let known: BTreeMap<i64, SystemAddress> = self
            .store
            .read(move |c| systems::addresses_by_id(c, &ids))
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let family = self.policy.policy.os_family();
        let mut hosts = Vec::new();
        for sid in sids {
            let Some(planned) = by_id.get(sid) else {
                continue;
            };
            let sys = match known.get(sid) {
                Some(s) => SystemAddress {
                    name: planned.name.clone(),
                    ..s.clone()
                },
                None => {
                    // Not synced yet: ask UYUNI how to reach it.
                    let net = self.client.system_network(*sid).await.ok();
                    SystemAddress {
                        id: *sid,
                        name: planned.name.clone(),
                        hostname: net.as_ref().and_then(|n| n.hostname.clone()),
                        ip: net.and_then(|n| n.ip),
                        os: family.to_string(),
                        env: None,
                        groups: Vec::new(),
                        tags: BTreeMap::new(),
                    }
                }
            };
            let mut host = ex.system_host(&sys);
            let mut packages = BTreeSet::new();
            for adv in &planned.errata {
                packages.extend(self.packages_of(adv).await?);
            }
            host.vars.insert("spm_errata".into(), json!(planned.errata));
            if family == "rhel" {
                host.vars
                    .insert("spm_advisories".into(), json!(planned.errata));
            } else {
                host.vars.insert("spm_packages".into(), json!(packages));
            }
            host.vars.insert("spm_reboot".into(), json!(planned.reboot));
            hosts.push(host);
        }
        Ok(hosts)
    }

    /// Run `playbook` over `sids`.
    async fn run_over(
        &mut self,
        playbook: &str,
        sids: &[i64],
        by_id: &BTreeMap<i64, &PlannedHost>,
        timeout: Option<Duration>,
    ) -> Result<Outcome, RunError> {
        let (ex, a) = self.ansible()?;
        let resolved: PathBuf = ex
            .confine(playbook)
            .map_err(|e| RunError::Invalid(format!("{}: {e}", self.policy.path)))?;
        let hosts = self.inventory(&ex, sids, by_id).await?;
        let mut opts = ex.options();
        opts.hosts = hosts;
        opts.extra_vars = a.extra_vars.clone();
        if let Some(f) = a.forks {
            opts.forks = Some(f);
        }
        opts.timeout_secs = timeout.map(|d| d.as_secs().max(1));
        tracing::info!(
            run = self.run_id,
            wave = self.wave,
            playbook,
            hosts = sids.len(),
            "running the policy's playbook"
        );
        Ok(match ex.run(&resolved, opts).await {
            Ok(r) => Outcome::Finished(r),
            Err(e) => Outcome::Stopped(format!("ansible {playbook}: {e}"), e.partial().cloned()),
        })
    }

    /// The timeout of one playbook run: the policy's, else what is left of the window.
    fn ansible_timeout(
        &self,
        a: &AnsiblePolicy,
        window_end: Option<chrono::DateTime<Utc>>,
    ) -> Option<Duration> {
        a.timeout.as_ref().and_then(|t| t.get().ok()).or_else(|| {
            window_end
                .and_then(|end| (end - Utc::now()).to_std().ok())
                .map(|d| d.max(Duration::from_secs(60)))
        })
    }

    /// EXECUTE with the policy's playbook; returns the hosts it patched.
    pub(super) async fn apply_ansible(
        &mut self,
        started: &[i64],
        by_id: &BTreeMap<i64, &PlannedHost>,
        window_end: Option<chrono::DateTime<Utc>>,
    ) -> Result<Vec<i64>, RunError> {
        if started.is_empty() {
            return Ok(Vec::new());
        }
        let (_, a) = self.ansible()?;
        let playbook = a.playbook_for(self.policy.policy.os_family());
        let timeout = self.ansible_timeout(&a, window_end);
        let outcome = self.run_over(&playbook, started, by_id, timeout).await?;
        let mut applied = Vec::new();
        for sid in started.iter().copied() {
            let name = by_id.get(&sid).map(|h| h.name.as_str()).unwrap_or_default();
            let why = match outcome.host(name, &playbook) {
                Err(why) => Some(why),
                Ok(h) if h.is_failed() => Some(failure_text(&playbook, h)),
                Ok(h) if skipped(h.report.as_ref()) => Some(format!(
                    "ansible {playbook}: the playbook skipped this host ({})",
                    h.report
                        .as_ref()
                        .and_then(|r| r["reason"].as_str())
                        .unwrap_or("not applicable")
                )),
                Ok(_) => None,
            };
            match why {
                None => applied.push(sid),
                Some(why) => {
                    self.fail_hosts(vec![sid], H::Running, why).await?;
                    self.failed += 1;
                    self.budget.record_failures(1);
                }
            }
        }
        Ok(applied)
    }

    /// VERIFY with the scan playbook; returns the hosts that passed (the others are
    /// failed, from `verifying`).
    pub(super) async fn verify_scan(
        &mut self,
        applied: Vec<i64>,
        by_id: &BTreeMap<i64, &PlannedHost>,
    ) -> Result<Vec<i64>, RunError> {
        let (_, a) = self.ansible()?;
        let playbook = a.scan_playbook();
        let timeout = a.timeout.as_ref().and_then(|t| t.get().ok());
        let outcome = self.run_over(&playbook, &applied, by_id, timeout).await?;
        let rhel = self.policy.policy.os_family() == "rhel";
        let mut passed = Vec::new();
        for sid in applied {
            let Some(planned) = by_id.get(&sid) else {
                continue;
            };
            let wanted: Vec<String> = if rhel {
                planned.errata.clone()
            } else {
                let mut p = BTreeSet::new();
                for adv in &planned.errata {
                    p.extend(self.packages_of(adv).await?);
                }
                p.into_iter().collect()
            };
            let why = match outcome.host(&planned.name, &playbook) {
                Err(why) => Some(format!("compliance scan failed: {why}")),
                Ok(h) if h.is_failed() => Some(format!(
                    "compliance scan failed: {}",
                    failure_text(&playbook, h)
                )),
                Ok(h) => match h.report.as_ref().and_then(|r| r["security"].as_array()) {
                    None => Some(format!(
                        "compliance scan: {playbook} reported no `security` list for this host"
                    )),
                    Some(pending) => {
                        let pending: BTreeSet<&str> =
                            pending.iter().filter_map(Value::as_str).collect();
                        let still: Vec<&str> = wanted
                            .iter()
                            .map(String::as_str)
                            .filter(|w| pending.contains(w))
                            .collect();
                        (!still.is_empty()).then(|| {
                            format!(
                                "still pending after the playbook ({playbook}): {}",
                                still.join(", ")
                            )
                        })
                    }
                },
            };
            match why {
                None => passed.push(sid),
                Some(why) => {
                    self.fail_hosts(vec![sid], H::Verifying, why).await?;
                    self.failed += 1;
                    self.budget.record_failures(1);
                }
            }
        }
        Ok(passed)
    }
}

/// How one playbook run ended.
enum Outcome {
    /// It ran to its end.
    Finished(PlaybookResult),
    /// It could not start, stopped, timed out: why, and the hosts seen before.
    Stopped(String, Option<PlaybookResult>),
}

impl Outcome {
    /// The result of host `name`: its own when it has one (a host that failed before a
    /// timeout keeps its failure), else why there is none.
    fn host(&self, name: &str, playbook: &str) -> Result<&HostResult, String> {
        match self {
            Outcome::Finished(p) => p.host(name).ok_or_else(|| {
                format!("ansible {playbook}: no result for this host (not in the play's hosts?)")
            }),
            Outcome::Stopped(why, partial) => partial
                .as_ref()
                .and_then(|p| p.host(name))
                .filter(|h| h.is_failed())
                .ok_or_else(|| why.clone()),
        }
    }
}

/// True when a playbook's report says it left the host alone (another OS family).
fn skipped(report: Option<&Value>) -> bool {
    report.is_some_and(|r| r["skipped"] == Value::Bool(true))
}
