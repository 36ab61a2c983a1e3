//! `contentmanagement.*`: projects, environments, build and promote over virtual time.

use chrono::NaiveDateTime;

use super::{Ctx, Reply, T, fault, sig, string};
use crate::services::uyuni::xmlrpc::{Struct, Value};
use crate::sim::world::{Environment, Project};

/// Status of an environment at `now` given its build start.
fn status_at(env: &Environment, now: NaiveDateTime, step_s: u64) -> String {
    let Some(since) = env.status_since else {
        return env.status.clone();
    };
    let step = chrono::Duration::seconds(step_s as i64);
    if now < since + step {
        "building".into()
    } else if now < since + step + step {
        "generating_repodata".into()
    } else {
        "built".into()
    }
}

fn project_struct(p: &Project) -> Value {
    let mut s = Struct::new()
        .with("id", p.id)
        .with("label", p.label.as_str())
        .with("name", p.name.as_str())
        .with("description", p.description.as_str())
        .with("orgId", 1);
    if let Some(e) = p.envs.first() {
        s.insert("firstEnvironment", e.label.as_str());
    }
    s.into()
}

fn find(ctx: &Ctx<'_>, label: &str) -> Result<usize, super::Fault> {
    ctx.world
        .projects
        .iter()
        .position(|p| p.label == label)
        .ok_or_else(|| fault(10101, label))
}

fn admin(ctx: &Ctx<'_>) -> Result<(), super::Fault> {
    if ctx.world.users.get(ctx.user).is_some_and(|u| u.org_admin) {
        Ok(())
    } else {
        Err(fault(
            -23,
            "You do not have permissions to perform this action. You need to have at least a Org Admin role to perform this action",
        ))
    }
}

/// Settle finished builds so versions and statuses are stored, not derived.
fn settle(ctx: &mut Ctx<'_>) {
    let (now, step) = (ctx.now, ctx.world.timings.build_step_s);
    for p in &mut ctx.world.projects {
        for e in &mut p.envs {
            if e.status_since.is_some() && status_at(e, now, step) == "built" {
                e.status = "built".into();
                e.status_since = None;
            }
        }
    }
}

pub(super) fn call(ctx: &mut Ctx<'_>, name: &str, a: &[Value]) -> Option<Reply> {
    use T::*;
    settle(ctx);
    Some(match name {
        "listProjects" if a.is_empty() => Ok(Value::Array(
            ctx.world.projects.iter().map(project_struct).collect(),
        )),
        "lookupProject" if sig(a, &[S]) => {
            find(ctx, &string(a, 0)).map(|i| project_struct(&ctx.world.projects[i]))
        }
        "listProjectEnvironments" if sig(a, &[S]) => find(ctx, &string(a, 0)).map(|i| {
            let p = &ctx.world.projects[i];
            let step = ctx.world.timings.build_step_s;
            Value::Array(
                p.envs
                    .iter()
                    .enumerate()
                    .map(|(k, e)| {
                        let mut s = Struct::new()
                            .with("id", e.id)
                            .with("label", e.label.as_str())
                            .with("name", e.name.as_str())
                            .with("description", e.description.as_str())
                            .with("version", e.version)
                            .with("status", status_at(e, ctx.now, step))
                            .with("contentProjectLabel", p.label.as_str());
                        if k > 0 {
                            s.insert("previousEnvironmentLabel", p.envs[k - 1].label.as_str());
                        }
                        if let Some(n) = p.envs.get(k + 1) {
                            s.insert("nextEnvironmentLabel", n.label.as_str());
                        }
                        s.into()
                    })
                    .collect(),
            )
        }),
        "buildProject" if sig(a, &[S]) || sig(a, &[S, S]) => (|| {
            admin(ctx)?;
            let i = find(ctx, &string(a, 0))?;
            let now = ctx.now;
            let p = &mut ctx.world.projects[i];
            if !p.validation_errors.is_empty() {
                return Err(fault(10103, p.validation_errors.join("\n")));
            }
            let Some(first) = p.envs.first_mut() else {
                return Err(fault(10102, "Project has no environments"));
            };
            first.version += 1;
            first.status = "building".into();
            first.status_since = Some(now);
            Ok(Value::Int(1))
        })(),
        "promoteProject" if sig(a, &[S, S]) => (|| {
            admin(ctx)?;
            let i = find(ctx, &string(a, 0))?;
            let env = string(a, 1);
            let now = ctx.now;
            let p = &mut ctx.world.projects[i];
            let k = p
                .envs
                .iter()
                .position(|e| e.label == env)
                .ok_or_else(|| fault(10100, format!("Environment {env} does not exist")))?;
            if k + 1 >= p.envs.len() {
                return Err(fault(10102, format!("Environment {env} has no successor")));
            }
            if !p.validation_errors.is_empty() {
                return Err(fault(10103, p.validation_errors.join("\n")));
            }
            let version = p.envs[k].version;
            let next = &mut p.envs[k + 1];
            next.version = version;
            next.status = "building".into();
            next.status_since = Some(now);
            Ok(Value::Int(1))
        })(),
        _ => return None,
    })
}
