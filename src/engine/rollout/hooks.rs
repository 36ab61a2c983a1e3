//! Calling a policy's Lua hooks (`before_wave`, `verify_host`, `after_run`).
//!
//! Each call runs in a fresh sandboxed VM built by the Lua host: the policy chunk is loaded
//! again (it is data plus functions, so this is cheap and keeps runs isolated), then
//! `hooks.<name>(ctx)` is called with `call_async` under a wall-clock timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, LuaSerdeExt as _, Table, Value};

use super::policy::{LoadedPolicy, contracts};
use crate::host::api::to_lua;
use crate::host::errors::{ErrorKind, ScriptError};
use crate::host::header::ScriptKind;
use crate::host::limits::Limits;
use crate::host::loader;
use crate::host::services::Services;
use crate::host::vm::{self, Deadline};

/// Default time a hook may take.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Call `hooks.<name>(ctx)` of the policy; the hook's return value as JSON (`null` for
/// nothing). A missing hook is an error; check [`super::policy::Policy::hooks`] first.
pub async fn call_hook(
    policy: &LoadedPolicy,
    name: &str,
    ctx: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, ScriptError> {
    let limits = Limits {
        timeout,
        ..Limits::default()
    };
    let vm = vm::build(
        &Services::default(),
        Arc::new(BTreeMap::new()),
        &limits,
        Deadline::after(timeout),
        tokio_util::sync::CancellationToken::new(),
    )?;
    let fut = async {
        let loaded = loader::load(
            &vm,
            &contracts(),
            &policy.path,
            &policy.content,
            Some(ScriptKind::Policy),
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
        let func: Function = loaded
            .table()
            .and_then(|t| t.raw_get::<Table>("hooks").ok())
            .and_then(|h| h.raw_get::<Function>(name).ok())
            .ok_or_else(|| ScriptError::script(format!("{}: no hook `{name}`", policy.path)))?;
        let arg = to_lua(&vm.lua, ctx).map_err(|e| ScriptError::from_lua(&e))?;
        let out: Value = func
            .call_async(arg)
            .await
            .map_err(|e| ScriptError::from_lua(&e))?;
        let lenient = mlua::serde::DeserializeOptions::new().deny_unsupported_types(false);
        vm.lua
            .from_value_with::<serde_json::Value>(out, lenient)
            .map_err(|e| {
                ScriptError::script(format!(
                    "{}: hook `{name}` returned something that is not data: {e}",
                    policy.path
                ))
            })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ScriptError::new(
            ErrorKind::Timeout,
            format!(
                "{}: hook `{name}` did not finish within {}s",
                policy.path,
                timeout.as_secs()
            ),
        )),
    }
}

/// A hook's answer read as a verdict: `true`/`nil` pass, `false` fails, a table
/// `{ ok = bool, reason = "..." }` says why, a string is a failure reason.
pub fn verdict(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(true) => Ok(()),
        serde_json::Value::Bool(false) => Err("the hook returned false".to_string()),
        serde_json::Value::String(s) => Err(s.clone()),
        serde_json::Value::Object(m) => match m.get("ok") {
            Some(serde_json::Value::Bool(true)) => Ok(()),
            _ => Err(m
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or("the hook returned ok = false")
                .to_string()),
        },
        other => Err(format!("the hook returned {other}, expected true/false")),
    }
}
