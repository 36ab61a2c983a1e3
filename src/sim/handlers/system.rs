//! `system.*`: inventory, relevance, packages, scheduling, script results, events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;

use super::{
    Ctx, Reply, T, boolean, date, errata_overview, fault, int, ints, java_ts, no_such_system,
    server_struct, short_system_info, sig, string, system_overview, unhandled,
};
use crate::services::uyuni::xmlrpc::{Struct, Value};
use crate::sim::actions::{ActionKind, ScriptSpec, Status};
use crate::sim::model::{AdvisoryType, PkgId, System, SystemId};

fn lookup<'a>(ctx: &'a Ctx<'_>, sid: i64) -> Result<&'a System, super::Fault> {
    u32::try_from(sid)
        .ok()
        .and_then(|id| ctx.world.systems.get(&id))
        .ok_or_else(|| no_such_system(sid))
}

fn sids(ctx: &Ctx<'_>, raw: &[i64]) -> Result<Vec<SystemId>, super::Fault> {
    raw.iter().map(|&s| lookup(ctx, s).map(|x| x.id)).collect()
}

fn relevant_list(ctx: &Ctx<'_>, sys: &System, filter: Option<AdvisoryType>) -> Value {
    let cat = &ctx.world.catalog;
    Value::Array(
        sys.relevant
            .iter()
            .filter_map(|id| cat.erratum(*id))
            .filter(|e| filter.is_none_or(|t| e.kind == t))
            .map(errata_overview)
            .collect(),
    )
}

fn taskomatic(ctx: &Ctx<'_>) -> Result<(), super::Fault> {
    if ctx.world.taskomatic_down {
        return Err(fault(
            2802,
            "Taskomatic is not available (taskomatic.notavailable)",
        ));
    }
    Ok(())
}

fn login(ctx: &Ctx<'_>) -> String {
    ctx.world
        .users
        .get(ctx.user)
        .map(|u| u.login.clone())
        .unwrap_or_default()
}

