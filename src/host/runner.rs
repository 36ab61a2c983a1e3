//! Running a script: one fresh VM per run, limits, typed result, and a record of every
//! script file (path, hash, generation) the run used.

use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Value};
use tokio_util::sync::CancellationToken;

use mlua::LuaSerdeExt;

use super::api::{time::duration_arg, to_lua};
use super::contracts::Contracts;
use super::errors::{ErrorKind, ScriptError};
use super::limits::Limits;
use super::loader;
use super::resolve;
use super::scriptset::{ScriptSet, expected_kind};
use super::services::Services;
use super::vm::{self, Deadline};

/// One script file a run used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScriptUse {
    /// Relative path.
    pub path: String,
    /// Hex SHA-256 of the content that ran.
    pub sha256: String,
    /// Generation of the set it came from.
    pub generation: u64,
}

/// The outcome of a run: the result, and the scripts it used even when it failed.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// What the entry function returned (JSON), or the typed error.
    pub result: Result<serde_json::Value, ScriptError>,
    /// Scripts used, main script first.
    pub scripts: Vec<ScriptUse>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// Script path in the set.
    pub path: &'a str,
    /// Function of the returned table to call (`run`, `applies`).
    pub entry: &'a str,
    /// The argument (the `ctx` table).
    pub ctx: serde_json::Value,
}

/// Run phase `phase` for `os` with `ctx` on the given set.
pub async fn run_phase(
    set: Arc<ScriptSet>,
    services: &Services,
    os: &str,
    phase: &str,
    ctx: serde_json::Value,
    limits: &Limits,
    cancel: CancellationToken,
) -> RunOutcome {
    let path = match resolve::resolve_phase(&set, os, phase) {
        Ok(f) => f.path.clone(),
        Err(e) => {
            return RunOutcome {
                result: Err(e),
                scripts: Vec::new(),
            };
        }
    };
    run_script(
        set,
        services,
        RunRequest {
            path: &path,
            entry: "run",
            ctx,
        },
        limits,
        cancel,
    )
    .await
}

/// Run `req.entry(ctx)` of the script at `req.path` in a fresh VM.
pub async fn run_script(
    set: Arc<ScriptSet>,
    services: &Services,
    req: RunRequest<'_>,
    limits: &Limits,
    cancel: CancellationToken,
) -> RunOutcome {
    let deadline = Deadline::after(limits.timeout);
    let vm = match vm::build(
        services,
        set.libs.clone(),
        limits,
        deadline.clone(),
        cancel.clone(),
    ) {
        Ok(vm) => vm,
        Err(e) => {
            return RunOutcome {
                result: Err(e),
                scripts: Vec::new(),
            };
        }
    };
    let Some(file) = set.get(req.path) else {
        return RunOutcome {
            result: Err(ScriptError::config(format!(
                "no script {} in the loaded set",
                req.path
            ))),
            scripts: Vec::new(),
        };
    };
    let fut = async {
        let loaded = loader::load(
            &vm,
            &Contracts::default(),
            &file.path,
            &file.content,
            expected_kind(&file.path),
        )
        .await
        .map_err(|d| {
            ScriptError::script(
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let Some(table) = loaded.table() else {
            return Err(ScriptError::script(format!(
                "{} did not return a table",
                file.path
            )));
        };
        if let Ok(t) = table.raw_get::<Value>("timeout")
            && !t.is_nil()
        {
            let d = duration_arg(&t, "timeout")?;
            deadline.tighten(d);
        }
        let func: Function = match table.raw_get::<Value>(req.entry) {
            Ok(Value::Function(f)) => f,
            _ => {
                return Err(ScriptError::script(format!(
                    "{}: the returned table has no `{}` function",
                    file.path, req.entry
                )));
            }
        };
        let ctx = to_lua(&vm.lua, &req.ctx).map_err(|e| ScriptError::from_lua(&e))?;
        let out: Value = func
            .call_async(ctx)
            .await
            .map_err(|e| ScriptError::from_lua(&e))?;
        let lenient = mlua::serde::DeserializeOptions::new().deny_unsupported_types(false);
        vm.lua
            .from_value_with::<serde_json::Value>(out, lenient)
            .map_err(|e| ScriptError::script(format!("{}: result is not data: {e}", file.path)))
    };
    let result = tokio::select! {
        r = tokio::time::timeout(limits.timeout, fut) => match r {
            Ok(r) => r,
            Err(_) => Err(ScriptError::new(
                ErrorKind::Timeout,
                format!("{} did not finish within {}", file.path, human(limits.timeout)),
            )),
        },
        _ = cancel.cancelled() => Err(ScriptError::new(ErrorKind::Cancelled, "run cancelled")),
        _ = wait_deadline(&deadline) => Err(ScriptError::new(
            ErrorKind::Timeout,
            format!("{} exceeded its timeout", file.path),
        )),
    };
    let used: Vec<String> = vm
        .lua
        .app_data_ref::<vm::RunInfo>()
        .and_then(|i| i.used.lock().ok().map(|u| u.clone()))
        .unwrap_or_default();
    let mut scripts: Vec<ScriptUse> = Vec::new();
    for p in used {
        if scripts.iter().any(|s| s.path == p) {
            continue;
        }
        if let Some(f) = set.get(&p) {
            scripts.push(ScriptUse {
                path: p,
                sha256: f.sha256.clone(),
                generation: set.generation,
            });
        }
    }
    RunOutcome { result, scripts }
}

async fn wait_deadline(deadline: &Deadline) {
    loop {
        let left = deadline.remaining();
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left).await;
    }
}

fn human(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
