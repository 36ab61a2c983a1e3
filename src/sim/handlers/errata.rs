//! `errata.*`: advisory details, CVEs, packages, affected systems.

use super::{Ctx, Reply, T, fault, java_ts, sig, string, system_overview};
use crate::services::uyuni::xmlrpc::{Struct, Value};
use crate::sim::model::Erratum;

fn lookup<'a>(ctx: &'a Ctx<'_>, adv: &str) -> Result<&'a Erratum, super::Fault> {
    ctx.world
        .catalog
        .erratum_named(adv)
        .ok_or_else(|| fault(-208, format!("The patch {adv} cannot be found.")))
}

pub(super) fn call(ctx: &mut Ctx<'_>, name: &str, a: &[Value]) -> Option<Reply> {
    if !sig(a, &[T::S]) {
        return None;
    }
    let adv = string(a, 0);
    Some(match name {
        "getDetails" => lookup(ctx, &adv).map(|e| {
            let mut s = Struct::new()
                .with("id", e.id)
                .with("issue_date", e.issue_date.format("%-m/%-d/%y").to_string())
                .with(
                    "update_date",
                    e.update_date.format("%-m/%-d/%y").to_string(),
                )
                .with("last_modified_date", java_ts(e.update_date))
                .with("release", e.release)
                .with("advisory_status", e.status.as_str())
                .with("vendor_advisory", "")
                .with(
                    "product",
                    format!("{} errata", e.advisory.split('-').next().unwrap_or("")),
                )
                .with("errataFrom", "security@example.test")
                .with("solution", "Apply the update.")
                .with("description", e.description.as_str())
                .with("synopsis", e.synopsis.as_str())
                .with("topic", e.synopsis.as_str())
                .with("references", e.cves.join(" "))
                .with("notes", "")
                .with("type", e.kind.label());
            if let Some(sev) = &e.severity {
                s.insert("severity", sev.as_str());
            }
            s.insert("reboot_suggested", e.reboot_suggested);
            s.insert("restart_suggested", e.restart_suggested);
            s.into()
        }),
        "listCves" => lookup(ctx, &adv)
            .map(|e| Value::Array(e.cves.iter().map(|c| Value::String(c.clone())).collect())),
        "listKeywords" => lookup(ctx, &adv).map(|e| {
            let mut v = Vec::new();
            if e.reboot_suggested {
                v.push(Value::String("reboot_suggested".into()));
            }
            if e.restart_suggested {
                v.push(Value::String("restart_suggested".into()));
            }
            Value::Array(v)
        }),
        "listPackages" => lookup(ctx, &adv).map(|e| {
            let cat = &ctx.world.catalog;
            Value::Array(
                e.packages
                    .iter()
                    .filter_map(|p| cat.package(*p))
                    .map(|p| {
                        let channel = cat
                            .channels
                            .get(&p.channel)
                            .map(|c| c.label.clone())
                            .unwrap_or_default();
                        let file = format!("{}_{}_{}", p.name, p.evr, p.arch);
                        Struct::new()
                            .with("id", p.id)
                            .with("name", p.name.as_str())
                            .with("epoch", p.evr.epoch_str())
                            .with("version", p.evr.version.as_str())
                            .with("release", p.evr.release.as_str())
                            .with("arch_label", p.arch.as_str())
                            .with(
                                "providing_channels",
                                Value::Array(vec![Value::String(channel)]),
                            )
                            .with("build_host", "build.example.test")
                            .with("description", format!("{} package", p.name))
                            .with(
                                "checksum",
                                format!("{:064x}", u64::from(p.id) * 2_654_435_761),
                            )
                            .with("checksum_type", "sha256")
                            .with("vendor", "Simulated Vendor")
                            .with("summary", format!("{} package", p.name))
                            .with("cookie", "")
                            .with("license", "Various")
                            .with("path", format!("pool/{file}"))
                            .with("file", file)
                            .with("build_date", java_ts(e.issue_date))
                            .with("last_modified_date", java_ts(e.update_date))
                            .with("part_of_retracted_patch", e.status == "retracted")
                            .with(
                                "size",
                                (100_000 + u64::from(p.id) * 37 % 900_000).to_string(),
                            )
                            .with(
                                "payload_size",
                                (300_000 + u64::from(p.id) * 91 % 2_000_000).to_string(),
                            )
                            .into()
                    })
                    .collect(),
            )
        }),
        "listAffectedSystems" => lookup(ctx, &adv).map(|e| {
            let id = e.id;
            Value::Array(
                ctx.world
                    .systems
                    .values()
                    .filter(|s| s.relevant.contains(&id))
                    .map(system_overview)
                    .collect(),
            )
        }),
        "findByCve" => Ok(Value::Array(
            ctx.world
                .catalog
                .errata
                .iter()
                .filter(|e| e.cves.contains(&adv))
                .map(|e| {
                    Struct::new()
                        .with("id", e.id)
                        .with("date", e.update_date.format("%-m/%-d/%y").to_string())
                        .with("advisory_synopsis", e.synopsis.as_str())
                        .with("advisory_name", e.advisory.as_str())
                        .with("advisory_type", e.kind.label())
                        .with("advisory_status", e.status.as_str())
                        .into()
                })
                .collect(),
        )),
        _ => return None,
    })
}
