//! `schedule.*`: action and per-system views, cancel, fail.

use super::{Ctx, Reply, T, fault, int, ints, sig, string, unhandled};
use crate::services::uyuni::xmlrpc::{Struct, Value};
use crate::sim::actions::{Action, Status};

fn action_struct(a: &Action) -> Value {
    let (c, f, p) = a.counts();
    Struct::new()
        .with("id", a.id)
        .with("name", a.name.as_str())
        .with("type", a.kind.type_name())
        .with("scheduler", a.scheduler.as_str())
        .with("earliest", a.earliest)
        .with("completedSystems", c as i64)
        .with("failedSystems", f as i64)
        .with("inProgressSystems", p as i64)
        .into()
}

fn lookup<'a>(ctx: &'a Ctx<'_>, id: i64) -> Result<&'a Action, super::Fault> {
    u32::try_from(id)
        .ok()
        .and_then(|i| ctx.world.actions.get(&i))
        .ok_or_else(|| unhandled(format!("Could not find action with id: {id}")))
}

fn systems(ctx: &Ctx<'_>, id: i64, want: fn(Status) -> bool) -> Reply {
    let a = lookup(ctx, id)?;
    Ok(Value::Array(
        a.servers
            .iter()
            .filter(|(_, r)| want(r.status))
            .filter_map(|(sid, r)| {
                let s = ctx.world.systems.get(sid)?;
                let channel = s
                    .channels
                    .first()
                    .and_then(|c| ctx.world.catalog.channels.get(c))
                    .map(|c| c.label.clone())
                    .unwrap_or_default();
                let mut st = Struct::new()
                    .with("server_id", s.id)
                    .with("server_name", s.name.as_str())
                    .with("base_channel", channel)
                    .with("timestamp", r.completion.unwrap_or(r.modified));
                if let Some(m) = &r.result_msg {
                    st.insert("message", m.as_str());
                }
                Some(st.into())
            })
            .collect(),
    ))
}

fn actions(ctx: &Ctx<'_>, pick: fn(&Action) -> bool) -> Reply {
    Ok(Value::Array(
        ctx.world
            .actions
            .values()
            .filter(|a| pick(a))
            .map(action_struct)
            .collect(),
    ))
}

pub(super) fn call(ctx: &mut Ctx<'_>, name: &str, a: &[Value]) -> Option<Reply> {
    use T::*;
    Some(match name {
        "listAllActions" if a.is_empty() => actions(ctx, |x| !x.archived),
        "listCompletedActions" if a.is_empty() => actions(ctx, |x| !x.archived && x.counts().0 > 0),
        "listFailedActions" if a.is_empty() => actions(ctx, |x| !x.archived && x.counts().1 > 0),
        "listInProgressActions" if a.is_empty() => {
            actions(ctx, |x| !x.archived && x.counts().2 > 0)
        }
        "listArchivedActions" if a.is_empty() => actions(ctx, |x| x.archived),
        "listCompletedSystems" if sig(a, &[I]) => {
            systems(ctx, int(a, 0), |s| s == Status::Completed)
        }
        "listFailedSystems" if sig(a, &[I]) => systems(ctx, int(a, 0), |s| s == Status::Failed),
        "listInProgressSystems" if sig(a, &[I]) => systems(ctx, int(a, 0), Status::in_progress),
        "cancelActions" if sig(a, &[A]) => (|| {
            let ids = ints(a, 0)?;
            let mut found = Vec::new();
            for id in ids {
                lookup(ctx, id)?;
                found.push(u32::try_from(id).unwrap_or_default());
            }
            ctx.world.cancel_actions(&found).map_err(|_| {
                fault(
                    10003,
                    "Cannot cancel actions in PICKED UP state, aborting...",
                )
            })?;
            Ok(Value::Int(1))
        })(),
        "failSystemAction" if sig(a, &[I, I]) || sig(a, &[I, I, S]) => (|| {
            let (sid, aid) = (int(a, 0), int(a, 1));
            let login = ctx
                .world
                .users
                .get(ctx.user)
                .map(|u| u.login.clone())
                .unwrap_or_default();
            let msg = if a.len() == 3 {
                string(a, 2)
            } else {
                format!("This action has been manually failed by {login}")
            };
            lookup(ctx, aid)?;
            let now = ctx.now;
            let sid32 = u32::try_from(sid).unwrap_or_default();
            let aid32 = u32::try_from(aid).unwrap_or_default();
            let row = ctx
                .world
                .actions
                .get_mut(&aid32)
                .and_then(|x| x.servers.get_mut(&sid32))
                .ok_or_else(|| super::no_such_system(sid))?;
            if !row.status.in_progress() {
                return Err(fault(
                    10003,
                    "Only queued or picked up actions can be failed",
                ));
            }
            row.status = Status::Failed;
            row.completion = Some(now);
            row.modified = now;
            row.result_code = Some(-1);
            row.result_msg = Some(msg);
            if ctx
                .world
                .actions
                .get(&aid32)
                .is_some_and(|x| x.servers.values().all(|r| !r.status.in_progress()))
            {
                ctx.world.pending.remove(&aid32);
            }
            Ok(Value::Int(1))
        })(),
        _ => return None,
    })
}
