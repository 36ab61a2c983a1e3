//! `audit.listSystemsByPatchStatus`: CVE audit computed from installed versions.

use std::collections::BTreeSet;

use super::{Ctx, Reply, T, fault, sig, string, strings, unhandled};
use crate::services::uyuni::xmlrpc::{Struct, Value};

const STATUSES: [&str; 7] = [
    "AFFECTED_PATCH_UNAVAILABLE",
    "AFFECTED_PATCH_INAPPLICABLE",
    "AFFECTED_PARTIAL_PATCH_APPLICABLE",
    "AFFECTED_FULL_PATCH_APPLICABLE",
    "NOT_AFFECTED",
    "PATCHED",
    "AFFECTED_PATCH_INAPPLICABLE_SUCCESSOR_PRODUCT",
];

pub(super) fn call(ctx: &mut Ctx<'_>, name: &str, a: &[Value]) -> Option<Reply> {
    if name != "listSystemsByPatchStatus" || !(sig(a, &[T::S]) || sig(a, &[T::S, T::A])) {
        return None;
    }
    Some((|| {
        let cve = string(a, 0);
        let filter = if a.len() == 2 {
            Some(strings(a, 1)?)
        } else {
            None
        };
        if let Some(f) = &filter
            && let Some(bad) = f.iter().find(|l| {
                !STATUSES.contains(&l.as_str()) && l.as_str() != "AFFECTED_PATCH_APPLICABLE"
            })
        {
            return Err(unhandled(format!(
                "No enum constant com.redhat.rhn.manager.audit.PatchStatus.{bad}"
            )));
        }
        let cat = &ctx.world.catalog;
        let fixing: Vec<_> = cat
            .errata
            .iter()
            .filter(|e| e.cves.contains(&cve))
            .collect();
        if fixing.is_empty() {
            return Err(fault(3000, "CVE identifier not found"));
        }
        let mut rows: Vec<(usize, Value)> = Vec::new();
        for s in ctx.world.systems.values() {
            let kind = s.os.kind();
            let mut affected = false;
            let mut applicable = BTreeSet::new();
            let mut inapplicable = false;
            for e in &fixing {
                for p in e.packages.iter().filter_map(|p| cat.package(*p)) {
                    let Some(inst) = s.installed.get(&p.name) else {
                        continue;
                    };
                    if p.kind != kind {
                        continue;
                    }
                    if inst.evr.cmp_with(&p.evr, kind).is_lt() {
                        affected = true;
                        if s.channels.contains(&p.channel) {
                            applicable.insert(e.advisory.clone());
                        } else {
                            inapplicable = true;
                        }
                    }
                }
            }
            let touches = fixing.iter().any(|e| {
                e.packages
                    .iter()
                    .filter_map(|p| cat.package(*p))
                    .any(|p| p.kind == kind && s.installed.contains_key(&p.name))
            });
            let status = if !touches {
                4
            } else if !affected {
                5
            } else if !applicable.is_empty() && !inapplicable {
                3
            } else if !applicable.is_empty() {
                2
            } else {
                1
            };
            let label = STATUSES[status];
            if filter.as_ref().is_some_and(|f| {
                !f.iter()
                    .any(|l| l == label || (status == 3 && l == "AFFECTED_PATCH_APPLICABLE"))
            }) {
                continue;
            }
            let channels: Vec<Value> = s
                .channels
                .iter()
                .filter_map(|c| cat.channels.get(c))
                .map(|c| Value::String(c.label.clone()))
                .collect();
            let rank = status;
            rows.push((
                rank,
                Struct::new()
                    .with("system_id", s.id)
                    .with("patch_status", label)
                    .with("channel_labels", Value::Array(channels))
                    .with(
                        "errata_advisories",
                        Value::Array(applicable.into_iter().map(Value::String).collect()),
                    )
                    .into(),
            ));
        }
        rows.sort_by_key(|r| r.0);
        Ok(Value::Array(rows.into_iter().map(|r| r.1).collect()))
    })())
}
