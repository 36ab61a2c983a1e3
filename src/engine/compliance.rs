//! Compliance: a scan that re-reads relevance from UYUNI for every system a policy targets,
//! and the roll-ups by policy, environment and OS.
//!
//! A system is `compliant` when no erratum within its policy's scope (severity, type, date
//! cutoff or patch level) is still relevant, `non_compliant` otherwise, and `unknown` until
//! scanned. Approval does not matter here: compliance measures the fleet against the
//! target, not against what was approved.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::engine::rollout::execute::RunError;
use crate::engine::rollout::policy::LoadedPolicy;
use crate::services::uyuni::UyuniClient;
use crate::store::compliance::{self, ComplianceRecord, ScanRow};
use crate::store::{Store, runs};

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanSummary {
    /// Systems scanned.
    pub systems: usize,
    /// Compliant.
    pub compliant: usize,
    /// Not compliant.
    pub non_compliant: usize,
    /// UYUNI calls made.
    pub policies: Vec<String>,
}

/// Scan every system targeted by `policies` (a system in several policies takes the first).
pub async fn scan(
    client: &UyuniClient,
    store: &Store,
    policies: &[LoadedPolicy],
) -> Result<ScanSummary, RunError> {
    let mut seen: BTreeSet<i64> = BTreeSet::new();
    let mut summary = ScanSummary::default();
    for lp in policies {
        let p = &lp.policy;
        summary.policies.push(p.id.clone());
        let mut targets: BTreeMap<i64, String> = BTreeMap::new();
        for g in &p.targets.groups {
            let members = client
                .list_group_systems(g)
                .await
                .map_err(|e| RunError::Invalid(format!("{}: target group {g:?}: {e}", lp.path)))?;
            for s in members {
                targets.insert(s.id, s.profile_name);
            }
        }
        if p.targets.groups.is_empty() {
            let tags = p.targets.tags.clone();
            for (id, name) in store
                .read(move |c| runs::systems_with_tags(c, &tags))
                .await?
            {
                targets.insert(id, name);
            }
        }
        targets.retain(|id, _| !seen.contains(id));
        let ids: Vec<i64> = targets.keys().copied().collect();
        seen.extend(ids.iter().copied());
        let mut relevant: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for chunk in ids.chunks(1000) {
            for se in client.relevant_errata_many(chunk).await? {
                relevant.insert(
                    se.system_id,
                    se.errata.into_iter().map(|e| e.advisory_name).collect(),
                );
            }
        }
        let all: Vec<String> = relevant
            .values()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let facts = store
            .read(move |c| compliance::errata_facts(c, &all))
            .await?;
        let ids2 = ids.clone();
        let inv = store.read(move |c| runs::system_facts(c, &ids2)).await?;
        let filtered = !p.errata.severity.is_empty()
            || !p.errata.types.is_empty()
            || p.errata.cutoff().is_some();
        let cutoff = p.errata.cutoff();
        let target_level = p
            .errata
            .patch_level
            .clone()
            .unwrap_or_else(|| "latest".to_string());
        let mut rows = Vec::new();
        for (sid, name) in targets {
            let mut pending = Vec::new();
            let mut cves = BTreeSet::new();
            let mut oldest: Option<String> = None;
            for adv in relevant.get(&sid).into_iter().flatten() {
                let in_scope = match facts.get(adv) {
                    None => !filtered,
                    Some((sev, ty, date, _)) => {
                        (p.errata.severity.is_empty() || p.errata.severity.contains(sev))
                            && (p.errata.types.is_empty() || p.errata.types.contains(ty))
                            && cutoff.is_none_or(|c| {
                                date.as_deref()
                                    .and_then(|d| d.get(..10))
                                    .and_then(|d| {
                                        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()
                                    })
                                    .is_some_and(|d| d <= c)
                            })
                    }
                };
                if in_scope {
                    pending.push(adv.clone());
                    if let Some((_, _, date, c)) = facts.get(adv) {
                        cves.extend(c.iter().cloned());
                        if let Some(d) = date.as_deref().and_then(|d| d.get(..10))
                            && oldest.as_deref().is_none_or(|o| d < o)
                        {
                            oldest = Some(d.to_string());
                        }
                    }
                }
            }
            let status = if pending.is_empty() {
                "compliant"
            } else {
                "non_compliant"
            };
            let patch_level = if pending.is_empty() {
                Some(target_level.clone())
            } else {
                Some(match oldest {
                    Some(d) => format!("missing errata since {d}"),
                    None => format!("{} pending", pending.len()),
                })
            };
            rows.push(ScanRow {
                system_id: sid,
                name,
                policy_id: Some(p.id.clone()),
                os: p.os_family().to_string(),
                env: inv.get(&sid).and_then(|f| f.0.clone()),
                patch_level,
                target_level: Some(target_level.clone()),
                status: status.to_string(),
                pending_errata: pending,
                pending_cves: cves.into_iter().collect(),
            });
        }
        summary.systems += rows.len();
        summary.compliant += rows.iter().filter(|r| r.status == "compliant").count();
        summary.non_compliant += rows.iter().filter(|r| r.status == "non_compliant").count();
        store
            .write(move |tx| {
                for r in &rows {
                    compliance::record_scan(tx, r)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(summary)
}

/// Compliance counts of one group (a policy, an environment or an OS).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rollup {
    /// The group (`(none)` when unset).
    pub key: String,
    /// Systems.
    pub systems: usize,
    /// Compliant.
    pub compliant: usize,
    /// Not compliant.
    pub non_compliant: usize,
    /// Never scanned.
    pub unknown: usize,
    /// compliant / (compliant + non_compliant) × 100; `None` when nothing was scanned.
    pub percent: Option<f64>,
}

/// Group records by `by` (`policy`, `env` or `os`).
pub fn rollup(records: &[ComplianceRecord], by: &str) -> Vec<Rollup> {
    let mut groups: BTreeMap<String, Rollup> = BTreeMap::new();
    for r in records {
        let key = match by {
            "policy" => r.policy_id.clone(),
            "env" => r.env.clone(),
            _ => r.os.clone(),
        }
        .unwrap_or_else(|| "(none)".to_string());
        let g = groups.entry(key.clone()).or_insert_with(|| Rollup {
            key,
            ..Rollup::default()
        });
        g.systems += 1;
        match r.status.as_str() {
            "compliant" => g.compliant += 1,
            "non_compliant" => g.non_compliant += 1,
            _ => g.unknown += 1,
        }
    }
    groups
        .into_values()
        .map(|mut g| {
            let scanned = g.compliant + g.non_compliant;
            g.percent = (scanned > 0).then(|| (g.compliant as f64) * 100.0 / scanned as f64);
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(policy: &str, env: &str, status: &str) -> ComplianceRecord {
        ComplianceRecord {
            system_id: 1,
            name: "s".into(),
            policy_id: Some(policy.into()),
            os: Some("rhel".into()),
            env: Some(env.into()),
            status: status.into(),
            patch_level: None,
            target_level: None,
            pending_errata: vec![],
            pending_cves: vec![],
            last_scanned: None,
            last_patched: None,
        }
    }

    #[test]
    fn rollup_by_policy_and_env() {
        let r = vec![
            rec("a", "prod", "compliant"),
            rec("a", "prod", "non_compliant"),
            rec("a", "dev", "unknown"),
            rec("b", "prod", "compliant"),
        ];
        let by = rollup(&r, "policy");
        assert_eq!(by.len(), 2);
        assert_eq!(
            (by[0].key.as_str(), by[0].systems, by[0].unknown),
            ("a", 3, 1)
        );
        assert_eq!(by[0].percent, Some(50.0));
        assert_eq!(by[1].percent, Some(100.0));
        let env = rollup(&r, "env");
        assert_eq!(env[0].key, "dev");
        assert_eq!(env[0].percent, None);
        assert_eq!(rollup(&r, "os")[0].systems, 4);
    }
}