pub(super) fn call(ctx: &mut Ctx<'_>, name: &str, a: &[Value]) -> Option<Reply> {
    use T::*;
    Some(match name {
        "listSystems" if a.is_empty() => Ok(Value::Array(
            ctx.world.systems.values().map(short_system_info).collect(),
        )),
        "listActiveSystems" if a.is_empty() => Ok(Value::Array(
            ctx.world
                .systems
                .values()
                .filter(|s| ctx.now - s.last_checkin < chrono::Duration::days(1))
                .map(short_system_info)
                .collect(),
        )),
        "getId" if sig(a, &[S]) => {
            let n = string(a, 0);
            Ok(Value::Array(
                ctx.world
                    .systems
                    .values()
                    .filter(|s| s.name == n)
                    .map(system_overview)
                    .collect(),
            ))
        }
        "getName" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            Struct::new()
                .with("id", s.id)
                .with("name", s.name.as_str())
                .with("last_checkin", s.last_checkin)
                .into()
        }),
        "getDetails" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(server_struct),
        "getNetwork" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            Struct::new()
                .with("ip", s.ip.as_str())
                .with("ip6", s.ip6.as_str())
                .with("hostname", s.hostname.as_str())
                .into()
        }),
        "getRunningKernel" if sig(a, &[I]) => {
            lookup(ctx, int(a, 0)).map(|s| Value::String(s.running_kernel.clone()))
        }
        "listSuggestedReboot" if a.is_empty() => Ok(Value::Array(
            ctx.world
                .systems
                .values()
                .filter(|s| s.reboot_required())
                .map(|s| {
                    Struct::new()
                        .with("id", s.id)
                        .with("name", s.name.as_str())
                        .into()
                })
                .collect(),
        )),
        "listGroups" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            Value::Array(
                ctx.world
                    .groups
                    .values()
                    .map(|g| {
                        Struct::new()
                            .with("id", g.id)
                            .with("sgid", g.id.to_string())
                            .with("system_group_name", g.name.as_str())
                            .with("subscribed", i32::from(g.members.contains(&s.id)))
                            .into()
                    })
                    .collect(),
            )
        }),
        "addNote" if sig(a, &[I, S, S]) => {
            let sid = int(a, 0);
            match u32::try_from(sid)
                .ok()
                .and_then(|id| ctx.world.systems.get_mut(&id))
            {
                Some(s) => {
                    s.notes.push((string(a, 1), string(a, 2)));
                    Ok(Value::Int(1))
                }
                None => Err(no_such_system(sid)),
            }
        }
        "getRelevantErrata" if sig(a, &[I]) => {
            lookup(ctx, int(a, 0)).map(|s| relevant_list(ctx, s, None))
        }
        "getRelevantErrata" if sig(a, &[A]) => (|| {
            let ids = sids(ctx, &ints(a, 0)?)?;
            Ok(Value::Array(
                ids.iter()
                    .filter_map(|id| ctx.world.systems.get(id))
                    .map(|s| {
                        Struct::new()
                            .with("system_id", s.id.to_string())
                            .with("errata", relevant_list(ctx, s, None))
                            .into()
                    })
                    .collect(),
            ))
        })(),
        "getRelevantErrataByType" if sig(a, &[I, S]) => (|| {
            let s = lookup(ctx, int(a, 0))?;
            let t = string(a, 1);
            let kind = AdvisoryType::parse(&t)
                .filter(|_| t.contains(' '))
                .ok_or_else(|| fault(1213, format!("Invalid advisory type: {t}")))?;
            Ok(relevant_list(ctx, s, Some(kind)))
        })(),
        "getUnscheduledErrata" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            Value::Array(
                s.relevant
                    .iter()
                    .filter(|e| !ctx.world.errata_pending(s.id, **e))
                    .filter_map(|e| ctx.world.catalog.erratum(*e))
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
            )
        }),
        "listPackages" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            Value::Array(
                s.installed
                    .values()
                    .map(|p| {
                        Struct::new()
                            .with("name", p.name.as_str())
                            .with("version", p.evr.version.as_str())
                            .with("release", p.evr.release.as_str())
                            .with("epoch", p.evr.epoch_str())
                            .with("arch", p.arch.trim_end_matches("-deb"))
                            .with("installtime", p.installtime)
                            .into()
                    })
                    .collect(),
            )
        }),
        "listInstalledPackages" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            let cat = &ctx.world.catalog;
            Value::Array(
                s.installed
                    .values()
                    .map(|p| {
                        let pid = cat
                            .find_exact(&s.channels, &p.name, &p.evr, false)
                            .map_or(-1, |x| i64::from(x.id));
                        Struct::new()
                            .with("package_id", pid)
                            .with("name", p.name.as_str())
                            .with(
                                "epoch",
                                p.evr.epoch.map_or(" ".to_string(), |e| e.to_string()),
                            )
                            .with("version", p.evr.version.as_str())
                            .with("release", p.evr.release.as_str())
                            .with("arch", p.arch.as_str())
                            .with("installtime", p.installtime)
                            .with("retracted", false)
                            .into()
                    })
                    .collect(),
            )
        }),
        "listLatestUpgradablePackages" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            let cat = &ctx.world.catalog;
            Value::Array(
                s.installed
                    .values()
                    .filter_map(|p| {
                        let l = cat.latest(&s.channels, &p.name)?;
                        l.evr.cmp_with(&p.evr, s.os.kind()).is_gt().then(|| {
                            Struct::new()
                                .with("name", p.name.as_str())
                                .with("arch", p.arch.as_str())
                                .with("from_version", p.evr.version.as_str())
                                .with("from_release", p.evr.release.as_str())
                                .with("from_epoch", p.evr.epoch_str())
                                .with("to_version", l.evr.version.as_str())
                                .with("to_release", l.evr.release.as_str())
                                .with("to_epoch", l.evr.epoch_str())
                                .with("to_package_id", l.id)
                                .into()
                        })
                    })
                    .collect(),
            )
        }),
        "listLatestInstallablePackages" if sig(a, &[I]) => lookup(ctx, int(a, 0)).map(|s| {
            let cat = &ctx.world.catalog;
            let names: BTreeSet<&str> = s
                .channels
                .iter()
                .filter_map(|c| cat.channels.get(c))
                .flat_map(|c| {
                    c.packages
                        .iter()
                        .filter_map(|p| cat.package(*p))
                        .map(|p| p.name.as_str())
                })
                .collect();
            Value::Array(
                names
                    .into_iter()
                    .filter_map(|n| cat.latest(&s.channels, n))
                    .map(|l| {
                        Struct::new()
                            .with("name", l.name.as_str())
                            .with("version", l.evr.version.as_str())
                            .with("release", l.evr.release.as_str())
                            .with("epoch", l.evr.epoch_str())
                            .with("id", l.id)
                            .with("arch_label", l.arch.as_str())
                            .into()
                    })
                    .collect(),
            )
        }),
        "scheduleApplyErrata" => return schedule_apply_errata(ctx, a),
        "schedulePackageInstall" => return schedule_package_install(ctx, a),
        "schedulePackageInstallByNevra" => return schedule_by_nevra(ctx, a),
        "scheduleScriptRun" => return schedule_script_run(ctx, a),
        "scheduleReboot" if sig(a, &[I, D]) => (|| {
            taskomatic(ctx)?;
            let sid = int(a, 0);
            let sys = u32::try_from(sid)
                .ok()
                .and_then(|id| ctx.world.systems.get(&id))
                .map(|s| s.id);
            let Some(sid) = sys else {
                return Err(unhandled(format!(
                    "Could not find server {sid} for user {}",
                    ctx.user + 1
                )));
            };
            let earliest = date(a, 1).unwrap_or(ctx.now);
            let scheduler = login(ctx);
            let id = ctx.world.create_action(
                ActionKind::Reboot,
                "System reboot scheduled".into(),
                &scheduler,
                earliest,
                &[sid],
                ctx.now,
            );
            Ok(Value::Int(i64::from(id)))
        })(),
        "getScriptResults" if sig(a, &[I]) => (|| {
            let aid = int(a, 0);
            let action = u32::try_from(aid)
                .ok()
                .and_then(|id| ctx.world.actions.get(&id))
                .ok_or_else(|| fault(2700, format!("No such action: {aid}")))?;
            if !matches!(action.kind, ActionKind::Script(_)) {
                return Err(fault(2701, format!("Action {aid} is not a script action")));
            }
            Ok(Value::Array(
                action
                    .servers
                    .iter()
                    .filter_map(|(sid, r)| r.script.as_ref().map(|s| (sid, s)))
                    .map(|(sid, r)| {
                        let bad = r.output.chars().any(|c| {
                            let u = u32::from(c);
                            (u < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
                                || (0xFFFE..=0xFFFF).contains(&u)
                        });
                        let output = if bad {
                            use base64::Engine as _;
                            base64::engine::general_purpose::STANDARD.encode(r.output.as_bytes())
                        } else {
                            r.output.clone()
                        };
                        Struct::new()
                            .with("serverId", *sid)
                            .with("startDate", r.start)
                            .with("stopDate", r.stop)
                            .with("returnCode", r.code)
                            .with("output", output)
                            .with("output_enc64", bad)
                            .into()
                    })
                    .collect(),
            ))
        })(),
        "listSystemEvents" => return list_system_events(ctx, a),
        _ => return None,
    })
}

