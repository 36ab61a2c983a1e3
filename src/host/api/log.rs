//! `spm.log`: tracing events from scripts; `print` is mapped to `info`.

use mlua::{Lua, Table, Value};

use super::{FnDef, ModuleDef, from_lua};
use crate::host::services::Services;
use crate::host::vm::RunInfo;

const PARAMS: &[(&str, &str)] = &[("message", "string"), ("fields?", "table")];

/// `spm.log`.
pub const MODULE: ModuleDef = ModuleDef {
    name: "log",
    doc: "Structured log events (tracing), tagged with the script path.",
    functions: &[
        FnDef {
            name: "debug",
            params: PARAMS,
            returns: "",
            doc: "Log at debug level with optional fields.",
            is_async: false,
        },
        FnDef {
            name: "info",
            params: PARAMS,
            returns: "",
            doc: "Log at info level with optional fields.",
            is_async: false,
        },
        FnDef {
            name: "warn",
            params: PARAMS,
            returns: "",
            doc: "Log at warn level with optional fields.",
            is_async: false,
        },
        FnDef {
            name: "error",
            params: PARAMS,
            returns: "",
            doc: "Log at error level with optional fields (does not raise).",
            is_async: false,
        },
    ],
    build,
};

/// Log levels scripts can use.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// Emit one script log event.
pub fn emit(lua: &Lua, level: Level, message: &str, fields: Option<Value>) -> mlua::Result<()> {
    let script = lua
        .app_data_ref::<RunInfo>()
        .map(|r| r.script.clone())
        .unwrap_or_default();
    let fields: serde_json::Value = match fields {
        None | Some(Value::Nil) => serde_json::Value::Null,
        Some(v) => from_lua(lua, v, "fields")?,
    };
    let fields = if fields.is_null() {
        String::new()
    } else {
        fields.to_string()
    };
    match level {
        Level::Debug => tracing::debug!(target: "spm::script", script, fields, "{message}"),
        Level::Info => tracing::info!(target: "spm::script", script, fields, "{message}"),
        Level::Warn => tracing::warn!(target: "spm::script", script, fields, "{message}"),
        Level::Error => tracing::error!(target: "spm::script", script, fields, "{message}"),
    }
    Ok(())
}

fn build(lua: &Lua, _services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (name, level) in [
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ] {
        t.set(
            name,
            lua.create_function(move |lua, (msg, fields): (String, Option<Value>)| {
                emit(lua, level, &msg, fields)
            })?,
        )?;
    }
    Ok(t)
}
