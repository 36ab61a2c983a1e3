//! `systemgroup.*`: groups and their members.

use super::{Ctx, Reply, T, fault, int, server_struct, sig, string, system_overview, unhandled};
use crate::services::uyuni::xmlrpc::{Struct, Value};
use crate::sim::model::Group;

fn group_struct(g: &Group) -> Value {
    Struct::new()
        .with("id", g.id)
        .with("name", g.name.as_str())
        .with("description", g.description.as_str())
        .with("system_count", g.members.len() as i64)
        .with("org_id", 1)
        .into()
}

fn by_name<'a>(ctx: &'a Ctx<'_>, name: &str) -> Result<&'a Group, super::Fault> {
    ctx.world
        .groups
        .values()
        .find(|g| g.name == name)
        .ok_or_else(|| unhandled(format!("Unable to locate or access server group: {name}")))
}

pub(super) fn call(ctx: &mut Ctx<'_>, name: &str, a: &[Value]) -> Option<Reply> {
    use T::*;
    Some(match name {
        "listAllGroups" if a.is_empty() => Ok(Value::Array(
            ctx.world.groups.values().map(group_struct).collect(),
        )),
        "getDetails" if sig(a, &[I]) || sig(a, &[S]) => {
            let g = match &a[0] {
                Value::Int(_) => ctx
                    .world
                    .groups
                    .get(&(u32::try_from(int(a, 0)).unwrap_or(0))),
                _ => ctx.world.groups.values().find(|g| g.name == string(a, 0)),
            };
            g.map(group_struct)
                .ok_or_else(|| fault(2201, "Unable to locate or access server group"))
        }
        "listSystems" if sig(a, &[S]) => by_name(ctx, &string(a, 0)).map(|g| {
            Value::Array(
                g.members
                    .iter()
                    .filter_map(|s| ctx.world.systems.get(s))
                    .map(server_struct)
                    .collect(),
            )
        }),
        "listSystemsMinimal" if sig(a, &[S]) => by_name(ctx, &string(a, 0)).map(|g| {
            Value::Array(
                g.members
                    .iter()
                    .filter_map(|s| ctx.world.systems.get(s))
                    .map(system_overview)
                    .collect(),
            )
        }),
        "listActiveSystemsInGroup" if sig(a, &[S]) => {
            let now = ctx.now;
            by_name(ctx, &string(a, 0)).map(|g| {
                Value::Array(
                    g.members
                        .iter()
                        .filter_map(|s| ctx.world.systems.get(s))
                        .filter(|s| now - s.last_checkin < chrono::Duration::days(1))
                        .map(|s| Value::Int(i64::from(s.id)))
                        .collect(),
                )
            })
        }
        _ => return None,
    })
}