fn schedule_apply_errata(ctx: &mut Ctx<'_>, a: &[Value]) -> Option<Reply> {
    use T::*;
    // (targets, errata, earliest, allow_modules, only_relevant)
    let (single, rest): (bool, &[Value]) = match a.first()? {
        Value::Int(_) => (true, &a[1..]),
        Value::Array(_) => (false, &a[1..]),
        _ => return None,
    };
    let (earliest, only_relevant) = if sig(rest, &[A]) || sig(rest, &[A, B]) {
        (None, true)
    } else if sig(rest, &[A, D]) || sig(rest, &[A, D, B]) {
        (date(rest, 1), true)
    } else if !single && (sig(rest, &[A, D, B, B]) || sig(rest, &[A, D, B, B, B])) {
        (date(rest, 1), boolean(rest, 3))
    } else {
        return None;
    };
    Some((|| {
        let targets = if single { vec![int(a, 0)] } else { ints(a, 0)? };
        let errata = ints(rest, 0)?;
        if targets.is_empty() {
            return Err(fault(1213, "No systems specified."));
        }
        if errata.is_empty() {
            return Err(fault(1213, "No errata to apply."));
        }
        taskomatic(ctx)?;
        let sids = sids(ctx, &targets)?;
        let mut eids = Vec::new();
        for e in &errata {
            let er = u32::try_from(*e)
                .ok()
                .and_then(|id| ctx.world.catalog.erratum(id))
                .ok_or_else(|| fault(2600, "Invalid errata"))?;
            if er.status == "retracted" {
                return Err(fault(
                    2602,
                    format!("Errata {} is retracted and cannot be applied", er.advisory),
                ));
            }
            eids.push(er.id);
        }
        // Per system: requested errata that apply and are not yet scheduled.
        let mut by_set: BTreeMap<Vec<u32>, Vec<SystemId>> = BTreeMap::new();
        for &sid in &sids {
            let s = &ctx.world.systems[&sid];
            let set: Vec<u32> = eids
                .iter()
                .copied()
                .filter(|e| s.relevant.contains(e) && !ctx.world.errata_pending(sid, *e))
                .collect();
            if only_relevant && set.len() != eids.len() {
                return Err(fault(2600, "Invalid errata"));
            }
            if !set.is_empty() {
                by_set.entry(set).or_default().push(sid);
            }
        }
        let scheduler = login(ctx);
        let when = earliest.unwrap_or(ctx.now);
        let mut ids = Vec::new();
        for (set, systems) in by_set {
            let first = ctx
                .world
                .catalog
                .erratum(set[0])
                .map(|e| (e.advisory.clone(), e.synopsis.clone()))
                .unwrap_or_default();
            let mut name = format!("Patch Update: {} - {}", first.0, first.1);
            if set.len() > 1 {
                name.push_str(&format!(" (and {} other patches)", set.len() - 1));
            }
            let id = ctx.world.create_action(
                ActionKind::Errata(set),
                name,
                &scheduler,
                when,
                &systems,
                ctx.now,
            );
            ids.push(Value::Int(i64::from(id)));
        }
        Ok(Value::Array(ids))
    })())
}

