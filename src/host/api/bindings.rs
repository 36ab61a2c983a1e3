//! `spm.uyuni`, `spm.snapshot`, `spm.prom`, `spm.ansible`, `spm.notify`: thin bindings over
//! the service traits of [`crate::host::services`]. A missing service raises a `config`
//! error naming the module.

use std::future::Future;
use std::sync::Arc;

use mlua::{FromLuaMulti, Function, Lua, Table, Value};

use super::{FnDef, ModuleDef, from_lua, opts_json, to_lua};
use crate::host::errors::ScriptError;
use crate::host::services::{ScriptRunOpts, Services, not_configured};

/// Make an async Lua function that calls `call` on the service, or fails with "not configured".
fn bind<S, A, F, Fut>(
    lua: &Lua,
    svc: Option<Arc<S>>,
    module: &'static str,
    call: F,
) -> mlua::Result<Function>
where
    S: ?Sized + Send + Sync + 'static,
    A: FromLuaMulti + Send + 'static,
    F: Fn(Arc<S>, Lua, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = mlua::Result<Value>> + Send + 'static,
{
    lua.create_async_function(move |lua, args: A| {
        let fut = svc.clone().map(|s| call(s, lua, args));
        async move {
            match fut {
                Some(f) => f.await,
                None => Err(not_configured(module).into_lua()),
            }
        }
    })
}

fn svc_err(e: ScriptError) -> mlua::Error {
    e.into_lua()
}

fn system_id(v: i64) -> mlua::Result<i64> {
    if v <= 0 {
        return Err(ScriptError::script(format!("system id must be positive, got {v}")).into_lua());
    }
    Ok(v)
}

const SYS: (&str, &str) = ("system_id", "integer");
const OPTS: (&str, &str) = ("opts?", "table");

/// `spm.uyuni`.
pub const UYUNI: ModuleDef = ModuleDef {
    name: "uyuni",
    doc: "UYUNI operations (XML-RPC), each waiting for its action to finish.",
    functions: &[
        FnDef {
            name: "system_get",
            params: &[SYS],
            returns: "table",
            doc: "Details of one system.",
            is_async: true,
        },
        FnDef {
            name: "script_run",
            params: &[
                SYS,
                ("script", "string"),
                (
                    "opts?",
                    "{timeout?: integer, user?: string, group?: string}",
                ),
            ],
            returns: "{exit_code: integer, stdout: string, stderr: string}",
            doc: "Run a shell script on a system (quote values with spm.shell.quote).",
            is_async: true,
        },
        FnDef {
            name: "errata_apply",
            params: &[
                ("system_ids", "integer[]"),
                ("advisories", "string[]"),
                OPTS,
            ],
            returns: "{action_id: integer, results: table}",
            doc: "Apply advisories to systems and wait for the action.",
            is_async: true,
        },
        FnDef {
            name: "packages_installed",
            params: &[SYS, ("names", "string[]")],
            returns: "table",
            doc: "Installed versions of the named packages.",
            is_async: true,
        },
        FnDef {
            name: "reboot",
            params: &[SYS, OPTS],
            returns: "table",
            doc: "Reboot a system and wait for it per opts.",
            is_async: true,
        },
        FnDef {
            name: "errata_packages",
            params: &[("advisory", "string")],
            returns: "table[]",
            doc: "Packages an advisory updates.",
            is_async: true,
        },
    ],
    build: build_uyuni,
};

fn build_uyuni(lua: &Lua, services: &Services) -> mlua::Result<Table> {
    const M: &str = "spm.uyuni";
    let s = &services.uyuni;
    let t = lua.create_table()?;
    t.set(
        "system_get",
        bind(lua, s.clone(), M, |s, lua, id: i64| async move {
            let v = s.system_get(system_id(id)?).await.map_err(svc_err)?;
            to_lua(&lua, &v)
        })?,
    )?;
    t.set(
        "script_run",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (id, script, opts): (i64, String, Option<Value>)| async move {
                let opts: ScriptRunOpts = match opts {
                    None | Some(Value::Nil) => ScriptRunOpts::default(),
                    Some(v) => from_lua(&lua, v, "opts")?,
                };
                let r = s
                    .script_run(system_id(id)?, script, opts)
                    .await
                    .map_err(svc_err)?;
                to_lua(&lua, &r)
            },
        )?,
    )?;
    t.set(
        "errata_apply",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (ids, advs, opts): (Value, Value, Option<Value>)| async move {
                let ids: Vec<i64> = from_lua(&lua, ids, "system_ids")?;
                for id in &ids {
                    system_id(*id)?;
                }
                let advs: Vec<String> = from_lua(&lua, advs, "advisories")?;
                let opts = opts_json(&lua, opts, "opts")?;
                let r = s.errata_apply(ids, advs, opts).await.map_err(svc_err)?;
                to_lua(&lua, &r)
            },
        )?,
    )?;
    t.set(
        "packages_installed",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (id, names): (i64, Value)| async move {
                let names: Vec<String> = from_lua(&lua, names, "names")?;
                let v = s
                    .packages_installed(system_id(id)?, names)
                    .await
                    .map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    t.set(
        "reboot",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (id, opts): (i64, Option<Value>)| async move {
                let opts = opts_json(&lua, opts, "opts")?;
                let v = s.reboot(system_id(id)?, opts).await.map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    t.set(
        "errata_packages",
        bind(lua, s.clone(), M, |s, lua, adv: String| async move {
            let v = s.errata_packages(adv).await.map_err(svc_err)?;
            to_lua(&lua, &v)
        })?,
    )?;
    Ok(t)
}

/// `spm.snapshot`.
pub const SNAPSHOT: ModuleDef = ModuleDef {
    name: "snapshot",
    doc: "Filesystem snapshots of test systems.",
    functions: &[
        FnDef {
            name: "create",
            params: &[SYS, OPTS],
            returns: "{id: string}",
            doc: "Take a snapshot.",
            is_async: true,
        },
        FnDef {
            name: "undo",
            params: &[SYS, ("snapshot_id", "string"), OPTS],
            returns: "table",
            doc: "Roll a system back to a snapshot.",
            is_async: true,
        },
        FnDef {
            name: "delete",
            params: &[SYS, ("snapshot_id", "string")],
            returns: "table",
            doc: "Delete a snapshot.",
            is_async: true,
        },
    ],
    build: build_snapshot,
};

fn build_snapshot(lua: &Lua, services: &Services) -> mlua::Result<Table> {
    const M: &str = "spm.snapshot";
    let s = &services.snapshot;
    let t = lua.create_table()?;
    t.set(
        "create",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (id, opts): (i64, Option<Value>)| async move {
                let opts = opts_json(&lua, opts, "opts")?;
                let v = s.create(system_id(id)?, opts).await.map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    t.set(
        "undo",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (id, snap, opts): (i64, String, Option<Value>)| async move {
                let opts = opts_json(&lua, opts, "opts")?;
                let v = s.undo(system_id(id)?, snap, opts).await.map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    t.set(
        "delete",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (id, snap): (i64, String)| async move {
                let v = s.delete(system_id(id)?, snap).await.map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    Ok(t)
}

/// `spm.prom`.
pub const PROM: ModuleDef = ModuleDef {
    name: "prom",
    doc: "Prometheus queries.",
    functions: &[
        FnDef {
            name: "query",
            params: &[("expr", "string")],
            returns: "table",
            doc: "Instant query (PromQL).",
            is_async: true,
        },
        FnDef {
            name: "query_range",
            params: &[
                ("expr", "string"),
                ("start", "number"),
                ("end_", "number"),
                ("step", "number"),
            ],
            returns: "table",
            doc: "Range query; times in Unix seconds, step in seconds.",
            is_async: true,
        },
    ],
    build: build_prom,
};

fn build_prom(lua: &Lua, services: &Services) -> mlua::Result<Table> {
    const M: &str = "spm.prom";
    let s = &services.prom;
    let t = lua.create_table()?;
    t.set(
        "query",
        bind(lua, s.clone(), M, |s, lua, expr: String| async move {
            let v = s.query(expr).await.map_err(svc_err)?;
            to_lua(&lua, &v)
        })?,
    )?;
    t.set(
        "query_range",
        bind(
            lua,
            s.clone(),
            M,
            |s, lua, (expr, start, end, step): (String, f64, f64, f64)| async move {
                if !(step > 0.0 && end >= start) {
                    return Err(ScriptError::script(
                        "spm.prom.query_range: need start <= end and step > 0",
                    )
                    .into_lua());
                }
                let v = s
                    .query_range(expr, start, end, step)
                    .await
                    .map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    Ok(t)
}

/// `spm.ansible`.
pub const ANSIBLE: ModuleDef = ModuleDef {
    name: "ansible",
    doc: "Ansible playbooks from the playbook directory ([ansible] playbook_dir, default scripts/ansible).",
    functions: &[FnDef {
        name: "run_playbook",
        params: &[
            ("path", "string"),
            (
                "opts",
                "{hosts: (integer|string|{name: string, address?: string, os?: string, groups?: string[], tags?: table<string, string>, vars?: table})[], extra_vars?: table, check?: boolean, diff?: boolean, limit?: string, forks?: integer, timeout?: number|string, tags?: string|string[], skip_tags?: string|string[]}",
            ),
        ],
        returns: "{playbook: string, status: \"succeeded\"|\"failed\", ok: boolean, rc: integer?, check: boolean, elapsed_ms: integer, hosts: table<string, {status: \"ok\"|\"changed\"|\"failed\"|\"unreachable\", ok: integer, changed: integer, failed: integer, unreachable: integer, skipped: integer, rescued: integer, ignored: integer, failed_task: string?, message: string?, report: table?}>, failed_hosts: string[]}",
        doc: "Run a playbook (a path inside the playbook directory; `..` and paths outside are refused) against UYUNI systems (ids or names, resolved through the database and [ansible] overrides) or inventory tables, and wait for it. Per-task progress goes to the log; a missing ansible-playbook is a config error.",
        is_async: true,
    }],
    build: build_ansible,
};

fn build_ansible(lua: &Lua, services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "run_playbook",
        bind(
            lua,
            services.ansible.clone(),
            "spm.ansible",
            |s, lua, (path, opts): (String, Option<Value>)| async move {
                let opts = opts_json(&lua, opts, "opts")?;
                let v = s.run_playbook(path, opts).await.map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    Ok(t)
}

/// `spm.notify`.
pub const NOTIFY: ModuleDef = ModuleDef {
    name: "notify",
    doc: "Notifications (mail, webhooks).",
    functions: &[FnDef {
        name: "send",
        params: &[(
            "message",
            "{channel?: string, to?: string|string[], subject: string, body: string}",
        )],
        returns: "table",
        doc: "Send a notification.",
        is_async: true,
    }],
    build: build_notify,
};

fn build_notify(lua: &Lua, services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "send",
        bind(
            lua,
            services.notify.clone(),
            "spm.notify",
            |s, lua, msg: Value| async move {
                let msg: serde_json::Value = from_lua(&lua, msg, "message")?;
                if !msg.is_object() {
                    return Err(ScriptError::script("spm.notify.send expects a table").into_lua());
                }
                let v = s.send(msg).await.map_err(svc_err)?;
                to_lua(&lua, &v)
            },
        )?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    //! The glue between Lua tables and the service traits, with a recording test double.

    use std::sync::{Arc, Mutex};

    use futures::FutureExt;
    use serde_json::{Value as Json, json};
    use tokio_util::sync::CancellationToken;

    use crate::host::errors::{ErrorKind, ScriptError};
    use crate::host::limits::Limits;
    use crate::host::services::{
        ErrataApplyResult, ScriptRunOpts, ScriptRunResult, ServiceFuture, Services, UyuniService,
    };
    use crate::host::vm::{self, Deadline};

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Json>>,
    }

    impl UyuniService for Recorder {
        fn system_get(&self, system_id: i64) -> ServiceFuture<'_, Json> {
            async move {
                if system_id == 404 {
                    return Err(ScriptError::new(ErrorKind::Transient, "UYUNI busy"));
                }
                Ok(json!({"id": system_id, "name": "web1"}))
            }
            .boxed()
        }
        fn script_run(
            &self,
            system_id: i64,
            script: String,
            opts: ScriptRunOpts,
        ) -> ServiceFuture<'_, ScriptRunResult> {
            if let Ok(mut c) = self.calls.lock() {
                c.push(json!({"id": system_id, "script": script, "timeout": opts.timeout}));
            }
            async move {
                Ok(ScriptRunResult {
                    exit_code: 3,
                    stdout: "out".into(),
                    stderr: String::new(),
                })
            }
            .boxed()
        }
        fn errata_apply(
            &self,
            system_ids: Vec<i64>,
            advisories: Vec<String>,
            _opts: Json,
        ) -> ServiceFuture<'_, ErrataApplyResult> {
            async move {
                Ok(ErrataApplyResult {
                    action_id: 7,
                    results: json!({"systems": system_ids, "advisories": advisories}),
                })
            }
            .boxed()
        }
        fn packages_installed(&self, _: i64, _: Vec<String>) -> ServiceFuture<'_, Json> {
            async { Ok(json!([])) }.boxed()
        }
        fn reboot(&self, _: i64, _: Json) -> ServiceFuture<'_, Json> {
            async { Ok(json!({})) }.boxed()
        }
        fn errata_packages(&self, _: String) -> ServiceFuture<'_, Json> {
            async { Ok(json!([])) }.boxed()
        }
    }

    #[tokio::test]
    async fn arguments_results_and_typed_errors_cross_the_binding() {
        let rec = Arc::new(Recorder::default());
        let services = Services {
            uyuni: Some(rec.clone()),
            ..Services::default()
        };
        let vm = vm::build(
            &services,
            Arc::new(Default::default()),
            &Limits::default(),
            Deadline::after(std::time::Duration::from_secs(10)),
            CancellationToken::new(),
        )
        .unwrap();
        let code = r#"
            local r = spm.uyuni.script_run(10, "id", { timeout = 30 })
            local a = spm.uyuni.errata_apply({ 1, 2 }, { "USN-1" })
            local _, busy = spm.try(spm.uyuni.system_get, 404)
            local _, bad_opt = spm.try(spm.uyuni.script_run, 10, "id", { timeot = 30 })
            local _, bad_id = spm.try(spm.uyuni.system_get, -1)
            return { r.exit_code, r.stdout, a.action_id, a.results.advisories[1],
                     busy.kind, busy.retryable, bad_opt.message, bad_id.kind }
        "#;
        let out: Vec<mlua::Value> = vm.lua.load(code).eval_async().await.unwrap();
        let s = |i: usize| out[i].to_string().unwrap();
        assert_eq!(s(0), "3");
        assert_eq!(s(1), "out");
        assert_eq!(s(2), "7");
        assert_eq!(s(3), "USN-1");
        assert_eq!(s(4), "transient");
        assert_eq!(s(5), "true");
        assert!(s(6).contains("timeot"), "{}", s(6));
        assert_eq!(s(7), "script");
        let calls = rec.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![json!({"id": 10, "script": "id", "timeout": 30})]
        );
    }
}
