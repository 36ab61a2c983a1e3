//! The pure planner: target hosts × applicable approved errata → waves (canary first),
//! with every exclusion and its reason, and the maintenance window.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::policy::Policy;
use crate::store::runs::ErratumApproval;

/// One target host as seen at PLAN.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInput {
    /// UYUNI system id.
    pub id: i64,
    /// Profile name.
    pub name: String,
    /// Online (from the last sync; unknown = true).
    pub online: bool,
    /// Environment from the last sync, if known.
    pub env: Option<String>,
    /// Tags from the last sync.
    pub tags: BTreeMap<String, String>,
    /// Known to spm's inventory (synced).
    pub in_inventory: bool,
    /// Relevant errata from UYUNI: (advisory, UYUNI errata id).
    pub relevant: Vec<(String, i64)>,
}

/// A host planned into a wave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedHost {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub name: String,
    /// Advisories to apply.
    pub errata: Vec<String>,
    /// Their UYUNI ids (same order).
    pub errata_ids: Vec<i64>,
    /// A reboot follows the apply (policy and errata).
    pub reboot: bool,
}

/// One wave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedWave {
    /// 1-based.
    pub index: usize,
    /// The canary wave.
    pub canary: bool,
    /// Hosts.
    pub hosts: Vec<PlannedHost>,
}

/// A host left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostExclusion {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// An erratum left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErratumExclusion {
    /// Advisory.
    pub advisory: String,
    /// Target hosts it is relevant to.
    pub hosts: usize,
    /// Why.
    pub reason: String,
}

/// The plan of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Policy id.
    pub policy_id: String,
    /// OS family.
    pub os: String,
    /// When planned.
    pub planned_at: String,
    /// When the maintenance window closes (no host starts after `closes − host estimate`).
    pub window_closes_at: Option<String>,
    /// Errata that will be applied (approved, within the filters), with their approvals.
    pub errata: Vec<PlannedErratum>,
    /// Waves in order.
    pub waves: Vec<PlannedWave>,
    /// Hosts left out.
    pub excluded_hosts: Vec<HostExclusion>,
    /// Errata left out.
    pub excluded_errata: Vec<ErratumExclusion>,
}

/// An erratum in the plan and its change record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedErratum {
    /// Advisory.
    pub advisory: String,
    /// Severity.
    pub severity: String,
    /// Queue item approved.
    pub queue_id: Option<i64>,
    /// The approval row (the change record).
    pub approval_id: Option<i64>,
    /// Who approved.
    pub approved_by: Option<String>,
    /// Hosts it goes to.
    pub hosts: usize,
}

impl Plan {
    /// Hosts in all waves.
    pub fn hosts_total(&self) -> usize {
        self.waves.iter().map(|w| w.hosts.len()).sum()
    }
}

/// Why an erratum is not applied, or `None` when it passes (approved and within filters).
fn erratum_exclusion(
    policy: &Policy,
    advisory: &str,
    info: Option<&ErratumApproval>,
) -> Option<String> {
    let Some(info) = info else {
        return Some(format!(
            "not approved: {advisory} is unknown to spm (sync, test and approve it first)"
        ));
    };
    if !info.is_approved() {
        return Some(match (info.queue_status, info.queue_id) {
            (Some(st), Some(q)) => format!("not approved: queue item {q} is {st}"),
            _ => "not approved: never queued for testing".to_string(),
        });
    }
    let f = &policy.errata;
    if !f.severity.is_empty() && !f.severity.contains(&info.severity) {
        return Some(format!(
            "severity {} is outside the policy's filter ({})",
            info.severity,
            f.severity.join(", ")
        ));
    }
    if !f.types.is_empty() && !f.types.contains(&info.advisory_type) {
        return Some(format!(
            "type {} is outside the policy's filter ({})",
            info.advisory_type,
            f.types.join(", ")
        ));
    }
    if let Some(cutoff) = f.cutoff() {
        let issued = info
            .issue_date
            .as_deref()
            .and_then(|d| d.get(..10))
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        match issued {
            Some(d) if d > cutoff => {
                return Some(format!(
                    "issued {d}, after the policy's cutoff {cutoff} (patch level / issued_before)"
                ));
            }
            None => return Some("issue date unknown; the policy has a date cutoff".to_string()),
            _ => {}
        }
    }
    None
}