fn package_action(
    ctx: &mut Ctx<'_>,
    sids_raw: Vec<i64>,
    pids: Vec<PkgId>,
    earliest: NaiveDateTime,
    single: bool,
) -> Reply {
    if pids.is_empty() {
        return Err(fault(1213, "No packages to install/remove."));
    }
    taskomatic(ctx)?;
    let systems = sids(ctx, &sids_raw)?;
    let scheduler = login(ctx);
    let mut ids = Vec::new();
    for sid in systems {
        let id = ctx.world.create_action(
            ActionKind::PackageInstall(pids.clone()),
            "Package Install".into(),
            &scheduler,
            earliest,
            &[sid],
            ctx.now,
        );
        ids.push(i64::from(id));
    }
    if single {
        Ok(Value::Int(ids.first().copied().unwrap_or_default()))
    } else {
        Ok(Value::Array(ids.into_iter().map(Value::Int).collect()))
    }
}

fn schedule_package_install(ctx: &mut Ctx<'_>, a: &[Value]) -> Option<Reply> {
    use T::*;
    let single = if sig(a, &[I, A, D]) || sig(a, &[I, A, D, B]) {
        true
    } else if sig(a, &[A, A, D]) || sig(a, &[A, A, D, B]) {
        false
    } else {
        return None;
    };
    Some((|| {
        let targets = if single { vec![int(a, 0)] } else { ints(a, 0)? };
        let mut pids = Vec::new();
        for p in ints(a, 1)? {
            let ok = u32::try_from(p)
                .ok()
                .filter(|id| ctx.world.catalog.package(*id).is_some());
            pids.push(ok.ok_or_else(|| {
                fault(
                    2300,
                    format!("cannot find package with name {p} in Satellite database"),
                )
            })?);
        }
        package_action(ctx, targets, pids, date(a, 2).unwrap_or(ctx.now), single)
    })())
}

