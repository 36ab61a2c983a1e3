//! `spm.test`: data a test phase keeps even when it fails (the patch phase's captured
//! `before` versions), recorded into the run's [`RunRecorder`] and merged by the engine into
//! `state[<phase>]` after the phase, whether it passed or failed.

use std::sync::{Arc, Mutex};

use mlua::{Lua, Table, Value};

use super::{FnDef, ModuleDef, from_lua, to_lua};
use crate::host::errors::ScriptError;
use crate::host::services::Services;

/// Per-run store of recorded values (key → JSON value), shared with the engine.
#[derive(Debug, Default)]
pub struct RunRecorder {
    values: Mutex<serde_json::Map<String, serde_json::Value>>,
}

impl RunRecorder {
    /// A new, empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Set `key` to `value`.
    pub fn record(&self, key: String, value: serde_json::Value) {
        if let Ok(mut m) = self.values.lock() {
            m.insert(key, value);
        }
    }

    /// Everything recorded so far.
    pub fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        self.values.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Longest key accepted.
const MAX_KEY: usize = 64;

/// `spm.test`.
pub const MODULE: ModuleDef = ModuleDef {
    name: "test",
    doc: "Data a test phase keeps even when it fails (merged into ctx.state[<phase>]).",
    functions: &[
        FnDef {
            name: "record",
            params: &[("key", "string"), ("value", "any")],
            returns: "",
            doc: "Keep `value` under ctx.state[<this phase>][key] for later phases and rollback, even if the phase fails.",
            is_async: false,
        },
        FnDef {
            name: "recorded",
            params: &[("key", "string")],
            returns: "any",
            doc: "What this run recorded under `key` (nil when nothing).",
            is_async: false,
        },
    ],
    build,
};

fn check_key(key: &str) -> mlua::Result<()> {
    if key.is_empty()
        || key.len() > MAX_KEY
        || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(ScriptError::script(format!(
            "spm.test: key {key:?} must be 1-{MAX_KEY} letters, digits or underscores"
        ))
        .into_lua());
    }
    Ok(())
}

fn build(lua: &Lua, services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let rec = services.recorder.clone();
    t.set(
        "record",
        lua.create_function(move |lua, (key, value): (String, Value)| {
            check_key(&key)?;
            let Some(r) = &rec else {
                return Err(ScriptError::config(
                    "spm.test.record is only available inside a test phase",
                )
                .into_lua());
            };
            let v: serde_json::Value = from_lua(lua, value, "value")?;
            r.record(key, v);
            Ok(())
        })?,
    )?;
    let rec = services.recorder.clone();
    t.set(
        "recorded",
        lua.create_function(move |lua, key: String| {
            check_key(&key)?;
            match rec.as_ref().and_then(|r| r.snapshot().get(&key).cloned()) {
                Some(v) => to_lua(lua, &v),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    Ok(t)
}