/// Build the plan. Hosts are ordered by name; the canary wave comes first, then waves of
/// the policy's sizes (a percentage is of all planned hosts; the last size repeats).
pub fn plan(
    policy: &Policy,
    hosts: &[HostInput],
    errata: &BTreeMap<String, ErratumApproval>,
    now: DateTime<Utc>,
) -> Plan {
    let mut excluded_hosts = Vec::new();
    let mut err_excl: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut err_used: BTreeMap<String, usize> = BTreeMap::new();
    let exclude: BTreeSet<&str> = policy.targets.exclude.iter().map(String::as_str).collect();
    let mut planned: Vec<PlannedHost> = Vec::new();
    let mut sorted: Vec<&HostInput> = hosts.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    sorted.dedup_by_key(|h| h.id);
    for h in sorted {
        let mut skip = |reason: String| {
            excluded_hosts.push(HostExclusion {
                system_id: h.id,
                name: h.name.clone(),
                reason,
            })
        };
        if exclude.contains(h.name.as_str()) {
            skip("excluded by the policy (targets.exclude)".into());
            continue;
        }
        if !h.online {
            skip("offline at the last sync".into());
            continue;
        }
        if let Some(env) = &policy.targets.env {
            match (&h.env, h.in_inventory) {
                (_, false) => {
                    skip(format!(
                        "environment unknown (not in spm's inventory; sync first), policy needs {env}"
                    ));
                    continue;
                }
                (Some(e), _) if e == env => {}
                (e, _) => {
                    skip(format!(
                        "environment {} is not the policy's {env}",
                        e.as_deref().unwrap_or("(none)")
                    ));
                    continue;
                }
            }
        }
        if let Some((k, want)) = policy
            .targets
            .tags
            .iter()
            .find(|(k, want)| h.tags.get(*k) != Some(*want))
        {
            skip(format!(
                "tag {k}={} does not match the policy's {k}={want}",
                h.tags.get(k).map_or("(unset)", String::as_str)
            ));
            continue;
        }
        let mut apply = Vec::new();
        let mut ids = Vec::new();
        let mut reboot = policy.reboot == super::policy::Reboot::Always;
        let mut rel = h.relevant.clone();
        rel.sort();
        rel.dedup();
        for (adv, id) in rel {
            let info = errata.get(&adv);
            match erratum_exclusion(policy, &adv, info) {
                Some(reason) => {
                    let e = err_excl.entry(adv).or_insert((0, reason));
                    e.0 += 1;
                }
                None => {
                    *err_used.entry(adv.clone()).or_default() += 1;
                    if policy.reboot == super::policy::Reboot::IfNeeded
                        && info.is_some_and(|i| i.reboot_suggested)
                    {
                        reboot = true;
                    }
                    apply.push(adv);
                    ids.push(id);
                }
            }
        }
        if apply.is_empty() {
            skip(if h.relevant.is_empty() {
                "nothing to apply: no relevant errata".to_string()
            } else {
                "nothing to apply: no relevant erratum is approved and within the filters"
                    .to_string()
            });
            continue;
        }
        planned.push(PlannedHost {
            system_id: h.id,
            name: h.name.clone(),
            errata: apply,
            errata_ids: ids,
            reboot,
        });
    }
    let waves = split_waves(policy, planned);
    let window_closes_at = policy.window().and_then(|(len, _)| {
        chrono::Duration::from_std(len)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .map(crate::store::format_ts)
    });
    Plan {
        policy_id: policy.id.clone(),
        os: policy.os_family().to_string(),
        planned_at: crate::store::format_ts(now),
        window_closes_at,
        errata: err_used
            .into_iter()
            .map(|(advisory, n)| {
                let i = errata.get(&advisory);
                PlannedErratum {
                    severity: i.map(|i| i.severity.clone()).unwrap_or_default(),
                    queue_id: i.and_then(|i| i.queue_id),
                    approval_id: i.and_then(|i| i.approval_id),
                    approved_by: i.and_then(|i| i.approved_by.clone()),
                    advisory,
                    hosts: n,
                }
            })
            .collect(),
        waves,
        excluded_hosts,
        excluded_errata: err_excl
            .into_iter()
            .map(|(advisory, (hosts, reason))| ErratumExclusion {
                advisory,
                hosts,
                reason,
            })
            .collect(),
    }
}