fn schedule_by_nevra(ctx: &mut Ctx<'_>, a: &[Value]) -> Option<Reply> {
    use T::*;
    let single = if sig(a, &[I, A, D]) || sig(a, &[I, A, D, B]) {
        true
    } else if sig(a, &[A, A, D]) || sig(a, &[A, A, D, B]) {
        false
    } else {
        return None;
    };
    Some((|| {
        let targets = if single { vec![int(a, 0)] } else { ints(a, 0)? };
        let items = a.get(1).and_then(Value::as_array).unwrap_or_default();
        let mut pids = Vec::new();
        for it in items {
            let st = it.as_struct().ok_or_else(|| {
                unhandled("java.lang.ClassCastException: package NEVRA must be a struct")
            })?;
            let get = |k: &str| {
                st.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (n, e, v, r, arch) = (
                get("package_name"),
                get("package_epoch"),
                get("package_version"),
                get("package_release"),
                get("package_arch"),
            );
            if !matches!(
                arch.as_str(),
                "x86_64" | "noarch" | "i686" | "aarch64" | "amd64-deb" | "all-deb"
            ) {
                return Err(unhandled(format!(
                    "com.redhat.rhn.domain.rhnpackage.InvalidPackageArchException: Invalid package arch: {arch}"
                )));
            }
            let found = ctx.world.catalog.packages.iter().find(|p| {
                p.name == n
                    && p.evr.version == v
                    && p.evr.release == r
                    && p.evr.epoch_str() == e.trim()
                    && p.arch == arch
            });
            match found {
                Some(p) => pids.push(p.id),
                None => {
                    return Err(fault(
                        2300,
                        format!(
                            "cannot find package with name {n}-{e}:{v}-{r}.{arch} in Satellite database"
                        ),
                    ));
                }
            }
        }
        package_action(ctx, targets, pids, date(a, 2).unwrap_or(ctx.now), single)
    })())
}

fn schedule_script_run(ctx: &mut Ctx<'_>, a: &[Value]) -> Option<Reply> {
    use T::*;
    // Overloads: (label, sids[], u, g, timeout, script, date), (sids[], ...), (sid, ...), (label, sid, ...).
    let (label, targets_at) = if sig(a, &[S, A, S, S, I, S, D]) || sig(a, &[S, I, S, S, I, S, D]) {
        (Some(string(a, 0)), 1)
    } else if sig(a, &[A, S, S, I, S, D]) || sig(a, &[I, S, S, I, S, D]) {
        (None, 0)
    } else {
        return None;
    };
    Some((|| {
        let targets = match &a[targets_at] {
            Value::Int(i) => vec![*i],
            _ => ints(a, targets_at)?,
        };
        taskomatic(ctx)?;
        let systems = sids(ctx, &targets)?;
        if systems.is_empty() {
            return Err(fault(1213, "No systems specified."));
        }
        let b = targets_at + 1;
        let spec = ScriptSpec {
            label: label.clone(),
            username: string(a, b),
            groupname: string(a, b + 1),
            timeout: int(a, b + 2),
            contents: string(a, b + 3),
        };
        let earliest = date(a, b + 4).unwrap_or(ctx.now);
        let name = label.unwrap_or_else(|| {
            format!("Remote Command on {}", ctx.world.systems[&systems[0]].name)
        });
        let scheduler = login(ctx);
        let id = ctx.world.create_action(
            ActionKind::Script(spec),
            name,
            &scheduler,
            earliest,
            &systems,
            ctx.now,
        );
        Ok(Value::Int(i64::from(id)))
    })())
}

fn list_system_events(ctx: &mut Ctx<'_>, a: &[Value]) -> Option<Reply> {
    use T::*;
    let (type_filter, since) = if sig(a, &[I]) {
        (None, None)
    } else if sig(a, &[I, S]) {
        (Some(string(a, 1)), None)
    } else if sig(a, &[I, D]) {
        (None, date(a, 1))
    } else if sig(a, &[I, S, D]) {
        (Some(string(a, 1)), date(a, 2))
    } else {
        return None;
    };
    Some((|| {
        let sid = lookup(ctx, int(a, 0))?.id;
        let cat = &ctx.world.catalog;
        let mut out = Vec::new();
        for action in ctx.world.actions.values() {
            let Some(r) = action.servers.get(&sid) else {
                continue;
            };
            if type_filter
                .as_deref()
                .is_some_and(|t| t != action.kind.type_name())
            {
                continue;
            }
            if since.is_some_and(|d| r.created < d) {
                continue;
            }
            let (ok, failed, _) = action.counts();
            let mut st = Struct::new()
                .with("id", action.id)
                .with("name", action.name.as_str())
                .with("action_type", action.kind.type_name())
                .with("version", "2")
                .with("failed_count", failed as i64)
                .with("successful_count", ok as i64)
                .with("archived", i32::from(action.archived))
                .with("scheduler_user", action.scheduler.as_str())
                .with("earliest_action", java_ts(action.earliest))
                .with("created", java_ts(r.created))
                .with("created_date", r.created)
                .with("modified", java_ts(r.modified))
                .with("modified_date", r.modified);
            if let Some(p) = r.pickup {
                st.insert("pickup_time", java_ts(p));
                st.insert("pickup_date", p);
            }
            if let Some(c) = r.completion {
                st.insert("completion_time", java_ts(c));
                st.insert("completed_date", c);
            }
            if let Some(m) = &r.result_msg {
                st.insert("result_msg", m.as_str());
            }
            if let ActionKind::Errata(ids) = &action.kind {
                let info: Vec<Value> = ids
                    .iter()
                    .filter_map(|e| cat.erratum(*e))
                    .map(|e| {
                        Struct::new()
                            .with("detail", e.advisory.as_str())
                            .with("result", e.synopsis.as_str())
                            .into()
                    })
                    .collect();
                st.insert("additional_info", Value::Array(info));
            }
            // Status is deliberately absent, as in UYUNI; the engine's status is only
            // visible through timestamps and result_msg.
            let _ = Status::Queued;
            out.push(st.into());
        }
        Ok(Value::Array(out))
    })())
}