fn split_waves(policy: &Policy, hosts: Vec<PlannedHost>) -> Vec<PlannedWave> {
    let total = hosts.len();
    let mut waves = Vec::new();
    let mut rest = hosts.into_iter();
    let mut left = total;
    let canary = policy.waves.canary.of(total);
    if canary > 0 && left > 0 {
        let hs: Vec<_> = rest.by_ref().take(canary).collect();
        left -= hs.len();
        waves.push(PlannedWave {
            index: 1,
            canary: true,
            hosts: hs,
        });
    }
    let mut i = 0;
    while left > 0 {
        let size = match policy.waves.sizes.get(i).or(policy.waves.sizes.last()) {
            Some(c) => c.of(total).max(1),
            None => left,
        };
        let hs: Vec<_> = rest.by_ref().take(size).collect();
        left -= hs.len();
        waves.push(PlannedWave {
            index: waves.len() + 1,
            canary: false,
            hosts: hs,
        });
        i += 1;
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rollout::policy::{Count, Policy, Targets, Waves};
    use crate::engine::state::QueueStatus;

    fn policy() -> Policy {
        serde_json::from_value(serde_json::json!({
            "id": "p", "name": "P", "os": "ubuntu2404",
            "targets": { "groups": ["g"] },
            "waves": { "canary": 1, "sizes": ["40%"] },
        }))
        .unwrap()
    }

    fn approval(adv: &str, status: QueueStatus, approved: bool) -> ErratumApproval {
        ErratumApproval {
            advisory: adv.into(),
            severity: "high".into(),
            advisory_type: "security".into(),
            issue_date: Some("2026-01-10".into()),
            reboot_suggested: false,
            queue_id: Some(7),
            queue_status: Some(status),
            approval_id: approved.then_some(3),
            approved_by: approved.then(|| "cli:dana".into()),
        }
    }

    fn host(id: i64, relevant: &[&str]) -> HostInput {
        HostInput {
            id,
            name: format!("web-{id:03}"),
            online: true,
            env: Some("prod".into()),
            tags: BTreeMap::new(),
            in_inventory: true,
            relevant: relevant
                .iter()
                .enumerate()
                .map(|(i, a)| (a.to_string(), i as i64 + 100))
                .collect(),
        }
    }

    #[test]
    fn waves_canary_first_then_sizes() {
        let p = policy();
        let mut errata = BTreeMap::new();
        errata.insert(
            "USN-1".to_string(),
            approval("USN-1", QueueStatus::Approved, true),
        );
        let hosts: Vec<_> = (1..=10).map(|i| host(i, &["USN-1"])).collect();
        let plan = plan(&p, &hosts, &errata, Utc::now());
        let sizes: Vec<usize> = plan.waves.iter().map(|w| w.hosts.len()).collect();
        assert_eq!(sizes, vec![1, 4, 4, 1]);
        assert!(plan.waves[0].canary && !plan.waves[1].canary);
        assert_eq!(plan.hosts_total(), 10);
        assert_eq!(plan.waves[0].hosts[0].name, "web-001");
    }

    #[test]
    fn unapproved_and_filtered_errata_are_excluded_with_reasons() {
        let mut p = policy();
        p.errata.severity = vec!["critical".into(), "high".into()];
        let mut errata = BTreeMap::new();
        errata.insert("A".to_string(), approval("A", QueueStatus::Approved, true));
        errata.insert(
            "B".to_string(),
            approval("B", QueueStatus::PendingApproval, false),
        );
        let mut low = approval("C", QueueStatus::Approved, true);
        low.severity = "low".into();
        errata.insert("C".to_string(), low);
        // Approved status without an approval row is not approved.
        errata.insert("D".to_string(), approval("D", QueueStatus::Approved, false));
        let hosts = vec![host(1, &["A", "B", "C", "D", "E"]), host(2, &["B"])];
        let plan = plan(&p, &hosts, &errata, Utc::now());
        assert_eq!(plan.hosts_total(), 1);
        assert_eq!(plan.waves[0].hosts[0].errata, vec!["A"]);
        let reasons: BTreeMap<_, _> = plan
            .excluded_errata
            .iter()
            .map(|e| (e.advisory.as_str(), (e.hosts, e.reason.as_str())))
            .collect();
        assert_eq!(
            reasons["B"],
            (2, "not approved: queue item 7 is pending_approval")
        );
        assert!(reasons["C"].1.contains("severity low"));
        assert!(reasons["D"].1.starts_with("not approved"));
        assert!(reasons["E"].1.contains("unknown to spm"));
        assert_eq!(plan.excluded_hosts.len(), 1);
        assert!(
            plan.excluded_hosts[0]
                .reason
                .contains("no relevant erratum is approved")
        );
    }

    #[test]
    fn env_tags_exclude_offline_and_cutoff() {
        let mut p = policy();
        p.targets = Targets {
            groups: vec!["g".into()],
            tags: [("tier".to_string(), "web".to_string())].into(),
            env: Some("prod".into()),
            exclude: vec!["web-004".into()],
        };
        p.errata.patch_level = Some("2025-12".into());
        p.waves = Waves {
            canary: Count::Percent("50%".into()),
            sizes: vec![],
        };
        let mut errata = BTreeMap::new();
        errata.insert("A".to_string(), approval("A", QueueStatus::Approved, true));
        let mut ok = host(1, &["A"]);
        ok.tags.insert("tier".into(), "web".into());
        let mut other_env = ok.clone();
        other_env.id = 2;
        other_env.name = "web-002".into();
        other_env.env = Some("dev".into());
        let mut offline = ok.clone();
        offline.id = 3;
        offline.name = "web-003".into();
        offline.online = false;
        let mut excluded = ok.clone();
        excluded.id = 4;
        excluded.name = "web-004".into();
        let mut untagged = host(5, &["A"]);
        untagged.tags.clear();
        let plan1 = plan(
            &p,
            &[ok.clone(), other_env, offline, excluded, untagged],
            &errata,
            Utc::now(),
        );
        let reasons: Vec<&str> = plan1
            .excluded_hosts
            .iter()
            .map(|e| e.reason.as_str())
            .collect();
        assert_eq!(plan1.excluded_hosts.len(), 5, "{reasons:?}");
        // Everything is cut off by the patch level (issued 2026-01-10 > 2025-12-31).
        assert!(
            plan1.excluded_errata[0]
                .reason
                .contains("after the policy's cutoff 2025-12-31")
        );
        p.errata.patch_level = Some("2026-01".into());
        let plan2 = plan(&p, &[ok], &errata, Utc::now());
        assert_eq!(plan2.hosts_total(), 1);
        assert!(reasons.iter().any(|r| r.contains("environment dev")));
        assert!(reasons.iter().any(|r| r.contains("offline")));
        assert!(reasons.iter().any(|r| r.contains("targets.exclude")));
        assert!(reasons.iter().any(|r| r.contains("tag tier=(unset)")));
    }
}
